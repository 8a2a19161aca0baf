//! Turning a [`DesiredTree`] into git objects: each fresh cluster's files hashed into blobs and
//! trees (in parallel), reused clusters taken by the ids the digests file recorded, the owned
//! paths overlaid on the tip's tree, and the change report against the tip.

use std::collections::BTreeMap;
use std::sync::Arc;

use git2::{ObjectType, Oid, Repository};
use rayon::prelude::*;

use super::changes::{self, Changes};
use crate::desired::{DesiredCluster, DesiredTree, Rendered};
use crate::error::{Error, Result};
use crate::formats::digests::{Digests, Slots};
use crate::formats::files::KUSTOMIZATION_FILE;
use crate::formats::{
    ARGOCD_DIR, CLUSTERS_DIR, DIGESTS_FILE, FLUX_DIR, INDEX_DIR, README_FILE, RENDER_FILE, ROLLOUTS_DIR, STATUS_DIR,
    meta,
};
use crate::gitstore::{
    Change, Data, Entry, MODE_BLOB, MODE_TREE, ObjectSet, SharedFiles, Tip, entry_at, hash_object, overlay, tree_bytes,
};
use crate::model::Model;
use crate::snapshot::TipSlots;

/// The new tree and what it takes to store it.
pub struct Built {
    pub root: Oid,
    pub objects: ObjectSet,
    pub changes: Changes,
}

/// One cluster's files as git objects.
struct ClusterObjects {
    /// The objects to store: those of a slot the tip already holds with the same id are
    /// left out (see [`ClusterObjects::without_stored`]).
    objects: Vec<(ObjectType, Data, Oid)>,
    /// Where in `objects` each slot's objects end: the directory's, the index, Flux's.
    ends: [usize; 3],
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

    /// Without the objects of slots whose id the tip already has: everything under an
    /// existing tree is in the repository. A render that changes nothing in most clusters
    /// (a rollout added, the first wave of a new revision) would otherwise copy all of the
    /// fleet's files into the set to store, only to find them stored (3 GiB at 100,000
    /// clusters).
    fn without_stored(mut self, tip: &TipSlots, name: &str) -> Self {
        let [tree_end, index_end, flux_end] = self.ends;
        let same = |slot: &std::collections::BTreeMap<String, Oid>, oid: Option<Oid>| {
            oid.is_some() && slot.get(name).copied() == oid
        };
        let keep = [
            (0..tree_end, !same(&tip.trees, Some(self.tree))),
            (tree_end..index_end, !same(&tip.index, Some(self.index))),
            (index_end..flux_end, !same(&tip.flux, self.flux)),
            (flux_end..self.objects.len(), !same(&tip.applications, self.application)),
        ];
        if keep.iter().all(|(_, k)| *k) {
            return self;
        }
        let mut objects = Vec::new();
        for (i, object) in self.objects.into_iter().enumerate() {
            if keep.iter().any(|(range, k)| *k && range.contains(&i)) {
                objects.push(object);
            }
        }
        self.objects = objects;
        self.ends = [0; 3];
        self
    }
}

/// A rendered cluster's files as the object set reads them, by number: its object files in
/// order, then its kustomization, its Flux files and its Argo CD Application.
impl SharedFiles for Rendered {
    fn file(&self, i: usize) -> &[u8] {
        let objects = &self.cluster.objects;
        let flux = &self.sync.flux;
        if let Some(object) = objects.get(i) {
            return object.content.as_bytes();
        }
        match i - objects.len() {
            0 => self.cluster.kustomization.as_bytes(),
            n if n <= flux.len() => flux[n - 1].1.as_bytes(),
            n => {
                debug_assert!(n == flux.len() + 1 && self.sync.application.is_some(), "no file {i}");
                self.sync.application.as_deref().unwrap_or_default().as_bytes()
            }
        }
    }
}

/// File `i` of `rendered` (numbered as [`SharedFiles for Rendered`] says), shared.
fn shared(rendered: &Arc<Rendered>, i: usize) -> Data {
    Data::Shared(Arc::clone(rendered) as Arc<dyn SharedFiles>, i)
}

