//! Building the owned paths of the deploy tree from rendered clusters, reusing the tip's
//! files of every cluster whose inputs did not change.
//!
//! Each cluster owns a few *slots* in the deploy repo: its directory `clusters/<c>/`, its
//! index `.starmap/clusters/<c>.yaml` and, when generated, `flux/<c>/` and
//! `argocd/applications/<c>.yaml`. `.starmap/digests.yaml` records, per cluster, the digest
//! of its inputs and the git id of each slot as written. A cluster is reused (not rendered)
//! when its inputs digest is unchanged and every slot in the tip still has the recorded id.

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::changes::{self, Changes};
use super::objects::{Entry, MODE_BLOB, MODE_TREE, ObjectSet, hash_object, tree_bytes};
use super::repo::Tip;
use super::tree::{self, Change};
use super::{hold, rollouts};
use crate::error::{Error, Result};
use crate::gitops::{ARGOCD_DIR, FLUX_DIR};
use crate::model::Model;
use crate::plan::Plan;
use crate::render::{self, RenderedCluster, Renderer, output::KUSTOMIZATION_FILE};
use crate::rollout::ROLLOUTS_DIR;
use crate::yaml;

pub const CLUSTERS_DIR: &str = "clusters";
pub const INDEX_DIR: &str = ".starmap/clusters";
pub const DIGESTS_FILE: &str = ".starmap/digests.yaml";
pub const RENDER_FILE: &str = ".starmap/render.yaml";
pub const README_FILE: &str = "README.md";
const APPLICATIONS_DIR: &str = "argocd/applications";

/// The new tree and what it takes to store it.
pub struct Built {
    pub root: Oid,
    pub objects: ObjectSet,
    pub changes: Changes,
    pub rendered: usize,
    pub reused: usize,
    pub rollouts: Vec<crate::rollout::Progress>,
}

/// `.starmap/digests.yaml`: for each cluster, what its files were rendered from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Digests {
    clusters: BTreeMap<String, ClusterDigest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterDigest {
    inputs: String,
    objects: usize,
    #[serde(flatten)]
    slots: Slots,
    /// Per gated placement (rollout or suspension) placing objects here: the digest of
    /// what it renders now (`hold::placement_digest`), whether or not the cluster got it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    rollouts: BTreeMap<String, String>,
    /// The gated placements whose files this cluster kept from the tip.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    held: Vec<String>,
    /// Per gated placement: the digest of what was written (differs from `rollouts`
    /// while held).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    written: BTreeMap<String, String>,
}

/// Git ids of a cluster's slots, as strings (the YAML form).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Slots {
    /// `clusters/<c>/` (a tree).
    tree: String,
    /// `.starmap/clusters/<c>.yaml`.
    index: String,
    /// `flux/<c>/` (a tree), when generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flux: Option<String>,
    /// `argocd/applications/<c>.yaml`, when generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    application: Option<String>,
}

/// What the tip holds in each slot directory, by cluster.
struct TipSlots {
    trees: BTreeMap<String, Oid>,
    index: BTreeMap<String, Oid>,
    flux: BTreeMap<String, Oid>,
    applications: BTreeMap<String, Oid>,
}

impl TipSlots {
    fn read(repo: &Repository, base: Option<Oid>) -> TipSlots {
        let strip = |m: BTreeMap<String, Oid>| {
            m.into_iter()
                .map(|(k, v)| (k.strip_suffix(".yaml").map(String::from).unwrap_or(k), v))
                .collect()
        };
        TipSlots {
            trees: tree::entries_at(repo, base, CLUSTERS_DIR),
            index: strip(tree::entries_at(repo, base, INDEX_DIR)),
            flux: tree::entries_at(repo, base, FLUX_DIR),
            applications: strip(tree::entries_at(repo, base, APPLICATIONS_DIR)),
        }
    }

    /// The tip's slots of `name`, as the digests file writes them.
    fn of(&self, name: &str) -> Slots {
        let id = |m: &BTreeMap<String, Oid>| m.get(name).map(|o| o.to_string());
        Slots {
            tree: id(&self.trees).unwrap_or_default(),
            index: id(&self.index).unwrap_or_default(),
            flux: id(&self.flux),
            application: id(&self.applications),
        }
    }
}

