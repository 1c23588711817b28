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
    /// The lease length it ran with, in ms.
    pub lease_ms: u64,
    /// From the leader's graceful stop (SIGTERM) to another process saying it leads.
    pub handover_ms: Option<Summary>,
    /// From SIGKILL of the leader to another process saying it leads, minus the lease length.
    pub crash_overhead_ms: Option<Summary>,
    /// API requests per leader per minute in steady state (3 processes, one application).
    pub api_requests_per_leader_min: Option<f64>,
    /// API writes (create, update, patch) per leader per minute in steady state.
    pub api_writes_per_leader_min: Option<f64>,
    /// API requests per minute in total with many applications (one process each).
    pub api_requests_many_apps_min: Option<f64>,
    /// API writes per minute in total with many applications.
    pub api_writes_many_apps_min: Option<f64>,
    /// The raw samples, for the plot.
    pub samples: BTreeMap<String, Vec<f64>>,
    /// Why something was not measured, if it was not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Our own figures that have no peer to compare with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnReport {
    /// `GET /v1/status` latency with 1 client, in µs.
    pub socket_latency_us_1_client: Option<Summary>,
    /// `GET /v1/status` latency with 16 clients, in µs.
    pub socket_latency_us_16_clients: Option<Summary>,
    /// Requests per second with 1 client.
    pub socket_rps_1_client: Option<f64>,
    /// Requests per second with 16 clients.
    pub socket_rps_16_clients: Option<f64>,
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
    /// Per candidate.
    pub candidates: BTreeMap<String, CandidateReport>,
    /// Ours alone.
    pub ours: OwnReport,
    /// Ratios peer / ours from the same run (higher is better for us).
    pub ratios: BTreeMap<String, f64>,
}

/// The name of our candidate in the report.
pub const OURS: &str = "leadership";

impl Report {
    /// Fills `ratios`: for every peer, its figure over ours, where both were measured.
    pub fn compute_ratios(&mut self) {
        self.ratios.clear();
        let Some(ours) = self.candidates.get(OURS).cloned() else {
            return;
        };
        for (name, peer) in &self.candidates {
            if name == OURS {
                continue;
            }
            let pairs = [
                (
                    "handover_p50",
                    peer.handover_ms.as_ref().map(|s| s.p50),
                    ours.handover_ms.as_ref().map(|s| s.p50),
                ),
                (
                    "handover_p99",
                    peer.handover_ms.as_ref().map(|s| s.p99),
                    ours.handover_ms.as_ref().map(|s| s.p99),
                ),
                (
                    "crash_overhead_p99",
                    peer.crash_overhead_ms.as_ref().map(|s| s.p99),
                    ours.crash_overhead_ms.as_ref().map(|s| s.p99),
                ),
                (
                    "api_writes_per_leader_min",
                    peer.api_writes_per_leader_min,
                    ours.api_writes_per_leader_min,
                ),
            ];
            for (figure, theirs, ours) in pairs {
                if let (Some(theirs), Some(ours)) = (theirs, ours)
                    && ours > 0.0
                {
                    self.ratios
                        .insert(format!("{figure}: {name} / {OURS}"), theirs / ours);
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
        out.push_str("Latencies in ms as p50 / p99 / max. Handover: SIGTERM of the leader to another process saying it leads. Crash overhead: SIGKILL of the leader to another process leading, minus the lease length; it can be below zero, because a lease runs from the leader's last renewal, which came before the kill. API figures: the API server's own request counters for the candidate's resource (`leases` or `leadershipleases`), less the control plane's own Lease traffic.\n\n");
        out.push_str("| candidate | lease ms | graceful handover | crash overhead | requests / leader / min | writes / leader / min | requests / min, many apps | writes / min, many apps |\n|---|---|---|---|---|---|---|---|\n");
        for (name, c) in &self.candidates {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                c.lease_ms,
                ms(&c.handover_ms),
                ms(&c.crash_overhead_ms),
                num(c.api_requests_per_leader_min),
                num(c.api_writes_per_leader_min),
                num(c.api_requests_many_apps_min),
                num(c.api_writes_many_apps_min)
            );
        }
        out.push_str("\n| candidate | configuration |\n|---|---|\n");
        for (name, c) in &self.candidates {
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
        let us = |s: &Option<Summary>| match s {
            Some(s) => format!("{:.0} / {:.0} µs (max {:.0}, n={})", s.p50, s.p99, s.max, s.n),
            None => "not measured".into(),
        };
        let ms = |s: &Option<Summary>| match s {
            Some(s) => format!("{:.1} / {:.1} ms (max {:.1}, n={})", s.p50, s.p99, s.max, s.n),
            None => "not measured".into(),
        };
        let rows = [
            (
                "socket `GET /v1/status`, 1 client, p50 / p99",
                us(&o.socket_latency_us_1_client),
            ),
            (
                "socket `GET /v1/status`, 16 clients, p50 / p99",
                us(&o.socket_latency_us_16_clients),
            ),
            ("socket requests/s, 1 client", num(o.socket_rps_1_client)),
            ("socket requests/s, 16 clients", num(o.socket_rps_16_clients)),
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
        out.push_str("\n## Ours alone\n\n| figure | value |\n|---|---|\n");
        for (figure, value) in rows {
            let _ = writeln!(out, "| {figure} | {value} |");
        }
        for (count, scale) in &o.operator_at_scale {
            let _ = writeln!(
                out,
                "| operator with {count} leases: memory (MiB) / expiry lag ms p50 / p99 / max / not cleared | {:.1} / {} / {} |",
                scale.operator_rss_mib,
                ms(&scale.expiry_lag_ms),
                scale.not_cleared
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_compare_each_peer_with_ours() {
        let mut report = Report::default();
        let with = |p99: f64| CandidateReport {
            handover_ms: Summary::of(&[p99]),
            api_writes_per_leader_min: Some(12.0),
            ..CandidateReport::default()
        };
        report.candidates.insert(OURS.into(), with(10.0));
        report.candidates.insert("client-go".into(), with(1000.0));
        report.compute_ratios();
        assert_eq!(
            report.ratios.get("handover_p99: client-go / leadership"),
            Some(&100.0)
        );
        assert_eq!(
            report
                .ratios
                .get("api_writes_per_leader_min: client-go / leadership"),
            Some(&1.0)
        );
        assert!(
            report
                .markdown()
                .contains("| handover_p99: client-go / leadership | 100.0x |")
        );
    }
}
