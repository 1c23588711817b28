//! The candidates: each leader-election implementation with its settings, in groups compared with
//! each other (every one at its own defaults; all tuned to the same crash failover), how one of its
//! processes is started, and how it says that it leads.

use std::{path::Path, process::Stdio, time::Duration};

use leadership::{
    expiry::ExpiryPolicy,
    tracker::{Timing, timing::DEFAULT_CLAIM_DURATION},
};
use tokio::process::Command;

use super::{Bins, report::OURS};

/// Our guarantee d in the equal-failover groups: every "leader" answer has at least 1 s of lease
/// left, the shortest `leadership-sidecar` allows.
pub const EQUAL_FAILOVER_CLAIM: Duration = Duration::from_secs(1);

/// A group of candidates compared with each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Every candidate at its documented defaults.
    Defaults,
    /// Every candidate tuned so that its worst crash failover (SIGKILL of the leader to another
    /// process leading) is about this long.
    Failover(Duration),
}

impl Group {
    /// The groups measured, in order: all of them, or the 5 s one alone in a quick run.
    pub fn measured(quick: bool) -> Vec<Group> {
        let five = Group::Failover(Duration::from_secs(5));
        if quick {
            vec![five]
        } else {
            vec![five, Group::Defaults, Group::Failover(Duration::from_secs(15))]
        }
    }

    /// Its name in the report: `defaults`, `failover-5s`.
    pub fn name(self) -> String {
        match self {
            Group::Defaults => "defaults".into(),
            Group::Failover(t) => format!("failover-{}s", t.as_secs()),
        }
    }
}

/// One leader-election implementation with its settings.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its name in the report: `family/group`, e.g. `client-go/failover-5s`.
    pub name: String,
    /// The implementation: [`OURS`], `client-go` or `kube-lease-manager`.
    pub family: &'static str,
    /// The group it is compared in.
    pub group: Group,
    /// Which implementation, and its timings.
    pub kind: Kind,
    /// The lease length it runs with.
    pub lease: Duration,
    /// What it is and how it is configured, for the report.
    pub description: String,
}

/// Which implementation a candidate is.
#[derive(Clone, Debug)]
pub enum Kind {
    /// `leadership-sidecar`.
    Ours {
        /// Its guarantee d (`--claim-duration`).
        claim: Duration,
    },
    /// client-go's `tools/leaderelection` behind `e2e/peers/client-go`.
    ClientGo {
        /// Its renew deadline.
        renew: Duration,
        /// Its retry period.
        retry: Duration,
    },
    /// kube-lease-manager behind `e2e/peers/rust`.
    LeaseManager {
        /// Its grace period: how long before the lease ends the holder renews.
        grace: Duration,
    },
}

/// How often ours renews with a guarantee `claim` and a lease `lease`, when renewals succeed.
pub fn our_renewal_interval(claim: Duration, lease: Duration) -> Duration {
    Timing {
        lease_length: lease,
        ..Timing::new(claim)
    }
    .renewal_interval()
}

/// Ours at the sidecar's default guarantee, with the lease whose crash failover is `peer`'s lease
/// (the peer's own crash failover at its defaults, give or take its detection): what the same
/// failover costs us. In the group `failover-Ns` of that failover.
pub fn ours_at_failover_of(peer: &Candidate) -> Candidate {
    let group = Group::Failover(peer.lease);
    let lease = our_lease_for(peer.lease);
    let renewal = our_renewal_interval(DEFAULT_CLAIM_DURATION, lease);
    Candidate {
        name: format!("{OURS}/{}", group.name()),
        family: OURS,
        group,
        kind: Kind::Ours {
            claim: DEFAULT_CLAIM_DURATION,
        },
        lease,
        description: format!(
            "leadership-sidecar: claim duration {DEFAULT_CLAIM_DURATION:?}, lease {lease:?} (crash failover {:?}, as {}'s defaults), renewal every {renewal:?}",
            peer.lease, peer.family
        ),
    }
}

