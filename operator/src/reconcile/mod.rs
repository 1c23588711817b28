//! The controller: watches LeadershipLeases (and pods, for pod loss), times each claim on the
//! operator's own clock, and carries out [`crate::plan`]'s decisions with compare-and-swap writes.
//! In steady state (holders renewing) it writes nothing.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::EventType,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use leadership_kube::crd::{HandoverRequest, LeadershipLease};
use tokio::time::Instant;
use tracing::{info, instrument, warn};

use crate::{
    metrics::KindLabel,
    plan::{self, ClaimStep, HandoverStep, Judgement, LEADER_LABEL, LEADER_OF_LABEL, RevocationStep},
};

/// The field manager of the operator's status writes.
pub const MANAGER: &str = "leadership-operator";

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write or read failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: &'static str,
        /// The failure.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube { action, .. } => action,
        }
    }
}

mod context;

pub use self::context::{Context, DEFAULT_HANDOVER_TIMEOUT, PREFERRED_BACKOFF};

/// Whether every container of `pod` has terminated, as its kubelet reports: the only proof that
/// the unit can no longer act.
pub fn all_containers_terminated(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let Some(containers) = status.container_statuses.as_ref() else {
        return false;
    };
    let declared = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let init = status.init_container_statuses.as_deref().unwrap_or_default();
    containers.len() >= declared.max(1)
        && containers
            .iter()
            .chain(init)
            .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
}

fn not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

fn conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409 || status.code == 404)
}

