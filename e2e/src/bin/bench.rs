//! `e2e/bench [--quick] [--out DIR]`: measures this project and its peers (client-go's
//! leaderelection, kube-lease-manager; kube-leader-election does not build) in one run on one local control plane,
//! and writes `DIR/report.json` and `DIR/report.md` (the plot is drawn from the JSON by
//! `e2e/bench/plot.py`). The wrapper script builds the binaries and passes their paths:
//! `BENCH_SIDECAR`, `BENCH_OPERATOR`, `BENCH_CLIENT_GO`, `BENCH_RUST_PEERS`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
    runtime::watcher,
};
use leadership::{client::SocketClient, wire::monotonic_ns};
use leadership_e2e::{
    bench::{CandidateReport, OURS, OwnReport, Report, ScaleReport, Summary},
    chaos::history,
    controlplane::{ControlPlane, StartOptions},
    tools::Tools,
};
use leadership_kube::{KubeStore, Scope, crd::LeadershipLease};
use nix::sys::signal::{Signal, kill};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
    time::{Instant, sleep, timeout},
};

/// How much to measure.
struct Plan {
    quick: bool,
    handovers: usize,
    crashes: usize,
    window: Duration,
    many_apps: usize,
    lease_counts: Vec<usize>,
    socket_run: Duration,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                handovers: 3,
                crashes: 1,
                window: Duration::from_secs(10),
                many_apps: 5,
                lease_counts: vec![50],
                socket_run: Duration::from_secs(1),
            }
        } else {
            Plan {
                quick,
                handovers: 30,
                crashes: 10,
                window: Duration::from_secs(60),
                many_apps: 100,
                lease_counts: vec![1000, 10000],
                socket_run: Duration::from_secs(10),
            }
        }
    }
}

/// The binaries under test.
struct Bins {
    sidecar: PathBuf,
    operator: PathBuf,
    client_go: PathBuf,
    rust_peers: PathBuf,
}

impl Bins {
    fn from_env() -> anyhow::Result<Bins> {
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
        })
    }
}

/// Our claim duration in the benchmark: leases of 4 s.
const OUR_CLAIM: Duration = Duration::from_secs(2);

/// One leader-election implementation with its settings.
#[derive(Clone)]
struct Candidate {
    name: &'static str,
    kind: Kind,
    lease: Duration,
    description: String,
}

impl Candidate {
    /// The API resource its leases live in.
    fn resource(&self) -> &'static str {
        match self.kind {
            Kind::Ours => "leadershipleases",
            _ => "leases",
        }
    }
}

#[derive(Clone)]
enum Kind {
    Ours,
    ClientGo { renew: Duration, retry: Duration },
    RustPeer(&'static str),
}

fn candidates() -> Vec<Candidate> {
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

/// The log line by which a process says it became leader.
fn leader_marker(kind: &Kind) -> &'static str {
    match kind {
        Kind::Ours => "this unit is now leader",
        _ => "LEADER",
    }
}

struct Bench {
    plan: Plan,
    bins: Bins,
    client: Client,
    kubeconfig: PathBuf,
    scratch: PathBuf,
    started: Instant,
    /// Requests and writes per minute to `leases` by the control plane itself (its own leases).
    lease_baseline: (f64, f64),
}

/// An event: member `index` said it leads, at this instant.
type Elected = (usize, Instant);

impl Bench {
    fn say(&self, text: impl AsRef<str>) {
        println!(
            "[bench {:6.1}s] {}",
            self.started.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }

    async fn namespace(&self, name: &str) -> anyhow::Result<()> {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(())
    }

    fn command(&self, candidate: &Candidate, namespace: &str, app: &str, unit: &str) -> Command {
        let mut command = match &candidate.kind {
            Kind::Ours => {
                let mut c = Command::new(&self.bins.sidecar);
                let socket = self.scratch.join(format!("{namespace}-{unit}.sock"));
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
                .arg(socket)
                .arg("--claim-duration")
                .arg(format!("{}ms", OUR_CLAIM.as_millis()))
                .arg("--record")
                .arg(self.scratch.join(format!("{namespace}-{unit}.record.jsonl")));
                c
            }
            Kind::ClientGo { renew, retry } => {
                let mut c = Command::new(&self.bins.client_go);
                c.args(["--namespace", namespace, "--lease", app, "--identity", unit])
                    .arg(format!("--lease-duration={}ms", candidate.lease.as_millis()))
                    .arg(format!("--renew-deadline={}ms", renew.as_millis()))
                    .arg(format!("--retry-period={}ms", retry.as_millis()));
                c
            }
            Kind::RustPeer(implementation) => {
                let mut c = Command::new(&self.bins.rust_peers);
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
                .args(["--lease-seconds", &candidate.lease.as_secs().to_string()]);
                c
            }
        };
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Starts member `index`; its "I lead" lines go to `events`.
    fn spawn(
        &self,
        candidate: &Candidate,
        namespace: &str,
        app: &str,
        index: usize,
        events: &mpsc::UnboundedSender<Elected>,
    ) -> anyhow::Result<Child> {
        let unit = format!("{app}-{index}");
        let mut child = self
            .command(candidate, namespace, app, &unit)
            .spawn()
            .with_context(|| format!("start {}", candidate.name))?;
        let marker = leader_marker(&candidate.kind);
        let log = self.scratch.join(format!("{namespace}-{unit}.log"));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let (events, log) = (events.clone(), log.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                let mut file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .await
                    .ok();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains(marker) {
                        let _ = events.send((index, Instant::now()));
                    }
                    if let Some(file) = file.as_mut() {
                        use tokio::io::AsyncWriteExt;
                        let _ = file.write_all(format!("{line}\n").as_bytes()).await;
                    }
                }
            });
        }
        Ok(child)
    }

