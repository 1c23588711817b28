//! The report (`report.json`): what was measured of each candidate and of ours alone, the ratios
//! between them, and its markdown rendering (`report.md`).

use std::{collections::BTreeMap, fmt::Write as _};

use serde::{Deserialize, Serialize};

use super::stats::Summary;

/// What was measured of one candidate (one leader-election implementation and its settings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CandidateReport {
    /// What it is and how it was configured.
    pub description: String,
    /// The implementation: `leadership`, `client-go`, `kube-lease-manager`.
    pub family: String,
    /// The group it is compared in: `defaults`, `failover-5s`, `failover-15s`.
    pub group: String,
    /// The lease length it ran with, in ms.
    pub lease_ms: u64,
    /// From the leader's graceful stop (SIGTERM) to another process saying it leads.
    pub handover_ms: Option<Summary>,
    /// From SIGKILL of the leader to another process saying it leads.
    pub crash_failover_ms: Option<Summary>,
    /// The same crashes, from the moment the dead leader's lease ran out for the others (its
    /// last renewal time plus [`Candidate::runs_out_after`](super::candidates::Candidate::runs_out_after))
    /// to another process saying it leads: what detection and takeover add to the lease.
    #[serde(default)]
    pub crash_overhead_ms: Option<Summary>,
    /// API requests per leader per minute in steady state (3 processes, one application).
    pub api_requests_per_leader_min: Option<f64>,
    /// API writes (create, update, patch) per leader per minute in steady state.
    pub api_writes_per_leader_min: Option<f64>,
    /// The raw samples, for the plot.
    pub samples: BTreeMap<String, Vec<f64>>,
    /// Why something was not measured, if it was not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Our own figures that have no peer to compare with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnReport {
    /// The operator's API writes per minute in steady state (3 sidecars renewing).
    pub operator_writes_per_min: Option<f64>,
    /// `kubectl leadership handover` to a named unit: the leaderless gap between the old leader's
    /// last "leader" and the new one's first, from the sidecars' records, in ms.
    pub handover_gap_ms: Option<Summary>,
    /// The same handovers: from the request to the target's first "leader", in ms.
    pub handover_request_ms: Option<Summary>,
    /// Sidecar resident memory at rest, in MiB.
    pub sidecar_rss_mib: Option<f64>,
    /// Sidecar CPU at rest, in % of one core.
    pub sidecar_cpu_percent: Option<f64>,
    /// Operator resident memory at rest (its own lease only), in MiB.
    pub operator_rss_mib: Option<f64>,
    /// Operator CPU at rest, in % of one core.
    pub operator_cpu_percent: Option<f64>,
    /// Per lease count: the operator's memory and how late it cleared claims that ran out.
    pub operator_at_scale: BTreeMap<String, ScaleReport>,
}

/// The operator with many leases.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScaleReport {
    /// Operator resident memory once all were cleared, in MiB.
    pub operator_rss_mib: f64,
    /// From when a claim was due to expire (its write + lease + margin) to when it was cleared.
    pub expiry_lag_ms: Option<Summary>,
    /// Leases that were not cleared within the time allowed.
    pub not_cleared: usize,
    /// How fast the claims ran out: as fast as they were written, after every lease was created.
    #[serde(default)]
    pub expiries_per_s: Option<f64>,
    /// From a claim's write returning to this benchmark's own watch showing it: what one watch
    /// event's delivery took, part of every expiry lag twice (the operator starts timing a claim
    /// at its event; the benchmark sees the clear by one).
    #[serde(default)]
    pub watch_delay_ms: Option<Summary>,
    /// Pod objects of the leases' applications created and deleted while the claims ran out.
    #[serde(default)]
    pub pods_churned: Option<usize>,
    /// The pods the operator's index held at the end of the churn (about the churned pods alive
    /// at once).
    #[serde(default)]
    pub pods_indexed_during: Option<f64>,
    /// The pods the operator's index held once every churned pod was deleted (its
    /// `pods_indexed` gauge): 0 when it forgets them all.
    #[serde(default)]
    pub pods_indexed_after: Option<f64>,
}

