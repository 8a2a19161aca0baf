//! `starmap.yaml` at the source root: settings of the source repo. Every key is optional;
//! unknown keys are errors. Defaults are documented on each field and in the README.

use serde::Deserialize;

use crate::error::{Error, Location, Result};
use crate::yaml::{Step, from_doc, parse_documents};

pub const CONFIG_FILE: &str = "starmap.yaml";

/// Where a source repo keeps its own versions of the templates of generated files.
pub const TEMPLATES_DIR: &str = "templates/";

/// The templates a source repo may override with `templates/<name>` (their built-in texts
/// are `gitops`'s).
pub mod templates {
    pub const FLUX_SYNC: &str = "flux-sync.yaml.j2";
    pub const ARGOCD_APPLICATION: &str = "argocd-application.yaml.j2";
    pub const ARGOCD_APPLICATIONSET: &str = "argocd-applicationset.yaml.j2";
    pub const ARGOCD_ROOT: &str = "argocd-root.yaml.j2";
    pub const ALL: [&str; 4] = [FLUX_SYNC, ARGOCD_APPLICATION, ARGOCD_APPLICATIONSET, ARGOCD_ROOT];
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// gitignore-style globs of source paths that are not read.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Where Argo CD and Flux fetch the deploy repo from.
    #[serde(default)]
    pub deploy: DeploySettings,
    /// The Flux objects generated for each cluster (`flux/<cluster>/`).
    #[serde(default)]
    pub flux: FluxSettings,
    /// The Argo CD objects generated for the fleet (`argocd/`).
    #[serde(default)]
    pub argocd: ArgoCdSettings,
    /// Where status collection commits.
    #[serde(default)]
    pub status: StatusSettings,
    /// One OCI artifact per cluster (delivery at fleet scale); absent: git delivery only.
    #[serde(default)]
    pub oci: Option<OciSettings>,
    /// What may be done with Secrets.
    #[serde(default)]
    pub secrets: SecretSettings,
}

/// `secrets:`. A plaintext Secret in the source is an error unless `allowPlaintext`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretSettings {
    /// Commit plaintext Secrets (each one a warning). Default: false.
    pub allow_plaintext: bool,
}

/// `flux.decryption`: how the kustomize-controller decrypts SOPS-encrypted objects.
#[derive(Debug, Clone, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Decryption {
    /// `sops` (the only provider Flux has).
    pub provider: DecryptionProvider,
    /// Secret (in the Kustomization's namespace) with the private keys; omitted when the
    /// controller gets them otherwise (a cloud KMS through workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecryptionProvider {
    Sops,
}

/// `oci:`: each cluster's directory is also pushed as an OCI artifact,
/// `oci://<repository>/<cluster>:<tag>`, and the generated Flux and Argo CD objects follow it.
#[derive(Debug, Clone, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OciSettings {
    /// `registry.example.com/retail/fleet` (an `oci://` prefix is allowed).
    pub repository: String,
    /// The tag edges follow; moved only after the render commit lands. Default: `latest`.
    #[serde(default = "default_tag")]
    pub tag: String,
    /// Plain HTTP (a registry on localhost); the generated objects say so too. Default: false.
    #[serde(default)]
    pub insecure: bool,
    /// The layer's media type. Default: `application/vnd.oci.image.layer.v1.tar+gzip`, which
    /// Flux and Argo CD both accept as they come; `flux push artifact`'s own
    /// `application/vnd.cncf.flux.content.v1.tar+gzip` needs Argo CD's allow-list extended.
    #[serde(default = "default_layer_media_type")]
    pub layer_media_type: String,
    /// Artifacts pushed at once. Default: 16.
    #[serde(default = "default_oci_concurrency")]
    pub concurrency: usize,
}

fn default_tag() -> String {
    "latest".into()
}

fn default_layer_media_type() -> String {
    "application/vnd.oci.image.layer.v1.tar+gzip".into()
}

fn default_oci_concurrency() -> usize {
    16
}

impl OciSettings {
    /// The repository without a scheme (and without credentials, which belong in
    /// `STARMAP_OCI_USERNAME`/`STARMAP_OCI_PASSWORD` or a docker config): `host[:port]/path`.
    pub fn repository(&self) -> &str {
        let r = self.repository.strip_prefix("oci://").unwrap_or(&self.repository);
        let authority_end = r.find('/').unwrap_or(r.len());
        let r = match r[..authority_end].rfind('@') {
            Some(at) => &r[at + 1..],
            None => r,
        };
        r.trim_end_matches('/')
    }

    /// The registry: `host[:port]`.
    pub fn registry(&self) -> &str {
        self.repository().split('/').next().unwrap_or_default()
    }

    /// `oci://<repository>/<cluster>`, as Flux and Argo CD name a cluster's artifact.
    pub fn url(&self, cluster: &str) -> String {
        format!("oci://{}/{cluster}", self.repository())
    }
}

/// The branch status rounds commit to when `status.branch` is left out: one the edges do not
/// sync, so that a status round is no new revision for every cluster.
pub const DEFAULT_STATUS_BRANCH: &str = "starmap-status";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusSettings {
    /// The branch status rounds commit to. Default: `starmap-status`. The deploy branch itself
    /// keeps the single-branch layout of small fleets (`status/` beside `clusters/`).
    pub branch: Option<String>,
}

