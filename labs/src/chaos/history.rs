//! The checker's pure half: turns the sidecars' leadership records (and the harness's record of
//! the processes it killed) into leader intervals, and judges them: no two intervals overlap
//! (SPEC S1), the term rises with every new leader, how much of the time some unit led, and how
//! long leadership took to come back after each fault (S2).

use std::collections::BTreeMap;

use leadership::wire::{RecordEvent, RecordLine};
use serde::{Deserialize, Serialize};

use crate::bench::Summary;

/// One unit's span of reporting "leader", on the machine's CLOCK_MONOTONIC (nanoseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    /// The unit.
    pub unit: String,
    /// The sidecar process that led.
    pub pid: u32,
    /// The fencing term of its grant.
    pub term: u64,
    /// When it began to report "leader" (read just before it was published).
    pub start_ns: u64,
    /// When it stopped reporting "leader" (stepped down, its guarantee ran out, or it was killed).
    pub end_ns: u64,
}

/// A record that cannot be turned into intervals.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The recorder fell behind: the record is incomplete, so nothing can be proven from it.
    #[error("the record of {unit} (pid {pid}) missed {missed} changes")]
    Lagged {
        /// The unit.
        unit: String,
        /// The process.
        pid: u32,
        /// How many changes it missed.
        missed: u64,
    },
    /// The events of one process are not in a possible order.
    #[error("the record of {unit} (pid {pid}) is out of order: {what}")]
    OutOfOrder {
        /// The unit.
        unit: String,
        /// The process.
        pid: u32,
        /// What was wrong.
        what: String,
    },
}

/// Builds the leader intervals from the records' lines (each process's lines in the order it
/// wrote them) and the instants at which the harness saw killed processes gone. An interval left
/// open ends when its guarantee ran out, or when its process was killed if that was earlier.
pub fn intervals(lines: &[RecordLine], killed_at: &BTreeMap<u32, u64>) -> Result<Vec<Interval>, RecordError> {
    let mut open: BTreeMap<(String, u32), Interval> = BTreeMap::new();
    let mut done = Vec::new();
    for line in lines {
        let key = (line.unit.clone(), line.pid);
        let out_of_order = |what: String| RecordError::OutOfOrder {
            unit: line.unit.clone(),
            pid: line.pid,
            what,
        };
        match line.event {
            RecordEvent::Elected {
                term,
                since_ns,
                until_ns,
            } => {
                if open.contains_key(&key) {
                    return Err(out_of_order(format!("elected in term {term} while leading")));
                }
                open.insert(
                    key,
                    Interval {
                        unit: line.unit.clone(),
                        pid: line.pid,
                        term,
                        start_ns: since_ns,
                        end_ns: until_ns,
                    },
                );
            }
            RecordEvent::Renewed { term, until_ns } => match open.get_mut(&key) {
                Some(interval) if interval.term == term => interval.end_ns = interval.end_ns.max(until_ns),
                _ => return Err(out_of_order(format!("renewed term {term} without leading in it"))),
            },
            RecordEvent::Deposed { term, at_ns } => match open.remove(&key) {
                Some(mut interval) if interval.term == term => {
                    interval.end_ns = interval.end_ns.min(at_ns);
                    done.push(interval);
                }
                _ => {
                    return Err(out_of_order(format!(
                        "deposed from term {term} without leading in it"
                    )));
                }
            },
            RecordEvent::Lagged { missed } => {
                return Err(RecordError::Lagged {
                    unit: line.unit.clone(),
                    pid: line.pid,
                    missed,
                });
            }
        }
    }
    for (_, mut interval) in open {
        if let Some(&killed) = killed_at.get(&interval.pid) {
            interval.end_ns = interval.end_ns.min(killed);
        }
        done.push(interval);
    }
    done.retain(|i| i.end_ns > i.start_ns);
    done.sort_by_key(|i| (i.start_ns, i.end_ns));
    Ok(done)
}

/// What the checker found wrong: must be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violations {
    /// Pairs of intervals of different processes that overlap: two leaders at once.
    pub overlaps: Vec<(Interval, Interval)>,
    /// Consecutive intervals whose terms do not rise as they must: strictly for a new unit,
    /// never down for the same one.
    pub terms: Vec<(Interval, Interval)>,
}