/// One family's load generator at its defaults: many applications of three units each, all in one
/// process, measured over the plan's window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The implementation: `leadership`, `client-go`, `kube-lease-manager`.
    #[serde(default)]
    pub family: String,
    /// What ran.
    pub description: String,
    /// Applications.
    pub apps: usize,
    /// Units (candidates) in all.
    pub units: usize,
    /// How long it took from the start until every application had a leader, in s.
    pub all_leading_s: Option<f64>,
    /// Applications with a leader at the end of the window.
    pub leading: usize,
    /// Applications whose holder changed during the window (none should).
    pub holder_changes: usize,
    /// API requests per second to every resource (the API server's counters).
    pub requests_per_s: f64,
    /// API requests per second to the candidate's lease resource.
    pub lease_requests_per_s: f64,
    /// API writes per second to the candidate's lease resource.
    pub lease_writes_per_s: f64,
    /// kube-apiserver CPU, in % of one core.
    pub apiserver_cpu_percent: Option<f64>,
    /// kube-apiserver resident memory at the end, in MiB (it keeps what earlier loads grew it to).
    pub apiserver_rss_mib: Option<f64>,
    /// kube-apiserver live Go heap at the end of the window, in MiB.
    #[serde(default)]
    pub apiserver_heap_mib: Option<f64>,
    /// kube-apiserver live Go heap when idle, before the load part started, in MiB.
    #[serde(default)]
    pub apiserver_heap_idle_mib: Option<f64>,
    /// etcd CPU, in % of one core.
    pub etcd_cpu_percent: Option<f64>,
    /// etcd resident memory at the end, in MiB.
    pub etcd_rss_mib: Option<f64>,
    /// The load generator's CPU, in % of one core.
    pub generator_cpu_percent: Option<f64>,
    /// The load generator's resident memory, in MiB.
    pub generator_rss_mib: Option<f64>,
    /// Ours only: our operator's resident memory watching these leases, in MiB.
    pub operator_rss_mib: Option<f64>,
    /// Ours only: units that became leader from the start until the window (ideally one per
    /// application; more means leaderships lost and won again while starting).
    #[serde(default)]
    pub startup_elections: Option<u64>,
    /// Ours only: leaderships that ended during the window (each one spurious: nothing stopped).
    #[serde(default)]
    pub leaderships_lost: Option<u64>,
    /// Ours only: how long the renewals of the window took, in ms.
    #[serde(default)]
    pub renewal_ms: Option<Summary>,
    /// Why it was not measured, if it was not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl LoadReport {
    /// Its key in the report: the family and the number of units.
    pub fn key(&self) -> String {
        format!("{} × {}", self.family, self.units)
    }

    /// What the API server's heap grew by, per unit, in KiB.
    pub fn heap_per_unit_kib(&self) -> Option<f64> {
        let grown = self.apiserver_heap_mib? - self.apiserver_heap_idle_mib?;
        (self.units > 0).then(|| grown * 1024.0 / self.units as f64)
    }

    /// The API server's CPU per 1,000 units, in % of one core.
    pub fn cpu_per_1000_units(&self) -> Option<f64> {
        let cpu = self.apiserver_cpu_percent?;
        (self.units > 0).then(|| cpu * 1000.0 / self.units as f64)
    }
}

/// Our socket's `GET /v1/status` against the floor of the machine (a minimal responder).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SocketReport {
    /// The size of the status reply, which the floor answers too.
    pub response_bytes: usize,
    /// One entry per client count.
    pub runs: Vec<SocketRun>,
}

/// Both servers with the same number of clients.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SocketRun {
    /// Clients, each one keep-alive connection sending one request at a time.
    pub clients: usize,
    /// The floor's latency, in µs.
    pub floor_us: Summary,
    /// Our latency, in µs.
    pub ours_us: Summary,
    /// The floor's requests per second.
    pub floor_rps: f64,
    /// Our requests per second.
    pub ours_rps: f64,
    /// Our p99 over the floor's (the goal: at most 3 with one client).
    pub p99_ratio: f64,
}

