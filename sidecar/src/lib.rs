//! `leadership-sidecar`: one per pod. It keeps its unit's leadership of its application with a
//! Tracker on the Kubernetes store, and serves it to the app containers over a Unix socket
//! (HTTP/1.1 + JSON), with probes and metrics on a TCP admin port.
//!
//!
//! Each module says what it holds; `docs/architecture.md` (Layout) lists them all by role.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod counted;
pub mod hooks;
pub mod metrics;
pub mod openapi;
pub mod record;
pub mod run;
