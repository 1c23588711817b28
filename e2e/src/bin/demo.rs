//! `e2e/demo`: the quick start's live demo, in real pods. It starts a control plane with a node
//! (kubelet, containerd, kube-proxy), `helm install`s the chart with the example application (three
//! pods, each with the sidecar as a native sidecar) from the images built here, shows `kubectl get
//! leadershipleases` and `kubectl get pods -L leadership.dev/leader`, asks a pod's app container
//! with `curl --unix-socket`, applies the documented one-annotation Deployment (the webhook adds
//! its sidecars), then deletes the leader's pod (a graceful handover through the
//! kubelet's real termination order), hangs the next leader's sidecar past its lease (a failover by
//! expiry) and kills a leader's containers (the kubelet restarts them). All along it polls every
//! sidecar and the leader Service's ClusterIP, draws the timeline, and cleans up.

use std::{
    collections::BTreeMap,
    process::{Command, ExitCode},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Pod, Service},
};
use kube::{Api, api::DeleteParams};
use leadership_e2e::{
    chart::{registry_args, registry_chart, registry_image},
    controlplane::{ControlPlane, StartOptions},
    node::NodeOptions,
    pods::{self, AdminClient},
    testenv::{self, TestNamespace},
    tools::Tools,
};
use tokio::time::{Instant, sleep};

const NAMESPACE: &str = "demo";
/// The example application's name and its pods (the release is called `leadership`).
const APP: &str = "leadership-example";
const UNITS: [&str; 3] = [
    "leadership-example-0",
    "leadership-example-1",
    "leadership-example-2",
];
/// The demo's claim duration and lease length: the shortest lease for it (2d, 4 s instead of the
/// default 4d), so a failover by expiry is quick to watch.
const CLAIM: &str = "2s";
/// The demo's lease length (see [`CLAIM`]).
const LEASE: &str = "4s";
/// The example app's image (busybox and curl), as `e2e/push` put it into the node's registry.
const APP_IMAGE: &str = "example-app:1.0";
const INJECTED_DEPLOYMENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/examples/injected-deployment.yaml"
);

/// What the pollers saw, in time since the demo's clock started: each unit's spans of
/// leadership, and which unit answered each request to the leader Service.
#[derive(Default)]
struct Seen {
    spans: Vec<Vec<(Duration, Option<Duration>)>>,
    service: Vec<(Duration, Option<usize>)>,
}

type Shared = Arc<Mutex<Seen>>;

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
    let images =
        std::env::var_os("LEADERSHIP_IMAGES").context("LEADERSHIP_IMAGES is not set: run e2e/demo")?;
    show.say("starting a cluster: etcd, kube-apiserver, kube-controller-manager, and a node (containerd, kubelet, kube-proxy, kube-scheduler)");
    let node = NodeOptions::new(images)?;
    let mut plane = ControlPlane::start(
        &tools,
        StartOptions {
            node: Some(node),
            ..StartOptions::owned_by_this_process()
        },
    )
    .await?;
    testenv::use_node_cluster(plane.kubeconfig(), tools);
    let result = scenes(show).await;
    show.say("cleaning up: helm uninstall, then the node (containers, mounts, rules) and the control plane");
    plane.stop();
    result
}

fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    run(testenv::node().kubectl().args(args))
}

/// Says `kubectl ARGS:` and shows what it prints.
fn show_kubectl(show: &Show, args: &[&str]) -> anyhow::Result<()> {
    show.say(format!("kubectl {}:", args.join(" ")));
    print!("{}", indent(&kubectl(args)?));
    Ok(())
}

