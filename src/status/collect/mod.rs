//! Reading live status from the clusters (api.md section 5): the objects the deploy repo places
//! on each cluster, read through a kubeconfig context per cluster ([`collect`]) together with
//! the Flux `Kustomization` that applies them, or from an Argo CD hub's `Application`s without
//! touching the edge clusters ([`collect_argocd`]).
//!
//! ```no_run
//! # async fn run() -> starmap::Result<()> {
//! use starmap::formats::index::parse_index;
//! use starmap::status::collect::{ClusterOutcome, Options, Target, collect};
//!
//! let text = std::fs::read_to_string("deploy/.starmap/clusters/c1.yaml").unwrap();
//! let index = parse_index(&text, ".starmap/clusters/c1.yaml")?;
//! let options = Options { deploy_commit: Some("4f1a5b1…".into()), ..Options::default() };
//! for outcome in collect(vec![Target::new("c1", index.objects)], &options).await? {
//!     match outcome {
//!         ClusterOutcome::Seen(status) => println!("{}: {} objects", status.cluster, status.objects.len()),
//!         ClusterOutcome::Unreachable { cluster, error } => println!("{cluster}: {error}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Clusters are read concurrently, at most [`Options::concurrency`] at once, each within
//! [`Options::timeout`] (discovery, every object and the Kustomization, retries included), so a
//! slow or dead cluster holds up nobody but itself. Transient failures (connection refused or
//! reset, a request with no answer within its share of the timeout, 429, 5xx) are retried
//! [`Options::retries`] times with exponential backoff. Per cluster, the kinds of each
//! `apiVersion` are discovered once (one request per group version) and reused for every object.
//!
//! Collection fills what the cluster tells and leaves [`ClusterStatus::current`] and
//! [`ObjectStatus::applied`] false: they compare the cluster's directory at `appliedRevision`
//! with the deploy commit, in git, which is the caller's job.
//!
//! Both functions must run inside a Tokio runtime (they spawn a task per cluster; a
//! multi-threaded runtime spreads TLS and JSON work over the cores). TLS is rustls with ring,
//! the only crypto provider in the dependency tree (kube's `ring` feature), which rustls
//! installs by itself; enabling a second one (aws-lc-rs) would make creating a client panic.

mod argocd;
mod client;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use kube::config::Kubeconfig;
use serde_json::Value;

pub use argocd::{ArgoCdHub, collect_argocd};

use self::client::{Failure, Kinds, Reader, show_duration};
use crate::config::{Config, FluxSettings};
use crate::error::{Error, Result};
use crate::formats::index::IndexEntry;
use crate::formats::status::{ClusterStatus, ObjectStatus, SyncStatus, stable_status};
use crate::health::{Health, HealthStatus, health_of_live};
use crate::model::Cluster;
use crate::time::now_rfc3339;

/// Clusters read at once, by default.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Requests in flight per cluster, by default. Each is a connection (HTTP/1.1), so each costs
/// a TLS handshake: on the local fleet 2–4 beat 8 (see tests/status_collect.rs, `measure_`).
pub const DEFAULT_OBJECT_CONCURRENCY: usize = 4;
/// Time allowed for one cluster, retries included, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Retries of a request that failed transiently, by default.
pub const DEFAULT_RETRIES: u32 = 2;
/// Wait before the first retry, by default; doubled for each further one.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(250);

/// `source` of a status read through the cluster's own API server.
pub const SOURCE_KUBECONFIG: &str = "kubeconfig";
/// `source` of a status read from an Argo CD hub.
pub const SOURCE_ARGOCD: &str = "argocd";

const KUSTOMIZATION_API_VERSION: &str = "kustomize.toolkit.fluxcd.io/v1";
const KUSTOMIZATION_KIND: &str = "Kustomization";

/// One cluster to read: which kubeconfig context reaches it and which objects to look for.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The inventory's name of the cluster.
    pub cluster: String,
    /// The kubeconfig context that reaches it (unused by [`collect_argocd`]).
    pub context: String,
    /// The objects of its index (`.starmap/clusters/<cluster>.yaml`), in index order.
    pub objects: Vec<IndexEntry>,
}

impl Target {
    /// A cluster reached through the context named like it.
    pub fn new(cluster: impl Into<String>, objects: Vec<IndexEntry>) -> Self {
        let cluster = cluster.into();
        Target {
            context: cluster.clone(),
            cluster,
            objects,
        }
    }

