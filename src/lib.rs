//! starmap: render one set of Kubernetes workloads, customized per cluster, into a GitOps
//! deploy repository that Argo CD or Flux sync, one directory per cluster.
//!
//! The pipeline, one module per stage (see ARCHITECTURE.md):
//! `source` (read files, parse, validate) → `model::Model` → `plan` (what goes where, and
//! why) → `render` (templates, patches, normalization, YAML) → `deploy` (git objects, one
//! commit, push with retry).

pub mod controller;
pub mod deploy;
pub mod error;
pub mod git;
pub mod gitops;
pub mod model;
pub mod pipeline;
pub mod plan;
pub mod render;
pub mod rollout;
pub mod schema;
pub mod source;
pub mod spec;
pub mod status;
pub mod yaml;

pub use error::{Error, Result};
pub use model::Model;
