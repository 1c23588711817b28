//! Observe: time the lease's claim, pending handover and the holder's unhealthy app on this
//! operator's clock, note what changed since the last visit, and gather what the pod index knows of
//! the lease's pods (the health rule's judgement of the holder and the best standby). Everything the
//! plan needs, and when to come back, without a request to the API server.

use std::{collections::BTreeSet, time::Duration};

use k8s_openapi::jiff::Timestamp;
use kube::{ResourceExt, runtime::reflector::ObjectRef};
use leadership_kube::crd::LeadershipLease;
use tokio::time::Instant;

use super::Context;
use crate::{
    health::{self, HealthPolicy, UnitHealth},
    plan::Judgement,
};

/// How often a leader kept though its app is unhealthy is looked at again.
const HEALTH_RECHECK: Duration = Duration::from_secs(5);

/// What one visit observed of a lease.
pub(super) struct Observed {
    /// The operator's judgement, for the plan.
    pub(super) judgement: Judgement,
    /// When the claim runs out, or shows locked; a reconcile is due then.
    pub(super) claim_due: Option<Instant>,
    /// When a pending handover is due to be abandoned.
    pub(super) handover_due: Option<Instant>,
    /// When a lease that just became free is due to be reported.
    pub(super) report_due: Option<Instant>,
    /// When the holder's unhealthy app is due to be judged again.
    pub(super) health_due: Option<Instant>,
    /// What the previous visit saw, when there was one.
    pub(super) before: Option<Previous>,
}

/// What a visit saw that the next reports changes of.
#[derive(Clone, Debug, Default)]
pub(super) struct Previous {
    /// The holder and its term.
    pub(super) holder: Option<(String, u64)>,
    /// The pins.
    pub(super) pins: BTreeSet<String>,
}