    /// An inventory cluster: its context is `spec.kubeconfigContext`, else its name.
    pub fn for_cluster(cluster: &Cluster, objects: Vec<IndexEntry>) -> Self {
        Target {
            cluster: cluster.name.clone(),
            context: cluster
                .spec
                .kubeconfig_context
                .clone()
                .unwrap_or_else(|| cluster.name.clone()),
            objects,
        }
    }
}

/// The Flux Kustomization that applies a cluster's directory (read in every cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluxObject {
    pub namespace: String,
    pub name: String,
}

impl FluxObject {
    /// The Kustomization starmap generates (`flux/<cluster>/`): `flux.name` in `flux.namespace`.
    pub fn from_settings(flux: &FluxSettings) -> Self {
        FluxObject {
            namespace: flux.namespace.clone(),
            name: flux.name.clone(),
        }
    }
}

impl Default for FluxObject {
    /// `flux-system/starmap`, as [`FluxSettings::default`].
    fn default() -> Self {
        FluxObject::from_settings(&FluxSettings::default())
    }
}

/// How to collect.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The kubeconfig file; `None`: `KUBECONFIG` (a list of files is merged), else
    /// `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Clusters read at once (at least 1).
    pub concurrency: usize,
    /// Requests in flight per cluster (at least 1).
    pub object_concurrency: usize,
    /// Time allowed for one cluster, retries included. Each request gets an equal share
    /// (`timeout / (retries + 1)`, at least 1 s), so a hung request is retried in time.
    pub timeout: Duration,
    /// Retries of a request that failed transiently.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// The Flux Kustomization to read in each cluster (its `lastAppliedRevision` and health);
    /// `None`: not read ([`collect`] only).
    pub flux: Option<FluxObject>,
    /// The deploy commit whose index said what to read; copied into each status.
    pub deploy_commit: Option<String>,
    /// With OCI delivery: the deploy commit of each pushed manifest (`sha256:…` → sha), from
    /// the record of published artifacts, for agents that report only the digest they run.
    pub artifact_revisions: HashMap<String, String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kubeconfig: None,
            concurrency: DEFAULT_CONCURRENCY,
            object_concurrency: DEFAULT_OBJECT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            backoff: DEFAULT_BACKOFF,
            flux: Some(FluxObject::default()),
            deploy_commit: None,
            artifact_revisions: HashMap::new(),
        }
    }
}

impl Options {
    /// The deploy commit a revision an agent reports names: a git revision (`main@sha1:<sha>`,
    /// `<sha>`) directly, an OCI one (`latest@sha256:<digest>`, `sha256:<digest>`) through
    /// [`Options::artifact_revisions`].
    pub fn commit_of(&self, revision: &str) -> Option<String> {
        match revision.find("sha256:") {
            Some(at) => self.artifact_revisions.get(&revision[at..]).cloned(),
            None => revision_sha(revision),
        }
    }

    /// Defaults, with the Flux Kustomization of the source's `starmap.yaml` (none when
    /// `flux.enabled` is false).
    pub fn from_config(config: &Config) -> Self {
        Options {
            flux: config.flux.enabled.then(|| FluxObject::from_settings(&config.flux)),
            ..Options::default()
        }
    }
}

/// What collection learned about one cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterOutcome {
    /// The cluster (or the hub reporting it) answered: its status, `reachable: true`.
    Seen(ClusterStatus),
    /// It did not: keep its last known status, marked stale. `error` is one line
    /// ("https://10.0.0.1:6443: connection refused (3 attempts)", "timed out after 20s ...").
    Unreachable { cluster: String, error: String },
}

impl ClusterOutcome {
    pub fn cluster(&self) -> &str {
        match self {
            ClusterOutcome::Seen(s) => &s.cluster,
            ClusterOutcome::Unreachable { cluster, .. } => cluster,
        }
    }

    pub fn seen(&self) -> Option<&ClusterStatus> {
        match self {
            ClusterOutcome::Seen(s) => Some(s),
            ClusterOutcome::Unreachable { .. } => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            ClusterOutcome::Seen(_) => None,
            ClusterOutcome::Unreachable { error, .. } => Some(error),
        }
    }
}