    /// Leader election figures for one candidate: handovers, crashes, steady-state API cost. The
    /// processes are returned still running, with the leader's index.
    async fn election(&self, candidate: &Candidate) -> anyhow::Result<(CandidateReport, Vec<Child>, usize)> {
        let namespace = format!("bench-{}", candidate.name);
        self.namespace(&namespace).await?;
        let app = "app";
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut members = Vec::new();
        for i in 0..3 {
            members.push(self.spawn(candidate, &namespace, app, i, &tx)?);
        }
        let mut leader = next_leader(&mut rx, None, Duration::from_secs(60))
            .await
            .context("no first leader")?;
        self.say(format!("{}: 3 processes, {} leads", candidate.name, leader));
        let mut handovers = Vec::new();
        for round in 0..self.plan.handovers {
            drain(&mut rx);
            let stopped = Instant::now();
            signal(&members[leader], Signal::SIGTERM);
            let (next, at) = next_leader_at(&mut rx, Some(leader), Duration::from_secs(120))
                .await
                .context("no leader after a handover")?;
            handovers.push(at.saturating_duration_since(stopped).as_secs_f64() * 1000.0);
            stop(&mut members[leader]).await;
            members[leader] = self.spawn(candidate, &namespace, app, leader, &tx)?;
            leader = next;
            if round % 10 == 9 {
                self.say(format!("{}: {} graceful handovers", candidate.name, round + 1));
            }
            sleep(Duration::from_millis(500)).await;
        }
        let mut crashes = Vec::new();
        for round in 0..self.plan.crashes {
            // Let the new members settle, so that the leader has renewed at least once.
            sleep(candidate.lease / 2 + Duration::from_secs(1)).await;
            drain(&mut rx);
            let killed = Instant::now();
            signal(&members[leader], Signal::SIGKILL);
            let (next, at) = next_leader_at(
                &mut rx,
                Some(leader),
                candidate.lease * 4 + Duration::from_secs(60),
            )
            .await
            .context("no leader after a crash")?;
            let overhead = at.saturating_duration_since(killed).as_secs_f64() * 1000.0
                - candidate.lease.as_secs_f64() * 1000.0;
            crashes.push(overhead);
            stop(&mut members[leader]).await;
            members[leader] = self.spawn(candidate, &namespace, app, leader, &tx)?;
            leader = next;
            self.say(format!(
                "{}: crash {} of {}: {:.0} ms over the lease",
                candidate.name,
                round + 1,
                self.plan.crashes,
                overhead
            ));
        }
        sleep(Duration::from_secs(3)).await;
        let (requests, writes) = self.api_cost(candidate).await?;
        self.say(format!(
            "{}: steady state: {requests:.1} requests, {writes:.1} writes per minute",
            candidate.name
        ));
        let mut report = CandidateReport {
            description: candidate.description.clone(),
            lease_ms: u64::try_from(candidate.lease.as_millis()).unwrap_or(u64::MAX),
            handover_ms: Summary::of(&handovers),
            crash_overhead_ms: Summary::of(&crashes),
            api_requests_per_leader_min: Some(requests),
            api_writes_per_leader_min: Some(writes),
            ..CandidateReport::default()
        };
        report.samples.insert("handover_ms".into(), handovers);
        report.samples.insert("crash_overhead_ms".into(), crashes);
        Ok((report, members, leader))
    }