fn read_digests(repo: &Repository, base: Option<Oid>) -> Digests {
    let Some(oid) = tree::entry_at(repo, base, DIGESTS_FILE) else {
        return Digests::default();
    };
    let Ok(blob) = repo.find_blob(oid) else {
        return Digests::default();
    };
    let parsed = std::str::from_utf8(blob.content())
        .ok()
        .and_then(|text| yaml::parse_documents(text, DIGESTS_FILE).ok())
        .and_then(|docs| docs.into_iter().next())
        .and_then(|doc| serde_json::from_value(doc.value).ok());
    // An unreadable cache only costs a full render.
    parsed.unwrap_or_default()
}

/// One cluster's files as git objects.
struct ClusterObjects {
    objects: Vec<(ObjectType, Vec<u8>, Oid)>,
    tree: Oid,
    index: Oid,
    flux: Option<Oid>,
    application: Option<Oid>,
    /// Object files with their blob ids (for the change report).
    files: Vec<(String, Oid)>,
}

impl ClusterObjects {
    fn slots(&self) -> Slots {
        Slots {
            tree: self.tree.to_string(),
            index: self.index.to_string(),
            flux: self.flux.map(|o| o.to_string()),
            application: self.application.map(|o| o.to_string()),
        }
    }
}

/// Blobs and trees of a set of files (`dir/name` or `name`, one level of directories):
/// the id of the top tree, and the blob id of each file in the order given.
fn add_files<'a>(
    objects: &mut Vec<(ObjectType, Vec<u8>, Oid)>,
    files: impl Iterator<Item = (&'a str, &'a str)>,
) -> (Oid, Vec<Oid>) {
    let mut dirs: BTreeMap<&str, Vec<Entry>> = BTreeMap::new();
    let mut blobs = Vec::new();
    for (path, content) in files {
        let data = content.as_bytes().to_vec();
        let oid = hash_object(ObjectType::Blob, &data);
        blobs.push(oid);
        let (dir, name) = path.split_once('/').unwrap_or(("", path));
        dirs.entry(dir).or_default().push(Entry::blob(name, oid));
        objects.push((ObjectType::Blob, data, oid));
    }
    let mut top = dirs.remove("").unwrap_or_default();
    for (dir, entries) in dirs {
        let data = tree_bytes(entries);
        let oid = hash_object(ObjectType::Tree, &data);
        objects.push((ObjectType::Tree, data, oid));
        top.push(Entry::tree(dir, oid));
    }
    let data = tree_bytes(top);
    let tree = hash_object(ObjectType::Tree, &data);
    objects.push((ObjectType::Tree, data, tree));
    (tree, blobs)
}

fn add_blob(objects: &mut Vec<(ObjectType, Vec<u8>, Oid)>, content: &str) -> Oid {
    let data = content.as_bytes().to_vec();
    let oid = hash_object(ObjectType::Blob, &data);
    objects.push((ObjectType::Blob, data, oid));
    oid
}

fn cluster_objects(model: &Model, rendered: &RenderedCluster) -> ClusterObjects {
    let mut objects = Vec::with_capacity(rendered.objects.len() + 8);
    let files_in_dir = rendered
        .objects
        .iter()
        .map(|o| (o.file.as_str(), o.content.as_str()))
        .chain(std::iter::once((KUSTOMIZATION_FILE, rendered.kustomization.as_str())));
    let (tree, blobs) = add_files(&mut objects, files_in_dir);
    // The object files come first, in order; the kustomization is last.
    let files = rendered
        .objects
        .iter()
        .zip(blobs)
        .map(|(o, oid)| (o.file.clone(), oid))
        .collect();
    let index = add_blob(&mut objects, &yaml::to_yaml_string(&render::index(model, rendered)));
    let sync = &rendered.sync;
    let flux = (!sync.flux.is_empty())
        .then(|| add_files(&mut objects, sync.flux.iter().map(|(n, c)| (n.as_str(), c.as_str()))).0);
    let application = sync.application.as_deref().map(|a| add_blob(&mut objects, a));
    ClusterObjects {
        objects,
        tree,
        index,
        flux,
        application,
        files,
    }
}

