//! `leadership-sidecar`: one per pod. It keeps its unit's leadership of its application with a
//! Tracker on the Kubernetes store, and serves it to the app containers over a Unix socket
//! (HTTP/1.1 + JSON), with probes and metrics on a TCP admin port.
//!
//! - [`config`]: flags and environment, and the client subcommands;
//! - [`api`]: the socket API; [`admin`]: the admin port; [`metrics`]: Prometheus metrics, with
//!   [`counted`] counting the claims;
//! - [`http`]: the serving loop with its limits; [`run`]: the wiring and the graceful shutdown;
//! - [`record`]: the leadership record the fault checker reads; [`hooks`]: elected/deposed hooks;
//! - [`cli`]: `is-leader`, `wait-leader`, `wait-minion`, `status`, `release`;
//! - [`openapi`]: the socket API's OpenAPI document, from the routes and the wire types.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
pub mod counted;
pub mod hooks;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod record;
pub mod run;
