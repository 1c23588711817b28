//! Apply: carry a plan out, in order. A claim change is a compare-and-swap of the status, with the
//! operator's fields as they are after it, and ends the visit (its watch event starts the next one,
//! which sees the lease as it is now). Otherwise
//! the operator's status fields (server-side apply), then the spec (compare-and-swap), each write
//! continuing from the object the previous one returned, then the leader labels. A lost race stops
//! the visit; nothing is written from an object older than the last write.

use std::future::Future;

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use leadership_kube::crd::{HandoverRequest, LeadershipLease};
use tracing::{debug, info};

use super::{Context, Error, MANAGER};
use crate::{
    metrics::KindLabel,
    plan::{AskWhy, LEADER_LABEL, LEADER_OF_LABEL, Plan},
};

/// What a visit wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Applied {
    /// The claim was cleared (and nothing else written).
    pub(super) claim_cleared: bool,
    /// The operator's status fields were written (on their own: not with a cleared claim).
    pub(super) status_written: bool,
    /// The spec change (the end of a revocation or handover, or a handover asked of the holder)
    /// was written.
    pub(super) spec_written: bool,
    /// A write lost a race or found the lease gone: the rest was not written.
    pub(super) stopped: bool,
}

/// The lease writes, each with its own error and conflict label.
#[derive(Clone, Copy, Debug)]
enum Write {
    ClearClaim,
    Status,
    Spec(&'static str),
}

impl Write {
    fn kind(self) -> &'static str {
        match self {
            Write::ClearClaim => "clear_claim",
            Write::Status => "status",
            Write::Spec(_) => "spec",
        }
    }

    fn error(self, source: kube::Error) -> Error {
        match self {
            Write::ClearClaim => Error::ClearClaim(source),
            Write::Status => Error::Status(source),
            Write::Spec(what) => Error::Spec { what, source },
        }
    }
}

/// Carries out `plan` for `object`.
pub(super) async fn apply(object: &LeadershipLease, plan: &Plan, ctx: &Context) -> Result<Applied, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<LeadershipLease> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut applied = Applied::default();

    if let Some(step) = &plan.claim {
        let mut next = object.clone();
        let mut status = object.status_for(step.next(), step.reason(), Timestamp::now());
        if let Some(fields) = &plan.status {
            fields.set_in(&mut status);
        }
        next.status = Some(status);
        let written = write(
            ctx,
            Write::ClearClaim,
            api.replace_status(&name, &PostParams::default(), &next),
        )
        .await?;
        applied.claim_cleared = written.is_some();
        applied.stopped = written.is_none();
        return Ok(applied);
    }

    let mut current = object.clone();
    if let Some(status) = &plan.status {
        let patch = serde_json::json!({
            "apiVersion": "leadership.dev/v1alpha1",
            "kind": "LeadershipLease",
            "status": {
                "conditions": status.conditions,
                "pinned": status.pinned,
                "locked": status.locked,
                "observedGeneration": status.observed_generation,
                "members": status.members,
                "unhealthy": status.unhealthy,
            }
        });
        let params = PatchParams::apply(MANAGER).force();
        match write(
            ctx,
            Write::Status,
            api.patch_status(&name, &params, &Patch::Apply(&patch)),
        )
        .await?
        {
            Some(written) => {
                applied.status_written = true;
                current = written;
            }
            None => {
                applied.stopped = true;
                return Ok(applied);
            }
        }
    }

    if let Some((what, next)) = spec_change(&current, plan) {
        match write(
            ctx,
            Write::Spec(what),
            api.replace(&name, &PostParams::default(), &next),
        )
        .await?
        {
            Some(_) => applied.spec_written = true,
            None => {
                applied.stopped = true;
                return Ok(applied);
            }
        }
    }

    move_labels(ctx, &namespace, &name, plan).await?;
    Ok(applied)
}

/// The object with the spec change the plan asks for, and what the change is.
fn spec_change(current: &LeadershipLease, plan: &Plan) -> Option<(&'static str, LeadershipLease)> {
    let mut next = current.clone();
    let what = if let Some(ask) = &plan.ask {
        next.spec.handover = Some(HandoverRequest {
            from: ask.from.clone(),
            term: i64::try_from(ask.term).unwrap_or(i64::MAX),
            to: Some(ask.to.clone()),
            requested_at: Some(Time(Timestamp::now())),
        });
        match ask.why {
            AskWhy::Terminating => "ask the holder being deleted to hand over",
            AskWhy::Unhealthy(_) => "ask the holder whose app is unhealthy to hand over",
            AskWhy::Preferred => "ask for a handover to the preferred unit",
        }
    } else {
        match (&plan.revocation, &plan.handover) {
            (None, None) => return None,
            (Some(_), None) => "end a revocation",
            (None, Some(_)) => "end a handover",
            (Some(_), Some(_)) => "end a revocation and a handover",
        }
    };
    if plan.revocation.is_some() {
        next.spec.revocation = None;
    }
    if plan.handover.is_some() {
        next.spec.handover = None;
    }
    Some((what, next))
}

/// One lease write: the object it returns (without managedFields), `None` when it lost a race or
/// the lease is gone.
async fn write(
    ctx: &Context,
    write: Write,
    request: impl Future<Output = Result<LeadershipLease, kube::Error>>,
) -> Result<Option<LeadershipLease>, Error> {
    match request.await {
        Ok(mut written) => {
            written.metadata.managed_fields = None;
            ctx.wrote(&written);
            Ok(Some(written))
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            debug!(write = write.kind(), "lost a write race; visiting again");
            ctx.metrics
                .write_conflicts
                .get_or_create(&KindLabel {
                    kind: write.kind().into(),
                })
                .inc();
            Ok(None)
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(source) => Err(write.error(source)),
    }
}

/// Moves the leader labels: first off every other Pod, then onto the holder's, so two Pods never
/// carry them at once.
async fn move_labels(ctx: &Context, namespace: &str, application: &str, plan: &Plan) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let removals = plan.labels.remove.iter().map(|pod| (pod, None));
    let addition = plan.labels.add.iter().map(|pod| (pod, Some(application)));
    for (pod, leads) in removals.chain(addition) {
        let patch = serde_json::json!({ "metadata": { "labels": {
            LEADER_LABEL: leads.map(|_| "true"),
            LEADER_OF_LABEL: leads,
        } } });
        match pods
            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(patched) => {
                // The index learns the labels now, not when the watch shows them.
                ctx.pods().apply(&patched);
                info!(%pod, %application, set = leads.is_some(), "leader labels moved");
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Labels {
                    pod: pod.clone(),
                    source,
                });
            }
        }
    }
    Ok(())
}