pub fn build(
    model: &Model,
    plan: &Plan,
    renderer: &Renderer<'_>,
    repo: &Repository,
    tip: Option<Tip>,
    options: &super::WriteOptions,
    memo: &mut BTreeMap<String, RenderedCluster>,
) -> Result<Built> {
    let base = tip.map(|t| t.tree);
    let previous = read_digests(repo, base);
    let tip_slots = TipSlots::read(repo, base);
    let global = renderer.inputs_digest();
    let inputs: Vec<String> = model
        .clusters
        .par_iter()
        .map(|c| render::cluster_digest(&global, c))
        .collect();

    // Gated placements need, for each of their clusters, the digest of what they render
    // now: from the digests file when the cluster's inputs did not change, else rendered.
    let gated = rollouts::gated_placements(model);
    let gated_here = |i: usize| -> Vec<&str> {
        gated
            .iter()
            .filter(|g| g.destinations[i])
            .map(|g| model.placements[g.placement].name.as_str())
            .collect()
    };
    let known = |i: usize| -> Option<&ClusterDigest> {
        let d = previous.clusters.get(&model.clusters[i].name)?;
        let complete = gated_here(i).iter().all(|p| d.rollouts.contains_key(*p));
        (!options.no_cache && d.inputs == inputs[i] && complete).then_some(d)
    };
    render_missing(plan, renderer, &inputs, memo, |i| known(i).is_none())?;
    // Once per cluster: the revision, the gate and the digests file all read these.
    let rollout_digests: Vec<BTreeMap<String, String>> = (0..model.clusters.len())
        .into_par_iter()
        .map(|i| {
            gated_here(i)
                .into_iter()
                .map(|p| {
                    let digest = match memo.get(&inputs[i]) {
                        Some(r) => hold::placement_digest(r, p),
                        None => known(i).and_then(|d| d.rollouts.get(p).cloned()).unwrap_or_default(),
                    };
                    (p.to_string(), digest)
                })
                .collect()
        })
        .collect();
    let fresh_digest =
        |i: usize, placement: &str| -> String { rollout_digests[i].get(placement).cloned().unwrap_or_default() };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let tip_digest = |i: usize, placement: &str| -> Option<String> {
        let name = &model.clusters[i].name;
        let d = previous.clusters.get(name)?;
        (d.slots == tip_slots.of(name)).then(|| d.written.get(placement).cloned())?
    };
    let decision = rollouts::decide(model, &gated, repo, tip, &fresh_digest, &tip_digest, now)?;

    let reusable = |i: usize| -> Option<&ClusterDigest> {
        let d = known(i)?;
        (d.held == decision.held[i] && d.slots == tip_slots.of(&model.clusters[i].name)).then_some(d)
    };
    render_missing(plan, renderer, &inputs, memo, |i| reusable(i).is_none())?;
    let needs: Vec<usize> = plan
        .clusters
        .iter()
        .map(|p| p.cluster)
        .filter(|&i| reusable(i).is_none())
        .collect();
    // Clusters holding placements back get those objects from the tip.
    let composed: BTreeMap<usize, RenderedCluster> = needs
        .iter()
        .filter(|&&i| !decision.held[i].is_empty())
        .map(|&i| {
            let name = &model.clusters[i].name;
            let (dir, index) = (tip_slots.trees.get(name).copied(), tip_slots.index.get(name).copied());
            Ok((
                i,
                hold::compose(repo, dir, index, &memo[&inputs[i]], &decision.held[i])?,
            ))
        })
        .collect::<Result<_>>()?;
    let final_of = |i: usize| -> &RenderedCluster { composed.get(&i).unwrap_or_else(|| &memo[&inputs[i]]) };
    let built: Vec<ClusterObjects> = needs.par_iter().map(|&i| cluster_objects(model, final_of(i))).collect();
    let mut built: BTreeMap<usize, ClusterObjects> = needs.into_iter().zip(built).collect();

    let mut objects = ObjectSet::default();
    let mut digests = Digests::default();
    let mut entries = SlotEntries::default();
    let mut report_input = Vec::new();
    for (i, cluster) in model.clusters.iter().enumerate() {
        let name = &cluster.name;
        let digest = match reusable(i) {
            Some(d) => d.clone(),
            None => {
                let co = built.remove(&i).expect("every cluster not reused was built");
                let rendered = final_of(i);
                report_input.push((rendered, co.tree, co.files.clone()));
                let digest = ClusterDigest {
                    inputs: inputs[i].clone(),
                    objects: rendered.objects.len(),
                    slots: co.slots(),
                    written: rollout_digests[i]
                        .keys()
                        .map(|p| (p.clone(), hold::placement_digest(rendered, p)))
                        .collect(),
                    rollouts: rollout_digests[i].clone(),
                    held: decision.held[i].clone(),
                };
                for (kind, data, oid) in co.objects {
                    objects.add_hashed(kind, data, oid);
                }
                digest
            }
        };
        entries.add(name, &digest.slots)?;
        digests.clusters.insert(name.clone(), digest);
    }
    let reused = model.clusters.len() - report_input.len();
    let rendered_count = report_input.len();

    // The change report, from the rendered clusters and the tip.
    let removed: Vec<(String, Oid)> = tip_slots
        .trees
        .iter()
        .filter(|(name, _)| !digests.clusters.contains_key(*name))
        .map(|(n, o)| (n.clone(), *o))
        .collect();
    let new_clusters: Vec<changes::NewCluster<'_>> = report_input
        .iter()
        .map(|(r, tree, files)| changes::NewCluster {
            rendered: r,
            tree: *tree,
            files,
            old_tree: tip_slots.trees.get(&r.name).copied(),
        })
        .collect();
    let mut report = changes::compare(repo, &new_clusters, &removed, options.keep_content)?;

    // Owned content: cluster directories, indexes and, when generated, flux/ and argocd/.
    let owned = |path: &str, tree: Option<Oid>| Change {
        path: path.into(),
        entry: tree.map(|t| (MODE_TREE, t)),
    };
    let mut content = vec![
        owned(CLUSTERS_DIR, tree_of(&mut objects, entries.trees)),
        owned(INDEX_DIR, tree_of(&mut objects, entries.index)),
        owned(ROLLOUTS_DIR, rollouts::states_tree(&mut objects, &decision.states)),
    ];
    if let Some(sync) = renderer.sync() {
        for dir in sync.owned_dirs() {
            let tree = match dir {
                FLUX_DIR => tree_of(&mut objects, std::mem::take(&mut entries.flux)),
                _ => argocd_tree(&mut objects, sync, std::mem::take(&mut entries.applications))?,
            };
            content.push(owned(dir, tree));
        }
    }
    // Content first, with the tip's bookkeeping files: if that is the tip's tree, nothing
    // new was rendered and there is no commit (a new source commit alone makes none).
    let content_root = tree::overlay(repo, &mut objects, base, &content)?;
    if content_root == base {
        report.clear();
    } else {
        report.rollouts = decision.changed;
        report.sync_changed = content
            .iter()
            .filter(|c| c.path == FLUX_DIR || c.path == ARGOCD_DIR)
            .any(|c| tree::entry_at(repo, base, &c.path) != c.entry.map(|(_, oid)| oid));
        report.metadata_changed = report.clusters.is_empty() && !report.sync_changed;
    }
    let total_objects: usize = digests.clusters.values().map(|d| d.objects).sum();
    let digests_blob = objects.add(
        ObjectType::Blob,
        yaml::to_yaml_string(&serde_json::to_value(&digests).unwrap_or_default()).into_bytes(),
    );
    let render_blob = objects.add(
        ObjectType::Blob,
        render_file(model, digests.clusters.len(), total_objects).into_bytes(),
    );
    let readme_blob = objects.add(ObjectType::Blob, readme(model, &digests)?.into_bytes());
    let blob = |path: &str, oid: Oid| Change {
        path: path.into(),
        entry: Some((MODE_BLOB, oid)),
    };
    content.extend([
        blob(DIGESTS_FILE, digests_blob),
        blob(RENDER_FILE, render_blob),
        blob(README_FILE, readme_blob),
    ]);
    let root = if report.is_empty() {
        base.unwrap_or_else(|| objects.add_tree(Vec::new()))
    } else {
        tree::overlay(repo, &mut objects, base, &content)?.unwrap_or_else(|| objects.add_tree(Vec::new()))
    };
    Ok(Built {
        root,
        objects,
        changes: report,
        rendered: rendered_count,
        reused,
        rollouts: decision.states.iter().map(|s| s.progress()).collect(),
    })
}

