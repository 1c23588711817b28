//! Renewals under a flood: our units (`load-trackers`, with a token of the ServiceAccount the
//! chart gives the sidecars, and the chart's sidecar Role) lead their applications while other
//! tenants' ServiceAccounts, in another namespace, flood the API server with lists until the
//! `workload-low` priority level they share with the units by default is full. Measured twice in
//! one run: without the chart's API Priority and Fairness objects, then with them (rendered from
//! the chart by `helm template`), for renewals, their latency, and leaderships lost. The operator runs with the admin's credentials,
//! which API Priority and Fairness exempts: what is measured is the units' own traffic.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use k8s_openapi::{
    api::{
        core::v1::{ConfigMap, ServiceAccount},
        flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration},
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use leadership_e2e::{chart, testenv, tools::Tools};
use leadership_kube::crd::LeadershipLease;
use tokio::{
    process::Child,
    time::{Instant, sleep},
};
use tokio_util::sync::CancellationToken;

use super::{
    Bench,
    candidates::{self, Candidate, Group, Kind},
    election::{stop, stop_within},
    report::{FloodReport, FloodRun, LevelLoad},
    system::{apiserver_metrics, metric_sum},
};

/// The namespace of the units.
const UNITS_NAMESPACE: &str = "bench-flood-units";
/// The namespace of the flooding tenants.
const NOISE_NAMESPACE: &str = "bench-flood-noise";
/// The units' ServiceAccount: the one the chart gives the sidecars (set explicitly when the chart
/// is rendered, so that its Role, RoleBinding and flow schema name this account).
const UNIT_ACCOUNT: &str = "leadership-sidecar";
/// The release name the chart's objects are rendered with.
const RELEASE: &str = "leadership";
/// The priority level every ServiceAccount's requests land in by default.
const WORKLOAD_LOW: &str = "workload-low";
/// ConfigMaps the flood lists, and the bytes of data in each: a list is a few hundred KiB.
const NOISE_OBJECTS: usize = 200;
const NOISE_BYTES: usize = 2048;
/// How long the units' and the tenants' tokens last: longer than the part.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Requests in flight on one connection of a flooding tenant (the API server allows 100 streams).
const STREAMS_PER_CONNECTION: usize = 100;

/// How hard the flood pushes.
#[derive(Clone, Copy, Debug)]
pub struct FloodPlan {
    /// Applications of three units each.
    pub apps: usize,
    /// Flooding tenants (ServiceAccounts): API Priority and Fairness gives each a flow of its own.
    pub tenants: usize,
    /// Requests each tenant keeps in flight.
    pub in_flight_per_tenant: usize,
}

impl Bench {
    /// The units' renewals without and with the chart's flow-control objects, under the same flood.
    pub(super) async fn flood(&self) -> anyhow::Result<FloodReport> {
        let plan = self.plan.flood;
        let candidate = candidates::candidates(Group::Defaults)
            .into_iter()
            .find(|c| matches!(c.kind, Kind::Ours { .. }))
            .context("our candidate")?;
        self.namespace(UNITS_NAMESPACE).await?;
        self.namespace(NOISE_NAMESPACE).await?;
        let result = self.flood_in_namespaces(&candidate, plan).await;
        self.delete_namespace(UNITS_NAMESPACE).await;
        self.delete_namespace(NOISE_NAMESPACE).await;
        result
    }

