//! Talking to one API server: a client per kubeconfig context, every request bounded and
//! retried, and errors turned into one readable line.

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
use kube::core::GroupVersion;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Client, Config};
use serde_json::Value;

use super::Options;

/// Why a request gave no answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    /// 404: the object (or the API group version) does not exist.
    NotFound,
    /// This object cannot be read (403, a bad answer): report it Unknown, go on.
    Object(String),
    /// The cluster cannot be read (refused, timed out, 5xx after retries, 401): stop.
    Cluster(String),
}

/// A request's error, before retries decide.
enum Classified {
    Transient(String),
    Final(Failure),
}

/// How long a discovered group version is trusted by a kept client. A kind missing from the
/// cached answer is discovered again at once, so the cache only delays noticing a kind that
/// went away (its objects then read as 404, Missing, anyway).
const DISCOVERY_TTL: Duration = Duration::from_secs(600);

/// A client of one API server, with the request budget of [`Options`]. Kept across status
/// rounds by [`super::Connections`]: its connections stay open (hyper's pool) and its TLS
/// sessions resume, and what it discovered is remembered.
pub(crate) struct Reader {
    pub client: Client,
    /// `https://host:port`, prefixed to transport errors.
    pub server: String,
    retries: u32,
    backoff: Duration,
    attempt_timeout: Duration,
    /// Group versions discovered, with when.
    discovered: Mutex<HashMap<String, (Instant, Arc<Kinds>)>>,
    /// (apiVersion, kind, namespace) whose list did not fit in one page: read with GETs.
    crowded: Mutex<HashSet<ListKey>>,
    /// Requests sent, retries included.
    pub requests: AtomicUsize,
}

/// A kind in a namespace (`None`: cluster-scoped), as listed.
pub(crate) type ListKey = (String, String, Option<String>);

impl Reader {
    /// A client for `context` of `kubeconfig`; `Err` is the one-line reason it cannot be built
    /// (no such context, unreadable certificate, ...).
    pub async fn new(kubeconfig: &Kubeconfig, context: &str, options: &Options) -> Result<Reader, String> {
        let narrowed =
            narrow(kubeconfig, context).ok_or_else(|| format!("no context {context:?} in the kubeconfig"))?;
        Reader::connect(narrowed, context, options).await
    }

    /// A client for `context` of a kubeconfig narrowed to it ([`narrow_to`]).
    pub async fn connect(narrowed: Kubeconfig, context: &str, options: &Options) -> Result<Reader, String> {
        let kopts = KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let mut config = Config::from_custom_kubeconfig(narrowed, &kopts)
            .await
            .map_err(|e| format!("kubeconfig context {context:?}: {}", error_chain(&e)))?;
        let attempt_timeout = attempt_timeout(options);
        config.connect_timeout = Some(attempt_timeout);
        // No socket read or write timeout: `call` bounds every attempt, and a read timeout
        // would also close an idle pooled connection after `attempt_timeout`, so the next
        // round paid a TLS handshake again.
        config.read_timeout = None;
        config.write_timeout = None;
        let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
        let client = Client::try_from(config).map_err(|e| format!("{server}: {}", error_chain(&e)))?;
        Ok(Reader {
            client,
            server,
            retries: options.retries,
            backoff: options.backoff,
            attempt_timeout,
            discovered: Mutex::default(),
            crowded: Mutex::default(),
            requests: AtomicUsize::new(0),
        })
    }