    /// Hands our application over to the next unit, `plan.handovers` times (the sidecars started
    /// by [`Self::election`] still run): the leaderless gaps, from the sidecars' records, and the
    /// time from each request to the target's first "leader", in ms.
    async fn handovers_to_a_unit(
        &self,
        mut leader: usize,
    ) -> anyhow::Result<(Option<Summary>, Option<Summary>)> {
        let namespace = format!("bench-{OURS}");
        let store = KubeStore::new(self.client.clone(), Scope::Namespace(namespace.clone()));
        let socket = |i: usize| self.scratch.join(format!("{namespace}-app-{i}.sock"));
        let from = monotonic_ns();
        let mut requests = Vec::new();
        for _ in 0..self.plan.handovers {
            let target = (leader + 1) % 3;
            let asked = Instant::now();
            store.hand_over("app", Some(&format!("app-{target}"))).await?;
            let deadline = asked + Duration::from_secs(30);
            loop {
                let status = SocketClient::new(socket(target)).status().await;
                if status.is_ok_and(|s| s.leader) {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "app-{target} did not take over within 30 s"
                );
                sleep(Duration::from_millis(1)).await;
            }
            requests.push(asked.elapsed().as_secs_f64() * 1000.0);
            leader = target;
            sleep(Duration::from_millis(300)).await;
        }
        let to = monotonic_ns();
        let mut lines = Vec::new();
        for i in 0..3 {
            let path = self.scratch.join(format!("{namespace}-app-{i}.record.jsonl"));
            let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
            for line in text.lines() {
                lines.push(
                    serde_json::from_str(line).with_context(|| format!("a line of {}", path.display()))?,
                );
            }
        }
        let intervals = history::intervals(&lines, &BTreeMap::new())?;
        let gaps: Vec<f64> = history::leaderless(&intervals, from, to)
            .iter()
            .map(|(start, end)| (end - start) as f64 / 1e6)
            .collect();
        Ok((Summary::of(&gaps), Summary::of(&requests)))
    }

    /// Requests and writes per minute to `candidate`'s lease resource over the plan's window,
    /// from the API server's own counters, less what the control plane itself does to it.
    async fn api_cost(&self, candidate: &Candidate) -> anyhow::Result<(f64, f64)> {
        let resource = candidate.resource();
        let before = request_counts(&self.client, resource).await?;
        sleep(self.plan.window).await;
        let after = request_counts(&self.client, resource).await?;
        let minutes = self.plan.window.as_secs_f64() / 60.0;
        let baseline = if resource == "leases" {
            self.lease_baseline
        } else {
            (0.0, 0.0)
        };
        Ok((
            ((after.0 - before.0) / minutes - baseline.0).max(0.0),
            ((after.1 - before.1) / minutes - baseline.1).max(0.0),
        ))
    }

