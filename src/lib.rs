//! starmap: render one set of Kubernetes workloads, customized per cluster, into a GitOps
//! deploy repository that Argo CD or Flux sync, one directory per cluster.
//!
//! The modules form layers in data-flow order (ARCHITECTURE.md draws them; `tests/structure.rs`
//! keeps them honest: no cycles, no I/O in the pure core):
//!
//! - leaves: `error`, `redact`, `time`, `retry`, `health`, `cel`, `yaml`;
//! - what users write: `config` (`starmap.yaml`), `spec` (the kinds), `template`, `secrets`;
//! - the validated `model`, and `formats` (the deploy repo's files);
//! - the pure core: `plan` (what goes where) → `render`, `gitops` → `rollout`, `summary` →
//!   `explain`, `desired` (the tree a render wants);
//! - the shell: `gitstore`, `oci`, `schema`, `source`, `snapshot`, `deploy`, `status`, and on top
//!   `pipeline` (the jobs) and `controller` (`starmap run`).

pub mod cel;
pub mod config;
pub mod controller;
pub mod dashboard;
pub mod deploy;
pub mod desired;
pub mod error;
pub mod explain;
pub mod formats;
pub mod gitops;
pub mod gitstore;
pub mod health;
pub mod model;
pub mod oci;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod redact;
pub mod render;
pub mod retry;
pub mod rollout;
pub mod schema;
pub mod secrets;
pub mod snapshot;
pub mod source;
pub mod spec;
pub mod status;
pub mod summary;
pub mod template;
pub mod time;
pub mod yaml;

pub use error::{Error, Result};
pub use model::Model;