/// Blobs and trees of a set of files (`dir/name` or `name`, one level of directories):
/// the id of the top tree, and the blob id of each file in the order given.
fn add_files<'a>(
    objects: &mut Vec<(ObjectType, Data, Oid)>,
    files: impl Iterator<Item = (&'a str, Data)>,
) -> (Oid, Vec<Oid>) {
    let mut dirs: BTreeMap<&str, Vec<Entry>> = BTreeMap::new();
    let mut blobs = Vec::new();
    for (path, data) in files {
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
        objects.push((ObjectType::Tree, data.into(), oid));
        top.push(Entry::tree(dir, oid));
    }
    let data = tree_bytes(top);
    let tree = hash_object(ObjectType::Tree, &data);
    objects.push((ObjectType::Tree, data.into(), tree));
    (tree, blobs)
}

fn add_blob(objects: &mut Vec<(ObjectType, Data, Oid)>, data: Data) -> Oid {
    let oid = hash_object(ObjectType::Blob, &data);
    objects.push((ObjectType::Blob, data, oid));
    oid
}

fn cluster_objects(out: &Arc<Rendered>, artifact: Option<&str>) -> ClusterObjects {
    let rendered = &out.cluster;
    let count = rendered.objects.len();
    let mut objects = Vec::with_capacity(count + 8);
    let files_in_dir = rendered
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| (o.file.as_str(), shared(out, i)))
        .chain(std::iter::once((KUSTOMIZATION_FILE, shared(out, count))));
    let (tree, blobs) = add_files(&mut objects, files_in_dir);
    let tree_end = objects.len();
    // The object files come first, in order; the kustomization is last.
    let files = rendered
        .objects
        .iter()
        .zip(blobs)
        .map(|(o, oid)| (o.file.clone(), oid))
        .collect();
    let mut index = rendered.index();
    index.artifact = artifact.map(String::from);
    let index = add_blob(&mut objects, index.to_yaml().into_bytes().into());
    let index_end = objects.len();
    let sync = &out.sync;
    let flux = (!sync.flux.is_empty()).then(|| {
        let files = sync.flux.iter().enumerate();
        add_files(
            &mut objects,
            files.map(|(n, (name, _))| (name.as_str(), shared(out, count + 1 + n))),
        )
        .0
    });
    let flux_end = objects.len();
    let application = sync
        .application
        .is_some()
        .then(|| add_blob(&mut objects, shared(out, count + 1 + sync.flux.len())));
    ClusterObjects {
        objects,
        ends: [tree_end, index_end, flux_end],
        tree,
        index,
        flux,
        application,
        files,
    }
}

