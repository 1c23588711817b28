//! The leadership record (`--record FILE`): one JSON line ([`RecordLine`]) per change of this
//! unit's leadership, appended as it happens. Times are read from the kernel's CLOCK_MONOTONIC
//! directly (not through libc), so they stay on the machine's shared clock even when the process's
//! own clock is faked to run at another rate; the fault checker relies on that.

use std::{fs::File, io::Write, path::Path};

use anyhow::Context;
use leadership::{
    Transition,
    wire::{RecordEvent, RecordLine, monotonic_ns},
};
use tokio::{sync::broadcast, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Converts this process's clock to the machine's CLOCK_MONOTONIC. The two are the same clock
/// unless the process's clock is faked to run at another rate (as the fault checker does with
/// libfaketime); the rate is then measured between the two since the recorder started.
#[derive(Clone, Copy, Debug)]
struct Clocks {
    machine_start: u64,
    local_start: Instant,
}

impl Clocks {
    fn new() -> Clocks {
        Clocks {
            machine_start: monotonic_ns(),
            local_start: Instant::now(),
        }
    }

    /// `instant` on the machine's clock, measured from now at the process clock's rate.
    fn machine_time(&self, instant: Instant) -> u64 {
        let (machine, local) = (monotonic_ns(), Instant::now());
        let machine_elapsed = machine.saturating_sub(self.machine_start) as f64;
        let local_elapsed = (local - self.local_start).as_nanos() as f64;
        // Local seconds per machine second; taken as 1 until there is enough to measure.
        let rate = if machine_elapsed > 1e9 && local_elapsed > 0.0 {
            local_elapsed / machine_elapsed
        } else {
            1.0
        };
        let to_machine = |d: std::time::Duration| (d.as_nanos() as f64 / rate) as u64;
        if instant >= local {
            machine.saturating_add(to_machine(instant - local))
        } else {
            machine.saturating_sub(to_machine(local - instant))
        }
    }

    /// What a transition becomes in the record.
    fn event(&self, transition: Transition) -> RecordEvent {
        match transition {
            Transition::Elected { term, guarantee, at } => RecordEvent::Elected {
                term,
                since_ns: self.machine_time(at),
                until_ns: self.machine_time(guarantee.leader_until()),
            },
            Transition::Renewed { term, guarantee } => RecordEvent::Renewed {
                term,
                until_ns: self.machine_time(guarantee.leader_until()),
            },
            Transition::Deposed { term, at } => RecordEvent::Deposed {
                term,
                at_ns: self.machine_time(at),
            },
        }
    }
}

/// Appends the record of one unit to a file.
pub struct Recorder {
    file: File,
    unit: String,
    clocks: Clocks,
}

impl Recorder {
    /// Opens `path` for appending (creating it).
    pub fn open(path: &Path, unit: &str) -> anyhow::Result<Recorder> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open the leadership record {}", path.display()))?;
        Ok(Recorder {
            file,
            unit: unit.to_owned(),
            clocks: Clocks::new(),
        })
    }

    fn write(&mut self, event: RecordEvent) {
        let line = RecordLine {
            unit: self.unit.clone(),
            pid: std::process::id(),
            event,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        // One write per line: with O_APPEND, lines never interleave.
        if let Err(err) = self.file.write_all(text.as_bytes()) {
            warn!(error = %err, "cannot write the leadership record");
        }
    }

    fn take(&mut self, received: Result<Transition, broadcast::error::RecvError>) -> bool {
        match received {
            Ok(transition) => self.write(self.clocks.event(transition)),
            Err(broadcast::error::RecvError::Lagged(missed)) => self.write(RecordEvent::Lagged { missed }),
            Err(broadcast::error::RecvError::Closed) => return false,
        }
        true
    }

    /// Records every transition until `stop`, then whatever is already queued.
    pub async fn follow(mut self, mut transitions: broadcast::Receiver<Transition>, stop: CancellationToken) {
        loop {
            tokio::select! {
                received = transitions.recv() => if !self.take(received) { return },
                () = stop.cancelled() => break,
            }
        }
        loop {
            let received = match transitions.try_recv() {
                Ok(transition) => Ok(transition),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    Err(broadcast::error::RecvError::Lagged(missed))
                }
                Err(_) => return,
            };
            self.take(received);
        }
    }
}
