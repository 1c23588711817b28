//! `e2e/demo`: the quick start's live demo. It starts a real control plane, installs the chart with
//! helm, runs the operator and three sidecars of one application as local processes (with the
//! chart's ServiceAccounts, each sidecar's token bound to its Pod object), shows `kubectl get
//! leadershipleases`, hands leadership over with SIGTERM, kills the leader with SIGKILL, draws the
//! timeline of who led when, and cleans up.

use std::{
    path::PathBuf,
    process::{Command, ExitCode},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use leadership_e2e::{
    controlplane::{ControlPlane, StartOptions},
    testenv::{self, TestNamespace},
    tools::Tools,
    units::{self, Sidecar},
};
use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/leadership");
const APP: &str = "web";
const NAMESPACE: &str = "demo";
/// The demo's claim duration: leases of 4 s, so a crash failover is quick to watch.
const CLAIM: &str = "2s";
const UNITS: [&str; 3] = ["web-0", "web-1", "web-2"];

/// One unit's spans of leadership, in time since the demo's clock started.
type Spans = Arc<Mutex<Vec<Vec<(Duration, Option<Duration>)>>>>;

/// The demo's clock and its captions for the timeline.
struct Show {
    started: Instant,
    marks: Vec<(Duration, String)>,
}

impl Show {
    fn say(&self, text: impl AsRef<str>) {
        println!(
            "[demo {:5.1}s] {}",
            self.started.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }

    fn mark(&mut self, text: impl Into<String>) {
        self.marks.push((self.started.elapsed(), text.into()));
    }
}

fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command.output().with_context(|| format!("run {command:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("{command:?} failed:\n{text}");
    }
    Ok(text)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut show = Show {
        started: Instant::now(),
        marks: Vec::new(),
    };
    match demo(&mut show).await {
        Ok(()) => {
            show.say("done: everything the demo started has stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("demo failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(show: &mut Show) -> anyhow::Result<()> {
    let tools = Tools::locate()?;
    show.say("starting a control plane: etcd, kube-apiserver, kube-controller-manager on 127.0.0.1");
    let mut plane = ControlPlane::start(&tools, StartOptions::owned_by_this_process()).await?;
    testenv::use_cluster(plane.kubeconfig(), tools);
    let result = scenes(show).await;
    show.say("cleaning up: stopping the processes and the control plane");
    plane.stop();
    result
}

fn kubectl_get() -> anyhow::Result<String> {
    run(testenv::shared()
        .kubectl()
        .args(["get", "leadershipleases", "-n", NAMESPACE]))
}

async fn token_config(
    ns: &TestNamespace,
    account: &str,
    pod: Option<(&str, &str)>,
    dir: &std::path::Path,
) -> anyhow::Result<PathBuf> {
    let token = ns.token(account, pod).await;
    let path = dir.join(format!("{}.kubeconfig", pod.map_or(account, |(name, _)| name)));
    testenv::shared().token_kubeconfig(&token, &path)?;
    Ok(path)
}

async fn scenes(show: &mut Show) -> anyhow::Result<()> {
    let env = testenv::shared();
    let ns = env.namespace_named(NAMESPACE).await;
    show.say("helm install leadership charts/leadership (CRD, operator, RBAC, admission policy)");
    let helm = env.tools().path("helm");
    let installed = run(Command::new(&helm)
        .args(["install", "leadership", CHART, "--namespace", NAMESPACE])
        .arg("--kubeconfig")
        .arg(env.kubeconfig()))?;
    let status_line = installed
        .lines()
        .find(|l| l.starts_with("STATUS"))
        .unwrap_or("STATUS: deployed");
    show.say(format!("helm: {status_line}"));

    // No kubelet runs pods here: the operator and the sidecars run as local processes, with tokens
    // of the chart's ServiceAccounts (the sidecars' bound to their Pod objects), as in a pod.
    let dir = std::env::temp_dir().join(format!("leadership-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let operator_config = token_config(&ns, "leadership", None, &dir).await?;
    let _operator = units::operator(&ns, "operator-0", &operator_config);
    show.say("started leadership-operator with the chart's operator ServiceAccount");
    let mut sidecars: Vec<Option<Sidecar>> = Vec::new();
    for unit in UNITS {
        sidecars.push(Some(start_sidecar(&ns, unit, &dir).await?));
    }
    show.say(format!(
        "started 3 sidecars of application {APP:?} ({}), claim duration {CLAIM} (lease 4 s)",
        UNITS.join(", ")
    ));

    let spans: Spans = Arc::new(Mutex::new(vec![Vec::new(); UNITS.len()]));
    let sockets: Vec<PathBuf> = sidecars.iter().flatten().map(|s| s.socket.clone()).collect();
    let recorder = tokio::spawn(record(sockets, spans.clone(), show.started));

    let first = wait_leader(&sidecars, None, Duration::from_secs(30)).await?;
    show.mark(format!("{} elected", UNITS[first]));
    show.say(format!(
        "{} leads. kubectl get leadershipleases -n {NAMESPACE}:",
        UNITS[first]
    ));
    print!("{}", indent(&kubectl_get()?));
    sleep(Duration::from_secs(3)).await;

    show.say(format!(
        "SIGTERM to {} (a graceful stop: it releases the lease)",
        UNITS[first]
    ));
    let stopped_at = Instant::now();
    show.mark(format!("SIGTERM {}", UNITS[first]));
    if let Some(sidecar) = sidecars[first].as_ref() {
        sidecar.signal(Signal::SIGTERM);
    }
    let second = wait_leader(&sidecars, Some(first), Duration::from_secs(30)).await?;
    let handover = stopped_at.elapsed();
    show.say(format!(
        "{} took over {:.0} ms after the SIGTERM: no waiting for the lease to run out",
        UNITS[second],
        handover.as_secs_f64() * 1000.0
    ));
    sleep(Duration::from_secs(1)).await;
    show.say(format!(
        "{} comes back (as a restarted pod would) and stands by",
        UNITS[first]
    ));
    sidecars[first] = Some(start_sidecar(&ns, UNITS[first], &dir).await?);
    sleep(Duration::from_secs(3)).await;

    show.say(format!(
        "SIGKILL to {} (a crash: nobody releases the lease)",
        UNITS[second]
    ));
    let killed_at = Instant::now();
    show.mark(format!("SIGKILL {}", UNITS[second]));
    if let Some(mut sidecar) = sidecars[second].take() {
        sidecar.signal(Signal::SIGKILL);
        let _ = sidecar.process.exit_code().await;
    }
    let third = wait_leader(&sidecars, Some(second), Duration::from_secs(30)).await?;
    let failover = killed_at.elapsed();
    show.say(format!(
        "{} took over {:.1} s after the crash: the 4 s lease, timed from the last renewal, plus the margin",
        UNITS[third],
        failover.as_secs_f64()
    ));
    sleep(Duration::from_secs(2)).await;
    show.say(format!("kubectl get leadershipleases -n {NAMESPACE}:"));
    print!("{}", indent(&kubectl_get()?));
    let cli = testenv::binary("kubectl-leadership");
    show.say(format!("kubectl leadership status {APP} -n {NAMESPACE}:"));
    print!(
        "{}",
        indent(&run(Command::new(cli)
            .arg("--kubeconfig")
            .arg(env.kubeconfig())
            .args(["status", APP, "-n", NAMESPACE]))?)
    );

    recorder.abort();
    print_timeline(show, &spans);
    println!(
        "\n  graceful handover (SIGTERM): {:>7.0} ms\n  crash failover (SIGKILL):    {:>7.0} ms  (lease 4000 ms + margin)\n",
        handover.as_secs_f64() * 1000.0,
        failover.as_secs_f64() * 1000.0
    );
    drop(sidecars);
    let _ = run(Command::new(&helm)
        .args(["uninstall", "leadership", "--namespace", NAMESPACE])
        .arg("--kubeconfig")
        .arg(env.kubeconfig()));
    Ok(())
}

async fn start_sidecar(ns: &TestNamespace, unit: &str, dir: &std::path::Path) -> anyhow::Result<Sidecar> {
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = ns.api();
    let pod = match pods.get_opt(unit).await? {
        Some(pod) => pod,
        None => units::pod_as(ns, unit, Some("leadership-sidecar")).await,
    };
    let uid = pod.metadata.uid.context("the pod has a uid")?;
    let config = token_config(ns, "leadership-sidecar", Some((unit, &uid)), dir).await?;
    Ok(Sidecar::start_with(ns, APP, unit, &config, CLAIM, &[]).await)
}

/// Waits until a sidecar other than `except` leads; its index.
async fn wait_leader(
    sidecars: &[Option<Sidecar>],
    except: Option<usize>,
    within: Duration,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + within;
    loop {
        for (i, sidecar) in sidecars.iter().enumerate() {
            if Some(i) != except
                && let Some(sidecar) = sidecar
                && sidecar.status().await.is_some_and(|s| s.leader)
            {
                return Ok(i);
            }
        }
        if Instant::now() >= deadline {
            bail!("no leader within {within:?}");
        }
        sleep(Duration::from_millis(10)).await;
    }
}

/// Asks every sidecar every 20 ms whether it leads, and records the spans.
async fn record(sockets: Vec<PathBuf>, spans: Spans, started: Instant) {
    let clients: Vec<_> = sockets
        .iter()
        .map(leadership::client::SocketClient::new)
        .collect();
    loop {
        for (i, client) in clients.iter().enumerate() {
            let leader = client.status().await.is_ok_and(|s| s.leader);
            let now = started.elapsed();
            let mut spans = spans.lock().unwrap_or_else(|p| p.into_inner());
            let open = spans[i].last().is_some_and(|(_, end)| end.is_none());
            match (leader, open) {
                (true, false) => spans[i].push((now, None)),
                (false, true) => {
                    if let Some(last) = spans[i].last_mut() {
                        last.1 = Some(now);
                    }
                }
                _ => {}
            }
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Draws who led when: one row per unit, a column per slice of time, and the events below.
fn print_timeline(show: &Show, spans: &Spans) {
    let spans = spans.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(begin) = spans.iter().flatten().map(|(start, _)| *start).min() else {
        return;
    };
    let end = show.started.elapsed();
    let width = 64usize;
    let total = (end - begin).as_secs_f64().max(1.0);
    let column =
        |t: Duration| (((t.saturating_sub(begin)).as_secs_f64() / total) * width as f64).round() as usize;
    println!(
        "\n  Who led when ({:.1} s, one column = {:.0} ms; polled every 20 ms)\n",
        total,
        total * 1000.0 / width as f64
    );
    for (unit, unit_spans) in UNITS.iter().zip(&spans) {
        let mut row = vec![' '; width + 1];
        for (start, stop) in unit_spans {
            let (a, b) = (column(*start), column(stop.unwrap_or(end)));
            for cell in row.iter_mut().take(b.max(a + 1).min(width + 1)).skip(a) {
                *cell = '█';
            }
        }
        println!("  {unit:>6} |{}|", row.into_iter().collect::<String>());
    }
    for (at, text) in &show.marks {
        println!("  {:>6}  {}^ {text}", "", " ".repeat(column(*at)));
    }
}
