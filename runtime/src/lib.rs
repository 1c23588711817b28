//! The process plumbing that `leadership-operator` and `leadership-sidecar` share, so that both
//! log, serve and answer probes the same way: [`logs`] (the log format flag and its setup),
//! [`http`] (an HTTP/1.1 serving loop with limits on slow and oversized requests), [`admin`]
//! (the admin port's `/metrics` beside each binary's own probes) and [`metrics`] (the registry
//! those metrics are kept in).
#![forbid(unsafe_code)]

pub mod admin;
pub mod http;
pub mod logs;
pub mod metrics;
