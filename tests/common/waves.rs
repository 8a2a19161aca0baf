//! The fixtures with the storefront placement rolled out in waves (canary, early, main).

use std::path::{Path, PathBuf};

use super::{copy_dir, fixtures};

pub const PLACEMENT: &str = "apiVersion: starmap.dev/v1alpha1
kind: Placement
metadata:
  name: storefront
spec:
  clusterSelectors:
  - matchLabels:
      tier: edge
    matchExpressions:
    - key: env
      operator: NotIn
      values: [retired]
    - key: starmap.dev/cluster
      operator: NotIn
      values: [store-2001]
  workloads:
  - paths: [\"workloads/storefront/**\"]
  - kinds: [Namespace]
    names: [storefront]
";

pub const WAVES: &str = "  rollout:
    minHealthyTime: 0s
    progressDeadline: 1h
    waves:
    - name: canary
      clusterSelector: {matchLabels: {ring: canary}}
    - name: early
      clusterSelector: {matchLabels: {ring: early}}
    - name: main
";

/// The fixtures with the storefront placement rolled out in waves.
pub fn source(dir: &Path, extra_spec: &str) -> PathBuf {
    let src = dir.join("source");
    copy_dir(&fixtures(), &src);
    std::fs::write(
        src.join("placements/storefront.yaml"),
        format!("{PLACEMENT}{extra_spec}"),
    )
    .unwrap();
    src
}

pub fn set_image(src: &Path, tag: &str) {
    let path = src.join("workloads/storefront/deployment.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let re_from = text
        .lines()
        .find(|l| l.trim_start().starts_with("image:"))
        .expect("an image line")
        .to_string();
    let indent = &re_from[..re_from.len() - re_from.trim_start().len()];
    std::fs::write(
        &path,
        text.replace(&re_from, &format!("{indent}image: ghcr.io/example/storefront:{tag}")),
    )
    .unwrap();
}
