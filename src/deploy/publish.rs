//! Publishing, with `oci:` in starmap.yaml: after a render commit lands, every cluster whose
//! artifact the registry does not have yet is pushed, and its tag moved to it.
//!
//! Git is the record. The render commit's index names each cluster's layer digest; what was
//! pushed is recorded in the deploy repo too, on `refs/starmap/artifacts/<branch>` (one small
//! commit per publish, `artifacts.yaml`): per cluster its layer, manifest and revision, and the
//! deploy commit up to which everything is pushed. A render with nothing new finds that commit
//! equal to the tip and touches no registry. A push that failed or was interrupted (registry
//! down, process killed) leaves the record behind the tip, and the next render pushes what is
//! missing; blobs the registry already has are not sent again.

use std::collections::BTreeMap;
use std::path::Path;

use futures::{StreamExt, stream};
use git2::{ObjectType, Oid};

use crate::config::OciSettings;
use crate::error::{Error, Result};
use crate::formats::artifact::{self, Annotations, Layer, PUBLISHED_FILE, Published, PublishedArtifact};
use crate::formats::digests::Digests;
use crate::formats::{CLUSTERS_DIR, DIGESTS_FILE};
use crate::gitstore::{DeployRepo, Entry, ObjectSet, blob_text, entries_at, entry_at, list_blobs};
use crate::oci::{Artifact, Registry};

/// Where the record of what was pushed lives, per deploy branch.
pub fn record_ref(branch: &str) -> String {
    format!("refs/starmap/artifacts/{branch}")
}

/// What a publish did.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    /// Clusters whose artifact was pushed and tagged now.
    pub pushed: Vec<String>,
    /// Clusters whose push failed, and why.
    pub failed: Vec<(String, String)>,
}

/// The record at `refs/starmap/artifacts/<branch>`, and its commit. A record of another
/// repository or tag counts as none: everything is pushed there again.
pub fn read_record(deploy: &DeployRepo, oci: &OciSettings) -> Result<(Option<Oid>, Published)> {
    let name = fetch_record(deploy);
    let Ok(commit) = deploy.repo.refname_to_id(&name) else {
        return Ok((None, fresh(oci)));
    };
    let tree = deploy.repo.find_commit(commit)?.tree_id();
    let record = match entry_at(&deploy.repo, Some(tree), PUBLISHED_FILE) {
        Some(oid) => Published::parse(&blob_text(&deploy.repo, oid)?, &format!("{name}:{PUBLISHED_FILE}"))?,
        None => fresh(oci),
    };
    if record.repository != oci.repository() || record.tag != oci.tag {
        return Ok((Some(commit), fresh(oci)));
    }
    Ok((Some(commit), record))
}

/// Artifacts behind the deploy branch's tip: the record (as it is, whatever the source now
/// configures) and the clusters whose layer at the tip is not the one the record says is
/// pushed. `None` when the tip records no artifacts (no OCI delivery).
pub fn behind(deploy: &DeployRepo) -> Result<Option<(Published, Vec<String>)>> {
    let Some(tip) = deploy.tip()? else {
        return Ok(None);
    };
    let repo = &deploy.repo;
    let digests = match entry_at(repo, Some(tip.tree), DIGESTS_FILE) {
        Some(oid) => Digests::parse(&blob_text(repo, oid)?),
        None => return Ok(None),
    };
    if digests.clusters.values().all(|d| d.artifact.is_none()) {
        return Ok(None);
    }
    let name = fetch_record(deploy);
    let record = match deploy.repo.refname_to_id(&name) {
        Ok(commit) => {
            let tree = repo.find_commit(commit)?.tree_id();
            match entry_at(repo, Some(tree), PUBLISHED_FILE) {
                Some(oid) => Published::parse(&blob_text(repo, oid)?, &format!("{name}:{PUBLISHED_FILE}"))?,
                None => Published::default(),
            }
        }
        Err(_) => Published::default(),
    };
    let behind = digests
        .clusters
        .iter()
        .filter(|(c, d)| d.artifact.is_some() && record.clusters.get(*c).map(|a| &a.layer) != d.artifact.as_ref())
        .map(|(c, _)| c.clone())
        .collect();
    Ok(Some((record, behind)))
}

