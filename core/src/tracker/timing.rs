//! The tracker's timing, as pure rules (SPEC T1, T7): how long a lease each claim asks for, how
//! long "leader" lasts after a claim, and when to renew.
//!
//! For a guarantee d and a lease length L ≥ 2d: a claim sent at t (the clock read before sending)
//! buys the lease until t + L. The unit reports "leader" until t + L − d, so every "leader" answer
//! has at least d of lease left. It renews at the latest moment that still leaves room for
//! retries: `slack` before t + L − d, where the slack is a few retry intervals. So a leader writes
//! once per L − d − slack, and the lease length alone decides crash failover (L plus the
//! observers' margin): a longer lease costs fewer writes, a shorter one fails over sooner.

use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

/// How many retry intervals the renewal leaves before "leader" would end.
const RENEWAL_ATTEMPTS: u32 = 3;
/// Renewals are spread over this fraction (one part in so many) of the renewal interval.
const RENEWAL_SPREAD: u32 = 10;

/// The guarantee d of a unit configured without one (the sidecar's and its webhook's default).
pub const DEFAULT_CLAIM_DURATION: Duration = Duration::from_secs(5);
/// The shortest guarantee a unit may be configured with.
pub const MIN_CLAIM_DURATION: Duration = Duration::from_secs(1);
/// The longest guarantee a unit may be configured with.
pub const MAX_CLAIM_DURATION: Duration = Duration::from_secs(300);
/// The longest lease a unit may be configured with.
pub const MAX_LEASE_LENGTH: Duration = Duration::from_secs(600);

/// Which configured value a [`RangeError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Configured {
    /// The guarantee d (`--claim-duration`, `leadership.dev/claim-duration`).
    ClaimDuration,
    /// The lease length L (`--lease-length`, `leadership.dev/lease-length`).
    LeaseLength,
}

/// A configured guarantee or lease length out of its range: the one range check of a unit's
/// timing, for the sidecar's flags and the webhook's annotations alike. The message says the
/// range; the caller names the field as its user wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The guarantee is outside [`MIN_CLAIM_DURATION`] ..= [`MAX_CLAIM_DURATION`].
    #[error("must be between {} and {}, not {}", human(MIN_CLAIM_DURATION), human(MAX_CLAIM_DURATION), human(*.0))]
    ClaimDuration(Duration),
    /// The lease is shorter than twice the guarantee.
    #[error("must be at least twice the claim duration ({}), not {}", human(*.min), human(*.got))]
    LeaseTooShort {
        /// Twice the guarantee.
        min: Duration,
        /// The lease length asked for.
        got: Duration,
    },
    /// The lease is longer than [`MAX_LEASE_LENGTH`].
    #[error("must be at most {}, not {}", human(MAX_LEASE_LENGTH), human(*.0))]
    LeaseTooLong(Duration),
}

impl RangeError {
    /// The value the error is about.
    pub fn configured(&self) -> Configured {
        match self {
            RangeError::ClaimDuration(_) => Configured::ClaimDuration,
            RangeError::LeaseTooShort { .. } | RangeError::LeaseTooLong(_) => Configured::LeaseLength,
        }
    }
}

/// A duration as people write it: whole minutes as `5m`, the rest as Rust prints it (`1s`,
/// `1.5s`, `250ms`).
fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if duration.subsec_nanos() == 0 && seconds >= 60 && seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{duration:?}")
    }
}

/// Checks a unit's configured guarantee d and lease length L (none: [`Timing::default_lease_length`])
/// against their ranges, and returns L.
pub fn check_configured(
    claim_duration: Duration,
    lease_length: Option<Duration>,
) -> std::result::Result<Duration, RangeError> {
    if !(MIN_CLAIM_DURATION..=MAX_CLAIM_DURATION).contains(&claim_duration) {
        return Err(RangeError::ClaimDuration(claim_duration));
    }
    let lease = lease_length.unwrap_or(Timing::default_lease_length(claim_duration));
    if lease < claim_duration * 2 {
        return Err(RangeError::LeaseTooShort {
            min: claim_duration * 2,
            got: lease,
        });
    }
    if lease > MAX_LEASE_LENGTH {
        return Err(RangeError::LeaseTooLong(lease));
    }
    Ok(lease)
}

