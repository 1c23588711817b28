//! The Tracker: one unit's leadership of one application, kept by claiming and renewing against a
//! store (SPEC T1-T8).
//!
//! Timing, for a claim duration d: each claim asks for a lease of 2d, timed from the moment the
//! claim was sent; the unit reports "leader" until d after that moment, so "leader" always means
//! "guaranteed for at least d more"; it renews d/2 after each claim and retries until the guarantee
//! runs out, and reports "minion" the instant it does, whatever the network does later.

use std::time::Duration;

use tokio::{
    sync::{broadcast, mpsc, oneshot, watch},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::{
    Error, Result,
    api::{Claimer, LeaseFeed, LeaseView, Tracker, Watcher},
    ticket::SharedTicket,
    validate,
};

/// What a tracker is asked to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// The application whose leadership is tracked.
    pub application: String,
    /// The unit this tracker claims for.
    pub unit: String,
    /// The guarantee d carried by every "leader" answer.
    pub claim_duration: Duration,
    /// The pause between attempts after an error that allows no inference.
    pub retry_interval: Duration,
}

impl TrackerConfig {
    /// A configuration with the default retry interval (a tenth of d, between 100 ms and 1 s).
    pub fn new(application: impl Into<String>, unit: impl Into<String>, claim_duration: Duration) -> Self {
        let retry_interval = (claim_duration / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
        TrackerConfig {
            application: application.into(),
            unit: unit.into(),
            claim_duration,
            retry_interval,
        }
    }

    /// The lease length each claim asks for: 2d.
    pub fn lease_length(&self) -> Duration {
        self.claim_duration * 2
    }

    fn validate(&self) -> Result<()> {
        validate::application_name(&self.application)?;
        validate::unit_name(&self.unit)?;
        if self.claim_duration.is_zero() {
            return Err(Error::invalid("claim duration", "must be positive"));
        }
        if self.retry_interval.is_zero() {
            return Err(Error::invalid("retry interval", "must be positive"));
        }
        Ok(())
    }
}

/// The guarantee earned by one successful claim sent at `claimed_at` (pure timing rules of T1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Guarantee {
    /// The monotonic time read just before the claim was sent (C4).
    pub claimed_at: Instant,
    /// The claim duration d.
    pub claim_duration: Duration,
}

impl Guarantee {
    /// The end of the lease the claim bought: 2d after it was sent.
    pub fn guaranteed_until(&self) -> Instant {
        self.claimed_at + self.claim_duration * 2
    }

    /// The last instant at which "leader" still means "at least d more": d after the claim.
    pub fn leader_until(&self) -> Instant {
        self.claimed_at + self.claim_duration
    }