/// The lease length whose crash failover, L plus every observer's margin, is `failover`.
fn our_lease_for(failover: Duration) -> Duration {
    let policy = ExpiryPolicy::default();
    let rate = 1.0 + 2.0 * policy.max_drift / (1.0 - policy.max_drift);
    let lease = (failover.saturating_sub(policy.min_margin)).div_f64(rate);
    Duration::from_millis(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
}

/// Every candidate of `group`, ours first.
pub fn candidates(group: Group) -> Vec<Candidate> {
    let second = Duration::from_secs;
    let (ours, client_go, lease_manager) = match group {
        // The sidecar's defaults (claim 5 s, lease 4d); client-go's documented ones (15 s,
        // 10 s, 2 s); kube-lease-manager's (30 s, grace 5 s).
        Group::Defaults => (
            (
                DEFAULT_CLAIM_DURATION,
                Timing::default_lease_length(DEFAULT_CLAIM_DURATION),
            ),
            (second(15), second(10), second(2)),
            (second(30), second(5)),
        ),
        // Ours: L + margin = T. client-go: a standby notices within a retry period of the lease
        // running out, so lease + retry = T. kube-lease-manager: whole seconds, T − 1 s.
        Group::Failover(t) => {
            let retry = if t <= second(5) { second(1) } else { second(2) };
            let lease = t - retry;
            (
                (EQUAL_FAILOVER_CLAIM, our_lease_for(t)),
                (lease, lease.mul_f64(0.7).max(retry * 2), retry),
                (t - second(1), (t / 4).max(second(1))),
            )
        }
    };
    let name = |family: &str| format!("{family}/{}", group.name());
    let (claim, our_lease) = ours;
    let renewal = our_renewal_interval(claim, our_lease);
    let (go_lease, renew, retry) = client_go;
    let (manager_lease, grace) = lease_manager;
    vec![
        Candidate {
            name: name(OURS),
            family: OURS,
            group,
            kind: Kind::Ours { claim },
            lease: our_lease,
            description: format!(
                "leadership-sidecar: claim duration {claim:?}, lease {our_lease:?}, renewal every {renewal:?}; leader seen in its log"
            ),
        },
        Candidate {
            name: name("client-go"),
            family: "client-go",
            group,
            kind: Kind::ClientGo { renew, retry },
            lease: go_lease,
            description: format!(
                "client-go tools/leaderelection with a LeaseLock: lease {go_lease:?}, renew deadline {renew:?}, retry {retry:?}; ReleaseOnCancel"
            ),
        },
        Candidate {
            name: name("kube-lease-manager"),
            family: "kube-lease-manager",
            group,
            kind: Kind::LeaseManager { grace },
            lease: manager_lease,
            description: format!(
                "kube-lease-manager 0.13.1 (kube 5): duration {manager_lease:?}, grace {grace:?}; the channel dropped on SIGTERM"
            ),
        },
    ]
}

impl Candidate {
    /// The API resource its leases live in.
    pub fn resource(&self) -> &'static str {
        match self.kind {
            Kind::Ours { .. } => "leadershipleases",
            _ => "leases",
        }
    }

    /// How long after its holder's last renewal a lease runs out for the other processes: the
    /// lease, and for ours each observer's drift margin on top (part of the lease rules: a
    /// holder's clock may run slow).
    pub fn runs_out_after(&self) -> Duration {
        match self.kind {
            Kind::Ours { .. } => self.lease + ExpiryPolicy::default().margin(self.lease),
            _ => self.lease,
        }
    }

    /// The log line by which a process says it became leader.
    pub fn leader_marker(&self) -> &'static str {
        match self.kind {
            Kind::Ours { .. } => "this unit is now leader",
            _ => "LEADER",
        }
    }

    /// A namespace of its own for `purpose` (`election`, `load`).
    pub fn namespace(&self, purpose: &str) -> String {
        format!("bench-{purpose}-{}", self.name.replace('/', "-"))
    }

    /// The timing flags of its program.
    fn timing_args(&self) -> Vec<String> {
        let ms = |d: &Duration| format!("{}ms", d.as_millis());
        match &self.kind {
            Kind::Ours { claim } => vec![
                format!("--claim-duration={}", ms(claim)),
                format!("--lease-length={}", ms(&self.lease)),
            ],
            Kind::ClientGo { renew, retry } => vec![
                format!("--lease-duration={}", ms(&self.lease)),
                format!("--renew-deadline={}", ms(renew)),
                format!("--retry-period={}", ms(retry)),
            ],
            Kind::LeaseManager { grace } => vec![
                format!("--lease-seconds={}", self.lease.as_secs()),
                format!("--grace-seconds={}", grace.as_secs()),
            ],
        }
    }

    /// The command that runs `unit` of `app` in `namespace`, its output piped; our sidecar's
    /// socket and record go to `logs`.
    pub fn command(
        &self,
        bins: &Bins,
        kubeconfig: &Path,
        logs: &Path,
        namespace: &str,
        app: &str,
        unit: &str,
    ) -> Command {
        let mut command = match &self.kind {
            Kind::Ours { .. } => {
                let mut c = Command::new(&bins.sidecar);
                c.args(["--application", app, "--unit", unit, "--namespace", namespace])
                    .args(["--admin-address", "127.0.0.1:0"])
                    .arg("--socket")
                    .arg(socket(logs, namespace, unit))
                    .arg("--record")
                    .arg(record(logs, namespace, unit));
                c
            }
            Kind::ClientGo { .. } => {
                let mut c = Command::new(&bins.client_go);
                c.args(["--namespace", namespace, "--lease", app, "--identity", unit]);
                c
            }
            Kind::LeaseManager { .. } => {
                let mut c = Command::new(&bins.rust_peers);
                c.args(["--impl", "lease-manager", "--namespace", namespace])
                    .args(["--lease", app, "--identity", unit]);
                c
            }
        };
        command.args(self.timing_args());
        piped(command, kubeconfig)
    }

    /// The command that runs the load generator of its family: `apps` applications of `units`
    /// units each, in one process, in `namespace`.
    pub fn load_command(
        &self,
        bins: &Bins,
        kubeconfig: &Path,
        namespace: &str,
        apps: usize,
        units: usize,
    ) -> Command {
        let mut command = match &self.kind {
            Kind::Ours { .. } => Command::new(&bins.load_trackers),
            Kind::ClientGo { .. } => Command::new(&bins.client_go),
            Kind::LeaseManager { .. } => {
                let mut c = Command::new(&bins.rust_peers);
                c.args(["--impl", "lease-manager"]);
                c
            }
        };
        command
            .args(["--namespace", namespace, "--lease", "app", "--identity", "unit"])
            .args(["--apps", &apps.to_string(), "--units", &units.to_string()])
            .args(self.timing_args());
        piped(command, kubeconfig)
    }
}