/// Render, into `memo`, every planned cluster that `wanted` and that is not there yet.
fn render_missing(
    plan: &Plan,
    renderer: &Renderer<'_>,
    inputs: &[String],
    memo: &mut BTreeMap<String, RenderedCluster>,
    wanted: impl Fn(usize) -> bool,
) -> Result<()> {
    let to_render: Vec<_> = plan
        .clusters
        .iter()
        .filter(|p| wanted(p.cluster) && !memo.contains_key(&inputs[p.cluster]))
        .collect();
    let fresh = renderer.render(&to_render)?;
    for (p, r) in to_render.iter().zip(fresh) {
        memo.insert(inputs[p.cluster].clone(), r);
    }
    Ok(())
}

/// Tree entries of every cluster's slots, gathered while walking the clusters.
#[derive(Default)]
struct SlotEntries {
    trees: Vec<Entry>,
    index: Vec<Entry>,
    flux: Vec<Entry>,
    applications: Vec<Entry>,
}

impl SlotEntries {
    fn add(&mut self, name: &str, slots: &Slots) -> Result<()> {
        let oid = |s: &str| Oid::from_str(s).map_err(|e| Error::msg(format!("{DIGESTS_FILE}: {e}")));
        self.trees.push(Entry::tree(name, oid(&slots.tree)?));
        self.index.push(Entry::blob(format!("{name}.yaml"), oid(&slots.index)?));
        if let Some(flux) = &slots.flux {
            self.flux.push(Entry::tree(name, oid(flux)?));
        }
        if let Some(app) = &slots.application {
            self.applications.push(Entry::blob(format!("{name}.yaml"), oid(app)?));
        }
        Ok(())
    }
}

