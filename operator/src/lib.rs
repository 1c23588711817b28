//! `leadership-operator`: keeps LeadershipLeases true. It clears claims that ran out (judged on its
//! own clock), carries out revocations, releases claims of pods whose containers all terminated,
//! and reports conditions, Events and metrics. Replicas lead themselves with the project's own
//! leadership. Also home of the `kubectl-leadership` CLI.
//!
//! - [`plan`]: the pure decisions; [`health`]: whether a unit's app is healthy and which
//!   standby should lead; [`pod_index`]: what is known of pods; [`reconcile`]: the controller
//!   that carries the decisions out;
//!   [`events`]: the Events it publishes;
//! - [`run`]: start-up, admin server and high availability; [`config`]: flags;
//! - [`metrics`]: Prometheus metrics, with [`lease_metrics`] and [`failover`] for the
//!   per-application ones; [`cli`]: `kubectl leadership ...`;
//! - [`inject`]: the pure sidecar injection; [`webhook`]: the admission webhook that serves it.
#![forbid(unsafe_code)]

pub mod cli;
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
