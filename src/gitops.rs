//! The Argo CD and Flux objects that make each cluster sync its own directory, generated
//! from minijinja templates on every render:
//!
//! ```text
//! flux/<cluster>/kustomization.yaml       resources: [gotk-sync.yaml]
//! flux/<cluster>/gotk-sync.yaml           GitRepository + Kustomization (path ./clusters/<cluster>)
//! argocd/kustomization.yaml               what a hub applies: the ApplicationSet, or the root Application
//! argocd/applicationset.yaml              mode `applicationset`
//! argocd/root.yaml                        mode `applications`: app of apps over argocd/applications/
//! argocd/applications/<cluster>.yaml      mode `applications`: one Application per cluster
//! ```
//!
//! The templates are built in (`templates/` of this project); a source repo overrides any
//! of them with a file of the same name in its own `templates/` directory. Template output
//! is parsed and written again by starmap's YAML writer, so an override cannot produce
//! invalid YAML or inconsistent quoting.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::config::templates::{ARGOCD_APPLICATION, ARGOCD_APPLICATIONSET, ARGOCD_ROOT, FLUX_SYNC};
use crate::config::{ArgoCdMode, Config, TEMPLATES_DIR};
use crate::error::{Error, Location, Result};
use crate::formats::files::{KUSTOMIZATION_FILE, kustomization_yaml};
use crate::formats::{ARGOCD_DIR, FLUX_DIR};
use crate::model::{Cluster, Model, ObjectId};
use crate::yaml;

/// Built-in templates: (file name, text). A source repo may override each (see
/// `config::templates`).
pub const BUILT_IN: [(&str, &str); 4] = [
    (FLUX_SYNC, include_str!("../templates/flux-sync.yaml.j2")),
    (
        ARGOCD_APPLICATION,
        include_str!("../templates/argocd-application.yaml.j2"),
    ),
    (
        ARGOCD_APPLICATIONSET,
        include_str!("../templates/argocd-applicationset.yaml.j2"),
    ),
    (ARGOCD_ROOT, include_str!("../templates/argocd-root.yaml.j2")),
];

pub const FLUX_SYNC_FILE: &str = "gotk-sync.yaml";

/// The generated files of one cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterSyncFiles {
    /// Files of `flux/<cluster>/`: (name, content).
    pub flux: Vec<(String, String)>,
    /// `argocd/applications/<cluster>.yaml`.
    pub application: Option<String>,
}

/// Generates the sync objects; `None` from `new` when nothing is to be generated.
pub struct SyncObjects<'m> {
    model: &'m Model,
    env: minijinja::Environment<'m>,
    /// Shown in errors: the source file of an override, or the built-in template.
    origins: BTreeMap<&'static str, String>,
    context: Value,
}

impl<'m> SyncObjects<'m> {
    /// What the clusters fetch is `starmap.yaml`'s `deploy`, else `cli_deploy_url` (the
    /// `--deploy` flag when it is a URL) and `cli_branch`.
    pub fn new(model: &'m Model, cli_deploy_url: Option<&str>, cli_branch: &str) -> Result<Option<Self>> {
        let config: &Config = &model.config;
        if !config.flux.enabled && !config.argocd.enabled {
            return Ok(None);
        }
        let url = config.deploy.url.clone().or_else(|| cli_deploy_url.map(String::from));
        let Some(url) = url else {
            tracing::info!(
                "no deploy.url in starmap.yaml and --deploy is not a URL: no Argo CD or Flux objects generated"
            );
            return Ok(None);
        };
        // Everyone who reads the deploy repo reads these objects: never with credentials.
        let url = crate::redact::Url::new(&url);
        if url.has_credentials() {
            tracing::warn!(
                "the deploy URL {url} carries credentials; the generated Flux and Argo CD objects name it without them (give the edges a Secret: flux.secretRef, an Argo CD repository Secret)"
            );
        }
        let url = url.shown().to_string();
        let branch = config.deploy.branch.clone().unwrap_or_else(|| cli_branch.to_string());
        let mut env = crate::template::environment();
        // minijinja would JSON-escape every value of a `*.yaml.j2` template; the templates
        // quote user-given strings themselves with `tojson`.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let mut origins = BTreeMap::new();
        for (name, text) in BUILT_IN {
            let (text, origin) = match model.templates.get(name) {
                Some(over) => (over.text.clone(), over.path.clone()),
                None => (text.to_string(), format!("{TEMPLATES_DIR}{name} (built into starmap)")),
            };
            crate::template::add_template(&mut env, name.to_string(), text).map_err(|e| template_error(&origin, &e))?;
            origins.insert(name, origin);
        }
        let context = json!({
            "deploy": {"url": url, "branch": branch},
            "flux": {
                "namespace": config.flux.namespace,
                "name": config.flux.name,
                "interval": config.flux.interval,
                "syncInterval": config.flux.sync_interval,
                "prune": config.flux.prune,
                "wait": config.flux.wait,
                "timeout": config.flux.timeout,
                "secretRef": config.flux.secret_ref,
                "decryption": config.flux.decryption,
            },
            "argocd": {
                "namespace": config.argocd.namespace,
                "project": config.argocd.project,
                "mode": config.argocd.mode,
                "generator": config.argocd.generator,
                "syncPolicy": config.argocd.sync_policy,
            },
            "oci": config.oci.as_ref().map(|oci| json!({
                "repository": oci.repository(),
                "tag": oci.tag,
                "insecure": oci.insecure,
                "layerMediaType": oci.layer_media_type,
            })),
        });
        Ok(Some(SyncObjects {
            model,
            env,
            origins,
            context,
        }))
    }

