//! Rendering: from a `Plan` to the files of every cluster directory. Pure (no I/O) and
//! parallel over clusters: templates, customizations, normalization, YAML output.

mod normalize;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Location, Result};
use crate::formats::files;
use crate::formats::index::{ClusterIndex, IndexEntry};
use crate::model::{Cluster, Model, ObjectId, Workload};
use crate::plan::{ClusterPlan, PlacedObject};
use crate::template::{self, PathSeg, Templates, collect_templates, expand_leaves};
use crate::yaml::{self, Step};
pub use normalize::normalize;

/// Bumped whenever rendering changes its output for the same input, so cached cluster
/// directories are rendered again.
const RENDER_FORMAT: &str = "starmap-render-1";

/// The largest object starmap writes: the API server refuses request bodies over 3 MiB.
pub const MAX_OBJECT_BYTES: usize = 3 << 20;

/// The rendered directory of one cluster.
#[derive(Debug, Clone)]
pub struct RenderedCluster {
    pub name: String,
    /// The cluster's labels, written into its index for the dashboard to group by.
    pub labels: BTreeMap<String, String>,
    /// Object files, sorted by path (relative to the cluster directory).
    pub objects: Vec<RenderedObject>,
    /// `kustomization.yaml`'s content.
    pub kustomization: String,
}

#[derive(Debug, Clone)]
pub struct RenderedObject {
    pub file: String,
    pub content: String,
    pub api_version: String,
    pub id: ObjectId,
    /// Index into `Model::workloads`; `None` for an object kept from the branch tip because a
    /// rollout holds it back (`desired::hold`).
    pub workload: Option<usize>,
    /// The source path it was rendered from.
    pub source: String,
    pub placements: Vec<String>,
    pub customizations: Vec<String>,
    /// What each customization did, when rendering for `explain`.
    pub changes: Vec<Change>,
}

/// One thing a customization did to an object (for `explain`).
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub customization: String,
    pub what: String,
}

/// Everything that must exist before clusters are rendered: compiled templates.
pub struct Renderer<'m> {
    model: &'m Model,
    templates: Templates<'m, 'm>,
    explain: bool,
}

/// The template environment lives outside the renderer, which borrows it.
pub fn environment() -> minijinja::Environment<'static> {
    template::environment()
}

impl<'m> Renderer<'m> {
    /// Compile every template of the model; a syntax error names where the text is.
    pub fn new(model: &'m Model, env: &'m minijinja::Environment<'static>) -> Result<Self> {
        let mut texts: Vec<(&'m str, Location, Option<&'m ObjectId>)> = Vec::new();
        for w in model.workloads.iter().filter(|w| w.templated) {
            collect_templates(&w.object, &mut Vec::new(), &mut |text, path| {
                texts.push((
                    text,
                    Location::new(w.source.path.clone(), w.lines.line_at(path)),
                    Some(&w.id),
                ));
            });
        }
        for c in &model.customizations {
            for (i, patch) in c.spec.patches.iter().enumerate() {
                if let Some(value) = patch.get("value") {
                    let base = [
                        Step::Key("spec"),
                        Step::Key("patches"),
                        Step::Index(i),
                        Step::Key("value"),
                    ];
                    collect_templates(value, &mut base.to_vec(), &mut |text, path| {
                        texts.push((
                            text,
                            Location::new(c.location.path.clone(), c.lines.line_at(path)),
                            None,
                        ));
                    });
                }
            }
            if let Some(merge) = &c.spec.merge {
                let base = [Step::Key("spec"), Step::Key("merge")];
                collect_templates(merge, &mut base.to_vec(), &mut |text, path| {
                    texts.push((
                        text,
                        Location::new(c.location.path.clone(), c.lines.line_at(path)),
                        None,
                    ));
                });
            }
        }
        let templates = Templates::compile(env, texts.iter().map(|t| t.0)).map_err(|(text, e)| {
            let (_, at, id) = texts.iter().find(|t| t.0 == text).expect("text came from this list");
            let err = Error::at(at.clone(), format!("template {text:?}: {e}"));
            match id {
                Some(id) => err.with_object(id.to_string()),
                None => err,
            }
        })?;
        Ok(Renderer {
            model,
            templates,
            explain: false,
        })
    }

    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Record what each customization changes (slower; for `explain`).
    pub fn explaining(mut self) -> Self {
        self.explain = true;
        self
    }