/// The objects and root tree of `desired` on top of `tip`, and the changes against it.
/// `keep_content` keeps new file contents in the report (`plan --diff`).
pub fn build(
    repo: &Repository,
    model: &Model,
    tip: Option<Tip>,
    tip_slots: &TipSlots,
    desired: &DesiredTree,
    status_moved: Option<String>,
    keep_content: bool,
) -> Result<Built> {
    let base = tip.map(|t| t.tree);
    let fresh: Vec<(&Rendered, ClusterObjects)> = desired
        .clusters
        .par_iter()
        .filter_map(|c| match c {
            DesiredCluster::Fresh { files, digest, .. } => Some((
                files.as_ref(),
                cluster_objects(files, digest.artifact.as_deref()).without_stored(tip_slots, c.name()),
            )),
            DesiredCluster::Reuse { .. } => None,
        })
        .collect();

    let mut digests = Digests::default();
    let mut entries = SlotEntries::default();
    let mut report_input = Vec::new();
    let mut cluster_sets = Vec::with_capacity(fresh.len());
    let mut fresh = fresh.into_iter();
    for cluster in &desired.clusters {
        let mut digest = cluster.digest().clone();
        if let DesiredCluster::Fresh { .. } = cluster {
            let (files, co) = fresh.next().expect("one set of objects per fresh cluster");
            digest.slots = co.slots();
            report_input.push((&files.cluster, co.tree, co.files));
            cluster_sets.push(co.objects);
        }
        entries.add(cluster.name(), &digest.slots)?;
        digests.clusters.insert(cluster.name().to_string(), digest);
    }

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
    // Both are serial (the repository handle cannot be shared between threads) and take
    // about as long (0.2 s each at 10,000 clusters): the set is filled by a worker of the
    // pool while this thread compares with the tip.
    let mut objects = ObjectSet::default();
    let filling = &mut objects;
    let report = rayon::in_place_scope(|scope| {
        scope.spawn(move |_| {
            filling.reserve(cluster_sets.iter().map(Vec::len).sum());
            for (kind, data, oid) in cluster_sets.into_iter().flatten() {
                filling.add_hashed(kind, data, oid);
            }
        });
        changes::compare(repo, &new_clusters, &removed, keep_content)
    });
    let mut report = report?;

    // Owned content: cluster directories, indexes, rollout states and, when generated, flux/
    // and argocd/.
    let owned = |path: &str, tree: Option<Oid>| Change {
        path: path.into(),
        entry: tree.map(|t| (MODE_TREE, t)),
    };
    let rollouts = rollouts_tree(&mut objects, &desired.rollout_states);
    let mut content = vec![
        owned(CLUSTERS_DIR, tree_of(&mut objects, entries.trees)),
        owned(INDEX_DIR, tree_of(&mut objects, entries.index)),
        owned(ROLLOUTS_DIR, rollouts),
    ];
    if status_moved.is_some() {
        content.push(owned(STATUS_DIR, None));
    }
    for dir in &desired.sync_dirs {
        let tree = match *dir {
            FLUX_DIR => tree_of(&mut objects, std::mem::take(&mut entries.flux)),
            _ => argocd_tree(
                &mut objects,
                &desired.argocd_fleet_files,
                std::mem::take(&mut entries.applications),
            ),
        };
        content.push(owned(dir, tree));
    }
    // Content first, with the tip's bookkeeping files: if that is the tip's tree, nothing
    // new was rendered and there is no commit (a new source commit alone makes none).
    let content_root = overlay(repo, &mut objects, base, &content)?;
    if content_root == base {
        report.clear();
    } else {
        report.rollouts = desired.rollouts_changed.clone();
        report.sync_changed = content
            .iter()
            .filter(|c| c.path == FLUX_DIR || c.path == ARGOCD_DIR)
            .any(|c| entry_at(repo, base, &c.path) != c.entry.map(|(_, oid)| oid));
        report.metadata_changed = report.clusters.is_empty() && !report.sync_changed;
        report.status_moved_to = status_moved;
    }
    if report.is_empty() {
        // Nothing to commit: the bookkeeping files (the digests alone are 33 MB at 100,000
        // clusters) are not worth writing out.
        let root = base.unwrap_or_else(|| objects.add_tree(Vec::new()));
        return Ok(Built {
            root,
            objects,
            changes: report,
        });
    }
    let source = &model.source;
    let digests_blob = objects.add(ObjectType::Blob, digests.to_yaml().into_bytes());
    let render_blob = objects.add(
        ObjectType::Blob,
        meta::render_file(
            &source.display,
            source.commit.as_deref(),
            model.config.status_branch(),
            digests.clusters.len(),
            digests.total_objects(),
        )
        .into_bytes(),
    );
    let readme = meta::readme(&source.display, source.commit.as_deref(), &digests)?;
    let readme_blob = objects.add(ObjectType::Blob, readme.into_bytes());
    let blob = |path: &str, oid: Oid| Change {
        path: path.into(),
        entry: Some((MODE_BLOB, oid)),
    };
    content.extend([
        blob(DIGESTS_FILE, digests_blob),
        blob(RENDER_FILE, render_blob),
        blob(README_FILE, readme_blob),
    ]);
    let root = overlay(repo, &mut objects, base, &content)?.unwrap_or_else(|| objects.add_tree(Vec::new()));
    Ok(Built {
        root,
        objects,
        changes: report,
    })
}

