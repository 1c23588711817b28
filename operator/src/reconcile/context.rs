//! What the controller keeps between reconciles: each lease's observation and pending handover
//! as this operator times them, and the pod index (fed by the Pod watch).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use kube::{
    Client,
    runtime::{
        events::EventType,
        reflector::{ObjectRef, Store},
    },
};
use leadership::expiry::{ExpiryPolicy, Observation};
use leadership_kube::crd::LeadershipLease;
use tokio::time::Instant;

use super::{MANAGER, observe::Previous};
use crate::{
    events::Events, lease_metrics::LeaseObserver, metrics::Metrics, plan::QUIET_AFTER_FREE,
    pod_index::PodIndex,
};

/// A handover request as the operator times it: (from, term, to).
pub(super) type HandoverKey = (String, i64, Option<String>);

/// What the operator remembers of one lease between reconciles.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) observation: Observation,
    /// The pending handover and when this operator first saw it.
    pub(super) handover: Option<(HandoverKey, Instant)>,
    /// After a handover to the preferred unit was abandoned, no new one before this.
    pub(super) preferred_backoff: Option<Instant>,
    /// What the last visit saw, to report changes (none before the first visit).
    pub(super) previous: Option<Previous>,
    /// When a visit first saw the lease free after one saw it held.
    pub(super) freed_at: Option<Instant>,
    /// The holder (and term) whose app is unhealthy, and when a visit first saw it so.
    pub(super) unhealthy_since: Option<((String, u64), Instant)>,
    /// The version of the object this operator's last write returned: a view older than that
    /// (the watch has not delivered the write yet) is not acted on.
    pub(super) written: Option<u64>,
}

/// How long after an abandoned handover to the preferred unit before another is asked for.
pub const PREFERRED_BACKOFF: Duration = Duration::from_secs(300);

/// How long a handover may wait for its target to take the lease, unless configured.
pub const DEFAULT_HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared by every reconcile.
pub struct Context {
    pub(super) client: Client,
    pub(super) events: Events,
    pub(super) metrics: Arc<Metrics>,
    /// The per-application metrics.
    pub observer: LeaseObserver,
    pub(super) policy: ExpiryPolicy,
    pub(super) handover_timeout: Duration,
    pub(super) quiet_after_free: Duration,
    pub(super) seen: Mutex<HashMap<ObjectRef<LeadershipLease>, Seen>>,
    pub(super) pods: Mutex<PodIndex>,
}

impl Context {
    /// A context for the controller.
    pub fn new(client: Client, identity: &str, metrics: Arc<Metrics>, policy: ExpiryPolicy) -> Self {
        Context {
            events: Events::start(client.clone(), MANAGER, identity, metrics.events_dropped.clone()),
            client,
            observer: LeaseObserver::new(metrics.clone()),
            metrics,
            policy,
            handover_timeout: DEFAULT_HANDOVER_TIMEOUT,
            quiet_after_free: QUIET_AFTER_FREE,
            seen: Mutex::default(),
            pods: Mutex::default(),
        }
    }

    /// The same context, abandoning handovers not taken within `timeout`.
    pub fn with_handover_timeout(self, timeout: Duration) -> Self {
        Context {
            handover_timeout: timeout,
            ..self
        }
    }

    /// The same context, leaving a lease that became free unwritten for `quiet` (not
    /// [`QUIET_AFTER_FREE`]).
    pub fn with_quiet_after_free(self, quiet: Duration) -> Self {
        Context {
            quiet_after_free: quiet,
            ..self
        }
    }

    pub(super) fn seen(&self) -> MutexGuard<'_, HashMap<ObjectRef<LeadershipLease>, Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts timing a claim the moment its watch event arrives: a visit may come much later
    /// (a burst of leases queues their visits), and every moment of that wait would be added to
    /// the claim's expiry. The write committed before its event, so this never starts early.
    pub(super) fn saw(&self, object: &LeadershipLease, now: Instant) {
        let lease = object.to_lease();
        self.seen()
            .entry(ObjectRef::from_obj(object))
            .or_default()
            .observation
            .observe(&lease, now);
    }

    /// Notes the object a write of this operator returned.
    pub(super) fn wrote(&self, written: &LeadershipLease) {
        self.seen()
            .entry(ObjectRef::from_obj(written))
            .or_default()
            .written = written.version();
    }

    /// Whether `object` is older than what this operator last wrote to it: the watch is behind
    /// this operator's own write, whose event visits the lease again.
    pub(super) fn behind_own_write(&self, object: &LeadershipLease) -> bool {
        let written = self
            .seen()
            .get(&ObjectRef::from_obj(object))
            .and_then(|s| s.written);
        matches!((object.version(), written), (Some(seen), Some(written)) if seen < written)
    }

    pub(super) fn pods(&self) -> MutexGuard<'_, PodIndex> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an Event about `object` (written by a task of its own: a visit never waits for it).
    pub(super) fn event(&self, object: &LeadershipLease, type_: EventType, reason: &str, note: String) {
        self.events.send(object, type_, reason, note);
    }

    /// Keeps the gauges current and forgets leases that are gone.
    pub fn refresh(&self, leases: &Store<LeadershipLease>) {
        let state = leases.state();
        let live: HashSet<ObjectRef<LeadershipLease>> =
            state.iter().map(|l| ObjectRef::from_obj(l.as_ref())).collect();
        let mut gone = Vec::new();
        self.seen().retain(|key, _| {
            let keep = live.contains(key);
            if !keep {
                gone.push((key.namespace.clone().unwrap_or_default(), key.name.clone()));
            }
            keep
        });
        {
            let mut pods = self.pods();
            for (namespace, application) in &gone {
                pods.forget_lease(namespace, application);
            }
            self.metrics
                .pods_indexed
                .set(i64::try_from(pods.len()).unwrap_or(i64::MAX));
        }
        self.observer
            .retain(&state.iter().map(|l| crate::lease_metrics::labels(l)).collect());
        self.metrics
            .leases
            .set(i64::try_from(state.len()).unwrap_or(i64::MAX));
        let held = state
            .iter()
            .filter(|l| l.status.as_ref().is_some_and(|s| s.holder.is_some()))
            .count();
        self.metrics.leaders.set(i64::try_from(held).unwrap_or(i64::MAX));
    }
}
