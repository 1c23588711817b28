//! The fault checker behind `e2e/chaos`: one application led by 3 to 5 sidecars (local processes,
//! each reaching the API server through its own [`Link`]) and two operators, on a control plane of
//! its own, while faults are injected on a seeded schedule ([`faults`]). Every sidecar records when
//! it starts and stops reporting "leader" on the machine's CLOCK_MONOTONIC; afterwards the records
//! are judged ([`history`]): no two leaders at once, the term rising with each new leader,
//! availability, and recovery after each fault. Every run writes its records, intervals, plan and
//! report to its output folder, so a failing run can be studied and its schedule run again.

pub mod faults;
pub mod history;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use kube::{Api, Client, api::PostParams};
use leadership::{
    client::SocketClient,
    wire::{RecordLine, monotonic_ns},
};
use leadership_kube::crd::LeadershipLease;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep, timeout};

use self::{
    faults::{FaultKind, PlanSettings, PlannedFault, Rng, Target},
    history::Verdict,
};
use crate::{
    bench::Summary,
    controlplane::{ControlPlane, StartOptions},
    link::{Link, LinkState},
    testenv::create_namespace,
    tools::Tools,
    units::{self, Process},
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

/// One injected fault, as it happened.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Injected {
    /// When it was injected (CLOCK_MONOTONIC, nanoseconds).
    pub at_ns: u64,
    /// What it was.
    pub kind: FaultKind,
    /// The unit or operator it hit, if any.
    pub target: Option<String>,
    /// Whether it hit the leader.
    pub hit_leader: bool,
    /// How long it lasted, and its parameter.
    pub detail: String,
}

/// The files and figures of a finished run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// The seed of the plan (when seeded).
    pub seed: u64,
    /// How many sidecars ran.
    pub units: usize,
    /// Faults injected, by kind.
    pub by_kind: BTreeMap<String, usize>,
    /// By kind, the recoveries of the faults that left the application leaderless, in ms.
    pub recovery_by_kind_ms: BTreeMap<String, Summary>,
    /// The verdict.
    pub verdict: Verdict,
    /// Seconds from the first fault to the end of measuring.
    pub measured_s: f64,
}

impl Outcome {
    /// Whether the run found nothing wrong.
    pub fn passed(&self) -> bool {
        self.verdict.violations.is_empty()
    }

    /// How many faults were injected.
    pub fn faults(&self) -> usize {
        self.by_kind.values().sum()
    }

    /// The closing line: `overlaps=0 intervals=N faults=N availability=0.97 recovery_p99_ms=N`.
    pub fn summary_line(&self) -> String {
        format!(
            "overlaps={} intervals={} faults={} availability={:.3} recovery_p99_ms={:.0}",
            self.verdict.violations.overlaps.len(),
            self.verdict.intervals,
            self.faults(),
            self.verdict.availability,
            self.verdict.recovery_ms.as_ref().map_or(0.0, |s| s.p99),
        )
    }

    /// The full report, ending with the summary line.
    pub fn report(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "faults injected, by kind (how many left the application leaderless; their recovery p50 / max):"
        );
        for (kind, n) in &self.by_kind {
            match self.recovery_by_kind_ms.get(kind) {
                Some(r) => {
                    let _ = writeln!(
                        text,
                        "  {kind:<18} {n:>4}   leaderless after {:>3}: {:>6.0} / {:>6.0} ms",
                        r.n, r.p50, r.max
                    );
                }
                None => {
                    let _ = writeln!(text, "  {kind:<18} {n:>4}   leaderless after   0");
                }
            }
        }
        let v = &self.verdict;
        let _ = writeln!(text, "leader intervals checked: {}", v.intervals);
        let _ = writeln!(
            text,
            "overlaps found (must be 0): {}",
            v.violations.overlaps.len()
        );
        let _ = writeln!(
            text,
            "terms that failed to rise (must be 0): {}",
            v.violations.terms.len()
        );
        let _ = writeln!(
            text,
            "availability: {:.2}% of {:.0} s with a leader",
            v.availability * 100.0,
            self.measured_s
        );
        match &v.recovery_ms {
            Some(r) => {
                let _ = writeln!(
                    text,
                    "recovery after the {} faults that left the application leaderless: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                    v.disruptive_faults, r.p50, r.p99, r.max
                );
            }
            None => {
                let _ = writeln!(text, "recovery: no fault left the application leaderless");
            }
        }
        text.push_str(&self.summary_line());
        text
    }
}

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

