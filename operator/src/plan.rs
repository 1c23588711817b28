//! What the operator should do with one lease: a pure function of the object, the operator's own
//! expiry judgement and what it knows of the lease's pods. No I/O; [`crate::reconcile`] carries
//! the plan out. The decisions and their unit tests are kept side by side.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use leadership::lease::Lease;
use leadership_kube::crd::{LeadershipLease, LeadershipLeaseStatus, MAX_MEMBERS, condition, reason};

/// A change to the claim itself, written with a compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimStep {
    /// The claim was seen unchanged for its length plus the margin: clear it.
    Expire(Lease),
    /// Every container of the holder's pod has terminated: it can no longer act; clear it. Not
    /// while pinned: a pin keeps the claim for the unit's return (a pod restarted by an upgrade).
    PodGone(Lease),
}

impl ClaimStep {
    /// The lease after the step.
    pub fn next(&self) -> &Lease {
        match self {
            ClaimStep::Expire(lease) | ClaimStep::PodGone(lease) => lease,
        }
    }

    /// The history and Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ClaimStep::Expire(_) => reason::EXPIRED,
            ClaimStep::PodGone(_) => reason::POD_GONE,
        }
    }
}

/// How a pending revocation request ends; either way the request is cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevocationStep {
    /// The revoked grant is over (the holder stepped down, or its claim ran out).
    Done {
        /// The revoked unit.
        unit: String,
    },
    /// The request named a unit that does not hold the lease in that term (SPEC V1).
    NotHeld {
        /// The unit named.
        unit: String,
    },
}

impl RevocationStep {
    /// The reason of the `Revoked` condition and of the Event.
    pub fn reason(&self) -> &'static str {
        match self {
            RevocationStep::Done { .. } => reason::REVOKED,
            RevocationStep::NotHeld { .. } => reason::CLAIM_NOT_HELD,
        }
    }

    /// What happened, for the condition and the Event.
    pub fn message(&self) -> String {
        match self {
            RevocationStep::Done { unit } => format!("{unit}'s leadership was revoked"),
            RevocationStep::NotHeld { unit } => {
                format!("cannot revoke {unit}: leadership lease not held")
            }
        }
    }
}

/// How a pending handover ends; every way clears the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandoverStep {
    /// A later grant took the lease (by the target, or by any other unit when none was named).
    Done {
        /// The unit that handed over.
        from: String,
        /// The unit that holds the lease now, if it still does.
        holder: Option<String>,
    },
    /// The target did not take the lease within the operator's timeout.
    Abandoned {
        /// The unit that handed over.
        from: String,
        /// The target, if one was named.
        to: Option<String>,
    },
    /// The request named a unit that does not hold the lease in that term.
    NotHeld {
        /// The unit named.
        from: String,
    },
}

/// The operator's own status fields: conditions, the pinned mirror and the generation seen.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorStatus {
    /// `Ready`, `Held`, `Pinned` (and `Revoked` after a revocation).
    pub conditions: Vec<Condition>,
    /// Whether any entity pins the lease.
    pub pinned: bool,
    /// Whether the lock delay keeps everyone from taking a claim that ran out.
    pub locked: bool,
    /// The spec generation acted on.
    pub observed_generation: Option<i64>,
    /// The units that may take the lease when it is free (at most [`MAX_MEMBERS`]).
    pub members: Vec<String>,
    /// The members whose app is unhealthy (at most [`MAX_MEMBERS`]): they stand aside at a free
    /// lease.
    pub unhealthy: Vec<String>,
}

impl OperatorStatus {
    /// Writes these fields into `status`, leaving the claim and the rest as they are.
    pub fn set_in(&self, status: &mut LeadershipLeaseStatus) {
        status.conditions.clone_from(&self.conditions);
        status.pinned = self.pinned;
        status.locked = self.locked;
        status.observed_generation = self.observed_generation;
        status.members.clone_from(&self.members);
        status.unhealthy.clone_from(&self.unhealthy);
    }
}

