//! A model of the lease protocol, explored exhaustively with [stateright], that drives the core
//! crate's own pure functions rather than a re-implementation of them:
//!
//! - the lease rules ([`Lease::claim`], [`Lease::release`], [`Lease::revoke`], [`Lease::expire`],
//!   [`Lease::pin`], [`Lease::unpin`]);
//! - expiry by observation ([`Observation`], [`ExpiryPolicy`]) and the view built from it
//!   ([`LeaseView::of`]);
//! - the tracker's timing ([`Guarantee`], [`TrackerStatus::is_leader`]) and decisions
//!   ([`may_claim`], [`judge_as_leader`]).
//!
//! What is modelled: units that claim, renew the slack before "leader" ends (the tracker's
//! `Timing`), time out a renewal at the end of their guarantee, release, crash and restart empty;
//! an operator that expires claims it has watched run out, and restarts with no memory; an API server holding one object, linearizable, with a
//! resourceVersion compare-and-swap on every write; watch events that arrive late or not at all
//! (a unit learns the newest object whenever the model lets it, intermediate events may be
//! missed, and a relist after a lost watch is the same step; the operator learns every change as
//! it is written, the worst case, since learning later only starts its timers later); writes
//! that reach the server the moment they are sent (the latest instant after the sender read its clock: the worst
//! case for its guarantee) and replies that are delayed or lost, after which the sender gives up
//! (a client timeout); a paused unit (any process may go without a step for as long as the
//! model likes); revocations, handovers, pins and unpins by an administrator. Each process has its own
//! clock: an arbitrary offset and a rate within the drift bound of real time (the operator's is
//! the fastest: it only waits for deadlines on it, and may always wait longer).
//!
//! Real time advances in ticks; a process reads its clock as `offset + rate × real time`. The
//! properties are checked in every reachable state up to a horizon (see [`Config`]).

//!
//! The parts, by file: [`config`] (what to explore), [`state`] (the system's state and the
//! steps between states), `processes` (what units and the operator know and decide), `server`
//! (the API server's compare-and-swap), `steps` (initial states, enabled actions and their
//! effects), [`properties`] (what is proven).
//!
//! [`Lease::claim`]: leadership::lease::Lease::claim
//! [`Lease::release`]: leadership::lease::Lease::release
//! [`Lease::revoke`]: leadership::lease::Lease::revoke
//! [`Lease::expire`]: leadership::lease::Lease::expire
//! [`Lease::pin`]: leadership::lease::Lease::pin
//! [`Lease::unpin`]: leadership::lease::Lease::unpin
//! [`Observation`]: leadership::expiry::Observation
//! [`ExpiryPolicy`]: leadership::expiry::ExpiryPolicy
//! [`LeaseView::of`]: leadership::LeaseView::of
//! [`Guarantee`]: leadership::tracker::Guarantee
//! [`TrackerStatus::is_leader`]: leadership::TrackerStatus::is_leader
//! [`may_claim`]: leadership::tracker::may_claim
//! [`judge_as_leader`]: leadership::tracker::judge_as_leader

use std::sync::OnceLock;

use tokio::time::Instant;

pub mod config;
mod processes;
pub mod properties;
mod server;
pub mod state;
mod steps;

pub use config::{Budget, Config, Variant};
pub use properties::SAFETY;
pub use state::{Action, Clock, Object, Observer, Reply, State, Unit, Write, WriteKind};

/// The instant that real time zero maps to (any fixed instant will do).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The model: a configuration.
#[derive(Clone, Debug)]
pub struct LeaseModel {
    /// What to explore.
    pub config: Config,
}

impl LeaseModel {
    /// The model of `config`.
    pub fn new(config: Config) -> LeaseModel {
        LeaseModel { config }
    }
}

/// A unit's name.
pub fn unit_name(i: usize) -> String {
    format!("u{i}")
}