impl Violations {
    /// Whether nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.overlaps.is_empty() && self.terms.is_empty()
    }
}

/// Checks sorted intervals for overlaps and for terms that fail to rise.
pub fn violations(intervals: &[Interval]) -> Violations {
    let mut found = Violations::default();
    for (i, a) in intervals.iter().enumerate() {
        for b in intervals[i + 1..].iter().take_while(|b| b.start_ns < a.end_ns) {
            if (a.pid, &a.unit) != (b.pid, &b.unit) {
                found.overlaps.push((a.clone(), b.clone()));
            }
        }
    }
    for pair in intervals.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let rises = if a.unit == b.unit {
            b.term >= a.term
        } else {
            b.term > a.term
        };
        if !rises {
            found.terms.push((a.clone(), b.clone()));
        }
    }
    found
}

/// The spans within `[from, to)` when no unit led, in order.
pub fn leaderless(intervals: &[Interval], from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut gaps = Vec::new();
    let mut covered_to = from;
    for interval in intervals {
        if interval.start_ns > covered_to && covered_to < to {
            gaps.push((covered_to, interval.start_ns.min(to)));
        }
        covered_to = covered_to.max(interval.end_ns);
    }
    if covered_to < to {
        gaps.push((covered_to, to));
    }
    gaps
}

/// The share of `[from, to)` during which some unit led.
pub fn availability(intervals: &[Interval], from: u64, to: u64) -> f64 {
    if to <= from {
        return 0.0;
    }
    let gaps: u64 = leaderless(intervals, from, to).iter().map(|(a, b)| b - a).sum();
    1.0 - gaps as f64 / (to - from) as f64
}

/// For each fault instant (sorted), how long until the application was led again, in
/// milliseconds: zero if no leaderless span touched the time before the next fault, else the end
/// of the last such span minus the fault's instant. `to` ends the last fault's window.
pub fn recoveries(gaps: &[(u64, u64)], faults: &[u64], to: u64) -> Vec<f64> {
    faults
        .iter()
        .enumerate()
        .map(|(i, &fault)| {
            let window_end = faults.get(i + 1).copied().unwrap_or(to);
            gaps.iter()
                .filter(|&&(start, end)| end > fault && start < window_end)
                .map(|&(_, end)| (end - fault) as f64 / 1e6)
                .fold(0.0, f64::max)
        })
        .collect()
}

/// The verdict on one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verdict {
    /// Leader intervals checked.
    pub intervals: usize,
    /// What was wrong (must be empty).
    pub violations: Violations,
    /// The share of the measured time with a leader.
    pub availability: f64,
    /// Recovery after the faults that left the application leaderless, in milliseconds.
    pub recovery_ms: Option<Summary>,
    /// How many faults left the application leaderless for a while.
    pub disruptive_faults: usize,
    /// Per fault, in the order given: how long until the application was led again (0: never
    /// leaderless), in milliseconds.
    pub recovery_per_fault_ms: Vec<f64>,
}