impl SocketRun {
    /// The figures of `clients` clients from the two servers' latencies (µs) over `seconds`.
    pub fn of(clients: usize, floor: &[f64], ours: &[f64], seconds: f64) -> anyhow::Result<SocketRun> {
        use anyhow::Context;
        let floor_us = Summary::of(floor).context("no request answered by the floor")?;
        let ours_us = Summary::of(ours).context("no request answered by our sidecar")?;
        Ok(SocketRun {
            clients,
            floor_rps: floor.len() as f64 / seconds,
            ours_rps: ours.len() as f64 / seconds,
            p99_ratio: ours_us.p99 / floor_us.p99,
            floor_us,
            ours_us,
        })
    }
}

/// Our units' renewals while other tenants flood the API server, without and with the chart's
/// flow-control objects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FloodReport {
    /// Applications of three units, as the chart's sidecar ServiceAccount.
    pub apps: usize,
    /// Units in all.
    pub units: usize,
    /// Flooding tenants (ServiceAccounts of another namespace, one flow each).
    pub tenants: usize,
    /// Lists each tenant keeps in flight.
    pub in_flight_per_tenant: usize,
    /// How long each flood lasted, in seconds.
    pub window_s: f64,
    /// How often a leader renews when renewals succeed, in seconds.
    pub renewal_interval_s: f64,
    /// Without the chart's objects, then with them.
    pub runs: Vec<FloodRun>,
}

/// One flood.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FloodRun {
    /// Whether the chart's PriorityLevelConfiguration and FlowSchema were installed.
    pub chart_objects: bool,
    /// The priority level the API server put the units' lease requests in.
    pub units_priority_level: String,
    /// The flood's lists answered per second.
    pub flood_done_per_s: f64,
    /// The flood's lists refused (429) per second.
    pub flood_refused_per_s: f64,
    /// The flood's requests that failed otherwise.
    pub flood_failed: u64,
    /// How full `workload-low` was.
    pub workload_low: LevelLoad,
    /// Requests of the units' priority level that API Priority and Fairness refused.
    pub units_rejected: u64,
    /// Renewals that succeeded during the flood.
    pub renewed: u64,
    /// How long they took, in ms.
    pub renewal_ms: Option<Summary>,
    /// Leaderships that ended during the flood: each one spurious (nothing crashed or stopped).
    pub leaderships_lost: u64,
    /// New grants (terms) during the flood: each one a spurious failover.
    pub new_terms: u64,
}

/// How full a priority level was, sampled every second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LevelLoad {
    /// Its seats (the mean of the samples).
    pub seats_limit: f64,
    /// Seats executing requests, on average.
    pub seats_in_use_mean: f64,
    /// Requests waiting in its queues, on average.
    pub queued_mean: f64,
    /// Requests it refused per second.
    pub rejected_per_s: f64,
}

/// The whole report (`report.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The machine it ran on.
    pub machine: BTreeMap<String, String>,
    /// Versions of everything measured.
    pub versions: BTreeMap<String, String>,
    /// Whether this was a `--quick` run (a harness check, not figures to quote).
    pub quick: bool,
    /// Per candidate, by `family/group`.
    pub candidates: BTreeMap<String, CandidateReport>,
    /// Per family, the load generator at its defaults.
    #[serde(default)]
    pub load: BTreeMap<String, LoadReport>,
    /// Ours alone.
    pub ours: OwnReport,
    /// Our socket against the floor.
    #[serde(default)]
    pub socket: Option<SocketReport>,
    /// Our renewals under a flood, without and with the chart's flow-control objects.
    #[serde(default)]
    pub flood: Option<FloodReport>,
    /// Ratios peer / ours from the same run (higher is better for us).
    pub ratios: BTreeMap<String, f64>,
}

/// A latency summary in ms as `p50 / p99 / max`, or `-` when nothing was measured.
fn p50_p99_max(summary: &Option<Summary>) -> String {
    summary.as_ref().map_or("-".into(), |s| {
        format!("{:.0} / {:.0} / {:.0}", s.p50, s.p99, s.max)
    })
}

