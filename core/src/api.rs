//! The interfaces of the leadership package, after Juju's: Claimer, Checker, Token, Pinner, Reader,
//! Revoker, Tracker and Ticket, plus [`Watcher`], the push-based view of a lease that trackers and
//! blocked callers wait on instead of polling.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    time::Duration,
};

use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    Error, Result,
    expiry::{ExpiryPolicy, Observation},
    lease::{Handover, Lease},
};

/// What a successful claim returns: the fencing term of the grant (SPEC K2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The fencing term under which the unit leads.
    pub term: u64,
}

/// Claims leadership for units (SPEC C1-C7). Every claimer can also be watched: blocking until
/// a release is written once, over the store's [`Watcher`].
pub trait Claimer: Watcher {
    /// Claims `application`'s lease for `unit` for `duration`. On success the unit is leader for at
    /// least `duration` from the moment of the call (C4); [`Error::ClaimDenied`] if another unit
    /// holds it (C3).
    fn claim_leadership(
        &self,
        application: &str,
        unit: &str,
        duration: Duration,
    ) -> impl Future<Output = Result<Grant>> + Send;

    /// Returns as soon as `application` has no current holder (at once if it has none now), or
    /// [`Error::BlockCancelled`] when `cancel` fires (C6).
    fn block_until_leadership_released(
        &self,
        application: &str,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            crate::validate::application_name(application)?;
            block_until_released(self, application, cancel).await
        }
    }

    /// Gives up `unit`'s lease now, so another unit can take it at once (T8); not in Juju's
    /// interface. [`Error::ClaimNotHeld`] if `unit` does not hold it.
    fn release_leadership(&self, application: &str, unit: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Checks leadership for fencing (SPEC K1).
pub trait Checker: Clone + Send + Sync {
    /// The fencing term while `unit` holds `application`'s lease and its guarantee, as this store
    /// knows it, has not run out; else [`Error::NotLeader`]. Called by [`LeadershipToken::check`],
    /// which has checked both names.
    fn leadership_term(&self, application: &str, unit: &str) -> impl Future<Output = Result<u64>> + Send;

    /// A token for `unit`'s leadership of `application`; does no work until checked.
    fn leadership_check(&self, application: &str, unit: &str) -> LeadershipToken<Self> {
        LeadershipToken {
            store: self.clone(),
            application: application.to_owned(),
            unit: unit.to_owned(),
        }
    }
}

/// A leadership check that can be repeated (SPEC K1, K2).
pub trait Token: Send + Sync {
    /// The fencing term while the unit holds the lease and its guarantee has not run out; else
    /// [`Error::NotLeader`].
    fn check(&self) -> impl Future<Output = Result<u64>> + Send;
}

/// The [`Token`] a [`Checker`] hands out: one unit's leadership of one application, checked
/// against that store each time.
#[derive(Clone, Debug)]
pub struct LeadershipToken<S> {
    store: S,
    application: String,
    unit: String,
}

impl<S: Checker> Token for LeadershipToken<S> {
    async fn check(&self) -> Result<u64> {
        crate::validate::application_name(&self.application)?;
        crate::validate::unit_name(&self.unit)?;
        self.store.leadership_term(&self.application, &self.unit).await
    }
}

/// Pins leases so that they do not expire (SPEC P1-P4).
pub trait Pinner: Send + Sync {
    /// Pins `application`'s lease on behalf of `entity`; pinning twice is one pin.
    fn pin_leadership(&self, application: &str, entity: &str) -> impl Future<Output = Result<()>> + Send;
    /// Removes `entity`'s pin; removing a pin that is not there is ok.
    fn unpin_leadership(&self, application: &str, entity: &str) -> impl Future<Output = Result<()>> + Send;
    /// Application -> entities, for the applications that have pins.
    fn pinned_leadership(&self) -> impl Future<Output = Result<BTreeMap<String, Vec<String>>>> + Send;
}

/// Lets a unit's app say that it should not lead now (warming up, lagging, draining), and again
/// that it may: a leader that said so is asked to hand over to a healthy standby, a standby that
/// said so stands aside at a free lease ([`LeaseView::stand_aside`]). Advice about who leads
/// next, never a rule of the lease: every grant keeps its guarantee.
pub trait Eligibility: Send + Sync {
    /// Declares `unit` ineligible to lead `application` for the reason in `ineligible`, or
    /// eligible again with `None`. Declaring what is already declared changes nothing. Checks the
    /// names and the reason, then has the store record it.
    fn declare_eligibility(
        &self,
        application: &str,
        unit: &str,
        ineligible: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            crate::validate::application_name(application)?;
            crate::validate::unit_name(unit)?;
            crate::validate::ineligible_reason(ineligible)?;
            self.record_eligibility(application, unit, ineligible).await
        }
    }

    /// Records a declaration that [`Eligibility::declare_eligibility`] has checked: `unit`'s
    /// reason not to lead `application`, or `None` when it may.
    fn record_eligibility(
        &self,
        application: &str,
        unit: &str,
        reason: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Why `unit` said it should not lead `application`, as the store keeps it; `None` when it did
    /// not, or said since that it may. A restarted sidecar reads its app's standing declaration.
    fn declared_ineligible(
        &self,
        application: &str,
        unit: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
}

/// Reads who leads (SPEC R1).
pub trait Reader: Send + Sync {
    /// Application -> holder for every application with a current holder in the store's scope.
    fn leaders(&self) -> impl Future<Output = Result<BTreeMap<String, String>>> + Send;
}

/// Revokes leadership (SPEC V1-V3).
pub trait Revoker: Send + Sync {
    /// Revokes `unit`'s leadership of `application`: ok if no unit holds it,
    /// [`Error::ClaimNotHeld`] if another unit does.
    fn revoke_leadership(&self, application: &str, unit: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Pushes a store's view of a lease at every change, so that waiting never polls (SPEC C6, T6).
pub trait Watcher: Send + Sync {
    /// A feed of `application`'s lease as this store sees it.
    fn watch(&self, application: &str) -> impl Future<Output = Result<LeaseFeed>> + Send;
}

/// A store's view of one lease at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// The unit named as holder, if any.
    pub holder: Option<String>,
    /// The fencing term.
    pub term: u64,
    /// Whether any entity pins the lease.
    pub pinned: bool,
    /// A unit whose revocation is pending.
    pub revoked: Option<String>,
    /// When this observer will judge the claim run out; `None` with no holder or while pinned.
    pub expires_at: Option<Instant>,
    /// A pending handover, which decides who may claim.
    pub handover: Option<Handover>,
    /// Units that take a free lease only after the others had their chance: their app is
    /// unhealthy, or it said it should not lead now. Advice, not a rule: a unit that stood aside
    /// once claims if nobody else did.
    pub stand_aside: BTreeSet<String>,
}

impl LeaseView {
    /// What an observer that has `seen` the lease under `policy` knows of `lease`.
    pub fn of(lease: &Lease, seen: &Observation, policy: &ExpiryPolicy) -> LeaseView {
        LeaseView {
            holder: lease.holder_unit().map(str::to_owned),
            term: lease.term,
            pinned: lease.is_pinned(),
            revoked: lease.revoked.clone(),
            expires_at: seen.expires_at(lease, policy),
            handover: lease.handover.clone(),
            stand_aside: BTreeSet::new(),
        }
    }

    /// The current holder at `now`: the named holder unless its claim has run out.
    pub fn holder_at(&self, now: Instant) -> Option<&str> {
        match self.expires_at {
            Some(at) if now >= at => None,
            _ => self.holder.as_deref(),
        }
    }
}

/// A live view of one lease, fed by its store.
#[derive(Clone, Debug)]
pub struct LeaseFeed {
    rx: watch::Receiver<LeaseView>,
}

impl LeaseFeed {
    /// A feed over a store's channel.
    pub fn new(rx: watch::Receiver<LeaseView>) -> Self {
        LeaseFeed { rx }
    }

    /// The latest view.
    pub fn current(&self) -> LeaseView {
        self.rx.borrow().clone()
    }

    /// Waits for the view to change, for the current claim to run out, or for `deadline`, whichever
    /// comes first. Fails with [`Error::Unavailable`] if the store stopped feeding.
    pub async fn changed_or_until(&mut self, deadline: Option<Instant>) -> Result<()> {
        let expires = self.rx.borrow_and_update().expires_at;
        let wake = match (expires, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = self.rx.changed() => changed.map_err(|_| Error::unavailable("the lease feed stopped")),
            () = timer => Ok(()),
        }
    }

    /// Waits until `ready` holds for the view at the current time; cancel-safe.
    pub async fn wait_until(
        &mut self,
        mut ready: impl FnMut(&LeaseView, Instant) -> bool,
    ) -> Result<LeaseView> {
        loop {
            let view = self.current();
            if ready(&view, Instant::now()) {
                return Ok(view);
            }
            self.changed_or_until(None).await?;
        }
    }
}

/// Waits until the claim held when the call started is over, over any [`Watcher`] (SPEC C6, V3):
/// at once if nobody holds the lease; otherwise when a view shows no current holder *or a later
/// term*. A feed keeps only its latest view, so a release followed at once by a standby's claim
/// may never be seen as "no holder"; the risen term still proves that the claim ended.
pub async fn block_until_released<W: Watcher + ?Sized>(
    store: &W,
    application: &str,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut feed = store.watch(application).await?;
    let held_in = feed.current().term;
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(Error::BlockCancelled),
        view = feed.wait_until(|view, now| claim_ended(view, held_in, now)) => view.map(drop),
    }
}

/// Whether the claim of term `held_in` is over in `view` at `now`: nobody holds the lease, or a
/// later grant has replaced it (pure; terms rise at every grant and never fall).
pub fn claim_ended(view: &LeaseView, held_in: u64, now: Instant) -> bool {
    view.holder_at(now).is_none() || view.term > held_in
}

/// A future answer about leadership (SPEC T2-T5).
pub trait Ticket: Send + Sync {
    /// Waits for the answer; returns the same value every time (T5).
    fn wait(&self) -> impl Future<Output = bool> + Send;
    /// Completes when the answer is known, without consuming it: for `select!` (T5).
    fn ready(&self) -> impl Future<Output = ()> + Send;
}

/// Tracks one unit's leadership of one application (SPEC T1-T8).
pub trait Tracker: Send + Sync {
    /// The ticket type.
    type Ticket: Ticket;
    /// The application tracked.
    fn application_name(&self) -> &str;
    /// The guarantee d that "leader" always carries.
    fn claim_duration(&self) -> Duration;
    /// True only if leadership is guaranteed for at least d from this request (T2).
    fn claim_leader(&self) -> Self::Ticket;
    /// True as soon as the unit becomes leader; false if the tracker stops first (T3).
    fn wait_leader(&self) -> Self::Ticket;
    /// Ready as soon as the unit is no longer guaranteed to be leader (T4).
    fn wait_minion(&self) -> Self::Ticket;
}
