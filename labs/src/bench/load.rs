//! The load generators: for each family at its defaults, many applications of three units each,
//! all in one process (ours: `load-trackers`; client-go electors in one Go process;
//! kube-lease-manager in one Rust process), measured from the API server's own counters and from
//! `/proc` (kube-apiserver, etcd, the generator, our operator).

use std::{collections::BTreeMap, path::Path, process::Stdio, time::Duration};

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, api::ListParams};
use leadership_kube::crd::LeadershipLease;
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    process::Child,
    time::{Instant, sleep},
};

use super::{
    Bench,
    candidates::{self, Candidate, Group, Kind},
    election::{stop, stop_within},
    report::LoadReport,
    report::OURS,
    system::{CpuMeter, apiserver_heap_mib, process_rss_mib, request_counts},
    tally::{Reading, TALLY_PREFIX},
};

/// Units per application in every load generator.
const UNITS: usize = 3;

impl Bench {
    /// Every family's load generator at its defaults, one after the other, at each of the plan's
    /// sizes (smallest first), keyed by [`LoadReport::key`]; in a full run, ours also at the crash
    /// failover of kube-lease-manager's defaults (reported as `leadership (failover-Ns)`).
    pub(super) async fn load(&self) -> anyhow::Result<BTreeMap<String, LoadReport>> {
        let mut all = BTreeMap::new();
        // The idle API server's live heap, before any load: what each load's heap is compared
        // with (a reading taken between two loads may still count the last one's objects).
        let idle_heap = apiserver_heap_mib(&self.client).await.ok();
        let mut runs: Vec<(Candidate, String)> = self
            .measured(Group::Defaults)
            .into_iter()
            .map(|c| {
                let label = c.family.to_owned();
                (c, label)
            })
            .collect();
        let lease_manager = runs
            .iter()
            .find(|(c, _)| matches!(c.kind, Kind::LeaseManager { .. }));
        if let Some((peer, _)) = lease_manager.filter(|_| !self.plan.quick) {
            let ours = candidates::ours_at_failover_of(peer);
            let label = format!("{OURS} ({})", ours.group.name());
            runs.push((ours, label));
        }
        for &apps in &self.plan.load_apps {
            for (candidate, label) in &runs {
                let report = self
                    .load_one(candidate, label, apps, idle_heap)
                    .await
                    .unwrap_or_else(|err| {
                        self.say(format!("load: {label}: not measured: {err:#}"));
                        LoadReport {
                            family: label.clone(),
                            description: candidate.description.clone(),
                            apps,
                            units: apps * UNITS,
                            notes: vec![format!("not measured: {err:#}")],
                            ..LoadReport::default()
                        }
                    });
                all.insert(report.key(), report);
            }
        }
        Ok(all)
    }

    /// The holders of the applications' leases in `namespace`, by application.
    pub(super) async fn holders(
        &self,
        candidate: &Candidate,
        namespace: &str,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let list = ListParams::default();
        // The applications' leases only (our operator keeps its own lease in the namespace too).
        let named = |name: Option<String>, holder: Option<String>| {
            Some((
                name.filter(|n| n.starts_with("app"))?,
                holder.filter(|h| !h.is_empty())?,
            ))
        };
        Ok(match candidate.kind {
            Kind::Ours { .. } => Api::<LeadershipLease>::namespaced(self.client.clone(), namespace)
                .list(&list)
                .await?
                .into_iter()
                .filter_map(|l| named(l.metadata.name, l.status.and_then(|s| s.holder)))
                .collect(),
            _ => Api::<Lease>::namespaced(self.client.clone(), namespace)
                .list(&list)
                .await?
                .into_iter()
                .filter_map(|l| named(l.metadata.name, l.spec.and_then(|s| s.holder_identity)))
                .collect(),
        })
    }

    /// Waits until each of `apps` applications in `namespace` has a leader (at most 2 minutes in a
    /// quick run, 10 in a full one): the seconds from `started`, or `None` if they never all did.
    /// Fails if the load generator ends.
    pub(super) async fn until_all_lead(
        &self,
        candidate: &Candidate,
        namespace: &str,
        apps: usize,
        generator: &mut Child,
        started: Instant,
    ) -> anyhow::Result<Option<f64>> {
        let limit = if self.plan.quick { 120 } else { 600 };
        let mut last_said = Instant::now();
        while started.elapsed() < Duration::from_secs(limit) {
            anyhow::ensure!(
                generator.try_wait()?.is_none(),
                "the load generator of {} ended; see its log",
                candidate.family
            );
            let leading = self.holders(candidate, namespace).await?.len();
            if leading >= apps {
                return Ok(Some(started.elapsed().as_secs_f64()));
            }
            if last_said.elapsed() > Duration::from_secs(30) {
                self.say(format!(
                    "load: {}: {leading} of {apps} applications have a leader after {:.0} s",
                    candidate.family,
                    started.elapsed().as_secs_f64()
                ));
                last_said = Instant::now();
            }
            sleep(Duration::from_secs(2)).await;
        }
        Ok(None)
    }

