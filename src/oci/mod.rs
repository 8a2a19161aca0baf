//! An OCI registry, through the ORAS project's `oci-client`: pushing one cluster's artifact
//! (blobs the registry already has are skipped), reading what a tag points to, and the
//! credentials for it. Requests that fail transiently (connection refused or reset, timeouts,
//! 429, 5xx) are retried with `retry::requests`' jittered backoff; `oci-client` retries nothing
//! itself.
//!
//! Credentials come from `STARMAP_OCI_USERNAME` + `STARMAP_OCI_PASSWORD`, else from a docker
//! `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, its `auths`). They
//! are handed to the client and nowhere else: not logged, not in errors.

mod auth;

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::config::OciSettings;
use crate::error::{Error, Result};
use crate::formats::artifact::{self, CONFIG, MANIFEST_MEDIA_TYPE};

pub use auth::credentials;

/// Retries of a request that failed transiently.
const RETRIES: u32 = 4;
/// The wait before the first retry; doubled for each further one.
const BACKOFF: Duration = Duration::from_millis(200);
/// Time allowed to connect, and for one request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One cluster's artifact, ready to push.
pub struct Artifact<'a> {
    pub cluster: &'a str,
    pub layer: &'a [u8],
    pub layer_digest: &'a str,
    /// The manifest's bytes (`formats::artifact::manifest`).
    pub manifest: &'a [u8],
}

/// The registry of `oci.repository`, with the credentials for it.
pub struct Registry {
    /// Uploads a blob in one PUT (two requests): a cluster's layer is a few kilobytes.
    client: Client,
    /// Uploads in chunks (POST, PATCH, PUT), for a registry that refuses a blob in one PUT.
    chunked: Client,
    auth: RegistryAuth,
    registry: String,
    /// The repository path below the registry (`retail/fleet`).
    path: String,
    layer_media_type: String,
    /// A cluster whose repository holds the config blob: the others mount it from there (one
    /// request instead of three).
    config_holder: std::sync::Mutex<Option<String>>,
}

impl Registry {
    pub fn new(settings: &OciSettings) -> Result<Registry> {
        // rustls with ring only (kube's choice): a second provider would make rustls panic.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = settings.registry().to_string();
        let path = settings
            .repository()
            .split_once('/')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default();
        let client = |monolithic: bool| {
            let config = ClientConfig {
                protocol: if settings.insecure {
                    ClientProtocol::Http
                } else {
                    ClientProtocol::Https
                },
                use_monolithic_push: monolithic,
                connect_timeout: Some(CONNECT_TIMEOUT),
                read_timeout: Some(REQUEST_TIMEOUT),
                ..Default::default()
            };
            Client::try_from(config)
                .map_err(|e| Error::msg(format!("OCI registry {registry}: cannot set up a client: {e}")))
        };
        let (chunked, client) = (client(false)?, client(true)?);
        let auth = match credentials(&registry)? {
            Some((user, password)) => {
                use base64::Engine;
                crate::redact::remember(&password);
                // As a basic Authorization header carries them.
                let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                crate::redact::remember(&basic);
                RegistryAuth::Basic(user, password)
            }
            None => RegistryAuth::Anonymous,
        };
        Ok(Registry {
            client,
            chunked,
            auth,
            registry,
            path,
            layer_media_type: settings.layer_media_type.clone(),
            config_holder: std::sync::Mutex::new(None),
        })
    }

    /// `registry/path/cluster`, as messages name a cluster's repository.
    pub fn name(&self, cluster: &str) -> String {
        format!("{}/{}/{cluster}", self.registry, self.path)
    }

    fn reference(&self, cluster: &str, tag: &str) -> Reference {
        Reference::with_tag(
            self.registry.clone(),
            format!("{}/{cluster}", self.path),
            tag.to_string(),
        )
    }

    /// Whether the registry answers (and the credentials are accepted), before anything is
    /// committed that would need a push.
    pub async fn ping(&self, cluster: &str) -> Result<()> {
        let reference = self.reference(cluster, "latest");
        self.retrying(|| async {
            match &self.auth {
                // Without credentials, a blob question is enough (and `auth` would make the
                // client ask for a token before every later request).
                RegistryAuth::Anonymous => self
                    .client
                    .blob_exists(&reference, &artifact::digest(CONFIG))
                    .await
                    .map(|_| ()),
                auth => self
                    .client
                    .auth(&reference, auth, RegistryOperation::Push)
                    .await
                    .map(|_| ()),
            }
        })
        .await
        .map_err(|e| self.error(cluster, "is not reachable", e))
    }

