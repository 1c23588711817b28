//! The fault checker behind `e2e/chaos`: one application led by 3 to 5 sidecars (local processes,
//! each reaching the API server through its own [`Link`]) and two operators, on a control plane of
//! its own with the chart's RBAC and admission policies in force: every process writes with a
//! token of the chart's ServiceAccounts bound to a Pod object of its own, as in real pods. Faults
//! are injected on a seeded schedule ([`faults`]) while a hostile unit (a member pod with no
//! sidecar) sends random writes of the leases with its credentials and judges what the API server
//! admits ([`legality`]). Every sidecar records when it starts and stops reporting "leader" on the
//! machine's CLOCK_MONOTONIC; afterwards the records are judged ([`history`]): no two leaders at
//! once, the term rising with each new leader, availability, and recovery after each fault. Every
//! run writes its records, intervals, plan, the hostile unit's findings and the report to its
//! output folder, so a failing run can be studied and its schedule run again.
//!
//! By file: this one runs the whole; `credentials` installs the chart and makes the tokens;
//! `processes` starts, asks and stops the sidecars and operators; `inject` carries out one fault;
//! `hostile` runs the hostile unit; `outcome` judges the records and writes the report;
//! [`faults`] (the plan), [`mutations`] (the hostile unit's writes), [`legality`] (its judge) and
//! [`history`] (the judging of the records) are pure.

mod credentials;
pub mod faults;
pub mod history;
pub mod hostile;
mod inject;
pub mod legality;
pub mod mutations;
mod outcome;
mod processes;

pub use outcome::{Injected, Outcome};

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use kube::{Api, Client, api::PostParams};
use leadership::wire::{RecordLine, monotonic_ns};
use leadership_kube::crd::{HealthPolicy, LeadershipLease, LeasePolicy};
use serde::Serialize;
use tokio::time::{Instant, sleep};

use self::{
    faults::{PlanSettings, PlannedFault, Rng},
    hostile::HostileUnit,
};
use leadership_e2e::{
    controlplane::{ControlPlane, StartOptions},
    link::Link,
    testenv::create_namespace,
    tools::Tools,
    units::Process,
};

/// The namespace and the application the checker runs.
pub const APPLICATION: &str = "chaos";
/// The operators' application (their own leadership).
const OPERATOR_LEASE: &str = "leadership-operator";

/// Every line of the sidecars' leadership records (`--record` files) at `paths`, file by file.
pub fn read_records(paths: impl IntoIterator<Item = impl AsRef<Path>>) -> anyhow::Result<Vec<RecordLine>> {
    let mut lines = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            lines.push(
                serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), n + 1))?,
            );
        }
    }
    Ok(lines)
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long to inject faults.
    pub duration: Duration,
    /// How many sidecars (3 to 5).
    pub units: usize,
    /// The sidecars' claim duration d.
    pub claim_duration: Duration,
    /// The seed of the fault plan.
    pub seed: u64,
    /// A plan to run instead of a seeded one (from a previous run's `faults.json`).
    pub plan: Option<Vec<PlannedFault>>,
    /// Where the run's files go.
    pub out: PathBuf,
    /// The `leadership-sidecar` binary.
    pub sidecar: PathBuf,
    /// The `leadership-operator` binary.
    pub operator: PathBuf,
    /// Debian's `libfaketime.so.1`, preloaded into a sidecar whose clock is skewed.
    pub faketime: PathBuf,
    /// Run the hostile unit during the faults (on unless `--no-hostile`).
    pub hostile: bool,
}

/// The largest clock-rate error given to a skewed sidecar: the drift bound the expiry margin
/// assumes (1%).
pub const MAX_DRIFT: f64 = 0.01;

/// Where Debian's libfaketime is, unless `LEADERSHIP_FAKETIME` says otherwise.
pub fn default_faketime() -> PathBuf {
    std::env::var_os("LEADERSHIP_FAKETIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"))
}

/// One sidecar: its link to the API server, its files, and its process while it runs.
struct Unit {
    name: String,
    link: Link,
    kubeconfig: PathBuf,
    socket: PathBuf,
    record: PathBuf,
    process: Option<Process>,
    starts: usize,
    rate: Option<f64>,
}

/// One operator replica (its identity is its Pod object's name), its kubeconfig and its process
/// while it runs.
struct Operator {
    identity: String,
    kubeconfig: PathBuf,
    process: Option<Process>,
    starts: usize,
}

/// One run of the checker: its control plane, its processes, and what was injected.
struct Run {
    plane: ControlPlane,
    client: Client,
    settings: Settings,
    logs: PathBuf,
    units: Vec<Unit>,
    operators: Vec<Operator>,
    killed_at: BTreeMap<u32, u64>,
    injected: Vec<Injected>,
    hostile: Option<HostileUnit>,
    rng: Rng,
    started: Instant,
}

