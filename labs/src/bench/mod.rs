//! The benchmark behind `e2e/bench`: this project and its peers measured side by side on one
//! local control plane, and the report.
//!
//! - [`candidates`]: the implementations measured, their settings (in groups: at defaults, at
//!   equal crash failover) and how each is started;
//! - `election`: leader election measured the same way for every candidate;
//! - `load`: each family's load generator, many applications in one process;
//! - `flood`: our units' renewals while other tenants flood the API server, without and with the
//!   chart's flow-control objects;
//! - `ours`: our own figures (footprint, handovers to a unit, the operator);
//! - `socket`: our socket's latency against the floor of the machine;
//! - `system`: what is read from the API server's counters, `/proc`, the machine;
//! - [`tally`]: what a load generator's trackers did between two readings;
//! - [`stats`]: summaries of samples; [`report`]: `report.json` and its markdown.

pub mod candidates;
mod churn;
mod election;
mod flood;
mod load;
mod ours;
pub mod report;
pub mod socket;
pub mod stats;
mod system;
pub mod tally;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use kube::Client;
use tokio::time::Instant;

pub use self::{
    flood::FloodPlan,
    report::{CandidateReport, LoadReport, OURS, OwnReport, Report, ScaleReport},
    stats::Summary,
};
use leadership_e2e::{
    controlplane::{ControlPlane, StartOptions},
    testenv::create_namespace,
    tools::Tools,
};

/// How much to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    /// A few iterations of each measurement, to check the harness.
    pub quick: bool,
    /// Only our candidate: the peers are left out of the election and load parts.
    pub ours_only: bool,
    /// Graceful handovers per candidate (a third with leases over 5 s), and handovers to a named
    /// unit.
    pub handovers: usize,
    /// Crashes per candidate (half with leases over 5 s).
    pub crashes: usize,
    /// How long each steady-state rate is measured.
    pub window: Duration,
    /// The sizes, in applications of three units each, each load generator runs at.
    pub load_apps: Vec<usize>,
    /// Lease counts the operator is measured with.
    pub lease_counts: Vec<usize>,
    /// How long each server is asked with each client count (in alternating rounds).
    pub socket_run: Duration,
    /// How hard the flood pushes, and on how many units.
    pub flood: FloodPlan,
}

impl Plan {
    /// The full plan, or the quick one.
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                ours_only: false,
                handovers: 3,
                crashes: 1,
                window: Duration::from_secs(10),
                load_apps: vec![10],
                lease_counts: vec![50],
                socket_run: Duration::from_secs(1),
                flood: FloodPlan {
                    apps: 10,
                    tenants: 4,
                    in_flight_per_tenant: 10,
                },
            }
        } else {
            Plan {
                quick,
                ours_only: false,
                handovers: 30,
                crashes: 10,
                window: Duration::from_secs(60),
                load_apps: vec![1000, 3334],
                lease_counts: vec![1000, 10000],
                socket_run: Duration::from_secs(10),
                flood: FloodPlan {
                    apps: 300,
                    tenants: 64,
                    in_flight_per_tenant: 120,
                },
            }
        }
    }
}

/// The binaries under test.
#[derive(Clone, Debug)]
pub struct Bins {
    /// `leadership-sidecar`.
    pub sidecar: PathBuf,
    /// `leadership-operator`.
    pub operator: PathBuf,
    /// The client-go peer.
    pub client_go: PathBuf,
    /// The Rust peers.
    pub rust_peers: PathBuf,
    /// Our load generator, `load-trackers`.
    pub load_trackers: PathBuf,
    /// The socket's floor, `socket-floor`.
    pub socket_floor: PathBuf,
}

impl Bins {
    /// The paths the wrapper script passes: `BENCH_SIDECAR`, `BENCH_OPERATOR`, `BENCH_CLIENT_GO`,
    /// `BENCH_RUST_PEERS`, `BENCH_LOAD_TRACKERS`, `BENCH_SOCKET_FLOOR`.
    pub fn from_env() -> anyhow::Result<Bins> {
        let path = |key: &str| -> anyhow::Result<PathBuf> {
            let path = PathBuf::from(
                std::env::var_os(key).with_context(|| format!("{key} is not set: run e2e/bench"))?,
            );
            if !path.exists() {
                bail!("{key}={} does not exist", path.display());
            }
            Ok(path)
        };
        Ok(Bins {
            sidecar: path("BENCH_SIDECAR")?,
            operator: path("BENCH_OPERATOR")?,
            client_go: path("BENCH_CLIENT_GO")?,
            rust_peers: path("BENCH_RUST_PEERS")?,
            load_trackers: path("BENCH_LOAD_TRACKERS")?,
            socket_floor: path("BENCH_SOCKET_FLOOR")?,
        })
    }
}

/// The parts of the benchmark, each of which can be run alone (`--only`).
pub const PARTS: [&str; 5] = ["election", "flood", "load", "operator", "socket"];

/// One run of the benchmark.
struct Bench {
    plan: Plan,
    bins: Bins,
    client: Client,
    kubeconfig: PathBuf,
    /// Every process's log, our sidecars' sockets and records.
    logs: PathBuf,
    /// Where the report goes.
    out: PathBuf,
    started: Instant,
    /// Requests and writes per minute to `leases` by the control plane itself (its own leases).
    lease_baseline: (f64, f64),
    /// The control plane's processes by name (`kube-apiserver`, `etcd`).
    components: BTreeMap<String, u32>,
}

