//! Our own figures, with no peer to compare: the footprint at rest, handovers to a named unit
//! (the leaderless gap from the sidecars' records), and the operator in steady state and with
//! many leases whose holders are gone.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
    runtime::watcher,
};
use leadership::{client::SocketClient, wire::monotonic_ns};
use leadership_e2e::units::free_loopback_port;
use leadership_kube::{
    KubeStore, Scope,
    crd::{LeadershipLease, reason},
};
use tokio::{
    process::{Child, Command},
    time::{Instant, sleep},
};
use tokio_util::sync::CancellationToken;

use super::{
    Bench, candidates,
    churn::{churn_pods, index_settles, operator_gauge},
    election::{Ours, stop},
    report::{OwnReport, ScaleReport},
    stats::Summary,
    system::{cpu_percent, process_rss_mib},
};
use crate::chaos::{history, read_records};

impl Bench {
    /// Our own figures, with our three sidecars still running (`leader` leads): the sidecar's
    /// footprint, handovers to a named unit, the operator in steady state and at scale.
    pub(super) async fn ours(&self, ours: Ours) -> anyhow::Result<OwnReport> {
        let Ours {
            members,
            namespace,
            leader,
        } = ours;
        let mut own = OwnReport::default();
        let leader_pid = members[leader].id();
        own.sidecar_rss_mib = process_rss_mib(leader_pid);
        own.sidecar_cpu_percent = cpu_percent(leader_pid, self.rest()).await;
        let (gaps, requests) = self.handovers_to_a_unit(&namespace, leader).await?;
        self.say(format!(
            "handover to a named unit: gap p50 {:.1} ms p99 {:.1} ms; request to new leader p50 {:.1} ms",
            gaps.as_ref().map_or(0.0, |s| s.p50),
            gaps.as_ref().map_or(0.0, |s| s.p99),
            requests.as_ref().map_or(0.0, |s| s.p50)
        ));
        own.handover_gap_ms = gaps;
        own.handover_request_ms = requests;
        self.operator_at_rest(&namespace, &mut own).await?;
        drop(members);
        Ok(own)
    }

    /// The operator with each of the plan's lease counts.
    pub(super) async fn operator_at_scale(&self) -> BTreeMap<String, ScaleReport> {
        let mut all = BTreeMap::new();
        for count in self.plan.lease_counts.clone() {
            let scale = match self.operator_with(count).await {
                Ok(scale) => scale,
                Err(err) => {
                    self.say(format!("operator with {count} leases: not measured: {err:#}"));
                    continue;
                }
            };
            self.say(format!(
                "operator with {count} leases: {:.1} MiB, expiry lag {:?}, not cleared {}; a watch event's delivery {:?}",
                scale.operator_rss_mib, scale.expiry_lag_ms, scale.not_cleared, scale.watch_delay_ms
            ));
            all.insert(count.to_string(), scale);
        }
        all
    }

    /// How long to measure a process at rest.
    fn rest(&self) -> Duration {
        self.plan.window.min(Duration::from_secs(30))
    }

    /// The operator's writes in steady state: all lease writes with it running, minus those
    /// without it, minus the renewals of its own lease (counted on the lease itself); and its
    /// footprint at rest.
    async fn operator_at_rest(&self, namespace: &str, own: &mut OwnReport) -> anyhow::Result<()> {
        let (_, writes_without) = self.request_rates("leadershipleases").await?;
        let home = "bench-operator-home";
        self.namespace(home).await?;
        let mut operator = self.spawn_operator(namespace, home, "operator-0")?;
        sleep(Duration::from_secs(5)).await;
        let own_lease: Api<LeadershipLease> = Api::namespaced(self.client.clone(), home);
        let renewals = |lease: Option<LeadershipLease>| {
            lease
                .and_then(|l| l.status)
                .map_or(0.0, |s| s.renewals as f64 + s.term as f64)
        };
        let before = renewals(own_lease.get_opt("leadership-operator").await?);
        let (_, writes_with) = self.request_rates("leadershipleases").await?;
        let after = renewals(own_lease.get_opt("leadership-operator").await?);
        let own_writes = (after - before) / (self.plan.window.as_secs_f64() / 60.0);
        own.operator_writes_per_min = Some((writes_with - writes_without - own_writes).max(0.0));
        own.operator_rss_mib = process_rss_mib(operator.id());
        own.operator_cpu_percent = cpu_percent(operator.id(), self.rest()).await;
        stop(&mut operator).await;
        self.say(format!(
            "operator steady state: {:?} writes/min to application leases",
            own.operator_writes_per_min
        ));
        Ok(())
    }

