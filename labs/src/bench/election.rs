//! Leader election, measured the same way for every candidate: three processes per application,
//! graceful handovers (SIGTERM of the leader) and crashes (SIGKILL), each timed from the signal to
//! another process's "I lead" log line; and the API cost in steady state. Candidates are measured
//! group by group: each at its defaults, then all tuned to the same crash failover.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::{api::coordination::v1::Lease, jiff::Timestamp};
use kube::Api;
use leadership_kube::crd::LeadershipLease;
use nix::sys::signal::{Signal, kill};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Child,
    sync::mpsc,
    time::{Instant, sleep, timeout},
};

use super::{
    Bench,
    candidates::{Candidate, Group, Kind},
    report::{CandidateReport, Report},
    stats::Summary,
    system::request_counts,
};

/// Our first candidate's processes, still running after its election was measured.
pub(super) struct Ours {
    /// The three sidecars, by index.
    pub members: Vec<Child>,
    /// Their namespace.
    pub namespace: String,
    /// The index of the one that leads.
    pub leader: usize,
}

/// An event: member `index` said it leads, at this instant.
type Elected = (usize, Instant);

impl Bench {
    /// Measures every candidate's leader election into `report`, group by group. Peers are
    /// stopped when measured; the processes of our last candidate are returned still running,
    /// with its namespace and the leader's index. Ours kept from an earlier group are stopped
    /// before the next of ours starts: they write to the same resource, which is measured.
    pub(super) async fn candidates(&self, report: &mut Report) -> anyhow::Result<Ours> {
        let mut ours: Option<Ours> = None;
        for group in Group::measured(self.plan.quick) {
            for candidate in self.measured(group) {
                let namespace = candidate.namespace("election");
                let is_ours = matches!(candidate.kind, Kind::Ours { .. });
                if is_ours && let Some(earlier) = ours.take() {
                    for mut member in earlier.members {
                        stop(&mut member).await;
                    }
                }
                let (result, members, leader) = self.election(&candidate, &namespace).await?;
                if is_ours {
                    ours = Some(Ours {
                        members,
                        namespace,
                        leader,
                    });
                } else {
                    for mut member in members {
                        stop(&mut member).await;
                    }
                }
                report.candidates.insert(candidate.name.clone(), result);
                self.save(report)?;
            }
        }
        ours.context("our candidate was not measured")
    }