    /// Push one cluster's artifact and point `tag` at it: the layer and the config unless the
    /// registry has them, then the manifest under the tag. Returns the manifest's digest.
    pub async fn push(&self, artifact: &Artifact<'_>, tag: &str) -> Result<String> {
        let reference = self.reference(artifact.cluster, tag);
        if !matches!(self.auth, RegistryAuth::Anonymous) {
            // A token (or the basic credentials) for this repository.
            self.retrying(|| self.client.auth(&reference, &self.auth, RegistryOperation::Push))
                .await
                .map_err(|e| self.error(artifact.cluster, "refused the credentials", e))?;
        }
        let config_digest = artifact::digest(CONFIG);
        // The config blob is the same for every cluster: mounted from a repository that has it.
        let holder = self.config_holder.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let config_mounted = match holder {
            Some(from) if from != artifact.cluster => {
                let source = self.reference(&from, tag);
                self.client
                    .mount_blob(&reference, &source, &config_digest)
                    .await
                    .is_ok()
            }
            _ => false,
        };
        let blobs: &[(&str, &[u8], &str)] = if config_mounted {
            &[("layer", artifact.layer, artifact.layer_digest)]
        } else {
            &[
                ("layer", artifact.layer, artifact.layer_digest),
                ("config", CONFIG, config_digest.as_str()),
            ]
        };
        for &(what, data, digest) in blobs {
            let exists = self
                .retrying(|| self.client.blob_exists(&reference, digest))
                .await
                .map_err(|e| self.error(artifact.cluster, "cannot be asked for a blob", e))?;
            if exists {
                continue;
            }
            let pushed = match self
                .retrying(|| push_blob(&self.client, &reference, data, digest))
                .await
            {
                // A registry that takes no blob in one PUT: the same blob in chunks.
                Err(e) if refuses_monolithic(&e) => {
                    tracing::debug!(registry = %self.registry, "a blob in one PUT was refused ({e}); uploading in chunks");
                    if !matches!(self.auth, RegistryAuth::Anonymous) {
                        self.retrying(|| self.chunked.auth(&reference, &self.auth, RegistryOperation::Push))
                            .await
                            .map_err(|e| self.error(artifact.cluster, "refused the credentials", e))?;
                    }
                    self.retrying(|| push_blob(&self.chunked, &reference, data, digest))
                        .await
                }
                other => other,
            };
            pushed.map_err(|e| self.error(artifact.cluster, &format!("refused the {what} blob"), e))?;
        }
        let content_type = http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
        self.retrying(|| {
            self.client
                .push_manifest_raw(&reference, artifact.manifest.to_vec(), content_type.clone())
        })
        .await
        .map_err(|e| self.error(artifact.cluster, "refused the manifest", e))?;
        if !config_mounted {
            let mut holder = self.config_holder.lock().unwrap_or_else(|e| e.into_inner());
            holder.get_or_insert_with(|| artifact.cluster.to_string());
        }
        Ok(artifact::digest(artifact.manifest))
    }

    /// The layer media type artifacts are pushed with.
    pub fn layer_media_type(&self) -> &str {
        &self.layer_media_type
    }

