//! Holding a cluster back: the objects of placements whose rollout has not reached the cluster
//! keep the files they have at the branch tip, while everything else on the cluster is
//! rendered as usual.

use std::collections::BTreeSet;

use crate::render::{RenderedCluster, RenderedObject};

/// `fresh` with the objects of the `held` placements replaced by `kept`, those the tip has for
/// them. An object placed by a held placement waits with it, even when another placement
/// places it too; an object new in a held placement is not written yet.
pub fn compose(fresh: &RenderedCluster, kept: Vec<RenderedObject>, held: &[String]) -> RenderedCluster {
    let is_held = |placements: &[String]| placements.iter().any(|p| held.contains(p));
    let kept_files: BTreeSet<String> = kept.iter().map(|o| o.file.clone()).collect();
    let mut objects = kept;
    objects.extend(
        fresh
            .objects
            .iter()
            .filter(|o| !is_held(&o.placements) && !kept_files.contains(&o.file))
            .cloned(),
    );
    objects.sort_by(|a, b| a.file.cmp(&b.file));
    RenderedCluster::new(fresh.name.clone(), objects).with_labels(fresh.labels.clone())
}