    /// Render the given clusters in parallel. On failure, the error of the first cluster
    /// (in name order) is returned, so errors are deterministic too.
    pub fn render(&self, plans: &[&ClusterPlan]) -> Result<Vec<RenderedCluster>> {
        // Collect every result first: rayon's short-circuiting collect would return
        // whichever error came first in time.
        let results: Vec<Result<RenderedCluster>> = plans.par_iter().map(|p| self.render_cluster(p)).collect();
        results.into_iter().collect()
    }

    pub fn render_cluster(&self, plan: &ClusterPlan) -> Result<RenderedCluster> {
        let cluster = &self.model.clusters[plan.cluster];
        // Converted once per cluster; each object's context shares it (a cheap clone).
        let cluster_ctx = minijinja::Value::from(minijinja::value::Serde(cluster.template_context()));
        let mut objects = Vec::with_capacity(plan.objects.len());
        for placed in &plan.objects {
            let object = self
                .render_object(&cluster_ctx, placed)
                .map_err(|e| e.with_cluster(&cluster.name))?;
            objects.push(object);
        }
        objects.sort_by(|a, b| a.file.cmp(&b.file));
        for pair in objects.windows(2) {
            if pair[0].file == pair[1].file {
                let at = pair[1].workload.map(|w| self.model.workloads[w].source.clone());
                return Err(Error::at(
                    at.unwrap_or_else(|| Location::new(pair[1].source.clone(), 0)),
                    format!(
                        "{} and {} would be written to the same file {}",
                        pair[0].id, pair[1].id, pair[1].file
                    ),
                )
                .with_cluster(&cluster.name));
            }
        }
        Ok(RenderedCluster::new(cluster.name.clone(), objects).with_labels(cluster.labels.clone()))
    }