/// Prints one line of progress with the time since the run started.
fn say(started: Instant, what: &str) {
    eprintln!("[chaos {:6.1}s] {what}", started.elapsed().as_secs_f64());
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("serialize")?;
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// Runs the checker: starts everything, injects the plan, stops everything, judges the records.
pub async fn run(tools: &Tools, settings: Settings) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    if !(3..=5).contains(&settings.units) {
        bail!("--units must be 3, 4 or 5, not {}", settings.units);
    }
    if !settings.faketime.exists() {
        bail!(
            "libfaketime is needed for the skewed-clock fault and is not at {} (install Debian's libfaketime: apt-get install libfaketime, or set LEADERSHIP_FAKETIME)",
            settings.faketime.display()
        );
    }
    std::fs::create_dir_all(settings.out.join("logs"))
        .with_context(|| format!("create {}", settings.out.display()))?;
    say(started, "starting a control plane of its own");
    let plane = ControlPlane::start(tools, StartOptions::owned_by_this_process()).await?;
    let client = plane.client().await?;
    leadership_kube::crd::install(&client)
        .await
        .context("install the CRD")?;
    create_namespace(&client, APPLICATION, &[])
        .await
        .context("create the namespace")?;
    // The units are processes beside Pod objects that no kubelet runs, so no app's health is
    // known: the health rule would find every app "not started". It is off for this application
    // (the node's tests check it on real pods).
    let mut lease = LeadershipLease::empty(APPLICATION, APPLICATION);
    lease.spec.policy = Some(LeasePolicy {
        min_duration_ms: None,
        max_duration_ms: None,
        lock_delay_ms: None,
        health: Some(HealthPolicy {
            enabled: Some(false),
            ..HealthPolicy::default()
        }),
    });
    Api::<LeadershipLease>::namespaced(client.clone(), APPLICATION)
        .create(&PostParams::default(), &lease)
        .await
        .context("create the application's lease with the health rule off")?;
    say(started, "installing the chart's RBAC and admission policies");
    credentials::install_chart(tools, plane.kubeconfig()).await?;
    let mut run = Run {
        logs: settings.out.join("logs"),
        plane,
        client,
        rng: Rng::new(settings.seed ^ 0x5EED),
        settings,
        units: Vec::new(),
        operators: Vec::new(),
        killed_at: BTreeMap::new(),
        injected: Vec::new(),
        hostile: None,
        started,
    };
    let outcome = run.everything().await;
    run.plane.stop();
    outcome
}

impl Run {
    async fn everything(&mut self) -> anyhow::Result<Outcome> {
        let plan = match &self.settings.plan {
            Some(plan) => plan.clone(),
            None => faults::plan(
                self.settings.seed,
                &PlanSettings {
                    duration: self.settings.duration,
                    claim_duration: self.settings.claim_duration,
                    units: self.settings.units,
                    max_drift: MAX_DRIFT,
                },
            ),
        };
        write_json(
            &self.settings.out.join("faults.json"),
            &serde_json::json!({ "seed": self.settings.seed, "plan": plan }),
        )?;
        self.start_everyone().await?;
        let from = self.first_leader().await?;
        say(
            self.started,
            &format!(
                "injecting {} faults over {:?}",
                plan.len(),
                self.settings.duration
            ),
        );
        let (stop_hostile, stopped) = tokio::sync::watch::channel(false);
        let hostile = self.hostile.take().map(|unit| tokio::spawn(unit.run(stopped)));
        let faults_started = Instant::now();
        for (i, fault) in plan.iter().enumerate() {
            tokio::time::sleep_until(faults_started + Duration::from_millis(fault.at_ms)).await;
            self.inject(i + 1, plan.len(), fault).await?;
        }
        // Time for the last fault's recovery to be seen.
        sleep(self.lease() * 3).await;
        let to = monotonic_ns();
        stop_hostile.send_replace(true);
        let findings = match hostile {
            Some(task) => Some(task.await.context("the hostile unit's task")?),
            None => None,
        };
        self.stop_everyone().await;
        write_json(
            &self.settings.out.join("faults.json"),
            &serde_json::json!({
                "seed": self.settings.seed, "plan": plan, "injected": self.injected,
            }),
        )?;
        self.judge(from, to, findings)
    }

    fn lease(&self) -> Duration {
        self.settings.claim_duration * 2
    }

    /// An admin API for namespaced resources of type `K` in the application's namespace.
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), APPLICATION)
    }
}