    async fn flood_in_namespaces(
        &self,
        candidate: &Candidate,
        plan: FloodPlan,
    ) -> anyhow::Result<FloodReport> {
        let units_kubeconfig = self.logs.join("flood-units.kubeconfig");
        self.chart_sidecar_account(&units_kubeconfig).await?;
        let units_client = leadership_kube::client::client(kubeconfig_of(&units_kubeconfig).await?)?;
        let mut operator = self.spawn_operator(UNITS_NAMESPACE, UNITS_NAMESPACE, "operator-0")?;
        let log_path = self.logs.join(format!("{UNITS_NAMESPACE}-generator.log"));
        let log = std::fs::File::create(&log_path)?;
        let started = Instant::now();
        let mut generator = candidate
            .load_command(&self.bins, &units_kubeconfig, UNITS_NAMESPACE, plan.apps, 3)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("start the load generator")?;
        self.say(format!(
            "flood: {} applications × 3 units as ServiceAccount {UNIT_ACCOUNT} (waiting until all lead)",
            plan.apps
        ));
        let all_leading = self
            .until_all_lead(candidate, UNITS_NAMESPACE, plan.apps, &mut generator, started)
            .await?
            .context("not every application got a leader")?;
        self.say(format!(
            "flood: all lead after {all_leading:.0} s; preparing the tenants"
        ));
        let noise = Noise::prepare(self, plan).await?;
        // Past the first renewals.
        sleep(candidate.lease / 2).await;
        let mut runs = Vec::new();
        for chart_objects in [false, true] {
            let applied = if chart_objects {
                Some(self.apply_flow_control(&units_client).await?)
            } else {
                None
            };
            let level = self.level_name(&level_uid(&units_client).await?).await?;
            let run = self
                .flood_run(&noise, &mut generator, &log_path, chart_objects, level)
                .await;
            if let Some(applied) = applied {
                applied.delete(&self.client).await;
            }
            runs.push(run?);
            if !chart_objects {
                // Let the leases settle before the next run.
                sleep(candidate.lease).await;
            }
        }
        stop_within(&mut generator, Duration::from_secs(60)).await;
        stop(&mut operator).await;
        Ok(FloodReport {
            apps: plan.apps,
            units: plan.apps * 3,
            tenants: plan.tenants,
            in_flight_per_tenant: plan.in_flight_per_tenant,
            window_s: self.plan.window.as_secs_f64(),
            renewal_interval_s: match candidate.kind {
                Kind::Ours { claim } => candidates::our_renewal_interval(claim, candidate.lease),
                _ => candidate.lease,
            }
            .as_secs_f64(),
            runs,
        })
    }

    /// One flood over the plan's window: what the units did meanwhile, and how full `workload-low`
    /// was.
    async fn flood_run(
        &self,
        noise: &Noise,
        generator: &mut Child,
        log: &Path,
        chart_objects: bool,
        units_level: String,
    ) -> anyhow::Result<FloodRun> {
        let terms_before = self.terms().await?;
        self.tally(generator, log).await?;
        let metrics_before = apiserver_metrics(&self.client).await?;
        let flood = noise.start();
        let window = self.plan.window;
        let started = Instant::now();
        let mut samples = Vec::new();
        while started.elapsed() < window {
            sleep(Duration::from_secs(1)).await;
            let text = apiserver_metrics(&self.client).await?;
            samples.push([
                metric_sum(
                    &text,
                    "apiserver_flowcontrol_current_executing_seats",
                    &[&level(WORKLOAD_LOW)],
                ),
                metric_sum(
                    &text,
                    "apiserver_flowcontrol_current_limit_seats",
                    &[&level(WORKLOAD_LOW)],
                ),
                metric_sum(
                    &text,
                    "apiserver_flowcontrol_current_inqueue_requests",
                    &[&level(WORKLOAD_LOW)],
                ),
            ]);
        }
        let reading = self.tally(generator, log).await?;
        let metrics_after = apiserver_metrics(&self.client).await?;
        let (done, refused, failed) = flood.stop().await;
        let seconds = started.elapsed().as_secs_f64();
        let terms_after = self.terms().await?;
        let rejected = |text: &str, name: &str| {
            metric_sum(
                text,
                "apiserver_flowcontrol_rejected_requests_total",
                &[&level(name)],
            )
        };
        let mean = |i: usize| samples.iter().map(|s| s[i]).sum::<f64>() / samples.len().max(1) as f64;
        let run = FloodRun {
            chart_objects,
            units_priority_level: units_level.clone(),
            flood_done_per_s: done as f64 / seconds,
            flood_refused_per_s: refused as f64 / seconds,
            flood_failed: failed,
            workload_low: LevelLoad {
                seats_limit: mean(1),
                seats_in_use_mean: mean(0),
                queued_mean: mean(2),
                rejected_per_s: (rejected(&metrics_after, WORKLOAD_LOW)
                    - rejected(&metrics_before, WORKLOAD_LOW))
                    / seconds,
            },
            units_rejected: (rejected(&metrics_after, &units_level) - rejected(&metrics_before, &units_level))
                .round() as u64,
            renewed: reading.renewed,
            renewal_ms: reading.renewal_ms,
            leaderships_lost: reading.deposed,
            new_terms: terms_after.saturating_sub(terms_before),
        };
        self.say(format!(
            "flood {} the chart's objects (units in {}): flood {:.0} done/s, {:.0} refused/s; workload-low {:.0} of {:.0} seats busy, {:.0} queued, {:.0} rejected/s; units: {} renewals (p99 {:?} ms), {} leaderships lost, {} new terms",
            if chart_objects { "with" } else { "without" },
            run.units_priority_level,
            run.flood_done_per_s,
            run.flood_refused_per_s,
            run.workload_low.seats_in_use_mean,
            run.workload_low.seats_limit,
            run.workload_low.queued_mean,
            run.workload_low.rejected_per_s,
            run.renewed,
            run.renewal_ms.as_ref().map(|s| s.p99),
            run.leaderships_lost,
            run.new_terms
        ));
        Ok(run)
    }