/// Judges a run measured over `[from, to)` with faults injected at `faults` (sorted).
pub fn judge(intervals: &[Interval], faults: &[u64], from: u64, to: u64) -> Verdict {
    let gaps = leaderless(intervals, from, to);
    let per_fault = recoveries(&gaps, faults, to);
    let disruptions: Vec<f64> = per_fault.iter().copied().filter(|ms| *ms > 0.0).collect();
    Verdict {
        intervals: intervals.len(),
        violations: violations(intervals),
        availability: availability(intervals, from, to),
        recovery_ms: Summary::of(&disruptions),
        disruptive_faults: disruptions.len(),
        recovery_per_fault_ms: per_fault,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(unit: &str, pid: u32, event: RecordEvent) -> RecordLine {
        RecordLine {
            unit: unit.into(),
            pid,
            event,
        }
    }

    fn elected(term: u64, since_ns: u64, until_ns: u64) -> RecordEvent {
        RecordEvent::Elected {
            term,
            since_ns,
            until_ns,
        }
    }

    #[test]
    fn renewals_extend_and_a_deposition_ends_no_later_than_the_guarantee() {
        let lines = [
            line("a", 1, elected(1, 0, 100)),
            line(
                "a",
                1,
                RecordEvent::Renewed {
                    term: 1,
                    until_ns: 150,
                },
            ),
            // Paused past its guarantee: the deposition is noticed late but ends at 150.
            line("a", 1, RecordEvent::Deposed { term: 1, at_ns: 900 }),
            line("b", 2, elected(2, 400, 500)),
        ];
        let found = intervals(&lines, &BTreeMap::new()).unwrap();
        assert_eq!(found[0].end_ns, 150);
        assert_eq!(
            (found[1].start_ns, found[1].end_ns),
            (400, 500),
            "left open: ends with its guarantee"
        );
        assert!(violations(&found).is_empty());
    }

    #[test]
    fn a_killed_process_stops_leading_when_it_was_seen_gone() {
        let lines = [
            line("a", 1, elected(1, 0, 100)),
            line("a", 7, elected(1, 60, 160)),
        ];
        let found = intervals(&lines, &BTreeMap::from([(1, 50)])).unwrap();
        assert_eq!(found[0].end_ns, 50);
        // The restarted process of the same unit renews the same term after the old one died.
        assert!(violations(&found).is_empty());
        let without_kill = intervals(&lines, &BTreeMap::new()).unwrap();
        assert_eq!(violations(&without_kill).overlaps.len(), 1);
    }

    #[test]
    fn overlaps_and_terms_that_do_not_rise_are_found() {
        let lines = [
            line("a", 1, elected(3, 0, 100)),
            line("b", 2, elected(4, 99, 200)),
            line("c", 3, elected(4, 300, 400)),
        ];
        let found = violations(&intervals(&lines, &BTreeMap::new()).unwrap());
        assert_eq!(found.overlaps.len(), 1);
        assert_eq!(
            (
                found.overlaps[0].0.unit.as_str(),
                found.overlaps[0].1.unit.as_str()
            ),
            ("a", "b")
        );
        assert_eq!(found.terms.len(), 1, "c follows b in the same term");
    }

    #[test]
    fn broken_records_are_refused() {
        let lagged = [line("a", 1, RecordEvent::Lagged { missed: 3 })];
        assert!(matches!(
            intervals(&lagged, &BTreeMap::new()),
            Err(RecordError::Lagged { .. })
        ));
        let twice = [line("a", 1, elected(1, 0, 10)), line("a", 1, elected(2, 5, 20))];
        assert!(matches!(
            intervals(&twice, &BTreeMap::new()),
            Err(RecordError::OutOfOrder { .. })
        ));
        let stray = [line("a", 1, RecordEvent::Renewed { term: 1, until_ns: 5 })];
        assert!(matches!(
            intervals(&stray, &BTreeMap::new()),
            Err(RecordError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn availability_and_recovery_come_from_the_leaderless_spans() {
        let lines = [
            line("a", 1, elected(1, 0, 4_000_000_000)),
            line("b", 2, elected(2, 5_000_000_000, 10_000_000_000)),
        ];
        let found = intervals(&lines, &BTreeMap::new()).unwrap();
        let gaps = leaderless(&found, 0, 10_000_000_000);
        assert_eq!(gaps, vec![(4_000_000_000, 5_000_000_000)]);
        assert!((availability(&found, 0, 10_000_000_000) - 0.9).abs() < 1e-9);
        // A fault at 3 s led to leadership again at 5 s; a fault at 6 s disturbed nothing.
        let recovered = recoveries(&gaps, &[3_000_000_000, 6_000_000_000], 10_000_000_000);
        assert_eq!(recovered, vec![2000.0, 0.0]);
        let verdict = judge(&found, &[3_000_000_000, 6_000_000_000], 0, 10_000_000_000);
        assert_eq!(verdict.disruptive_faults, 1);
        assert_eq!(verdict.recovery_ms.unwrap().p99, 2000.0);
    }
}
