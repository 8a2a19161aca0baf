//! From source files to a validated `Model`: parse every document, sort spec objects from
//! workloads, check everything a user can get wrong, and say where.

use std::collections::{BTreeMap, HashMap};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rayon::prelude::*;
use serde_json::Value;

use super::build_cache::BuildCache;
use super::builders::{Builds, Chart, ToolDirs, build_kustomize};
use super::tree::SourceTree;
use crate::config::{self, CONFIG_FILE, Config, TEMPLATES_DIR};
use crate::error::{Error, Location, Result};
use crate::model::{Cluster, Customization, Model, ObjectId, Placement, SourceInfo, TemplateOverride, Workload};
use crate::secrets;
use crate::spec::{
    self, API_VERSION, CLUSTER_NAME_LABEL, ClusterDoc, CustomizationDoc, LabelSelector, PlacementDoc, StatusSummary,
    StatusSummaryDoc, TEMPLATE_ANNOTATION,
};
use crate::yaml::{Doc, LineTree, Step, from_doc, parse_documents};

/// Where Cluster objects come from besides the source.
pub enum Inventory {
    /// Only the source.
    SourceOnly,
    /// Also this file, directory or repository (which holds only Cluster objects).
    Extra(SourceTree),
}

/// Read, parse and validate a source (and inventory) into a model.
pub fn load_model(source: &SourceTree, inventory: &Inventory) -> Result<Model> {
    if let Some((_, e)) = source.unreadable.iter().find(|(path, _)| path == CONFIG_FILE) {
        return Err(e.clone());
    }
    let config = match source.file(CONFIG_FILE) {
        Some(file) => Config::parse(&file.text, &source.display_path(CONFIG_FILE))?,
        None => Config::default(),
    };
    let ignore = ignore_matcher(&config, source)?;
    let mut parts = Parts::default();
    collect(source, Some(&ignore), false, &mut parts)?;
    if let Inventory::Extra(tree) = inventory {
        collect(tree, None, true, &mut parts)?;
    }
    parts.into_model(
        SourceInfo {
            display: source.display.clone(),
            commit: source.commit.clone(),
        },
        config,
    )
}

fn ignore_matcher(config: &Config, source: &SourceTree) -> Result<Gitignore> {
    let mut builder = GitignoreBuilder::new("/");
    for glob in &config.ignore {
        builder.add_line(None, glob).map_err(|e| {
            Error::at(
                Location::new(source.display_path(CONFIG_FILE), 0),
                format!("ignore: invalid glob {glob:?}: {e}"),
            )
        })?;
    }
    builder
        .build()
        .map_err(|e| Error::msg(format!("{CONFIG_FILE}: ignore: {e}")))
}

fn is_ignored(ignore: &Gitignore, path: &str) -> bool {
    ignore
        .matched_path_or_any_parents(format!("/{path}"), false)
        .is_ignore()
}

/// A spec document with where it came from, so errors can point at a field's line.
struct Spec<T> {
    doc: T,
    at: Location,
    lines: LineTree,
}