/// One reconcile of one lease.
#[instrument(skip_all, fields(namespace = %object.namespace().unwrap_or_default(), application = %object.name_any()))]
pub async fn reconcile(object: Arc<LeadershipLease>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&object, &ctx).await;
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(object: &LeadershipLease, ctx: &Context) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<LeadershipLease> = Api::namespaced(ctx.client.clone(), &namespace);
    let lease = object.to_lease();
    let now = Instant::now();

    let (expired, locked, runs_out_at, expires_at, changes, handover_due) = {
        let mut seen = ctx.seen();
        let entry = seen.entry(ObjectRef::from_obj(object)).or_default();
        entry.observation.observe(&lease, now);
        // A handover is timed on this operator's clock from when it first saw it.
        let request = object
            .spec
            .handover
            .as_ref()
            .map(|h| (h.from.clone(), h.term, h.to.clone()));
        entry.handover = match (request, entry.handover.take()) {
            (Some(key), Some((seen_key, since))) if key == seen_key => Some((key, since)),
            (Some(key), _) => Some((key, now)),
            (None, _) => None,
        };
        let handover_due = entry
            .handover
            .as_ref()
            .map(|(_, since)| *since + ctx.handover_timeout);
        let holder = lease.holder_unit().map(|h| (h.to_owned(), lease.term));
        let changes = entry.visited.then(|| (entry.holder.clone(), entry.pins.clone()));
        entry.holder = holder;
        entry.pins = lease.pins.clone();
        entry.visited = true;
        (
            entry.observation.is_expired(&lease, &ctx.policy, now),
            entry.observation.is_locked(&lease, &ctx.policy, now),
            entry.observation.runs_out_at(&lease, &ctx.policy),
            entry.observation.expires_at(&lease, &ctx.policy),
            changes,
            handover_due,
        )
    };
    ctx.observer.observe(object, expired, now);
    if let Some((before, pins_before)) = changes {
        report_changes(ctx, object, before, pins_before).await;
    }

    let holder_terminated = lease
        .holder_unit()
        .is_some_and(|holder| ctx.terminated().contains(&(namespace.clone(), holder.to_owned())));
    let judged = Judgement {
        expired,
        locked,
        holder_terminated,
        handover_overdue: handover_due.is_some_and(|due| now >= due),
    };
    let plan = plan::plan(object, &judged, Timestamp::now());

    if let Some(step) = &plan.claim {
        let mut next = object.clone();
        next.status = Some(object.status_for(step.next(), step.reason(), Timestamp::now()));
        match api.replace_status(&name, &PostParams::default(), &next).await {
            Ok(_) => {
                let holder = lease.holder_unit().unwrap_or_default().to_owned();
                match step {
                    ClaimStep::Expire(_) => {
                        ctx.metrics.expiries.inc();
                        info!(%holder, term = lease.term, "claim ran out; cleared");
                    }
                    ClaimStep::PodGone(_) => {
                        ctx.metrics.pod_releases.inc();
                        info!(%holder, term = lease.term, "holder's containers all terminated; released early");
                    }
                }
            }
            Err(err) if conflict(&err) => return Ok(Action::requeue(Duration::from_millis(100))),
            Err(source) => {
                return Err(Error::Kube {
                    action: "clear a claim",
                    source,
                });
            }
        }
        // The write shows up as a watch event, which reconciles again.
        return Ok(Action::await_change());
    }

    if let Some(status) = &plan.status {
        let patch = serde_json::json!({
            "apiVersion": "leadership.dev/v1alpha1",
            "kind": "LeadershipLease",
            "status": {
                "conditions": status.conditions,
                "pinned": status.pinned,
                "locked": status.locked,
                "observedGeneration": status.observed_generation,
            }
        });
        api.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(|source| Error::Kube {
                action: "write conditions",
                source,
            })?;
    }

    if let Some(step) = &plan.revocation {
        let mut next = object.clone();
        next.spec.revocation = None;
        match api.replace(&name, &PostParams::default(), &next).await {
            Ok(_) => match step {
                RevocationStep::Done { unit } => {
                    ctx.metrics
                        .revocations
                        .get_or_create(&KindLabel { kind: "done".into() })
                        .inc();
                    ctx.event(
                        object,
                        EventType::Normal,
                        "Revoked",
                        format!("{unit}'s leadership was revoked"),
                    )
                    .await;
                }
                RevocationStep::NotHeld { unit } => {
                    ctx.metrics
                        .revocations
                        .get_or_create(&KindLabel {
                            kind: "not_held".into(),
                        })
                        .inc();
                    ctx.event(
                        object,
                        EventType::Warning,
                        "ClaimNotHeld",
                        format!("cannot revoke {unit}: leadership lease not held"),
                    )
                    .await;
                }
            },
            Err(err) if conflict(&err) => return Ok(Action::requeue(Duration::from_millis(100))),
            Err(source) => {
                return Err(Error::Kube {
                    action: "clear a revocation",
                    source,
                });
            }
        }
    }

    if let Some(step) = &plan.handover {
        let mut next = object.clone();
        next.spec.handover = None;
        match api.replace(&name, &PostParams::default(), &next).await {
            Ok(_) => {
                let (kind, type_, reason, note) = match step {
                    HandoverStep::Done { from, holder } => (
                        "done",
                        EventType::Normal,
                        "HandedOver",
                        format!(
                            "{from} handed leadership over to {}",
                            holder.as_deref().unwrap_or("another unit")
                        ),
                    ),
                    HandoverStep::Abandoned { from, to } => {
                        if to.is_some() && *to == object.spec.preferred_unit {
                            // Do not keep handing over to a preferred unit that cannot take it.
                            if let Some(entry) = ctx.seen().get_mut(&ObjectRef::from_obj(object)) {
                                entry.preferred_backoff = Some(now + PREFERRED_BACKOFF);
                            }
                        }
                        (
                            "abandoned",
                            EventType::Warning,
                            "HandoverAbandoned",
                            format!(
                                "{} did not take over from {from} within {:?}; any unit may claim again",
                                to.as_deref().unwrap_or("no other unit"),
                                ctx.handover_timeout
                            ),
                        )
                    }
                    HandoverStep::NotHeld { from } => (
                        "not_held",
                        EventType::Warning,
                        "ClaimNotHeld",
                        format!("cannot hand over from {from}: leadership lease not held"),
                    ),
                };
                info!(%name, reason, "{note}");
                ctx.metrics
                    .handovers
                    .get_or_create(&KindLabel { kind: kind.into() })
                    .inc();
                ctx.event(object, type_, reason, note).await;
            }
            Err(err) if conflict(&err) => return Ok(Action::requeue(Duration::from_millis(100))),
            Err(source) => {
                return Err(Error::Kube {
                    action: "clear a handover",
                    source,
                });
            }
        }
    }

    // Hand over to the preferred unit when it is live and another unit leads.
    let preferred_live = object.spec.preferred_unit.as_ref().is_some_and(|unit| {
        ctx.ready().contains(&(namespace.clone(), unit.clone()))
            && ctx
                .seen()
                .get(&ObjectRef::from_obj(object))
                .and_then(|e| e.preferred_backoff)
                .is_none_or(|until| now >= until)
    });
    if plan.handover.is_none()
        && let Some((from, term, to)) = plan::preferred_handover(object, preferred_live)
    {
        let mut next = object.clone();
        next.spec.handover = Some(HandoverRequest {
            from: from.clone(),
            term: i64::try_from(term).unwrap_or(i64::MAX),
            to: Some(to.clone()),
            requested_at: Some(Time(Timestamp::now())),
        });
        match api.replace(&name, &PostParams::default(), &next).await {
            Ok(_) => {
                info!(%name, %from, %to, "handing over to the preferred unit");
                ctx.event(
                    object,
                    EventType::Normal,
                    "PreferredUnit",
                    format!("{to} is preferred and live: {from} hands over to it"),
                )
                .await;
                return Ok(Action::await_change());
            }
            Err(err) if conflict(&err) => return Ok(Action::requeue(Duration::from_millis(100))),
            Err(source) => {
                return Err(Error::Kube {
                    action: "ask for a handover to the preferred unit",
                    source,
                });
            }
        }
    }

    // The leader label follows the holder whose claim has not run out.
    let leading = lease.holder_unit().filter(|_| !expired);
    ctx.sync_leader_labels(&namespace, &name, leading).await?;

    // Come back when the claim would run out (a renewal before then reconciles earlier).
    // Also when a pending handover is due to be abandoned.
    // With a lock delay, also when the claim runs out (to show the lease locked).
    let locks_at = runs_out_at.filter(|at| !lease.lock_delay.is_zero() && now < *at);
    let due = [
        expires_at,
        locks_at,
        handover_due.filter(|_| plan.handover.is_none()),
    ]
    .into_iter()
    .flatten()
    .min();
    Ok(match due {
        Some(at) => Action::requeue(at.saturating_duration_since(Instant::now()) + Duration::from_millis(20)),
        None => Action::await_change(),
    })
}

