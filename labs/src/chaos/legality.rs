//! The hostile unit's judge (pure): whether a write to a `LeadershipLease` with a credential of
//! the sidecar's ServiceAccount was legal, by the rules of `docs/security.md`. It is written apart
//! from the chart's admission policies, which the API server applies, so that each checks the
//! other: a write the API server admits and this judge calls illegal is a hole in the policies (or
//! in this judge), and the run fails.
//!
//! The rules, for a writer of the sidecar's account (the chart's defaults, as the checker installs
//! them):
//!
//! - **The object** (spec and metadata): never. The sidecar's Role has no `update` on leases
//!   (`sidecar.allowPinning` is off), so its credentials change neither the spec nor the labels,
//!   annotations, finalizers or owner references.
//! - **The status**, only with a token bound to a pod (impersonation and unbound tokens write no
//!   status), never on the operator's own lease, and only one of these, for the writer's own pod:
//!   - *grant*: a free lease, the pod listed in `status.members`, holder = the pod, term + 1,
//!     renewals 0, a leaseDurationMs; not while a handover of the previous term admits another
//!     unit;
//!   - *renewal*: its own claim, same term, renewals + 1, leaseDurationMs never shorter; not while
//!     a revocation or a handover names it in this term;
//!   - *release*: its own claim, no holder, same term (renewals and duration as it likes).
//!
//!   The operator's fields stay as they were (conditions, observedGeneration, members), except what
//!   every claim write may do: `pinned` mirrors spec.pins, and `locked` may end. Display fields
//!   (acquireTime, renewTime, expireTime, history) go with any legal claim write.
//! - **The schema**, for everyone: the term never falls and rises by at most one per write; term
//!   and renewals stay within 0 ..= 2^53 − 1; a leaseDurationMs within 1 ..= one hour, and always
//!   one with a holder; at most ten history entries.
//!
//! The lock delay is not judged: the API server cannot read a clock, and a grant does not look at
//! `status.locked`.

use leadership_kube::crd::{
    HISTORY_LIMIT, LeadershipLease, LeadershipLeaseSpec, LeadershipLeaseStatus, MAX_COUNT, MAX_LEASE_MS,
};
use serde::{Deserialize, Serialize};

/// A legal write, by what it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Legal {
    /// The writer took a free lease.
    Grant,
    /// The writer renewed its own claim.
    Renewal,
    /// The writer released its own claim.
    Release,
    /// The writer declared its own eligibility (its entry of `status.ineligible`), nothing else.
    Declaration,
}

impl Legal {
    /// The write's name, as in the report.
    pub fn name(self) -> &'static str {
        match self {
            Legal::Grant => "grant",
            Legal::Renewal => "renewal",
            Legal::Release => "release",
            Legal::Declaration => "declaration",
        }
    }
}

/// Judges the write that turned `old` into `new`, sent with a credential of the sidecar's
/// ServiceAccount: `writer` names the pod its token is bound to, `None` for a credential without
/// a pod binding. `operators_lease` says whether the lease is the operator's own. What the write
/// was if legal, else why it is not.
pub fn judge(
    old: &LeadershipLease,
    new: &LeadershipLease,
    writer: Option<&str>,
    operators_lease: bool,
) -> Result<Legal, String> {
    let changed = object_changes(old, new);
    if !changed.is_empty() {
        return Err(format!(
            "the sidecar's account has no update on leases: it changed {}",
            changed.join(", ")
        ));
    }
    let (was, is) = (status(old), status(new));
    schema(&was, &is)?;
    let Some(pod) = writer else {
        return Err("status writes need a token bound to a pod".into());
    };
    if operators_lease {
        return Err(format!(
            "pod {pod} wrote the operator's own lease: only the operator's replicas claim it"
        ));
    }
    let changed = operator_fields(&was, &is, &new.spec);
    if !changed.is_empty() {
        return Err(format!(
            "pod {pod} changed the operator's fields {}",
            changed.join(", ")
        ));
    }
    let others: Vec<&str> = is
        .ineligible
        .iter()
        .filter(|(unit, entry)| *unit != pod && was.ineligible.get(*unit) != Some(entry))
        .map(|(unit, _)| unit.as_str())
        .chain(
            was.ineligible
                .keys()
                .filter(|unit| *unit != pod && !is.ineligible.contains_key(*unit))
                .map(String::as_str),
        )
        .collect();
    if !others.is_empty() {
        return Err(format!(
            "pod {pod} changed the status.ineligible entry of {}",
            others.join(", ")
        ));
    }
    let claim_unchanged = (&was.holder, was.term, was.renewals, was.lease_duration_ms)
        == (&is.holder, is.term, is.renewals, is.lease_duration_ms);
    if claim_unchanged && was.ineligible != is.ineligible {
        let display = (&was.acquire_time, &was.renew_time, &was.expire_time, &was.history)
            != (&is.acquire_time, &is.renew_time, &is.expire_time, &is.history);
        if display {
            return Err(format!(
                "pod {pod} declared its eligibility and changed display fields with it"
            ));
        }
        return Ok(Legal::Declaration);
    }
    claim(&was, &is, pod, &old.spec)
}

