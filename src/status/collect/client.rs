//! Talking to one API server: a client per kubeconfig context, every request bounded and
//! retried, and errors turned into one readable line.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
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

/// A client of one API server, with the request budget of [`Options`].
pub(crate) struct Reader {
    pub client: Client,
    /// `https://host:port`, prefixed to transport errors.
    pub server: String,
    retries: u32,
    backoff: Duration,
    attempt_timeout: Duration,
}

impl Reader {
    /// A client for `context` of `kubeconfig`; `Err` is the one-line reason it cannot be built
    /// (no such context, unreadable certificate, ...).
    pub async fn new(kubeconfig: &Kubeconfig, context: &str, options: &Options) -> Result<Reader, String> {
        let narrowed =
            narrow(kubeconfig, context).ok_or_else(|| format!("no context {context:?} in the kubeconfig"))?;
        let kopts = KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let mut config = Config::from_custom_kubeconfig(narrowed, &kopts)
            .await
            .map_err(|e| format!("kubeconfig context {context:?}: {}", error_chain(&e)))?;
        let attempt_timeout = attempt_timeout(options);
        config.connect_timeout = Some(attempt_timeout);
        config.read_timeout = Some(attempt_timeout);
        config.write_timeout = Some(attempt_timeout);
        let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
        let client = Client::try_from(config).map_err(|e| format!("{server}: {}", error_chain(&e)))?;
        Ok(Reader {
            client,
            server,
            retries: options.retries,
            backoff: options.backoff,
            attempt_timeout,
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
    /// the cluster does not serve that group version.
    pub async fn kinds(&self, api_version: &str) -> Result<Kinds, Failure> {
        let gv: GroupVersion = api_version
            .parse()
            .map_err(|_| Failure::Object(format!("invalid apiVersion {api_version:?}")))?;
        let group = self.call(|| kube::discovery::pinned_group(&self.client, &gv)).await?;
        Ok(group
            .versioned_resources(&gv.version)
            .into_iter()
            .map(|(ar, caps)| (ar.kind.clone(), (ar, caps)))
            .collect())
    }

    /// The live object, `None` when it does not exist.
    pub async fn get(
        &self,
        (resource, caps): &(ApiResource, ApiCapabilities),
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, Failure> {
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), namespace.unwrap_or("default"), resource),
            Scope::Cluster => Api::all_with(self.client.clone(), resource),
        };
        // A Secret's data never leaves the cluster: its metadata is all status needs (a
        // Secret has no status, and exists or not).
        let object = if resource.group.is_empty() && resource.kind == "Secret" {
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

/// What each request may take: the cluster's timeout shared by the attempts (at least 1 s),
/// so a hung request is retried before the cluster's time runs out.
fn attempt_timeout(options: &Options) -> Duration {
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
    let (cluster, user) = match &ctx.context {
        Some(c) => (Some(c.cluster.as_str()), c.user.as_deref()),
        None => (None, None),
    };
    Some(Kubeconfig {
        preferences: None,
        clusters: kubeconfig
            .clusters
            .iter()
            .filter(|c| Some(c.name.as_str()) == cluster)
            .cloned()
            .collect(),
        auth_infos: kubeconfig
            .auth_infos
            .iter()
            .filter(|a| Some(a.name.as_str()) == user)
            .cloned()
            .collect(),
        contexts: vec![ctx.clone()],
        current_context: Some(context.to_string()),
        extensions: None,
        kind: kubeconfig.kind.clone(),
        api_version: kubeconfig.api_version.clone(),
        other: Default::default(),
    })
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