/// The record's ref name, fetched first from a remote deploy repo: a render elsewhere (another
/// CI job, the controller) may have published since.
fn fetch_record(deploy: &DeployRepo) -> String {
    let name = record_ref(&deploy.branch);
    if deploy.remote {
        let spec = format!("+{name}:{name}");
        if let Err(e) = crate::gitstore::remote::fetch(&deploy.repo, &[&spec]) {
            tracing::debug!("no record of published artifacts fetched: {e}");
        }
    }
    name
}

fn fresh(oci: &OciSettings) -> Published {
    Published {
        repository: oci.repository().to_string(),
        tag: oci.tag.clone(),
        ..Default::default()
    }
}

/// Whether the record says every artifact of `tip` is pushed: then a render has nothing to
/// publish and asks no registry.
pub fn up_to_date(deploy: &DeployRepo, oci: &OciSettings) -> Result<bool> {
    let Some(tip) = deploy.tip()? else {
        return Ok(true);
    };
    let (_, record) = read_record(deploy, oci)?;
    Ok(record.complete.as_deref() == Some(tip.commit.to_string().as_str()))
}

/// Push the artifact of every cluster of the branch tip that the record does not show in the
/// registry, then record what was pushed. `fresh` has the layers built by this render (the
/// others are built again from the tip's files); `source` is the deploy repo as the
/// `org.opencontainers.image.source` annotation names it.
pub fn publish(
    deploy: &DeployRepo,
    oci: &OciSettings,
    source: &str,
    fresh: &BTreeMap<String, Layer>,
    runtime: &tokio::runtime::Handle,
) -> Result<PublishOutcome> {
    let Some(tip) = deploy.tip()? else {
        return Ok(PublishOutcome::default());
    };
    let (record_commit, mut record) = read_record(deploy, oci)?;
    let tip_sha = tip.commit.to_string();
    if record.complete.as_deref() == Some(tip_sha.as_str()) {
        return Ok(PublishOutcome::default());
    }
    let repo = &deploy.repo;
    let digests = entry_at(repo, Some(tip.tree), DIGESTS_FILE)
        .map(|oid| blob_text(repo, oid))
        .transpose()?
        .map(|text| Digests::parse(&text))
        .unwrap_or_default();
    // Clusters that left the fleet leave the record (their tags stay in the registry).
    record.clusters.retain(|c, _| digests.clusters.contains_key(c));
    let wanted: Vec<(&String, &str)> = digests
        .clusters
        .iter()
        .filter_map(|(c, d)| {
            let layer = d.artifact.as_deref()?;
            (record.clusters.get(c).map(|a| a.layer.as_str()) != Some(layer)).then_some((c, layer))
        })
        .collect();
    let dirs = entries_at(repo, Some(tip.tree), CLUSTERS_DIR);
    let mut layers: Vec<(String, Layer)> = Vec::with_capacity(wanted.len());
    for (cluster, digest) in &wanted {
        let layer = match fresh.get(*cluster).filter(|l| l.digest == *digest) {
            Some(l) => l.clone(),
            None => {
                let dir = dirs
                    .get(*cluster)
                    .ok_or_else(|| Error::msg(format!("{CLUSTERS_DIR}/{cluster}: missing at the tip {tip_sha}")))?;
                let files: Vec<(String, Vec<u8>)> = list_blobs(repo, *dir)?
                    .into_iter()
                    .map(|(path, oid)| Ok((path, repo.find_blob(oid)?.content().to_vec())))
                    .collect::<Result<_>>()?;
                let layer = artifact::layer(files.iter().map(|(p, c)| (p.as_str(), c.as_slice())));
                if layer.digest != *digest {
                    return Err(Error::msg(format!(
                        "cluster {cluster}: the artifact built from {CLUSTERS_DIR}/{cluster} at {tip_sha} is {}, while the index records {digest}; render with --no-cache to record it again",
                        layer.digest
                    )));
                }
                layer
            }
        };
        layers.push((cluster.to_string(), layer));
    }
    let commit = repo.find_commit(tip.commit)?;
    let annotations = Annotations {
        created: crate::time::rfc3339(commit.time().seconds()),
        source: source.to_string(),
        revision: artifact::revision(&deploy.branch, &tip_sha),
    };
    let registry = Registry::new(oci)?;
    let manifests: Vec<(String, Vec<u8>, &Layer)> = layers
        .iter()
        .map(|(c, l)| {
            let m = artifact::manifest(&l.digest, l.bytes.len(), registry.layer_media_type(), &annotations);
            (c.clone(), m, l)
        })
        .collect();
    let step = crate::progress::step("pushing artifacts", manifests.len());
    let results: Vec<(String, Result<String>)> = runtime.block_on(async {
        stream::iter(manifests.iter().map(|(cluster, manifest, layer)| {
            let (registry, step) = (&registry, &step);
            async move {
                let artifact = Artifact {
                    cluster,
                    layer: &layer.bytes,
                    layer_digest: &layer.digest,
                    manifest,
                };
                let pushed = registry.push(&artifact, &oci.tag).await;
                step.advance(1);
                (cluster.clone(), pushed)
            }
        }))
        .buffer_unordered(oci.concurrency.max(1))
        .collect()
        .await
    });
    let mut done = PublishOutcome::default();
    for (cluster, result) in results {
        match result {
            Ok(manifest) => {
                let layer = digests.clusters[&cluster].artifact.clone().unwrap_or_default();
                record.clusters.insert(
                    cluster.clone(),
                    PublishedArtifact {
                        layer,
                        manifest,
                        revision: annotations.revision.clone(),
                    },
                );
                done.pushed.push(cluster);
            }
            Err(e) => done.failed.push((cluster, e.message)),
        }
    }
    done.pushed.sort();
    done.failed.sort();
    record.complete = done.failed.is_empty().then(|| tip_sha.clone());
    write_record(deploy, record_commit, &record)?;
    Ok(done)
}

