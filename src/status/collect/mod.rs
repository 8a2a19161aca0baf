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
mod connections;
mod kubeconfig;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use kube::config::Kubeconfig;
use serde_json::Value;

pub use argocd::{ArgoCdHub, collect_argocd};
pub use connections::Connections;

use self::client::{Failure, Kinds, ListKey, Reader, show_duration};
use self::connections::IndexedKubeconfig;
use crate::config::{Config, FluxSettings};
use crate::error::Result;
use crate::formats::index::IndexEntry;
use crate::formats::status::{ClusterStatus, ObjectStatus, SyncStatus, stable_status};
use crate::health::{Health, HealthStatus, health_of_live};
use crate::model::Cluster;
use crate::time::now_rfc3339;

/// Clusters read at once, by default. Reading a cluster mostly waits (for its answers, or for
/// its API server's CPU), so many in flight keep both sides busy: 64 was 1.4× faster than 16
/// over 3,000 contexts (`cargo bench --bench collect`), and over slow links it matters more.
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Requests in flight per cluster, by default. Each is a connection (HTTP/1.1) kept open
/// between rounds and a TLS handshake to open: with lists a cluster needs about four requests,
/// and one connection each was faster than four on 3,000 contexts (`cargo bench --bench
/// collect`), with a quarter of the open files.
pub const DEFAULT_OBJECT_CONCURRENCY: usize = 1;
/// Time allowed for one cluster, retries included, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Retries of a request that failed transiently, by default.
pub const DEFAULT_RETRIES: u32 = 2;
/// Wait before the first retry, by default; doubled for each further one.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(250);
/// Objects of one kind in one namespace from which one list beats a GET each, by default.
pub const DEFAULT_LIST_AT: usize = 3;
/// The most objects one list request may return. A namespace holding more of the kind is read
/// with GETs (a list's page is then mostly objects starmap did not place).
const LIST_LIMIT: u32 = 500;

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
    /// A kind with at least this many objects in one namespace (or cluster-scoped) is read
    /// with one list request instead of a GET per object; 0: GETs only. A list that is
    /// refused (RBAC may allow `get` but not `list`) or does not fit in one page of
    /// [`LIST_LIMIT`] falls back to GETs.
    pub list_at: usize,
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
            list_at: DEFAULT_LIST_AT,
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
    collect_with(targets, options, &Connections::default()).await
}

