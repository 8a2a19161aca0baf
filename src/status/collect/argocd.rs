//! Status from an Argo CD hub: each cluster's `Application` (labelled `starmap.dev/cluster`,
//! as starmap's Application and ApplicationSet templates make them) reports the sync revision,
//! its own health and the health of every resource it manages. The edge clusters are not
//! contacted.

use std::collections::HashMap;

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde_json::Value;

use super::client::{Failure, Reader, show_duration};
use super::{ClusterOutcome, Options, SOURCE_ARGOCD, Target, load_kubeconfig};
use crate::config::Config;
use crate::error::Result;
use crate::formats::index::IndexEntry;
use crate::formats::status::{ClusterStatus, ObjectStatus, SyncStatus};
use crate::health::{Health, HealthStatus, application_health};
use crate::time::now_rfc3339;

/// The label that ties an Application to its inventory cluster.
pub const CLUSTER_LABEL: &str = "starmap.dev/cluster";
const PAGE: u32 = 500;

/// The cluster where Argo CD keeps the fleet's Applications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgoCdHub {
    /// The kubeconfig context that reaches the hub.
    pub context: String,
    /// Where the Applications are: Argo CD's namespace.
    pub namespace: String,
}

impl ArgoCdHub {
    /// A hub whose Applications are in `argocd`.
    pub fn new(context: impl Into<String>) -> Self {
        ArgoCdHub {
            context: context.into(),
            namespace: Config::default().argocd.namespace,
        }
    }

    /// A hub whose Applications are in `argocd.namespace` of the source's `starmap.yaml`.
    pub fn from_config(context: impl Into<String>, config: &Config) -> Self {
        ArgoCdHub {
            context: context.into(),
            namespace: config.argocd.namespace.clone(),
        }
    }
}

/// Reads the hub's Applications once and reports every target from its Application
/// (`source: argocd`), in the order of `targets` (their `context` is not used). When the hub
/// cannot be read, every target is Unreachable with the hub's error; a target without an
/// Application is Unreachable too (nothing reports it). `Err` only when the kubeconfig cannot
/// be read. [`Options::timeout`] bounds the whole listing; `concurrency` and `flux` do not
/// apply.
pub async fn collect_argocd(hub: &ArgoCdHub, targets: &[Target], options: &Options) -> Result<Vec<ClusterOutcome>> {
    let kubeconfig = load_kubeconfig(options)?;
    let hub_error = |e: String| -> Vec<ClusterOutcome> {
        targets
            .iter()
            .map(|t| ClusterOutcome::Unreachable {
                cluster: t.cluster.clone(),
                error: format!("Argo CD hub (context {:?}): {e}", hub.context),
            })
            .collect()
    };
    let list = async {
        let reader = Reader::new(&kubeconfig, &hub.context, options).await?;
        list_applications(&reader, &hub.namespace).await
    };
    let applications = match tokio::time::timeout(options.timeout, list).await {
        Ok(Ok(apps)) => apps,
        Ok(Err(e)) => return Ok(hub_error(e)),
        Err(_) => return Ok(hub_error(format!("timed out after {}", show_duration(options.timeout)))),
    };

    let mut by_cluster: HashMap<&str, Vec<&Value>> = HashMap::new();
    for app in &applications {
        if let Some(cluster) = app
            .pointer("/metadata/labels")
            .and_then(|l| l.get(CLUSTER_LABEL))
            .and_then(Value::as_str)
        {
            by_cluster.entry(cluster).or_default().push(app);
        }
    }
    let now = now_rfc3339();
    Ok(targets
        .iter()
        .map(|t| match pick(by_cluster.get(t.cluster.as_str()), &t.cluster) {
            Some(app) => ClusterOutcome::Seen(application_status(t, app, options, &now)),
            None => ClusterOutcome::Unreachable {
                cluster: t.cluster.clone(),
                error: format!(
                    "no Argo CD Application labelled {CLUSTER_LABEL}={} in namespace {} of the hub",
                    t.cluster, hub.namespace
                ),
            },
        })
        .collect())
}

fn application_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: "applications".into(),
    }
}