    /// Starts member `index`; its "I lead" lines go to `events`.
    pub(super) fn spawn(
        &self,
        candidate: &Candidate,
        namespace: &str,
        app: &str,
        index: usize,
        events: &mpsc::UnboundedSender<Elected>,
    ) -> anyhow::Result<Child> {
        let unit = format!("{app}-{index}");
        let mut child = candidate
            .command(&self.bins, &self.kubeconfig, &self.logs, namespace, app, &unit)
            .spawn()
            .with_context(|| format!("start {}", candidate.name))?;
        let marker = candidate.leader_marker();
        let log = self.logs.join(format!("{namespace}-{unit}.log"));
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
    pub(super) async fn election(
        &self,
        candidate: &Candidate,
        namespace: &str,
    ) -> anyhow::Result<(CandidateReport, Vec<Child>, usize)> {
        self.namespace(namespace).await?;
        // Our sidecars leave expiry to the operator (their default): crash failover includes its
        // lag, as in a real installation. Its own lease is in the same namespace; it runs through
        // the handovers and crashes.
        let operator = match candidate.kind {
            Kind::Ours { .. } => Some(self.spawn_operator(namespace, namespace, "operator-0")?),
            _ => None,
        };
        let app = "app";
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut members = Vec::new();
        for i in 0..3 {
            members.push(self.spawn(candidate, namespace, app, i, &tx)?);
        }
        let mut leader = next_leader(&mut rx, None, Duration::from_secs(60))
            .await
            .context("no first leader")?;
        self.say(format!("{}: 3 processes, {} leads", candidate.name, leader));
        let mut handovers = Vec::new();
        // Leases over 5 s get a third of the handover rounds and half the crash rounds: some
        // candidates wait a whole lease in each.
        let long = candidate.lease > Duration::from_secs(5);
        let rounds = if long {
            self.plan.handovers.div_ceil(3)
        } else {
            self.plan.handovers
        };
        for round in 0..rounds {
            drain(&mut rx);
            let stopped = Instant::now();
            signal(&members[leader], Signal::SIGTERM);
            let (next, at) = next_leader_at(&mut rx, Some(leader), Duration::from_secs(120))
                .await
                .context("no leader after a handover")?;
            handovers.push(at.saturating_duration_since(stopped).as_secs_f64() * 1000.0);
            stop(&mut members[leader]).await;
            members[leader] = self.spawn(candidate, namespace, app, leader, &tx)?;
            leader = next;
            if round % 10 == 9 {
                self.say(format!("{}: {} graceful handovers", candidate.name, round + 1));
            }
            sleep(Duration::from_millis(500)).await;
        }
        let (mut crashes, mut overheads) = (Vec::new(), Vec::new());
        let rounds = if long {
            self.plan.crashes.div_ceil(2)
        } else {
            self.plan.crashes
        };
        for round in 0..rounds {
            // Let the new members settle, so that the leader has renewed at least once; then kill
            // at a point of the renewal cycle that moves from round to round (spread evenly over
            // a lease length), so that the samples span the cycle instead of hitting one phase.
            let phase = (round as f64 * 0.618_034).fract();
            sleep(candidate.lease / 2 + Duration::from_secs(1) + candidate.lease.mul_f64(phase)).await;
            drain(&mut rx);
            let killed = Instant::now();
            signal(&members[leader], Signal::SIGKILL);
            // The dead leader's last renewal, read before anyone can take over (a lease runs
            // for seconds after it).
            let renewed = self.renew_time(candidate, namespace, app).await;
            let (next, at) = next_leader_at(
                &mut rx,
                Some(leader),
                candidate.lease * 4 + Duration::from_secs(60),
            )
            .await
            .context("no leader after a crash")?;
            let failover = at.saturating_duration_since(killed).as_secs_f64() * 1000.0;
            crashes.push(failover);
            let overhead = renewed.map(|renewed| {
                let took_over = Timestamp::now() - Instant::now().saturating_duration_since(at);
                let ran_out = renewed + candidate.runs_out_after();
                took_over.duration_since(ran_out).as_secs_f64() * 1000.0
            });
            overheads.extend(overhead);
            stop(&mut members[leader]).await;
            members[leader] = self.spawn(candidate, namespace, app, leader, &tx)?;
            leader = next;
            self.say(format!(
                "{}: crash {} of {rounds}: new leader after {failover:.0} ms (lease {:?}; {} ms after it ran out)",
                candidate.name,
                round + 1,
                candidate.lease,
                overhead.map_or("?".into(), |o| format!("{o:.0}")),
            ));
        }
        // The steady state is measured without our operator: at rest it writes nothing to the
        // application's lease, and its own lease is a cost per cluster, not per application (the
        // operator part measures both).
        if let Some(mut operator) = operator {
            stop(&mut operator).await;
        }
        sleep(Duration::from_secs(3)).await;
        let (requests, writes) = self.api_cost(candidate).await?;
        self.say(format!(
            "{}: steady state: {requests:.1} requests, {writes:.1} writes per minute",
            candidate.name
        ));
        let mut report = CandidateReport {
            description: candidate.description.clone(),
            family: candidate.family.into(),
            group: candidate.group.name(),
            lease_ms: u64::try_from(candidate.lease.as_millis()).unwrap_or(u64::MAX),
            handover_ms: Summary::of(&handovers),
            crash_failover_ms: Summary::of(&crashes),
            crash_overhead_ms: Summary::of(&overheads),
            api_requests_per_leader_min: Some(requests),
            api_writes_per_leader_min: Some(writes),
            ..CandidateReport::default()
        };
        report.samples.insert("handover_ms".into(), handovers);
        report.samples.insert("crash_failover_ms".into(), crashes);
        report.samples.insert("crash_overhead_ms".into(), overheads);
        Ok((report, members, leader))
    }

    /// The renewal time `candidate`'s holder last wrote to the lease of `app` (every candidate's
    /// processes run on this machine: one clock). `None` if it cannot be read.
    async fn renew_time(&self, candidate: &Candidate, namespace: &str, app: &str) -> Option<Timestamp> {
        let stamp = match candidate.kind {
            Kind::Ours { .. } => {
                Api::<LeadershipLease>::namespaced(self.client.clone(), namespace)
                    .get(app)
                    .await
                    .ok()?
                    .status?
                    .renew_time?
            }
            _ => {
                Api::<Lease>::namespaced(self.client.clone(), namespace)
                    .get(app)
                    .await
                    .ok()?
                    .spec?
                    .renew_time?
            }
        };
        Some(stamp.0)
    }

    /// Requests and writes per minute to `candidate`'s lease resource over the plan's window,
    /// from the API server's own counters, less what the control plane itself does to it.
    async fn api_cost(&self, candidate: &Candidate) -> anyhow::Result<(f64, f64)> {
        let resource = candidate.resource();
        let (requests, writes) = self.request_rates(resource).await?;
        let baseline = if resource == "leases" {
            self.lease_baseline
        } else {
            (0.0, 0.0)
        };
        Ok(((requests - baseline.0).max(0.0), (writes - baseline.1).max(0.0)))
    }

    /// Requests and writes per minute to `resource` over the plan's window, from the API
    /// server's own counters.
    pub(super) async fn request_rates(&self, resource: &str) -> anyhow::Result<(f64, f64)> {
        let before = request_counts(&self.client, &[Some(resource)]).await?[0];
        sleep(self.plan.window).await;
        let after = request_counts(&self.client, &[Some(resource)]).await?[0];
        let minutes = self.plan.window.as_secs_f64() / 60.0;
        Ok(((after.0 - before.0) / minutes, (after.1 - before.1) / minutes))
    }
}

/// Sends `signal` to `child`, if it still runs.
pub(super) fn signal(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Stops a process gracefully (SIGTERM), or with SIGKILL after 10 s.
pub(super) async fn stop(child: &mut Child) {
    stop_within(child, Duration::from_secs(10)).await;
}

/// Stops a process gracefully (SIGTERM), or with SIGKILL after `within`.
pub(super) async fn stop_within(child: &mut Child, within: Duration) {
    signal(child, Signal::SIGTERM);
    if timeout(within, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Forgets the leader events so far.
fn drain(events: &mut mpsc::UnboundedReceiver<Elected>) {
    while events.try_recv().is_ok() {}
}

/// The next member other than `except` to say it leads, and when, within `within`.
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

/// The next member other than `except` to say it leads, within `within`.
pub(super) async fn next_leader(
    events: &mut mpsc::UnboundedReceiver<Elected>,
    except: Option<usize>,
    within: Duration,
) -> Option<usize> {
    next_leader_at(events, except, within)
        .await
        .map(|(index, _)| index)
}