/// The record as a commit on `refs/starmap/artifacts/<branch>`, moved by compare-and-swap and
/// pushed when the deploy repo is remote. Losing a race here costs only pushes that the next
/// render repeats (and the registry already has).
fn write_record(deploy: &DeployRepo, parent: Option<Oid>, record: &Published) -> Result<()> {
    let repo = &deploy.repo;
    let mut objects = ObjectSet::default();
    let blob = objects.add(ObjectType::Blob, record.to_yaml().into_bytes());
    let tree = objects.add_tree(vec![Entry::blob(PUBLISHED_FILE, blob)]);
    objects.write(repo)?;
    let message = match &record.complete {
        Some(c) => format!("starmap: artifacts of {c} published to {}", record.repository),
        None => format!("starmap: artifacts partly published to {}", record.repository),
    };
    let commit = deploy.commit_object(tree, parent, &message)?;
    let name = record_ref(&deploy.branch);
    let moved = match parent {
        Some(old) => repo.reference_matching(&name, commit, true, old, "starmap: publish"),
        None => repo.reference(&name, commit, false, "starmap: publish"),
    };
    if let Err(e) = moved {
        tracing::warn!(
            "the record of published artifacts moved meanwhile; not updated: {}",
            e.message()
        );
        return Ok(());
    }
    if deploy.remote
        && let Err(e) = deploy.push_ref(&name)
    {
        tracing::warn!("the record of published artifacts was not pushed: {e}");
    }
    Ok(())
}

/// The source annotation of a deploy repo given as a path: its absolute path.
pub fn path_source(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}
