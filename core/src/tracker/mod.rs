//! The Tracker: one unit's leadership of one application, kept by claiming and renewing against a
//! store (SPEC T1-T8).
//!
//! - [`timing`]: the lease length each claim asks for, how long "leader" lasts, when to renew;
//! - [`decide`]: whether a minion may claim, what a leader does with a new view (pure);
//! - `run`: the task that carries them out against a store;
//! - this module: the configuration, the published status and transitions, and the handle.

use std::time::Duration;

use tokio::{
    sync::{broadcast, mpsc, oneshot, watch},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    Error, Result,
    api::{Claimer, LeaseView, Tracker, Watcher},
    ticket::SharedTicket,
    validate,
};

pub mod decide;
mod run;
pub mod timing;

use run::Run;

pub use decide::{LeaderVerdict, judge_as_leader, may_claim};
pub use timing::{Backoff, Guarantee, MAX_RETRY_INTERVAL, Timing};

/// What a tracker is asked to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// The application whose leadership is tracked.
    pub application: String,
    /// The unit this tracker claims for.
    pub unit: String,
    /// The guarantee, the lease length and the retry pause.
    pub timing: Timing,
}

impl TrackerConfig {
    /// A configuration with the default timing for a guarantee d (see [`Timing::new`]).
    pub fn new(application: impl Into<String>, unit: impl Into<String>, claim_duration: Duration) -> Self {
        TrackerConfig {
            application: application.into(),
            unit: unit.into(),
            timing: Timing::new(claim_duration),
        }
    }

    /// The same configuration with leases of `lease_length` (at least 2d).
    pub fn with_lease_length(mut self, lease_length: Duration) -> Self {
        self.timing.lease_length = lease_length;
        self
    }

    /// The guarantee d.
    pub fn claim_duration(&self) -> Duration {
        self.timing.claim_duration
    }

    /// The lease length each claim asks for.
    pub fn lease_length(&self) -> Duration {
        self.timing.lease_length
    }

    fn validate(&self) -> Result<()> {
        validate::application_name(&self.application)?;
        validate::unit_name(&self.unit)?;
        self.timing.validate()
    }
}

/// What a tracker knows at one moment; published at every change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackerStatus {
    /// The guarantee of the last successful claim, while the unit leads.
    pub guarantee: Option<Guarantee>,
    /// The fencing term of the unit's grant (or the last term seen, as a minion).
    pub term: u64,
    /// Whether the tracker is still working out whether it leads: from the start until it has
    /// judged its first view of the lease, and from each decision to claim until the outcome is
    /// published. A claim ticket waits while this holds, so it never answers from ignorance.
    pub deciding: bool,
    /// Whether the first view of the lease has been read.
    pub ready: bool,
    /// Whether the tracker has stopped.
    pub stopped: bool,
    /// Why the last attempt to watch, claim or renew failed, until one succeeds.
    pub problem: Option<String>,
    /// The store's latest view of the lease.
    pub lease: LeaseView,
}

impl TrackerStatus {
    /// Whether the unit is leader at `now`: guaranteed for at least d more (T1, T7).
    pub fn is_leader(&self, now: Instant) -> bool {
        self.guarantee.is_some_and(|g| now < g.leader_until())
    }

    /// How long leadership is still guaranteed at `now` (zero for a minion).
    pub fn guaranteed_for(&self, now: Instant) -> Duration {
        match self.guarantee {
            Some(g) if self.is_leader(now) => g.guaranteed_until().saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }
}

/// One change of this unit's leadership, published in order for hooks and recorders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The unit became leader with a new claim.
    Elected {
        /// The fencing term of the grant.
        term: u64,
        /// The guarantee the claim earned.
        guarantee: Guarantee,
        /// The instant just before "leader" was first published: no answer says "leader" earlier.
        at: Instant,
    },
    /// A renewal succeeded: leadership is guaranteed for longer.
    Renewed {
        /// The fencing term of the grant.
        term: u64,
        /// The guarantee the renewal earned.
        guarantee: Guarantee,
    },
    /// The unit stopped being leader.
    Deposed {
        /// The fencing term of the grant it held.
        term: u64,
        /// The instant it stopped reporting "leader": when it stepped down, or when its last
        /// guarantee ran out if that was earlier (a paused process notices late).
        at: Instant,
    },
}

/// How many transitions a slow subscriber may fall behind before it misses some.
const TRANSITION_BACKLOG: usize = 256;

/// A request from the handle to the task.
enum Command {
    Release(oneshot::Sender<Result<bool>>),
}