/// What the operator has judged of one lease, on its own clock and from what it knows of pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judgement {
    /// The claim has been seen unchanged for its length, the margin and any lock delay.
    pub expired: bool,
    /// The claim has run out but the lock delay keeps everyone from taking it.
    pub locked: bool,
    /// Every container of the holder's pod is known to have terminated (a deleted Pod object or
    /// a Failed phase alone proves nothing).
    pub holder_terminated: bool,
    /// A pending handover has outlived the operator's timeout.
    pub handover_overdue: bool,
    /// The preferred unit's Pod is Ready, its app healthy, and no recent handover to it was
    /// abandoned.
    pub preferred_live: bool,
    /// The application's health rule is on.
    pub follows_health: bool,
    /// Why the holder's app is unhealthy, if it is and the health rule is on.
    pub holder_unhealthy: Option<String>,
    /// The holder's app has been unhealthy for the grace.
    pub unhealthy_for_grace: bool,
    /// The holder's Pod is being deleted.
    pub holder_terminating: bool,
    /// The standby that should lead instead of the holder ([`crate::health::best_standby`]).
    pub best_standby: Option<String>,
    /// The holder's Pod object is known (only a known Pod can be given the leader labels).
    pub holder_pod_known: bool,
    /// The Pods carrying this application's leader labels.
    pub labelled: Vec<String>,
    /// The Pods that belong to the application, in name order: only these may take a free lease.
    pub members: Vec<String>,
    /// The members whose app is unhealthy, in name order (none while the health rule is off).
    pub unhealthy_members: Vec<String>,
    /// The lease became free a moment ago (released, or its claim cleared), by the operator's
    /// clock ([`QUIET_AFTER_FREE`]): a standby is taking it.
    pub just_freed: bool,
}

/// How long after the lease becomes free the operator leaves it unwritten: no report of a free
/// lease, no end of a request. A standby takes a released lease within milliseconds, and any
/// write of the operator in that gap would make the standby's compare-and-swap lose, its grant
/// waiting for a read and a second write. A lease nobody takes is reported after this.
pub const QUIET_AFTER_FREE: std::time::Duration = std::time::Duration::from_secs(1);

/// Everything to do for one lease in one reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// A change to the claim.
    pub claim: Option<ClaimStep>,
    /// The end of a revocation request.
    pub revocation: Option<RevocationStep>,
    /// The end of a handover request.
    pub handover: Option<HandoverStep>,
    /// A handover to ask for: the holder's Pod is being deleted, its app is unhealthy, or the
    /// preferred unit should lead.
    pub ask: Option<HandoverAsk>,
    /// New operator status fields, when they differ from the object's (after the claim step,
    /// when there is one: that step's write carries them).
    pub status: Option<OperatorStatus>,
    /// Leader labels to move, so that only the Pod of a holder whose claim has not run out
    /// carries them.
    pub labels: LabelChanges,
}

/// A handover the operator asks of the holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoverAsk {
    /// The holder.
    pub from: String,
    /// The term it holds.
    pub term: u64,
    /// The unit to take over.
    pub to: String,
    /// Why.
    pub why: AskWhy,
}

/// Why the operator asks the holder to hand over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AskWhy {
    /// The holder's Pod is being deleted (a rollout, a drain, a scale-down): leadership moves now,
    /// to the standby the rollout reaches last, not when the kubelet stops the sidecar.
    Terminating,
    /// The holder's app has been unhealthy for the grace, for this reason.
    Unhealthy(String),
    /// The preferred unit is live and should lead.
    Preferred,
}

impl AskWhy {
    /// A low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            AskWhy::Terminating => "terminating",
            AskWhy::Unhealthy(_) => "unhealthy",
            AskWhy::Preferred => "preferred",
        }
    }

    /// The Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            AskWhy::Terminating => reason::LEADER_TERMINATING,
            AskWhy::Unhealthy(_) => reason::APP_UNHEALTHY,
            AskWhy::Preferred => reason::PREFERRED_UNIT,
        }
    }
}

impl HandoverAsk {
    /// What the Event says.
    pub fn message(&self) -> String {
        let HandoverAsk { from, to, .. } = self;
        match &self.why {
            AskWhy::Terminating => format!("{from}'s Pod is being deleted: it hands over to {to}"),
            AskWhy::Unhealthy(why) => format!("{from}'s app is unhealthy ({why}): it hands over to {to}"),
            AskWhy::Preferred => format!("{to} is preferred and live: {from} hands over to it"),
        }
    }
}