/// The name of our candidate in the report.
pub const OURS: &str = "leadership";

impl Report {
    /// Fills `ratios`: for every peer, its figure over ours in the same group (and under the
    /// same load), where both were measured.
    pub fn compute_ratios(&mut self) {
        self.ratios.clear();
        for (name, peer) in &self.candidates {
            let Some(ours) = self
                .candidates
                .values()
                .find(|c| c.family == OURS && c.group == peer.group)
            else {
                continue;
            };
            if peer.family == OURS {
                continue;
            }
            let p = |s: &Option<Summary>, q: fn(&Summary) -> f64| s.as_ref().map(q);
            let pairs = [
                (
                    "handover_p50",
                    p(&peer.handover_ms, |s| s.p50),
                    p(&ours.handover_ms, |s| s.p50),
                ),
                (
                    "handover_p99",
                    p(&peer.handover_ms, |s| s.p99),
                    p(&ours.handover_ms, |s| s.p99),
                ),
                (
                    "crash_failover_p99",
                    p(&peer.crash_failover_ms, |s| s.p99),
                    p(&ours.crash_failover_ms, |s| s.p99),
                ),
                (
                    "writes_per_leader_min",
                    peer.api_writes_per_leader_min,
                    ours.api_writes_per_leader_min,
                ),
                (
                    "requests_per_leader_min",
                    peer.api_requests_per_leader_min,
                    ours.api_requests_per_leader_min,
                ),
            ];
            for (figure, theirs, ours) in pairs {
                if let (Some(theirs), Some(ours)) = (theirs, ours)
                    && ours > 0.0
                {
                    self.ratios
                        .insert(format!("{figure}: {name} / {OURS}/{}", peer.group), theirs / ours);
                }
            }
        }
        for ours in self.load.values().filter(|l| l.family == OURS) {
            // Ours at another failover (`leadership (failover-Ns)`) is not a peer.
            for peer in self
                .load
                .values()
                .filter(|l| !l.family.starts_with(OURS) && l.units == ours.units)
            {
                let family = format!("{} × {}", peer.family, peer.units);
                for (figure, theirs, ours) in [
                    (
                        "load_requests_per_s",
                        Some(peer.requests_per_s),
                        Some(ours.requests_per_s),
                    ),
                    (
                        "load_lease_writes_per_s",
                        Some(peer.lease_writes_per_s),
                        Some(ours.lease_writes_per_s),
                    ),
                    ("load_all_leading_s", peer.all_leading_s, ours.all_leading_s),
                    (
                        "load_apiserver_cpu",
                        peer.apiserver_cpu_percent,
                        ours.apiserver_cpu_percent,
                    ),
                    (
                        "load_apiserver_heap_per_unit",
                        peer.heap_per_unit_kib(),
                        ours.heap_per_unit_kib(),
                    ),
                ] {
                    if let (Some(theirs), Some(ours)) = (theirs, ours)
                        && ours > 0.0
                    {
                        self.ratios
                            .insert(format!("{figure}: {family} / {OURS}"), theirs / ours);
                    }
                }
            }
        }
    }