/// Events for what changed since the last visit: holder and pins.
async fn report_changes(
    ctx: &Context,
    object: &LeadershipLease,
    before: Option<(String, u64)>,
    pins_before: BTreeSet<String>,
) {
    let lease = object.to_lease();
    let now_holder = lease.holder_unit().map(|h| (h.to_owned(), lease.term));
    if before != now_holder {
        ctx.observer.transition(object);
        let last = object.status.as_ref().and_then(|s| s.history.last());
        let reason = last.map_or("Changed", |t| t.reason.as_str());
        let (type_, note) = match (&now_holder, &before) {
            (Some((holder, term)), _) => (EventType::Normal, format!("{holder} leads in term {term}")),
            (None, Some((holder, term))) if reason == "Expired" || reason == "PodGone" => (
                EventType::Warning,
                format!("{holder}'s claim in term {term} was cleared: {reason}"),
            ),
            (None, Some((holder, term))) => (
                EventType::Normal,
                format!("{holder} gave up leadership in term {term}"),
            ),
            (None, None) => (EventType::Normal, "no unit holds the lease".to_owned()),
        };
        let reason = if now_holder.is_some() { "Elected" } else { reason };
        ctx.event(object, type_, reason, note).await;
    }
    for added in lease.pins.difference(&pins_before) {
        ctx.event(object, EventType::Normal, "Pinned", format!("pinned by {added}"))
            .await;
    }
    for removed in pins_before.difference(&lease.pins) {
        ctx.event(
            object,
            EventType::Normal,
            "Unpinned",
            format!("{removed} removed its pin"),
        )
        .await;
    }
}

fn error_policy(_object: Arc<LeadershipLease>, err: &Error, ctx: Arc<Context>) -> Action {
    warn!(error = %err, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&KindLabel {
            kind: err.kind().into(),
        })
        .inc();
    Action::requeue(Duration::from_secs(1))
}

