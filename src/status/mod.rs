//! Status of live objects on the clusters (api.md section 5).
//!
//! [`health`] holds the per-kind health rules (Argo CD / gitops-engine and kstatus semantics);
//! [`report`] the status files written into the deploy repo; [`collect`] reads the clusters;
//! [`summary`] rolls status files up into summaries.

pub mod collect;
pub mod health;
pub mod report;
pub mod store;
pub mod summary;

pub use health::{Health, HealthStatus, application_health, health_of, health_of_live};