/// How long a unit asked to stand aside ([`crate::api::LeaseView::stand_aside`]) leaves a free
/// lease to the others before it takes it: a standby takes a free lease within milliseconds.
pub const STAND_ASIDE: Duration = Duration::from_secs(2);

/// The timing of a tracker: the guarantee, the lease length and the retry pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timing {
    /// The guarantee d carried by every "leader" answer.
    pub claim_duration: Duration,
    /// The lease length L each claim asks for; at least 2d.
    pub lease_length: Duration,
    /// The pause between attempts after an error that allows no inference.
    pub retry_interval: Duration,
}

impl Timing {
    /// The timing with the shortest lease for a guarantee d: a lease of 2d, and retries every tenth
    /// of d (between 100 ms and 1 s). Units configured without a lease length take
    /// [`Timing::default_lease_length`] instead.
    pub fn new(claim_duration: Duration) -> Self {
        Timing {
            claim_duration,
            lease_length: claim_duration * 2,
            retry_interval: (claim_duration / 10).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        }
    }

    /// How long before "leader" would end the renewal is sent: room for a few retries, and at most
    /// half of the time a claim leads (L − d).
    pub fn renew_slack(&self) -> Duration {
        (self.retry_interval * RENEWAL_ATTEMPTS).min(self.leads_for() / 2)
    }

    /// How long after a successful claim the unit reports "leader": L − d.
    pub fn leads_for(&self) -> Duration {
        self.lease_length.saturating_sub(self.claim_duration)
    }

    /// How long a leader waits between renewals when they succeed: L − d − slack, at the longest
    /// (see [`Guarantee::renew_at_spread`]).
    pub fn renewal_interval(&self) -> Duration {
        self.leads_for() - self.renew_slack()
    }

    /// How much earlier than [`Guarantee::renew_at`] a renewal may be sent: a tenth of the renewal
    /// interval.
    pub fn renew_spread(&self) -> Duration {
        self.renewal_interval() / RENEWAL_SPREAD
    }

    /// The lease length of a unit configured with a guarantee d and no lease length: 4d (at most
    /// [`MAX_LEASE_LENGTH`], never under 2d for a configurable d). Renewals come about every 3d, a
    /// third of the writes of the shortest lease, for a crash failover of about 4d: with the
    /// default d of 5 s, a 20 s lease renewed every 13.5 s.
    pub fn default_lease_length(claim_duration: Duration) -> Duration {
        (claim_duration * 4).min(MAX_LEASE_LENGTH.max(claim_duration * 2))
    }

    /// Refuses a timing that cannot keep its promise, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.claim_duration.is_zero() {
            return Err(Error::invalid("claim duration", "must be positive"));
        }
        if self.lease_length < self.claim_duration * 2 {
            return Err(Error::invalid(
                "lease length",
                format!(
                    "must be at least twice the claim duration ({:?}), got {:?}",
                    self.claim_duration * 2,
                    self.lease_length
                ),
            ));
        }
        if self.retry_interval.is_zero() {
            return Err(Error::invalid("retry interval", "must be positive"));
        }
        Ok(())
    }
}

/// The longest pause between attempts while the store keeps failing.
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// The pauses between attempts after failures that allow no inference (the API server refusing,
/// timing out or out of reach): the first is the retry interval, each next one twice the last, up
/// to [`MAX_RETRY_INTERVAL`], and each is drawn from the upper half of its step. Units that failed
/// together (an API server that stalled for all of them) then do not all try again together: an
/// overloaded server sees its load fall, not a wave every interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    step: Duration,
}

impl Backoff {
    /// Pauses starting from `first` (the retry interval).
    pub fn new(first: Duration) -> Self {
        Backoff { first, step: first }
    }