    /// Asks the load generator for its tally (SIGUSR1) and reads it from its log.
    pub(super) async fn tally(&self, generator: &Child, log: &Path) -> anyhow::Result<Reading> {
        let count = |text: &str| text.matches(TALLY_PREFIX).count();
        let before = count(&std::fs::read_to_string(log)?);
        let pid = generator.id().context("the load generator ended")?;
        nix::sys::signal::kill(Pid::from_raw(i32::try_from(pid)?), Signal::SIGUSR1)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(log)?;
            if count(&text) > before {
                return Reading::last_in(&text).context("an unreadable tally");
            }
            anyhow::ensure!(Instant::now() < deadline, "the load generator printed no tally");
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// One family's load generator: started, every application given a leader, then measured
    /// over the plan's window, then stopped (every unit releases) and its namespace deleted.
    async fn load_one(
        &self,
        candidate: &Candidate,
        label: &str,
        apps: usize,
        idle_heap: Option<f64>,
    ) -> anyhow::Result<LoadReport> {
        let namespace = candidate.namespace(&format!("load-{apps}"));
        self.namespace(&namespace).await?;
        let units = UNITS;
        let mut operator = match candidate.kind {
            Kind::Ours { .. } => Some(self.spawn_operator(&namespace, &namespace, "operator-0")?),
            _ => None,
        };
        let log_path = self.logs.join(format!("{namespace}-generator.log"));
        let log = std::fs::File::create(&log_path)?;
        let started = Instant::now();
        let mut generator = candidate
            .load_command(&self.bins, &self.kubeconfig, &namespace, apps, units)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("start the load generator of {}", candidate.family))?;
        self.say(format!(
            "load: {label}: {apps} applications × {units} units in one process (started; waiting until all lead)"
        ));
        let all_leading = self
            .until_all_lead(candidate, &namespace, apps, &mut generator, started)
            .await?;
        // Past the first renewals, then the window.
        sleep(candidate.lease / 2).await;
        let resource = candidate.resource();
        let before_holders = self.holders(candidate, &namespace).await?;
        // Ours count their elections and renewals: the start-up's, then the window's.
        let ours = matches!(candidate.kind, Kind::Ours { .. });
        let startup = if ours {
            Some(self.tally(&generator, &log_path).await?)
        } else {
            None
        };
        let before = request_counts(&self.client, &[None, Some(resource)]).await?;
        let (all_before, lease_before) = (before[0], before[1]);
        let pid = |name: &str| self.components.get(name).copied();
        let meter = CpuMeter::start(&[pid("kube-apiserver"), pid("etcd"), generator.id()]);
        sleep(self.plan.window).await;
        let cpu = meter.percent();
        let after = request_counts(&self.client, &[None, Some(resource)]).await?;
        let (all_after, lease_after) = (after[0], after[1]);
        let during = if ours {
            Some(self.tally(&generator, &log_path).await?)
        } else {
            None
        };
        let after_holders = self.holders(candidate, &namespace).await?;
        let seconds = self.plan.window.as_secs_f64();
        let heap_during = apiserver_heap_mib(&self.client).await.ok();
        let report = LoadReport {
            family: label.to_owned(),
            description: format!("{} ({} units)", candidate.description, apps * units),
            apps,
            units: apps * units,
            all_leading_s: all_leading,
            leading: after_holders.len(),
            holder_changes: after_holders
                .iter()
                .filter(|(app, holder)| before_holders.get(*app) != Some(holder))
                .count(),
            requests_per_s: (all_after.0 - all_before.0) / seconds,
            lease_requests_per_s: (lease_after.0 - lease_before.0) / seconds,
            lease_writes_per_s: (lease_after.1 - lease_before.1) / seconds,
            apiserver_cpu_percent: cpu[0],
            apiserver_rss_mib: process_rss_mib(pid("kube-apiserver")),
            apiserver_heap_mib: heap_during,
            apiserver_heap_idle_mib: idle_heap,
            etcd_cpu_percent: cpu[1],
            etcd_rss_mib: process_rss_mib(pid("etcd")),
            generator_cpu_percent: cpu[2],
            generator_rss_mib: process_rss_mib(generator.id()),
            operator_rss_mib: operator.as_ref().and_then(|o| process_rss_mib(o.id())),
            startup_elections: startup.map(|r| r.elected),
            leaderships_lost: during.as_ref().map(|r| r.deposed),
            renewal_ms: during.and_then(|r| r.renewal_ms),
            notes: Vec::new(),
        };
        self.say(format!(
            "load: {label} at {apps} × {units}: all leading after {:?} s; {:.1} requests/s ({:.1} to {resource}, {:.1} writes/s); apiserver {:.0}% etcd {:.0}% of a core, live heap {:?} MiB (idle {:?}); {} holder changes; ours: {:?} elections while starting, {:?} leaderships lost, renewal ms {:?}",
            report.all_leading_s,
            report.requests_per_s,
            report.lease_requests_per_s,
            report.lease_writes_per_s,
            report.apiserver_cpu_percent.unwrap_or_default(),
            report.etcd_cpu_percent.unwrap_or_default(),
            report.apiserver_heap_mib,
            report.apiserver_heap_idle_mib,
            report.holder_changes,
            report.startup_elections,
            report.leaderships_lost,
            report.renewal_ms,
        ));
        stop_within(&mut generator, Duration::from_secs(60)).await;
        if let Some(operator) = operator.as_mut() {
            stop(operator).await;
        }
        self.delete_namespace(&namespace).await;
        Ok(report)
    }
}