impl Bench {
    /// The candidates of `group` this run measures: every one, or ours alone.
    fn measured(&self, group: candidates::Group) -> Vec<candidates::Candidate> {
        candidates::candidates(group)
            .into_iter()
            .filter(|c| !self.plan.ours_only || matches!(c.kind, candidates::Kind::Ours { .. }))
            .collect()
    }

    fn say(&self, text: impl AsRef<str>) {
        println!(
            "[bench {:6.1}s] {}",
            self.started.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }

    async fn namespace(&self, name: &str) -> anyhow::Result<()> {
        create_namespace(&self.client, name, &[])
            .await
            .with_context(|| format!("create the namespace {name}"))?;
        Ok(())
    }

    /// Writes `report.json` and `report.md` with what is measured so far (after every part and
    /// every candidate, so a run cut short keeps what it measured).
    fn save(&self, report: &mut Report) -> anyhow::Result<()> {
        report.compute_ratios();
        std::fs::write(
            self.out.join("report.json"),
            serde_json::to_string_pretty(report)?,
        )?;
        std::fs::write(self.out.join("report.md"), report.markdown())?;
        Ok(())
    }

    /// Deletes a namespace and what is in it, without waiting; a failure is only said.
    async fn delete_namespace(&self, name: &str) {
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(self.client.clone());
        if let Err(err) = api.delete(name, &kube::api::DeleteParams::default()).await {
            self.say(format!("could not delete the namespace {name}: {err}"));
        }
    }
}

/// Runs the benchmark (the `parts` of [`PARTS`] given) on a control plane of its own: writes
/// `out/report.json` and `out/report.md`, and every process's log, socket and record to `logs`.
pub async fn run(plan: Plan, parts: &BTreeSet<String>, out: &Path, logs: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    std::fs::create_dir_all(logs).with_context(|| format!("create {}", logs.display()))?;
    let started = Instant::now();
    let tools = Tools::locate()?;
    let mut plane = ControlPlane::start(&tools, StartOptions::owned_by_this_process()).await?;
    let result = measure(plan, parts, out, logs, &plane, started).await;
    plane.stop();
    result
}

async fn measure(
    plan: Plan,
    parts: &BTreeSet<String>,
    out: &Path,
    logs: &Path,
    plane: &ControlPlane,
    started: Instant,
) -> anyhow::Result<()> {
    let client = plane.client().await?;
    leadership_kube::crd::install(&client).await?;
    let quick = plan.quick;
    let mut bench = Bench {
        plan,
        bins: Bins::from_env()?,
        client,
        kubeconfig: plane.kubeconfig().to_owned(),
        logs: logs.to_owned(),
        out: out.to_owned(),
        started,
        lease_baseline: (0.0, 0.0),
        components: plane
            .state()
            .components
            .iter()
            .filter_map(|c| {
                let pid = system::process_in_group(u32::try_from(c.pgid).ok()?, &c.name)?;
                Some((c.name.clone(), pid))
            })
            .collect(),
    };
    // What the control plane itself does to Leases (the API server's identity lease), subtracted
    // from the peers' figures.
    bench.lease_baseline = bench.request_rates("leases").await?;
    bench.say(format!(
        "control plane's own Lease traffic: {:.1} requests, {:.1} writes per minute (subtracted)",
        bench.lease_baseline.0, bench.lease_baseline.1
    ));
    let mut report = Report {
        machine: system::machine(),
        versions: system::versions(&plane.state().version),
        quick,
        ..Report::default()
    };
    let parts_text = parts.iter().cloned().collect::<Vec<_>>().join(", ");
    bench.say(format!(
        "measuring {parts_text} ({})",
        if quick { "quick: a harness check" } else { "full" }
    ));
    if parts.contains("operator") {
        report.ours.operator_at_scale = bench.operator_at_scale().await;
        bench.save(&mut report)?;
    }
    if parts.contains("load") {
        report.load = bench.load().await?;
        bench.save(&mut report)?;
    }
    if parts.contains("socket") {
        report.socket = Some(bench.socket().await?);
        bench.save(&mut report)?;
    }
    if parts.contains("flood") {
        report.flood = Some(bench.flood().await?);
        bench.save(&mut report)?;
    }
    if parts.contains("election") {
        if !bench.plan.ours_only {
            report.candidates.insert(
                "kube-leader-election".into(),
                CandidateReport {
                    description: "kube-leader-election 0.44.0, the newest release".into(),
                    family: "kube-leader-election".into(),
                    group: "defaults".into(),
                    notes: vec!["not measured: it needs kube 4 (the project uses kube 5), and 0.44.0 does not build at all: its kube 4.2 and its k8s-openapi 0.29 disagree (Lease does not implement kube 4's Resource)".into()],
                    ..CandidateReport::default()
                },
            );
        }
        // Ours keep running for the socket and footprint figures; peers stop when measured.
        let ours = bench.candidates(&mut report).await?;
        let scale = std::mem::take(&mut report.ours.operator_at_scale);
        report.ours = OwnReport {
            operator_at_scale: scale,
            ..bench.ours(ours).await?
        };
    }
    bench.save(&mut report)?;
    bench.say(format!(
        "wrote {}/report.json and report.md; logs in {}",
        out.display(),
        logs.display()
    ));
    print!("{}", report.markdown());
    Ok(())
}