    /// Runs `request` until it answers, retrying transient failures (connection refused or
    /// reset, no answer within the attempt timeout, 429, 5xx) with jittered exponential backoff
    /// (`retry::requests`).
    pub async fn call<T, F, Fut>(&self, request: F) -> Result<T, Failure>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = kube::Result<T>>,
    {
        let mut delays = crate::retry::requests(self.backoff, self.retries);
        let mut attempt = 0;
        loop {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = match tokio::time::timeout(self.attempt_timeout, request()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => classify(&e, &self.server),
                Err(_) => Classified::Transient(format!(
                    "{}: no answer within {}",
                    self.server,
                    show_duration(self.attempt_timeout)
                )),
            };
            match outcome {
                Classified::Final(f) => return Err(f),
                Classified::Transient(m) => match delays.next() {
                    Some(delay) => {
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None if attempt == 0 => return Err(Failure::Cluster(m)),
                    None => return Err(Failure::Cluster(format!("{m} ({} attempts)", attempt + 1))),
                },
            }
        }
    }

    /// The kinds served under `api_version` (`v1`, `apps/v1`), by kind. `Err(NotFound)` when
    /// the cluster does not serve that group version. An earlier answer is reused within
    /// [`DISCOVERY_TTL`] when it has every kind of `wanted`.
    pub async fn kinds(&self, api_version: &str, wanted: &[&str]) -> Result<Arc<Kinds>, Failure> {
        if let Some((at, kinds)) = lock(&self.discovered).get(api_version)
            && at.elapsed() < DISCOVERY_TTL
            && wanted.iter().all(|k| kinds.contains_key(*k))
        {
            return Ok(kinds.clone());
        }
        let gv: GroupVersion = api_version
            .parse()
            .map_err(|_| Failure::Object(format!("invalid apiVersion {api_version:?}")))?;
        let group = self.call(|| kube::discovery::pinned_group(&self.client, &gv)).await?;
        let kinds: Arc<Kinds> = Arc::new(
            group
                .versioned_resources(&gv.version)
                .into_iter()
                .map(|(ar, caps)| (ar.kind.clone(), (ar, caps)))
                .collect(),
        );
        lock(&self.discovered).insert(api_version.to_string(), (Instant::now(), kinds.clone()));
        Ok(kinds)
    }

    /// The objects of one kind in `namespace` (every namespace's for a cluster-scoped kind), by
    /// name, from one page of at most `limit`; the flag says whether that page was all of them.
    pub async fn list(
        &self,
        (resource, caps): &(ApiResource, ApiCapabilities),
        namespace: Option<&str>,
        limit: u32,
    ) -> Result<(HashMap<String, Value>, bool), Failure> {
        let api = self.api(resource, caps, namespace);
        let params = ListParams::default().limit(limit);
        let typed = |metadata: Value| serde_json::json!({"apiVersion": resource.api_version, "kind": resource.kind, "metadata": metadata});
        let (items, next): (Vec<Value>, Option<String>) = if is_secret(resource) {
            let list = self.call(|| api.list_metadata(&params)).await?;
            let items = list
                .items
                .into_iter()
                .map(|o| typed(serde_json::to_value(o.metadata).unwrap_or_default()))
                .collect();
            (items, list.metadata.continue_)
        } else {
            let list = self.call(|| api.list(&params)).await?;
            let mut items = Vec::with_capacity(list.items.len());
            for o in list.items {
                let mut v =
                    serde_json::to_value(o).map_err(|e| Failure::Object(format!("cannot read the object: {e}")))?;
                // List items come without their type; a GET's object has it.
                if let Some(map) = v.as_object_mut() {
                    map.insert("apiVersion".into(), resource.api_version.clone().into());
                    map.insert("kind".into(), resource.kind.clone().into());
                }
                items.push(v);
            }
            (items, list.metadata.continue_)
        };
        let by_name = items
            .into_iter()
            .filter_map(|v| Some((v.pointer("/metadata/name")?.as_str()?.to_string(), v)))
            .collect();
        Ok((by_name, next.is_none_or(|c| c.is_empty())))
    }

    /// Whether the list of `key` did not fit in one page before.
    pub fn crowded(&self, key: &ListKey) -> bool {
        lock(&self.crowded).contains(key)
    }

    pub fn mark_crowded(&self, key: ListKey) {
        lock(&self.crowded).insert(key);
    }

    fn api(&self, resource: &ApiResource, caps: &ApiCapabilities, namespace: Option<&str>) -> Api<DynamicObject> {
        match caps.scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), namespace.unwrap_or("default"), resource),
            Scope::Cluster => Api::all_with(self.client.clone(), resource),
        }
    }

    /// The live object, `None` when it does not exist.
    pub async fn get(
        &self,
        (resource, caps): &(ApiResource, ApiCapabilities),
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, Failure> {
        let api = self.api(resource, caps, namespace);
        let object = if is_secret(resource) {
            self.call(|| api.get_metadata(name)).await.map(|meta| {
                serde_json::json!({
                    "apiVersion": resource.api_version,
                    "kind": resource.kind,
                    "metadata": meta.metadata,
                })
            })
        } else {
            self.call(|| api.get(name)).await.and_then(|o| {
                serde_json::to_value(o).map_err(|e| Failure::Object(format!("cannot read the object: {e}")))
            })
        };
        match object {
            Ok(object) => Ok(Some(object)),
            Err(Failure::NotFound) => Ok(None),
            Err(f) => Err(f),
        }
    }
}

