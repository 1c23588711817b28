//! The tracker's task: waits as a minion, claims, leads and renews, steps down, and releases on
//! stop, carrying out the pure rules of [`super::timing`] and [`super::decide`] against a store.

use std::time::Duration;

use tokio::{
    sync::{broadcast, mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    Backoff, Command, Guarantee, LeaderVerdict, TrackerConfig, TrackerStatus, Transition, judge_as_leader,
    may_claim, timing::STAND_ASIDE,
};
use crate::{
    Error,
    api::{Claimer, LeaseFeed, Watcher},
};

/// Why a leader stepped down.
enum StepDown {
    /// The tracker is stopping.
    Stop,
    /// Stepped down and must hold off claiming again (after a release or a revocation).
    HoldOff,
    /// Lost the lease or its guarantee; may claim again when it is free.
    Lost,
}

/// The task's state: the store, what to keep, and the channels to the handle.
pub(super) struct Run<S> {
    pub(super) store: S,
    pub(super) config: TrackerConfig,
    pub(super) status: watch::Sender<TrackerStatus>,
    pub(super) transitions: broadcast::Sender<Transition>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) cancel: CancellationToken,
}

/// After a release (or while standing aside) the unit waits until another unit took the lease or
/// the time given passed.
struct HoldOff {
    until: Instant,
    released_term: u64,
}

impl<S: Claimer + Watcher> Run<S> {
    pub(super) async fn run(mut self) {
        let app = self.config.application.clone();
        let unit = self.config.unit.clone();
        let Some(mut feed) = self.connect().await else {
            return self.finish(false).await;
        };
        let mut hold_off: Option<HoldOff> = None;
        let mut stood_aside: Option<u64> = None;
        let mut backoff = Backoff::new(self.config.timing.retry_interval);
        loop {
            self.show(&feed);
            if !self
                .wait_for_chance(&mut feed, &mut hold_off, &mut stood_aside)
                .await
            {
                return self.finish(false).await;
            }
            let claimed_at = Instant::now();
            let claimed = tokio::select! {
                claimed = self.store.claim_leadership(&app, &unit, self.config.lease_length()) => claimed,
                () = self.cancel.cancelled() => return self.finish(true).await,
            };
            if matches!(claimed, Ok(_) | Err(Error::ClaimDenied)) {
                backoff.reset();
            }
            match claimed {
                Ok(grant) => {
                    self.status.send_modify(|s| s.problem = None);
                    info!(application = %app, unit = %unit, term = grant.term, "became leader");
                    match self
                        .lead(
                            &mut feed,
                            Guarantee {
                                claimed_at,
                                timing: self.config.timing,
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
                    let wait = backoff.next(fastrand::f64());
                    warn!(application = %app, unit = %unit, error = %err.detail(), retry_in = ?wait, "claim failed; retrying");
                    // No inference may be made: a claim ticket answers false until a claim works.
                    self.status.send_modify(|s| {
                        s.problem = Some(err.detail());
                        s.deciding = false;
                    });
                    if !self.pause(wait).await {
                        return self.finish(true).await;
                    }
                }
            }
        }
    }

    /// Subscribes to the lease, retrying (with a [`Backoff`]) until it works or the tracker stops. Never gives up: a missing CRD, a refusal or a dead API server is reported
    /// in the status and the log, and fixed by fixing it, not by restarting the process.
    async fn connect(&mut self) -> Option<LeaseFeed> {
        let mut backoff = Backoff::new(self.config.timing.retry_interval);
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
                    let wait = backoff.next(fastrand::f64());
                    warn!(application = %self.config.application, error = %err.detail(), retry_in = ?wait, "cannot watch the lease; retrying");
                    self.status.send_modify(|s| s.problem = Some(err.detail()));
                    if !self.pause(wait).await {
                        return None;
                    }
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
    /// stopping. A unit asked to stand aside holds off once per term of a free lease
    /// (`stood_aside`: the last such term). Driven by the feed: no polling (T6).
    async fn wait_for_chance(
        &mut self,
        feed: &mut LeaseFeed,
        hold_off: &mut Option<HoldOff>,
        stood_aside: &mut Option<u64>,
    ) -> bool {
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
            if hold_off.is_none()
                && view.holder_at(now).is_none()
                && view.stand_aside.contains(&self.config.unit)
                && *stood_aside != Some(view.term)
            {
                debug!(application = %self.config.application, unit = %self.config.unit, "standing aside: the others may take the free lease first");
                *stood_aside = Some(view.term);
                *hold_off = Some(HoldOff {
                    until: now + STAND_ASIDE,
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
    /// the tracker stops. Renews the slack before "leader" would end, or up to a tenth of the
    /// renewal interval earlier ([`Guarantee::renew_at_spread`]), and retries until it does. A grant that came back with less than
    /// that slack left (a slow API server) is renewed before "leader" is published, so that a
    /// unit never announces a leadership it would lose at once.
    async fn lead(&mut self, feed: &mut LeaseFeed, first: Guarantee, term: u64) -> StepDown {
        let (app, unit) = (self.config.application.clone(), self.config.unit.clone());
        let mut guarantee = first;
        let mut next_attempt = guarantee.renew_at_spread(fastrand::f64());
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
            if !published && Instant::now() < guarantee.renew_at() {
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
                    if published {
                        self.depose(term, guarantee);
                    }
                    let released = self.store.release_leadership(&app, &unit).await;
                    info!(application = %app, unit = %unit, term, "released leadership on request");
                    let _ = reply.send(released.map(|()| true));
                    break StepDown::HoldOff;
                }
                () = tokio::time::sleep_until(guarantee.leader_until()), if published => {
                    warn!(application = %app, unit = %unit, term, "could not renew in time; no longer leader");
                    break StepDown::Lost;
                }
                () = tokio::time::sleep_until(next_attempt) => {
                    let claimed_at = Instant::now();
                    // A published leader must renew before "leader" ends; an unpublished one
                    // before this attempt's own grant would.
                    let deadline = if published {
                        guarantee.leader_until()
                    } else {
                        Guarantee { claimed_at, timing: self.config.timing }.leader_until()
                    };
                    let renewal = tokio::select! {
                        r = tokio::time::timeout_at(deadline, self.store.claim_leadership(&app, &unit, self.config.lease_length())) => r,
                        () = self.cancel.cancelled() => break StepDown::Stop,
                    };
                    match renewal {
                        Ok(Ok(_)) => {
                            guarantee = Guarantee { claimed_at, timing: self.config.timing };
                            next_attempt = guarantee.renew_at_spread(fastrand::f64());
                            self.status.send_modify(|s| {
                                s.guarantee = Some(guarantee);
                                s.problem = None;
                            });
                            if published {
                                let _ = self.transitions.send(Transition::Renewed { term, guarantee });
                            }
                        }
                        Ok(Err(Error::ClaimDenied)) => {
                            info!(application = %app, unit = %unit, term, "renewal denied; stepping down");
                            break StepDown::Lost;
                        }
                        Ok(Err(err)) => {
                            warn!(application = %app, unit = %unit, error = %err.detail(), "renewal failed; retrying");
                            self.status.send_modify(|s| s.problem = Some(err.detail()));
                            next_attempt = Instant::now() + self.config.timing.retry_interval;
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