impl<T> Spec<T> {
    /// The location of the field at `path` (or of the deepest part of it that exists).
    fn field(&self, path: &[Step<'_>]) -> Location {
        Location::new(self.at.path.clone(), self.lines.line_at(path))
    }
}

/// Everything read from the files, before cross-checks.
#[derive(Default)]
struct Parts {
    clusters: Vec<Spec<ClusterDoc>>,
    placements: Vec<Spec<PlacementDoc>>,
    customizations: Vec<Spec<CustomizationDoc>>,
    summaries: Vec<Spec<StatusSummaryDoc>>,
    workloads: Vec<Workload>,
    templates: BTreeMap<String, TemplateOverride>,
    charts: Vec<Chart>,
    /// The tool runs (and the source on disk), kept while charts still need rendering.
    builds: Option<Builds>,
    warnings: Vec<String>,
}

/// A parsed document and where it came from.
struct Located {
    doc: Doc,
    path: String,
}

fn collect(tree: &SourceTree, ignore: Option<&Gitignore>, inventory_only: bool, parts: &mut Parts) -> Result<()> {
    for f in tree.files.iter().filter(|f| f.path.ends_with(".j2")) {
        let name = f.path.trim_start_matches(TEMPLATES_DIR);
        if inventory_only || !config::templates::ALL.contains(&name) {
            tracing::warn!("{}: not a template starmap knows; ignored", tree.display_path(&f.path));
            continue;
        }
        parts.templates.insert(
            name.to_string(),
            TemplateOverride {
                path: tree.display_path(&f.path),
                text: f.text.clone(),
            },
        );
    }
    // A file that could not be read is an error where it would have been used.
    if let Some((_, e)) = tree
        .unreadable
        .iter()
        .find(|(path, _)| ignore.is_none_or(|i| !is_ignored(i, path)))
    {
        return Err(e.clone());
    }
    let files: Vec<_> = tree
        .files
        .iter()
        .filter(|f| !f.path.ends_with(".j2"))
        .filter(|f| f.path != CONFIG_FILE || inventory_only)
        .filter(|f| ignore.is_none_or(|i| !is_ignored(i, &f.path)))
        .collect();
    // Directories built by kustomize or helm are not read file by file.
    let tool_dirs = if inventory_only {
        ToolDirs::default()
    } else {
        ToolDirs::find(files.iter().map(|f| f.path.as_str()))
    };
    let files: Vec<_> = files.into_iter().filter(|f| !tool_dirs.contains(&f.path)).collect();
    if !tool_dirs.is_empty() {
        let builds = Builds::new(tree.on_disk(), BuildCache::from_env());
        for (dir, docs) in build_kustomize(tree, &builds, &tool_dirs.kustomize)? {
            for doc in docs.into_iter().filter(|d| !d.value.is_null()) {
                parts.workloads.push(workload(doc.value, doc.lines, &dir, 0)?);
            }
        }
        for dir in &tool_dirs.charts {
            parts.charts.push(Chart::read(tree, dir)?);
        }
        parts.builds = Some(builds);
    }
    // Parsing is the expensive part for large inventories: files in parallel.
    let parsed: Vec<Result<Vec<Located>>> = files
        .par_iter()
        .map(|f| {
            let shown = tree.display_path(&f.path);
            let docs = parse_documents(&f.text, &shown)?;
            Ok(docs
                .into_iter()
                .map(|doc| Located {
                    doc,
                    path: shown.clone(),
                })
                .collect())
        })
        .collect();
    for file_docs in parsed {
        for Located { doc, path } in file_docs? {
            classify(doc, &path, inventory_only, parts)?;
        }
    }
    Ok(())
}

fn classify(doc: Doc, path: &str, inventory_only: bool, parts: &mut Parts) -> Result<()> {
    let at = Location::new(path, doc.line());
    let Some(object) = doc.value.as_object() else {
        return Err(Error::at(
            at,
            format!("a document must be a mapping, not {}", type_name(&doc.value)),
        ));
    };
    let Some(kind) = object.get("kind") else {
        return Err(Error::at(at, "document has no `kind`"));
    };
    let Some(kind) = kind.as_str() else {
        return Err(Error::at(at, "`kind` must be a string"));
    };
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    if api_version == Some(API_VERSION) || api_version.is_some_and(|v| v.starts_with("starmap.dev/")) {
        if api_version != Some(API_VERSION) {
            return Err(Error::at(
                at,
                format!(
                    "unsupported apiVersion {:?}; this starmap reads {API_VERSION}",
                    api_version.unwrap_or("")
                ),
            ));
        }
        return match kind {
            "Cluster" => {
                parts.clusters.push(Spec {
                    doc: from_doc(&doc, path)?,
                    at,
                    lines: doc.lines,
                });
                Ok(())
            }
            _ if inventory_only => Err(Error::at(
                at,
                format!("the inventory holds only Cluster objects, not {kind}"),
            )),
            "Placement" => {
                parts.placements.push(Spec {
                    doc: from_doc(&doc, path)?,
                    at,
                    lines: doc.lines,
                });
                Ok(())
            }
            "Customization" => {
                parts.customizations.push(Spec {
                    doc: from_doc(&doc, path)?,
                    at,
                    lines: doc.lines,
                });
                Ok(())
            }
            "StatusSummary" => {
                parts.summaries.push(Spec {
                    doc: from_doc(&doc, path)?,
                    at,
                    lines: doc.lines,
                });
                Ok(())
            }
            other => Err(Error::at(
                at,
                format!(
                    "unknown kind {other:?} for {API_VERSION} (expected Cluster, Placement, Customization or StatusSummary)"
                ),
            )),
        };
    }
    if inventory_only {
        return Err(Error::at(
            at,
            format!("the inventory holds only Cluster objects, not {kind}"),
        ));
    }
    if api_version.is_none() {
        return Err(Error::at(at, format!("{kind} has no `apiVersion`")));
    }
    // `kind: List` (what `kubectl get -o yaml` exports): its items are the objects.
    if kind == "List"
        && let Some(Value::Array(items)) = object.get("items")
    {
        for (i, item) in items.iter().enumerate() {
            let item_path = [Step::Key("items"), Step::Index(i)];
            let line = doc.lines.line_at(&item_path);
            let lines = doc.lines.subtree(&item_path).unwrap_or_default();
            parts.workloads.push(workload(item.clone(), lines, path, line)?);
        }
        return Ok(());
    }
    let line = doc.line();
    if doc.value.pointer("/metadata/name").is_none() {
        // Tool configuration (`.fluxschema.yml`, `skaffold.yaml`) has a kind but is no
        // Kubernetes object: skipped, and said so, so that a typo is still seen.
        parts.warnings.push(format!(
            "{path}:{line}: skipped: {kind} has no metadata.name, so it is not a Kubernetes object \
             (add the file to `ignore:` in starmap.yaml to silence this)"
        ));
        return Ok(());
    }
    parts.workloads.push(workload(doc.value, doc.lines, path, line)?);
    Ok(())
}

/// One object of the source: `value` with the `lines` of its own nodes, at `path:line`.
pub(super) fn workload(value: Value, lines: LineTree, path: &str, line: u32) -> Result<Workload> {
    let location = Location::new(path, line);
    if !value.is_object()
        || value.get("kind").and_then(Value::as_str).is_none()
        || value.get("apiVersion").and_then(Value::as_str).is_none()
    {
        return Err(Error::at(
            location,
            "a Kubernetes object needs string `apiVersion` and `kind`",
        ));
    }
    let Some(id) = ObjectId::of(&value) else {
        let name = value.pointer("/metadata/name");
        let message = match name {
            Some(name) if !name.is_string() => format!("`metadata.name` must be a string, not {}", type_name(name)),
            _ => "object has no `metadata.name`".to_string(),
        };
        return Err(Error::at(location, message));
    };
    if let Some(ns) = value.pointer("/metadata/namespace")
        && !ns.is_string()
        && !ns.is_null()
    {
        return Err(Error::at(
            location,
            format!("`metadata.namespace` must be a string, not {}", type_name(ns)),
        ));
    }
    let annotation = value
        .pointer(&format!(
            "/metadata/annotations/{}",
            TEMPLATE_ANNOTATION.replace('/', "~1")
        ))
        .cloned();
    let templated = match annotation {
        None => false,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(other) => {
            return Err(Error::at(
                location,
                format!("annotation {TEMPLATE_ANNOTATION} must be \"true\" or \"false\", not {other}"),
            ));
        }
    };
    // A templated name or namespace is checked once rendered, per cluster.
    let is_template = |field: &str| {
        let text = if field == "name" {
            Some(&id.name)
        } else {
            id.namespace.as_ref()
        };
        templated && text.is_some_and(|t| crate::template::is_template(t))
    };
    if let Err((field, e)) = spec::validate_k8s_name(&id.name, id.namespace.as_deref())
        && !is_template(field)
    {
        let line = lines.line_at(&[Step::Key("metadata"), Step::Key(field)]).max(line);
        return Err(Error::at(Location::new(path, line), e).with_object(id.to_string()));
    }
    let sops = secrets::is_sops_encrypted(&value);
    if sops && templated {
        return Err(Error::at(
            location,
            format!(
                "encrypted with SOPS and annotated {TEMPLATE_ANNOTATION}: SOPS signs every value, so starmap \
                 writes it exactly as it is (template the file before encrypting it)"
            ),
        )
        .with_object(id.to_string()));
    }
    Ok(Workload {
        object: value,
        id,
        source: location,
        lines,
        templated,
        sops,
        only_clusters: None,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

const API_VERSION_PATH: [Step<'static>; 1] = [Step::Key("apiVersion")];
const NAME_PATH: [Step<'static>; 2] = [Step::Key("metadata"), Step::Key("name")];

fn check_api_version<T>(spec: &Spec<T>, api_version: &str) -> Result<()> {
    if api_version == API_VERSION {
        Ok(())
    } else {
        Err(Error::at(
            spec.field(&API_VERSION_PATH),
            format!("apiVersion must be {API_VERSION}"),
        ))
    }
}

fn check_selectors<T>(spec: &Spec<T>, selectors: &[LabelSelector], field: &'static str) -> Result<()> {
    for (i, s) in selectors.iter().enumerate() {
        s.validate().map_err(|e| {
            Error::at(
                spec.field(&[Step::Key("spec"), Step::Key(field), Step::Index(i)]),
                format!("spec.{field}[{i}]: {e}"),
            )
        })?;
    }
    Ok(())
}

/// The first location of each name; a second one is an error naming both.
fn check_unique<'a>(kind: &str, items: impl Iterator<Item = (&'a str, Location)>) -> Result<()> {
    let mut seen: HashMap<&str, Location> = HashMap::new();
    for (name, at) in items {
        if let Some(first) = seen.get(name) {
            return Err(Error::at(
                at,
                format!("duplicate {kind} {name:?} (also defined at {first})"),
            ));
        }
        seen.insert(name, at);
    }
    Ok(())
}

impl Parts {
    fn into_model(self, source: SourceInfo, config: Config) -> Result<Model> {
        let mut clusters = Vec::with_capacity(self.clusters.len());
        for spec in &self.clusters {
            clusters.push(cluster(spec)?);
        }
        check_unique(
            "cluster",
            self.clusters
                .iter()
                .map(|c| (c.doc.metadata.name.as_str(), c.field(&NAME_PATH))),
        )?;
        let known: HashMap<&str, ()> = clusters.iter().map(|c: &Cluster| (c.name.as_str(), ())).collect();
        let check_names = |spec_at: &dyn Fn(&[Step<'_>]) -> Location, names: &[String]| -> Result<()> {
            for (i, name) in names.iter().enumerate() {
                if !known.contains_key(name.as_str()) {
                    return Err(Error::at(
                        spec_at(&[Step::Key("spec"), Step::Key("clusters"), Step::Index(i)]),
                        format!("spec.clusters[{i}]: cluster {name:?} is not in the inventory"),
                    ));
                }
            }
            Ok(())
        };

        let mut placements = Vec::new();
        for spec in self.placements {
            let doc = &spec.doc;
            check_api_version(&spec, &doc.api_version)?;
            let name = doc.metadata.name.clone();
            spec::validate_object_name("Placement", &name).map_err(|e| Error::at(spec.field(&NAME_PATH), e))?;
            check_selectors(&spec, &doc.spec.cluster_selectors, "clusterSelectors")?;
            check_names(&|p| spec.field(p), &doc.spec.clusters)?;
            if doc.spec.workloads.is_empty() {
                return Err(Error::at(
                    spec.field(&[Step::Key("spec"), Step::Key("workloads")]),
                    "spec.workloads needs at least one object test",
                ));
            }
            let workloads = compile_tests(&spec, &doc.spec.workloads, "workloads")?;
            if let Some(rollout) = &doc.spec.rollout {
                rollout.validate().map_err(|(field, e)| {
                    Error::at(
                        spec.field(&[Step::Key("spec"), Step::Key("rollout")]),
                        format!("spec.rollout.{field}: {e}"),
                    )
                })?;
                for (i, wave) in rollout.waves.iter().enumerate() {
                    check_names(
                        &|p| {
                            let mut path = vec![
                                Step::Key("spec"),
                                Step::Key("rollout"),
                                Step::Key("waves"),
                                Step::Index(i),
                            ];
                            path.extend_from_slice(&p[1..]);
                            spec.field(&path)
                        },
                        &wave.clusters,
                    )?;
                }
            }
            placements.push((
                Placement {
                    name,
                    spec: spec.doc.spec.clone(),
                    workloads,
                    location: spec.at.clone(),
                },
                spec.field(&NAME_PATH),
            ));
        }
        check_unique(
            "Placement",
            placements.iter().map(|(p, at)| (p.name.as_str(), at.clone())),
        )?;
        let mut placements: Vec<Placement> = placements.into_iter().map(|(p, _)| p).collect();

        let mut customizations = Vec::new();
        for spec in self.customizations {
            let doc = &spec.doc;
            check_api_version(&spec, &doc.api_version)?;
            let name = doc.metadata.name.clone();
            spec::validate_object_name("Customization", &name).map_err(|e| Error::at(spec.field(&NAME_PATH), e))?;
            if let Some(selectors) = &doc.spec.cluster_selectors {
                check_selectors(&spec, selectors, "clusterSelectors")?;
            }
            if let Some(names) = &doc.spec.clusters {
                check_names(&|p| spec.field(p), names)?;
            }
            if doc.spec.targets.is_empty() {
                return Err(Error::at(
                    spec.field(&[Step::Key("spec"), Step::Key("targets")]),
                    "spec.targets needs at least one object test",
                ));
            }
            let targets = compile_tests(&spec, &doc.spec.targets, "targets")?;
            check_patches(&spec)?;
            let name_at = spec.field(&NAME_PATH);
            customizations.push((
                Customization {
                    name,
                    spec: spec.doc.spec,
                    targets,
                    location: spec.at,
                    lines: spec.lines,
                },
                name_at,
            ));
        }
        check_unique(
            "Customization",
            customizations.iter().map(|(c, at)| (c.name.as_str(), at.clone())),
        )?;
        let mut customizations: Vec<Customization> = customizations.into_iter().map(|(c, _)| c).collect();

        let mut summaries = Vec::new();
        for spec in &self.summaries {
            summaries.push((status_summary(spec, &placements)?, spec.field(&NAME_PATH)));
        }
        check_unique(
            "StatusSummary",
            summaries.iter().map(|(s, at)| (s.name.as_str(), at.clone())),
        )?;
        let mut summaries: Vec<StatusSummary> = summaries.into_iter().map(|(s, _)| s).collect();
        summaries.sort_by(|a, b| a.name.cmp(&b.name));

        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        placements.sort_by(|a, b| a.name.cmp(&b.name));
        customizations.sort_by(|a, b| (a.spec.order, &a.name).cmp(&(b.spec.order, &b.name)));
        let mut workloads = self.workloads;
        if let Some(builds) = &self.builds {
            for chart in &self.charts {
                workloads.extend(chart.render(builds, &clusters)?);
            }
            builds.finish();
        }
        let mut warnings = self.warnings;
        check_plaintext_secrets(&workloads, config.secrets.allow_plaintext, &mut warnings)?;
        // Stable: the objects of one file or directory keep their order.
        workloads.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(Model {
            source,
            config,
            clusters,
            placements,
            customizations,
            summaries,
            workloads,
            templates: self.templates,
            warnings,
        })
    }
}

/// A plaintext Secret is an error naming its file and the line of its data, or with
/// `secrets.allowPlaintext` a warning (one per Secret, however many clusters get it).
fn check_plaintext_secrets(workloads: &[Workload], allow: bool, warnings: &mut Vec<String>) -> Result<()> {
    let mut warned = std::collections::BTreeSet::new();
    for w in workloads {
        let Some(field) = secrets::plaintext_field(&w.object) else {
            continue;
        };
        let line = w.lines.key_line(&[], field).unwrap_or(0).max(w.source.line);
        let at = Location::new(w.source.path.clone(), line);
        if !allow {
            return Err(Error::at(
                at,
                format!(
                    "a Secret with plaintext in {field}, which would be committed for everyone who can read the deploy repo: {}",
                    secrets::PLAINTEXT_HINT
                ),
            )
            .with_object(w.id.to_string()));
        }
        if warned.insert((at.to_string(), w.id.to_string())) {
            warnings.push(format!(
                "{at}: {} is committed in plaintext (secrets.allowPlaintext is set)",
                w.id
            ));
        }
    }
    Ok(())
}

/// A StatusSummary: its placement must exist; names, ops and CEL are checked by
/// `StatusSummary::compile`, whose errors name the field, here turned into its line.
fn status_summary(spec: &Spec<StatusSummaryDoc>, placements: &[Placement]) -> Result<StatusSummary> {
    let doc = &spec.doc;
    check_api_version(spec, &doc.api_version)?;
    let name = &doc.metadata.name;
    spec::validate_object_name("StatusSummary", name).map_err(|e| Error::at(spec.field(&NAME_PATH), e))?;
    let placement = &doc.spec.placement;
    if !placement.is_empty() && !placements.iter().any(|p| p.name == *placement) {
        return Err(Error::at(
            spec.field(&[Step::Key("spec"), Step::Key("placement")]),
            format!("spec.placement: placement {placement:?} does not exist"),
        ));
    }
    StatusSummary::compile(name, &doc.spec, spec.at.clone())
        .map_err(|(path, message)| Error::at(spec.field(&path), message))
}

fn compile_tests<T>(
    spec: &Spec<T>,
    tests: &[spec::ObjectTest],
    field: &'static str,
) -> Result<Vec<spec::CompiledObjectTest>> {
    tests
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.compile().map_err(|e| {
                Error::at(
                    spec.field(&[Step::Key("spec"), Step::Key(field), Step::Index(i)]),
                    format!("spec.{field}[{i}]: {e}"),
                )
            })
        })
        .collect()
}

/// Patches are checked for shape at load (op, path, from); their values are templated per
/// cluster later.
fn check_patches(spec: &Spec<CustomizationDoc>) -> Result<()> {
    for (i, patch) in spec.doc.spec.patches.iter().enumerate() {
        if let Err(e) = serde_json::from_value::<json_patch::PatchOperation>(patch.clone()) {
            let here = spec.field(&[Step::Key("spec"), Step::Key("patches"), Step::Index(i)]);
            return Err(Error::at(
                here,
                format!("spec.patches[{i}]: not an RFC 6902 operation: {e}"),
            ));
        }
    }
    if let Some(merge) = &spec.doc.spec.merge
        && !merge.is_object()
    {
        let here = spec.field(&[Step::Key("spec"), Step::Key("merge")]);
        return Err(Error::at(
            here,
            "spec.merge must be a mapping (an RFC 7386 merge patch)",
        ));
    }
    Ok(())
}

fn cluster(spec: &Spec<ClusterDoc>) -> Result<Cluster> {
    let doc = &spec.doc;
    check_api_version(spec, &doc.api_version)?;
    let name = doc.metadata.name.clone();
    spec::validate_cluster_name(&name).map_err(|e| Error::at(spec.field(&NAME_PATH), e))?;
    let mut labels: BTreeMap<String, String> = doc.metadata.labels.clone();
    match labels.get(CLUSTER_NAME_LABEL) {
        Some(v) if *v != name => {
            let at = spec.field(&[
                Step::Key("metadata"),
                Step::Key("labels"),
                Step::Key(CLUSTER_NAME_LABEL),
            ]);
            return Err(Error::at(
                at,
                format!("label {CLUSTER_NAME_LABEL} is implicit and must equal the cluster name {name:?}"),
            ));
        }
        _ => {
            labels.insert(CLUSTER_NAME_LABEL.into(), name.clone());
        }
    }
    Ok(Cluster {
        name,
        labels,
        annotations: doc.metadata.annotations.clone(),
        spec: doc.spec.clone(),
        location: spec.at.clone(),
    })
}
