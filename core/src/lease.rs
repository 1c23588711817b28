//! The lease rules: pure transitions of one application's lease, with no clock and no I/O.
//!
//! A store reads the lease, asks these functions for the next state, and writes it back with a
//! compare-and-swap. Whether the current claim has run out is the caller's judgement, made by
//! observation on its own clock (see [`crate::expiry`]); these rules only say what follows from it.

use std::{collections::BTreeSet, time::Duration};

use crate::{Error, Result};

/// The largest term and renewal count: 2^53 − 1, the largest integer every JSON reader
/// (JavaScript's numbers included) reads exactly. A lease at the bound takes no further grant
/// (or renewal): the transitions refuse instead of wrapping or saturating, so a term is never
/// reused for two grants.
pub const MAX_COUNT: u64 = (1 << 53) - 1;

/// One more than `count`, unless that passes [`MAX_COUNT`].
fn next_count(count: u64, what: &'static str) -> Result<u64> {
    count
        .checked_add(1)
        .filter(|next| *next <= MAX_COUNT)
        .ok_or_else(|| Error::invalid(what, format!("{count} is at its bound (2^53 - 1)")))
}

/// The identity of one claim as observers see it: it changes at every grant and every renewal, and
/// never repeats (a new grant always has a new term; renewals count up within a term).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimId {
    /// The fencing term of the grant.
    pub term: u64,
    /// How many times the grant has been extended.
    pub renewals: u64,
}

/// The current claim on a lease.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The unit that holds the lease.
    pub unit: String,
    /// How long the lease lasts after each grant or renewal is written.
    pub duration: Duration,
    /// How many times this grant has been extended.
    pub renewals: u64,
}

/// One application's lease: the claim, the fencing term, the pins and a pending revocation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The current claim, if any unit holds the lease.
    pub holder: Option<Claim>,
    /// The fencing term: rises by one at every grant that is not an extension, never decreases.
    pub term: u64,
    /// The entities that pin the lease; while any does, the claim does not expire.
    pub pins: BTreeSet<String>,
    /// A unit whose revocation is pending: it may not renew, and steps down when it learns of it.
    pub revoked: Option<String>,
    /// A pending handover: until the next grant, only the units it admits may claim.
    pub handover: Option<Handover>,
    /// After a claim runs out (not after a release), how long nobody may take the lease, so that
    /// a dead leader's last writes can drain. Zero by default.
    pub lock_delay: Duration,
}

/// A handover: the holder `from` steps down, and only `to` (or, with none named, any unit but
/// `from`) may take the lease until it is granted again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Handover {
    /// The unit that hands the lease over.
    pub from: String,
    /// The unit that is to take it, if one is named.
    pub to: Option<String>,
}

impl Handover {
    /// Whether `unit` may claim while this handover is pending.
    pub fn admits(&self, unit: &str) -> bool {
        match &self.to {
            Some(to) => to == unit,
            None => unit != self.from,
        }
    }
}

/// What a successful claim did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// A new grant, with a new term.
    Granted,
    /// The holder's claim was extended; the term is unchanged.
    Extended,
}

impl Lease {
    /// The identity of the current claim, for expiry observers.
    pub fn claim_id(&self) -> Option<ClaimId> {
        self.holder.as_ref().map(|c| ClaimId {
            term: self.term,
            renewals: c.renewals,
        })
    }

    /// The unit that holds the lease, if any.
    pub fn holder_unit(&self) -> Option<&str> {
        self.holder.as_ref().map(|c| c.unit.as_str())
    }

    /// The term under which the lease vouches for `unit`: it holds the lease and no revocation or
    /// handover of it is pending (SPEC K1, V2). A token adds the holder's own guarantee to this.
    pub fn vouches_for(&self, unit: &str) -> Option<u64> {
        (self.holder_unit() == Some(unit) && self.revoked.as_deref() != Some(unit)).then_some(self.term)
    }

    /// Whether any entity pins the lease (SPEC P1).
    pub fn is_pinned(&self) -> bool {
        !self.pins.is_empty()
    }