    /// API cost with many applications, one process each.
    async fn many_apps(&self, candidate: &Candidate) -> anyhow::Result<(f64, f64)> {
        let namespace = format!("bench-many-{}", candidate.name);
        self.namespace(&namespace).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut members = Vec::new();
        for i in 0..self.plan.many_apps {
            members.push(self.spawn(candidate, &namespace, &format!("app{i}"), 0, &tx)?);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut led = 0;
        while led < self.plan.many_apps && Instant::now() < deadline {
            if timeout(Duration::from_secs(5), rx.recv())
                .await
                .ok()
                .flatten()
                .is_some()
            {
                led += 1;
            }
        }
        sleep(Duration::from_secs(3)).await;
        let cost = self.api_cost(candidate).await?;
        self.say(format!(
            "{}: {} applications ({led} leading): {:.1} requests, {:.1} writes per minute",
            candidate.name, self.plan.many_apps, cost.0, cost.1
        ));
        for member in &mut members {
            stop(member).await;
        }
        Ok(cost)
    }

    /// Starts the operator watching `namespace`, its own lease in `home`.
    fn spawn_operator(&self, namespace: &str, home: &str, identity: &str) -> anyhow::Result<Child> {
        let log = std::fs::File::create(self.scratch.join(format!("{namespace}-{identity}.log")))?;
        Ok(Command::new(&self.bins.operator)
            .args([
                "--watch-namespace",
                namespace,
                "--namespace",
                home,
                "--identity",
                identity,
                "--admin-address",
                "127.0.0.1:0",
            ])
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?)
    }

    /// Our socket's latency and throughput: `GET /v1/status` over keep-alive connections.
    async fn socket(&self, socket: &Path, clients: usize) -> anyhow::Result<(Summary, f64)> {
        let deadline = Instant::now() + self.plan.socket_run;
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let socket = socket.to_owned();
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::UnixStream::connect(&socket).await?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let request = http::Request::get("/v1/status")
                        .header("host", "localhost")
                        .body(Empty::<Bytes>::new())?;
                    let sent = Instant::now();
                    let response = sender.send_request(request).await?;
                    let _ = response.into_body().collect().await?;
                    latencies.push(sent.elapsed().as_secs_f64() * 1e6);
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        let rps = all.len() as f64 / self.plan.socket_run.as_secs_f64();
        Ok((Summary::of(&all).context("no requests")?, rps))
    }

    /// The operator with `count` leases whose holders never renew: its memory, and how late it
    /// clears each claim after it is due.
    async fn operator_at_scale(&self, count: usize) -> anyhow::Result<ScaleReport> {
        let namespace = format!("bench-scale-{count}");
        self.namespace(&namespace).await?;
        let mut operator = self.spawn_operator(&namespace, &namespace, "operator-0")?;
        let api: Api<LeadershipLease> = Api::namespaced(self.client.clone(), &namespace);
        // Watch for cleared claims from the start.
        let cleared: Arc<std::sync::Mutex<BTreeMap<String, Instant>>> = Arc::default();
        let watch = {
            let (api, cleared) = (api.clone(), cleared.clone());
            tokio::spawn(async move {
                use futures::StreamExt;
                let mut events = watcher(api, watcher::Config::default()).boxed();
                while let Some(Ok(event)) = events.next().await {
                    if let watcher::Event::Apply(object) | watcher::Event::InitApply(object) = event
                        && object
                            .status
                            .as_ref()
                            .is_some_and(|s| s.history.iter().any(|t| t.reason == "Expired"))
                        && let Some(name) = object.metadata.name.clone()
                    {
                        cleared
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(name)
                            .or_insert_with(Instant::now);
                    }
                }
            })
        };
        let lease = Duration::from_secs(2);
        let margin = leadership::expiry::ExpiryPolicy::default().margin(lease);
        let due: Arc<std::sync::Mutex<BTreeMap<String, Instant>>> = Arc::default();
        let names: Vec<String> = (0..count).map(|i| format!("l{i}")).collect();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(16));
        let mut writes = Vec::new();
        for name in names.clone() {
            let (api, due, permit) = (api.clone(), due.clone(), semaphore.clone().acquire_owned().await?);
            let namespace = namespace.clone();
            writes.push(tokio::spawn(async move {
                let _permit = permit;
                let written = write_dead_claim(&api, &namespace, &name, lease).await?;
                due.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name, written + lease + margin);
                anyhow::Ok(())
            }));
        }
        for write in writes {
            write.await??;
        }
        self.say(format!("operator at scale: {count} dead claims written"));
        let limit = Instant::now() + Duration::from_secs(if self.plan.quick { 60 } else { 600 });
        while cleared.lock().unwrap_or_else(|p| p.into_inner()).len() < count && Instant::now() < limit {
            sleep(Duration::from_millis(200)).await;
        }
        watch.abort();
        let rss = process_rss_mib(operator.id()).unwrap_or(0.0);
        stop(&mut operator).await;
        let cleared = cleared.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let due = due.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let lags: Vec<f64> = due
            .iter()
            .filter_map(|(name, due)| {
                cleared.get(name).map(|at| {
                    (at.duration_since(*due).as_secs_f64() - due.duration_since(*at).as_secs_f64()) * 1000.0
                })
            })
            .collect();
        Ok(ScaleReport {
            operator_rss_mib: rss,
            expiry_lag_ms: Summary::of(&lags),
            not_cleared: count - lags.len(),
        })
    }
}