    /// Everything that shapes the generated files, for the render digest.
    pub fn fingerprint(&self) -> Value {
        let templates: Vec<_> = BUILT_IN
            .iter()
            .map(|(name, _)| {
                self.env
                    .get_template(name)
                    .map(|t| t.source().to_string())
                    .unwrap_or_default()
            })
            .collect();
        json!([self.context, templates])
    }

    /// The top-level directories these objects own in the deploy repo.
    pub fn owned_dirs(&self) -> Vec<&'static str> {
        let mut dirs = Vec::new();
        if self.model.config.flux.enabled {
            dirs.push(FLUX_DIR);
        }
        if self.model.config.argocd.enabled {
            dirs.push(ARGOCD_DIR);
        }
        dirs
    }

    pub fn cluster_files(&self, cluster: &Cluster) -> Result<ClusterSyncFiles> {
        let mut out = ClusterSyncFiles::default();
        let mut ctx = self.context.clone();
        ctx["cluster"] = json!({
            "name": cluster.name,
            "labels": cluster.labels,
            "annotations": cluster.annotations,
            "properties": cluster.spec.properties,
            "server": cluster.spec.server,
            "kubeconfigContext": cluster.spec.kubeconfig_context,
        });
        let config = &self.model.config;
        if config.flux.enabled {
            let sync = self
                .render(FLUX_SYNC, &ctx)
                .map_err(|e| e.with_cluster(&cluster.name))?;
            let kustomization = kustomization_yaml(&[FLUX_SYNC_FILE]);
            out.flux = vec![
                (KUSTOMIZATION_FILE.into(), kustomization),
                (FLUX_SYNC_FILE.into(), sync),
            ];
        }
        if config.argocd.enabled && config.argocd.mode == ArgoCdMode::Applications {
            out.application = Some(
                self.render(ARGOCD_APPLICATION, &ctx)
                    .map_err(|e| e.with_cluster(&cluster.name))?,
            );
        }
        Ok(out)
    }

    /// Files of `argocd/` that are about the whole fleet: (path below `argocd/`, content).
    pub fn fleet_files(&self) -> Result<Vec<(String, String)>> {
        let config = &self.model.config;
        if !config.argocd.enabled {
            return Ok(Vec::new());
        }
        let (template, file) = match config.argocd.mode {
            ArgoCdMode::ApplicationSet => (ARGOCD_APPLICATIONSET, "applicationset.yaml"),
            ArgoCdMode::Applications => (ARGOCD_ROOT, "root.yaml"),
        };
        let mut ctx = self.context.clone();
        ctx["clusters"] = json!(self.model.clusters.iter().map(|c| &c.name).collect::<Vec<_>>());
        let content = self.render(template, &ctx)?;
        let kustomization = kustomization_yaml(&[file]);
        Ok(vec![(KUSTOMIZATION_FILE.into(), kustomization), (file.into(), content)])
    }

    /// Render a template, then parse its output and write it again, checking that every
    /// document is a Kubernetes object.
    fn render(&self, name: &'static str, ctx: &Value) -> Result<String> {
        let origin = &self.origins[name];
        let text = self
            .env
            .get_template(name)
            .and_then(|t| crate::template::render_capped(&t, minijinja::Value::from(minijinja::value::Serde(ctx))))
            .map_err(|e| template_error(origin, &e))?;
        if let Some(values) = fast_objects(&text) {
            return Ok(write_stream(values.iter()));
        }
        let docs = yaml::parse_documents(&text, &format!("{origin} (output)"))?;
        if let Some(doc) = docs.iter().find(|d| ObjectId::of(&d.value).is_none()) {
            return Err(Error::at(
                Location::new(origin.clone(), 0),
                format!(
                    "template output line {}: not a Kubernetes object (apiVersion, kind, metadata.name)",
                    doc.line()
                ),
            ));
        }
        Ok(write_stream(docs.iter().map(|d| &d.value)))
    }
}

