//! The per-application metrics: whether each application has a leader, its term, its changes of
//! holder, and the failover time before each new grant ([`crate::failover`]).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use kube::ResourceExt;
use leadership_kube::crd::LeadershipLease;
use tokio::time::Instant;

use crate::{
    failover::{GapClock, SeenClaim},
    metrics::{LeaseLabels, Metrics},
};

/// Feeds the per-application metrics from what the reconciler sees.
#[derive(Debug)]
pub struct LeaseObserver {
    metrics: Arc<Metrics>,
    clocks: Mutex<HashMap<LeaseLabels, GapClock>>,
}

/// The labels of a lease's series.
pub fn labels(object: &LeadershipLease) -> LeaseLabels {
    LeaseLabels {
        namespace: object.namespace().unwrap_or_default(),
        application: object.name_any(),
    }
}

impl LeaseObserver {
    /// An observer writing to `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        LeaseObserver {
            metrics,
            clocks: Mutex::default(),
        }
    }

    fn clocks(&self) -> MutexGuard<'_, HashMap<LeaseLabels, GapClock>> {
        self.clocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports a lease as seen at `now` (`expired`: its claim ran out by this operator's
    /// judgement).
    pub fn observe(&self, object: &LeadershipLease, expired: bool, now: Instant) {
        let labels = labels(object);
        let status = object.status.as_ref();
        let claim = status
            .and_then(|s| s.holder.clone().map(|holder| (s, holder)))
            .filter(|_| !expired)
            .map(|(s, holder)| SeenClaim {
                holder,
                term: u64::try_from(s.term).unwrap_or_default(),
                renewals: u64::try_from(s.renewals).unwrap_or_default(),
                lease: Duration::from_millis(
                    u64::try_from(s.lease_duration_ms.unwrap_or_default()).unwrap_or_default(),
                ),
            });
        let term = status.map_or(0, |s| u64::try_from(s.term).unwrap_or_default());
        self.metrics.set_lease(&labels, claim.is_some(), term);
        if let Some(gap) = self.clocks().entry(labels).or_default().observe(claim, now) {
            self.metrics.failover_seconds.observe(gap.as_secs_f64());
        }
    }

    /// Reports whether the lease's leader has had an unhealthy app for the grace.
    pub fn leader_unhealthy(&self, object: &LeadershipLease, unhealthy: bool) {
        self.metrics
            .lease_leader_unhealthy
            .get_or_create(&labels(object))
            .set(i64::from(unhealthy));
    }

    /// Counts a change of holder.
    pub fn transition(&self, object: &LeadershipLease) {
        self.metrics.transitions.get_or_create(&labels(object)).inc();
    }

    /// Forgets the leases not in `live`.
    pub fn retain(&self, live: &HashSet<LeaseLabels>) {
        self.clocks().retain(|labels, _| {
            let keep = live.contains(labels);
            if !keep {
                self.metrics.forget_lease(labels);
            }
            keep
        });
    }

    /// Forgets every lease (this replica stopped reconciling).
    pub fn forget_all(&self) {
        self.clocks().clear();
        self.metrics.forget_leases();
    }
}
