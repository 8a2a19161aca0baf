//! Building the owned paths of the deploy tree from rendered clusters, reusing the tip's
//! directory of every cluster whose inputs did not change.

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::changes::{self, Changes};
use super::objects::{Entry, MODE_BLOB, MODE_TREE, ObjectSet, hash_object, tree_bytes};
use super::repo::Tip;
use super::tree::{self, Change};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::plan::Plan;
use crate::render::{self, RenderedCluster, Renderer, output::KUSTOMIZATION_FILE};
use crate::yaml;

pub const CLUSTERS_DIR: &str = "clusters";
pub const INDEX_DIR: &str = ".starmap/clusters";
pub const DIGESTS_FILE: &str = ".starmap/digests.yaml";
pub const RENDER_FILE: &str = ".starmap/render.yaml";
pub const README_FILE: &str = "README.md";

/// The new tree and what it takes to store it.
pub struct Built {
    pub root: Oid,
    pub objects: ObjectSet,
    pub changes: Changes,
    pub rendered: usize,
    pub reused: usize,
}

/// `.starmap/digests.yaml`: for each cluster, what its directory was rendered from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Digests {
    clusters: BTreeMap<String, ClusterDigest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ClusterDigest {
    inputs: String,
    /// Id of `clusters/<cluster>/` as rendered.
    tree: String,
    /// Id of `.starmap/clusters/<cluster>.yaml` as rendered.
    index: String,
    objects: usize,
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

/// One cluster's directory as git objects.
struct ClusterObjects {
    tree: Oid,
    objects: Vec<(ObjectType, Vec<u8>, Oid)>,
    index_blob: (Vec<u8>, Oid),
    /// Object files with their blob ids (for the change report).
    files: Vec<(String, Oid)>,
}

fn cluster_objects(model: &Model, rendered: &RenderedCluster) -> ClusterObjects {
    let mut objects = Vec::with_capacity(rendered.objects.len() + 4);
    let mut files = Vec::with_capacity(rendered.objects.len());
    // Directory name → entries; "" is the cluster directory itself.
    let mut dirs: BTreeMap<&str, Vec<Entry>> = BTreeMap::new();
    for o in &rendered.objects {
        let data = o.content.as_bytes().to_vec();
        let oid = hash_object(ObjectType::Blob, &data);
        let (dir, name) = o.file.split_once('/').unwrap_or(("", &o.file));
        dirs.entry(dir).or_default().push(Entry::blob(name, oid));
        files.push((o.file.clone(), oid));
        objects.push((ObjectType::Blob, data, oid));
    }
    let kustomization = rendered.kustomization.as_bytes().to_vec();
    let k_oid = hash_object(ObjectType::Blob, &kustomization);
    objects.push((ObjectType::Blob, kustomization, k_oid));
    let mut top = vec![Entry::blob(KUSTOMIZATION_FILE, k_oid)];
    for (dir, entries) in dirs {
        if dir.is_empty() {
            top.extend(entries);
            continue;
        }
        let data = tree_bytes(entries);
        let oid = hash_object(ObjectType::Tree, &data);
        objects.push((ObjectType::Tree, data, oid));
        top.push(Entry::tree(dir, oid));
    }
    let data = tree_bytes(top);
    let tree = hash_object(ObjectType::Tree, &data);
    objects.push((ObjectType::Tree, data, tree));
    let index = yaml::to_yaml_string(&render::index(model, rendered)).into_bytes();
    let index_oid = hash_object(ObjectType::Blob, &index);
    ClusterObjects {
        tree,
        objects,
        index_blob: (index, index_oid),
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
    let old_clusters = tree::entries_at(repo, base, CLUSTERS_DIR);
    let old_index = tree::entries_at(repo, base, INDEX_DIR);
    let global = render::global_digest(model);
    let inputs: Vec<String> = model
        .clusters
        .par_iter()
        .map(|c| render::cluster_digest(&global, c))
        .collect();

    // A cluster is kept from the tip when its inputs are the ones its directory there was
    // rendered from, and that directory and its index are still as starmap wrote them.
    let reusable = |i: usize| -> Option<&ClusterDigest> {
        let name = &model.clusters[i].name;
        let d = previous.clusters.get(name)?;
        let tree_ok = old_clusters.get(name).map(|t| t.to_string()) == Some(d.tree.clone());
        let index_ok = old_index.get(&format!("{name}.yaml")).map(|o| o.to_string()) == Some(d.index.clone());
        (!options.no_cache && d.inputs == inputs[i] && tree_ok && index_ok).then_some(d)
    };
    let to_render: Vec<_> = plan
        .clusters
        .iter()
        .filter(|p| reusable(p.cluster).is_none())
        .filter(|p| !memo.contains_key(&inputs[p.cluster]))
        .collect();
    let fresh = renderer.render(&to_render)?;
    for (p, r) in to_render.iter().zip(fresh) {
        memo.insert(inputs[p.cluster].clone(), r);
    }

    let mut objects = ObjectSet::default();
    let mut digests = Digests::default();
    let mut cluster_entries = Vec::with_capacity(model.clusters.len());
    let mut index_entries = Vec::with_capacity(model.clusters.len());
    let mut rendered_now: Vec<(&RenderedCluster, ClusterObjects)> = Vec::new();
    let mut reused = 0;
    let needs: Vec<(usize, &RenderedCluster)> = plan
        .clusters
        .iter()
        .filter(|p| reusable(p.cluster).is_none())
        .map(|p| (p.cluster, &memo[&inputs[p.cluster]]))
        .collect();
    let built: Vec<ClusterObjects> = needs.par_iter().map(|(_, r)| cluster_objects(model, r)).collect();
    let mut built_by_cluster: BTreeMap<usize, (&RenderedCluster, ClusterObjects)> = needs
        .iter()
        .map(|(i, _)| *i)
        .zip(needs.iter().map(|(_, r)| *r).zip(built))
        .collect();

    for (i, cluster) in model.clusters.iter().enumerate() {
        let name = &cluster.name;
        if let Some(d) = reusable(i) {
            let tree = Oid::from_str(&d.tree).map_err(|e| Error::msg(format!("{DIGESTS_FILE}: {e}")))?;
            cluster_entries.push(Entry::tree(name.clone(), tree));
            index_entries.push(Entry::blob(format!("{name}.yaml"), old_index[&format!("{name}.yaml")]));
            digests.clusters.insert(name.clone(), d.clone());
            reused += 1;
            continue;
        }
        let (rendered, co) = built_by_cluster.remove(&i).expect("every cluster not reused was built");
        cluster_entries.push(Entry::tree(name.clone(), co.tree));
        index_entries.push(Entry::blob(format!("{name}.yaml"), co.index_blob.1));
        digests.clusters.insert(
            name.clone(),
            ClusterDigest {
                inputs: inputs[i].clone(),
                tree: co.tree.to_string(),
                index: co.index_blob.1.to_string(),
                objects: rendered.objects.len(),
            },
        );
        rendered_now.push((rendered, co));
    }
    let rendered_count = rendered_now.len();

    // The change report, from the rendered clusters and the tip.
    let removed: Vec<(String, Oid)> = old_clusters
        .iter()
        .filter(|(name, _)| !digests.clusters.contains_key(*name))
        .map(|(n, o)| (n.clone(), *o))
        .collect();
    let report_input: Vec<changes::NewCluster<'_>> = rendered_now
        .iter()
        .map(|(r, co)| changes::NewCluster {
            rendered: r,
            tree: co.tree,
            files: &co.files,
            old_tree: old_clusters.get(&r.name).copied(),
        })
        .collect();
    let mut report = changes::compare(repo, &report_input, &removed, options.keep_content)?;

    // Store objects: the directories and indexes of rendered clusters.
    for (_, co) in rendered_now {
        for (kind, data, oid) in co.objects {
            objects.add_hashed(kind, data, oid);
        }
        let (data, oid) = co.index_blob;
        objects.add_hashed(ObjectType::Blob, data, oid);
    }
    let clusters_tree = (!cluster_entries.is_empty()).then(|| objects.add_tree(cluster_entries));
    let index_tree = (!index_entries.is_empty()).then(|| objects.add_tree(index_entries));
    let digests_blob = objects.add(
        ObjectType::Blob,
        yaml::to_yaml_string(&serde_json::to_value(&digests).unwrap_or_default()).into_bytes(),
    );

    let owned = |path: &str, tree: Option<Oid>| Change {
        path: path.into(),
        entry: tree.map(|t| (MODE_TREE, t)),
    };
    let content = [owned(CLUSTERS_DIR, clusters_tree), owned(INDEX_DIR, index_tree)];
    // Content first, with the tip's bookkeeping files: if that is the tip's tree, nothing
    // new was rendered and there is no commit (a new source commit alone makes none).
    let content_root = tree::overlay(repo, &mut objects, base, &content)?;
    if content_root == base {
        report.clear();
    } else {
        report.metadata_changed = report.is_empty();
    }
    let total_objects: usize = digests.clusters.values().map(|d| d.objects).sum();
    let render_blob = objects.add(
        ObjectType::Blob,
        render_file(model, digests.clusters.len(), total_objects).into_bytes(),
    );
    let readme_blob = objects.add(ObjectType::Blob, readme(model, &digests)?.into_bytes());
    let blob = |path: &str, oid: Oid| Change {
        path: path.into(),
        entry: Some((MODE_BLOB, oid)),
    };
    let mut all = content.into_iter().collect::<Vec<_>>();
    all.extend([
        blob(DIGESTS_FILE, digests_blob),
        blob(RENDER_FILE, render_blob),
        blob(README_FILE, readme_blob),
    ]);
    let root = if report.is_empty() {
        base.unwrap_or_else(|| objects.add_tree(Vec::new()))
    } else {
        tree::overlay(repo, &mut objects, base, &all)?.unwrap_or_else(|| objects.add_tree(Vec::new()))
    };
    Ok(Built {
        root,
        objects,
        changes: report,
        rendered: rendered_count,
        reused,
    })
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