/// Runs the controller until `stop` fires. `scope` is a namespace, or `None` for all.
pub async fn run_controller(
    ctx: Arc<Context>,
    scope: Option<&str>,
    stop: tokio_util::sync::CancellationToken,
) {
    let leases: Api<LeadershipLease> = match scope {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let pods: Api<Pod> = match scope {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    // The cache keeps every lease without its managedFields: they are most of an object's size
    // and nothing here reads them. Writes leave them out, and the API server keeps its own.
    let (store, writer) = reflector::store();
    let cached = reflector::reflector(
        writer,
        watcher(leases, watcher::Config::default()).modify(|lease: &mut LeadershipLease| {
            lease.metadata.managed_fields = None;
        }),
    )
    .applied_objects();
    // A bounded number of reconciles at once: a burst (a thousand new leases in a few seconds)
    // would otherwise start one each, all their requests in flight together.
    let controller = Controller::for_stream(cached, store.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENT_RECONCILES));
    let mapper_ctx = ctx.clone();
    let mapper_store = store.clone();
    let refresher = {
        let (ctx, store, stop) = (ctx.clone(), store.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                ctx.refresh(&store);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(15)) => {}
                }
            }
        })
    };
    let running = controller
        .watches(pods, watcher::Config::default(), move |pod: Pod| {
            // Remember which pods can no longer act; wake the leases they hold.
            let namespace = pod.namespace().unwrap_or_default();
            let key = (namespace.clone(), pod.name_any());
            if all_containers_terminated(&pod) {
                mapper_ctx.terminated().insert(key.clone());
            } else {
                mapper_ctx.terminated().remove(&key);
            }
            let labels = pod.labels();
            let leads = (labels.get(LEADER_LABEL).map(String::as_str) == Some("true"))
                .then(|| labels.get(LEADER_OF_LABEL).cloned())
                .flatten();
            mapper_ctx.leader_labels().insert(key.clone(), leads.clone());
            let ready = pod.metadata.deletion_timestamp.is_none()
                && pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                mapper_ctx.ready().insert(key.clone());
            } else {
                mapper_ctx.ready().remove(&key);
            }
            mapper_store
                .state()
                .into_iter()
                .filter(|lease| {
                    lease.namespace().as_deref() == Some(namespace.as_str())
                        && (lease.status.as_ref().and_then(|s| s.holder.as_deref()) == Some(key.1.as_str())
                            || leads.as_deref() == Some(lease.name_any().as_str())
                            || lease.spec.preferred_unit.as_deref() == Some(key.1.as_str()))
                })
                .map(|lease| ObjectRef::from_obj(lease.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on({
            let stop = stop.clone();
            async move { stop.cancelled().await }
        })
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| std::future::ready(()));
    // Once stopped, kube's runner lets the running reconciles finish; but it starts nothing before
    // the lease cache's first list is complete, and waits for that even after the stop (the list
    // never comes: the stop also ends the watch). A replica that came to lead while the API server
    // was away would never stop, so the rest is dropped after a grace (every write is a
    // compare-and-swap; the next leader redoes what was cut).
    tokio::select! {
        () = running => {}
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(STOP_GRACE).await;
        } => warn!(grace = ?STOP_GRACE, "the controller had not stopped within the grace after it was asked to; dropped"),
    }
    refresher.abort();
}

/// How many leases are reconciled at once, at most.
pub const CONCURRENT_RECONCILES: u16 = 32;

/// How long a stopped controller lets its running reconciles finish before it drops them.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use leadership::expiry::ExpiryPolicy;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::metrics::Metrics;

    /// A client of an address nothing listens on: every request fails, so the lease cache's
    /// first list never completes.
    fn client_of_nobody() -> kube::Client {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = free.local_addr().expect("address");
        drop(free);
        let url = format!("http://{address}").parse().expect("url");
        kube::Client::try_from(kube::Config::new(url)).expect("client")
    }

    #[tokio::test]
    async fn a_controller_stopped_before_its_first_list_stops_within_the_grace() {
        let ctx = Arc::new(Context::new(
            client_of_nobody(),
            "operator-0",
            Arc::new(Metrics::default()),
            ExpiryPolicy::default(),
        ));
        let stop = CancellationToken::new();
        let controller = tokio::spawn(run_controller(ctx, Some("default"), stop.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let asked = Instant::now();
        stop.cancel();
        tokio::time::timeout(STOP_GRACE * 4, controller)
            .await
            .expect("the controller stops")
            .expect("the controller's task ends without a panic");
        assert!(asked.elapsed() < STOP_GRACE * 2, "took {:?}", asked.elapsed());
    }
}