    /// The sum of the terms of the applications' leases: it grows by one at every new grant.
    async fn terms(&self) -> anyhow::Result<u64> {
        let leases = Api::<LeadershipLease>::namespaced(self.client.clone(), UNITS_NAMESPACE)
            .list(&Default::default())
            .await?;
        Ok(leases
            .into_iter()
            .filter(|l| l.metadata.name.as_deref().is_some_and(|n| n.starts_with("app")))
            .filter_map(|l| l.status.map(|s| u64::try_from(s.term).unwrap_or_default()))
            .sum())
    }

    /// The name of the priority level with `uid`.
    async fn level_name(&self, uid: &str) -> anyhow::Result<String> {
        Api::<PriorityLevelConfiguration>::all(self.client.clone())
            .list(&Default::default())
            .await?
            .into_iter()
            .find(|l| l.metadata.uid.as_deref() == Some(uid))
            .and_then(|l| l.metadata.name)
            .with_context(|| format!("no priority level has the uid {uid}"))
    }

    /// A ServiceAccount `account` in `namespace` allowed `rules` there, and a kubeconfig at `out`
    /// with a token of it.
    async fn account_with_token(
        &self,
        namespace: &str,
        account: &str,
        rules: &[PolicyRule],
        out: &Path,
    ) -> anyhow::Result<()> {
        let meta = |name: &str| ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        };
        let params = PostParams::default();
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        accounts
            .create(
                &params,
                &ServiceAccount {
                    metadata: meta(account),
                    ..ServiceAccount::default()
                },
            )
            .await?;
        Api::<Role>::namespaced(self.client.clone(), namespace)
            .create(
                &params,
                &Role {
                    metadata: meta(account),
                    rules: Some(rules.to_vec()),
                },
            )
            .await?;
        Api::<RoleBinding>::namespaced(self.client.clone(), namespace)
            .create(
                &params,
                &RoleBinding {
                    metadata: meta(account),
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "Role".into(),
                        name: account.into(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".into(),
                        name: account.into(),
                        namespace: Some(namespace.into()),
                        ..Subject::default()
                    }]),
                },
            )
            .await?;
        let token = testenv::request_token(&accounts, account, None, TOKEN_LIFETIME).await?;
        testenv::token_kubeconfig(&self.kubeconfig, &token, out)?;
        Ok(())
    }

    /// The chart's `templates` (`templates/NAME.yaml`), rendered by `helm template` for a release
    /// whose sidecars run in the units' namespace as [`UNIT_ACCOUNT`].
    fn render_chart(&self, templates: &[&str]) -> anyhow::Result<Vec<serde_yaml::Value>> {
        let tools = Tools::locate()?;
        let namespaces = format!("sidecar.namespaces={{{UNITS_NAMESPACE}}}");
        let account = format!("sidecar.serviceAccountName={UNIT_ACCOUNT}");
        let mut args = vec!["template", RELEASE, chart::CHART, "--namespace", UNITS_NAMESPACE];
        for template in templates {
            args.extend(["--show-only", template]);
        }
        args.extend(["--set", &namespaces, "--set", &account]);
        let rendered = chart::run_helm(&tools, &self.kubeconfig, &args)?;
        anyhow::ensure!(
            rendered.status.success(),
            "helm template: {}",
            chart::text(&rendered)
        );
        let yaml = String::from_utf8(rendered.stdout)?;
        let mut documents = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&yaml) {
            let value: serde_yaml::Value = serde::Deserialize::deserialize(document)?;
            if !value.is_null() {
                documents.push(value);
            }
        }
        Ok(documents)
    }

    /// The chart's sidecar ServiceAccount, Role and RoleBinding in the units' namespace, and a
    /// kubeconfig at `out` with a token of that account: the units hold what a sidecar holds.
    async fn chart_sidecar_account(&self, out: &Path) -> anyhow::Result<()> {
        let params = PostParams::default();
        for value in self.render_chart(&[
            "templates/sidecar-serviceaccount.yaml",
            "templates/sidecar-role.yaml",
            "templates/sidecar-rolebinding.yaml",
        ])? {
            let client = self.client.clone();
            match value["kind"].as_str() {
                Some("ServiceAccount") => {
                    Api::<ServiceAccount>::namespaced(client, UNITS_NAMESPACE)
                        .create(&params, &serde_yaml::from_value(value)?)
                        .await?;
                }
                Some("Role") => {
                    Api::<Role>::namespaced(client, UNITS_NAMESPACE)
                        .create(&params, &serde_yaml::from_value(value)?)
                        .await?;
                }
                Some("RoleBinding") => {
                    Api::<RoleBinding>::namespaced(client, UNITS_NAMESPACE)
                        .create(&params, &serde_yaml::from_value(value)?)
                        .await?;
                }
                other => anyhow::bail!("the chart rendered an unexpected {other:?} for the sidecar"),
            }
        }
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), UNITS_NAMESPACE);
        let token = testenv::request_token(&accounts, UNIT_ACCOUNT, None, TOKEN_LIFETIME).await?;
        testenv::token_kubeconfig(&self.kubeconfig, &token, out)?;
        Ok(())
    }

    /// Creates the chart's flow-control objects, rendered for a sidecar namespace of the units,
    /// and waits until the API server puts the lease requests of `units_client` in their level.
    async fn apply_flow_control(&self, units_client: &Client) -> anyhow::Result<FlowControl> {
        let mut objects = FlowControl::default();
        for value in self.render_chart(&["templates/flowcontrol.yaml"])? {
            let params = PostParams::default();
            match value["kind"].as_str() {
                Some("PriorityLevelConfiguration") => {
                    let level: PriorityLevelConfiguration = serde_yaml::from_value(value)?;
                    let created = Api::<PriorityLevelConfiguration>::all(self.client.clone())
                        .create(&params, &level)
                        .await?;
                    objects.level = created.metadata.name;
                    objects.level_uid = created.metadata.uid;
                }
                Some("FlowSchema") => {
                    let schema: FlowSchema = serde_yaml::from_value(value)?;
                    let created = Api::<FlowSchema>::all(self.client.clone())
                        .create(&params, &schema)
                        .await?;
                    objects.schema = created.metadata.name;
                }
                _ => {}
            }
        }
        let uid = objects
            .level_uid
            .clone()
            .context("the chart rendered no priority level")?;
        anyhow::ensure!(objects.schema.is_some(), "the chart rendered no flow schema");
        // The API server takes up new flow schemas a moment after they are created.
        let deadline = Instant::now() + Duration::from_secs(30);
        while level_uid(units_client).await? != uid {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the units' requests did not reach the chart's priority level"
            );
            sleep(Duration::from_millis(200)).await;
        }
        Ok(objects)
    }
}