    /// Hands our application over to the next unit, `plan.handovers` times (the sidecars started
    /// by [`Self::election`] still run): the leaderless gaps, from the sidecars' records, and the
    /// time from each request to the target's first "leader", in ms.
    async fn handovers_to_a_unit(
        &self,
        namespace: &str,
        mut leader: usize,
    ) -> anyhow::Result<(Option<Summary>, Option<Summary>)> {
        let store = KubeStore::new(self.client.clone(), Scope::Namespace(namespace.to_owned()));
        let socket = |i: usize| candidates::socket(&self.logs, namespace, &format!("app-{i}"));
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
        let records: Vec<PathBuf> = (0..3)
            .map(|i| candidates::record(&self.logs, namespace, &format!("app-{i}")))
            .collect();
        let lines = read_records(&records)?;
        let intervals = history::intervals(&lines, &BTreeMap::new())?;
        let gaps: Vec<f64> = history::leaderless(&intervals, from, to)
            .iter()
            .map(|(start, end)| (end - start) as f64 / 1e6)
            .collect();
        Ok((Summary::of(&gaps), Summary::of(&requests)))
    }

    /// Starts the operator watching `namespace`, its own lease in `home`.
    pub(super) fn spawn_operator(
        &self,
        namespace: &str,
        home: &str,
        identity: &str,
    ) -> anyhow::Result<Child> {
        self.spawn_operator_on(namespace, home, identity, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Like [`Bench::spawn_operator`], with its admin port (probes, `/metrics`) at `admin`.
    fn spawn_operator_on(
        &self,
        namespace: &str,
        home: &str,
        identity: &str,
        admin: SocketAddr,
    ) -> anyhow::Result<Child> {
        let log = std::fs::File::create(self.logs.join(format!("{namespace}-{identity}.log")))?;
        Ok(Command::new(&self.bins.operator)
            .args([
                "--watch-namespace",
                namespace,
                "--namespace",
                home,
                "--identity",
                identity,
                "--admin-address",
                &admin.to_string(),
            ])
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?)
    }

    /// The operator with `count` leases whose holders never renew, while pods of their
    /// applications come and go: its memory, how late it clears each claim after it is due, and
    /// whether its pod index forgets the pods once they are gone.
    async fn operator_with(&self, count: usize) -> anyhow::Result<ScaleReport> {
        let namespace = format!("bench-scale-{count}");
        self.namespace(&namespace).await?;
        let admin = SocketAddr::from(([127, 0, 0, 1], free_loopback_port()));
        let mut operator = self.spawn_operator_on(&namespace, &namespace, "operator-0", admin)?;
        let api: Api<LeadershipLease> = Api::namespaced(self.client.clone(), &namespace);
        // Watch from the start for claims (to time a watch event's delivery) and cleared claims.
        let cleared: Arc<std::sync::Mutex<BTreeMap<String, Instant>>> = Arc::default();
        let claimed: Arc<std::sync::Mutex<BTreeMap<String, Instant>>> = Arc::default();
        let watch = {
            let (api, cleared, claimed) = (api.clone(), cleared.clone(), claimed.clone());
            tokio::spawn(async move {
                use futures::StreamExt;
                let mut events = watcher(api, watcher::Config::default()).boxed();
                while let Some(Ok(event)) = events.next().await {
                    let (watcher::Event::Apply(object) | watcher::Event::InitApply(object)) = event else {
                        continue;
                    };
                    let (Some(name), Some(status)) = (object.metadata.name, object.status) else {
                        continue;
                    };
                    let seen = if status.history.iter().any(|t| t.reason == reason::EXPIRED) {
                        &cleared
                    } else if status.holder.is_some() {
                        &claimed
                    } else {
                        continue;
                    };
                    seen.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
            })
        };
        // First every lease, then every claim, paced: the claims run out as they were written,
        // EXPIRIES_PER_S a second whatever the count (as a node's loss ends its units' claims
        // over one renewal interval), without the creation storm on top. Their lease outlasts
        // the writing of them all.
        let names: Vec<String> = (0..count).map(|i| format!("l{i}")).collect();
        let created = Instant::now();
        for_each_lease(&names, None, |name| {
            let (api, namespace) = (api.clone(), namespace.clone());
            async move {
                api.create(&PostParams::default(), &LeadershipLease::empty(&namespace, &name))
                    .await?;
                anyhow::Ok(())
            }
        })
        .await?;
        let pacing = Duration::from_secs_f64(count as f64 / EXPIRIES_PER_S);
        // Room for the writes to fall behind their pace on a busy machine.
        let lease = pacing * 2 + Duration::from_secs(2);
        self.say(format!(
            "operator at scale: {count} leases created in {:.1} s; claims of {lease:?} next, {EXPIRIES_PER_S}/s",
            created.elapsed().as_secs_f64()
        ));
        let margin = leadership::expiry::ExpiryPolicy::default().margin(lease);
        let written: Arc<std::sync::Mutex<BTreeMap<String, Instant>>> = Arc::default();
        let stop_churn = CancellationToken::new();
        let churn = tokio::spawn(churn_pods(
            Api::namespaced(self.client.clone(), &namespace),
            names.clone(),
            stop_churn.clone(),
        ));
        let claiming = Instant::now();
        for_each_lease(&names, Some(EXPIRIES_PER_S), |name| {
            let (api, written) = (api.clone(), written.clone());
            async move {
                let at = write_dead_claim(&api, &name, lease).await?;
                written.lock().unwrap_or_else(|p| p.into_inner()).insert(name, at);
                anyhow::Ok(())
            }
        })
        .await?;
        let claimed_in = claiming.elapsed();
        if claimed_in >= lease {
            bail!("writing {count} claims took {claimed_in:?}, longer than their lease {lease:?}");
        }
        self.say(format!(
            "operator at scale: {count} dead claims written in {:.1} s ({:.0}/s): their expiries come as fast",
            claimed_in.as_secs_f64(),
            count as f64 / claimed_in.as_secs_f64().max(0.001)
        ));
        let limit = Instant::now() + Duration::from_secs(if self.plan.quick { 60 } else { 600 });
        while cleared.lock().unwrap_or_else(|p| p.into_inner()).len() < count && Instant::now() < limit {
            sleep(Duration::from_millis(200)).await;
        }
        watch.abort();
        let indexed_during = operator_gauge(admin, "pods_indexed").await?;
        stop_churn.cancel();
        let churned = churn.await.context("the pod churn")??;
        let indexed_after = index_settles(admin, 0.0, Duration::from_secs(30)).await?;
        self.say(format!(
            "operator at scale: {churned} pods churned meanwhile; its pod index held {indexed_during} during the churn and {indexed_after} once they were gone"
        ));
        let rss = process_rss_mib(operator.id()).unwrap_or(0.0);
        stop(&mut operator).await;
        let cleared = cleared.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let lag = |from: &BTreeMap<String, Instant>, to: &BTreeMap<String, Instant>| -> Vec<f64> {
            from.iter()
                .filter_map(|(name, from)| {
                    to.get(name).map(|at| {
                        (at.duration_since(*from).as_secs_f64() - from.duration_since(*at).as_secs_f64())
                            * 1000.0
                    })
                })
                .collect()
        };
        let claimed = claimed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let written = written.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Each claim was due its lease and the observers' margin after its write returned.
        let due: BTreeMap<String, Instant> = written
            .iter()
            .map(|(name, at)| (name.clone(), *at + lease + margin))
            .collect();
        let lags = lag(&due, &cleared);
        let watch_delay = Summary::of(&lag(&written, &claimed));
        Ok(ScaleReport {
            watch_delay_ms: watch_delay,
            operator_rss_mib: rss,
            expiry_lag_ms: Summary::of(&lags),
            not_cleared: count - lags.len(),
            expiries_per_s: Some(count as f64 / claimed_in.as_secs_f64().max(0.001)),
            pods_churned: Some(churned),
            pods_indexed_during: Some(indexed_during),
            pods_indexed_after: Some(indexed_after),
        })
    }
}

/// How many claims a second run out in the operator's scale measurement.
const EXPIRIES_PER_S: f64 = 100.0;

/// Runs `write` for every name: 16 at a time, or started `rate` a second; an error of any is the
/// result.
async fn for_each_lease<F, Fut>(names: &[String], rate: Option<f64>, write: F) -> anyhow::Result<()>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    use futures::StreamExt;
    let start = Instant::now();
    let writes = names.iter().enumerate().map(|(i, name)| {
        let write = write(name.clone());
        async move {
            if let Some(rate) = rate {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
            }
            write.await
        }
    });
    futures::stream::iter(writes)
        .buffer_unordered(if rate.is_some() { 256 } else { 16 })
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Writes a claim by a unit that never renews (as a dead unit's last write would leave it) to
/// the lease `name`; returns when the write returned.
async fn write_dead_claim(
    api: &Api<LeadershipLease>,
    name: &str,
    lease: Duration,
) -> anyhow::Result<Instant> {
    // A merge patch: one request, whatever the operator wrote in between (its conditions).
    let claim = serde_json::json!({ "status": {
        "holder": "dead-unit",
        "term": 1,
        "renewals": 0,
        "leaseDurationMs": i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
    } });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&claim))
        .await?;
    Ok(Instant::now())
}