fn status(lease: &LeadershipLease) -> LeadershipLeaseStatus {
    lease.status.clone().unwrap_or_default()
}

/// The parts of the object beyond the status that differ.
fn object_changes(old: &LeadershipLease, new: &LeadershipLease) -> Vec<&'static str> {
    let (a, b) = (&old.metadata, &new.metadata);
    [
        ("spec", old.spec != new.spec),
        ("metadata.labels", a.labels != b.labels),
        ("metadata.annotations", a.annotations != b.annotations),
        ("metadata.finalizers", a.finalizers != b.finalizers),
        (
            "metadata.ownerReferences",
            a.owner_references != b.owner_references,
        ),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

/// The schema's rules on a status write, for every writer.
fn schema(was: &LeadershipLeaseStatus, is: &LeadershipLeaseStatus) -> Result<(), String> {
    let counts = 0..=MAX_COUNT;
    if is.term < was.term {
        return Err(format!("the term fell from {} to {}", was.term, is.term));
    }
    if is.term > was.term.saturating_add(1) {
        return Err(format!(
            "the term rose by more than one, from {} to {}",
            was.term, is.term
        ));
    }
    if !counts.contains(&is.term) || !counts.contains(&is.renewals) {
        return Err(format!(
            "term {} or renewals {} beyond 0 ..= 2^53 - 1",
            is.term, is.renewals
        ));
    }
    match is.lease_duration_ms {
        Some(ms) if !(1..=MAX_LEASE_MS).contains(&ms) => {
            return Err(format!("leaseDurationMs {ms} beyond 1 ..= {MAX_LEASE_MS}"));
        }
        None if is.holder.is_some() => return Err("a claim without leaseDurationMs".into()),
        _ => {}
    }
    if is.history.len() > HISTORY_LIMIT {
        return Err(format!("{} history entries", is.history.len()));
    }
    Ok(())
}

/// The operator's fields a unit's status write changed (`spec` is the lease's, which a status
/// write leaves as it was).
fn operator_fields(
    was: &LeadershipLeaseStatus,
    is: &LeadershipLeaseStatus,
    spec: &LeadershipLeaseSpec,
) -> Vec<&'static str> {
    [
        ("conditions", was.conditions != is.conditions),
        (
            "observedGeneration",
            was.observed_generation != is.observed_generation,
        ),
        ("members", was.members != is.members),
        ("unhealthy", was.unhealthy != is.unhealthy),
        // A change of `pinned` only to mirror the pins.
        (
            "pinned",
            is.pinned != was.pinned && is.pinned == spec.pins.is_empty(),
        ),
        ("locked", is.locked && !was.locked),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

/// The claim rules for a status write by `pod`, the schema's and the operator's fields already
/// judged.
fn claim(
    was: &LeadershipLeaseStatus,
    is: &LeadershipLeaseStatus,
    pod: &str,
    spec: &LeadershipLeaseSpec,
) -> Result<Legal, String> {
    let mine = |holder: &Option<String>| holder.as_deref() == Some(pod);
    let pending = |term: i64| term == was.term;
    match (&was.holder, &is.holder) {
        (None, Some(_)) if mine(&is.holder) => {
            if !was.members.iter().any(|m| m == pod) {
                return Err(format!("grant by {pod}, which is not a member"));
            }
            if is.term != was.term + 1 || is.renewals != 0 {
                return Err(format!(
                    "grant by {pod} in term {} with renewals {} (term {} + 1 and renewals 0 are due)",
                    is.term, is.renewals, was.term
                ));
            }
            if let Some(handover) = spec.handover.as_ref().filter(|h| pending(h.term)) {
                let admitted = match &handover.to {
                    Some(to) => to == pod,
                    None => handover.from != pod,
                };
                if !admitted {
                    return Err(format!(
                        "grant by {pod} while the handover from {} does not admit it",
                        handover.from
                    ));
                }
            }
            Ok(Legal::Grant)
        }
        (Some(_), Some(_)) if mine(&was.holder) && mine(&is.holder) => {
            if is.term != was.term || is.renewals != was.renewals + 1 {
                return Err(format!(
                    "renewal by {pod} from term {} renewals {} to term {} renewals {} (same term, renewals + 1 are due)",
                    was.term, was.renewals, is.term, is.renewals
                ));
            }
            if is.lease_duration_ms < was.lease_duration_ms {
                return Err(format!("renewal by {pod} shortened leaseDurationMs"));
            }
            let revoked = spec
                .revocation
                .as_ref()
                .is_some_and(|r| r.unit == pod && pending(r.term));
            let handing_over = spec
                .handover
                .as_ref()
                .is_some_and(|h| h.from == pod && pending(h.term));
            if revoked || handing_over {
                return Err(format!(
                    "renewal by {pod} while a revocation or handover names it"
                ));
            }
            Ok(Legal::Renewal)
        }
        (Some(_), None) if mine(&was.holder) => {
            if is.term != was.term {
                return Err(format!("release by {pod} changed the term"));
            }
            Ok(Legal::Release)
        }
        (Some(holder), _) if !mine(&was.holder) => Err(format!(
            "pod {pod} changed the claim of {holder}: only the operator clears another unit's claim"
        )),
        (_, Some(holder)) if !mine(&is.holder) => Err(format!(
            "pod {pod} claimed for {holder}: a pod claims only for itself"
        )),
        _ => Err(format!(
            "pod {pod} wrote no claim: neither a grant, a renewal nor a release"
        )),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        apimachinery::pkg::apis::meta::v1::{MicroTime, Time},
        jiff::Timestamp,
    };
    use leadership_kube::crd::{HandoverRequest, Pin, Revocation, Transition};

    use super::*;
    use crate::chaos::{
        faults::Rng,
        mutations::{self, Scene},
    };

    const ME: &str = "web-1";

    /// A change of a status, as a write makes it.
    type Change = fn(&mut LeadershipLeaseStatus);

    fn lease(holder: Option<&str>, term: i64, renewals: i64) -> LeadershipLease {
        let mut lease = LeadershipLease::empty("ns", "web");
        lease.metadata.resource_version = Some("7".into());
        lease.status = Some(LeadershipLeaseStatus {
            holder: holder.map(str::to_owned),
            term,
            renewals,
            lease_duration_ms: holder.map(|_| 4_000),
            members: vec!["web-0".into(), ME.into()],
            ..LeadershipLeaseStatus::default()
        });
        lease
    }

    /// `old` with its status changed by `change`.
    fn write(old: &LeadershipLease, change: impl FnOnce(&mut LeadershipLeaseStatus)) -> LeadershipLease {
        let mut new = old.clone();
        change(new.status.get_or_insert_with(Default::default));
        new
    }

    fn grant(s: &mut LeadershipLeaseStatus) {
        s.holder = Some(ME.into());
        s.term += 1;
        s.renewals = 0;
        s.lease_duration_ms = Some(4_000);
    }

    fn renew(s: &mut LeadershipLeaseStatus) {
        s.renewals += 1;
    }

    fn release(s: &mut LeadershipLeaseStatus) {
        s.holder = None;
        s.lease_duration_ms = None;
        s.renewals = 0;
    }

    fn illegal(old: &LeadershipLease, new: &LeadershipLease, expected: &str) {
        match judge(old, new, Some(ME), false) {
            Err(why) => assert!(why.contains(expected), "{why:?} does not say {expected:?}"),
            Ok(legal) => panic!("judged legal ({legal:?}), expected: {expected}"),
        }
    }

    #[test]
    fn a_members_grant_renewal_and_release_are_legal() {
        let free = lease(None, 3, 0);
        assert_eq!(
            judge(&free, &write(&free, grant), Some(ME), false),
            Ok(Legal::Grant)
        );
        let held = lease(Some(ME), 4, 2);
        let longer = write(&held, |s| {
            renew(s);
            s.lease_duration_ms = Some(8_000);
        });
        assert_eq!(judge(&held, &longer, Some(ME), false), Ok(Legal::Renewal));
        assert_eq!(
            judge(&held, &write(&held, release), Some(ME), false),
            Ok(Legal::Release)
        );
    }

    #[test]
    fn display_fields_and_the_operators_mirrors_go_with_a_legal_claim_write() {
        let mut free = lease(None, 3, 0);
        free.spec.pins.insert(
            "machine".into(),
            Pin {
                since: Time(Timestamp::UNIX_EPOCH),
            },
        );
        free.status.as_mut().unwrap().locked = true;
        let now = MicroTime(Timestamp::UNIX_EPOCH);
        let new = write(&free, |s| {
            grant(s);
            s.acquire_time = Some(now.clone());
            s.renew_time = Some(now.clone());
            s.expire_time = Some(now.clone());
            s.history.push(Transition {
                term: 4,
                holder: Some(ME.into()),
                reason: "Acquired".into(),
                time: now,
            });
            s.pinned = true;
            s.locked = false;
        });
        assert_eq!(judge(&free, &new, Some(ME), false), Ok(Legal::Grant));
    }

    #[test]
    fn illegal_claims_are_found() {
        let free = lease(None, 3, 0);
        illegal(
            &free,
            &write(&free, |s| {
                grant(s);
                s.term += 1;
            }),
            "rose by more than one",
        );
        illegal(
            &free,
            &write(&free, |s| {
                grant(s);
                s.renewals = 1;
            }),
            "renewals 0 are due",
        );
        illegal(
            &free,
            &write(&free, |s| {
                grant(s);
                s.holder = Some("web-0".into());
            }),
            "only for itself",
        );
        illegal(
            &free,
            &write(&free, |s| {
                grant(s);
                s.members.clear();
            }),
            "members",
        );
        let mut stranger = free.clone();
        stranger.status.as_mut().unwrap().members = vec!["web-0".into()];
        illegal(&stranger, &write(&stranger, grant), "not a member");
        illegal(&free, &write(&free, |s| s.term = -1), "fell");
        illegal(
            &free,
            &write(&free, |s| {
                grant(s);
                s.lease_duration_ms = None;
            }),
            "without leaseDurationMs",
        );
        illegal(&free, &free.clone(), "wrote no claim");

        let other = lease(Some("web-0"), 4, 0);
        illegal(&other, &write(&other, grant), "claim of web-0");
        illegal(&other, &write(&other, release), "claim of web-0");
        illegal(&other, &write(&other, renew), "claim of web-0");

        let held = lease(Some(ME), 4, 2);
        illegal(&held, &write(&held, |s| s.renewals += 2), "renewals + 1");
        illegal(
            &held,
            &write(&held, |s| {
                renew(s);
                s.term += 1;
            }),
            "same term",
        );
        illegal(
            &held,
            &write(&held, |s| {
                renew(s);
                s.lease_duration_ms = Some(1);
            }),
            "shortened",
        );
        illegal(
            &held,
            &write(&held, |s| {
                release(s);
                s.term += 1;
            }),
            "changed the term",
        );
        illegal(&held, &write(&held, |s| s.renewals = MAX_COUNT + 1), "2^53");
        illegal(
            &held,
            &write(&held, |s| {
                renew(s);
                s.conditions
                    .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                        type_: leadership_kube::crd::condition::HELD.into(),
                        status: "True".into(),
                        reason: "Hostile".into(),
                        message: String::new(),
                        last_transition_time: Time(Timestamp::UNIX_EPOCH),
                        observed_generation: None,
                    });
            }),
            "operator's fields conditions",
        );
    }

    #[test]
    fn revocations_and_handovers_hold_back_renewals_and_other_units_grants() {
        let mut revoked = lease(Some(ME), 4, 0);
        revoked.spec.revocation = Some(Revocation {
            unit: ME.into(),
            term: 4,
            requested_at: None,
        });
        illegal(&revoked, &write(&revoked, renew), "revocation");
        // A revocation of an earlier term names another claim.
        revoked.spec.revocation.as_mut().unwrap().term = 3;
        assert_eq!(
            judge(&revoked, &write(&revoked, renew), Some(ME), false),
            Ok(Legal::Renewal)
        );

        let mut handed = lease(None, 4, 0);
        handed.spec.handover = Some(HandoverRequest {
            from: "web-0".into(),
            term: 4,
            to: Some("web-2".into()),
            requested_at: None,
        });
        illegal(&handed, &write(&handed, grant), "handover");
        handed.spec.handover.as_mut().unwrap().to = None;
        assert_eq!(
            judge(&handed, &write(&handed, grant), Some(ME), false),
            Ok(Legal::Grant)
        );
    }

    #[test]
    fn credentials_without_a_pod_the_operators_lease_and_the_object_are_never_legal() {
        let free = lease(None, 3, 0);
        let granted = write(&free, grant);
        assert!(
            judge(&free, &granted, None, false)
                .unwrap_err()
                .contains("bound to a pod")
        );
        assert!(
            judge(&free, &granted, Some(ME), true)
                .unwrap_err()
                .contains("operator's own lease")
        );
        let mut pinned = free.clone();
        pinned.spec.pins.insert(
            ME.into(),
            Pin {
                since: Time(Timestamp::UNIX_EPOCH),
            },
        );
        assert!(
            judge(&free, &pinned, Some(ME), false)
                .unwrap_err()
                .contains("spec")
        );
        let mut finalized = free.clone();
        finalized.metadata.finalizers = Some(vec!["leadership.dev/keep".into()]);
        assert!(
            judge(&free, &finalized, None, false)
                .unwrap_err()
                .contains("finalizers")
        );
    }

    /// The claim, the operator's fields and the other units' declarations of a status: what a
    /// legal write may not change beyond its own transition.
    fn claim_of(lease: &LeadershipLease) -> impl PartialEq + std::fmt::Debug {
        let s = status(lease);
        let others: Vec<_> = s.ineligible.into_iter().filter(|(unit, _)| unit != ME).collect();
        (
            s.holder,
            s.term,
            s.renewals,
            s.lease_duration_ms,
            s.conditions,
            s.observed_generation,
            (s.members, s.unhealthy, others),
            (s.pinned, s.locked),
        )
    }

    #[test]
    fn random_mutations_of_a_legal_write_stay_legal_only_when_they_touch_display_fields() {
        let units = vec!["web-0".to_owned(), ME.to_owned(), "web-2".to_owned()];
        let scene = Scene {
            me: ME,
            units: &units,
            lease_ms: 4_000,
            now: Timestamp::UNIX_EPOCH,
        };
        let cases: [(LeadershipLease, Change, Legal); 3] = [
            (lease(None, 3, 0), grant, Legal::Grant),
            (lease(Some(ME), 4, 2), renew, Legal::Renewal),
            (lease(Some(ME), 4, 2), release, Legal::Release),
        ];
        let mut rng = Rng::new(42);
        let (mut kept, mut broken) = (0, 0);
        for (old, legal_write, kind) in &cases {
            let legal = write(old, *legal_write);
            for _ in 0..2_000 {
                let mutated = mutations::status_moves(&mut rng, old, &legal, &scene);
                let verdict = judge(old, &mutated.object, Some(ME), false);
                if claim_of(&mutated.object) == claim_of(&legal)
                    && status(&mutated.object).history.len() <= HISTORY_LIMIT
                {
                    assert_eq!(verdict, Ok(*kind), "display-only moves {:?}", mutated.moves);
                    kept += 1;
                } else if verdict.is_err() {
                    broken += 1;
                } else {
                    // A move may change the claim into another legal one (a renewal that also
                    // lengthens, a release with other renewals): never into another unit's claim.
                    assert_eq!(status(&mutated.object).holder.as_deref().unwrap_or(ME), ME);
                }
            }
        }
        assert!(kept > 100 && broken > 1_000, "kept {kept}, broken {broken}");
    }
}