impl Config {
    /// The branch status rounds commit to.
    pub fn status_branch(&self) -> &str {
        self.status.branch.as_deref().unwrap_or(DEFAULT_STATUS_BRANCH)
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DeploySettings {
    /// URL of the deploy repo as the clusters reach it. Default: `--deploy` when that is a
    /// URL; without either, no Argo CD or Flux objects are generated.
    pub url: Option<String>,
    /// Branch the clusters follow. Default: `--branch` (itself `main` by default).
    pub branch: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FluxSettings {
    /// Generate `flux/<cluster>/`. Default: true.
    pub enabled: bool,
    /// Namespace of the generated GitRepository and Kustomization. Default: `flux-system`.
    pub namespace: String,
    /// Name of the generated GitRepository and Kustomization. Default: `starmap` (so they
    /// sit beside a `flux bootstrap`'s own `flux-system` objects).
    pub name: String,
    /// How often the GitRepository polls the deploy repo. Default: `1m`.
    pub interval: String,
    /// How often the Kustomization re-applies (drift correction). Default: `10m`.
    pub sync_interval: String,
    /// Delete objects that left the cluster's directory. Default: true.
    pub prune: bool,
    /// Wait for applied objects to become ready. Default: true.
    pub wait: bool,
    /// Timeout of apply and wait. Default: `5m`.
    pub timeout: String,
    /// Secret (in `namespace`) with git credentials; omitted for a public repo.
    pub secret_ref: Option<String>,
    /// `{provider: sops, secretRef: NAME}`: `spec.decryption` of each generated Kustomization.
    pub decryption: Option<Decryption>,
}

impl Default for FluxSettings {
    fn default() -> Self {
        FluxSettings {
            enabled: true,
            namespace: "flux-system".into(),
            name: "starmap".into(),
            interval: "1m".into(),
            sync_interval: "10m".into(),
            prune: true,
            wait: true,
            timeout: "5m".into(),
            secret_ref: None,
            decryption: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgoCdMode {
    /// One ApplicationSet for the fleet.
    ApplicationSet,
    /// One Application per cluster, and a root Application over them (app of apps).
    Applications,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArgoCdGenerator {
    /// Argo CD's cluster generator: every cluster registered in Argo CD and labelled
    /// `starmap.dev/managed: "true"`; its name must equal the inventory's.
    Cluster,
    /// The git directory generator over `clusters/*`; Argo CD cluster names must equal the
    /// inventory's.
    GitDirectory,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgoCdSettings {
    /// Generate `argocd/`. Default: true.
    pub enabled: bool,
    /// Namespace Argo CD runs in. Default: `argocd`.
    pub namespace: String,
    /// AppProject of the generated applications. Default: `default`.
    pub project: String,
    /// `applicationset` (default) or `applications`.
    pub mode: ArgoCdMode,
    /// For `applicationset`: `cluster` (default) or `git-directory`.
    pub generator: ArgoCdGenerator,
    pub sync_policy: SyncPolicy,
}

impl Default for ArgoCdSettings {
    fn default() -> Self {
        ArgoCdSettings {
            enabled: true,
            namespace: "argocd".into(),
            project: "default".into(),
            mode: ArgoCdMode::ApplicationSet,
            generator: ArgoCdGenerator::Cluster,
            sync_policy: SyncPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, serde::Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Sync automatically on every new commit. Default: true.
    pub automated: bool,
    /// Delete resources that left the cluster's directory. Default: true.
    pub prune: bool,
    /// Undo changes made in the cluster. Default: true.
    pub self_heal: bool,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            automated: true,
            prune: true,
            self_heal: true,
        }
    }
}

impl Config {
    /// `starmap.yaml`'s text; `shown` names it in errors. Empty: every default.
    pub fn parse(text: &str, shown: &str) -> Result<Config> {
        let docs = parse_documents(text, shown)?;
        match docs.as_slice() {
            [] => Ok(Config::default()),
            [doc] => {
                let config: Config = from_doc(doc, shown)?;
                // Credentials typed into a URL here are remembered, to be scrubbed from any
                // output (`redact`).
                if let Some(url) = &config.deploy.url {
                    crate::redact::Url::new(url);
                }
                if let Some(oci) = &config.oci {
                    let url = match oci.repository.contains("://") {
                        true => oci.repository.clone(),
                        false => format!("oci://{}", oci.repository),
                    };
                    crate::redact::Url::new(&url);
                }
                if let Some(oci) = &config.oci {
                    let at = |key: &'static str| {
                        Location::new(shown, doc.lines.line_at(&[Step::Key("oci"), Step::Key(key)]))
                    };
                    let repo = oci.repository();
                    let (host, path) = repo.split_once('/').unwrap_or((repo, ""));
                    if host.is_empty() || path.is_empty() || repo.contains(char::is_whitespace) {
                        return Err(Error::at(
                            at("repository"),
                            format!("oci.repository {repo:?} must be REGISTRY/PATH, like registry.example.com/fleet"),
                        ));
                    }
                    if oci.tag.is_empty() || oci.tag.len() > 128 || oci.tag.contains(['/', ':', '@', ' ']) {
                        return Err(Error::at(at("tag"), format!("oci.tag {:?} is not an OCI tag", oci.tag)));
                    }
                    if oci.concurrency == 0 {
                        return Err(Error::at(at("concurrency"), "oci.concurrency must be at least 1"));
                    }
                }
                Ok(config)
            }
            [_, second, ..] => Err(Error::at(
                Location::new(shown, second.line()),
                "starmap.yaml holds one document",
            )),
        }
    }
}
