//! What the processes know and decide, with the product's own functions: a unit's "leader" answer
//! and its claims, renewals and step-downs (the tracker), and the operator's expiries.

use std::time::Duration;

use leadership::{
    LeaseView, TrackerStatus,
    expiry::Observation,
    tracker::{Guarantee, LeaderVerdict, Timing, judge_as_leader, may_claim},
};
use tokio::time::Instant;

use crate::{
    LeaseModel,
    config::Variant,
    state::{Object, State, Write, WriteKind},
    unit_name,
};

impl LeaseModel {
    /// Unit `i`'s clock reading in `state`.
    pub(crate) fn unit_now(&self, state: &State, i: usize) -> Instant {
        state.units[i].observer.clock.read(&self.config, state.now)
    }

    /// The operator's clock reading in `state`.
    pub(crate) fn operator_now(&self, state: &State) -> Instant {
        state.operator.clock.read(&self.config, state.now)
    }

    /// Whether unit `i` reports "leader" in `state`: the product's own answer.
    pub fn is_leader(&self, state: &State, i: usize) -> bool {
        let unit = &state.units[i];
        let status = TrackerStatus {
            guarantee: unit.guarantee.map(|g| match self.config.variant {
                Variant::LeaderForTheWholeLease => Guarantee {
                    timing: Timing {
                        claim_duration: Duration::ZERO,
                        ..g.timing
                    },
                    ..g
                },
                _ => g,
            }),
            ..TrackerStatus::default()
        };
        status.is_leader(self.unit_now(state, i))
    }

    /// Whether unit `i`'s token would check in `state`, as its own store answers it: its own claim's
    /// lease has not run out on its clock, and its view vouches for it in that term (it holds the
    /// lease and no revocation or handover of it is pending: the stores' `Lease::vouches_for`).
    pub fn token_checks(&self, state: &State, i: usize) -> bool {
        let unit = &state.units[i];
        let Some(guarantee) = unit.guarantee else {
            return false;
        };
        self.unit_now(state, i) < guarantee.guaranteed_until()
            && unit
                .observer
                .view
                .as_ref()
                .and_then(|object| object.lease.vouches_for(&unit_name(i)))
                == Some(unit.term)
    }

    /// The units that report "leader" in `state`.
    pub fn leaders(&self, state: &State) -> Vec<usize> {
        (0..state.units.len())
            .filter(|&i| self.is_leader(state, i))
            .collect()
    }

    /// What an observer with `seen` knows of `object` at `now`: the product's view, or the
    /// variant that trusts the holder's timestamp.
    fn view_of(&self, object: &Object, seen: &Observation) -> LeaseView {
        let mut view = LeaseView::of(&object.lease, seen, &self.config.policy());
        if self.config.variant == Variant::TrustTheHoldersTimestamp {
            view.expires_at = match (&object.lease.holder, object.stamp) {
                (Some(claim), Some(stamp)) if !object.lease.is_pinned() => Some(stamp + claim.duration),
                _ => None,
            };
        }
        view
    }

    /// What a unit knows of `object`: as any observer, except that a unit that leaves expiry to
    /// the operator never sees a named holder's claim run out (it waits for the operator to clear
    /// it).
    fn unit_view(&self, object: &Object, seen: &Observation) -> LeaseView {
        let mut view = self.view_of(object, seen);
        if !self.config.units_judge_expiry {
            view.expires_at = None;
        }
        view
    }

    /// The write unit `i` would send to claim now, if its tracker would claim.
    pub(crate) fn claim_write(&self, state: &State, i: usize) -> Option<Write> {
        let unit = &state.units[i];
        let now = self.unit_now(state, i);
        if unit.waiting.is_some() || self.is_leader(state, i) {
            return None;
        }
        let object = unit.observer.view.as_ref()?;
        if unit.released_term.is_some_and(|t| object.lease.term <= t) {
            return None;
        }
        let name = unit_name(i);
        let view = self.unit_view(object, &unit.observer.seen);
        if !may_claim(&view, &name, now) {
            return None;
        }
        let expired = view.expires_at.is_some_and(|at| now >= at);
        let (next, _) = object
            .lease
            .claim(&name, self.config.lease_length, expired)
            .ok()?;
        Some(Write {
            from: Some(i),
            request: unit.epoch,
            kind: WriteKind::Claim { claimed_at: now },
            expected: object.version,
            next,
            stamp: now,
        })
    }