    fn render_object(&self, cluster_ctx: &minijinja::Value, placed: &PlacedObject) -> Result<RenderedObject> {
        let model = self.model;
        let w: &Workload = &model.workloads[placed.workload];
        let at_leaf = |path: &[Step<'_>]| Location::new(w.source.path.clone(), w.lines.line_at(path));
        let context = minijinja::context! {
            cluster => cluster_ctx.clone(),
            object => minijinja::Value::from(minijinja::value::Serde(object_context(&w.object))),
        };
        let mut object = w.object.clone();
        if w.templated {
            expand_leaves(&mut object, &self.templates, &context, &mut Vec::new()).map_err(|(path, text, e)| {
                let steps: Vec<Step<'_>> = path.iter().map(PathSeg::step).collect();
                Error::at(at_leaf(&steps), format!("template {text:?}: {e}")).with_object(w.id.to_string())
            })?;
        }
        let mut changes = Vec::new();
        for &ci in &placed.customizations {
            let c = &model.customizations[ci];
            let at = |path: &[Step<'_>]| Location::new(c.location.path.clone(), c.lines.line_at(path));
            let fail = |loc: Location, msg: String| {
                Error::at(loc, format!("customization {:?}: {msg}", c.name)).with_object(w.id.to_string())
            };
            for (i, raw) in c.spec.patches.iter().enumerate() {
                let mut op = raw.clone();
                if let Some(value) = op.get_mut("value") {
                    let mut base = vec![
                        PathSeg::Key("spec".into()),
                        PathSeg::Key("patches".into()),
                        PathSeg::Index(i),
                        PathSeg::Key("value".into()),
                    ];
                    expand_leaves(value, &self.templates, &context, &mut base).map_err(|(path, text, e)| {
                        let steps: Vec<Step<'_>> = path.iter().map(PathSeg::step).collect();
                        fail(at(&steps), format!("patches[{i}]: template {text:?}: {e}"))
                    })?;
                }
                let here = at(&[Step::Key("spec"), Step::Key("patches"), Step::Index(i)]);
                let operation: json_patch::PatchOperation =
                    serde_json::from_value(op.clone()).map_err(|e| fail(here.clone(), format!("patches[{i}]: {e}")))?;
                json_patch::patch(&mut object, std::slice::from_ref(&operation)).map_err(|e| {
                    fail(
                        here.clone(),
                        format!(
                            "patches[{i}] ({}) failed: {}",
                            describe_op(&op),
                            patch_failure(&e, &object, &op)
                        ),
                    )
                })?;
                if self.explain {
                    changes.push(Change {
                        customization: c.name.clone(),
                        what: describe_op(&op),
                    });
                }
            }
            if let Some(merge) = &c.spec.merge {
                let mut patch = merge.clone();
                let mut base = vec![PathSeg::Key("spec".into()), PathSeg::Key("merge".into())];
                expand_leaves(&mut patch, &self.templates, &context, &mut base).map_err(|(path, text, e)| {
                    let steps: Vec<Step<'_>> = path.iter().map(PathSeg::step).collect();
                    fail(at(&steps), format!("merge: template {text:?}: {e}"))
                })?;
                json_patch::merge(&mut object, &patch);
                if self.explain {
                    let mut leaves = Vec::new();
                    leaf_paths(&patch, String::new(), &mut leaves);
                    for (path, value) in leaves {
                        changes.push(Change {
                            customization: c.name.clone(),
                            what: format!("merge {path} = {value}"),
                        });
                    }
                }
            }
            if w.sops && object != w.object {
                return Err(fail(
                    at(&[Step::Key("spec")]),
                    "would change this object, which is encrypted with SOPS: SOPS signs every value, so Flux \
                     could no longer decrypt it (leave it out of the customization's targets, or change it \
                     before encrypting it)"
                        .to_string(),
                ));
            }
        }
        if w.sops {
            // Written exactly as it came: key order and values are SOPS's.
        } else {
            normalize(&mut object);
            if !model.config.secrets.allow_plaintext
                && let Some(field) = crate::secrets::plaintext_field(&object)
            {
                // The source's own plaintext Secrets were refused while loading: this one was
                // made by its customizations.
                let names: Vec<&str> = placed
                    .customizations
                    .iter()
                    .map(|&c| model.customizations[c].name.as_str())
                    .collect();
                return Err(Error::at(
                    w.source.clone(),
                    format!(
                        "customizations {names:?} make this a Secret with plaintext in {field}: {}",
                        crate::secrets::PLAINTEXT_HINT
                    ),
                )
                .with_object(w.id.to_string()));
            }
        }
        let Some(id) = ObjectId::of(&object) else {
            return Err(Error::at(
                w.source.clone(),
                "after customization the object has no string apiVersion, kind and metadata.name",
            )
            .with_object(w.id.to_string()));
        };
        if id != w.id
            && let Err((_, e)) = crate::spec::validate_k8s_name(&id.name, id.namespace.as_deref())
        {
            return Err(Error::at(w.source.clone(), format!("after customization: {e}")).with_object(w.id.to_string()));
        }
        let api_version = object["apiVersion"].as_str().unwrap_or_default().to_string();
        let content = yaml::to_yaml_string(&object);
        if content.len() > MAX_OBJECT_BYTES {
            return Err(Error::at(
                w.source.clone(),
                format!(
                    "the rendered object is {:.1} MiB; the Kubernetes API server takes at most {} MiB per request",
                    content.len() as f64 / (1 << 20) as f64,
                    MAX_OBJECT_BYTES >> 20
                ),
            )
            .with_object(w.id.to_string()));
        }
        Ok(RenderedObject {
            file: files::object_file(&id),
            content,
            api_version,
            id,
            workload: Some(placed.workload),
            source: w.source.path.clone(),
            placements: placed
                .placed_by
                .iter()
                .map(|p| model.placements[p.placement].name.clone())
                .collect(),
            customizations: placed
                .customizations
                .iter()
                .map(|&c| model.customizations[c].name.clone())
                .collect(),
            changes,
        })
    }
}

/// Why a patch operation failed, in the user's terms.
fn patch_failure(e: &json_patch::PatchError, object: &Value, op: &Value) -> String {
    let path = op.get("path").and_then(Value::as_str).unwrap_or("");
    match e.kind {
        json_patch::PatchErrorKind::TestFailed => match object.pointer(path) {
            Some(actual) => format!("the value at {path} is {actual}"),
            None => format!("{path} does not exist in the object"),
        },
        json_patch::PatchErrorKind::InvalidPointer => {
            format!("{path} does not exist in the object (or its parent is not a map or list)")
        }
        json_patch::PatchErrorKind::InvalidFromPointer => {
            let from = op.get("from").and_then(Value::as_str).unwrap_or("");
            format!("from {from} does not exist in the object")
        }
        _ => e.kind.to_string(),
    }
}

fn describe_op(op: &Value) -> String {
    let name = op.get("op").and_then(Value::as_str).unwrap_or("?");
    let path = op.get("path").and_then(Value::as_str).unwrap_or("?");
    match (op.get("value"), op.get("from").and_then(Value::as_str)) {
        (Some(v), _) => format!("{name} {path} = {v}"),
        (None, Some(from)) => format!("{name} {from} -> {path}"),
        (None, None) => format!("{name} {path}"),
    }
}

fn leaf_paths(v: &Value, prefix: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, sub) in m {
                leaf_paths(
                    sub,
                    format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        _ => out.push((if prefix.is_empty() { "/".into() } else { prefix }, v.to_string())),
    }
}

/// `object` in templates: apiVersion, kind, metadata.name, metadata.namespace.
fn object_context(o: &Value) -> Value {
    json!({
        "apiVersion": o.get("apiVersion"),
        "kind": o.get("kind"),
        "metadata": {
            "name": o.pointer("/metadata/name"),
            "namespace": o.pointer("/metadata/namespace"),
        },
    })
}

/// Digest of everything that shapes every cluster's directory (specs, workloads, and
/// starmap's own output format), computed once per render.
pub fn global_digest(model: &Model) -> Sha256 {
    let mut h = Sha256::new();
    h.update(RENDER_FORMAT.as_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    let mut feed = |v: &Value| {
        let bytes = serde_json::to_vec(v).unwrap_or_default();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    };
    for p in &model.placements {
        // Rollout settings and suspension decide which revision a cluster gets, not what
        // a revision is: changing them must not render every cluster again.
        let mut spec = p.spec.clone();
        spec.rollout = None;
        spec.suspend = false;
        feed(&json!([p.name, spec]));
    }
    for c in &model.customizations {
        feed(&json!([c.name, c.spec]));
    }
    for w in &model.workloads {
        feed(&json!([w.source.path, w.object]));
    }
    // The inventory enters only through each cluster's own digest: a cluster's directory
    // does not depend on the other clusters.
    h
}

/// Digest of the inputs of one cluster's directory: the global digest plus the cluster.
pub fn cluster_digest(global: &Sha256, cluster: &Cluster) -> String {
    let mut h = global.clone();
    let bytes = serde_json::to_vec(&json!([
        cluster.name,
        cluster.labels,
        cluster.annotations,
        cluster.spec
    ]))
    .unwrap_or_default();
    h.update(&bytes);
    format!("sha256:{}", hex::encode(h.finalize()))
}

impl RenderedCluster {
    /// A cluster of `objects` (sorted by file), with the `kustomization.yaml` listing them.
    pub fn new(name: String, objects: Vec<RenderedObject>) -> RenderedCluster {
        let files: Vec<&str> = objects.iter().map(|o| o.file.as_str()).collect();
        let kustomization = files::kustomization_yaml(&files);
        RenderedCluster {
            name,
            labels: BTreeMap::new(),
            objects,
            kustomization,
        }
    }

    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> RenderedCluster {
        self.labels = labels;
        self
    }

    /// Its index (`.starmap/clusters/<cluster>.yaml`): which object, from which source,
    /// through which placements. Status collection reads it to know what to look for.
    pub fn index(&self) -> ClusterIndex {
        ClusterIndex {
            cluster: self.name.clone(),
            labels: self.labels.clone(),
            artifact: None,
            objects: self
                .objects
                .iter()
                .map(|o| IndexEntry {
                    file: o.file.clone(),
                    api_version: o.api_version.clone(),
                    kind: o.id.kind.clone(),
                    namespace: o.id.namespace.clone(),
                    name: o.id.name.clone(),
                    source: Some(o.source.clone()),
                    placements: o.placements.clone(),
                    customizations: o.customizations.clone(),
                })
                .collect(),
        }
    }

    /// The files of its directory: (path relative to it, content), objects then
    /// `kustomization.yaml`.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.objects
            .iter()
            .map(|o| (o.file.as_str(), o.content.as_bytes()))
            .chain(std::iter::once((
                crate::formats::files::KUSTOMIZATION_FILE,
                self.kustomization.as_bytes(),
            )))
    }

    /// Digest of what `placement` puts on this cluster: its objects' files and contents. Two
    /// renders giving the same digest give the cluster the same files of the placement.
    pub fn placement_digest(&self, placement: &str) -> String {
        let mut h = Sha256::new();
        for o in self
            .objects
            .iter()
            .filter(|o| o.placements.iter().any(|p| p == placement))
        {
            h.update((o.file.len() as u64).to_le_bytes());
            h.update(o.file.as_bytes());
            h.update((o.content.len() as u64).to_le_bytes());
            h.update(o.content.as_bytes());
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }
}