/// `command` with the kubeconfig, plain logs, no input, its output piped, killed when dropped.
fn piped(mut command: Command, kubeconfig: &Path) -> Command {
    command
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Our sidecar's socket for `unit` in `namespace`.
pub fn socket(logs: &Path, namespace: &str, unit: &str) -> std::path::PathBuf {
    logs.join(format!("{namespace}-{unit}.sock"))
}

/// Our sidecar's leadership record for `unit` in `namespace`.
pub fn record(logs: &Path, namespace: &str, unit: &str) -> std::path::PathBuf {
    logs.join(format!("{namespace}-{unit}.record.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_lease_plus_the_margin_is_the_failover() {
        for seconds in [5, 15] {
            let t = Duration::from_secs(seconds);
            let lease = our_lease_for(t);
            let failover = lease + ExpiryPolicy::default().margin(lease);
            assert!(
                failover <= t && t - failover < Duration::from_millis(5),
                "{failover:?}"
            );
        }
    }

    #[test]
    fn every_group_has_every_family_with_a_valid_timing() {
        for group in Group::measured(false) {
            let all = candidates(group);
            assert_eq!(all.len(), 3);
            for candidate in &all {
                match candidate.kind {
                    Kind::Ours { claim } => assert!(candidate.lease >= claim * 2),
                    Kind::ClientGo { renew, retry } => {
                        assert!(candidate.lease > renew && renew.as_secs_f64() > retry.as_secs_f64() * 1.2);
                    }
                    Kind::LeaseManager { grace } => assert!(grace < candidate.lease),
                }
            }
        }
    }
}