    async fn retrying<T, F, Fut>(&self, request: F) -> std::result::Result<T, OciDistributionError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        let mut delays = crate::retry::requests(BACKOFF, RETRIES);
        loop {
            match request().await {
                Err(e) if transient(&e) => match delays.next() {
                    Some(delay) => {
                        tracing::debug!(registry = %self.registry, "transient registry error, retrying: {e}");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    fn error(&self, cluster: &str, what: &str, e: OciDistributionError) -> Error {
        Error::msg(format!("OCI registry {} {what}: {}", self.name(cluster), describe(&e)))
    }
}

/// Worth another try: the registry was unreachable, slow, overloaded or failing.
fn transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => *code == 429 || *code >= 500,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Toomanyrequests)),
        OciDistributionError::RequestError(e) => {
            e.is_connect()
                || e.is_timeout()
                || e.is_request()
                || e.status().is_some_and(|s| s.as_u16() == 429 || s.is_server_error())
        }
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// An error as a user reads it: reqwest's chain of causes ("connection refused"), not only
/// its top line ("error sending request").
/// Push one blob with `client`.
async fn push_blob(
    client: &Client,
    reference: &Reference,
    data: &[u8],
    digest: &str,
) -> std::result::Result<String, OciDistributionError> {
    match client.push_blob(reference, data.to_vec(), digest).await {
        // Some registries store the blob and leave out the Location header the spec asks
        // for: what counts is that the blob is there.
        Err(OciDistributionError::RegistryNoLocationError)
            if client.blob_exists(reference, digest).await.unwrap_or(false) =>
        {
            Ok(String::new())
        }
        other => other,
    }
}

/// A blob upload in one PUT refused as such (not for credentials, and not a missing
/// repository): the registry may take it in chunks.
fn refuses_monolithic(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => matches!(code, 400 | 405 | 411 | 413 | 415 | 416 | 501),
        OciDistributionError::SpecViolationError(_) => true,
        _ => false,
    }
}

fn describe(e: &OciDistributionError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    use super::*;

    /// A registry that refuses a blob in one PUT and takes it in chunks. A fake: both real
    /// registries of the tests (Distribution, crane) take either, so this refusal cannot be
    /// produced for real here. It speaks just enough of the distribution protocol.
    async fn chunks_only_registry(log: Arc<Mutex<Vec<String>>>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let uploads: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (log, uploads) = (log.clone(), uploads.clone());
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut line = String::new();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let (method, target) = (
                            parts.next().unwrap_or("").to_string(),
                            parts.next().unwrap_or("").to_string(),
                        );
                        let mut length = 0;
                        loop {
                            let mut header = String::new();
                            read.read_line(&mut header).await.unwrap();
                            if header.trim().is_empty() {
                                break;
                            }
                            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        read.read_exact(&mut body).await.unwrap();
                        let path = target.split('?').next().unwrap_or("").to_string();
                        log.lock().unwrap().push(format!("{method} {path} {}", body.len()));
                        let (status, headers) = match method.as_str() {
                            "HEAD" => ("404 Not Found", String::new()),
                            "POST" => {
                                let id = format!("{}", uploads.lock().unwrap().len());
                                uploads.lock().unwrap().insert(id.clone(), Vec::new());
                                ("202 Accepted", format!("Location: {path}{id}\r\n"))
                            }
                            "PATCH" => {
                                let id = path.rsplit('/').next().unwrap().to_string();
                                uploads.lock().unwrap().get_mut(&id).unwrap().extend(&body);
                                (
                                    "202 Accepted",
                                    format!("Location: {path}\r\nRange: 0-{}\r\n", body.len()),
                                )
                            }
                            "PUT" if path.contains("/blobs/uploads/") && !body.is_empty() => {
                                ("400 Bad Request", String::new())
                            }
                            "PUT" if path.contains("/blobs/uploads/") => {
                                let digest = target.split("digest=").nth(1).unwrap_or("").replace("%3A", ":");
                                let repo = path.split("/blobs/").next().unwrap().to_string();
                                ("201 Created", format!("Location: {repo}/blobs/{digest}\r\n"))
                            }
                            "PUT" => ("201 Created", format!("Location: {path}\r\n")),
                            _ => ("404 Not Found", String::new()),
                        };
                        let reply = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\n\r\n");
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn a_registry_that_takes_blobs_only_in_chunks_gets_them_in_chunks() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let port = chunks_only_registry(log.clone()).await;
        let settings = OciSettings {
            repository: format!("127.0.0.1:{port}/fleet"),
            tag: "latest".into(),
            insecure: true,
            layer_media_type: artifact::OCI_LAYER_MEDIA_TYPE.into(),
            concurrency: 1,
        };
        let registry = Registry::new(&settings).unwrap();
        let layer = artifact::layer([("kustomization.yaml", b"resources: []\n".as_slice())]);
        let annotations = artifact::Annotations {
            created: "2026-01-01T00:00:00Z".into(),
            source: "https://git.example.com/fleet.git".into(),
            revision: artifact::revision("main", &"a".repeat(40)),
        };
        let manifest = artifact::manifest(
            &layer.digest,
            layer.bytes.len(),
            artifact::OCI_LAYER_MEDIA_TYPE,
            &annotations,
        );
        let a = Artifact {
            cluster: "c1",
            layer: &layer.bytes,
            layer_digest: &layer.digest,
            manifest: &manifest,
        };
        let digest = registry.push(&a, "latest").await.unwrap();
        assert_eq!(digest, artifact::digest(&manifest));
        let log = log.lock().unwrap().clone();
        let refused = log
            .iter()
            .filter(|l| l.starts_with("PUT /v2/fleet/c1/blobs/uploads/") && !l.ends_with(" 0"))
            .count();
        let chunks = log
            .iter()
            .filter(|l| l.starts_with("PATCH /v2/fleet/c1/blobs/uploads/"))
            .count();
        assert!(refused >= 1, "a blob in one PUT was tried first: {log:#?}");
        assert!(chunks >= 2, "then the layer and the config in chunks: {log:#?}");
        assert!(
            log.iter().any(|l| l.starts_with("PUT /v2/fleet/c1/manifests/latest")),
            "{log:#?}"
        );
    }
}
