//! The controller: watches LeadershipLeases (and pods, through the pod index), and visits a lease
//! at every change and whenever its claim would run out. A visit is four phases: **observe** (time
//! the claim on this operator's clock, gather the pod facts), **plan** (pure: [`crate::plan`]),
//! **apply** (the writes, in order, each from the object the previous returned), **report**
//! (Events, metrics). In steady state (holders renewing) it writes nothing. A visit of a view
//! older than the operator's own last write to the lease does nothing: that write's watch event
//! visits it next.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, channel::mpsc};
use k8s_openapi::{api::core::v1::Pod, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use leadership_kube::crd::LeadershipLease;
use tokio::time::Instant;
use tracing::{instrument, warn};

use crate::{metrics::KindLabel, plan};

mod apply;
mod context;
mod observe;
mod report;

pub use self::context::{Context, DEFAULT_HANDOVER_TIMEOUT, PREFERRED_BACKOFF};

/// The field manager of the operator's status writes.
pub const MANAGER: &str = "leadership-operator";

/// How long after a claim is due its visit comes: the timers count in whole milliseconds, and a
/// visit a moment early would find the claim still live (and come back).
const DUE_SLACK: Duration = Duration::from_millis(1);

/// How soon a visit whose write lost a race is retried.
const AFTER_LOST_RACE: Duration = Duration::from_millis(100);

/// Why a visit failed: the write that failed (a lost race is not a failure: the lease is visited
/// again).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Clearing a claim (expiry, pod loss) failed.
    #[error("clear a claim: {0}")]
    ClearClaim(#[source] kube::Error),
    /// Writing the operator's status fields (conditions, pinned, locked) failed.
    #[error("write the operator's status fields: {0}")]
    Status(#[source] kube::Error),
    /// Writing the spec failed.
    #[error("{what}: {source}")]
    Spec {
        /// What the write was for.
        what: &'static str,
        /// The failure.
        #[source]
        source: kube::Error,
    },
    /// Moving the leader labels failed.
    #[error("move the leader labels of pod {pod}: {source}")]
    Labels {
        /// The Pod.
        pod: String,
        /// The failure.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A low-cardinality label for metrics: the write that failed.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::ClearClaim(_) => "clear_claim",
            Error::Status(_) => "status",
            Error::Spec { .. } => "spec",
            Error::Labels { .. } => "labels",
        }
    }
}

/// One visit of one lease: observe, plan, apply, report, and when to come back.
#[instrument(skip_all, fields(namespace = %object.namespace().unwrap_or_default(), application = %object.name_any()))]
pub async fn reconcile(object: Arc<LeadershipLease>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    if ctx.behind_own_write(&object) {
        return Ok(Action::await_change());
    }
    let observed = observe::observe(&object, &ctx, started);
    ctx.observer.observe(&object, observed.judgement.expired, started);
    if let Some(before) = &observed.before {
        report::changes(&ctx, &object, before);
    }
    ctx.observer
        .leader_unhealthy(&object, observed.judgement.unhealthy_for_grace);
    let plan = plan::plan(&object, &observed.judgement, Timestamp::now());
    let applied = apply::apply(&object, &plan, &ctx).await;
    if let Ok(applied) = &applied {
        report::written(&ctx, &object, &plan, *applied, started, observed.claim_due);
    }
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    let applied = applied?;
    Ok(if applied.stopped {
        Action::requeue(AFTER_LOST_RACE)
    } else if applied.claim_cleared || plan.ask.is_some() {
        // The write shows up as a watch event, which visits again.
        Action::await_change()
    } else {
        // Come back when the claim would run out (a renewal visits earlier), a pending handover
        // is due to be abandoned, a lease that became free is due to be reported, or the
        // holder's unhealthy app is due to be judged again.
        let handover_due = observed.handover_due.filter(|_| plan.handover.is_none());
        match [
            observed.claim_due,
            handover_due,
            observed.report_due,
            observed.health_due,
        ]
        .into_iter()
        .flatten()
        .min()
        {
            Some(at) => Action::requeue(at.saturating_duration_since(Instant::now()) + DUE_SLACK),
            None => Action::await_change(),
        }
    })
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

/// Feeds the pod index from a watch of `pods` and asks for a visit of every lease whose pods'
/// facts changed. Runs until the controller stops taking requests.
async fn index_pods(
    pods: Api<Pod>,
    ctx: Arc<Context>,
    wake: mpsc::UnboundedSender<ObjectRef<LeadershipLease>>,
) {
    let mut events = watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let woken = match event {
            Ok(event) => {
                let mut index = ctx.pods();
                let woken = match event {
                    watcher::Event::Apply(pod) => index.apply(&pod),
                    watcher::Event::Delete(pod) => index.delete(&pod),
                    watcher::Event::Init => {
                        index.relist_begin();
                        Vec::new()
                    }
                    watcher::Event::InitApply(pod) => {
                        index.relist_apply(&pod);
                        Vec::new()
                    }
                    watcher::Event::InitDone => index.relist_done(),
                };
                ctx.metrics
                    .pods_indexed
                    .set(i64::try_from(index.len()).unwrap_or(i64::MAX));
                woken
            }
            Err(err) => {
                warn!(error = %err, "the Pod watch failed; retrying");
                Vec::new()
            }
        };
        for (namespace, application) in woken {
            if wake
                .unbounded_send(ObjectRef::new(&application).within(&namespace))
                .is_err()
            {
                return;
            }
        }
    }
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
    .applied_objects()
    .inspect({
        let ctx = ctx.clone();
        move |event| {
            if let Ok(lease) = event {
                ctx.saw(lease, Instant::now());
            }
        }
    });
    let (wake, woken) = mpsc::unbounded();
    let indexer = tokio::spawn(index_pods(pods, ctx.clone(), wake));
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
    // A bounded number of reconciles at once: a burst (a thousand new leases in a few seconds)
    // would otherwise start one each, all their requests in flight together.
    let running = Controller::for_stream(cached, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENT_RECONCILES))
        .reconcile_on(woken)
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
    indexer.abort();
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