/// The chart's flow-control objects, once created.
#[derive(Default)]
struct FlowControl {
    level: Option<String>,
    level_uid: Option<String>,
    schema: Option<String>,
}

impl FlowControl {
    async fn delete(self, client: &Client) {
        let params = DeleteParams::default();
        if let Some(schema) = &self.schema {
            let _ = Api::<FlowSchema>::all(client.clone())
                .delete(schema, &params)
                .await;
        }
        if let Some(level) = &self.level {
            let _ = Api::<PriorityLevelConfiguration>::all(client.clone())
                .delete(level, &params)
                .await;
        }
    }
}

/// The client configuration of a kubeconfig file.
async fn kubeconfig_of(path: &Path) -> anyhow::Result<kube::Config> {
    let file = kube::config::Kubeconfig::read_from(path)?;
    Ok(kube::Config::from_custom_kubeconfig(file, &Default::default()).await?)
}

/// The `priority_level` label of a metric series.
fn level(name: &str) -> String {
    format!("priority_level=\"{name}\"")
}

/// The uid of the priority level the API server put a lease list by `client` in (it names it in
/// its answer's `X-Kubernetes-PF-PriorityLevel-UID`).
async fn level_uid(client: &Client) -> anyhow::Result<String> {
    let path = format!("/apis/leadership.dev/v1alpha1/namespaces/{UNITS_NAMESPACE}/leadershipleases?limit=1");
    let request = http::Request::get(path).body(Vec::new())?;
    let response = client.send(request.map(Into::into)).await?;
    Ok(response
        .headers()
        .get("x-kubernetes-pf-prioritylevel-uid")
        .and_then(|v| v.to_str().ok())
        .context("no priority level in the API server's answer")?
        .to_owned())
}