fn tree_of(objects: &mut ObjectSet, entries: Vec<Entry>) -> Option<Oid> {
    (!entries.is_empty()).then(|| objects.add_tree(entries))
}

/// `argocd/`: the fleet files and, in `applications` mode, `applications/`.
fn argocd_tree(
    objects: &mut ObjectSet,
    sync: &crate::gitops::SyncObjects<'_>,
    apps: Vec<Entry>,
) -> Result<Option<Oid>> {
    let mut entries: Vec<Entry> = sync
        .fleet_files()?
        .into_iter()
        .map(|(name, content)| Entry::blob(name, objects.add(ObjectType::Blob, content.into_bytes())))
        .collect();
    if let Some(apps) = tree_of(objects, apps) {
        entries.push(Entry::tree("applications", apps));
    }
    Ok(tree_of(objects, entries))
}

fn render_file(model: &Model, clusters: usize, objects: usize) -> String {
    let mut v = serde_json::Map::new();
    v.insert("source".into(), json!(model.source.display));
    if let Some(commit) = &model.source.commit {
        v.insert("sourceCommit".into(), json!(commit));
    }
    v.insert("starmapVersion".into(), json!(env!("CARGO_PKG_VERSION")));
    v.insert("clusters".into(), json!(clusters));
    v.insert("objects".into(), json!(objects));
    yaml::to_yaml_string(&serde_json::Value::Object(v))
}

fn readme(model: &Model, digests: &Digests) -> Result<String> {
    let env = minijinja::Environment::new();
    let clusters: Vec<_> = digests
        .clusters
        .iter()
        .map(|(name, d)| json!({"name": name, "objects": d.objects}))
        .collect();
    env.render_str(
        include_str!("../../templates/deploy-readme.md.j2"),
        minijinja::value::Serde(json!({
            "source": model.source.display,
            "source_commit": model.source.commit,
            "clusters": clusters,
            "total_objects": digests.clusters.values().map(|d| d.objects).sum::<usize>(),
            "version": env!("CARGO_PKG_VERSION"),
            "max_rows": 200,
        })),
    )
    .map_err(|e| Error::msg(format!("templates/deploy-readme.md.j2: {e}")))
}
