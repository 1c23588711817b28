//! The in-memory store: every leadership interface for one process. It is the embedded default for
//! local development and the reference that the conformance suite is written against.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

use crate::{
    Error, Result,
    api::{Checker, Claimer, Eligibility, Grant, LeaseFeed, LeaseView, Pinner, Reader, Revoker, Watcher},
    expiry::{ExpiryPolicy, Observation},
    lease::Lease,
    validate::{self, DurationLimits},
};

/// One process's leases, shared by clones.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    limits: DurationLimits,
    leases: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    lease: Lease,
    /// The store is the only writer, so it observes every write as it happens.
    seen: Observation,
    feed: watch::Sender<LeaseView>,
    /// The units that said they should not lead, and why.
    ineligible: BTreeMap<String, String>,
}

impl Entry {
    fn new() -> Self {
        Entry {
            lease: Lease::default(),
            seen: Observation::default(),
            feed: watch::Sender::new(LeaseView::default()),
            ineligible: BTreeMap::new(),
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.seen.is_expired(&self.lease, &POLICY, now)
    }

    fn set(&mut self, lease: Lease, now: Instant) {
        self.seen.observe(&lease, now);
        self.lease = lease;
        self.publish();
    }

    fn publish(&self) {
        let mut view = LeaseView::of(&self.lease, &self.seen, &POLICY);
        view.stand_aside = self.ineligible.keys().cloned().collect();
        self.feed.send_replace(view);
    }
}

/// Writer and observer share one clock: a claim lasts exactly its duration from its write.
const POLICY: ExpiryPolicy = ExpiryPolicy {
    max_drift: 0.0,
    min_margin: Duration::ZERO,
};

impl MemoryStore {
    /// An empty store accepting claim durations within `limits`.
    pub fn new(limits: DurationLimits) -> Self {
        MemoryStore {
            inner: Arc::new(Inner {
                limits,
                leases: Mutex::default(),
            }),
        }
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave a lease half-written (each write is one
        // assignment), so a poisoned lock is still consistent.
        self.inner
            .leases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update<T>(
        &self,
        application: &str,
        change: impl FnOnce(&mut Entry, Instant) -> Result<T>,
    ) -> Result<T> {
        let mut leases = self.leases();
        let entry = leases.entry(application.to_owned()).or_insert_with(Entry::new);
        change(entry, Instant::now())
    }
}

impl Claimer for MemoryStore {
    async fn claim_leadership(&self, application: &str, unit: &str, duration: Duration) -> Result<Grant> {
        validate::application_name(application)?;
        validate::unit_name(unit)?;
        self.inner.limits.check(duration)?;
        self.update(application, |entry, now| {
            let (next, _) = entry.lease.claim(unit, duration, entry.expired(now))?;
            let term = next.term;
            entry.set(next, now);
            Ok(Grant { term })
        })
    }

    async fn release_leadership(&self, application: &str, unit: &str) -> Result<()> {
        validate::application_name(application)?;
        validate::unit_name(unit)?;
        self.update(application, |entry, now| {
            let next = entry.lease.release(unit)?;
            entry.set(next, now);
            Ok(())
        })
    }
}

impl Checker for MemoryStore {
    async fn leadership_term(&self, application: &str, unit: &str) -> Result<u64> {
        let leases = self.leases();
        let now = Instant::now();
        // The holder's guarantee runs from its own last write, pinned or not (P1); a pending
        // revocation or handover ends it at once (V2).
        leases
            .get(application)
            .filter(|entry| {
                entry
                    .seen
                    .runs_out_at(&entry.lease, &POLICY)
                    .is_some_and(|at| now < at)
            })
            .and_then(|entry| entry.lease.vouches_for(unit))
            .ok_or_else(|| Error::not_leader(application, unit))
    }
}

impl Eligibility for MemoryStore {
    async fn record_eligibility(&self, application: &str, unit: &str, reason: Option<&str>) -> Result<()> {
        self.update(application, |entry, _| {
            let changed = match reason {
                Some(reason) => {
                    entry
                        .ineligible
                        .insert(unit.to_owned(), reason.to_owned())
                        .as_deref()
                        != Some(reason)
                }
                None => entry.ineligible.remove(unit).is_some(),
            };
            if changed {
                entry.publish();
            }
            Ok(())
        })
    }

    async fn declared_ineligible(&self, application: &str, unit: &str) -> Result<Option<String>> {
        validate::application_name(application)?;
        validate::unit_name(unit)?;
        Ok(self
            .leases()
            .get(application)
            .and_then(|entry| entry.ineligible.get(unit).cloned()))
    }
}

impl Pinner for MemoryStore {
    async fn pin_leadership(&self, application: &str, entity: &str) -> Result<()> {
        validate::application_name(application)?;
        validate::entity_name(entity)?;
        self.update(application, |entry, now| {
            if let Some(next) = entry.lease.pin(entity) {
                entry.set(next, now);
            }
            Ok(())
        })
    }

    async fn unpin_leadership(&self, application: &str, entity: &str) -> Result<()> {
        validate::application_name(application)?;
        validate::entity_name(entity)?;
        self.update(application, |entry, now| {
            if let Some(next) = entry.lease.unpin(entity) {
                entry.set(next, now);
            }
            Ok(())
        })
    }

    async fn pinned_leadership(&self) -> Result<BTreeMap<String, Vec<String>>> {
        Ok(self
            .leases()
            .iter()
            .filter(|(_, entry)| entry.lease.is_pinned())
            .map(|(app, entry)| (app.clone(), entry.lease.pins.iter().cloned().collect()))
            .collect())
    }
}

impl Reader for MemoryStore {
    async fn leaders(&self) -> Result<BTreeMap<String, String>> {
        let now = Instant::now();
        Ok(self
            .leases()
            .iter()
            .filter(|(_, entry)| !entry.expired(now))
            .filter_map(|(app, entry)| Some((app.clone(), entry.lease.holder_unit()?.to_owned())))
            .collect())
    }
}

impl Revoker for MemoryStore {
    async fn revoke_leadership(&self, application: &str, unit: &str) -> Result<()> {
        validate::application_name(application)?;
        validate::unit_name(unit)?;
        self.update(application, |entry, now| {
            if entry.expired(now) {
                // A run-out claim is no claim: clear it so the revocation has nothing to act on.
                if let Some(next) = entry.lease.expire(true) {
                    entry.set(next, now);
                }
            }
            if let Some(next) = entry.lease.revoke(unit)? {
                entry.set(next, now);
            }
            Ok(())
        })
    }
}

impl Watcher for MemoryStore {
    async fn watch(&self, application: &str) -> Result<LeaseFeed> {
        validate::application_name(application)?;
        let mut leases = self.leases();
        let entry = leases.entry(application.to_owned()).or_insert_with(Entry::new);
        Ok(LeaseFeed::new(entry.feed.subscribe()))
    }
}