/// The `.starmap/rollouts/` tree of `states` (none when there are none).
fn rollouts_tree(objects: &mut ObjectSet, states: &[crate::formats::rollout::State]) -> Option<Oid> {
    let entries: Vec<Entry> = states
        .iter()
        .map(|s| {
            let blob = objects.add(ObjectType::Blob, s.to_yaml().into_bytes());
            Entry::blob(format!("{}.yaml", s.placement), blob)
        })
        .collect();
    (!entries.is_empty()).then(|| objects.add_tree(entries))
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
fn argocd_tree(objects: &mut ObjectSet, fleet_files: &[(String, String)], apps: Vec<Entry>) -> Option<Oid> {
    let mut entries: Vec<Entry> = fleet_files
        .iter()
        .map(|(name, content)| Entry::blob(name, objects.add(ObjectType::Blob, content.clone().into_bytes())))
        .collect();
    if let Some(apps) = tree_of(objects, apps) {
        entries.push(Entry::tree("applications", apps));
    }
    tree_of(objects, entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::ClusterSyncFiles;
    use crate::model::ObjectId;
    use crate::render::{RenderedCluster, RenderedObject};

    fn object(name: &str) -> RenderedObject {
        RenderedObject {
            file: format!("{name}/configmap_{name}.yaml"),
            content: format!("kind: ConfigMap\nmetadata:\n  name: {name}\n"),
            api_version: "v1".into(),
            id: ObjectId {
                group: String::new(),
                kind: "ConfigMap".into(),
                namespace: None,
                name: name.into(),
            },
            workload: None,
            source: String::new(),
            placements: Vec::new(),
            customizations: Vec::new(),
            changes: Vec::new(),
        }
    }

    /// The object set reads a cluster's files through `SharedFiles` by number: each number
    /// must give the file whose blob it stands for, or the deploy repo would hold one file's
    /// name with another's content.
    #[test]
    fn shared_files_are_the_files_they_stand_for() {
        let rendered = Arc::new(Rendered {
            cluster: RenderedCluster::new("edge-1".into(), vec![object("a"), object("b")]),
            sync: ClusterSyncFiles {
                flux: vec![
                    ("gitrepository.yaml".into(), "kind: GitRepository\n".into()),
                    ("kustomization.yaml".into(), "kind: Kustomization\n".into()),
                ],
                application: Some("kind: Application\n".into()),
            },
        });
        let expected = [
            rendered.cluster.objects[0].content.as_str(),
            rendered.cluster.objects[1].content.as_str(),
            rendered.cluster.kustomization.as_str(),
            "kind: GitRepository\n",
            "kind: Kustomization\n",
            "kind: Application\n",
        ];
        for (i, text) in expected.iter().enumerate() {
            assert_eq!(rendered.file(i), text.as_bytes(), "file {i}");
        }
        let built = cluster_objects(&rendered, None);
        let blob = |text: &str| hash_object(ObjectType::Blob, text.as_bytes());
        // The same trees from copies of the files: each name with its own content.
        let mut copied = Vec::new();
        let files = rendered
            .cluster
            .objects
            .iter()
            .map(|o| (o.file.as_str(), o.content.as_bytes().to_vec().into()));
        let kustomization = (
            KUSTOMIZATION_FILE,
            rendered.cluster.kustomization.as_bytes().to_vec().into(),
        );
        let (tree, _) = add_files(&mut copied, files.chain(std::iter::once(kustomization)));
        assert_eq!(built.tree, tree, "the cluster's directory");
        let flux = rendered
            .sync
            .flux
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_bytes().to_vec().into()));
        assert_eq!(built.flux, Some(add_files(&mut copied, flux).0), "its Flux directory");
        assert_eq!(
            built.files,
            [
                ("a/configmap_a.yaml".to_string(), blob(expected[0])),
                ("b/configmap_b.yaml".to_string(), blob(expected[1]))
            ]
        );
        assert_eq!(built.application, Some(blob(expected[5])));
        for (kind, data, oid) in &built.objects {
            assert_eq!(hash_object(*kind, data), *oid, "every object's id is its content's");
        }
        let blobs: Vec<Oid> = built
            .objects
            .iter()
            .filter(|o| o.0 == ObjectType::Blob)
            .map(|o| o.2)
            .collect();
        for text in expected {
            assert!(blobs.contains(&blob(text)), "{text:?} is among the objects to store");
        }

        // Without Flux files the Application comes right after the kustomization.
        let argo_only = Arc::new(Rendered {
            cluster: RenderedCluster::new("edge-2".into(), vec![object("a")]),
            sync: ClusterSyncFiles {
                flux: Vec::new(),
                application: Some("kind: Application\n".into()),
            },
        });
        assert_eq!(argo_only.file(2), b"kind: Application\n");
        let built = cluster_objects(&argo_only, None);
        assert_eq!(
            (built.flux, built.application),
            (None, Some(blob("kind: Application\n")))
        );
    }
}
