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
    client: Client,
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
        let config = ClientConfig {
            protocol: if settings.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // Two requests per blob (POST, PUT): a cluster's layer is a few kilobytes.
            use_monolithic_push: true,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(REQUEST_TIMEOUT),
            ..Default::default()
        };
        let client = Client::try_from(config)
            .map_err(|e| Error::msg(format!("OCI registry {registry}: cannot set up a client: {e}")))?;
        let auth = match credentials(&registry)? {
            Some((user, password)) => RegistryAuth::Basic(user, password),
            None => RegistryAuth::Anonymous,
        };
        Ok(Registry {
            client,
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
            let pushed = self
                .retrying(|| async {
                    match self.client.push_blob(&reference, data.to_vec(), digest).await {
                        // Some registries store the blob and leave out the Location header the
                        // spec asks for: what counts is that the blob is there.
                        Err(OciDistributionError::RegistryNoLocationError)
                            if self.client.blob_exists(&reference, digest).await.unwrap_or(false) =>
                        {
                            Ok(String::new())
                        }
                        other => other,
                    }
                })
                .await;
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