    /// When to renew: d/2 after the claim, leaving d/2 for retries.
    pub fn renew_at(&self) -> Instant {
        self.claimed_at + self.claim_duration / 2
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

/// Whether a minion may claim at `now` (pure; the model checker drives it too): the lease is free
/// (no holder, or its claim has run out by this observer's judgement) or still names this unit, it
/// is not being revoked from it, and no pending handover excludes it.
pub fn may_claim(view: &LeaseView, unit: &str, now: Instant) -> bool {
    if view.handover.as_ref().is_some_and(|h| !h.admits(unit)) {
        return false;
    }
    match view.holder_at(now) {
        None => true,
        Some(holder) => holder == unit && view.revoked.as_deref() != Some(holder),
    }
}

/// What a leader holding `term` must do when it sees `view` (pure; the model checker drives it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderVerdict {
    /// Keep leading.
    Keep,
    /// Its revocation is pending: step down now and release (V2).
    Revoked,
    /// Another grant replaced its own: it is no longer leader.
    Lost,
}

/// Judges a leader's new view of its lease.
pub fn judge_as_leader(view: &LeaseView, unit: &str, term: u64) -> LeaderVerdict {
    if view.revoked.as_deref() == Some(unit) {
        LeaderVerdict::Revoked
    } else if view.term > term || (view.term == term && view.holder.as_deref() != Some(unit)) {
        LeaderVerdict::Lost
    } else {
        LeaderVerdict::Keep
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

/// The longest wait between attempts to watch the lease while the store keeps failing.
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// How many transitions a slow subscriber may fall behind before it misses some.
const TRANSITION_BACKLOG: usize = 256;

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
        self.config.claim_duration
    }

    /// While the tracker is still deciding (its first read or a claim under way) the ticket waits
    /// for the outcome, for at most d; then it answers false, since nothing guarantees leadership.
    fn claim_leader(&self) -> SharedTicket {
        let mut status = self.status.clone();
        let give_up = Instant::now() + self.config.claim_duration;
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

/// Why a leader stepped down.
enum StepDown {
    /// The tracker is stopping.
    Stop,
    /// Stepped down and must hold off claiming again (after a release or a revocation).
    HoldOff,
    /// Lost the lease or its guarantee; may claim again when it is free.
    Lost,
}

struct Run<S> {
    store: S,
    config: TrackerConfig,
    status: watch::Sender<TrackerStatus>,
    transitions: broadcast::Sender<Transition>,
    commands: mpsc::Receiver<Command>,
    cancel: CancellationToken,
}

/// After a release the unit waits until another unit took the lease or a lease length passed.
struct HoldOff {
    until: Instant,
    released_term: u64,
}

impl<S: Claimer + Watcher> Run<S> {
    async fn run(mut self) {
        let app = self.config.application.clone();
        let unit = self.config.unit.clone();
        let Some(mut feed) = self.connect().await else {
            return self.finish(false).await;
        };
        let mut hold_off: Option<HoldOff> = None;
        loop {
            self.show(&feed);
            if !self.wait_for_chance(&mut feed, &mut hold_off).await {
                return self.finish(false).await;
            }
            let claimed_at = Instant::now();
            let claimed = tokio::select! {
                claimed = self.store.claim_leadership(&app, &unit, self.config.lease_length()) => claimed,
                () = self.cancel.cancelled() => return self.finish(true).await,
            };
            match claimed {
                Ok(grant) => {
                    self.status.send_modify(|s| s.problem = None);
                    info!(application = %app, unit = %unit, term = grant.term, "became leader");
                    match self
                        .lead(
                            &mut feed,
                            Guarantee {
                                claimed_at,
                                claim_duration: self.config.claim_duration,
                            },
                            grant.term,
                        )
                        .await
                    {
                        StepDown::Stop => return self.finish(true).await,
                        StepDown::HoldOff => {
                            hold_off = Some(HoldOff {
                                until: Instant::now() + self.config.lease_length(),
                                released_term: grant.term,
                            });
                        }
                        StepDown::Lost => {}
                    }
                }
                Err(Error::ClaimDenied) => {
                    debug!(application = %app, unit = %unit, "claim denied; waiting as minion")
                }
                Err(err) => {
                    warn!(application = %app, unit = %unit, error = %err.detail(), "claim failed; retrying");
                    // No inference may be made: a claim ticket answers false until a claim works.
                    self.status.send_modify(|s| {
                        s.problem = Some(err.detail());
                        s.deciding = false;
                    });
                    if !self.pause(self.config.retry_interval).await {
                        return self.finish(true).await;
                    }
                }
            }
        }
    }

    /// Subscribes to the lease, retrying (backing off to [`MAX_RETRY_INTERVAL`]) until it works or
    /// the tracker stops. Never gives up: a missing CRD, a refusal or a dead API server is reported
    /// in the status and the log, and fixed by fixing it, not by restarting the process.
    async fn connect(&mut self) -> Option<LeaseFeed> {
        let mut wait = self.config.retry_interval;
        loop {
            let watched = tokio::select! {
                watched = self.store.watch(&self.config.application) => watched,
                () = self.cancel.cancelled() => return None,
            };
            match watched {
                Ok(feed) => {
                    self.status.send_modify(|s| {
                        s.ready = true;
                        s.problem = None;
                    });
                    return Some(feed);
                }
                Err(err) => {
                    warn!(application = %self.config.application, error = %err.detail(), retry_in = ?wait, "cannot watch the lease; retrying");
                    self.status.send_modify(|s| s.problem = Some(err.detail()));
                    if !self.pause(wait).await {
                        return None;
                    }
                    wait = (wait * 2).min(MAX_RETRY_INTERVAL.max(self.config.retry_interval));
                }
            }
        }
    }

    /// Sleeps, answering release requests (as a minion: nothing to release); false if stopping.
    async fn pause(&mut self, period: Duration) -> bool {
        let until = Instant::now() + period;
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return false,
                () = tokio::time::sleep_until(until) => return true,
                Some(Command::Release(reply)) = self.commands.recv() => { let _ = reply.send(Ok(false)); }
            }
        }
    }

    /// Waits as a minion until the lease is free (or still ours) and any hold-off is over; false if
    /// stopping. Driven by the feed: no polling (T6).
    async fn wait_for_chance(&mut self, feed: &mut LeaseFeed, hold_off: &mut Option<HoldOff>) -> bool {
        loop {
            let view = feed.current();
            let now = Instant::now();
            if hold_off
                .as_ref()
                .is_some_and(|h| now >= h.until || view.term > h.released_term)
            {
                *hold_off = None;
            }
            self.show(feed);
            let mine = view.holder.as_deref() == Some(self.config.unit.as_str());
            if mine && view.revoked.as_deref() == Some(self.config.unit.as_str()) {
                // Revoked while it could not act on it (paused, partitioned): step down now.
                info!(application = %self.config.application, unit = %self.config.unit, "leadership revoked; releasing");
                self.release_quietly().await;
                *hold_off = Some(HoldOff {
                    until: now + self.config.lease_length(),
                    released_term: view.term,
                });
            }
            let chance = may_claim(&view, &self.config.unit, now) && hold_off.is_none();
            self.status
                .send_if_modified(|s| std::mem::replace(&mut s.deciding, chance) != chance);
            if chance {
                return true;
            }
            tokio::select! {
                () = self.cancel.cancelled() => return false,
                Some(Command::Release(reply)) = self.commands.recv() => { let _ = reply.send(Ok(false)); }
                changed = feed.changed_or_until(hold_off.as_ref().map(|h| h.until)) => {
                    if let Err(err) = changed {
                        warn!(application = %self.config.application, error = %err, "lease feed lost; reconnecting");
                        match self.connect().await { Some(f) => *feed = f, None => return false }
                    }
                }
            }
        }
    }

    /// Leads until the guarantee runs out, the lease is lost or revoked, a release is asked for, or
    /// the tracker stops. Renews at d/2 and retries until the guarantee runs out.
    async fn lead(&mut self, feed: &mut LeaseFeed, first: Guarantee, term: u64) -> StepDown {
        let (app, unit) = (self.config.application.clone(), self.config.unit.clone());
        let mut guarantee = first;
        let mut next_attempt = guarantee.renew_at();
        // "Leader" is published only after the latest view has been judged, so a grant that a
        // newer view already contradicts is never reported, not even for an instant.
        let mut published = false;
        let outcome = loop {
            let view = feed.current();
            self.show(feed);
            match judge_as_leader(&view, &unit, term) {
                LeaderVerdict::Keep => {}
                LeaderVerdict::Revoked => {
                    info!(application = %app, unit = %unit, term, "leadership revoked; stepping down");
                    if published {
                        self.depose(term, guarantee);
                    }
                    self.release_quietly().await;
                    break StepDown::HoldOff;
                }
                LeaderVerdict::Lost => {
                    info!(application = %app, unit = %unit, term, holder = ?view.holder, "lease lost; stepping down");
                    break StepDown::Lost;
                }
            }
            if !published {
                let at = Instant::now();
                self.status.send_modify(|s| {
                    s.guarantee = Some(guarantee);
                    s.term = term;
                    s.deciding = false;
                });
                let _ = self.transitions.send(Transition::Elected { term, guarantee, at });
                published = true;
            }
            tokio::select! {
                () = self.cancel.cancelled() => break StepDown::Stop,
                Some(Command::Release(reply)) = self.commands.recv() => {
                    self.depose(term, guarantee);
                    let released = self.store.release_leadership(&app, &unit).await;
                    info!(application = %app, unit = %unit, term, "released leadership on request");
                    let _ = reply.send(released.map(|()| true));
                    break StepDown::HoldOff;
                }
                () = tokio::time::sleep_until(guarantee.leader_until()) => {
                    warn!(application = %app, unit = %unit, term, "could not renew in time; no longer leader");
                    break StepDown::Lost;
                }
                () = tokio::time::sleep_until(next_attempt) => {
                    let claimed_at = Instant::now();
                    let renewal = tokio::select! {
                        r = tokio::time::timeout_at(guarantee.leader_until(), self.store.claim_leadership(&app, &unit, self.config.lease_length())) => r,
                        () = self.cancel.cancelled() => break StepDown::Stop,
                    };
                    match renewal {
                        Ok(Ok(_)) => {
                            guarantee = Guarantee { claimed_at, claim_duration: self.config.claim_duration };
                            next_attempt = guarantee.renew_at();
                            self.status.send_modify(|s| {
                                s.guarantee = Some(guarantee);
                                s.problem = None;
                            });
                            let _ = self.transitions.send(Transition::Renewed { term, guarantee });
                        }
                        Ok(Err(Error::ClaimDenied)) => {
                            info!(application = %app, unit = %unit, term, "renewal denied; stepping down");
                            break StepDown::Lost;
                        }
                        Ok(Err(err)) => {
                            warn!(application = %app, unit = %unit, error = %err.detail(), "renewal failed; retrying");
                            self.status.send_modify(|s| s.problem = Some(err.detail()));
                            next_attempt = Instant::now() + self.config.retry_interval;
                        }
                        Err(_) => {
                            warn!(application = %app, unit = %unit, term, "renewal timed out; no longer leader");
                            break StepDown::Lost;
                        }
                    }
                }
                changed = feed.changed_or_until(None) => {
                    if changed.is_err() {
                        // Keep leading on our own renewals; watch again for revocations.
                        match self.connect().await { Some(f) => *feed = f, None => break StepDown::Stop }
                    }
                }
            }
        };
        if self.status.borrow().guarantee.is_some() {
            self.depose(term, guarantee);
        }
        info!(application = %app, unit = %unit, term, "now a minion");
        outcome
    }

    /// Stops reporting "leader" now and publishes when it stopped (T4, T7).
    fn depose(&self, term: u64, guarantee: Guarantee) {
        let at = Instant::now().min(guarantee.leader_until());
        self.status.send_modify(|s| s.guarantee = None);
        let _ = self.transitions.send(Transition::Deposed { term, at });
    }

    async fn release_quietly(&self) {
        match self
            .store
            .release_leadership(&self.config.application, &self.config.unit)
            .await
        {
            Ok(()) | Err(Error::ClaimNotHeld) => {}
            Err(err) => {
                warn!(application = %self.config.application, error = %err, "could not release the lease")
            }
        }
    }

    fn show(&self, feed: &LeaseFeed) {
        let view = feed.current();
        self.status.send_if_modified(|s| {
            let changed = s.lease != view;
            s.lease = view;
            if s.guarantee.is_none() {
                s.term = s.term.max(s.lease.term);
            }
            changed
        });
    }

    /// Ends the run: releases a lease it may hold (T8), unless the lease is pinned, and marks the
    /// tracker stopped. A pinned claim is kept so that the unit, restarted, resumes it: pins carry
    /// leadership across restarts (P1, P4). It stops reporting "leader" either way.
    async fn finish(self, may_hold: bool) {
        self.status.send_modify(|s| {
            s.guarantee = None;
            s.deciding = false;
        });
        let (app, unit) = (&self.config.application, &self.config.unit);
        if may_hold && self.status.borrow().lease.pinned {
            info!(application = %app, unit = %unit, "the lease is pinned: keeping the claim for this unit's return");
        } else if may_hold {
            self.release_quietly().await;
            info!(application = %app, unit = %unit, "released leadership on shutdown");
        }
        self.status.send_modify(|s| s.stopped = true);
    }
}
