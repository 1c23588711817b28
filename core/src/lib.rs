//! Application leadership with guaranteed leases.
//!
//! For every application (a set of units), at most one unit is leader at any instant. This crate
//! holds the semantics every other part shares:
//!
//! - [`api`]: the interfaces, after Juju's leadership package ([`Claimer`], [`Checker`], [`Token`],
//!   [`Pinner`], [`Reader`], [`Revoker`], [`Tracker`], [`Ticket`]) and the push-based [`Watcher`];
//! - [`lease`]: the pure lease rules (grant, extend, deny, release, revoke, pins, the fencing term);
//! - [`expiry`]: expiry by observation on the observer's own monotonic clock;
//! - [`memory`]: the in-memory store, for one process and as the reference implementation;
//! - [`tracker`]: the Tracker that keeps one unit's leadership over any store;
//! - [`validate`]: names and durations;
//! - [`wire`]: the JSON bodies of the sidecar's socket API, and its leadership record's lines and clock;
//! - `client` (feature `client`): a client of that API, and a Tracker over it;
//! - `conformance` (feature `conformance`): the suite every store must pass.
#![forbid(unsafe_code)]

pub mod api;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod expiry;
pub mod lease;
pub mod memory;
mod ticket;
pub mod tracker;
pub mod validate;
pub mod wire;

pub use api::{
    Checker, Claimer, Eligibility, Grant, LeadershipToken, LeaseFeed, LeaseView, Pinner, Reader, Revoker,
    Ticket, Token, Tracker, Watcher,
};
pub use error::{Error, ErrorCode, Result};
pub use memory::MemoryStore;
pub use ticket::SharedTicket;
pub use tracker::{LeaseTracker, TrackerConfig, TrackerStatus, Transition};