/// The resources of one group version, by kind.
pub(crate) type Kinds = HashMap<String, (ApiResource, ApiCapabilities)>;

/// A Secret's data never leaves the cluster: its metadata is all status needs (a Secret has
/// no status, and exists or not).
fn is_secret(resource: &ApiResource) -> bool {
    resource.group.is_empty() && resource.kind == "Secret"
}

/// A poisoned lock only means another task panicked mid-update of a cache: use it anyway.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What each request may take: the cluster's timeout shared by the attempts (at least 1 s),
/// so a hung request is retried before the cluster's time runs out.
pub(crate) fn attempt_timeout(options: &Options) -> Duration {
    let attempts = options.retries.saturating_add(1);
    (options.timeout / attempts)
        .max(Duration::from_secs(1))
        .min(options.timeout)
}

/// A kubeconfig with only `context`, its cluster and its user: cheap to hand to kube, which
/// takes the kubeconfig by value (a fleet's kubeconfig can hold thousands of contexts with
/// embedded certificates).
fn narrow(kubeconfig: &Kubeconfig, context: &str) -> Option<Kubeconfig> {
    let ctx = kubeconfig.contexts.iter().find(|c| c.name == context)?;
    let (cluster, user) = context_refs(ctx);
    let cluster = kubeconfig.clusters.iter().find(|c| Some(c.name.as_str()) == cluster);
    let user = kubeconfig.auth_infos.iter().find(|a| Some(a.name.as_str()) == user);
    Some(narrow_to(kubeconfig, ctx, cluster, user))
}

/// The names of the cluster and the user a context refers to.
pub(crate) fn context_refs(ctx: &NamedContext) -> (Option<&str>, Option<&str>) {
    match &ctx.context {
        Some(c) => (Some(c.cluster.as_str()), c.user.as_deref()),
        None => (None, None),
    }
}

/// A kubeconfig of one context with its cluster and user (the first of each name, as kube
/// merges kubeconfigs).
pub(crate) fn narrow_to(
    kubeconfig: &Kubeconfig,
    ctx: &NamedContext,
    cluster: Option<&NamedCluster>,
    user: Option<&NamedAuthInfo>,
) -> Kubeconfig {
    Kubeconfig {
        preferences: None,
        clusters: cluster.into_iter().cloned().collect(),
        auth_infos: user.into_iter().cloned().collect(),
        contexts: vec![ctx.clone()],
        current_context: Some(ctx.name.clone()),
        extensions: None,
        kind: kubeconfig.kind.clone(),
        api_version: kubeconfig.api_version.clone(),
        other: Default::default(),
    }
}

/// The API server URL of `context`, for messages.
pub(crate) fn server_of(kubeconfig: &Kubeconfig, context: &str) -> Option<String> {
    let ctx = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)?
        .cluster
        .as_ref()?;
    Some(cluster.server.as_deref()?.trim_end_matches('/').to_string())
}