    /// The renewal unit `i` would send now, if it may: from the earliest moment the tracker's
    /// spread allows (a tenth of the renewal interval before `renew_at`) until "leader" ends.
    pub(crate) fn renew_write(&self, state: &State, i: usize) -> Option<Write> {
        let unit = &state.units[i];
        let now = self.unit_now(state, i);
        let guarantee = unit.guarantee?;
        if unit.waiting.is_some() || now < guarantee.renew_at_spread(1.0) || now >= guarantee.leader_until() {
            return None;
        }
        let object = unit.observer.view.as_ref()?;
        let (next, _) = object
            .lease
            .claim(&unit_name(i), self.config.lease_length, false)
            .ok()?;
        Some(Write {
            from: Some(i),
            request: unit.epoch,
            kind: WriteKind::Renew { claimed_at: now },
            expected: object.version,
            next,
            stamp: now,
        })
    }

    /// The operator learns the server's object on its clock (see `apply`: it learns every change
    /// as it is written).
    pub(crate) fn operator_learns(&self, state: &mut State) {
        let now = self.operator_now(state);
        let object = state.server.clone();
        state.operator.learn(object, now);
    }

    /// The write the operator would send to clear a claim it saw run out.
    pub(crate) fn expire_write(&self, state: &State) -> Option<Write> {
        let operator = &state.operator;
        let object = operator.view.as_ref()?;
        let now = self.operator_now(state);
        let expired = self
            .view_of(object, &operator.seen)
            .expires_at
            .is_some_and(|at| now >= at);
        let next = object.lease.expire(expired)?;
        Some(Write {
            from: None,
            request: 0,
            kind: WriteKind::Expire,
            expected: object.version,
            next,
            stamp: now,
        })
    }

    /// Whether a step is due that a prompt system takes before time passes.
    pub(crate) fn anything_due(&self, state: &State) -> bool {
        !state.replies.is_empty()
            || state.units.iter().any(|u| u.observer.is_behind(&state.server))
            || (0..state.units.len())
                .any(|i| self.claim_write(state, i).is_some() || self.renew_write(state, i).is_some())
            || (state.budget.releases > 0 && !self.leaders(state).is_empty())
            || (self.config.operator && self.expire_write(state).is_some())
    }

    /// A unit's store learns `object` (if newer than what it knew) on the unit's clock; the
    /// tracker acts on it when it is not waiting for a write, as its loop does.
    ///
    /// A unit that leaves expiry to the operator keeps no expiry observation: it never reads one
    /// (its view never shows a claim run out), so states that differ only in when it first saw a
    /// claim are the same state, and dropping the observation is a sound reduction.
    pub(crate) fn learn(&self, state: &mut State, i: usize, object: Object) {
        let now = self.unit_now(state, i);
        let unit = &mut state.units[i];
        unit.observer.learn(object, now);
        if !self.config.units_judge_expiry {
            unit.observer.seen = Observation::default();
        }
        if unit.waiting.is_none() {
            self.judge(state, i);
        }
    }

    /// The tracker looks at its latest view: a leader keeps leading, loses the lease, or steps
    /// down and releases when revoked; a minion still named holder releases when revoked.
    pub(crate) fn judge(&self, state: &mut State, i: usize) {
        let now = self.unit_now(state, i);
        let name = unit_name(i);
        let unit = &mut state.units[i];
        let Some(object) = &unit.observer.view else { return };
        let view = self.unit_view(object, &unit.observer.seen);
        let release = match unit.guarantee {
            Some(_) => match judge_as_leader(&view, &name, unit.term) {
                LeaderVerdict::Keep => false,
                LeaderVerdict::Lost => {
                    unit.guarantee = None;
                    false
                }
                LeaderVerdict::Revoked => {
                    unit.guarantee = None;
                    true
                }
            },
            None => view.holder.as_deref() == Some(&name) && view.revoked.as_deref() == Some(&name),
        };
        if release {
            self.send(state, Write::release(i, now));
        }
    }
}
