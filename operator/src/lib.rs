//! `leadership-operator`: keeps LeadershipLeases true. It clears claims that ran out (judged on its
//! own clock), carries out revocations, releases claims of pods whose containers all terminated,
//! and reports conditions, Events and metrics. Replicas lead themselves with the project's own
//! leadership. It also serves the sidecar injection webhook.
//!
//! Each module says what it holds; `docs/architecture.md` (Layout) lists them all by role.
#![forbid(unsafe_code)]

pub mod config;
pub mod events;
pub mod failover;
pub mod health;
pub mod inject;
pub mod lease_metrics;
pub mod metrics;
pub mod plan;
pub mod pod_index;
pub mod reconcile;
pub mod run;
pub mod webhook;