/// Reads every target through its kubeconfig context; one outcome per target, in the order of
/// `targets`. `Err` only when the kubeconfig cannot be read; everything about one cluster
/// (unknown context, refused connection, timeout) is that cluster's
/// [`ClusterOutcome::Unreachable`].
pub async fn collect(targets: Vec<Target>, options: &Options) -> Result<Vec<ClusterOutcome>> {
    let kubeconfig = Arc::new(load_kubeconfig(options)?);
    let options = Arc::new(options.clone());
    let mut outcomes: Vec<(usize, ClusterOutcome)> = stream::iter(targets.into_iter().enumerate())
        .map(|(i, target)| {
            let (kubeconfig, options) = (kubeconfig.clone(), options.clone());
            let cluster = target.cluster.clone();
            // A task per cluster: the runtime spreads clusters over its threads. Aborted if
            // `collect` is dropped.
            let mut task = AbortOnDrop(tokio::spawn(async move {
                collect_cluster(&kubeconfig, &target, &options).await
            }));
            async move {
                let outcome = (&mut task.0).await.unwrap_or_else(|e| ClusterOutcome::Unreachable {
                    cluster,
                    error: client::one_line(&format!("internal error: {e}")),
                });
                (i, outcome)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    outcomes.sort_by_key(|(i, _)| *i);
    Ok(outcomes.into_iter().map(|(_, o)| o).collect())
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn load_kubeconfig(options: &Options) -> Result<Kubeconfig> {
    match &options.kubeconfig {
        Some(path) => Kubeconfig::read_from(path).map_err(|e| {
            Error::msg(format!(
                "cannot read kubeconfig {}: {}",
                path.display(),
                client::error_chain(&e)
            ))
        }),
        None => {
            Kubeconfig::read().map_err(|e| Error::msg(format!("cannot read kubeconfig: {}", client::error_chain(&e))))
        }
    }
}

/// One cluster within its timeout.
async fn collect_cluster(kubeconfig: &Kubeconfig, target: &Target, options: &Options) -> ClusterOutcome {
    let unreachable = |error: String| ClusterOutcome::Unreachable {
        cluster: target.cluster.clone(),
        error,
    };
    let read = async {
        let reader = Reader::new(kubeconfig, &target.context, options).await?;
        read_cluster(&reader, target, options).await
    };
    match tokio::time::timeout(options.timeout, read).await {
        Ok(Ok(status)) => ClusterOutcome::Seen(status),
        Ok(Err(error)) => unreachable(error),
        Err(_) => unreachable(timed_out(kubeconfig, &target.context, options.timeout)),
    }
}

/// `timed out after 20s (https://host:6443)`.
fn timed_out(kubeconfig: &Kubeconfig, context: &str, timeout: Duration) -> String {
    match client::server_of(kubeconfig, context) {
        Some(server) => format!("timed out after {} ({server})", show_duration(timeout)),
        None => format!("timed out after {}", show_duration(timeout)),
    }
}

/// What discovery found for one `apiVersion`.
enum Served {
    Kinds(Kinds),
    Absent,
    /// Discovery of this group version failed for a reason that concerns only its objects
    /// (403, ...).
    Failed(String),
}

async fn read_cluster(reader: &Reader, target: &Target, options: &Options) -> Result<ClusterStatus, String> {
    let parallel = options.object_concurrency.max(1);
    let mut api_versions: Vec<&str> = target.objects.iter().map(|o| o.api_version.as_str()).collect();
    if options.flux.is_some() {
        api_versions.push(KUSTOMIZATION_API_VERSION);
    }
    api_versions.sort_unstable();
    api_versions.dedup();

    // Discovery: one request per group version, cached for this cluster.
    // (The futures are built before they are streamed: closures over borrowed items inside a
    // spawned task trip rustc's higher-ranked lifetime check.)
    let discoveries: Vec<_> = api_versions.into_iter().map(|av| discover(reader, av)).collect();
    let served: HashMap<&str, Served> = stream::iter(discoveries)
        .buffer_unordered(parallel)
        .try_collect()
        .await?;

    let reads: Vec<_> = target
        .objects
        .iter()
        .enumerate()
        .map(|(i, entry)| read_entry(reader, &served, i, entry))
        .collect();
    let mut objects: Vec<(usize, ObjectStatus)> = stream::iter(reads).buffer_unordered(parallel).try_collect().await?;
    objects.sort_by_key(|(i, _)| *i);

    let (sync, applied_revision) = match &options.flux {
        None => (None, None),
        Some(flux) => {
            let live = read_object(
                reader,
                &served,
                KUSTOMIZATION_API_VERSION,
                KUSTOMIZATION_KIND,
                Some(&flux.namespace),
                &flux.name,
            )
            .await?;
            kustomization_sync(flux, live, options)
        }
    };

    Ok(ClusterStatus {
        cluster: target.cluster.clone(),
        reachable: true,
        stale: false,
        last_seen: Some(now_rfc3339()),
        error: None,
        source: SOURCE_KUBECONFIG.into(),
        deploy_commit: options.deploy_commit.clone(),
        applied_revision,
        current: false,
        sync,
        objects: objects.into_iter().map(|(_, o)| o).collect(),
    })
}

/// Discovery of one `apiVersion`; `Err` only for a failure of the whole cluster.
async fn discover<'a>(reader: &Reader, api_version: &'a str) -> Result<(&'a str, Served), String> {
    let served = match reader.kinds(api_version).await {
        Ok(kinds) => Served::Kinds(kinds),
        Err(Failure::NotFound) => Served::Absent,
        Err(Failure::Object(m)) => Served::Failed(m),
        Err(Failure::Cluster(m)) => return Err(m),
    };
    Ok((api_version, served))
}

async fn read_entry(
    reader: &Reader,
    served: &HashMap<&str, Served>,
    i: usize,
    entry: &IndexEntry,
) -> Result<(usize, ObjectStatus), String> {
    let live = read_object(
        reader,
        served,
        &entry.api_version,
        &entry.kind,
        entry.namespace.as_deref(),
        &entry.name,
    )
    .await?;
    Ok((i, object_status(entry, live)))
}

/// What reading one object gave.
enum Live {
    Found(Value),
    /// Not there; the message says why when it is not a plain 404 (kind not served).
    Missing(String),
    /// Could not be read (403, ...).
    Unreadable(String),
}

/// `Err` only for a failure of the whole cluster.
async fn read_object(
    reader: &Reader,
    served: &HashMap<&str, Served>,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Live, String> {
    let resource = match served.get(api_version) {
        Some(Served::Kinds(kinds)) => match kinds.get(kind) {
            Some(r) => r,
            None => return Ok(Live::Missing(format!("the cluster serves no {kind} in {api_version}"))),
        },
        Some(Served::Absent) => return Ok(Live::Missing(format!("the cluster does not serve {api_version}"))),
        Some(Served::Failed(m)) => return Ok(Live::Unreadable(m.clone())),
        None => return Ok(Live::Unreadable(format!("{api_version} was not discovered"))),
    };
    match reader.get(resource, namespace, name).await {
        Ok(Some(v)) => Ok(Live::Found(v)),
        Ok(None) => Ok(Live::Missing(String::new())),
        Err(Failure::NotFound) => Ok(Live::Missing(String::new())),
        Err(Failure::Object(m)) => Ok(Live::Unreadable(m)),
        Err(Failure::Cluster(m)) => Err(m),
    }
}

/// The status of one index entry from its live object.
fn object_status(entry: &IndexEntry, live: Live) -> ObjectStatus {
    let (health, object) = match &live {
        Live::Found(v) => (health_of_live(Some(v)), Some(v)),
        Live::Missing(m) if m.is_empty() => (health_of_live(None), None),
        Live::Missing(m) => (HealthStatus::new(Health::Missing, m.clone()), None),
        Live::Unreadable(m) => (HealthStatus::new(Health::Unknown, m.clone()), None),
    };
    let int_at = |path: &[&str]| {
        object
            .and_then(|o| path.iter().try_fold(o, |v, k| v.get(k)))
            .and_then(Value::as_i64)
    };
    ObjectStatus {
        generation: int_at(&["metadata", "generation"]),
        observed_generation: int_at(&["status", "observedGeneration"]),
        status: object
            .and_then(|o| o.get("status"))
            .filter(|s| !s.is_null())
            .map(stable_status),
        ..entry.status(health)
    }
}

/// The sync status and applied revision a Flux Kustomization reports.
fn kustomization_sync(flux: &FluxObject, live: Live, options: &Options) -> (Option<SyncStatus>, Option<String>) {
    let object = format!("{KUSTOMIZATION_KIND}/{}/{}", flux.namespace, flux.name);
    let (health, revision) = match &live {
        Live::Found(v) => (
            health_of_live(Some(v)),
            applied_revision(v).and_then(|r| options.commit_of(r)),
        ),
        Live::Missing(m) if m.is_empty() => (HealthStatus::new(Health::Missing, "not found"), None),
        Live::Missing(m) => (
            HealthStatus::new(Health::Missing, format!("{m} (is Flux installed?)")),
            None,
        ),
        Live::Unreadable(m) => (HealthStatus::new(Health::Unknown, m.clone()), None),
    };
    let sync = SyncStatus {
        object,
        health: health.health,
        message: health.message,
    };
    (Some(sync), revision)
}

/// The revision whose objects a Flux Kustomization put on the cluster. That is
/// `lastAppliedRevision`, except when the newest reconciliation applied its objects and then
/// failed its health checks (`wait: true`): Flux then keeps the older `lastAppliedRevision`,
/// but the objects live are the newer revision's, unhealthy, and a rollout must see them as
/// applied and failing, not as not applied yet.
///
/// From an `OCIRepository`, the revision is the artifact's (`latest@sha256:<digest>`) and the
/// deploy commit is its origin revision (the `org.opencontainers.image.revision` annotation),
/// which Flux reports beside it: that is taken where there is one.
fn applied_revision(kustomization: &Value) -> Option<&str> {
    let newest = kustomization.pointer("/status/history/0");
    let health_failed = newest
        .and_then(|h| h.get("lastReconciledStatus"))
        .and_then(Value::as_str)
        == Some("HealthCheckFailed");
    fn text(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    if health_failed
        && let Some(r) = text(newest.and_then(|h| h.pointer("/metadata/originRevision")))
            .or_else(|| text(newest.and_then(|h| h.pointer("/metadata/revision"))))
    {
        return Some(r);
    }
    text(kustomization.pointer("/status/lastAppliedOriginRevision"))
        .or_else(|| text(kustomization.pointer("/status/lastAppliedRevision")))
}

/// The commit of a Flux or Argo CD revision: `main@sha1:<sha>` (Flux v2), `sha1:<sha>`,
/// `main/<sha>` (older Flux) or a plain sha. `None` for an empty one.
pub fn revision_sha(revision: &str) -> Option<String> {
    let r = revision.trim();
    let r = r.rsplit_once('@').map_or(r, |(_, digest)| digest);
    let r = r.split_once(':').map_or(r, |(_, hex)| hex);
    let r = r.rsplit_once('/').map_or(r, |(_, sha)| sha);
    (!r.is_empty()).then(|| r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_revision_that_failed_its_health_checks_is_applied() {
        // As kustomize-controller v1.9 reports a revision whose Deployment never became ready.
        let failed = json!({"status": {
            "lastAppliedRevision": "main@sha1:aaa",
            "lastAttemptedRevision": "main@sha1:bbb",
            "history": [
                {"digest": "sha256:2", "lastReconciledStatus": "HealthCheckFailed", "metadata": {"revision": "main@sha1:bbb"}},
                {"digest": "sha256:1", "lastReconciledStatus": "ReconciliationSucceeded", "metadata": {"revision": "main@sha1:aaa"}},
            ],
        }});
        assert_eq!(applied_revision(&failed), Some("main@sha1:bbb"));
        let fine = json!({"status": {
            "lastAppliedRevision": "main@sha1:aaa",
            "history": [{"lastReconciledStatus": "ReconciliationSucceeded", "metadata": {"revision": "main@sha1:aaa"}}],
        }});
        assert_eq!(applied_revision(&fine), Some("main@sha1:aaa"));
        // A build or apply failure applied nothing new.
        let broken = json!({"status": {
            "lastAppliedRevision": "main@sha1:aaa",
            "history": [{"lastReconciledStatus": "BuildFailed", "metadata": {"revision": "main@sha1:ccc"}}],
        }});
        assert_eq!(applied_revision(&broken), Some("main@sha1:aaa"));
        assert_eq!(applied_revision(&json!({"status": {}})), None);
    }

    #[test]
    fn revisions() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for r in [
            format!("main@sha1:{sha}"),
            format!("refs/heads/main@sha1:{sha}"),
            format!("sha1:{sha}"),
            format!("main/{sha}"),
            sha.to_string(),
        ] {
            assert_eq!(revision_sha(&r).as_deref(), Some(sha), "{r}");
        }
        assert_eq!(revision_sha(""), None);
    }

    fn entry() -> IndexEntry {
        IndexEntry {
            placements: vec!["web".into()],
            ..IndexEntry::new("apps/v1", "Deployment", Some("shop"), "web")
        }
    }

    #[test]
    fn object_status_from_live() {
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": 3},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 3, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1,
                       "readyReplicas": 1,
                       "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "t1", "lastTransitionTime": "t2"}]}
        });
        let s = object_status(&entry(), Live::Found(live));
        assert_eq!(s.health, Health::Healthy, "{}", s.message);
        assert_eq!((s.generation, s.observed_generation), (Some(3), Some(3)));
        assert_eq!(s.placements, ["web"]);
        assert!(!s.applied);
        let status = s.status.unwrap();
        assert_eq!(status["readyReplicas"], 1);
        assert!(status["conditions"][0].get("lastUpdateTime").is_none());

        let missing = object_status(&entry(), Live::Missing(String::new()));
        assert_eq!(
            (missing.health, missing.status, missing.generation),
            (Health::Missing, None, None)
        );
        let unserved = object_status(&entry(), Live::Missing("the cluster does not serve x/v1".into()));
        assert_eq!(unserved.health, Health::Missing);
        assert_eq!(unserved.message, "the cluster does not serve x/v1");
        let forbidden = object_status(&entry(), Live::Unreadable("forbidden".into()));
        assert_eq!(
            (forbidden.health, forbidden.message.as_str()),
            (Health::Unknown, "forbidden")
        );
    }

    #[test]
    fn kustomization_revision_and_health() {
        let flux = FluxObject::default();
        let k = json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "starmap", "namespace": "flux-system"},
            "status": {"lastAppliedRevision": "main@sha1:abc123",
                       "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded"}]}
        });
        let options = Options::default();
        let (sync, rev) = kustomization_sync(&flux, Live::Found(k), &options);
        let sync = sync.unwrap();
        assert_eq!(sync.object, "Kustomization/flux-system/starmap");
        assert_eq!(sync.health, Health::Healthy);
        assert_eq!(rev.as_deref(), Some("abc123"));
        let (sync, rev) = kustomization_sync(&flux, Live::Missing(String::new()), &options);
        assert_eq!((sync.unwrap().health, rev), (Health::Missing, None));
    }

    #[test]
    fn an_oci_revision_names_the_deploy_commit_through_its_origin_or_the_record() {
        let flux = FluxObject::default();
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let digest = format!("sha256:{}", "d".repeat(64));
        // As kustomize-controller v1.9 reports an OCIRepository's artifact.
        let k = json!({"status": {
            "lastAppliedRevision": format!("latest@{digest}"),
            "lastAppliedOriginRevision": format!("main@sha1:{sha}"),
        }});
        let options = Options::default();
        assert_eq!(
            kustomization_sync(&flux, Live::Found(k), &options).1.as_deref(),
            Some(sha)
        );
        // No origin revision (an agent that reports only the digest): the record maps it.
        let k = json!({"status": {"lastAppliedRevision": format!("latest@{digest}")}});
        assert_eq!(kustomization_sync(&flux, Live::Found(k.clone()), &options).1, None);
        let mut options = Options::default();
        options.artifact_revisions.insert(digest.clone(), sha.to_string());
        assert_eq!(
            kustomization_sync(&flux, Live::Found(k), &options).1.as_deref(),
            Some(sha)
        );
        assert_eq!(options.commit_of(&digest).as_deref(), Some(sha));
        // A failed health check on an OCI revision: the origin of the newest history entry.
        let failed = json!({"status": {
            "lastAppliedRevision": "latest@sha256:1",
            "lastAppliedOriginRevision": "main@sha1:aaa",
            "history": [{"lastReconciledStatus": "HealthCheckFailed",
                         "metadata": {"revision": "latest@sha256:2", "originRevision": "main@sha1:bbb"}}],
        }});
        assert_eq!(applied_revision(&failed), Some("main@sha1:bbb"));
    }

    #[test]
    fn options_from_config() {
        let mut config = Config::default();
        config.flux.namespace = "gitops".into();
        config.flux.name = "edge".into();
        let o = Options::from_config(&config);
        assert_eq!(
            o.flux,
            Some(FluxObject {
                namespace: "gitops".into(),
                name: "edge".into()
            })
        );
        config.flux.enabled = false;
        assert_eq!(Options::from_config(&config).flux, None);
    }
}