/// [`collect`] with clients kept in `connections`, for the next round to reuse (see
/// [`Connections`]); the clients of contexts not in `targets` are dropped.
pub async fn collect_with(
    targets: Vec<Target>,
    options: &Options,
    connections: &Connections,
) -> Result<Vec<ClusterOutcome>> {
    let kubeconfig = Arc::new(IndexedKubeconfig::new(load_kubeconfig(options)?));
    connections.retain(targets.iter().map(|t| t.context.as_str()));
    let options = Arc::new(options.clone());
    let step = &crate::progress::step("reading clusters", targets.len());
    let mut outcomes: Vec<(usize, ClusterOutcome)> = stream::iter(targets.into_iter().enumerate())
        .map(|(i, target)| {
            let (kubeconfig, options, connections) = (kubeconfig.clone(), options.clone(), connections.clone());
            let cluster = target.cluster.clone();
            // A task per cluster: the runtime spreads clusters over its threads. Aborted if
            // `collect` is dropped.
            let mut task = AbortOnDrop(tokio::spawn(async move {
                collect_cluster(&kubeconfig, &connections, &target, &options).await
            }));
            async move {
                let outcome = (&mut task.0).await.unwrap_or_else(|e| ClusterOutcome::Unreachable {
                    cluster,
                    error: client::one_line(&format!("internal error: {e}")),
                });
                step.advance(1);
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
    kubeconfig::load(options.kubeconfig.as_deref())
}

/// One cluster within its timeout.
async fn collect_cluster(
    kubeconfig: &IndexedKubeconfig,
    connections: &Connections,
    target: &Target,
    options: &Options,
) -> ClusterOutcome {
    let unreachable = |error: String| ClusterOutcome::Unreachable {
        cluster: target.cluster.clone(),
        error,
    };
    let read = async {
        let reader = connections.reader(kubeconfig, &target.context, options).await?;
        read_cluster(&reader, target, options).await
    };
    match tokio::time::timeout(options.timeout, read).await {
        Ok(Ok(status)) => ClusterOutcome::Seen(status),
        Ok(Err(error)) => unreachable(error),
        Err(_) => unreachable(timed_out(&kubeconfig.config, &target.context, options.timeout)),
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
    Kinds(Arc<Kinds>),
    Absent,
    /// Discovery of this group version failed for a reason that concerns only its objects
    /// (403, ...).
    Failed(String),
}

async fn read_cluster(reader: &Reader, target: &Target, options: &Options) -> Result<ClusterStatus, String> {
    let parallel = options.object_concurrency.max(1);
    // The kinds wanted of each apiVersion.
    let mut wanted: HashMap<&str, Vec<&str>> = HashMap::new();
    for o in &target.objects {
        wanted.entry(&o.api_version).or_default().push(&o.kind);
    }
    if options.flux.is_some() {
        wanted
            .entry(KUSTOMIZATION_API_VERSION)
            .or_default()
            .push(KUSTOMIZATION_KIND);
    }
    let mut wanted: Vec<(&str, Vec<&str>)> = wanted.into_iter().collect();
    wanted.sort_unstable();

    // Discovery: one request per group version, remembered by the client.
    // (The futures are built before they are streamed: closures over borrowed items inside a
    // spawned task trip rustc's higher-ranked lifetime check.)
    let discoveries: Vec<_> = wanted.iter().map(|(av, kinds)| discover(reader, av, kinds)).collect();
    let served: HashMap<&str, Served> = stream::iter(discoveries)
        .buffer_unordered(parallel)
        .try_collect()
        .await?;

    // One list per kind and namespace with enough objects, then a GET for each object no list
    // answered for.
    let mut live: Vec<Option<Live>> = target.objects.iter().map(|_| None).collect();
    let lists: Vec<_> = list_groups(reader, &served, target, options.list_at)
        .into_iter()
        .map(|(key, members)| {
            let members = members
                .into_iter()
                .map(|i| (i, target.objects[i].name.as_str()))
                .collect();
            read_list(reader, &served, key, members)
        })
        .collect();
    let listed: Vec<Vec<(usize, Live)>> = stream::iter(lists).buffer_unordered(parallel).try_collect().await?;
    for (i, l) in listed.into_iter().flatten() {
        live[i] = Some(l);
    }
    let reads: Vec<_> = target
        .objects
        .iter()
        .enumerate()
        .filter(|(i, _)| live[*i].is_none())
        .map(|(i, entry)| read_entry(reader, &served, i, entry))
        .collect();
    let read: Vec<(usize, Live)> = stream::iter(reads).buffer_unordered(parallel).try_collect().await?;
    for (i, l) in read {
        live[i] = Some(l);
    }
    let objects: Vec<ObjectStatus> = target
        .objects
        .iter()
        .zip(live)
        .map(|(entry, l)| object_status(entry, l.unwrap_or_else(|| Live::Unreadable("not read".into()))))
        .collect();

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
        objects,
    })
}

/// Discovery of one `apiVersion`; `Err` only for a failure of the whole cluster.
async fn discover<'a>(reader: &Reader, api_version: &'a str, kinds: &[&str]) -> Result<(&'a str, Served), String> {
    let served = match reader.kinds(api_version, kinds).await {
        Ok(kinds) => Served::Kinds(kinds),
        Err(Failure::NotFound) => Served::Absent,
        Err(Failure::Object(m)) => Served::Failed(m),
        Err(Failure::Cluster(m)) => return Err(m),
    };
    Ok((api_version, served))
}

/// The kinds and namespaces worth a list: at least `list_at` objects, served, listable and not
/// known to overflow a page; with the indexes of their objects.
fn list_groups(
    reader: &Reader,
    served: &HashMap<&str, Served>,
    target: &Target,
    list_at: usize,
) -> Vec<(ListKey, Vec<usize>)> {
    if list_at == 0 {
        return vec![];
    }
    let mut groups: HashMap<(&str, &str, Option<&str>), Vec<usize>> = HashMap::new();
    for (i, o) in target.objects.iter().enumerate() {
        groups
            .entry((&o.api_version, &o.kind, o.namespace.as_deref()))
            .or_default()
            .push(i);
    }
    let mut groups: Vec<(ListKey, Vec<usize>)> = groups
        .into_iter()
        .filter(|((av, kind, _), members)| {
            members.len() >= list_at
                && matches!(served.get(av), Some(Served::Kinds(k))
                    if k.get(*kind).is_some_and(|(_, caps)| caps.supports_operation(kube::discovery::verbs::LIST)))
        })
        .map(|((av, kind, ns), members)| ((av.to_string(), kind.to_string(), ns.map(str::to_string)), members))
        .filter(|(key, _)| !reader.crowded(key))
        .collect();
    groups.sort_unstable();
    groups
}

/// One list for the objects `members` of `key`. Objects it did not settle (a refused list, a
/// namespace with more than a page of the kind) are left out, for GETs.
async fn read_list(
    reader: &Reader,
    served: &HashMap<&str, Served>,
    key: ListKey,
    members: Vec<(usize, &str)>,
) -> Result<Vec<(usize, Live)>, String> {
    let Some(Served::Kinds(kinds)) = served.get(key.0.as_str()) else {
        return Ok(vec![]);
    };
    let Some(resource) = kinds.get(&key.1) else {
        return Ok(vec![]);
    };
    let (mut items, complete) = match reader.list(resource, key.2.as_deref(), LIST_LIMIT).await {
        Ok(page) => page,
        Err(Failure::Cluster(m)) => return Err(m),
        Err(Failure::NotFound | Failure::Object(_)) => return Ok(vec![]),
    };
    if !complete {
        reader.mark_crowded(key);
    }
    Ok(members
        .into_iter()
        .filter_map(|(i, name)| match items.remove(name) {
            Some(object) => Some((i, Live::Found(object))),
            None if complete => Some((i, Live::Missing(String::new()))),
            None => None,
        })
        .collect())
}

async fn read_entry(
    reader: &Reader,
    served: &HashMap<&str, Served>,
    i: usize,
    entry: &IndexEntry,
) -> Result<(usize, Live), String> {
    let live = read_object(
        reader,
        served,
        &entry.api_version,
        &entry.kind,
        entry.namespace.as_deref(),
        &entry.name,
    )
    .await?;
    Ok((i, live))
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
