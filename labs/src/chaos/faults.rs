//! The faults the checker injects, and the schedule it injects them on (pure: a seeded plan that
//! a failing run writes out, so the same schedule can be run again).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL a sidecar, then start it again.
    KillSidecar,
    /// SIGTERM a sidecar (it releases), then start it again.
    TermSidecar,
    /// SIGSTOP a sidecar for longer than the lease, then SIGCONT: the paused-leader case.
    PauseSidecar,
    /// Cut the link between a sidecar and the API server for longer than the lease, then heal it.
    CutLink,
    /// Delay every chunk on a sidecar's link for a while.
    SlowLink,
    /// Restart a sidecar with its clock running at another rate, within the drift bound.
    SkewClock,
    /// Restart kube-apiserver.
    RestartApiServer,
    /// Restart etcd.
    RestartEtcd,
    /// SIGKILL the active operator, then start it again.
    KillOperator,
}

impl FaultKind {
    /// Every kind, in the order a plan first goes through them.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::KillSidecar,
        FaultKind::TermSidecar,
        FaultKind::PauseSidecar,
        FaultKind::CutLink,
        FaultKind::SlowLink,
        FaultKind::SkewClock,
        FaultKind::RestartApiServer,
        FaultKind::RestartEtcd,
        FaultKind::KillOperator,
    ];

    /// The kind's name, as in the report.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillSidecar => "kill-sidecar",
            FaultKind::TermSidecar => "term-sidecar",
            FaultKind::PauseSidecar => "pause-sidecar",
            FaultKind::CutLink => "cut-link",
            FaultKind::SlowLink => "slow-link",
            FaultKind::SkewClock => "skew-clock",
            FaultKind::RestartApiServer => "restart-apiserver",
            FaultKind::RestartEtcd => "restart-etcd",
            FaultKind::KillOperator => "kill-operator",
        }
    }

    /// Whether the fault is aimed at one sidecar.
    pub fn targets_a_unit(self) -> bool {
        !matches!(
            self,
            FaultKind::RestartApiServer | FaultKind::RestartEtcd | FaultKind::KillOperator
        )
    }
}

/// Which sidecar a fault is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Whichever unit leads when the fault is injected (any unit if none does).
    Leader,
    /// The unit with this index.
    Unit(usize),
}

/// One fault of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedFault {
    /// When to inject it, from the start of the faults.
    pub at_ms: u64,
    /// What to do.
    pub kind: FaultKind,
    /// At whom, for the kinds aimed at a sidecar.
    pub target: Target,
    /// How long the fault lasts (pause, cut, slow link, or time dead before a restart).
    pub hold_ms: u64,
    /// The slow link's delay per chunk in milliseconds, or the skewed clock's rate.
    pub parameter: f64,
}

/// A small deterministic generator (SplitMix64): the same seed gives the same plan.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[low, high)`.
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// An index below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The shape of a plan.
#[derive(Clone, Debug)]
pub struct PlanSettings {
    /// How long faults are injected for.
    pub duration: Duration,
    /// The sidecars' claim duration d (leases are 2d).
    pub claim_duration: Duration,
    /// How many sidecars run.
    pub units: usize,
    /// The largest clock-rate error a skewed sidecar gets (the drift bound: 0.01 is 1%).
    pub max_drift: f64,
}

/// A plan: every kind once in a shuffled order, then kinds at random, aimed at the leader two
/// times in three. After each fault the application gets a lease length and a bit to recover
/// before the next one, so each recovery is measured on its own.
pub fn plan(seed: u64, settings: &PlanSettings) -> Vec<PlannedFault> {
    let mut rng = Rng::new(seed);
    let lease_ms = settings.claim_duration.as_millis() as f64 * 2.0;
    let duration_ms = settings.duration.as_millis() as f64;
    let mut first_round = FaultKind::ALL.to_vec();
    for i in (1..first_round.len()).rev() {
        first_round.swap(i, rng.below(i + 1));
    }
    let mut faults = Vec::new();
    let mut at = 0.0;
    loop {
        let kind = if faults.len() < first_round.len() {
            first_round[faults.len()]
        } else {
            FaultKind::ALL[rng.below(FaultKind::ALL.len())]
        };
        let (hold, parameter) = match kind {
            FaultKind::KillSidecar | FaultKind::TermSidecar | FaultKind::KillOperator => {
                (rng.between(500.0, lease_ms), 0.0)
            }
            FaultKind::PauseSidecar | FaultKind::CutLink => {
                (rng.between(lease_ms + 500.0, lease_ms * 2.0), 0.0)
            }
            FaultKind::SlowLink => (lease_ms * 2.0, rng.between(50.0, lease_ms / 8.0)),
            FaultKind::SkewClock => (
                rng.between(500.0, lease_ms),
                1.0 + rng.between(-settings.max_drift, settings.max_drift),
            ),
            FaultKind::RestartApiServer | FaultKind::RestartEtcd => (0.0, 0.0),
        };
        if at + hold > duration_ms && !faults.is_empty() {
            return faults;
        }
        let target = if rng.below(3) < 2 {
            Target::Leader
        } else {
            Target::Unit(rng.below(settings.units.max(1)))
        };
        faults.push(PlannedFault {
            at_ms: at as u64,
            kind,
            target,
            hold_ms: hold as u64,
            parameter,
        });
        at += hold + lease_ms * 1.5 + rng.between(0.0, lease_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(minutes: u64) -> PlanSettings {
        PlanSettings {
            duration: Duration::from_secs(60 * minutes),
            claim_duration: Duration::from_secs(2),
            units: 4,
            max_drift: 0.01,
        }
    }

    #[test]
    fn a_plan_is_reproducible_and_covers_every_kind_first() {
        let a = plan(7, &settings(3));
        assert_eq!(a, plan(7, &settings(3)));
        assert_ne!(a, plan(8, &settings(3)));
        let mut first: Vec<FaultKind> = a.iter().take(FaultKind::ALL.len()).map(|f| f.kind).collect();
        first.sort();
        assert_eq!(first, FaultKind::ALL.to_vec());
    }

    #[test]
    fn faults_are_spaced_and_stay_within_the_run_and_the_drift_bound() {
        let faults = plan(1, &settings(30));
        assert!(faults.len() > 100, "{}", faults.len());
        for pair in faults.windows(2) {
            assert!(pair[1].at_ms >= pair[0].at_ms + pair[0].hold_ms + 6000);
        }
        for fault in &faults {
            assert!(fault.at_ms + fault.hold_ms <= 30 * 60 * 1000);
            if fault.kind == FaultKind::SkewClock {
                assert!((fault.parameter - 1.0).abs() <= 0.01);
            }
            if let Target::Unit(i) = fault.target {
                assert!(i < 4);
            }
        }
    }
}