/// Every Application in `namespace` that carries the cluster label, page by page.
async fn list_applications(reader: &Reader, namespace: &str) -> Result<Vec<Value>, String> {
    let api: Api<DynamicObject> = Api::namespaced_with(reader.client.clone(), namespace, &application_resource());
    let mut out = vec![];
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().labels(CLUSTER_LABEL).limit(PAGE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = reader.call(|| api.list(&params)).await.map_err(|f| match f {
            Failure::NotFound => {
                "the hub does not serve argoproj.io/v1alpha1 Application (is Argo CD installed?)".into()
            }
            Failure::Object(m) | Failure::Cluster(m) => m,
        })?;
        for item in page.items {
            out.push(serde_json::to_value(item).map_err(|e| format!("cannot read an Application: {e}"))?);
        }
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// The Application of `cluster`: `starmap-<cluster>` if there are several, else the first by name.
fn pick<'a>(apps: Option<&Vec<&'a Value>>, cluster: &str) -> Option<&'a Value> {
    let apps = apps?;
    let name = |a: &Value| {
        a.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let preferred = format!("starmap-{cluster}");
    apps.iter()
        .find(|a| name(a) == preferred)
        .or_else(|| apps.iter().min_by_key(|a| name(a)))
        .copied()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A cluster's status as its Application reports it.
fn application_status(target: &Target, app: &Value, options: &Options, now: &str) -> ClusterStatus {
    let deploy_commit = options.deploy_commit.as_deref();
    let health = application_health(app)
        .unwrap_or_else(|| HealthStatus::new(Health::Unknown, "the Application reports no health yet"));
    let mut message = health.message.clone();
    let sync_state = str_at(app, "/status/sync/status");
    if !sync_state.is_empty() && sync_state != "Synced" {
        message = if message.is_empty() {
            format!("sync status {sync_state}")
        } else {
            format!("{message}; sync status {sync_state}")
        };
    }
    let revision = app
        .pointer("/status/sync/revision")
        .and_then(Value::as_str)
        .or_else(|| app.pointer("/status/sync/revisions/0").and_then(Value::as_str))
        .and_then(|r| options.commit_of(r));

    let resources: Vec<&Value> = app
        .pointer("/status/resources")
        .and_then(Value::as_array)
        .map(|r| r.iter().collect())
        .unwrap_or_default();
    // Argo CD 3 keeps per-resource health out of the Application by default (its resource
    // tree holds it, which only its API server serves): `resourceHealthSource: appTree`.
    let inline = str_at(app, "/status/resourceHealthSource") != "appTree";
    let app_health = (!inline).then_some(&health);
    let objects = target
        .objects
        .iter()
        .map(|e| resource_status(e, &resources, app_health))
        .collect();

    ClusterStatus {
        cluster: target.cluster.clone(),
        reachable: true,
        stale: false,
        last_seen: Some(now.to_string()),
        error: None,
        source: SOURCE_ARGOCD.into(),
        deploy_commit: deploy_commit.map(Into::into),
        applied_revision: revision,
        current: false,
        sync: Some(SyncStatus {
            object: format!(
                "Application/{}/{}",
                str_at(app, "/metadata/namespace"),
                str_at(app, "/metadata/name")
            ),
            health: health.health,
            message,
        }),
        objects,
    }
}

/// One index entry from the Application's `status.resources`: matched by group, kind,
/// namespace and name (not version: Argo CD records the version it compared with). An entry
/// written without a namespace matches a resource of any namespace.
///
/// `app_health` is the Application's health when its resources carry none (Argo CD's
/// default since 3.0). Each existing object then gets the Application's health: exact when
/// it is Healthy (an Application is as healthy as its worst resource), and on the safe side
/// otherwise, so a rollout gate never opens on a cluster whose Application is Degraded.
fn resource_status(entry: &IndexEntry, resources: &[&Value], app_health: Option<&HealthStatus>) -> ObjectStatus {
    let same = |r: &&&Value, any_namespace: bool| {
        str_at(r, "/group") == entry.group()
            && str_at(r, "/kind") == entry.kind
            && str_at(r, "/name") == entry.name
            && (any_namespace || str_at(r, "/namespace") == entry.namespace.as_deref().unwrap_or(""))
    };
    let found = resources.iter().find(|r| same(r, false)).or_else(|| {
        entry
            .namespace
            .is_none()
            .then(|| resources.iter().find(|r| same(r, true)))
            .flatten()
    });
    let health = match found {
        None => HealthStatus::new(Health::Missing, "not among the Application's resources"),
        Some(r) => match r.pointer("/health/status").and_then(Value::as_str) {
            None => match app_health {
                Some(app) if app.health == Health::Healthy => HealthStatus::new(Health::Healthy, ""),
                Some(app) => HealthStatus::new(
                    app.health,
                    format!(
                        "the Application is {}{}{}; Argo CD keeps each resource's health in its \
                         resource tree (set controller.resource.health.persist: \"true\" in \
                         argocd-cmd-params-cm to report it per object)",
                        app.health,
                        if app.message.is_empty() { "" } else { ": " },
                        app.message
                    ),
                ),
                // Argo CD gives no health to kinds without a health rule: an existing object.
                None => HealthStatus::new(Health::Healthy, ""),
            },
            Some(s) => match Health::parse(s) {
                Some(h) => HealthStatus::new(h, str_at(r, "/health/message")),
                None => HealthStatus::new(Health::Unknown, format!("unknown health status {s:?}")),
            },
        },
    };
    entry.status(health)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app() -> Value {
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "starmap-c1", "namespace": "argocd", "labels": {CLUSTER_LABEL: "c1"}},
            "status": {
                "sync": {"status": "OutOfSync", "revision": "abc123"},
                "health": {"status": "Progressing", "message": "waiting"},
                "resources": [
                    {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop", "name": "web",
                     "status": "Synced", "health": {"status": "Degraded", "message": "deadline exceeded"}},
                    {"version": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "cfg", "status": "Synced"},
                    {"version": "v1", "kind": "Namespace", "name": "shop", "status": "Synced", "health": {"status": "Healthy"}},
                    {"version": "v1", "kind": "Service", "namespace": "other", "name": "svc", "status": "Synced",
                     "health": {"status": "Weird"}}
                ]
            }
        })
    }

    #[test]
    fn maps_an_application() {
        let target = Target::new(
            "c1",
            vec![
                IndexEntry::new("apps/v1", "Deployment", Some("shop"), "web"),
                IndexEntry::new("v1", "ConfigMap", Some("shop"), "cfg"),
                IndexEntry::new("v1", "ConfigMap", Some("shop"), "gone"),
                IndexEntry::new("v1", "Namespace", None, "shop"),
                IndexEntry::new("v1", "Service", None, "svc"),
            ],
        );
        let options = Options {
            deploy_commit: Some("def456".into()),
            ..Options::default()
        };
        let s = application_status(&target, &app(), &options, "2026-01-01T00:00:00Z");
        assert_eq!(s.source, "argocd");
        assert_eq!(s.applied_revision.as_deref(), Some("abc123"));
        assert_eq!(s.deploy_commit.as_deref(), Some("def456"));
        let sync = s.sync.unwrap();
        assert_eq!(sync.object, "Application/argocd/starmap-c1");
        assert_eq!(sync.health, Health::Progressing);
        assert_eq!(sync.message, "waiting; sync status OutOfSync");
        let h: Vec<(Health, &str)> = s.objects.iter().map(|o| (o.health, o.message.as_str())).collect();
        assert_eq!(
            h,
            [
                (Health::Degraded, "deadline exceeded"),
                (Health::Healthy, ""),
                (Health::Missing, "not among the Application's resources"),
                (Health::Healthy, ""),
                (Health::Unknown, "unknown health status \"Weird\""),
            ]
        );
    }

    #[test]
    fn without_resource_health_in_the_application_objects_take_its_health() {
        let target = Target::new(
            "c1",
            vec![
                IndexEntry::new("apps/v1", "Deployment", Some("shop"), "web"),
                IndexEntry::new("v1", "ConfigMap", Some("shop"), "gone"),
            ],
        );
        let app = |health: &str| {
            json!({
                "metadata": {"name": "starmap-c1", "namespace": "argocd"},
                "status": {
                    "resourceHealthSource": "appTree",
                    "sync": {"status": "Synced", "revision": "abc123"},
                    "health": {"status": health, "message": "Caused by apps/Deployment:shop/web"},
                    "resources": [{"group": "apps", "version": "v1", "kind": "Deployment",
                                   "namespace": "shop", "name": "web", "status": "Synced"}]
                }
            })
        };
        let options = Options::default();
        let s = application_status(&target, &app("Healthy"), &options, "now");
        assert_eq!(
            (s.objects[0].health, s.objects[0].message.as_str()),
            (Health::Healthy, "")
        );
        assert_eq!(s.objects[1].health, Health::Missing);
        let s = application_status(&target, &app("Degraded"), &options, "now");
        assert_eq!(s.objects[0].health, Health::Degraded);
        assert!(
            s.objects[0]
                .message
                .starts_with("the Application is Degraded: Caused by apps/Deployment:shop/web;")
                && s.objects[0].message.contains("controller.resource.health.persist"),
            "{}",
            s.objects[0].message
        );
        assert_eq!(s.objects[1].health, Health::Missing, "a missing object stays Missing");
    }

    #[test]
    fn picks_the_starmap_application() {
        let a = json!({"metadata": {"name": "b-other"}});
        let b = json!({"metadata": {"name": "starmap-c1"}});
        let c = json!({"metadata": {"name": "a-other"}});
        assert_eq!(pick(Some(&vec![&a, &b, &c]), "c1"), Some(&b));
        assert_eq!(pick(Some(&vec![&a, &c]), "c1"), Some(&c));
        assert_eq!(pick(None, "c1"), None);
    }
}