/// The documents of a template's output, when the fast reader takes it all and each is a
/// Kubernetes object. The built-in templates write the emitter's subset, which the fast
/// reader takes in a tenth of the time (two templates per cluster, 20,000 at fleet scale);
/// anything else, and every error, goes to the general parser, which knows lines.
fn fast_objects(text: &str) -> Option<Vec<Value>> {
    // minijinja drops a template's last line feed; the fast reader wants it.
    let with_newline;
    let text = if text.ends_with('\n') {
        text
    } else {
        with_newline = format!("{text}\n");
        &with_newline
    };
    let values = yaml::fast::read_stream(text)?;
    values.iter().all(|v| ObjectId::of(v).is_some()).then_some(values)
}

/// Documents written as one stream, separated by `---` when there are several.
fn write_stream<'v>(values: impl ExactSizeIterator<Item = &'v Value>) -> String {
    let several = values.len() > 1;
    let mut out = String::new();
    for value in values {
        if several {
            out.push_str("---\n");
        }
        yaml::write_document(&mut out, value);
    }
    out
}

fn template_error(origin: &str, e: &minijinja::Error) -> Error {
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    Error::at(
        Location::new(origin, e.line().unwrap_or(0) as u32),
        format!("template error: {}{detail}", e.kind()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in per-cluster templates stay in the fast reader's subset with every option
    /// they have, and it reads them as the general parser does. Leaving it shows nowhere but
    /// in the time: minijinja drops a template's last line feed, and until that was handled
    /// every cluster's templates went to the general parser. One is left to it: an
    /// Application of OCI delivery has `path: .`, which the emitter would quote; the
    /// template's text is part of every cluster's input digest, so changing it would change
    /// every digest in the deploy repo.
    #[test]
    fn per_cluster_templates_take_the_fast_reader() {
        let mut env = crate::template::environment();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        for (name, text) in BUILT_IN {
            crate::template::add_template(&mut env, name.to_string(), text.to_string()).unwrap();
        }
        let oci = json!({
            "repository": "registry.example.com/fleet",
            "tag": "latest",
            "insecure": true,
            "layerMediaType": "application/vnd.cncf.flux.content.v1.tar+gzip",
        });
        let mut checked = 0;
        for (oci, secrets, server, automated) in [
            (Value::Null, false, Value::Null, true),
            (oci.clone(), true, json!("https://10.0.0.1:6443"), false),
            (oci, false, Value::Null, true),
            (Value::Null, true, json!("https://10.0.0.1:6443"), false),
        ] {
            let ctx = json!({
                "deploy": {"url": "https://git.example.com/fleet-deploy.git", "branch": "main"},
                "flux": {
                    "namespace": "flux-system", "name": "starmap", "interval": "1m",
                    "syncInterval": "10m", "prune": true, "wait": false, "timeout": "5m",
                    "secretRef": secrets.then_some("deploy-auth"),
                    "decryption": secrets.then(|| json!({"provider": "sops", "secretRef": "sops-age"})),
                },
                "argocd": {
                    "namespace": "argocd", "project": "default", "mode": "applications",
                    "syncPolicy": {"automated": automated, "prune": true, "selfHeal": false},
                },
                "oci": oci,
                "cluster": {"name": "store-0042", "labels": {"region": "eu"}, "server": server},
            });
            for name in [FLUX_SYNC, ARGOCD_APPLICATION] {
                let text = env
                    .get_template(name)
                    .unwrap()
                    .render(minijinja::Value::from(minijinja::value::Serde(&ctx)))
                    .unwrap();
                let oci_application = name == ARGOCD_APPLICATION && !ctx["oci"].is_null();
                let Some(fast) = fast_objects(&text) else {
                    assert!(oci_application, "{name} left the fast reader:\n{text}");
                    continue;
                };
                assert!(!oci_application, "now read fast: say so above");
                let docs = yaml::parse_documents(&text, name).unwrap();
                let general = write_stream(docs.iter().map(|d| &d.value));
                assert_eq!(write_stream(fast.iter()), general, "{name}");
                checked += 1;
            }
        }
        assert_eq!(checked, 6);
    }
}
