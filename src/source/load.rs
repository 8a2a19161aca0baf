//! From source files to a validated `Model`: parse every document, sort spec objects from
//! workloads, check everything a user can get wrong, and say where.

use std::collections::{BTreeMap, HashMap};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rayon::prelude::*;
use serde_json::Value;

use super::config::{CONFIG_FILE, Config};
use super::tree::SourceTree;
use crate::error::{Error, Location, Result};
use crate::model::{Cluster, Customization, Model, ObjectId, Placement, SourceInfo, Workload};
use crate::spec::{
    self, API_VERSION, CLUSTER_NAME_LABEL, ClusterDoc, CustomizationDoc, LabelSelector,
    PlacementDoc, TEMPLATE_ANNOTATION,
};
use crate::yaml::{Doc, Step, from_doc, parse_documents};

/// Where Cluster objects come from besides the source.
pub enum Inventory {
    /// Only the source.
    SourceOnly,
    /// Also this file, directory or repository (which holds only Cluster objects).
    Extra(SourceTree),
}

/// Read, parse and validate a source (and inventory) into a model.
pub fn load_model(source: &SourceTree, inventory: &Inventory) -> Result<Model> {
    let config = Config::load(source)?;
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

/// Everything read from the files, before cross-checks.
#[derive(Default)]
struct Parts {
    clusters: Vec<(ClusterDoc, Location)>,
    placements: Vec<(PlacementDoc, Location)>,
    customizations: Vec<(CustomizationDoc, Location, Doc)>,
    workloads: Vec<Workload>,
}

/// A parsed document and where it came from.
struct Located {
    doc: Doc,
    path: String,
}

fn collect(tree: &SourceTree, ignore: Option<&Gitignore>, inventory_only: bool, parts: &mut Parts) -> Result<()> {
    let files: Vec<_> = tree
        .files
        .iter()
        .filter(|f| f.path != CONFIG_FILE || inventory_only)
        .filter(|f| ignore.is_none_or(|i| !is_ignored(i, &f.path)))
        .collect();
    // Parsing is the expensive part for large inventories: files in parallel.
    let parsed: Vec<Result<Vec<Located>>> = files
        .par_iter()
        .map(|f| {
            let shown = tree.display_path(&f.path);
            let docs = parse_documents(&f.text, &shown)?;
            Ok(docs.into_iter().map(|doc| Located { doc, path: shown.clone() }).collect())
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
        return Err(Error::at(at, format!("a document must be a mapping, not {}", type_name(&doc.value))));
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
            return Err(Error::at(at, format!("unsupported apiVersion {:?}; this starmap reads {API_VERSION}", api_version.unwrap_or(""))));
        }
        return match kind {
            "Cluster" => {
                parts.clusters.push((from_doc(&doc, path)?, at));
                Ok(())
            }
            _ if inventory_only => Err(Error::at(at, format!("the inventory holds only Cluster objects, not {kind}"))),
            "Placement" => {
                parts.placements.push((from_doc(&doc, path)?, at));
                Ok(())
            }
            "Customization" => {
                parts.customizations.push((from_doc(&doc, path)?, at, doc));
                Ok(())
            }
            other => Err(Error::at(
                at,
                format!("unknown kind {other:?} for {API_VERSION} (expected Cluster, Placement or Customization)"),
            )),
        };
    }
    if inventory_only {
        return Err(Error::at(at, format!("the inventory holds only Cluster objects, not {kind}")));
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
            let item_doc = Doc { value: item.clone(), lines: doc.lines.clone() };
            let workload = workload(item_doc, path, line, &item_path)?;
            parts.workloads.push(workload);
        }
        return Ok(());
    }
    let line = doc.line();
    parts.workloads.push(workload(doc, path, line, &[])?);
    Ok(())
}