/// Decides what to do with `object`, given the operator's judgement of it.
pub fn plan(object: &LeadershipLease, judged: &Judgement, now: Timestamp) -> Plan {
    let lease = object.to_lease();
    if judged.just_freed && lease.holder.is_none() {
        // Only the leader labels (Pod writes, which no grant waits for).
        return Plan {
            labels: leader_labels(&judged.labelled, None, judged.holder_pod_known),
            ..Plan::default()
        };
    }
    let claim = if let Some(next) = lease.expire(judged.expired) {
        Some(ClaimStep::Expire(next))
    } else if judged.holder_terminated
        && !lease.is_pinned()
        && let Some(holder) = lease.holder_unit()
    {
        lease.release(holder).ok().map(ClaimStep::PodGone)
    } else {
        None
    };
    let revocation = revocation(object);
    // A claim step carries the operator's fields as they are after it in its own write: one
    // write per expiry, not a second one for the conditions.
    let cleared = claim.as_ref().map(|step| LeadershipLease {
        status: Some(object.status_for(step.next(), step.reason(), now)),
        ..object.clone()
    });
    let seen = cleared.as_ref().unwrap_or(object);
    let mut status = operator_status(seen, self::revocation(seen).as_ref(), judged, now);
    status.members = judged.members.iter().take(MAX_MEMBERS).cloned().collect();
    status.unhealthy = judged
        .unhealthy_members
        .iter()
        .take(MAX_MEMBERS)
        .cloned()
        .collect();
    let current = seen.status.clone().unwrap_or_default();
    let unchanged = current.conditions == status.conditions
        && current.pinned == status.pinned
        && current.locked == status.locked
        && current.observed_generation == status.observed_generation
        && current.members == status.members
        && current.unhealthy == status.unhealthy;
    let handover = handover(object, judged.handover_overdue);
    let ask = ask(object, judged).filter(|_| handover.is_none());
    let leading = lease.holder_unit().filter(|_| !judged.expired);
    Plan {
        claim,
        revocation,
        handover,
        ask,
        status: (!unchanged).then_some(status),
        labels: leader_labels(&judged.labelled, leading, judged.holder_pod_known),
    }
}

/// How the pending handover stands, if it is over.
fn handover(object: &LeadershipLease, overdue: bool) -> Option<HandoverStep> {
    let request = object.spec.handover.as_ref()?;
    let status = object.status.clone().unwrap_or_default();
    let from = request.from.clone();
    match request.term.cmp(&status.term) {
        std::cmp::Ordering::Less => Some(HandoverStep::Done {
            from,
            holder: status.holder,
        }),
        std::cmp::Ordering::Greater => Some(HandoverStep::NotHeld { from }),
        std::cmp::Ordering::Equal => match status.holder.as_deref() {
            Some(holder) if holder != from => Some(HandoverStep::NotHeld { from }),
            _ if overdue => Some(HandoverStep::Abandoned {
                from,
                to: request.to.clone(),
            }),
            _ => None,
        },
    }
}

/// How the pending revocation stands, if it is over.
fn revocation(object: &LeadershipLease) -> Option<RevocationStep> {
    let request = object.spec.revocation.as_ref()?;
    let status = object.status.clone().unwrap_or_default();
    let unit = request.unit.clone();
    match request.term.cmp(&status.term) {
        std::cmp::Ordering::Less => Some(RevocationStep::Done { unit }),
        std::cmp::Ordering::Greater => Some(RevocationStep::NotHeld { unit }),
        std::cmp::Ordering::Equal => match status.holder.as_deref() {
            None => Some(RevocationStep::Done { unit }),
            Some(holder) if holder == unit => None,
            Some(_) => Some(RevocationStep::NotHeld { unit }),
        },
    }
}

