//! Report: Events, metrics and logs for what a visit saw change (holder, pins) and for what it
//! wrote. Nothing here decides or writes a lease.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::{events::EventType, reflector::ObjectRef};
use leadership_kube::crd::{LeadershipLease, condition, reason};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Context, PREFERRED_BACKOFF, apply::Applied, observe::Previous};
use crate::{
    metrics::KindLabel,
    plan::{AskWhy, ClaimStep, HandoverStep, Plan, RevocationStep},
};

/// Events for what changed since the last visit: holder and pins.
pub(super) fn changes(ctx: &Context, object: &LeadershipLease, previous: &Previous) {
    let (before, pins_before) = (&previous.holder, &previous.pins);
    let lease = object.to_lease();
    let now_holder = lease.holder_unit().map(|h| (h.to_owned(), lease.term));
    if *before != now_holder {
        ctx.observer.transition(object);
        let last = object.status.as_ref().and_then(|s| s.history.last());
        let recorded = last.map_or("Changed", |t| t.reason.as_str());
        let (type_, note) = match (&now_holder, before) {
            (Some((holder, term)), _) => (EventType::Normal, format!("{holder} leads in term {term}")),
            (None, Some((holder, term))) if recorded == reason::EXPIRED || recorded == reason::POD_GONE => (
                EventType::Warning,
                format!("{holder}'s claim in term {term} was cleared: {recorded}"),
            ),
            (None, Some((holder, term))) => (
                EventType::Normal,
                format!("{holder} gave up leadership in term {term}"),
            ),
            (None, None) => (EventType::Normal, "no unit holds the lease".to_owned()),
        };
        let why = if now_holder.is_some() {
            reason::ELECTED
        } else {
            recorded
        };
        ctx.event(object, type_, why, note);
    }
    for added in lease.pins.difference(pins_before) {
        info!(entity = %added, "pinned");
        ctx.event(
            object,
            EventType::Normal,
            reason::PINNED,
            format!("pinned by {added}"),
        );
    }
    for removed in pins_before.difference(&lease.pins) {
        info!(entity = %removed, "unpinned");
        ctx.event(
            object,
            EventType::Normal,
            reason::UNPINNED,
            format!("{removed} removed its pin"),
        );
    }
}

/// Events, metrics and logs for what `applied` wrote of `plan`, in a visit that started at
/// `started` for a claim due at `claim_due`.
pub(super) fn written(
    ctx: &Context,
    object: &LeadershipLease,
    plan: &Plan,
    applied: Applied,
    started: Instant,
    claim_due: Option<Instant>,
) {
    let lease = object.to_lease();
    if applied.status_written {
        health_changed(ctx, object, plan);
    }
    if applied.claim_cleared
        && let Some(step) = &plan.claim
    {
        let holder = lease.holder_unit().unwrap_or_default();
        match step {
            ClaimStep::Expire(_) => {
                ctx.metrics.expiries.inc();
                // How late the visit came, and how late the clear was written.
                let late = |at: Instant| claim_due.map(|due| at.saturating_duration_since(due));
                let (visit_late, written_late) = (late(started), late(Instant::now()));
                if let Some(lag) = written_late {
                    ctx.metrics.expiry_lag_seconds.observe(lag.as_secs_f64());
                }
                info!(%holder, term = lease.term, ?visit_late, ?written_late, "claim ran out; cleared");
            }
            ClaimStep::PodGone(_) => {
                ctx.metrics.pod_releases.inc();
                info!(%holder, term = lease.term, "holder's containers all terminated; released early");
            }
        }
    }
    if !applied.spec_written {
        return;
    }
    if let Some(step) = &plan.revocation {
        let (kind, type_) = match step {
            RevocationStep::Done { .. } => ("done", EventType::Normal),
            RevocationStep::NotHeld { .. } => ("not_held", EventType::Warning),
        };
        let family = &ctx.metrics.revocations;
        ended(ctx, object, family, kind, type_, step.reason(), step.message());
    }
    if let Some(step) = &plan.handover {
        let (kind, type_, why, note) = match step {
            HandoverStep::Done { from, holder } => (
                "done",
                EventType::Normal,
                reason::HANDED_OVER,
                format!(
                    "{from} handed leadership over to {}",
                    holder.as_deref().unwrap_or("another unit")
                ),
            ),
            HandoverStep::Abandoned { from, to } => {
                if to.is_some() && *to == object.spec.preferred_unit {
                    // Do not keep handing over to a preferred unit that cannot take it.
                    if let Some(entry) = ctx.seen().get_mut(&ObjectRef::from_obj(object)) {
                        entry.preferred_backoff = Some(started + PREFERRED_BACKOFF);
                    }
                }
                (
                    "abandoned",
                    EventType::Warning,
                    reason::HANDOVER_ABANDONED,
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
                reason::CLAIM_NOT_HELD,
                format!("cannot hand over from {from}: leadership lease not held"),
            ),
        };
        info!(application = %object.metadata.name.as_deref().unwrap_or_default(), reason = why, "{note}");
        ended(ctx, object, &ctx.metrics.handovers, kind, type_, why, note);
    }
    if let Some(ask) = &plan.ask {
        info!(from = %ask.from, to = %ask.to, why = ask.why.kind(), "asked the holder to hand over");
        ctx.metrics
            .handovers_asked
            .get_or_create(&KindLabel {
                kind: ask.why.kind().into(),
            })
            .inc();
        let type_ = match ask.why {
            AskWhy::Unhealthy(_) => EventType::Warning,
            AskWhy::Terminating | AskWhy::Preferred => EventType::Normal,
        };
        ctx.event(object, type_, ask.why.reason(), ask.message());
    }
}

/// A Warning Event when the leader came to be kept though its app is unhealthy (no standby's is
/// healthy): the written `LeaderHealthy` condition says so and the object's did not.
fn health_changed(ctx: &Context, object: &LeadershipLease, plan: &Plan) {
    let leader_health = |conditions: &[Condition]| {
        condition::find(conditions, condition::LEADER_HEALTHY).map(|c| (c.reason.clone(), c.message.clone()))
    };
    let Some(written) = plan.status.as_ref().and_then(|s| leader_health(&s.conditions)) else {
        return;
    };
    let before = object
        .status
        .as_ref()
        .and_then(|s| leader_health(&s.conditions))
        .map(|(reason, _)| reason);
    let (why, message) = written;
    if why == reason::NO_HEALTHY_STANDBY && before.as_deref() != Some(reason::NO_HEALTHY_STANDBY) {
        warn!(%message, "the leader's app is unhealthy and no standby's is healthy");
        ctx.event(object, EventType::Warning, reason::NO_HEALTHY_STANDBY, message);
    }
}

/// A request ended: counted in `family` by `kind`, and told in an Event.
fn ended(
    ctx: &Context,
    object: &LeadershipLease,
    family: &Family<KindLabel, Counter>,
    kind: &str,
    type_: EventType,
    reason: &str,
    note: String,
) {
    family.get_or_create(&KindLabel { kind: kind.into() }).inc();
    ctx.event(object, type_, reason, note);
}
