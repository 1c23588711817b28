//! Expiry by observation: a claim has run out only after an observer has seen it unchanged for its
//! full length plus a margin, on the observer's own monotonic clock. No timestamp written by another
//! machine is ever trusted, so clock offsets between machines do not matter; only clock *rates* must
//! agree within the drift bound that the margin covers.

use std::time::Duration;

use tokio::time::Instant;

use crate::lease::{ClaimId, Lease};

/// How much an observer adds to a claim's length before it treats the claim as run out.
///
/// Why the margin suffices (S1): a claimant reads its clock at t before it sends a claim of length
/// L and vouches for it until t + L on its clock, at most L / (1 − ρ) of real time later when its
/// clock runs up to ρ slow. Any observer first sees the claim after the write committed, so after
/// t, and waits L + margin on its own clock, at least (L + margin) / (1 + ρ) of real time when its
/// clock runs up to ρ fast. Both hold when margin ≥ 2ρL / (1 − ρ), whatever the clocks' offsets.
/// The minimum on top is one tick of the timer wheel (1 ms), so that rounding never decides a tie;
/// timers that fire late only make an observer later, never earlier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExpiryPolicy {
    /// The largest error of any process's clock *rate* against real time, as a fraction (0.01 is
    /// 1%): two clocks may then differ in rate by up to twice this.
    pub max_drift: f64,
    /// Added to the drift bound: the timer resolution.
    pub min_margin: Duration,
}

impl Default for ExpiryPolicy {
    /// Clock rates within 1% of real time, and one timer tick.
    fn default() -> Self {
        ExpiryPolicy {
            max_drift: 0.01,
            min_margin: TIMER_TICK,
        }
    }
}

/// The resolution of tokio's timer wheel.
pub const TIMER_TICK: Duration = Duration::from_millis(1);

impl ExpiryPolicy {
    /// The policy of an observer that shares the writer's clock (an in-process store): no margin.
    pub fn same_clock() -> Self {
        ExpiryPolicy {
            max_drift: 0.0,
            min_margin: Duration::ZERO,
        }
    }

    /// The margin for a claim of `length`: 2ρL / (1 − ρ) for the drift bound ρ (one clock slow,
    /// the other fast), plus the minimum.
    pub fn margin(&self, length: Duration) -> Duration {
        let drift = self.max_drift.clamp(0.0, 0.5);
        length.mul_f64(2.0 * drift / (1.0 - drift)) + self.min_margin
    }
}

/// One observer's memory of one lease's claim: which claim it saw and when it first saw it.
///
/// The timer is keyed on the claim's identity (term, renewals), not on the object's version, so
/// writes that are not renewals (pins, conditions, a revocation mark) do not restart it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Observation {
    seen: Option<(ClaimId, Instant)>,
}

impl Observation {
    /// Records what the lease looks like at `now`; restarts the timer if the claim changed.
    pub fn observe(&mut self, lease: &Lease, now: Instant) {
        match lease.claim_id() {
            None => self.seen = None,
            Some(id) if self.seen.map(|(seen, _)| seen) != Some(id) => self.seen = Some((id, now)),
            Some(_) => {}
        }
    }

    /// When the observed claim runs out by this observer's clock, pinned or not: the end of the
    /// guarantee of the holder's last write. `None` if there is no claim or this observer has not
    /// seen it.
    pub fn runs_out_at(&self, lease: &Lease, policy: &ExpiryPolicy) -> Option<Instant> {
        let claim = lease.holder.as_ref()?;
        let (id, since) = self.seen?;
        (Some(id) == lease.claim_id()).then(|| since + claim.duration + policy.margin(claim.duration))
    }

    /// When the observed claim expires by this observer's clock (it has run out and the lease's
    /// lock delay has passed); `None` if there is no claim, the observer has not seen it, or the
    /// lease is pinned (it never expires).
    pub fn expires_at(&self, lease: &Lease, policy: &ExpiryPolicy) -> Option<Instant> {
        if lease.is_pinned() {
            return None;
        }
        self.runs_out_at(lease, policy).map(|at| at + lease.lock_delay)
    }

    /// Whether the observed claim has run out at `now` but its lock delay has not yet passed:
    /// nobody may take the lease yet.
    pub fn is_locked(&self, lease: &Lease, policy: &ExpiryPolicy, now: Instant) -> bool {
        !lease.lock_delay.is_zero()
            && !lease.is_pinned()
            && self.runs_out_at(lease, policy).is_some_and(|at| now >= at)
            && !self.is_expired(lease, policy, now)
    }