fn workload(doc: Doc, path: &str, line: u32, at: &[Step<'_>]) -> Result<Workload> {
    let location = Location::new(path, line);
    let mut value = doc.value;
    for step in at {
        value = match (value, step) {
            (Value::Array(mut a), Step::Index(i)) => a.swap_remove(*i),
            (Value::Object(mut m), Step::Key(k)) => m.remove(*k).unwrap_or(Value::Null),
            _ => Value::Null,
        };
    }
    if !value.is_object() || value.get("kind").and_then(Value::as_str).is_none() || value.get("apiVersion").and_then(Value::as_str).is_none() {
        return Err(Error::at(location, "a Kubernetes object needs string `apiVersion` and `kind`"));
    }
    let Some(id) = ObjectId::of(&value) else {
        return Err(Error::at(location, "object has no `metadata.name`"));
    };
    let annotation = value
        .pointer(&format!("/metadata/annotations/{}", TEMPLATE_ANNOTATION.replace('/', "~1")))
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
    // Keep only the subtree of lines that belongs to this object.
    let mut lines = doc.lines;
    if !at.is_empty() {
        lines = lines.subtree(at).unwrap_or_default();
    }
    Ok(Workload { object: value, id, source: location, lines, templated })
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

fn check_api_version(api_version: &str, at: &Location) -> Result<()> {
    if api_version == API_VERSION {
        Ok(())
    } else {
        Err(Error::at(at.clone(), format!("apiVersion must be {API_VERSION}")))
    }
}

fn check_selectors(selectors: &[LabelSelector], field: &str, at: &Location) -> Result<()> {
    for (i, s) in selectors.iter().enumerate() {
        s.validate()
            .map_err(|e| Error::at(at.clone(), format!("{field}[{i}]: {e}")))?;
    }
    Ok(())
}

/// The first location of each name; a second one is an error naming both.
fn check_unique<'a>(kind: &str, items: impl Iterator<Item = (&'a str, &'a Location)>) -> Result<()> {
    let mut seen: HashMap<&str, &Location> = HashMap::new();
    for (name, at) in items {
        if let Some(first) = seen.insert(name, at) {
            return Err(Error::at(at.clone(), format!("duplicate {kind} {name:?} (also defined at {first})")));
        }
    }
    Ok(())
}

impl Parts {
    fn into_model(self, source: SourceInfo, config: Config) -> Result<Model> {
        let clusters = self.clusters.into_iter().map(|(doc, at)| cluster(doc, at)).collect::<Result<Vec<_>>>()?;
        check_unique("cluster", clusters.iter().map(|c| (c.name.as_str(), &c.location)))?;
        let known: HashMap<&str, ()> = clusters.iter().map(|c| (c.name.as_str(), ())).collect();
        let check_names = |names: &[String], field: &str, at: &Location| -> Result<()> {
            for (i, name) in names.iter().enumerate() {
                if !known.contains_key(name.as_str()) {
                    return Err(Error::at(at.clone(), format!("{field}[{i}]: cluster {name:?} is not in the inventory")));
                }
            }
            Ok(())
        };

        let mut placements = Vec::new();
        for (doc, at) in self.placements {
            check_api_version(&doc.api_version, &at)?;
            let name = doc.metadata.name.clone();
            spec::validate_object_name("Placement", &name).map_err(|e| Error::at(at.clone(), e))?;
            check_selectors(&doc.spec.cluster_selectors, "spec.clusterSelectors", &at)?;
            check_names(&doc.spec.clusters, "spec.clusters", &at)?;
            if doc.spec.workloads.is_empty() {
                return Err(Error::at(at, "spec.workloads needs at least one object test"));
            }
            let workloads = compile_tests(&doc.spec.workloads, "spec.workloads", &at)?;
            placements.push(Placement { name, spec: doc.spec, workloads, location: at });
        }
        check_unique("Placement", placements.iter().map(|p| (p.name.as_str(), &p.location)))?;

        let mut customizations = Vec::new();
        for (doc, at, raw) in self.customizations {
            check_api_version(&doc.api_version, &at)?;
            let name = doc.metadata.name.clone();
            spec::validate_object_name("Customization", &name).map_err(|e| Error::at(at.clone(), e))?;
            if let Some(selectors) = &doc.spec.cluster_selectors {
                check_selectors(selectors, "spec.clusterSelectors", &at)?;
            }
            if let Some(names) = &doc.spec.clusters {
                check_names(names, "spec.clusters", &at)?;
            }
            if doc.spec.targets.is_empty() {
                return Err(Error::at(at, "spec.targets needs at least one object test"));
            }
            let targets = compile_tests(&doc.spec.targets, "spec.targets", &at)?;
            check_patches(&doc, &raw, &at)?;
            customizations.push(Customization { name, spec: doc.spec, targets, location: at, lines: raw.lines });
        }
        check_unique("Customization", customizations.iter().map(|c| (c.name.as_str(), &c.location)))?;

        let mut clusters = clusters;
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        placements.sort_by(|a, b| a.name.cmp(&b.name));
        customizations.sort_by(|a, b| (a.spec.order, &a.name).cmp(&(b.spec.order, &b.name)));
        let mut workloads = self.workloads;
        workloads.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(Model { source, config, clusters, placements, customizations, workloads })
    }
}

fn compile_tests(tests: &[spec::ObjectTest], field: &str, at: &Location) -> Result<Vec<spec::CompiledObjectTest>> {
    tests
        .iter()
        .enumerate()
        .map(|(i, t)| t.compile().map_err(|e| Error::at(at.clone(), format!("{field}[{i}]: {e}"))))
        .collect()
}

/// Patches are checked for shape at load (op, path, from); their values are templated per
/// cluster later.
fn check_patches(doc: &CustomizationDoc, raw: &Doc, at: &Location) -> Result<()> {
    for (i, patch) in doc.spec.patches.iter().enumerate() {
        let steps = [Step::Key("spec"), Step::Key("patches"), Step::Index(i)];
        let line = raw.lines.line_at(&steps);
        let here = Location::new(at.path.clone(), line);
        if let Err(e) = serde_json::from_value::<json_patch::PatchOperation>(patch.clone()) {
            return Err(Error::at(here, format!("spec.patches[{i}]: not an RFC 6902 operation: {e}")));
        }
    }
    if let Some(merge) = &doc.spec.merge
        && !merge.is_object()
    {
        let line = raw.lines.line_at(&[Step::Key("spec"), Step::Key("merge")]);
        return Err(Error::at(Location::new(at.path.clone(), line), "spec.merge must be a mapping (an RFC 7386 merge patch)"));
    }
    Ok(())
}

fn cluster(doc: ClusterDoc, at: Location) -> Result<Cluster> {
    check_api_version(&doc.api_version, &at)?;
    let name = doc.metadata.name;
    spec::validate_cluster_name(&name).map_err(|e| Error::at(at.clone(), e))?;
    let mut labels: BTreeMap<String, String> = doc.metadata.labels;
    match labels.get(CLUSTER_NAME_LABEL) {
        Some(v) if *v != name => {
            return Err(Error::at(at, format!("label {CLUSTER_NAME_LABEL} is implicit and must equal the cluster name {name:?}")));
        }
        _ => {
            labels.insert(CLUSTER_NAME_LABEL.into(), name.clone());
        }
    }
    Ok(Cluster { name, labels, annotations: doc.metadata.annotations, spec: doc.spec, location: at })
}
