//! What a run found: the faults as injected ([`Injected`]), the verdict on the sidecars' records,
//! what the hostile unit found, and the report ([`Outcome`]) with its closing summary line.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::{Deserialize, Serialize};

use super::{
    Run,
    faults::FaultKind,
    history::{self, Verdict},
    hostile::{self, Findings},
    read_records, write_json,
};
use crate::bench::Summary;

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
    /// What the hostile unit did, when it ran (its writes in `hostile.json`).
    pub hostile: Option<hostile::Summary>,
}

impl Outcome {
    /// Whether the run found nothing wrong: no violation in the records, and no illegal write
    /// admitted.
    pub fn passed(&self) -> bool {
        self.verdict.violations.is_empty() && self.illegal_writes_admitted() == 0
    }

    /// How many of the hostile unit's writes the API server admitted though they were illegal.
    pub fn illegal_writes_admitted(&self) -> u64 {
        self.hostile.as_ref().map_or(0, |h| h.admitted_illegal)
    }

    /// How many faults were injected.
    pub fn faults(&self) -> usize {
        self.by_kind.values().sum()
    }

    /// The closing line: `overlaps=0 intervals=N faults=N availability=0.97 recovery_p99_ms=N;
    /// illegal writes admitted: 0` (the last part when the hostile unit ran).
    pub fn summary_line(&self) -> String {
        let mut line = format!(
            "overlaps={} intervals={} faults={} availability={:.3} recovery_p99_ms={:.0}",
            self.verdict.violations.overlaps.len(),
            self.verdict.intervals,
            self.faults(),
            self.verdict.availability,
            self.verdict.recovery_ms.as_ref().map_or(0.0, |s| s.p99),
        );
        if self.hostile.is_some() {
            let _ = write!(
                line,
                "; illegal writes admitted: {}",
                self.illegal_writes_admitted()
            );
        }
        line
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
        if let Some(h) = &self.hostile {
            hostile_report(&mut text, h);
        }
        text.push_str(&self.summary_line());
        text
    }
}

/// The hostile unit's part of the report.
fn hostile_report(text: &mut String, h: &hostile::Summary) {
    let by = |counts: &BTreeMap<String, u64>| {
        counts
            .iter()
            .map(|(what, n)| format!("{what} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        text,
        "hostile unit {} (no sidecar; a member pod's token, an unbound token, impersonation): {} writes sent ({}), {} reads failed",
        h.unit,
        h.sent_total(),
        by(&h.sent),
        h.reads_failed
    );
    let _ = writeln!(text, "  refused, by HTTP code and rule: {}", h.refused_total());
    for (rule, n) in &h.refused {
        let _ = writeln!(text, "    {n:>6}  {rule}");
    }
    let _ = writeln!(text, "  lost races (409): {}", h.lost_races);
    let _ = writeln!(
        text,
        "  unanswered (the API server away; not judged): {}",
        h.unanswered
    );
    let legal: u64 = h.admitted_legal.values().sum();
    let _ = writeln!(
        text,
        "  admitted and legal: {legal}{}",
        if legal > 0 {
            format!(" ({})", by(&h.admitted_legal))
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        text,
        "  admitted and illegal (must be 0; each in hostile.json): {}",
        h.admitted_illegal
    );
    let _ = writeln!(
        text,
        "  refused though the judge found them legal: {}",
        h.refused_though_legal
    );
    if h.held == 0 {
        let _ = writeln!(text, "  the hostile unit never held the application's lease");
    } else {
        let _ = writeln!(
            text,
            "  the application had the hostile unit as leader {} times, {:.1} s in all (spans in hostile.json): no sidecar could lead then. It renews only by chance, so each claim ran out and the operator cleared it, unless the hostile unit released it",
            h.held, h.held_s
        );
    }
    let _ = writeln!(text, "illegal writes admitted: {}", h.admitted_illegal);
}

impl Run {
    /// Judges the records between `from` and `to` (CLOCK_MONOTONIC, ns), and writes
    /// `history.json`, the hostile unit's `findings` (when it ran) as `hostile.json`, and
    /// `report.json`.
    pub(super) fn judge(&self, from: u64, to: u64, findings: Option<Findings>) -> anyhow::Result<Outcome> {
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
            hostile: findings.as_ref().map(|f| f.summary.clone()),
        };
        if let Some(findings) = &findings {
            write_json(&self.settings.out.join("hostile.json"), findings)?;
        }
        write_json(&self.settings.out.join("report.json"), &outcome)?;
        Ok(outcome)
    }
}