fn condition(
    current: &[Condition],
    kind: &str,
    on: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if on { "True" } else { "False" };
    let since = condition::find(current, kind)
        .filter(|c| c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

fn operator_status(
    object: &LeadershipLease,
    revocation: Option<&RevocationStep>,
    judged: &Judgement,
    now: Timestamp,
) -> OperatorStatus {
    let current = object.status.clone().unwrap_or_default();
    let generation = object.metadata.generation;
    let lease = object.to_lease();
    let mut conditions = vec![condition(
        &current.conditions,
        condition::READY,
        true,
        reason::RECONCILED,
        "the operator watches this lease".into(),
        generation,
        now,
    )];
    conditions.push(match lease.holder_unit() {
        Some(holder) => condition(
            &current.conditions,
            condition::HELD,
            true,
            reason::HELD,
            format!("held by {holder} in term {}", lease.term),
            generation,
            now,
        ),
        None => condition(
            &current.conditions,
            condition::HELD,
            false,
            reason::FREE,
            "no unit holds the lease".into(),
            generation,
            now,
        ),
    });
    let pins: Vec<&str> = lease.pins.iter().map(String::as_str).collect();
    conditions.push(if pins.is_empty() {
        condition(
            &current.conditions,
            condition::PINNED,
            false,
            reason::NOT_PINNED,
            "the claim expires normally".into(),
            generation,
            now,
        )
    } else {
        condition(
            &current.conditions,
            condition::PINNED,
            true,
            reason::PINNED,
            format!("pinned by {}", pins.join(", ")),
            generation,
            now,
        )
    });
    let revoked = match revocation {
        Some(step) => Some(condition(
            &current.conditions,
            condition::REVOKED,
            matches!(step, RevocationStep::Done { .. }),
            step.reason(),
            step.message(),
            generation,
            now,
        )),
        None => condition::find(&current.conditions, condition::REVOKED).cloned(),
    };
    conditions.extend(revoked);
    conditions.extend(
        lease
            .holder_unit()
            .filter(|_| judged.follows_health)
            .map(|holder| {
                let (healthy, why, message) = leader_health(holder, judged);
                condition(
                    &current.conditions,
                    condition::LEADER_HEALTHY,
                    healthy,
                    why,
                    message,
                    generation,
                    now,
                )
            }),
    );
    OperatorStatus {
        conditions,
        pinned: lease.is_pinned(),
        locked: judged.locked,
        observed_generation: generation,
        members: Vec::new(),
        unhealthy: Vec::new(),
    }
}

/// The `LeaderHealthy` condition of `holder`: healthy or not, its reason and message.
fn leader_health(holder: &str, judged: &Judgement) -> (bool, &'static str, String) {
    let Some(why) = &judged.holder_unhealthy else {
        return (true, reason::APP_HEALTHY, format!("{holder}'s app is healthy"));
    };
    let unhealthy = format!("{holder}'s app is unhealthy ({why})");
    match (judged.unhealthy_for_grace, &judged.best_standby) {
        (false, _) => (false, reason::APP_UNHEALTHY, unhealthy),
        (true, Some(to)) => (
            false,
            reason::APP_UNHEALTHY,
            format!("{unhealthy}: it hands over to {to}"),
        ),
        (true, None) => (
            false,
            reason::NO_HEALTHY_STANDBY,
            format!("{unhealthy} and no standby's app is healthy: it keeps leading"),
        ),
    }
}

/// The handover to ask of the holder, when no request is pending: to the best standby when the
/// holder's Pod is being deleted, or its app has been unhealthy for the grace; otherwise to the
/// preferred unit when `spec.preferredUnit` names a live unit that does not hold the lease.
fn ask(object: &LeadershipLease, judged: &Judgement) -> Option<HandoverAsk> {
    let lease = object.to_lease();
    let holder = lease.holder_unit()?;
    let pending =
        object.spec.handover.is_some() || object.spec.revocation.is_some() || lease.revoked.is_some();
    if pending || judged.expired {
        return None;
    }
    let ask = |to: &str, why: AskWhy| HandoverAsk {
        from: holder.to_owned(),
        term: lease.term,
        to: to.to_owned(),
        why,
    };
    let standby = judged.best_standby.as_deref();
    match (&judged.holder_unhealthy, standby) {
        (_, Some(to)) if judged.holder_terminating => return Some(ask(to, AskWhy::Terminating)),
        (Some(why), Some(to)) if judged.unhealthy_for_grace => {
            return Some(ask(to, AskWhy::Unhealthy(why.clone())));
        }
        _ => {}
    }
    let preferred = object.spec.preferred_unit.as_deref()?;
    (judged.preferred_live && holder != preferred).then(|| ask(preferred, AskWhy::Preferred))
}

/// The label the operator keeps on the Pod of each application's leader, so that a Service can
/// select the leader: `leadership.dev/leader: "true"`.
pub const LEADER_LABEL: &str = "leadership.dev/leader";
/// The label naming the application a labelled Pod leads, so stale labels can be found.
pub const LEADER_OF_LABEL: &str = "leadership.dev/leader-of";

/// What to change so that only `holder`'s Pod carries the leader labels of `application`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelChanges {
    /// Pods to take the labels from (done first, so two Pods never carry them at once).
    pub remove: Vec<String>,
    /// The Pod to give them to, if it exists and lacks them.
    pub add: Option<String>,
}

/// Plans the leader labels of one application: `labelled` are the Pods carrying them, `holder`
/// the unit that should, and `holder_pod_known` whether its Pod object exists.
fn leader_labels(labelled: &[String], holder: Option<&str>, holder_pod_known: bool) -> LabelChanges {
    let mut remove: Vec<String> = labelled
        .iter()
        .filter(|pod| Some(pod.as_str()) != holder)
        .cloned()
        .collect();
    remove.sort();
    let add = holder
        .filter(|holder| holder_pod_known && !labelled.iter().any(|pod| pod == holder))
        .map(str::to_owned);
    LabelChanges { remove, add }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use leadership_kube::crd::{HandoverRequest, LeadershipLeaseStatus, Pin, Revocation};

    use super::*;

    fn judged(expired: bool, holder_terminated: bool, handover_overdue: bool) -> Judgement {
        Judgement {
            expired,
            holder_terminated,
            handover_overdue,
            ..Judgement::default()
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn held(unit: &str, term: i64) -> LeadershipLease {
        let mut object = LeadershipLease::empty("ns", "web");
        object.metadata.generation = Some(1);
        object.status = Some(LeadershipLeaseStatus {
            holder: Some(unit.into()),
            term,
            lease_duration_ms: Some(20_000),
            ..LeadershipLeaseStatus::default()
        });
        object
    }

    #[test]
    fn an_observed_expiry_clears_the_claim_and_keeps_the_term() {
        let plan = plan(&held("web-0", 3), &judged(true, false, false), now());
        let Some(ClaimStep::Expire(next)) = plan.claim else {
            panic!("{plan:?}")
        };
        assert_eq!((next.holder, next.term), (None, 3));
        assert!(
            super::plan(&held("web-0", 3), &judged(false, false, false), now())
                .claim
                .is_none()
        );
    }

    #[test]
    fn an_expiry_carries_the_conditions_after_it_and_the_next_visit_writes_nothing() {
        let plan = plan(&held("web-0", 3), &judged(true, false, false), now());
        let fields = plan.status.expect("the clear carries the operator's fields");
        let held = condition::find(&fields.conditions, "Held").unwrap();
        assert_eq!((held.status.as_str(), held.reason.as_str()), ("False", "Free"));
        // The cleared lease as the write leaves it: the next visit finds nothing to write.
        let mut cleared = held_cleared();
        fields.set_in(cleared.status.as_mut().unwrap());
        let later = now().checked_add(Duration::from_secs(1)).unwrap();
        let next = super::plan(&cleared, &judged(false, false, false), later);
        assert_eq!((next.claim, next.status), (None, None));
    }

    #[test]
    fn a_lease_just_freed_is_left_to_the_standby_then_reported() {
        let mut object = held("web-0", 3);
        object.spec.revocation = Some(Revocation {
            unit: "web-0".into(),
            term: 3,
            requested_at: None,
        });
        let released = object.to_lease().release("web-0").unwrap();
        object.status = Some(object.status_for(&released, "Released", now()));
        let quiet = Judgement {
            just_freed: true,
            labelled: vec!["web-0".into()],
            ..Judgement::default()
        };
        let plan = super::plan(&object, &quiet, now());
        assert_eq!(
            (plan.status, plan.revocation, plan.labels.remove),
            (None, None, vec!["web-0".to_owned()]),
            "only the labels move while a standby may be taking the lease"
        );
        let later = super::plan(&object, &Judgement::default(), now());
        let reported = later.status.expect("reported after the quiet");
        let free = condition::find(&reported.conditions, "Held").unwrap();
        assert_eq!((free.status.as_str(), free.reason.as_str()), ("False", "Free"));
        assert_eq!(
            later.revocation,
            Some(RevocationStep::Done { unit: "web-0".into() })
        );
        // A claim is never left alone: the flag means nothing while a unit holds the lease.
        let taken = super::plan(&held("web-1", 4), &quiet, now());
        assert!(taken.status.is_some(), "{taken:?}");
    }

    /// `held("web-0", 3)` after its claim was cleared.
    fn held_cleared() -> LeadershipLease {
        let object = held("web-0", 3);
        let lease = object.to_lease().expire(true).unwrap();
        LeadershipLease {
            status: Some(object.status_for(&lease, "Expired", now())),
            ..object
        }
    }

    #[test]
    fn p1_a_pinned_claim_never_expires() {
        let mut object = held("web-0", 3);
        object
            .spec
            .pins
            .insert("machine-0".into(), Pin { since: Time(now()) });
        assert!(plan(&object, &judged(true, false, false), now()).claim.is_none());
    }

    #[test]
    fn a_holder_whose_containers_all_terminated_is_released_early() {
        let plan = plan(&held("web-0", 3), &judged(false, true, false), now());
        assert!(matches!(plan.claim, Some(ClaimStep::PodGone(ref next)) if next.holder.is_none()));
    }

    #[test]
    fn p1_a_pinned_claim_outlives_its_holders_pod() {
        let mut object = held("web-0", 3);
        object
            .spec
            .pins
            .insert("upgrade".into(), Pin { since: Time(now()) });
        assert!(plan(&object, &judged(false, true, false), now()).claim.is_none());
    }

    #[test]
    fn v1_v2_revocations_end_when_the_grant_ends_or_name_a_non_holder() {
        let mut object = held("web-0", 3);
        object.spec.revocation = Some(Revocation {
            unit: "web-0".into(),
            term: 3,
            requested_at: None,
        });
        assert_eq!(
            plan(&object, &judged(false, false, false), now()).revocation,
            None,
            "pending while web-0 still holds term 3"
        );
        object.status.as_mut().unwrap().holder = None;
        assert_eq!(
            plan(&object, &judged(false, false, false), now()).revocation,
            Some(RevocationStep::Done { unit: "web-0".into() })
        );
        let mut other = held("web-1", 3);
        other.spec.revocation = Some(Revocation {
            unit: "web-0".into(),
            term: 3,
            requested_at: None,
        });
        let planned = plan(&other, &judged(false, false, false), now());
        assert_eq!(
            planned.revocation,
            Some(RevocationStep::NotHeld { unit: "web-0".into() })
        );
        let status = planned.status.unwrap();
        let revoked = condition::find(&status.conditions, "Revoked").unwrap();
        assert_eq!(
            (revoked.status.as_str(), revoked.reason.as_str()),
            ("False", "ClaimNotHeld")
        );
        let mut later = held("web-1", 4);
        later.spec.revocation = Some(Revocation {
            unit: "web-0".into(),
            term: 3,
            requested_at: None,
        });
        assert_eq!(
            plan(&later, &judged(false, false, false), now()).revocation,
            Some(RevocationStep::Done { unit: "web-0".into() })
        );
    }

    #[test]
    fn the_members_are_written_when_they_change_and_capped() {
        let mut object = held("web-0", 3);
        let judged = Judgement {
            members: vec!["web-0".into(), "web-1".into()],
            ..Judgement::default()
        };
        let first = plan(&object, &judged, now()).status.expect("members to write");
        assert_eq!(first.members, vec!["web-0".to_owned(), "web-1".to_owned()]);
        let status = object.status.as_mut().unwrap();
        status.conditions = first.conditions;
        status.pinned = first.pinned;
        status.observed_generation = first.observed_generation;
        status.members = first.members;
        assert_eq!(plan(&object, &judged, now()).status, None, "unchanged");
        let crowd = Judgement {
            members: (0..MAX_MEMBERS + 10).map(|i| format!("web-{i:04}")).collect(),
            ..Judgement::default()
        };
        let capped = plan(&object, &crowd, now()).status.unwrap();
        assert_eq!(capped.members.len(), MAX_MEMBERS);
        assert_eq!(capped.members.last().map(String::as_str), Some("web-0255"));
    }

    #[test]
    fn status_is_written_once_and_then_left_alone() {
        let mut object = held("web-0", 3);
        let first = plan(&object, &judged(false, false, false), now())
            .status
            .expect("first visit writes conditions");
        let status = object.status.as_mut().unwrap();
        status.conditions = first.conditions;
        status.pinned = first.pinned;
        status.observed_generation = first.observed_generation;
        // A renewal changes renewals and times, not what the operator reports.
        status.renewals += 1;
        let later = now().checked_add(Duration::from_secs(5)).unwrap();
        assert_eq!(
            plan(&object, &judged(false, false, false), later).status,
            None,
            "no write in steady state"
        );
        let held = condition::find(&object.status.as_ref().unwrap().conditions, "Held").unwrap();
        assert_eq!(held.message, "held by web-0 in term 3");
    }

    #[test]
    fn the_leader_label_moves_to_the_holder_and_is_taken_from_everyone_else_first() {
        let labelled = ["web-2".to_owned(), "web-0".to_owned()];
        let changes = leader_labels(&labelled, Some("web-1"), true);
        assert_eq!(changes.remove, vec!["web-0".to_owned(), "web-2".to_owned()]);
        assert_eq!(changes.add.as_deref(), Some("web-1"));
        // Nothing to do when only the holder carries it; no holder: nobody carries it.
        let holder = ["web-1".to_owned()];
        assert_eq!(
            leader_labels(&holder, Some("web-1"), true),
            LabelChanges::default()
        );
        assert_eq!(
            leader_labels(&holder, None, false).remove,
            vec!["web-1".to_owned()]
        );
        // A holder without a Pod object gets nothing.
        assert_eq!(leader_labels(&[], Some("web-9"), false).add, None);
    }

    #[test]
    fn the_labels_leave_a_holder_whose_claim_ran_out() {
        let judged = Judgement {
            expired: true,
            holder_pod_known: true,
            labelled: vec!["web-0".into()],
            ..Judgement::default()
        };
        let planned = plan(&held("web-0", 3), &judged, now());
        assert_eq!(planned.labels.remove, vec!["web-0".to_owned()]);
    }

    #[test]
    fn a_handover_ends_when_the_lease_is_taken_or_is_abandoned_when_overdue() {
        let mut object = held("web-0", 3);
        object.spec.handover = Some(HandoverRequest {
            from: "web-0".into(),
            term: 3,
            to: Some("web-1".into()),
            requested_at: None,
        });
        assert_eq!(
            plan(&object, &judged(false, false, false), now()).handover,
            None,
            "pending"
        );
        assert_eq!(
            plan(&object, &judged(false, false, true), now()).handover,
            Some(HandoverStep::Abandoned {
                from: "web-0".into(),
                to: Some("web-1".into())
            })
        );
        let taken = LeadershipLease {
            status: held("web-1", 4).status,
            ..object.clone()
        };
        assert_eq!(
            plan(&taken, &judged(false, false, true), now()).handover,
            Some(HandoverStep::Done {
                from: "web-0".into(),
                holder: Some("web-1".into())
            })
        );
        let elsewhere = LeadershipLease {
            status: held("web-2", 3).status,
            ..object
        };
        assert_eq!(
            plan(&elsewhere, &judged(false, false, false), now()).handover,
            Some(HandoverStep::NotHeld { from: "web-0".into() })
        );
    }

    #[test]
    fn the_preferred_unit_is_handed_the_lease_only_when_live_and_nothing_is_pending() {
        let live = Judgement {
            preferred_live: true,
            ..Judgement::default()
        };
        let mut object = held("web-0", 3);
        assert_eq!(plan(&object, &live, now()).ask, None, "no preference");
        object.spec.preferred_unit = Some("web-1".into());
        assert_eq!(
            plan(&object, &live, now()).ask,
            Some(HandoverAsk {
                from: "web-0".into(),
                term: 3,
                to: "web-1".into(),
                why: AskWhy::Preferred,
            })
        );
        assert_eq!(plan(&object, &Judgement::default(), now()).ask, None, "not live");
        let mut pending = object.clone();
        pending.spec.handover = Some(HandoverRequest {
            from: "web-0".into(),
            term: 3,
            to: None,
            requested_at: None,
        });
        assert_eq!(plan(&pending, &live, now()).ask, None);
        let leading = LeadershipLease {
            status: held("web-1", 4).status,
            ..object
        };
        assert_eq!(plan(&leading, &live, now()).ask, None, "already leads");
    }

    fn health_condition(plan: &Plan) -> Option<(String, String, String)> {
        let c = condition::find(&plan.status.as_ref()?.conditions, "LeaderHealthy")?;
        Some((c.status.clone(), c.reason.clone(), c.message.clone()))
    }

    #[test]
    fn an_unhealthy_leader_is_asked_to_hand_over_after_the_grace_to_the_best_standby() {
        let object = held("web-0", 3);
        let unhealthy = Judgement {
            follows_health: true,
            holder_unhealthy: Some("app: waiting (CrashLoopBackOff)".into()),
            best_standby: Some("web-2".into()),
            ..Judgement::default()
        };
        let within = plan(&object, &unhealthy, now());
        assert_eq!(within.ask, None, "within the grace");
        assert_eq!(
            health_condition(&within),
            Some((
                "False".into(),
                "AppUnhealthy".into(),
                "web-0's app is unhealthy (app: waiting (CrashLoopBackOff))".into()
            ))
        );
        let over = Judgement {
            unhealthy_for_grace: true,
            ..unhealthy.clone()
        };
        let asked = plan(&object, &over, now());
        assert_eq!(
            asked.ask,
            Some(HandoverAsk {
                from: "web-0".into(),
                term: 3,
                to: "web-2".into(),
                why: AskWhy::Unhealthy("app: waiting (CrashLoopBackOff)".into()),
            })
        );
        // A bad leader beats none: with no healthy standby it keeps leading, and says so.
        let alone = Judgement {
            best_standby: None,
            ..over.clone()
        };
        let kept = plan(&object, &alone, now());
        assert_eq!(kept.ask, None);
        let (status, why, message) = health_condition(&kept).unwrap();
        assert_eq!((status.as_str(), why.as_str()), ("False", "NoHealthyStandby"));
        assert!(message.ends_with("it keeps leading"), "{message}");
        // Nothing is asked while another request is pending, or once the claim ran out.
        let mut pending = object.clone();
        pending.spec.revocation = Some(Revocation {
            unit: "web-0".into(),
            term: 3,
            requested_at: None,
        });
        assert_eq!(plan(&pending, &over, now()).ask, None);
        let expired = Judgement {
            expired: true,
            ..over
        };
        assert_eq!(plan(&object, &expired, now()).ask, None);
    }

    #[test]
    fn a_healthy_leader_is_reported_so_and_an_application_without_the_rule_gets_no_condition() {
        let object = held("web-0", 3);
        let followed = Judgement {
            follows_health: true,
            ..Judgement::default()
        };
        assert_eq!(
            health_condition(&plan(&object, &followed, now())),
            Some((
                "True".into(),
                "AppHealthy".into(),
                "web-0's app is healthy".into()
            ))
        );
        assert_eq!(
            health_condition(&plan(&object, &Judgement::default(), now())),
            None
        );
        let free = held_cleared();
        assert_eq!(
            health_condition(&plan(&free, &followed, now())),
            None,
            "no leader"
        );
    }

    #[test]
    fn a_leader_whose_pod_is_being_deleted_hands_over_at_once_before_any_preference() {
        let mut object = held("web-0", 3);
        object.spec.preferred_unit = Some("web-1".into());
        let deleted = Judgement {
            holder_terminating: true,
            best_standby: Some("web-2".into()),
            preferred_live: true,
            ..Judgement::default()
        };
        let ask = plan(&object, &deleted, now()).ask.unwrap();
        assert_eq!((ask.to.as_str(), ask.why), ("web-2", AskWhy::Terminating));
        // No standby to move to: the sidecar's release at SIGTERM frees the lease as before.
        let alone = Judgement {
            best_standby: None,
            preferred_live: false,
            ..deleted
        };
        assert_eq!(plan(&object, &alone, now()).ask, None);
    }
}
