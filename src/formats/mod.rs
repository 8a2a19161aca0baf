//! The deploy repository's files: where each one lives, and its format. Every file starmap
//! writes into the deploy repo is written, and read back, by exactly one module here, so a
//! change of format is a change in one place.
//!
//! ```text
//! clusters/<cluster>/kustomization.yaml        files::kustomization: every file below, sorted
//! clusters/<cluster>/<ns|_cluster>/<kind>[.<group>]_<name>.yaml   files::object_file
//! flux/<cluster>/, argocd/                     written by `gitops` from its templates
//! .starmap/render.yaml                         meta: source, source commit, version, counts
//! .starmap/digests.yaml                        digests: per cluster, its inputs and the ids of its files
//! .starmap/clusters/<cluster>.yaml             index: each object, its file, source, placements
//! .starmap/rollouts/<placement>.yaml           rollout: where a placement's rollout stands
//! README.md                                    meta: generated
//! status/clusters/<cluster>.yaml               status: live status of one cluster
//! status/summaries/…                           status: summary files (`summary` computes them)
//! ```
//!
//! Pure: text in, values out, and back. Reading the files out of git is `snapshot`'s job.

pub mod artifact;
pub mod digests;
pub mod files;
pub mod index;
pub mod meta;
pub mod rollout;
pub mod status;

use serde::de::DeserializeOwned;

use crate::error::{Error, Location, Result};
use crate::yaml;

/// `clusters/`: one directory per cluster, synced by Argo CD or Flux.
pub const CLUSTERS_DIR: &str = "clusters";
/// `.starmap/clusters/`: the object index of each cluster.
pub const INDEX_DIR: &str = ".starmap/clusters";
/// `.starmap/digests.yaml`.
pub const DIGESTS_FILE: &str = ".starmap/digests.yaml";
/// `.starmap/render.yaml`.
pub const RENDER_FILE: &str = ".starmap/render.yaml";
/// `.starmap/rollouts/`: one file per placement with a rollout or suspension.
pub const ROLLOUTS_DIR: &str = ".starmap/rollouts";
/// The generated README at the root.
pub const README_FILE: &str = "README.md";
/// `flux/`: one directory per cluster, the Flux objects that make it follow its directory.
pub const FLUX_DIR: &str = "flux";
/// `argocd/`: the Argo CD objects of the fleet.
pub const ARGOCD_DIR: &str = "argocd";
/// `argocd/applications/`: one Application per cluster (mode `applications`).
pub const APPLICATIONS_DIR: &str = "argocd/applications";
/// `status/`: written only by status collection.
pub const STATUS_DIR: &str = "status";
/// `status/clusters/`.
pub const STATUS_CLUSTERS_DIR: &str = "status/clusters";
/// `status/summaries/`.
pub const SUMMARIES_DIR: &str = "status/summaries";
/// `status/summaries/placements/`: the default summary of each placement.
pub const PLACEMENT_SUMMARIES_DIR: &str = "status/summaries/placements";

/// `<dir>/<cluster>.yaml`, the per-cluster files of a directory.
pub fn cluster_file(dir: &str, cluster: &str) -> String {
    format!("{dir}/{cluster}.yaml")
}

/// The cluster a per-cluster file is about (`c1.yaml` → `c1`).
pub fn cluster_of_file(file: &str) -> Option<&str> {
    file.strip_suffix(".yaml")
}

/// Read a file that holds one `what` as starmap writes it: by the fast reader of the emitter's
/// own style (about 15× the general parser) when it can, else by the general parser, whose
/// errors name the file and line.
pub(crate) fn read_one<T: DeserializeOwned>(text: &str, path: &str, what: &str) -> Result<T> {
    if let Some(value) = yaml::fast::read(text)
        && let Ok(parsed) = serde_json::from_value::<T>(value)
    {
        return Ok(parsed);
    }
    let docs = yaml::parse_documents(text, path)?;
    match docs.as_slice() {
        [doc] => yaml::from_doc(doc, path),
        [] => Err(Error::at(Location::new(path, 0), format!("empty {what}"))),
        [_, second, ..] => Err(Error::at(
            Location::new(path, second.line()),
            format!("a {what} holds one document"),
        )),
    }
}
