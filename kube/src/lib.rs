//! Leadership on Kubernetes: the `LeadershipLease` custom resource ([`crd`]) and the store that
//! implements the leadership interfaces on it ([`store`]).
#![forbid(unsafe_code)]

pub mod client;
pub mod crd;
pub mod store;

pub use client::connect;
pub use store::{ExpiryAuthority, KubeStore, Scope, StoreConfig};