    /// Whether the current claim may be treated as run out, given the caller's observation that it
    /// has been unchanged for its full length plus a margin. Pinned leases never run out (P1).
    pub fn may_expire(&self, observed_expired: bool) -> bool {
        self.holder.is_some() && observed_expired && !self.is_pinned()
    }

    /// A claim by `unit` for `duration` (SPEC C1-C3).
    ///
    /// `observed_expired` is the caller's judgement that the current claim has run out. A free or
    /// run-out lease is granted with a new term; the holder's own claim is extended and its
    /// duration never shortened (C2); anyone else is denied (C3), as is a holder whose revocation
    /// is pending (V2).
    pub fn claim(
        &self,
        unit: &str,
        duration: Duration,
        observed_expired: bool,
    ) -> Result<(Lease, ClaimOutcome)> {
        if self.handover.as_ref().is_some_and(|h| !h.admits(unit)) {
            return Err(Error::ClaimDenied);
        }
        let run_out = self.may_expire(observed_expired);
        match &self.holder {
            Some(current) if !run_out => {
                if current.unit != unit || self.revoked.as_deref() == Some(unit) {
                    return Err(Error::ClaimDenied);
                }
                let mut next = self.clone();
                next.holder = Some(Claim {
                    unit: unit.to_owned(),
                    duration: current.duration.max(duration),
                    renewals: next_count(current.renewals, "renewals")?,
                });
                Ok((next, ClaimOutcome::Extended))
            }
            _ => {
                let mut next = self.clone();
                next.holder = Some(Claim {
                    unit: unit.to_owned(),
                    duration,
                    renewals: 0,
                });
                next.term = next_count(self.term, "term")?;
                next.revoked = None;
                next.handover = None;
                Ok((next, ClaimOutcome::Granted))
            }
        }
    }

    /// The holder `unit` gives the lease up (SPEC T8). The term is unchanged.
    pub fn release(&self, unit: &str) -> Result<Lease> {
        if self.holder_unit() != Some(unit) {
            return Err(Error::ClaimNotHeld);
        }
        Ok(self.cleared())
    }

    /// A revocation of `unit` (SPEC V1). `Ok(None)` means nothing changes: no unit holds the lease,
    /// or the revocation is already pending. The holder keeps the lease until it steps down or its
    /// claim runs out (V2).
    pub fn revoke(&self, unit: &str) -> Result<Option<Lease>> {
        match self.holder_unit() {
            None => Ok(None),
            Some(holder) if holder != unit => Err(Error::ClaimNotHeld),
            Some(_) if self.revoked.as_deref() == Some(unit) => Ok(None),
            Some(_) => {
                let mut next = self.clone();
                next.revoked = Some(unit.to_owned());
                Ok(Some(next))
            }
        }
    }

    /// A handover of the holder's lease to `to` (any other unit when `None`): the holder is
    /// revoked, and until the next grant only the units the handover admits may claim.
    pub fn hand_over(&self, to: Option<&str>) -> Result<Lease> {
        let Some(from) = self.holder_unit() else {
            return Err(Error::ClaimNotHeld);
        };
        if to == Some(from) {
            return Err(Error::invalid("to", format!("{from} already holds the lease")));
        }
        if self.handover.is_some() || self.revoked.is_some() {
            return Err(Error::invalid(
                "handover",
                "a handover or revocation is already pending",
            ));
        }
        let mut next = self.clone();
        next.revoked = Some(from.to_owned());
        next.handover = Some(Handover {
            from: from.to_owned(),
            to: to.map(str::to_owned),
        });
        Ok(next)
    }

    /// Clears a claim that the caller observed to have run out. `None` if there is nothing to
    /// clear or the lease is pinned. The term is unchanged.
    pub fn expire(&self, observed_expired: bool) -> Option<Lease> {
        self.may_expire(observed_expired).then(|| self.cleared())
    }

    /// Adds `entity`'s pin; `None` if it already pins the lease (SPEC P2).
    pub fn pin(&self, entity: &str) -> Option<Lease> {
        if self.pins.contains(entity) {
            return None;
        }
        let mut next = self.clone();
        next.pins.insert(entity.to_owned());
        Some(next)
    }