struct Operator {
    identity: String,
    process: Option<Process>,
    starts: usize,
}

struct Run {
    plane: ControlPlane,
    client: Client,
    settings: Settings,
    logs: PathBuf,
    units: Vec<Unit>,
    operators: Vec<Operator>,
    killed_at: BTreeMap<u32, u64>,
    injected: Vec<Injected>,
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
        let faults_started = Instant::now();
        for (i, fault) in plan.iter().enumerate() {
            tokio::time::sleep_until(faults_started + Duration::from_millis(fault.at_ms)).await;
            self.inject(i + 1, plan.len(), fault).await?;
        }
        // Time for the last fault's recovery to be seen.
        sleep(self.lease() * 3).await;
        let to = monotonic_ns();
        self.stop_everyone().await;
        write_json(
            &self.settings.out.join("faults.json"),
            &serde_json::json!({
                "seed": self.settings.seed, "plan": plan, "injected": self.injected,
            }),
        )?;
        self.judge(from, to)
    }

    fn lease(&self) -> Duration {
        self.settings.claim_duration * 2
    }

    fn claim_duration(&self) -> String {
        format!("{}ms", self.settings.claim_duration.as_millis())
    }

    async fn start_everyone(&mut self) -> anyhow::Result<()> {
        let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(self.client.clone(), APPLICATION);
        let server = &self.plane.state().server;
        let api_address: std::net::SocketAddr = server
            .trim_start_matches("https://")
            .parse()
            .with_context(|| format!("the API server's address in {server}"))?;
        for i in 0..self.settings.units {
            let name = format!("{APPLICATION}-{i}");
            pods.create(&PostParams::default(), &units::unit_pod(&name))
                .await
                .with_context(|| format!("create the Pod object {name}"))?;
            let link = Link::start(api_address).await?;
            let kubeconfig = self.logs.join(format!("{name}.kubeconfig"));
            link.kubeconfig(self.plane.kubeconfig(), &kubeconfig)?;
            self.units.push(Unit {
                socket: std::env::temp_dir()
                    .join(format!("leadership-chaos-{}-{name}.sock", std::process::id())),
                record: self.settings.out.join(format!("{name}.record.jsonl")),
                name,
                link,
                kubeconfig,
                process: None,
                starts: 0,
                rate: None,
            });
        }
        for identity in ["operator-a", "operator-b"] {
            self.operators.push(Operator {
                identity: identity.into(),
                process: None,
                starts: 0,
            });
        }
        for i in 0..self.operators.len() {
            self.start_operator(i);
        }
        for i in 0..self.units.len() {
            self.start_unit(i).await;
        }
        say(
            self.started,
            &format!("{} sidecars and 2 operators running", self.units.len()),
        );
        Ok(())
    }

    fn start_operator(&mut self, i: usize) {
        let operator = &mut self.operators[i];
        operator.starts += 1;
        let log = self
            .logs
            .join(format!("{}-{}.log", operator.identity, operator.starts));
        operator.process = Some(Process::start(
            &self.settings.operator,
            &units::operator_args(APPLICATION, &operator.identity),
            self.plane.kubeconfig(),
            log,
        ));
    }

    async fn start_unit(&mut self, i: usize) {
        let claim_duration = self.claim_duration();
        let unit = &mut self.units[i];
        unit.starts += 1;
        let mut args = units::sidecar_args(
            APPLICATION,
            APPLICATION,
            &unit.name,
            &unit.socket,
            &claim_duration,
        );
        args.extend(["--record".to_owned(), unit.record.display().to_string()]);
        let env = match unit.rate {
            Some(rate) => vec![
                (
                    "LD_PRELOAD".to_owned(),
                    self.settings.faketime.display().to_string(),
                ),
                ("FAKETIME".to_owned(), format!("+0 x{rate:.4}")),
            ],
            None => Vec::new(),
        };
        let log = self.logs.join(format!("{}-{}.log", unit.name, unit.starts));
        unit.process = Some(Process::start_with_env(
            &self.settings.sidecar,
            &args,
            &unit.kubeconfig,
            log,
            &env,
        ));
        let client = SocketClient::new(&unit.socket);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((status, _)) = client.call(http::Method::GET, "/readyz", None).await
                && status.is_success()
            {
                return;
            }
            sleep(Duration::from_millis(50)).await;
        }
        say(
            self.started,
            &format!("warning: {} not ready after 30 s", unit.name),
        );
    }

    /// The index of the unit that reports leader now, if one does.
    async fn leader(&self) -> Option<usize> {
        for (i, unit) in self.units.iter().enumerate() {
            if unit.process.is_none() {
                continue;
            }
            let asked = timeout(
                Duration::from_millis(300),
                SocketClient::new(&unit.socket).status(),
            )
            .await;
            if let Ok(Ok(status)) = asked
                && status.leader
            {
                return Some(i);
            }
        }
        None
    }

    async fn first_leader(&self) -> anyhow::Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(i) = self.leader().await {
                say(self.started, &format!("{} leads", self.units[i].name));
                return Ok(monotonic_ns());
            }
            sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "no sidecar became leader within 60 s; logs in {}",
            self.logs.display()
        )
    }

    async fn pick_unit(&mut self, target: Target) -> (usize, bool) {
        let leader = self.leader().await;
        let chosen = match (target, leader) {
            (Target::Leader, Some(i)) => i,
            (Target::Leader, None) => self.rng.below(self.units.len()),
            (Target::Unit(i), _) => i % self.units.len(),
        };
        (chosen, leader == Some(chosen))
    }

    /// Stops a unit's process: SIGKILL (noting when it was gone) or SIGTERM.
    async fn stop_unit(&mut self, i: usize, signal: Signal) {
        if let Some(mut process) = self.units[i].process.take() {
            let pid = process.pid().as_raw();
            process.signal(signal);
            let _ = process.exit_code().await;
            if signal == Signal::SIGKILL {
                self.killed_at
                    .insert(u32::try_from(pid).unwrap_or(0), monotonic_ns());
            }
        }
    }

    async fn active_operator(&self) -> Option<usize> {
        let api = Api::<LeadershipLease>::namespaced(self.client.clone(), APPLICATION);
        let lease = timeout(Duration::from_secs(2), api.get(OPERATOR_LEASE))
            .await
            .ok()?
            .ok()?;
        let holder = lease.status?.holder?;
        self.operators.iter().position(|o| o.identity == holder)
    }

    async fn inject(&mut self, n: usize, total: usize, fault: &PlannedFault) -> anyhow::Result<()> {
        let hold = Duration::from_millis(fault.hold_ms);
        let at_ns = monotonic_ns();
        let (target, hit_leader) = if fault.kind.targets_a_unit() {
            let (i, leads) = self.pick_unit(fault.target).await;
            (Some(i), leads)
        } else {
            (None, false)
        };
        let name = target.map(|i| self.units[i].name.clone());
        let mut detail = format!("{:.1}s", hold.as_secs_f64());
        match (fault.kind, target) {
            (FaultKind::KillSidecar, Some(i)) => {
                self.stop_unit(i, Signal::SIGKILL).await;
                sleep(hold).await;
                self.start_unit(i).await;
            }
            (FaultKind::TermSidecar, Some(i)) => {
                self.stop_unit(i, Signal::SIGTERM).await;
                sleep(hold).await;
                self.start_unit(i).await;
            }
            (FaultKind::SkewClock, Some(i)) => {
                self.stop_unit(i, Signal::SIGTERM).await;
                sleep(hold).await;
                self.units[i].rate = Some(fault.parameter);
                detail = format!("clock rate x{:.4}", fault.parameter);
                self.start_unit(i).await;
            }
            (FaultKind::PauseSidecar, Some(i)) => {
                if let Some(process) = &self.units[i].process {
                    process.signal(Signal::SIGSTOP);
                    sleep(hold).await;
                    process.signal(Signal::SIGCONT);
                }
            }
            (FaultKind::CutLink, Some(i)) => {
                self.units[i].link.set(LinkState::Cut);
                sleep(hold).await;
                self.units[i].link.set(LinkState::Up);
            }
            (FaultKind::SlowLink, Some(i)) => {
                let delay = Duration::from_millis(fault.parameter as u64);
                self.units[i].link.set(LinkState::Slow(delay));
                detail = format!("{detail} at +{} ms per chunk", delay.as_millis());
                sleep(hold).await;
                self.units[i].link.set(LinkState::Up);
            }
            (FaultKind::RestartApiServer, _) => {
                let began = Instant::now();
                self.plane.restart_component("kube-apiserver").await?;
                detail = format!("back in {:.1}s", began.elapsed().as_secs_f64());
            }
            (FaultKind::RestartEtcd, _) => {
                let began = Instant::now();
                self.plane.restart_component("etcd").await?;
                detail = format!("back in {:.1}s", began.elapsed().as_secs_f64());
            }
            (FaultKind::KillOperator, _) => {
                let i = self.active_operator().await.unwrap_or(0);
                if let Some(mut process) = self.operators[i].process.take() {
                    process.signal(Signal::SIGKILL);
                    let _ = process.exit_code().await;
                }
                sleep(hold).await;
                self.start_operator(i);
                self.record(
                    at_ns,
                    fault.kind,
                    Some(self.operators[i].identity.clone()),
                    false,
                    detail,
                );
                return Ok(());
            }
            (_, None) => unreachable!("faults aimed at a unit always have one"),
        }
        let who = name.as_deref().unwrap_or("control plane");
        say(
            self.started,
            &format!(
                "fault {n}/{total}: {} {who}{} ({detail})",
                fault.kind.name(),
                if hit_leader { " (the leader)" } else { "" }
            ),
        );
        self.record(at_ns, fault.kind, name, hit_leader, detail);
        Ok(())
    }

    fn record(
        &mut self,
        at_ns: u64,
        kind: FaultKind,
        target: Option<String>,
        hit_leader: bool,
        detail: String,
    ) {
        if kind == FaultKind::KillOperator {
            say(
                self.started,
                &format!(
                    "fault: kill-operator {} ({detail})",
                    target.as_deref().unwrap_or("?")
                ),
            );
        }
        self.injected.push(Injected {
            at_ns,
            kind,
            target,
            hit_leader,
            detail,
        });
    }

    async fn stop_everyone(&mut self) {
        say(self.started, "stopping: SIGTERM to every sidecar and operator");
        for unit in &self.units {
            unit.link.set(LinkState::Up);
        }
        for i in 0..self.units.len() {
            self.stop_unit(i, Signal::SIGTERM).await;
        }
        for operator in &mut self.operators {
            if let Some(mut process) = operator.process.take() {
                process.signal(Signal::SIGTERM);
                let _ = process.exit_code().await;
            }
        }
    }

    fn judge(&self, from: u64, to: u64) -> anyhow::Result<Outcome> {
        let lines = read_records(self.units.iter().map(|u| &u.record))?;
        let intervals = history::intervals(&lines, &self.killed_at)?;
        let fault_times: Vec<u64> = self.injected.iter().map(|f| f.at_ns).collect();
        let verdict = history::judge(&intervals, &fault_times, from, to);
        write_json(
            &self.settings.out.join("history.json"),
            &serde_json::json!({ "from": from, "to": to, "killedAt": self.killed_at, "intervals": intervals }),
        )?;
        let mut by_kind = BTreeMap::new();
        let mut recoveries: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (fault, ms) in self.injected.iter().zip(&verdict.recovery_per_fault_ms) {
            *by_kind.entry(fault.kind.name().to_owned()).or_insert(0) += 1;
            if *ms > 0.0 {
                recoveries
                    .entry(fault.kind.name().to_owned())
                    .or_default()
                    .push(*ms);
            }
        }
        let recovery_by_kind_ms = recoveries
            .into_iter()
            .filter_map(|(kind, samples)| Some((kind, Summary::of(&samples)?)))
            .collect();
        let outcome = Outcome {
            seed: self.settings.seed,
            units: self.units.len(),
            by_kind,
            recovery_by_kind_ms,
            verdict,
            measured_s: (to - from) as f64 / 1e9,
        };
        write_json(&self.settings.out.join("report.json"), &outcome)?;
        Ok(outcome)
    }
}