    /// The report as markdown tables.
    pub fn markdown(&self) -> String {
        let mut out = String::from("# Benchmark report\n\n");
        if self.quick {
            out.push_str(
                "**Quick run**: a few iterations to check the harness; do not quote these figures.\n\n",
            );
        }
        out.push_str("| machine | |\n|---|---|\n");
        for (k, v) in &self.machine {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        out.push_str("\n| versions | |\n|---|---|\n");
        for (k, v) in &self.versions {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        let ms = |s: &Option<Summary>| match s {
            Some(s) => format!("{:.0} / {:.0} / {:.0} (n={})", s.p50, s.p99, s.max, s.n),
            None => "not measured".into(),
        };
        let num = |v: Option<f64>| v.map_or("not measured".into(), |v| format!("{v:.1}"));
        out.push_str("\n## Leader election, side by side\n\n");
        out.push_str("Groups: `defaults` runs every candidate at its documented defaults; `failover-Ns` tunes every candidate so that its worst crash failover is about N s. Latencies in ms as p50 / p99 / max. Handover: SIGTERM of the leader to another process saying it leads. Crash failover: SIGKILL of the leader to another process saying it leads; a lease runs from the leader's last renewal, which came before the kill, so it varies between lease − renewal interval and the lease plus the detection delay. Crash overhead: from the moment the dead leader's lease ran out for the others (the renewal time it last wrote, plus the lease; for ours plus each observer's drift margin of 2% of the lease) to another process saying it leads: what detection and takeover add (for ours: the operator clearing the claim, a standby's watch and grant). API figures: the API server's own request counters for the candidate's resource (`leases` or `leadershipleases`) with three processes, less the control plane's own Lease traffic.\n\n");
        out.push_str("| candidate | lease ms | graceful handover | crash failover | crash overhead | requests / leader / min | writes / leader / min |\n|---|---|---|---|---|---|---|\n");
        let mut names: Vec<&String> = self.candidates.keys().collect();
        names.sort_by_key(|n| {
            (
                self.candidates[*n].group.clone(),
                self.candidates[*n].family != OURS,
                (*n).clone(),
            )
        });
        for name in &names {
            let c = &self.candidates[*name];
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} |",
                c.lease_ms,
                ms(&c.handover_ms),
                ms(&c.crash_failover_ms),
                ms(&c.crash_overhead_ms),
                num(c.api_requests_per_leader_min),
                num(c.api_writes_per_leader_min),
            );
        }
        if !self.load.is_empty() {
            out.push_str("\n## Load: many applications of three units in one process per candidate, at defaults\n\nRates from the API server's own counters over the window; CPU in % of one core; memory resident, in MiB (the API server's resident memory keeps what earlier loads grew it to; its live Go heap, idle before the load part and at the end of each window, does not); per unit: the API server's CPU per 1,000 units and its heap growth per unit, in KiB.\n\n");
            out.push_str("| candidate | applications × units | all leading after | leading / holder changes | requests/s (all) | lease requests/s | lease writes/s | apiserver CPU / MiB | apiserver live heap idle → during (MiB) | per unit: apiserver CPU per 1,000 / heap KiB | etcd CPU / MiB | generator CPU / MiB | our operator MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
            for (family, l) in &self.load {
                let _ = writeln!(
                    out,
                    "| {family} | {} × {} | {} | {} / {} | {:.1} | {:.1} | {:.1} | {} / {} | {} → {} | {} / {} | {} / {} | {} / {} | {} |",
                    l.apps,
                    l.units / l.apps.max(1),
                    l.all_leading_s.map_or("not all".into(), |s| format!("{s:.0} s")),
                    l.leading,
                    l.holder_changes,
                    l.requests_per_s,
                    l.lease_requests_per_s,
                    l.lease_writes_per_s,
                    opt(l.apiserver_cpu_percent),
                    opt(l.apiserver_rss_mib),
                    opt(l.apiserver_heap_idle_mib),
                    opt(l.apiserver_heap_mib),
                    l.cpu_per_1000_units().map_or("-".into(), |v| format!("{v:.1}")),
                    opt(l.heap_per_unit_kib()),
                    opt(l.etcd_cpu_percent),
                    opt(l.etcd_rss_mib),
                    opt(l.generator_cpu_percent),
                    opt(l.generator_rss_mib),
                    opt(l.operator_rss_mib),
                );
            }
            out.push_str("\nOurs count their own elections and renewals (peers do not report them): elections from the start until the window (one per application when no leadership was lost while starting), leaderships lost during the window (each one spurious), and the window's renewal latency in ms.\n\n| ours at | elections while starting | leaderships lost in the window | renewal ms p50 / p99 / max |\n|---|---|---|---|\n");
            for l in self.load.values().filter(|l| l.family.starts_with(OURS)) {
                let _ = writeln!(
                    out,
                    "| {} at {} × {} | {} | {} | {} |",
                    l.family,
                    l.apps,
                    l.units / l.apps.max(1),
                    l.startup_elections.map_or("-".into(), |n| n.to_string()),
                    l.leaderships_lost.map_or("-".into(), |n| n.to_string()),
                    p50_p99_max(&l.renewal_ms),
                );
            }
            out.push_str("\n| candidate | what ran |\n|---|---|\n");
            for (family, l) in &self.load {
                let _ = writeln!(out, "| {family} | {} {} |", l.description, l.notes.join(" "));
            }
        }
        out.push_str("\n| candidate | configuration |\n|---|---|\n");
        for (name, c) in names.iter().map(|n| (*n, &self.candidates[*n])) {
            let mut text = c.description.clone();
            for note in &c.notes {
                let _ = write!(text, " Note: {note}");
            }
            let _ = writeln!(out, "| {name} | {text} |");
        }
        if !self.ratios.is_empty() {
            out.push_str("\n## Ratios (peer / ours, same run; above 1 is better for us)\n\n| figure | ratio |\n|---|---|\n");
            for (k, v) in &self.ratios {
                let _ = writeln!(out, "| {k} | {v:.1}x |");
            }
        }
        let o = &self.ours;
        let ms = |s: &Option<Summary>| match s {
            Some(s) => format!("{:.1} / {:.1} ms (max {:.1}, n={})", s.p50, s.p99, s.max, s.n),
            None => "not measured".into(),
        };
        let rows = [
            (
                "handover to a named unit: leaderless gap, p50 / p99",
                ms(&o.handover_gap_ms),
            ),
            (
                "handover to a named unit: request to new leader, p50 / p99",
                ms(&o.handover_request_ms),
            ),
            (
                "operator API writes / min in steady state",
                num(o.operator_writes_per_min),
            ),
            ("sidecar resident memory at rest (MiB)", num(o.sidecar_rss_mib)),
            ("sidecar CPU at rest (% of a core)", num(o.sidecar_cpu_percent)),
            ("operator resident memory at rest (MiB)", num(o.operator_rss_mib)),
            ("operator CPU at rest (% of a core)", num(o.operator_cpu_percent)),
        ];
        if let Some(socket) = &self.socket {
            let _ = write!(
                out,
                "\n## Socket: `GET /v1/status` against the floor\n\nThe floor is a minimal keep-alive HTTP/1.1 responder on a Unix socket answering the same {} bytes; both asked by the same lean client, in alternating rounds. Latency in µs as p50 / p99 / max.\n\n| clients | floor | ours | floor requests/s | our requests/s | p99 ours / floor |\n|---|---|---|---|---|---|\n",
                socket.response_bytes
            );
            let us = |s: &Summary| format!("{:.1} / {:.1} / {:.0} (n={})", s.p50, s.p99, s.max, s.n);
            for run in &socket.runs {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.0} | {:.0} | {:.2} |",
                    run.clients,
                    us(&run.floor_us),
                    us(&run.ours_us),
                    run.floor_rps,
                    run.ours_rps,
                    run.p99_ratio
                );
            }
        }
        if let Some(flood) = &self.flood {
            let _ = write!(
                out,
                "\n## Renewals under a flood\n\n{} applications × 3 units, as the chart's sidecar ServiceAccount (a leader renews every {:.1} s), while {} tenants (ServiceAccounts of another namespace) each keep {} lists of ConfigMaps in flight for {:.0} s. `workload-low` sampled every second: seats busy of its limit, requests queued, refused per second. A leadership lost or a new term during the flood is spurious: nothing crashed or stopped.\n\n| chart's flow-control objects | units' priority level | flood done / refused per s | workload-low seats busy / limit, queued, refused/s | refused in the units' level | renewals | renewal ms p50 / p99 / max | leaderships lost | new terms |\n|---|---|---|---|---|---|---|---|---|\n",
                flood.apps,
                flood.renewal_interval_s,
                flood.tenants,
                flood.in_flight_per_tenant,
                flood.window_s
            );
            for run in &flood.runs {
                let w = &run.workload_low;
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} / {:.0} | {:.0} / {:.0}, {:.0}, {:.0} | {} | {} | {} | {} | {} |",
                    if run.chart_objects { "installed" } else { "none" },
                    run.units_priority_level,
                    run.flood_done_per_s,
                    run.flood_refused_per_s,
                    w.seats_in_use_mean,
                    w.seats_limit,
                    w.queued_mean,
                    w.rejected_per_s,
                    run.units_rejected,
                    run.renewed,
                    p50_p99_max(&run.renewal_ms),
                    run.leaderships_lost,
                    run.new_terms,
                );
            }
        }
        out.push_str("\n## Ours alone\n\n| figure | value |\n|---|---|\n");
        for (figure, value) in rows {
            let _ = writeln!(out, "| {figure} | {value} |");
        }
        for (count, scale) in &o.operator_at_scale {
            let _ = writeln!(
                out,
                "| operator with {count} leases, claims running out at {}/s: memory (MiB) / expiry lag ms p50 / p99 / max / not cleared / one watch event's delivery ms | {:.1} / {} / {} / {} |",
                scale.expiries_per_s.map_or("?".into(), |r| format!("{r:.0}")),
                scale.operator_rss_mib,
                ms(&scale.expiry_lag_ms),
                scale.not_cleared,
                ms(&scale.watch_delay_ms),
            );
            if let Some(churned) = scale.pods_churned {
                let _ = writeln!(
                    out,
                    "| operator with {count} leases: pods churned meanwhile ({} created and deleted a second) / pods its index held during / after | {churned} / {} / {} |",
                    super::churn::CHURN_PER_S,
                    num(scale.pods_indexed_during),
                    num(scale.pods_indexed_after),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_compare_each_peer_with_ours_in_its_group() {
        let mut report = Report::default();
        let with = |family: &str, group: &str, p99: f64, writes: f64| CandidateReport {
            family: family.into(),
            group: group.into(),
            handover_ms: Summary::of(&[p99]),
            api_writes_per_leader_min: Some(writes),
            ..CandidateReport::default()
        };
        report
            .candidates
            .insert("leadership/defaults".into(), with(OURS, "defaults", 10.0, 12.0));
        report.candidates.insert(
            "leadership/failover-5s".into(),
            with(OURS, "failover-5s", 20.0, 15.0),
        );
        report.candidates.insert(
            "client-go/defaults".into(),
            with("client-go", "defaults", 1000.0, 30.0),
        );
        report.candidates.insert(
            "client-go/failover-5s".into(),
            with("client-go", "failover-5s", 1000.0, 60.0),
        );
        report.load.insert(
            "a".into(),
            LoadReport {
                family: OURS.into(),
                units: 3000,
                requests_per_s: 10.0,
                ..LoadReport::default()
            },
        );
        report.load.insert(
            "b".into(),
            LoadReport {
                family: "client-go".into(),
                units: 3000,
                requests_per_s: 1500.0,
                ..LoadReport::default()
            },
        );
        report.compute_ratios();
        let ratio = |key: &str| report.ratios.get(key).copied();
        assert_eq!(
            ratio("handover_p99: client-go/defaults / leadership/defaults"),
            Some(100.0)
        );
        assert_eq!(
            ratio("handover_p99: client-go/failover-5s / leadership/failover-5s"),
            Some(50.0)
        );
        assert_eq!(
            ratio("writes_per_leader_min: client-go/failover-5s / leadership/failover-5s"),
            Some(4.0)
        );
        assert_eq!(
            ratio("load_requests_per_s: client-go × 3000 / leadership"),
            Some(150.0)
        );
        assert_eq!(report.ratios.len(), 7, "{:?}", report.ratios);
        let markdown = report.markdown();
        assert!(markdown.contains("| handover_p99: client-go/defaults / leadership/defaults | 100.0x |"));
        let ours = markdown
            .find("| leadership/defaults |")
            .expect("ours in the table");
        let peer = markdown
            .find("| client-go/defaults |")
            .expect("client-go in the table");
        assert!(ours < peer, "ours comes first in its group");
    }
}
