//! What a load generator's trackers did between two readings: elections, renewals and how long
//! each took, and leaderships lost. `load-trackers` prints a reading (a `TALLY` line of JSON) and
//! starts a new one each time it gets SIGUSR1; the benchmark reads the line from its log.

use serde::{Deserialize, Serialize};

use super::stats::Summary;

/// The prefix of the line that carries a reading.
pub const TALLY_PREFIX: &str = "TALLY ";

/// What the trackers did since the last reading.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    elected: u64,
    deposed: u64,
    renewal_ms: Vec<f64>,
}

impl Tally {
    /// A unit became leader.
    pub fn elected(&mut self) {
        self.elected += 1;
    }

    /// A leader renewed; the renewal took `ms` from sending to its answer.
    pub fn renewed(&mut self, ms: f64) {
        self.renewal_ms.push(ms);
    }

    /// A leader stopped being leader.
    pub fn deposed(&mut self) {
        self.deposed += 1;
    }

    /// The reading so far, and a new tally from now on.
    pub fn take(&mut self) -> Reading {
        let tally = std::mem::take(self);
        Reading {
            elected: tally.elected,
            renewed: tally.renewal_ms.len() as u64,
            deposed: tally.deposed,
            renewal_ms: Summary::of(&tally.renewal_ms),
        }
    }
}

/// One reading of a [`Tally`], as printed after [`TALLY_PREFIX`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Units that became leader.
    pub elected: u64,
    /// Renewals that succeeded.
    pub renewed: u64,
    /// Leaderships that ended (in a run without stops or crashes, every one was lost).
    pub deposed: u64,
    /// How long the renewals took, from sending to the answer.
    pub renewal_ms: Option<Summary>,
}

impl Reading {
    /// The line that carries this reading.
    pub fn line(&self) -> String {
        format!(
            "{TALLY_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// The last reading in a log's `text`, if any.
    pub fn last_in(text: &str) -> Option<Reading> {
        text.lines()
            .rev()
            .find_map(|line| serde_json::from_str(line.strip_prefix(TALLY_PREFIX)?).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_counts_since_the_last_one_and_is_found_again_in_a_log() {
        let mut tally = Tally::default();
        tally.elected();
        tally.renewed(4.0);
        tally.renewed(12.0);
        tally.deposed();
        let first = tally.take();
        assert_eq!((first.elected, first.renewed, first.deposed), (1, 2, 1));
        assert_eq!(first.renewal_ms.as_ref().map(|s| s.max), Some(12.0));
        let second = tally.take();
        assert_eq!(second, Reading::default());
        let log = format!("INFO something\n{}\nINFO more\n{}\n", first.line(), second.line());
        assert_eq!(Reading::last_in(&log), Some(second));
        assert_eq!(Reading::last_in("no readings here"), None);
    }
}