async fn scenes(show: &mut Show) -> anyhow::Result<()> {
    let env = testenv::node();
    let ns = env.namespace_named(NAMESPACE).await;
    let chart = registry_chart();
    let from_registry = registry_args();
    show.say(format!("helm install leadership {chart} {} --set example.enabled=true --set example.namespace=demo --wait (the chart and images e2e/push put into the node's registry: CRD, operator, webhook, RBAC, admission policy, a 3-pod example; its namespace gets the sidecar's account)", from_registry.join(" ")));
    let helm = env.tools().path("helm");
    let claim = format!("sidecar.claimDuration={CLAIM},sidecar.leaseLength={LEASE}");
    let app_image = registry_image(APP_IMAGE);
    let image = format!("example.image={app_image}");
    let installed = run(Command::new(&helm)
        .args(["install", "leadership", &chart, "--namespace", NAMESPACE])
        .args(&from_registry)
        .args(["--set", "example.enabled=true", "--set", &image, "--set", &claim])
        // The example, and the documented Deployment below, in the demo's one namespace.
        .args(["--set", &format!("example.namespace={NAMESPACE}")])
        .args(["--wait", "--timeout", "5m"])
        .arg("--kubeconfig")
        .arg(env.kubeconfig()))?;
    let status_line = installed
        .lines()
        .find(|l| l.starts_with("STATUS"))
        .unwrap_or("STATUS: deployed");
    show.say(format!(
        "helm: {status_line}; every pod runs an image built by e2e/images, pulled by the kubelet from the registry"
    ));

    let (first, term) = wait_leader(&ns, APP, 0).await?;
    show.mark(format!("{} elected", short(&first)));
    show_kubectl(
        show,
        &["get", "pods", "-n", NAMESPACE, "-L", "leadership.dev/leader"],
    )?;
    show_kubectl(show, &["get", "leadershipleases", "-n", NAMESPACE])?;
    let minion = UNITS.iter().find(|u| **u != first).copied().unwrap_or(UNITS[0]);
    show.say(format!(
        "kubectl exec {minion} -c app -- curl --unix-socket $LEADERSHIP_SOCKET http://localhost/v1/status   (the app runs as uid 1000)"
    ));
    let status = kubectl(&[
        "exec",
        "-n",
        NAMESPACE,
        minion,
        "-c",
        "app",
        "--",
        "sh",
        "-c",
        r#"curl -s --unix-socket "$LEADERSHIP_SOCKET" http://localhost/v1/status"#,
    ])?;
    print!("{}", indent(&status));

    // One annotation: the documented Deployment gets the sidecar from the operator's webhook.
    show.say("kubectl apply -f docs/examples/injected-deployment.yaml (one annotation: leadership.dev/application: web)");
    let manifest = std::fs::read_to_string(INJECTED_DEPLOYMENT)
        .context("read docs/examples/injected-deployment.yaml")?
        .replace("curlimages/curl:8.10.1", &app_image);
    let manifest_path = std::env::temp_dir().join(format!("leadership-demo-{}.yaml", std::process::id()));
    std::fs::write(&manifest_path, manifest)?;
    let path = manifest_path.display().to_string();
    let applied = kubectl(&["apply", "-n", NAMESPACE, "-f", &path]);
    let _ = std::fs::remove_file(&manifest_path);
    print!("{}", indent(&applied?));
    wait_leader(&ns, "web", 0).await?;
    show_kubectl(
        show,
        &[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            "app=web",
            "-o",
            "custom-columns=NAME:.metadata.name,READY:.status.containerStatuses[0].ready,INJECTED:.spec.initContainers[0].name,IMAGE:.spec.initContainers[0].image",
        ],
    )?;
    show_kubectl(show, &["get", "leadershipleases", "web", "-n", NAMESPACE])?;
    kubectl(&["delete", "deployment", "web", "-n", NAMESPACE, "--wait=false"])?;

    let services: Api<Service> = ns.api();
    let ip = services
        .get(&format!("{APP}-leader"))
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .context("the leader Service's ClusterIP")?;
    show.say(format!(
        "polling every sidecar and the Service {APP}-leader ({ip}, through kube-proxy) every 20 ms"
    ));
    let seen: Shared = Arc::new(Mutex::new(Seen {
        spans: vec![Vec::new(); UNITS.len()],
        service: Vec::new(),
    }));
    let poller = tokio::spawn(poll(ns.api(), ip, seen.clone(), show.started));
    sleep(Duration::from_secs(3)).await;

    // A graceful stop: the operator sees the Pod terminating and asks its sidecar to hand over at
    // once, to the standby a rollout would reach last.
    show.say(format!(
        "kubectl delete pod {first} (the operator sees it terminating and asks its sidecar to hand over at once)"
    ));
    let pods: Api<Pod> = ns.api();
    show.mark(format!("delete pod {}", short(&first)));
    let deleted_at = Instant::now();
    pods.delete(&first, &DeleteParams::default()).await?;
    let (second, term) = wait_leader(&ns, APP, term).await?;
    let handover = deleted_at.elapsed();
    show.say(format!(
        "{second} took over {:.0} ms after the delete: no waiting for the lease to run out; the StatefulSet brings {first} back as a standby",
        handover.as_secs_f64() * 1000.0
    ));
    sleep(Duration::from_secs(4)).await;

    // A hang: the leader's sidecar stops answering and renewing (SIGSTOP) past its lease.
    let sidecar = [container(&pods, &second, "leadership").await?];
    show.say(format!(
        "SIGSTOP to {second}'s sidecar (a hung process: it renews no more)"
    ));
    show.mark(format!("SIGSTOP {}", short(&second)));
    // Timed from the signal's delivery (the container's process is looked up first).
    pods::signal_containers(&ns, &sidecar, "STOP").map_err(anyhow::Error::msg)?;
    let hung_at = Instant::now();
    let (third, term) = wait_leader(&ns, APP, term).await?;
    let failover = hung_at.elapsed();
    show.say(format!(
        "{third} took over {:.1} s after the hang: the 4 s lease ran out, timed from its last renewal (before the hang), plus the margin",
        failover.as_secs_f64()
    ));
    pods::signal_containers(&ns, &sidecar, "CONT").map_err(anyhow::Error::msg)?;
    show.say(format!(
        "SIGCONT to {second}'s sidecar: it had stepped down when its guarantee ran out, and stands by"
    ));
    sleep(Duration::from_secs(3)).await;

    // A crash: both containers of the leader's pod are killed; the kubelet restarts them.
    let both = [
        container(&pods, &third, "app").await?,
        container(&pods, &third, "leadership").await?,
    ];
    show.say(format!(
        "SIGKILL to every container of {third} (a crash; the kubelet will restart them)"
    ));
    show.mark(format!("SIGKILL {}", short(&third)));
    pods::signal_containers(&ns, &both, "KILL").map_err(anyhow::Error::msg)?;
    let crashed_at = Instant::now();
    let (after_crash, term) = wait_leader(&ns, APP, term).await?;
    let back = crashed_at.elapsed();
    // Why the crashed unit's claim ended: the last transition to no holder.
    let leases: Api<leadership_kube::crd::LeadershipLease> = ns.api();
    let ended = leases
        .get(APP)
        .await?
        .status
        .map(|s| s.history)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .find(|t| t.holder.is_none())
        .map_or_else(|| "Released".to_owned(), |t| t.reason);
    let why = match ended.as_str() {
        "PodGone" => format!(
            "the kubelet reported every container of {third} terminated, so the operator released its lease (PodGone) before the kubelet restarted them"
        ),
        "Expired" => "its lease ran out".to_owned(),
        other => format!("its claim ended ({other})"),
    };
    show.say(format!(
        "{after_crash} leads {:.1} s after the crash: {why}",
        back.as_secs_f64()
    ));
    sleep(Duration::from_secs(3)).await;

    // The app fails while its sidecar runs on: leadership follows the app, not the sidecar.
    show.say(format!(
        "kubectl exec {after_crash} -c app -- kill 1 (the leader's app exits and the kubelet restarts it; its sidecar runs on)"
    ));
    show.mark(format!("app of {} exits", short(&after_crash)));
    kubectl(&[
        "exec",
        "-n",
        NAMESPACE,
        &after_crash,
        "-c",
        "app",
        "--",
        "kill",
        "1",
    ])?;
    let failed_at = Instant::now();
    let (healthy, term) = wait_leader(&ns, APP, term).await?;
    let followed = failed_at.elapsed();
    show.say(format!(
        "{healthy} leads {:.1} s after {after_crash}'s app exited: an app that restarted within 30 s is unhealthy, and after a 5 s grace the operator asked {after_crash} to hand over to a standby whose app is healthy",
        followed.as_secs_f64()
    ));
    sleep(Duration::from_secs(3)).await;

    // A rolling restart: it replaces the highest ordinal first; leadership moves to a Pod the
    // rollout has already replaced where one exists, so it moves once (twice when the leader is
    // the first Pod replaced).
    show.say(format!(
        "kubectl rollout restart statefulset {APP} (it replaces unit 2, then 1, then 0; {healthy} leads)"
    ));
    show.mark("rollout restart");
    let sets: Api<StatefulSet> = ns.api();
    let rolling = Instant::now();
    pods::roll_statefulset(&sets, APP, 3, Duration::from_secs(300)).await?;
    let (after_rollout, rolled_term) = wait_leader(&ns, APP, 0).await?;
    let grants = rolled_term - term;
    show.say(format!(
        "rollout done in {:.1} s: {grants} grant(s) with {healthy} leading at its start (at most 2 when the leader is the first Pod replaced, otherwise 1); {after_rollout} leads",
        rolling.elapsed().as_secs_f64()
    ));
    sleep(Duration::from_secs(3)).await;
    show_kubectl(show, &["get", "leadershipleases", "-n", NAMESPACE, "-o", "wide"])?;
    show_kubectl(
        show,
        &["get", "pods", "-n", NAMESPACE, "-L", "leadership.dev/leader"],
    )?;

    poller.abort();
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    print_timeline(show, &seen);
    println!(
        "\n  graceful handover (kubectl delete pod): {:>7.0} ms\n  failover after a hang (SIGSTOP):        {:>7.0} ms  (lease 4000 ms from the last renewal + margin)\n  failover after a crash (SIGKILL):       {:>7.0} ms  (the claim ended: {ended})\n  handover after the app failed:          {:>7.0} ms  (5 s grace + one handover)\n  grants in a rolling restart:            {:>7}     (leader at its start: {})\n",
        handover.as_secs_f64() * 1000.0,
        failover.as_secs_f64() * 1000.0,
        back.as_secs_f64() * 1000.0,
        followed.as_secs_f64() * 1000.0,
        grants,
        short(&healthy),
    );
    drop(seen);
    let _ = run(Command::new(&helm)
        .args(["uninstall", "leadership", "--namespace", NAMESPACE, "--wait"])
        .arg("--kubeconfig")
        .arg(env.kubeconfig()));
    Ok(())
}

