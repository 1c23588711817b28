//! The candidates: each leader-election implementation with its settings, how one of its
//! processes is started, and how it says that it leads.

use std::{path::Path, process::Stdio, time::Duration};

use tokio::process::Command;

use super::{Bins, report::OURS};

/// Our claim duration in the benchmark: leases of 4 s.
pub const OUR_CLAIM: Duration = Duration::from_secs(2);

/// One leader-election implementation with its settings.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its name in the report.
    pub name: &'static str,
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
    Ours,
    /// client-go's `tools/leaderelection` behind `e2e/peers/client-go`.
    ClientGo {
        /// Its renew deadline.
        renew: Duration,
        /// Its retry period.
        retry: Duration,
    },
    /// A Rust crate behind `e2e/peers/rust`, by its `--impl` name.
    RustPeer(&'static str),
}

/// Every candidate measured, ours first.
pub fn candidates() -> Vec<Candidate> {
    let lease = OUR_CLAIM * 2;
    vec![
        Candidate {
            name: OURS,
            kind: Kind::Ours,
            lease,
            description: format!("leadership-sidecar, claim duration {OUR_CLAIM:?} (lease {lease:?}, renewal every 1 s); leader seen in its log"),
        },
        Candidate {
            name: "client-go-defaults",
            kind: Kind::ClientGo { renew: Duration::from_secs(10), retry: Duration::from_secs(2) },
            lease: Duration::from_secs(15),
            description: "client-go tools/leaderelection with a LeaseLock, documented defaults: lease 15 s, renew deadline 10 s, retry 2 s; ReleaseOnCancel".into(),
        },
        Candidate {
            name: "client-go-same-lease",
            kind: Kind::ClientGo { renew: Duration::from_secs(3), retry: Duration::from_secs(2) },
            lease,
            description: format!("client-go with our lease length: lease {lease:?}, renew deadline 3 s, retry 2 s; ReleaseOnCancel"),
        },
        Candidate {
            name: "kube-lease-manager",
            kind: Kind::RustPeer("lease-manager"),
            lease,
            description: format!("kube-lease-manager 0.13.1 (kube 5), duration {lease:?}, grace 1 s; the channel dropped on SIGTERM"),
        },
    ]
}

impl Candidate {
    /// The API resource its leases live in.
    pub fn resource(&self) -> &'static str {
        match self.kind {
            Kind::Ours => "leadershipleases",
            _ => "leases",
        }
    }

    /// The log line by which a process says it became leader.
    pub fn leader_marker(&self) -> &'static str {
        match self.kind {
            Kind::Ours => "this unit is now leader",
            _ => "LEADER",
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
            Kind::Ours => {
                let mut c = Command::new(&bins.sidecar);
                c.args([
                    "--application",
                    app,
                    "--unit",
                    unit,
                    "--namespace",
                    namespace,
                    "--admin-address",
                    "127.0.0.1:0",
                ])
                .arg("--socket")
                .arg(socket(logs, namespace, unit))
                .arg("--claim-duration")
                .arg(format!("{}ms", OUR_CLAIM.as_millis()))
                .arg("--record")
                .arg(record(logs, namespace, unit));
                c
            }
            Kind::ClientGo { renew, retry } => {
                let mut c = Command::new(&bins.client_go);
                c.args(["--namespace", namespace, "--lease", app, "--identity", unit])
                    .arg(format!("--lease-duration={}ms", self.lease.as_millis()))
                    .arg(format!("--renew-deadline={}ms", renew.as_millis()))
                    .arg(format!("--retry-period={}ms", retry.as_millis()));
                c
            }
            Kind::RustPeer(implementation) => {
                let mut c = Command::new(&bins.rust_peers);
                c.args([
                    "--impl",
                    implementation,
                    "--namespace",
                    namespace,
                    "--lease",
                    app,
                    "--identity",
                    unit,
                ])
                .args(["--lease-seconds", &self.lease.as_secs().to_string()]);
                c
            }
        };
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
}

/// Our sidecar's socket for `unit` in `namespace`.
pub fn socket(logs: &Path, namespace: &str, unit: &str) -> std::path::PathBuf {
    logs.join(format!("{namespace}-{unit}.sock"))
}

/// Our sidecar's leadership record for `unit` in `namespace`.
pub fn record(logs: &Path, namespace: &str, unit: &str) -> std::path::PathBuf {
    logs.join(format!("{namespace}-{unit}.record.jsonl"))
}