/// Observes `object` at `now`.
pub(super) fn observe(object: &LeadershipLease, ctx: &Context, now: Instant) -> Observed {
    let namespace = object.namespace().unwrap_or_default();
    let application = object.name_any();
    let lease = object.to_lease();
    let preferred = object.spec.preferred_unit.as_deref();

    let (expired, locked, claim_due, handover_due, report_due, before, preferred_backoff) = {
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
        let now_seen = Previous {
            holder: lease.holder_unit().map(|h| (h.to_owned(), lease.term)),
            pins: lease.pins.clone(),
        };
        let was_held = entry.previous.as_ref().is_some_and(|p| p.holder.is_some());
        entry.freed_at = match (now_seen.holder.is_some(), entry.freed_at) {
            (true, _) => None,
            (false, Some(at)) => Some(at),
            (false, None) => was_held.then_some(now),
        };
        let report_due = entry
            .freed_at
            .map(|at| at + ctx.quiet_after_free)
            .filter(|due| now < *due);
        let before = entry.previous.replace(now_seen);
        let expires_at = entry.observation.expires_at(&lease, &ctx.policy);
        // With a lock delay, also when the claim runs out (to show the lease locked).
        let locks_at = entry
            .observation
            .runs_out_at(&lease, &ctx.policy)
            .filter(|at| !lease.lock_delay.is_zero() && now < *at);
        (
            entry.observation.is_expired(&lease, &ctx.policy, now),
            entry.observation.is_locked(&lease, &ctx.policy, now),
            [expires_at, locks_at].into_iter().flatten().min(),
            handover_due,
            report_due,
            before,
            entry.preferred_backoff,
        )
    };

    let mut pods = ctx.pods();
    let holder = lease.holder_unit();
    let reads: Vec<&str> = holder.into_iter().chain(preferred).collect();
    pods.reads(&namespace, &application, &reads);
    let members = pods.members(&namespace, &application);
    let holder_facts = holder.and_then(|unit| pods.facts(&namespace, unit));
    // The health rule reads the kubelet's timestamps (restarts), so it judges by the wall clock.
    let wall = Timestamp::now();
    let policy = HealthPolicy::from_spec(object.spec.policy.as_ref().and_then(|p| p.health.as_ref()));
    let healthy = |unit: &UnitHealth| unit.unhealthy(&policy, wall).is_none();
    // A unit whose app said it should not lead is not chosen, and a holder that said so hands
    // over without a grace.
    let declared = object.status.as_ref().map(|s| &s.ineligible);
    // A declaration older than the unit's Pod was made by a Pod of the same name before it (a
    // StatefulSet's): it does not count.
    let said = |unit: &str| {
        let entry = declared?.get(unit)?;
        let created = pods.facts(&namespace, unit).and_then(|f| f.health.created);
        let stale = matches!((&entry.since, created), (Some(since), Some(created)) if since.0 < created);
        (!stale).then(|| format!("it said: {}", entry.reason))
    };
    let holder_said = holder.and_then(said);
    let holder_unhealthy = holder_said.clone().or_else(|| {
        holder_facts
            .filter(|_| policy.enabled)
            .and_then(|facts| facts.health.unhealthy(&policy, wall))
    });
    let unhealthy_members: Vec<String> = members
        .iter()
        .filter(|_| policy.enabled)
        .filter(|m| {
            pods.facts(&namespace, m)
                .is_some_and(|f| f.health.unhealthy(&policy, wall).is_some())
        })
        .cloned()
        .collect();
    let holder_terminating = holder_facts.is_some_and(|facts| facts.health.terminating);
    let best_standby = holder
        .filter(|_| holder_terminating || holder_unhealthy.is_some())
        .and_then(|holder| {
            let units: Vec<(String, UnitHealth)> = members
                .iter()
                .filter(|m| said(m).is_none())
                .filter_map(|m| pods.facts(&namespace, m).map(|f| (m.clone(), f.health.clone())))
                .collect();
            health::best_standby(&units, holder, &policy, wall).map(str::to_owned)
        });
    let preferred_ready = preferred
        .and_then(|unit| pods.facts(&namespace, unit))
        .is_some_and(|facts| facts.health.ready && healthy(&facts.health));
    let judgement_pods = (
        holder_facts.is_some_and(|facts| facts.terminated),
        holder_facts.is_some(),
        pods.labelled(&namespace, &application),
    );
    drop(pods);

    // The holder's app is timed unhealthy on this operator's clock from when it first saw it so.
    let (unhealthy_for_grace, health_due) = {
        let mut seen = ctx.seen();
        let entry = seen.entry(ObjectRef::from_obj(object)).or_default();
        let key = holder
            .filter(|_| holder_unhealthy.is_some())
            .map(|h| (h.to_owned(), lease.term));
        entry.unhealthy_since = match (key, entry.unhealthy_since.take()) {
            (Some(key), Some((seen_key, since))) if key == seen_key => Some((key, since)),
            (Some(key), _) => Some((key, now)),
            (None, _) => None,
        };
        let since = entry.unhealthy_since.as_ref().map(|(_, since)| *since);
        let grace = if holder_said.is_some() {
            Duration::ZERO
        } else {
            policy.grace
        };
        let over = since.is_some_and(|since| now >= since + grace);
        // Within the grace, come back when it ends; after it, look again now and then (a
        // standby's restart window runs out without a Pod event).
        let due = since.map(|since| {
            if over {
                now + HEALTH_RECHECK
            } else {
                since + policy.grace
            }
        });
        (over, due)
    };

    let (holder_terminated, holder_pod_known, labelled) = judgement_pods;
    let judgement = Judgement {
        expired,
        locked,
        holder_terminated,
        handover_overdue: handover_due.is_some_and(|due| now >= due),
        preferred_live: preferred_ready && preferred_backoff.is_none_or(|until| now >= until),
        follows_health: policy.enabled || holder_said.is_some(),
        holder_unhealthy,
        unhealthy_for_grace,
        holder_terminating,
        best_standby,
        holder_pod_known,
        labelled,
        members,
        unhealthy_members,
        just_freed: report_due.is_some(),
    };
    Observed {
        judgement,
        claim_due,
        handover_due,
        report_due,
        health_due,
        before,
    }
}
