//! Status as a collection round writes it (`status::store::write_round`, as `status collect`
//! does), with the health a test chooses standing in for the live clusters: gate decisions
//! and dashboards on top of it are deterministic. Real collection is tests/status_collect.rs
//! and tests/e2e_rollout.rs.

use std::path::Path;

use starmap::config::DEFAULT_STATUS_BRANCH;
use starmap::formats::index::parse_index;
use starmap::formats::status::{ClusterStatus, ObjectStatus};
use starmap::gitstore::DeployRepo;
use starmap::health::Health;
use starmap::snapshot::{DeployState, StatusBranches};
use starmap::status::collect::ClusterOutcome;
use starmap::status::store;

use super::tree_files;

pub fn no_summaries(_: &DeployState<'_>, _: &[ClusterStatus]) -> starmap::Result<Vec<(String, serde_json::Value)>> {
    Ok(vec![])
}

/// Status for `clusters` as a collection round would write it: each runs the branch tip
/// and every object the tip's index puts there has the health `health_of(cluster)`.
pub fn report_status(deploy: &Path, clusters: &[&str], health_of: &dyn Fn(&str) -> Health) {
    let repo = DeployRepo::open(deploy.to_str().unwrap(), "main", false, false).unwrap();
    let tip = repo.tip().unwrap().unwrap();
    let outcomes: Vec<ClusterOutcome> = clusters
        .iter()
        .map(|c| {
            let path = format!(".starmap/clusters/{c}.yaml");
            let text = tree_files(deploy, "refs/heads/main")[&path].clone();
            let index = parse_index(&text, &path).unwrap();
            let health = health_of(c);
            ClusterOutcome::Seen(ClusterStatus {
                cluster: c.to_string(),
                reachable: true,
                stale: false,
                last_seen: Some(starmap::time::now_rfc3339()),
                error: None,
                source: "kubeconfig".into(),
                deploy_commit: None,
                applied_revision: Some(tip.commit.to_string()),
                current: false,
                sync: None,
                objects: index
                    .objects
                    .iter()
                    .map(|e| ObjectStatus {
                        api_version: e.api_version.clone(),
                        kind: e.kind.clone(),
                        namespace: e.namespace.clone(),
                        name: e.name.clone(),
                        placements: e.placements.clone(),
                        health: if e.kind == "Deployment" {
                            health
                        } else {
                            Health::Healthy
                        },
                        message: if health == Health::Degraded && e.kind == "Deployment" {
                            "ProgressDeadlineExceeded: ReplicaSet has timed out progressing".into()
                        } else {
                            String::new()
                        },
                        applied: false,
                        generation: Some(1),
                        observed_generation: Some(1),
                        status: None,
                    })
                    .collect(),
            })
        })
        .collect();
    write(deploy, &outcomes);
}

/// A round where `cluster` did not answer: its last status stays, marked stale.
pub fn report_unreachable(deploy: &Path, cluster: &str, error: &str) {
    let outcome = ClusterOutcome::Unreachable {
        cluster: cluster.to_string(),
        error: error.to_string(),
    };
    write(deploy, &[outcome]);
}

/// Written as `status collect` writes it: on the status branch (the default starmap-status).
fn write(deploy: &Path, outcomes: &[ClusterOutcome]) {
    let branches = StatusBranches::open(deploy.to_str().unwrap(), "main", DEFAULT_STATUS_BRANCH, false).unwrap();
    store::write_round(&branches, Some(outcomes), &no_summaries, false, false).unwrap();
}
