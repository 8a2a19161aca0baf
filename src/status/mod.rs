//! Status of live objects on the clusters (api.md section 5).
//!
//! [`health`] holds the per-kind health rules (Argo CD / gitops-engine and kstatus semantics).

pub mod health;

pub use health::{Health, HealthStatus, application_health, health_of, health_of_live};