/// Creates a lease with a claim by a unit that never renews (as a dead unit's last write would
/// leave it); returns when the claim write returned.
async fn write_dead_claim(
    api: &Api<LeadershipLease>,
    namespace: &str,
    name: &str,
    lease: Duration,
) -> anyhow::Result<Instant> {
    api.create(&PostParams::default(), &LeadershipLease::empty(namespace, name))
        .await?;
    // The operator may write its conditions in between: write on the latest version.
    loop {
        let mut claimed = api.get(name).await?;
        let mut status = claimed.status.clone().unwrap_or_default();
        status.holder = Some("dead-unit".into());
        status.term = 1;
        status.lease_duration_ms = Some(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        claimed.status = Some(status);
        match api.replace_status(name, &PostParams::default(), &claimed).await {
            Ok(_) => return Ok(Instant::now()),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

fn signal(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Stops a process gracefully (SIGTERM), or with SIGKILL after 10 s.
async fn stop(child: &mut Child) {
    signal(child, Signal::SIGTERM);
    if timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

fn drain(events: &mut mpsc::UnboundedReceiver<Elected>) {
    while events.try_recv().is_ok() {}
}

async fn next_leader_at(
    events: &mut mpsc::UnboundedReceiver<Elected>,
    except: Option<usize>,
    within: Duration,
) -> Option<Elected> {
    let deadline = Instant::now() + within;
    loop {
        let (index, at) = timeout(deadline.saturating_duration_since(Instant::now()), events.recv())
            .await
            .ok()??;
        if Some(index) != except {
            return Some((index, at));
        }
    }
}

async fn next_leader(
    events: &mut mpsc::UnboundedReceiver<Elected>,
    except: Option<usize>,
    within: Duration,
) -> Option<usize> {
    next_leader_at(events, except, within)
        .await
        .map(|(index, _)| index)
}

/// (requests, writes) to `resource` so far, from the API server's `apiserver_request_total`.
async fn request_counts(client: &Client, resource: &str) -> anyhow::Result<(f64, f64)> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let wanted = format!("resource=\"{resource}\"");
    let mut requests = 0.0;
    let mut writes = 0.0;
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if !labels.contains(&wanted) {
            continue;
        }
        let value: f64 = value.parse().unwrap_or(0.0);
        requests += value;
        if [
            "verb=\"POST\"",
            "verb=\"PUT\"",
            "verb=\"PATCH\"",
            "verb=\"DELETE\"",
            "verb=\"APPLY\"",
        ]
        .iter()
        .any(|v| labels.contains(v))
        {
            writes += value;
        }
    }
    Ok((requests, writes))
}

/// A process's resident memory in MiB.
fn process_rss_mib(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// A process's CPU time (user + system) in seconds.
fn process_cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn cpu_percent(pid: Option<u32>, window: Duration) -> Option<f64> {
    let before = process_cpu_seconds(pid)?;
    sleep(window).await;
    let after = process_cpu_seconds(pid)?;
    Some((after - before) / window.as_secs_f64() * 100.0)
}

fn machine() -> BTreeMap<String, String> {
    let mut machine = BTreeMap::new();
    machine.insert(
        "cpus".into(),
        std::thread::available_parallelism().map_or("?".into(), |n| n.to_string()),
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(total) = meminfo.lines().find(|l| l.starts_with("MemTotal:")) {
        machine.insert(
            "memory".into(),
            total.trim_start_matches("MemTotal:").trim().into(),
        );
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(model) = cpuinfo.lines().find(|l| l.starts_with("model name")) {
        machine.insert("cpu".into(), model.split(':').nth(1).unwrap_or("").trim().into());
    }
    machine.insert(
        "kernel".into(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .into(),
    );
    machine
}

fn versions(kubernetes: &str) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    versions.insert("kubernetes".into(), kubernetes.into());
    versions.insert("leadership".into(), env!("CARGO_PKG_VERSION").into());
    versions.insert("client-go".into(), "v0.36.3".into());
    versions.insert("kube-lease-manager".into(), "0.13.1".into());
    for (name, command) in [("rustc", ["rustc", "--version"]), ("go", ["go", "version"])] {
        if let Ok(out) = std::process::Command::new(command[0]).arg(command[1]).output() {
            versions.insert(name.into(), String::from_utf8_lossy(&out.stdout).trim().into());
        }
    }
    versions
}

fn parse_args() -> anyhow::Result<(bool, PathBuf)> {
    let mut quick = false;
    let mut out = PathBuf::from("bench-report");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => out = args.next().context("--out needs a folder")?.into(),
            "-h" | "--help" => {
                println!("usage: e2e/bench [--quick] [--out DIR]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; usage: e2e/bench [--quick] [--out DIR]"),
        }
    }
    Ok((quick, out))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let (quick, out) = parse_args()?;
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let started = Instant::now();
    let tools = Tools::locate()?;
    let mut plane = ControlPlane::start(&tools, StartOptions::owned_by_this_process()).await?;
    let result = measure(quick, &out, &plane, started).await;
    plane.stop();
    result
}

async fn measure(quick: bool, out: &Path, plane: &ControlPlane, started: Instant) -> anyhow::Result<()> {
    let client = plane.client().await?;
    leadership_kube::crd::install(&client).await?;
    let scratch = out.join("logs");
    std::fs::create_dir_all(&scratch)?;
    let mut bench = Bench {
        plan: Plan::new(quick),
        bins: Bins::from_env()?,
        client,
        kubeconfig: plane.kubeconfig().to_owned(),
        scratch,
        started,
        lease_baseline: (0.0, 0.0),
    };
    // What the control plane itself does to Leases (the API server's identity lease), subtracted
    // from the peers' figures.
    let before = request_counts(&bench.client, "leases").await?;
    sleep(bench.plan.window).await;
    let after = request_counts(&bench.client, "leases").await?;
    let minutes = bench.plan.window.as_secs_f64() / 60.0;
    bench.lease_baseline = ((after.0 - before.0) / minutes, (after.1 - before.1) / minutes);
    bench.say(format!(
        "control plane's own Lease traffic: {:.1} requests, {:.1} writes per minute (subtracted)",
        bench.lease_baseline.0, bench.lease_baseline.1
    ));
    let mut report = Report {
        machine: machine(),
        versions: versions(&plane.state().version),
        quick,
        ..Report::default()
    };
    bench.say(format!(
        "measuring {} candidates ({})",
        candidates().len(),
        if quick { "quick: a harness check" } else { "full" }
    ));

    report.candidates.insert(
        "kube-leader-election".into(),
        CandidateReport {
            description: "kube-leader-election 0.44.0, the newest release".into(),
            notes: vec!["not measured: it needs kube 4 (the project uses kube 5), and 0.44.0 does not build at all: its kube 4.2 and its k8s-openapi 0.29 disagree (Lease does not implement kube 4's Resource)".into()],
            ..CandidateReport::default()
        },
    );
    // Ours keep running for the socket and footprint figures; peers stop when measured.
    let mut ours: Option<(Vec<Child>, usize)> = None;
    for candidate in candidates() {
        let (mut result, members, leader) = bench.election(&candidate).await?;
        if matches!(candidate.kind, Kind::Ours) {
            ours = Some((members, leader));
        } else {
            for mut member in members {
                stop(&mut member).await;
            }
        }
        let (requests, writes) = bench.many_apps(&candidate).await?;
        result.api_requests_many_apps_min = Some(requests);
        result.api_writes_many_apps_min = Some(writes);
        report.candidates.insert(candidate.name.to_owned(), result);
    }

    // Ours alone: the socket, the footprint, the operator.
    let mut own = OwnReport::default();
    let (members, leader) = ours.context("our candidate was not measured")?;
    let socket = bench.scratch.join(format!("bench-{OURS}-app-{leader}.sock"));
    let (one, rps_one) = bench.socket(&socket, 1).await?;
    let (many, rps_many) = bench.socket(&socket, 16).await?;
    bench.say(format!(
        "socket: 1 client p50 {:.0} µs p99 {:.0} µs {:.0}/s; 16 clients p50 {:.0} µs p99 {:.0} µs {:.0}/s",
        one.p50, one.p99, rps_one, many.p50, many.p99, rps_many
    ));
    own.socket_latency_us_1_client = Some(one);
    own.socket_latency_us_16_clients = Some(many);
    own.socket_rps_1_client = Some(rps_one);
    own.socket_rps_16_clients = Some(rps_many);
    sleep(Duration::from_secs(2)).await;
    let leader_pid = members[leader].id();
    let rest = bench.plan.window.min(Duration::from_secs(30));
    own.sidecar_rss_mib = process_rss_mib(leader_pid);
    own.sidecar_cpu_percent = cpu_percent(leader_pid, rest).await;
    let (gaps, requests) = bench.handovers_to_a_unit(leader).await?;
    bench.say(format!(
        "handover to a named unit: gap p50 {:.1} ms p99 {:.1} ms; request to new leader p50 {:.1} ms",
        gaps.as_ref().map_or(0.0, |s| s.p50),
        gaps.as_ref().map_or(0.0, |s| s.p99),
        requests.as_ref().map_or(0.0, |s| s.p50)
    ));
    own.handover_gap_ms = gaps;
    own.handover_request_ms = requests;

    // The operator's writes in steady state: all lease writes with it running, minus those without
    // it, minus the renewals of its own lease (counted on the lease itself).
    let namespace = format!("bench-{OURS}");
    let ours_candidate = candidates()
        .into_iter()
        .find(|c| c.name == OURS)
        .context("our candidate")?;
    let (_, writes_without) = bench.api_cost(&ours_candidate).await?;
    let home = "bench-operator-home";
    bench.namespace(home).await?;
    let mut operator = bench.spawn_operator(&namespace, home, "operator-0")?;
    sleep(Duration::from_secs(5)).await;
    let own_lease: Api<LeadershipLease> = Api::namespaced(bench.client.clone(), home);
    let renewals = |lease: Option<LeadershipLease>| {
        lease
            .and_then(|l| l.status)
            .map_or(0.0, |s| s.renewals as f64 + s.term as f64)
    };
    let before = renewals(own_lease.get_opt("leadership-operator").await?);
    let (_, writes_with) = bench.api_cost(&ours_candidate).await?;
    let after = renewals(own_lease.get_opt("leadership-operator").await?);
    let own_writes = (after - before) / (bench.plan.window.as_secs_f64() / 60.0);
    own.operator_writes_per_min = Some((writes_with - writes_without - own_writes).max(0.0));
    own.operator_rss_mib = process_rss_mib(operator.id());
    own.operator_cpu_percent = cpu_percent(operator.id(), rest).await;
    stop(&mut operator).await;
    bench.say(format!(
        "operator steady state: {:?} writes/min to application leases",
        own.operator_writes_per_min
    ));
    drop(members);
    for count in bench.plan.lease_counts.clone() {
        let scale = match bench.operator_at_scale(count).await {
            Ok(scale) => scale,
            Err(err) => {
                bench.say(format!("operator with {count} leases: not measured: {err:#}"));
                continue;
            }
        };
        bench.say(format!(
            "operator with {count} leases: {:.1} MiB, expiry lag {:?}, not cleared {}",
            scale.operator_rss_mib, scale.expiry_lag_ms, scale.not_cleared
        ));
        own.operator_at_scale.insert(count.to_string(), scale);
    }
    report.ours = own;
    report.compute_ratios();
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(out.join("report.md"), report.markdown())?;
    bench.say(format!("wrote {}/report.json and report.md", out.display()));
    print!("{}", report.markdown());
    Ok(())
}