/// `leadership-example-1` as `web-1` would be too long for the timeline's captions: the ordinal.
fn short(unit: &str) -> String {
    format!("unit {}", unit.rsplit('-').next().unwrap_or(unit))
}

/// Waits until `application`'s lease has a holder in a term after `after` (0: any holder); the
/// holder and its term.
async fn wait_leader(ns: &TestNamespace, application: &str, after: i64) -> anyhow::Result<(String, i64)> {
    let leases: Api<leadership_kube::crd::LeadershipLease> = ns.api();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = leases
            .get_opt(application)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.status)
            && status.term > after
            && let Some(holder) = status.holder
        {
            return Ok((holder, status.term));
        }
        if Instant::now() >= deadline {
            bail!("no new leader of {application} within 120 s");
        }
        sleep(Duration::from_millis(10)).await;
    }
}

/// The id of the running `container` of `pod`.
async fn container(pods: &Api<Pod>, pod: &str, container: &str) -> anyhow::Result<String> {
    let object = pods.get(pod).await?;
    pods::container_id(&object, container)
        .with_context(|| format!("{pod} has no running {container} container"))
}

/// Every 20 ms: asks each unit's sidecar (its admin port, at the pod's address) whether it leads,
/// and which unit the leader Service's ClusterIP answers from.
async fn poll(pods: Api<Pod>, service_ip: String, seen: Shared, started: Instant) {
    let http = AdminClient::new(Duration::from_millis(300));
    let mut addresses: BTreeMap<usize, String> = BTreeMap::new();
    let mut refreshed = None::<Instant>;
    loop {
        if refreshed.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
            if let Ok(list) = pods.list(&Default::default()).await {
                addresses = list
                    .items
                    .iter()
                    .filter_map(|p| {
                        let unit = UNITS
                            .iter()
                            .position(|u| Some(*u) == p.metadata.name.as_deref())?;
                        Some((unit, pods::admin_address(p)?))
                    })
                    .collect();
            }
            refreshed = Some(Instant::now());
        }
        for unit in 0..UNITS.len() {
            let leads = match addresses.get(&unit) {
                Some(address) => http.unit(address).await.is_some_and(|m| m.1),
                None => false,
            };
            let now = started.elapsed();
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            let spans = &mut seen.spans[unit];
            let open = spans.last().is_some_and(|(_, end)| end.is_none());
            match (leads, open) {
                (true, false) => spans.push((now, None)),
                (false, true) => {
                    if let Some(last) = spans.last_mut() {
                        last.1 = Some(now);
                    }
                }
                _ => {}
            }
        }
        let answer = http
            .unit(&format!("{service_ip}:80"))
            .await
            .and_then(|m| UNITS.iter().position(|u| *u == m.0));
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .service
            .push((started.elapsed(), answer));
        sleep(Duration::from_millis(20)).await;
    }
}

