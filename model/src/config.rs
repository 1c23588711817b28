//! What a run explores: the rules ([`Variant`]), the faults allowed ([`Budget`]) and the sizes and
//! clocks ([`Config`]).

use std::{fmt, time::Duration};

use leadership::{expiry::ExpiryPolicy, tracker::Timing};

/// The protocol as the product runs it, or a deliberately broken variant that the checker must
/// catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The product's rules.
    Product,
    /// The API server applies writes without comparing resourceVersions.
    NoCompareAndSwap,
    /// Expiry is judged from the holder's own timestamp of its last write (on another clock),
    /// instead of by watching the claim unchanged for its length on the observer's clock.
    TrustTheHoldersTimestamp,
    /// A unit reports "leader" for the whole lease (L) instead of L − d, and observers add no
    /// margin for clock drift.
    LeaderForTheWholeLease,
}

/// How many faults of each kind a run may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Budget {
    /// Writes or replies lost.
    pub losses: u8,
    /// Unit crashes (each restarts at once with no memory).
    pub crashes: u8,
    /// Operator restarts (it forgets what it observed).
    pub operator_restarts: u8,
    /// Revocations by an administrator.
    pub revocations: u8,
    /// Pins (each may later be removed).
    pub pins: u8,
    /// Voluntary releases by a leader.
    pub releases: u8,
    /// Handovers asked for by an administrator.
    pub handovers: u8,
}

impl Budget {
    /// One of every fault.
    pub fn every_fault_once() -> Budget {
        Budget {
            losses: 1,
            crashes: 1,
            operator_restarts: 1,
            revocations: 1,
            pins: 1,
            releases: 1,
            handovers: 1,
        }
    }
}

/// What to explore.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many units (2 or 3).
    pub units: usize,
    /// How many ticks of real time to explore.
    pub horizon: u32,
    /// The length of a tick of real time.
    pub tick: Duration,
    /// The claim duration d.
    pub claim_duration: Duration,
    /// The lease length L each claim asks for (at least 2d).
    pub lease_length: Duration,
    /// The clock-rate bound: every process's clock runs at 1 ± drift of real time.
    pub drift: f64,
    /// The clock offsets processes may have (any of them, per process).
    pub offsets: Vec<Duration>,
    /// Whether the operator runs (it judges expiry and clears run-out claims).
    pub operator: bool,
    /// Whether units judge expiry themselves and take over a claim they judge run out (the
    /// sidecar's `--expiry-authority units`); otherwise they take only a free lease and the
    /// operator is the only one that clears a claim (the product's default).
    pub units_judge_expiry: bool,
    /// The faults allowed.
    pub budget: Budget,
    /// No time passes while a message is in flight or a decision is due, and no faults: the
    /// fairness under which liveness is checked.
    pub prompt: bool,
    /// The rules to check.
    pub variant: Variant,
}

impl Config {
    /// Two units, d of two ticks of 500 ms (leases of 2d, four ticks), ±5% clock rates, no offsets and no
    /// operator, over `horizon` ticks, with the faults in `budget`.
    pub fn new(horizon: u32, budget: Budget, variant: Variant) -> Config {
        Config {
            units: 2,
            horizon,
            tick: Duration::from_millis(500),
            claim_duration: Duration::from_secs(1),
            lease_length: Duration::from_secs(2),
            drift: 0.05,
            offsets: vec![Duration::ZERO],
            operator: false,
            units_judge_expiry: true,
            budget,
            prompt: false,
            variant,
        }
    }

    /// As [`Config::new`], with a coarser tick that keeps expiry within few ticks: d of 1 s, a
    /// lease of 4d (the product's default ratio) and ticks of 2 s. A lease is two ticks: a unit
    /// leads through the tick after its claim, when its renewal is due, and a claim seen at tick
    /// 0 runs out for its observer at tick 4, on a fast clock or a slow one (L plus the margin:
    /// the drift bound and one tick). Five ticks hold a claim, its renewal, its run-out and a
    /// takeover.
    pub fn coarse(horizon: u32, budget: Budget, variant: Variant) -> Config {
        let claim_duration = Duration::from_secs(1);
        Config {
            tick: claim_duration * 2,
            claim_duration,
            lease_length: claim_duration * 4,
            ..Config::new(horizon, budget, variant)
        }
    }

    /// The product's default, bounded: the [coarse](Config::coarse) timing, and two units that
    /// leave expiry to the operator, which is the only one that clears a run-out claim (at tick
    /// 4, for a claim it saw at tick 0). No clock offsets: under the product's rules a unit
    /// compares only readings of its own clock and the operator measures intervals on its own,
    /// so offsets change nothing.
    pub fn operator_authority(horizon: u32, budget: Budget, variant: Variant) -> Config {
        Config {
            operator: true,
            units_judge_expiry: false,
            ..Config::coarse(horizon, budget, variant)
        }
    }

    /// The fair, fault-free configuration for liveness (one voluntary release).
    pub fn liveness(horizon: u32) -> Config {
        Config {
            prompt: true,
            ..Config::new(
                horizon,
                Budget {
                    releases: 1,
                    ..Budget::default()
                },
                Variant::Product,
            )
        }
    }

    /// The expiry policy observers use: the drift bound, at least one tick (none in the variant
    /// without margin).
    pub fn policy(&self) -> ExpiryPolicy {
        match self.variant {
            Variant::LeaderForTheWholeLease => ExpiryPolicy::same_clock(),
            _ => ExpiryPolicy {
                max_drift: self.drift,
                min_margin: self.tick,
            },
        }
    }

    /// The tracker's timing: d, L, and a retry interval of one tick (the model's timer
    /// resolution), so a renewal is due three ticks, at most (L − d)/2, before "leader" ends.
    pub fn timing(&self) -> Timing {
        Timing {
            claim_duration: self.claim_duration,
            lease_length: self.lease_length,
            retry_interval: self.tick,
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::Product => "the product's rules",
            Variant::NoCompareAndSwap => "writes without compare-and-swap",
            Variant::TrustTheHoldersTimestamp => "expiry judged from the holder's timestamp",
            Variant::LeaderForTheWholeLease => "leader for the whole lease, no drift margin",
        })
    }
}