    /// Removes `entity`'s pin; `None` if it has none (SPEC P2).
    pub fn unpin(&self, entity: &str) -> Option<Lease> {
        if !self.pins.contains(entity) {
            return None;
        }
        let mut next = self.clone();
        next.pins.remove(entity);
        Some(next)
    }

    fn cleared(&self) -> Lease {
        Lease {
            holder: None,
            revoked: None,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(10);

    fn held_by(unit: &str) -> Lease {
        Lease::default().claim(unit, D, false).unwrap().0
    }

    #[test]
    fn a_handover_steps_the_holder_down_and_admits_only_its_target_until_the_next_grant() {
        let lease = held_by("web-0").hand_over(Some("web-2")).unwrap();
        assert_eq!(lease.revoked.as_deref(), Some("web-0"));
        assert_eq!(lease.claim("web-0", D, false).unwrap_err().code(), "ClaimDenied");
        let released = lease.release("web-0").unwrap();
        assert_eq!(
            released.claim("web-1", D, false).unwrap_err().code(),
            "ClaimDenied"
        );
        assert_eq!(
            released.claim("web-1", D, true).unwrap_err().code(),
            "ClaimDenied"
        );
        let (taken, _) = released.claim("web-2", D, false).unwrap();
        assert_eq!((taken.holder_unit(), taken.term), (Some("web-2"), 2));
        assert_eq!(taken.handover, None, "the grant completes it");

        // With no target, any unit but the old holder may take it.
        let any = held_by("web-0")
            .hand_over(None)
            .unwrap()
            .release("web-0")
            .unwrap();
        assert!(any.claim("web-0", D, false).is_err());
        assert!(any.claim("web-1", D, false).is_ok());

        // Bad requests change nothing.
        assert_eq!(
            Lease::default().hand_over(None).unwrap_err().code(),
            "ClaimNotHeld"
        );
        assert_eq!(
            held_by("web-0").hand_over(Some("web-0")).unwrap_err().code(),
            "BadRequest"
        );
        assert!(lease.hand_over(None).is_err(), "one at a time");
    }

    #[test]
    fn c1_free_lease_is_granted_with_a_new_term() {
        let (lease, outcome) = Lease::default().claim("web-0", D, false).unwrap();
        assert_eq!(outcome, ClaimOutcome::Granted);
        assert_eq!(lease.holder_unit(), Some("web-0"));
        assert_eq!(lease.term, 1);
    }

    #[test]
    fn c2_holder_extends_and_never_shortens() {
        let lease = held_by("web-0");
        let (next, outcome) = lease.claim("web-0", Duration::from_secs(2), false).unwrap();
        assert_eq!(outcome, ClaimOutcome::Extended);
        assert_eq!(next.term, 1);
        assert_eq!(next.holder.as_ref().unwrap().duration, D);
        assert_eq!(next.claim_id(), Some(ClaimId { term: 1, renewals: 1 }));
        let (longer, _) = next.claim("web-0", Duration::from_secs(30), false).unwrap();
        assert_eq!(longer.holder.unwrap().duration, Duration::from_secs(30));
    }

    #[test]
    fn c3_claim_by_another_unit_is_denied() {
        let lease = held_by("web-0");
        assert!(matches!(lease.claim("web-1", D, false), Err(Error::ClaimDenied)));
    }

    #[test]
    fn run_out_claims_are_taken_over_with_a_new_term() {
        let lease = held_by("web-0");
        let (next, outcome) = lease.claim("web-1", D, true).unwrap();
        assert_eq!(outcome, ClaimOutcome::Granted);
        assert_eq!((next.holder_unit(), next.term), (Some("web-1"), 2));
        // A holder whose own claim ran out gets a new term too: its guarantee had ended.
        let (again, outcome) = lease.claim("web-0", D, true).unwrap();
        assert_eq!((outcome, again.term), (ClaimOutcome::Granted, 2));
    }

    #[test]
    fn p1_pinned_leases_never_run_out() {
        let lease = held_by("web-0").pin("machine-0").unwrap();
        assert!(matches!(lease.claim("web-1", D, true), Err(Error::ClaimDenied)));
        assert!(lease.expire(true).is_none());
        let unpinned = lease.unpin("machine-0").unwrap();
        assert!(unpinned.expire(true).is_some());
    }

    #[test]
    fn p2_pins_are_idempotent_per_entity() {
        let lease = Lease::default().pin("a").unwrap();
        assert!(lease.pin("a").is_none());
        assert!(lease.unpin("b").is_none());
        let both = lease.pin("b").unwrap();
        assert!(both.unpin("a").unwrap().is_pinned());
    }

    #[test]
    fn v1_revocation_names_the_holder_or_nobody() {
        assert!(Lease::default().revoke("web-0").unwrap().is_none());
        let lease = held_by("web-0");
        assert!(matches!(lease.revoke("web-1"), Err(Error::ClaimNotHeld)));
        let revoked = lease.revoke("web-0").unwrap().unwrap();
        assert!(revoked.revoke("web-0").unwrap().is_none());
    }

    #[test]
    fn v2_revoked_holder_cannot_renew_and_others_wait_for_step_down_or_expiry() {
        let revoked = held_by("web-0").revoke("web-0").unwrap().unwrap();
        assert!(matches!(
            revoked.claim("web-0", D, false),
            Err(Error::ClaimDenied)
        ));
        assert!(matches!(
            revoked.claim("web-1", D, false),
            Err(Error::ClaimDenied)
        ));
        let stepped_down = revoked.release("web-0").unwrap();
        assert_eq!(stepped_down.revoked, None);
        let (taken, _) = stepped_down.claim("web-1", D, false).unwrap();
        assert_eq!(taken.term, 2);
        let (taken, _) = revoked.claim("web-1", D, true).unwrap();
        assert_eq!(
            (taken.holder_unit(), taken.revoked.as_deref()),
            (Some("web-1"), None)
        );
    }

    #[test]
    fn k1_v2_the_lease_vouches_for_its_holder_until_a_revocation_or_handover() {
        let lease = held_by("web-0");
        assert_eq!(lease.vouches_for("web-0"), Some(1));
        assert_eq!(lease.vouches_for("web-1"), None);
        assert_eq!(lease.revoke("web-0").unwrap().unwrap().vouches_for("web-0"), None);
        assert_eq!(lease.hand_over(Some("web-1")).unwrap().vouches_for("web-0"), None);
        assert_eq!(lease.release("web-0").unwrap().vouches_for("web-0"), None);
    }

    #[test]
    fn k2_term_is_unchanged_by_release_and_rises_at_the_next_grant() {
        let lease = held_by("web-0");
        let released = lease.release("web-0").unwrap();
        assert_eq!(released.term, 1);
        let (again, _) = released.claim("web-0", D, false).unwrap();
        assert_eq!(again.term, 2, "A -> none -> A is a new term");
        assert!(matches!(released.release("web-0"), Err(Error::ClaimNotHeld)));
    }

    #[test]
    fn the_term_and_renewals_stop_at_their_bound_instead_of_wrapping() {
        let at_bound = Lease {
            term: MAX_COUNT,
            ..Lease::default()
        };
        let refused = at_bound.claim("web-0", D, false).unwrap_err();
        assert_eq!(refused.code(), "BadRequest", "{refused}");
        assert!(refused.to_string().contains("bound"), "{refused}");
        let (almost, _) = Lease {
            term: MAX_COUNT - 1,
            ..Lease::default()
        }
        .claim("web-0", D, false)
        .unwrap();
        assert_eq!(almost.term, MAX_COUNT);
        let mut renewed_out = almost;
        if let Some(claim) = renewed_out.holder.as_mut() {
            claim.renewals = MAX_COUNT;
        }
        assert_eq!(
            renewed_out.claim("web-0", D, false).unwrap_err().code(),
            "BadRequest"
        );
    }
}