/// Draws who led when (one row per unit), which unit the Service answered from, and the events.
fn print_timeline(show: &Show, seen: &Seen) {
    let Some(begin) = seen.spans.iter().flatten().map(|(start, _)| *start).min() else {
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
    for (unit, spans) in UNITS.iter().zip(&seen.spans) {
        let mut row = vec![' '; width + 1];
        for (start, stop) in spans {
            let (a, b) = (column(*start), column(stop.unwrap_or(end)));
            for cell in row.iter_mut().take(b.max(a + 1).min(width + 1)).skip(a) {
                *cell = '█';
            }
        }
        println!("  {:>7} |{}|", short(unit), row.into_iter().collect::<String>());
    }
    // The Service row: the ordinal of the unit that answered, '·' where nothing answered.
    let mut row = vec![' '; width + 1];
    for (at, answer) in &seen.service {
        if *at < begin {
            continue;
        }
        let cell = &mut row[column(*at).min(width)];
        *cell = match answer {
            Some(unit) => char::from_digit(*unit as u32, 10).unwrap_or('?'),
            None if *cell == ' ' => '·',
            None => *cell,
        };
    }
    println!("  {:>7} |{}|", "Service", row.into_iter().collect::<String>());
    for (at, text) in &show.marks {
        println!("  {:>7}  {}^ {text}", "", " ".repeat(column(*at)));
    }
}