fn classify(e: &kube::Error, server: &str) -> Classified {
    use Classified::{Final, Transient};
    match e {
        kube::Error::Api(status) => {
            let message = if status.message.is_empty() {
                format!("{} {}", status.code, status.reason)
            } else {
                status.message.clone()
            };
            match status.code {
                404 => Final(Failure::NotFound),
                401 => Final(Failure::Cluster(format!("{server}: unauthorized: {message}"))),
                429 | 500 | 502 | 503 | 504 => Transient(format!("{server}: {} {message}", status.code)),
                _ => Final(Failure::Object(message)),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            let (message, retry) = transport_message(e);
            let message = format!("{server}: {message}");
            if retry {
                Transient(message)
            } else {
                Final(Failure::Cluster(message))
            }
        }
        kube::Error::SerdeError(err) => Final(Failure::Object(format!("cannot decode the answer: {err}"))),
        kube::Error::Auth(_) => Final(Failure::Cluster(format!(
            "{server}: authentication: {}",
            error_chain(e)
        ))),
        _ => Final(Failure::Cluster(format!("{server}: {}", error_chain(e)))),
    }
}

/// A transport error in a few words ("connection refused"), and whether to retry it. TLS
/// failures (a bad certificate) are not retried.
fn transport_message(e: &(dyn StdError + 'static)) -> (String, bool) {
    use std::io::ErrorKind::*;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            let words = match io.kind() {
                ConnectionRefused => "connection refused",
                ConnectionReset => "connection reset",
                ConnectionAborted => "connection aborted",
                TimedOut => "connection timed out",
                BrokenPipe => "connection closed",
                UnexpectedEof => "connection closed unexpectedly",
                HostUnreachable => "host unreachable",
                NetworkUnreachable => "network unreachable",
                AddrNotAvailable => "address not available",
                InvalidData => return (one_line(&io.to_string()), false),
                _ => return (one_line(&io.to_string()), true),
            };
            return (words.to_string(), true);
        }
        cur = err.source();
    }
    (error_chain(e), true)
}

/// `outer: inner: innermost` on one line, skipping a source whose text its parent already
/// shows.
pub(crate) fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = vec![];
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = one_line(&err.to_string());
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `20s`, `1.5s`, `250ms`.
pub(crate) fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(show_duration(Duration::from_secs(20)), "20s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(show_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn attempt_timeouts_share_the_cluster_timeout() {
        let mut o = Options::default();
        assert_eq!(attempt_timeout(&o), Duration::from_secs(20) / 3);
        o.timeout = Duration::from_secs(2);
        assert_eq!(attempt_timeout(&o), Duration::from_secs(1));
        o.timeout = Duration::from_millis(500);
        assert_eq!(attempt_timeout(&o), Duration::from_millis(500));
    }

    #[test]
    fn io_errors_read_as_words() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(transport_message(&refused), ("connection refused".to_string(), true));
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate:\n UnknownIssuer",
        );
        assert_eq!(
            transport_message(&tls),
            ("invalid peer certificate: UnknownIssuer".to_string(), false)
        );
    }

    #[test]
    fn api_errors_by_code() {
        let status = |code: u16, message: &str| {
            kube::Error::Api(kube::core::Status::failure(message, "").with_code(code).boxed())
        };
        let s = "https://h:6443";
        assert!(matches!(
            classify(&status(404, "nf"), s),
            Classified::Final(Failure::NotFound)
        ));
        assert!(
            matches!(classify(&status(503, "busy"), s), Classified::Transient(m) if m == "https://h:6443: 503 busy")
        );
        assert!(
            matches!(classify(&status(403, "forbidden x"), s), Classified::Final(Failure::Object(m)) if m == "forbidden x")
        );
        assert!(
            matches!(classify(&status(401, "no"), s), Classified::Final(Failure::Cluster(m)) if m.contains("unauthorized"))
        );
    }
}
