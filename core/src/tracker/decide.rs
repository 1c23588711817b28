//! The tracker's decisions as pure functions of its view of the lease (the model checker drives
//! them too): whether a minion may claim, and what a leader must do when its view changes.

use tokio::time::Instant;

use crate::api::LeaseView;

/// Whether a minion may claim at `now`: the lease is free
/// (no holder, or its claim has run out by this observer's judgement) or still names this unit, it
/// is not being revoked from it, and no pending handover excludes it.
pub fn may_claim(view: &LeaseView, unit: &str, now: Instant) -> bool {
    if view.handover.as_ref().is_some_and(|h| !h.admits(unit)) {
        return false;
    }
    match view.holder_at(now) {
        None => true,
        Some(holder) => holder == unit && view.revoked.as_deref() != Some(holder),
    }
}

/// What a leader holding `term` must do when it sees `view` .
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderVerdict {
    /// Keep leading.
    Keep,
    /// Its revocation is pending: step down now and release (V2).
    Revoked,
    /// Another grant replaced its own: it is no longer leader.
    Lost,
}

/// Judges a leader's new view of its lease.
pub fn judge_as_leader(view: &LeaseView, unit: &str, term: u64) -> LeaderVerdict {
    if view.revoked.as_deref() == Some(unit) {
        LeaderVerdict::Revoked
    } else if view.term > term || (view.term == term && view.holder.as_deref() != Some(unit)) {
        LeaderVerdict::Lost
    } else {
        LeaderVerdict::Keep
    }
}
