//! Times each application's leaderless gaps on the operator's own clock, for the failover metric.
//! Pure: the operator reports each lease it sees, with the time, and learns the gap that a new
//! grant ends.
//!
//! A holder says "leader" only until its last successful claim was sent plus the claim duration
//! d (half the lease a tracker asks for), and it sent that claim before the operator saw it. So it
//! led no later than the operator's sighting of its last claim write plus d, and no later than the
//! operator's sighting of its release. The gap to the next grant is measured from the earlier of
//! those: a lower bound (the watch's delivery delays shorten it), and with no guess at clocks.

use std::time::Duration;

use tokio::time::Instant;

/// One claim as the operator sees it: who, in which term, renewed how often, for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenClaim {
    /// The holder.
    pub holder: String,
    /// The term.
    pub term: u64,
    /// The renewal counter.
    pub renewals: u64,
    /// The lease length asked for.
    pub lease: Duration,
}

#[derive(Clone, Debug)]
struct Last {
    claim: SeenClaim,
    /// When this operator first saw this claim write (term, renewals).
    seen: Instant,
}

/// What one lease's observations say about its gaps.
#[derive(Clone, Debug, Default)]
pub struct GapClock {
    last: Option<Last>,
    free_since: Option<Instant>,
}

impl GapClock {
    /// Reports the lease at `now` (`claim`: its live claim, if any). Returns the leaderless gap
    /// that ends now if this is the first sighting of a new grant after an earlier one.
    pub fn observe(&mut self, claim: Option<SeenClaim>, now: Instant) -> Option<Duration> {
        let Some(claim) = claim else {
            self.free_since.get_or_insert(now);
            return None;
        };
        let gap = match &self.last {
            Some(last) if last.claim.holder == claim.holder && last.claim.term == claim.term => {
                if last.claim.renewals != claim.renewals {
                    self.last = Some(Last { claim, seen: now });
                }
                self.free_since = None;
                return None;
            }
            Some(last) => {
                let led_until = last.seen + last.claim.lease / 2;
                let ended = self.free_since.map_or(led_until, |free| free.min(led_until));
                Some(now.saturating_duration_since(ended))
            }
            // The first sighting (a new operator): nothing known before it.
            None => None,
        };
        self.last = Some(Last { claim, seen: now });
        self.free_since = None;
        gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(holder: &str, term: u64, renewals: u64) -> SeenClaim {
        SeenClaim {
            holder: holder.into(),
            term,
            renewals,
            lease: Duration::from_secs(4),
        }
    }

    #[test]
    fn a_release_then_a_grant_is_a_gap_from_the_release() {
        let t0 = Instant::now();
        let mut clock = GapClock::default();
        assert_eq!(
            clock.observe(Some(claim("a", 1, 0)), t0),
            None,
            "nothing known before"
        );
        assert_eq!(
            clock.observe(Some(claim("a", 1, 1)), t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(clock.observe(None, t0 + Duration::from_millis(1500)), None);
        let gap = clock.observe(Some(claim("b", 2, 0)), t0 + Duration::from_millis(1520));
        assert_eq!(gap, Some(Duration::from_millis(20)));
    }

    #[test]
    fn after_a_crash_the_gap_runs_from_the_end_of_the_last_guarantee() {
        let t0 = Instant::now();
        let mut clock = GapClock::default();
        clock.observe(Some(claim("a", 1, 0)), t0);
        clock.observe(Some(claim("a", 1, 1)), t0 + Duration::from_secs(1));
        // Renewals stop; the operator clears the claim at 1 s + 4 s + margin, b claims.
        clock.observe(None, t0 + Duration::from_millis(5300));
        let gap = clock.observe(Some(claim("b", 2, 0)), t0 + Duration::from_millis(5320));
        // a led until at most 1 s + d (2 s) = 3 s.
        assert_eq!(gap, Some(Duration::from_millis(2320)));
    }

    #[test]
    fn a_takeover_seen_directly_and_a_regrant_to_the_same_unit_count_too() {
        let t0 = Instant::now();
        let mut clock = GapClock::default();
        clock.observe(Some(claim("a", 1, 0)), t0);
        let gap = clock.observe(Some(claim("b", 2, 0)), t0 + Duration::from_secs(5));
        assert_eq!(gap, Some(Duration::from_secs(3)));
        clock.observe(None, t0 + Duration::from_secs(6));
        let gap = clock.observe(Some(claim("b", 3, 0)), t0 + Duration::from_secs(7));
        assert_eq!(gap, Some(Duration::from_secs(1)), "b -> none -> b is a new term");
    }

    #[test]
    fn a_fast_handover_is_never_negative() {
        let t0 = Instant::now();
        let mut clock = GapClock::default();
        clock.observe(Some(claim("a", 1, 7)), t0);
        let gap = clock.observe(Some(claim("b", 2, 0)), t0 + Duration::from_millis(30));
        assert_eq!(gap, Some(Duration::ZERO));
    }
}
