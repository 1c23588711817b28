//! What the controller keeps between reconciles: each lease's observation and pending handover
//! as this operator times them, the pods' readiness, termination and leader labels (fed by the Pod
//! watch), and the writes and Events that act on pods and leases outside a reconcile's plan.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::{
        events::EventType,
        reflector::{ObjectRef, Store},
    },
};
use leadership::expiry::{ExpiryPolicy, Observation};
use leadership_kube::crd::LeadershipLease;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Error, MANAGER, not_found};
use crate::{
    events::Events,
    lease_metrics::LeaseObserver,
    metrics::Metrics,
    plan::{self, LEADER_LABEL, LEADER_OF_LABEL},
};

/// What the operator remembers of one lease between reconciles.
/// A handover request as the operator times it: (from, term, to).
pub(super) type HandoverKey = (String, i64, Option<String>);

#[derive(Default)]
pub(super) struct Seen {
    pub(super) observation: Observation,
    /// The pending handover and when this operator first saw it.
    pub(super) handover: Option<(HandoverKey, Instant)>,
    /// After a handover to the preferred unit was abandoned, no new one before this.
    pub(super) preferred_backoff: Option<Instant>,
    pub(super) holder: Option<(String, u64)>,
    pub(super) pins: BTreeSet<String>,
    pub(super) visited: bool,
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
    pub(super) seen: Mutex<HashMap<ObjectRef<LeadershipLease>, Seen>>,
    pub(super) terminated: Mutex<HashSet<(String, String)>>,
    /// Every known Pod, by (namespace, name), with the application it is labelled leader of.
    pub(super) leader_labels: Mutex<HashMap<(String, String), Option<String>>>,
    /// Pods whose Ready condition is true and that are not being deleted.
    pub(super) ready: Mutex<HashSet<(String, String)>>,
}

impl Context {
    /// A context for the controller.
    pub fn new(client: Client, identity: &str, metrics: Arc<Metrics>, policy: ExpiryPolicy) -> Self {
        Context {
            events: Events::new(client.clone(), MANAGER, identity),
            client,
            observer: LeaseObserver::new(metrics.clone()),
            metrics,
            policy,
            handover_timeout: DEFAULT_HANDOVER_TIMEOUT,
            seen: Mutex::default(),
            terminated: Mutex::default(),
            leader_labels: Mutex::default(),
            ready: Mutex::default(),
        }
    }

    pub(super) fn ready(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The same context, abandoning handovers not taken within `timeout`.
    pub fn with_handover_timeout(self, timeout: Duration) -> Self {
        Context {
            handover_timeout: timeout,
            ..self
        }
    }

    pub(super) fn leader_labels(&self) -> MutexGuard<'_, HashMap<(String, String), Option<String>>> {
        self.leader_labels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the leader labels of `application` in `namespace` to `holder`'s Pod: first off every
    /// other Pod, then onto the holder's, so two Pods never carry them at once.
    pub(super) async fn sync_leader_labels(
        &self,
        namespace: &str,
        application: &str,
        holder: Option<&str>,
    ) -> Result<(), Error> {
        let changes = {
            let pods = self.leader_labels();
            plan::leader_labels(
                pods.iter()
                    .filter(|((ns, _), _)| ns == namespace)
                    .map(|((_, pod), leads)| (pod.as_str(), leads.as_deref())),
                application,
                holder,
            )
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let label = |value: serde_json::Value, leads: serde_json::Value| serde_json::json!({ "metadata": { "labels": { LEADER_LABEL: value, LEADER_OF_LABEL: leads } } });
        for pod in &changes.remove {
            let patch = label(serde_json::Value::Null, serde_json::Value::Null);
            match pods
                .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(err) if not_found(&err) => {}
                Err(source) => {
                    return Err(Error::Kube {
                        action: "remove the leader label",
                        source,
                    });
                }
            }
            self.leader_labels()
                .insert((namespace.to_owned(), pod.clone()), None);
            info!(pod = %pod, %application, "leader label removed");
        }
        if let Some(pod) = &changes.add {
            let patch = label("true".into(), application.into());
            match pods
                .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.leader_labels()
                        .insert((namespace.to_owned(), pod.clone()), Some(application.to_owned()));
                    info!(pod = %pod, %application, "leader label set");
                }
                Err(err) if not_found(&err) => {}
                Err(source) => {
                    return Err(Error::Kube {
                        action: "set the leader label",
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    pub(super) fn seen(&self) -> MutexGuard<'_, HashMap<ObjectRef<LeadershipLease>, Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn terminated(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        self.terminated.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn event(&self, object: &LeadershipLease, type_: EventType, reason: &str, note: String) {
        if let Err(err) = self.events.publish(object, type_, reason, note).await {
            warn!(error = %err, reason, "could not record an Event");
        }
    }

    /// Keeps the gauges current and forgets leases that are gone.
    pub fn refresh(&self, leases: &Store<LeadershipLease>) {
        let state = leases.state();
        let live: HashSet<ObjectRef<LeadershipLease>> =
            state.iter().map(|l| ObjectRef::from_obj(l.as_ref())).collect();
        self.seen().retain(|key, _| live.contains(key));
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