/// A running [`Tracker`] over a store; stops (and releases) when dropped or [`stopped`](Self::stop).
#[derive(Debug)]
pub struct LeaseTracker {
    config: TrackerConfig,
    status: watch::Receiver<TrackerStatus>,
    commands: mpsc::Sender<Command>,
    transitions: broadcast::Sender<Transition>,
    first_transitions: std::sync::Mutex<Option<broadcast::Receiver<Transition>>>,
    cancel: CancellationToken,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Release")
    }
}

impl LeaseTracker {
    /// Starts tracking on the current tokio runtime.
    pub fn start<S>(store: S, config: TrackerConfig) -> Result<Self>
    where
        S: Claimer + Watcher + 'static,
    {
        config.validate()?;
        let (status_tx, status) = watch::channel(TrackerStatus {
            deciding: true,
            ..TrackerStatus::default()
        });
        let (commands, command_rx) = mpsc::channel(8);
        let (transitions, first_transitions) = broadcast::channel(TRANSITION_BACKLOG);
        let cancel = CancellationToken::new();
        let run = Run {
            store,
            config: config.clone(),
            status: status_tx,
            transitions: transitions.clone(),
            commands: command_rx,
            cancel: cancel.clone(),
        };
        let span = tracing::info_span!("tracker", application = %config.application, unit = %config.unit);
        let task = std::sync::Mutex::new(Some(tokio::spawn(run.run().instrument(span))));
        Ok(LeaseTracker {
            config,
            status,
            commands,
            transitions,
            first_transitions: std::sync::Mutex::new(Some(first_transitions)),
            cancel,
            task,
        })
    }

    /// Every [`Transition`] in order: the first call gets them all since the start, later calls
    /// those from the call on. A subscriber that falls more than 256 behind is told it lagged.
    pub fn transitions(&self) -> broadcast::Receiver<Transition> {
        self.first_transitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| self.transitions.subscribe())
    }

    /// The latest status.
    pub fn status(&self) -> TrackerStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<TrackerStatus> {
        self.status.clone()
    }

    /// The unit tracked.
    pub fn unit(&self) -> &str {
        &self.config.unit
    }

    /// Steps down now if leader; true if a lease was released. The unit does not claim again until
    /// another unit has taken the lease or a full lease length has passed.
    pub async fn release(&self) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Release(reply))
            .await
            .map_err(|_| Error::unavailable("the tracker has stopped"))?;
        answer
            .await
            .map_err(|_| Error::unavailable("the tracker has stopped"))?
    }

    /// Stops the tracker, releasing the lease if held (T8), and waits for it to finish.
    pub async fn stop(&self) {
        self.cancel.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for LeaseTracker {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Tracker for LeaseTracker {
    type Ticket = SharedTicket;

    fn application_name(&self) -> &str {
        &self.config.application
    }

    fn claim_duration(&self) -> Duration {
        self.config.claim_duration()
    }

    /// While the tracker is still deciding (its first read or a claim under way) the ticket waits
    /// for the outcome, for at most d; then it answers false, since nothing guarantees leadership.
    fn claim_leader(&self) -> SharedTicket {
        let mut status = self.status.clone();
        let give_up = Instant::now() + self.config.claim_duration();
        SharedTicket::spawn(async move {
            loop {
                let now = Instant::now();
                let (leader, deciding, stopped) = {
                    let s = status.borrow_and_update();
                    (s.is_leader(now), s.deciding, s.stopped)
                };
                if leader {
                    return true;
                }
                if stopped || !deciding {
                    return false;
                }
                tokio::select! {
                    changed = status.changed() => if changed.is_err() { return false },
                    () = tokio::time::sleep_until(give_up) => return false,
                }
            }
        })
    }

    fn wait_leader(&self) -> SharedTicket {
        let mut status = self.status.clone();
        SharedTicket::spawn(async move {
            loop {
                let (leader, stopped) = {
                    let s = status.borrow_and_update();
                    (s.is_leader(Instant::now()), s.stopped)
                };
                if leader {
                    return true;
                }
                if stopped || status.changed().await.is_err() {
                    return false;
                }
            }
        })
    }

    fn wait_minion(&self) -> SharedTicket {
        let mut status = self.status.clone();
        SharedTicket::spawn(async move {
            loop {
                let (leader, until) = {
                    let s = status.borrow_and_update();
                    (s.is_leader(Instant::now()), s.guarantee.map(|g| g.leader_until()))
                };
                let Some(until) = until.filter(|_| leader) else {
                    return true;
                };
                tokio::select! {
                    changed = status.changed() => if changed.is_err() { return true },
                    () = tokio::time::sleep_until(until) => {}
                }
            }
        })
    }
}