    /// The next pause, for a `jitter` drawn uniformly from [0, 1): between half of the current
    /// step and all of it. The step then doubles, up to the larger of [`MAX_RETRY_INTERVAL`] and
    /// the first pause.
    pub fn next(&mut self, jitter: f64) -> Duration {
        let pause = self.step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        self.step = (self.step * 2).min(MAX_RETRY_INTERVAL.max(self.first));
        pause
    }

    /// Back to the first pause, after an attempt that worked.
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

/// The guarantee earned by one successful claim sent at `claimed_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Guarantee {
    /// The monotonic time read just before the claim was sent (C4).
    pub claimed_at: Instant,
    /// The timing the claim was made with.
    pub timing: Timing,
}

impl Guarantee {
    /// The end of the lease the claim bought: L after it was sent.
    pub fn guaranteed_until(&self) -> Instant {
        self.claimed_at + self.timing.lease_length
    }

    /// The end of "leader": the last instant with at least d of the lease left (L − d after the
    /// claim).
    pub fn leader_until(&self) -> Instant {
        self.claimed_at + self.timing.leads_for()
    }

    /// When to renew at the latest: the slack before "leader" ends.
    pub fn renew_at(&self) -> Instant {
        self.leader_until() - self.timing.renew_slack()
    }

    /// When to send the renewal, for a `jitter` drawn uniformly from [0, 1): up to
    /// [`Timing::renew_spread`] before [`Guarantee::renew_at`]. Leaders elected together (every
    /// unit of a cluster starting at once) then drift apart, instead of renewing in one burst at
    /// every interval for as long as they lead; it costs at most a tenth more writes, a twentieth
    /// on average. Renewing early is always safe: the renewal's guarantee counts from its own
    /// sending.
    pub fn renew_at_spread(&self, jitter: f64) -> Instant {
        self.renew_at() - self.timing.renew_spread().mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_are_spread_over_a_tenth_of_the_interval_before_the_latest_renewal() {
        let timing = Timing {
            lease_length: Duration::from_secs(20),
            ..Timing::new(Duration::from_secs(5))
        };
        let guarantee = Guarantee {
            claimed_at: Instant::now(),
            timing,
        };
        assert_eq!(timing.renewal_interval(), Duration::from_millis(13_500));
        assert_eq!(guarantee.renew_at_spread(0.0), guarantee.renew_at());
        assert_eq!(
            guarantee.renew_at() - guarantee.renew_at_spread(1.0),
            Duration::from_millis(1_350)
        );
        let middle = guarantee.renew_at() - guarantee.renew_at_spread(0.5);
        assert_eq!(middle, Duration::from_millis(675));
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_within_the_upper_half_of_each_step_and_resets() {
        let first = Duration::from_millis(500);
        let mut backoff = Backoff::new(first);
        let lowest: Vec<Duration> = (0..6).map(|_| backoff.next(0.0)).collect();
        assert_eq!(
            lowest,
            [250, 500, 1000, 2000, 2500, 2500].map(Duration::from_millis)
        );
        backoff.reset();
        assert_eq!(backoff.next(1.0), Duration::from_millis(500));
        assert_eq!(backoff.next(0.5), Duration::from_millis(750));
        // A first pause above the ceiling is kept, never shortened.
        let mut slow = Backoff::new(Duration::from_secs(8));
        assert_eq!(slow.next(1.0), Duration::from_secs(8));
        assert_eq!(slow.next(1.0), Duration::from_secs(8));
    }

    #[test]
    fn configured_values_are_checked_against_one_range_each() {
        let d = Duration::from_secs(5);
        assert_eq!(check_configured(d, None), Ok(Duration::from_secs(20)));
        assert_eq!(check_configured(d, Some(d * 2)), Ok(d * 2));
        let short = check_configured(Duration::from_millis(500), None).unwrap_err();
        assert_eq!(short.configured(), Configured::ClaimDuration);
        assert_eq!(short.to_string(), "must be between 1s and 5m, not 500ms");
        let long = check_configured(Duration::from_secs(301), None).unwrap_err();
        assert_eq!(long.to_string(), "must be between 1s and 5m, not 301s");
        let under = check_configured(d, Some(d)).unwrap_err();
        assert_eq!(under.configured(), Configured::LeaseLength);
        assert_eq!(
            under.to_string(),
            "must be at least twice the claim duration (10s), not 5s"
        );
        let over = check_configured(d, Some(Duration::from_secs(660))).unwrap_err();
        assert_eq!(over.to_string(), "must be at most 10m, not 11m");
    }

    const D: Duration = Duration::from_secs(10);

    #[test]
    fn the_default_lease_is_2d_and_renews_a_few_retries_before_leader_ends() {
        let timing = Timing::new(D);
        assert_eq!(timing.lease_length, D * 2);
        assert_eq!(timing.retry_interval, Duration::from_secs(1));
        assert_eq!(timing.renew_slack(), Duration::from_secs(3));
        assert_eq!(timing.renewal_interval(), Duration::from_secs(7));
        let g = Guarantee {
            claimed_at: Instant::now(),
            timing,
        };
        assert_eq!(g.guaranteed_until() - g.leader_until(), D, "leader means d more");
        assert_eq!(g.leader_until() - g.renew_at(), timing.renew_slack());
    }

    #[test]
    fn a_longer_lease_renews_less_often_with_the_same_guarantee() {
        let short = Timing::new(Duration::from_secs(2));
        let long = Timing {
            lease_length: Duration::from_secs(15),
            ..short
        };
        assert_eq!(short.renewal_interval(), Duration::from_millis(1400));
        assert_eq!(long.renewal_interval(), Duration::from_millis(12_400));
        let g = Guarantee {
            claimed_at: Instant::now(),
            timing: long,
        };
        assert_eq!(g.guaranteed_until() - g.leader_until(), Duration::from_secs(2));
    }

    #[test]
    fn a_unit_configured_without_a_lease_length_asks_for_4d_within_the_limits() {
        assert_eq!(
            Timing::default_lease_length(DEFAULT_CLAIM_DURATION),
            Duration::from_secs(20)
        );
        let default = Timing {
            lease_length: Timing::default_lease_length(DEFAULT_CLAIM_DURATION),
            ..Timing::new(DEFAULT_CLAIM_DURATION)
        };
        assert_eq!(default.renewal_interval(), Duration::from_millis(13_500));
        assert_eq!(
            Timing::default_lease_length(MIN_CLAIM_DURATION),
            Duration::from_secs(4)
        );
        assert_eq!(
            Timing::default_lease_length(Duration::from_secs(200)),
            MAX_LEASE_LENGTH
        );
        assert_eq!(Timing::default_lease_length(MAX_CLAIM_DURATION), MAX_LEASE_LENGTH);
        for seconds in [1, 5, 10, 150, 200, 300] {
            let d = Duration::from_secs(seconds);
            let timing = Timing {
                lease_length: Timing::default_lease_length(d),
                ..Timing::new(d)
            };
            assert!(timing.validate().is_ok(), "{d:?}");
            assert!(timing.lease_length <= MAX_LEASE_LENGTH, "{d:?}");
        }
    }

    #[test]
    fn the_slack_never_takes_more_than_half_the_time_a_claim_leads() {
        let timing = Timing {
            retry_interval: Duration::from_secs(1),
            ..Timing::new(Duration::from_secs(2))
        };
        assert_eq!(timing.renew_slack(), Duration::from_secs(1));
    }

    #[test]
    fn t1_a_lease_shorter_than_2d_is_refused_naming_the_field() {
        let timing = Timing {
            lease_length: Duration::from_secs(15),
            ..Timing::new(D)
        };
        match timing.validate() {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "lease length"),
            other => panic!("{other:?}"),
        }
        assert!(Timing::new(D).validate().is_ok());
    }
}