    /// Whether the observed claim has run out at `now` (always false while pinned).
    pub fn is_expired(&self, lease: &Lease, policy: &ExpiryPolicy, now: Instant) -> bool {
        self.expires_at(lease, policy).is_some_and(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(10);

    #[test]
    fn margin_covers_drift_in_both_directions() {
        let policy = ExpiryPolicy::default();
        let close = |length: Duration, micros: u64| {
            let margin = policy.margin(length).as_micros() as u64;
            assert!(
                margin.abs_diff(micros) <= 1,
                "{length:?}: {margin} µs, not {micros}"
            );
        };
        close(Duration::from_secs(20), 405_040);
        close(Duration::from_secs(4), 81_808);
        assert_eq!(ExpiryPolicy::same_clock().margin(D), Duration::ZERO);
        // The bound itself: the slowest claimant's end of lease comes before the fastest
        // observer's expiry, for clock rates ρ either side of real time.
        for length in [Duration::from_secs(2), D, Duration::from_secs(300)] {
            let rho = policy.max_drift;
            let claimant_real = length.as_secs_f64() / (1.0 - rho);
            let observer_real = (length + policy.margin(length)).as_secs_f64() / (1.0 + rho);
            assert!(claimant_real < observer_real, "{length:?}");
        }
    }

    #[test]
    fn expiry_needs_the_same_claim_seen_for_its_length_plus_margin() {
        let policy = ExpiryPolicy::default();
        let t0 = Instant::now();
        let lease = Lease::default().claim("web-0", D, false).unwrap().0;
        let mut seen = Observation::default();
        seen.observe(&lease, t0);
        let due = t0 + D + policy.margin(D);
        assert_eq!(seen.expires_at(&lease, &policy), Some(due));
        assert!(!seen.is_expired(&lease, &policy, due - Duration::from_millis(1)));
        assert!(seen.is_expired(&lease, &policy, due));

        // A renewal restarts the timer; a pin write does not change the claim, so it does not.
        let renewed = lease.claim("web-0", D, false).unwrap().0;
        seen.observe(&renewed, t0 + Duration::from_secs(5));
        assert!(!seen.is_expired(&renewed, &policy, due));
        let mut pinned_then_unpinned = renewed.pin("x").unwrap();
        seen.observe(&pinned_then_unpinned, t0 + Duration::from_secs(6));
        assert_eq!(
            seen.expires_at(&pinned_then_unpinned, &policy),
            None,
            "pinned leases never run out"
        );
        pinned_then_unpinned = pinned_then_unpinned.unpin("x").unwrap();
        assert_eq!(
            seen.expires_at(&pinned_then_unpinned, &policy),
            Some(t0 + Duration::from_secs(5) + D + policy.margin(D))
        );
    }

    #[test]
    fn a_lock_delay_holds_the_lease_after_the_claim_runs_out() {
        let policy = ExpiryPolicy::default();
        let t0 = Instant::now();
        let mut lease = Lease::default().claim("web-0", D, false).unwrap().0;
        lease.lock_delay = Duration::from_secs(3);
        let mut seen = Observation::default();
        seen.observe(&lease, t0);
        let ran_out = t0 + D + policy.margin(D);
        assert!(!seen.is_locked(&lease, &policy, ran_out - Duration::from_millis(1)));
        assert!(seen.is_locked(&lease, &policy, ran_out));
        assert!(!seen.is_expired(&lease, &policy, ran_out + Duration::from_millis(2999)));
        assert!(seen.is_expired(&lease, &policy, ran_out + Duration::from_secs(3)));
        assert!(!seen.is_locked(&lease, &policy, ran_out + Duration::from_secs(3)));
        // Nobody takes it while locked; a release is not an expiry and has no delay.
        assert!(lease.claim("web-1", D, false).is_err());
        assert!(lease.release("web-0").unwrap().claim("web-1", D, false).is_ok());
    }

    #[test]
    fn a_claim_never_seen_by_this_observer_is_not_judged() {
        let lease = Lease::default().claim("web-0", D, false).unwrap().0;
        let seen = Observation::default();
        assert_eq!(seen.expires_at(&lease, &ExpiryPolicy::default()), None);
    }
}