/// The flooding tenants: ServiceAccounts in their own namespace that may list its ConfigMaps,
/// each with clients of its own token.
struct Noise {
    /// Per tenant, one client per [`STREAMS_PER_CONNECTION`] requests in flight.
    clients: Vec<Vec<Client>>,
    in_flight_per_tenant: usize,
}

impl Noise {
    async fn prepare(bench: &Bench, plan: FloodPlan) -> anyhow::Result<Noise> {
        let configmaps: Api<ConfigMap> = Api::namespaced(bench.client.clone(), NOISE_NAMESPACE);
        let filler = "x".repeat(NOISE_BYTES);
        for i in 0..NOISE_OBJECTS {
            let object = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(format!("noise-{i}")),
                    ..ObjectMeta::default()
                },
                data: Some([("filler".to_owned(), filler.clone())].into()),
                ..ConfigMap::default()
            };
            configmaps.create(&PostParams::default(), &object).await?;
        }
        let rules = vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["list".into()],
            ..PolicyRule::default()
        }];
        let mut clients = Vec::new();
        for tenant in 0..plan.tenants {
            let account = format!("tenant-{tenant}");
            let kubeconfig: PathBuf = bench.logs.join(format!("flood-{account}.kubeconfig"));
            bench
                .account_with_token(NOISE_NAMESPACE, &account, &rules, &kubeconfig)
                .await?;
            let config = kubeconfig_of(&kubeconfig).await?;
            clients.push(
                (0..plan.in_flight_per_tenant.div_ceil(STREAMS_PER_CONNECTION))
                    .map(|_| leadership_kube::client::client(config.clone()))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(Noise {
            clients,
            in_flight_per_tenant: plan.in_flight_per_tenant,
        })
    }

    /// Starts every tenant's lists, each request sent again as soon as it is answered; after a
    /// refusal, after the pause the API server asks for in `Retry-After` (as client-go does), so
    /// that the flood keeps `workload-low` full without spending the machine on refusals.
    fn start(&self) -> Flood {
        let stop = CancellationToken::new();
        let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let mut tasks = Vec::new();
        for clients in &self.clients {
            for slot in 0..self.in_flight_per_tenant {
                let client = clients[slot / STREAMS_PER_CONNECTION].clone();
                let (stop, counts) = (stop.clone(), counts.clone());
                tasks.push(tokio::spawn(async move {
                    while !stop.is_cancelled() {
                        let (outcome, pause) = tokio::select! {
                            () = stop.cancelled() => return,
                            answered = list_once(&client) => answered,
                        };
                        counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
                        if !pause.is_zero() {
                            tokio::select! {
                                () = stop.cancelled() => return,
                                () = sleep(pause + Duration::from_millis(fastrand::u64(0..100))) => {}
                            }
                        }
                    }
                }));
            }
        }
        Flood { stop, counts, tasks }
    }
}

/// How a flood request ended.
#[derive(Clone, Copy)]
enum Outcome {
    Done = 0,
    Refused = 1,
    Failed = 2,
}

/// One list of the noise ConfigMaps, read to the end: how it ended, and how long to wait before
/// the next one (the API server's `Retry-After` after a refusal).
async fn list_once(client: &Client) -> (Outcome, Duration) {
    let failed = (Outcome::Failed, Duration::from_millis(100));
    let path = format!("/api/v1/namespaces/{NOISE_NAMESPACE}/configmaps");
    let Ok(request) = http::Request::get(path).body(Vec::new()) else {
        return failed;
    };
    let Ok(response) = client.send(request.map(Into::into)).await else {
        return failed;
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1);
    if response.into_body().collect_bytes().await.is_err() {
        return failed;
    }
    match status {
        s if s.is_success() => (Outcome::Done, Duration::ZERO),
        http::StatusCode::TOO_MANY_REQUESTS => (Outcome::Refused, Duration::from_secs(retry_after)),
        _ => failed,
    }
}

/// A flood under way.
struct Flood {
    stop: CancellationToken,
    counts: Arc<[AtomicU64; 3]>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    /// Stops it: (requests answered, refused with 429, failed otherwise).
    async fn stop(self) -> (u64, u64, u64) {
        self.stop.cancel();
        futures::future::join_all(self.tasks).await;
        let [done, refused, failed] = &*self.counts;
        (
            done.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        )
    }
}
