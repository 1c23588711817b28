//! The hostile unit's writes (pure): from the lease object it read, a random change of the status
//! (sent with `replace_status`) or of the object itself (spec and metadata, sent with `replace`).
//! Half the status writes start from the write an honest unit in its place would try (take the
//! free lease, renew or release its own claim, or take another unit's claim over as if it had run
//! out) and add random moves to it; the others are random moves on the object as read. Every move
//! picks its value at random: the holder (none, itself, the current holder, another unit, a name
//! that is no pod), the term and renewals (same, + 1, + 2, huge, 2^53, negative), leaseDurationMs
//! (none, 1, shorter, the same, longer, the units' own), the history, the operator's fields, the
//! display times; on the object: pins, a revocation, a handover, the preferred unit, a policy,
//! labels, finalizers. So the API server is asked to judge writes that no list of known-illegal
//! writes would hold, legal ones among them.

use std::collections::BTreeMap;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time},
    jiff::{SignedDuration, Timestamp},
};
use leadership_kube::crd::{
    HandoverRequest, Ineligible, LeadershipLease, LeadershipLeaseStatus, LeasePolicy, MAX_COUNT, Pin,
    Revocation, Transition, condition,
};
use serde::{Deserialize, Serialize};

use super::faults::Rng;

/// Which part of the object a write replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// The status subresource (`replace_status`): the claim and the operator's fields.
    Status,
    /// The object (`replace`): spec and metadata; the API server keeps the status as it was.
    Object,
}

/// What the hostile unit knows when it makes a write.
#[derive(Clone, Copy, Debug)]
pub struct Scene<'a> {
    /// Its own pod's name.
    pub me: &'a str,
    /// The application's units (the sidecars' pods).
    pub units: &'a [String],
    /// The lease an honest unit asks for, in milliseconds; the hostile unit asks for at most twice
    /// this, so that a claim of its own that the API server rightly admits keeps the application
    /// from its units for a while, not for the rest of the run.
    pub lease_ms: i64,
    /// The time written into display fields.
    pub now: Timestamp,
}

/// A write to send.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mutation {
    /// Which part it replaces.
    pub part: Part,
    /// The object to send, with the resourceVersion of the one read (a compare-and-swap).
    pub object: LeadershipLease,
    /// What was changed, in order, for the record.
    pub moves: Vec<String>,
}

/// A random write on the object `read`: the status three times in four, else the object.
pub fn write(rng: &mut Rng, read: &LeadershipLease, scene: &Scene) -> Mutation {
    if rng.below(4) == 0 {
        return object_moves(rng, read, scene);
    }
    if rng.below(2) == 0 {
        let (base, honest) = honest(rng, read, scene);
        let count = rng_moves(rng, 0);
        let mut mutation = status_moves_from(rng, read, base, scene, count);
        mutation.moves.insert(0, honest.to_owned());
        mutation
    } else {
        status_moves(rng, read, read, scene)
    }
}

/// One to three random status moves on `base`, a write on the object `read` (values such as the
/// term are chosen relative to what was read).
pub fn status_moves(
    rng: &mut Rng,
    read: &LeadershipLease,
    base: &LeadershipLease,
    scene: &Scene,
) -> Mutation {
    let count = rng_moves(rng, 1);
    status_moves_from(rng, read, base.clone(), scene, count)
}

/// How many moves: `least` to 3.
fn rng_moves(rng: &mut Rng, least: usize) -> usize {
    least + rng.below(4 - least)
}

fn status_moves_from(
    rng: &mut Rng,
    read: &LeadershipLease,
    mut object: LeadershipLease,
    scene: &Scene,
    count: usize,
) -> Mutation {
    let was = read.status.clone().unwrap_or_default();
    let status = object.status.get_or_insert_with(Default::default);
    let moves = (0..count)
        .map(|_| status_move(rng, &was, status, scene))
        .collect();
    Mutation {
        part: Part::Status,
        object,
        moves,
    }
}

/// The write an honest unit in the hostile unit's place would try on `read` (takeovers of another
/// unit's claim included), and its name.
fn honest(rng: &mut Rng, read: &LeadershipLease, scene: &Scene) -> (LeadershipLease, &'static str) {
    let mut object = read.clone();
    let status = object.status.get_or_insert_with(Default::default);
    let now = Some(MicroTime(scene.now));
    let mine = status.holder.as_deref() == Some(scene.me);
    let name = match status.holder {
        Some(_) if mine && rng.below(2) == 0 => {
            status.holder = None;
            status.renewals = 0;
            status.lease_duration_ms = None;
            status.acquire_time = None;
            status.renew_time = None;
            status.expire_time = None;
            "release"
        }
        Some(_) if mine => {
            status.renewals += 1;
            status.renew_time = now;
            "renewal"
        }
        ref holder => {
            let name = if holder.is_some() { "takeover" } else { "grant" };
            status.holder = Some(scene.me.to_owned());
            status.term += 1;
            status.renewals = 0;
            status.lease_duration_ms = Some(scene.lease_ms);
            status.acquire_time = now.clone();
            status.renew_time = now;
            name
        }
    };
    (object, name)
}

/// Picks one of `choices` (not empty).
fn pick<T: Clone>(rng: &mut Rng, choices: &[T]) -> T {
    choices[rng.below(choices.len())].clone()
}

/// One of the application's units (itself if it knows none).
fn another(rng: &mut Rng, scene: &Scene) -> String {
    match scene.units.len() {
        0 => scene.me.to_owned(),
        n => scene.units[rng.below(n)].clone(),
    }
}

/// A count (term or renewals) relative to `was`: the same, + 1, + 2, 0, huge, 2^53 (one past the
/// schema's bound) or negative.
fn count(rng: &mut Rng, was: i64) -> (i64, &'static str) {
    pick(
        rng,
        &[
            (was, "same"),
            (was + 1, "+1"),
            (was + 2, "+2"),
            (0, "0"),
            (1 << 40, "2^40"),
            (MAX_COUNT + 1, "2^53"),
            (-1, "-1"),
        ],
    )
}

/// One random change of `status`, with values relative to `was` (the status read); what it did.
fn status_move(
    rng: &mut Rng,
    was: &LeadershipLeaseStatus,
    status: &mut LeadershipLeaseStatus,
    scene: &Scene,
) -> String {
    let now = MicroTime(scene.now);
    match rng.below(8) {
        0 => {
            let another = another(rng, scene);
            let holder = pick(
                rng,
                &[
                    None,
                    Some(scene.me.to_owned()),
                    was.holder.clone(),
                    Some(another),
                    Some("ghost-0".to_owned()),
                ],
            );
            let text = format!("holder {}", holder.as_deref().unwrap_or("none"));
            status.holder = holder;
            text
        }
        1 => {
            let (term, how) = count(rng, was.term);
            status.term = term;
            format!("term {how}")
        }
        2 => {
            let (renewals, how) = count(rng, was.renewals);
            status.renewals = renewals;
            format!("renewals {how}")
        }
        3 => {
            let read = was.lease_duration_ms.unwrap_or(scene.lease_ms);
            let (ms, how) = pick(
                rng,
                &[
                    (None, "none"),
                    (Some(1), "1"),
                    (Some((read / 2).max(1)), "shorter"),
                    (Some(read), "same"),
                    (Some((read * 2).min(scene.lease_ms * 2).max(read)), "longer"),
                    (Some(scene.lease_ms), "the units'"),
                ],
            );
            status.lease_duration_ms = ms;
            format!("leaseDurationMs {how}")
        }
        4 => match rng.below(3) {
            0 => {
                status.history.push(Transition {
                    term: was.term,
                    holder: Some(scene.me.to_owned()),
                    reason: "Acquired".into(),
                    time: now,
                });
                "history + entry".into()
            }
            1 => {
                status.history.clear();
                "history cleared".into()
            }
            _ => {
                if !status.history.is_empty() {
                    status.history.remove(0);
                }
                "history - oldest".into()
            }
        },
        5 => match rng.below(6) {
            0 => {
                status.members = vec![scene.me.to_owned()];
                "members itself alone".into()
            }
            1 => {
                status.members.clear();
                "members cleared".into()
            }
            2 => {
                status.conditions = vec![Condition {
                    type_: condition::HELD.into(),
                    status: "True".into(),
                    reason: "Hostile".into(),
                    message: String::new(),
                    last_transition_time: Time(scene.now),
                    observed_generation: None,
                }];
                "conditions".into()
            }
            3 => {
                status.pinned = !status.pinned;
                "pinned toggled".into()
            }
            4 => {
                status.locked = !status.locked;
                "locked toggled".into()
            }
            _ => {
                status.observed_generation = Some(was.observed_generation.unwrap_or(0) + 1);
                "observedGeneration + 1".into()
            }
        },
        6 => {
            // A Time goes over the wire in whole seconds: so does the one written here, or the
            // judge would see a change the API server does not.
            let second = Timestamp::from_second(scene.now.as_second()).unwrap_or(scene.now);
            let entry = Ineligible {
                reason: "hostile".into(),
                since: Some(Time(second)),
            };
            match rng.below(4) {
                0 => {
                    status.ineligible.insert(scene.me.to_owned(), entry);
                    "ineligible itself".into()
                }
                1 => {
                    let another = another(rng, scene);
                    status.ineligible.insert(another.clone(), entry);
                    format!("ineligible {another}")
                }
                2 => {
                    status.ineligible.clear();
                    "ineligible cleared".into()
                }
                _ => {
                    status.unhealthy = vec![another(rng, scene)];
                    "unhealthy another".into()
                }
            }
        }
        _ => {
            let until = scene
                .now
                .checked_add(SignedDuration::from_millis(scene.lease_ms))
                .unwrap_or(scene.now);
            status.acquire_time = Some(now.clone());
            status.renew_time = Some(now);
            status.expire_time = Some(MicroTime(until));
            "display times".into()
        }
    }
}

/// One to three random changes of the spec or the metadata of `read`.
fn object_moves(rng: &mut Rng, read: &LeadershipLease, scene: &Scene) -> Mutation {
    let mut object = read.clone();
    let status = read.status.clone().unwrap_or_default();
    let holder = status.holder.clone().unwrap_or_else(|| scene.me.to_owned());
    let term = status.term.max(1);
    let count = rng_moves(rng, 1);
    let mut moves = Vec::new();
    for _ in 0..count {
        let spec = &mut object.spec;
        let text = match rng.below(7) {
            0 => {
                if rng.below(2) == 0 {
                    let pin = Pin {
                        since: Time(scene.now),
                    };
                    spec.pins.insert(scene.me.to_owned(), pin);
                    "pin"
                } else {
                    spec.pins.clear();
                    "pins cleared"
                }
            }
            1 => {
                let unit = pick(rng, &[holder.clone(), scene.me.to_owned()]);
                spec.revocation = (rng.below(3) > 0).then_some(Revocation {
                    unit,
                    term,
                    requested_at: None,
                });
                "revocation"
            }
            2 => {
                let to = pick(rng, &[None, Some(scene.me.to_owned())]);
                spec.handover = (rng.below(3) > 0).then_some(HandoverRequest {
                    from: holder.clone(),
                    term,
                    to,
                    requested_at: None,
                });
                "handover"
            }
            3 => {
                let another = another(rng, scene);
                spec.preferred_unit = pick(rng, &[None, Some(scene.me.to_owned()), Some(another)]);
                "preferredUnit"
            }
            4 => {
                spec.policy = (rng.below(3) > 0).then_some(LeasePolicy {
                    min_duration_ms: Some(100),
                    max_duration_ms: Some(scene.lease_ms),
                    lock_delay_ms: Some(scene.lease_ms),
                    health: None,
                });
                "policy"
            }
            5 => {
                let labels = object.metadata.labels.get_or_insert_with(BTreeMap::new);
                if rng.below(2) == 0 {
                    labels.insert("leadership.dev/leader".into(), scene.me.to_owned());
                } else {
                    labels.clear();
                }
                "labels"
            }
            _ => {
                let finalizers = object.metadata.finalizers.get_or_insert_with(Vec::new);
                if rng.below(2) == 0 {
                    finalizers.push("leadership.dev/hostile".into());
                } else {
                    finalizers.clear();
                }
                "finalizers"
            }
        };
        moves.push(text.to_owned());
    }
    Mutation {
        part: Part::Object,
        object,
        moves,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_repeat_with_the_seed_and_keep_the_resource_version_read() {
        let units = vec!["web-0".to_owned(), "web-1".to_owned()];
        let scene = Scene {
            me: "web-9",
            units: &units,
            lease_ms: 4_000,
            now: Timestamp::UNIX_EPOCH,
        };
        let mut read = LeadershipLease::empty("ns", "web");
        read.metadata.resource_version = Some("42".into());
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..200)
                .map(|_| write(&mut rng, &read, &scene))
                .collect::<Vec<_>>()
        };
        let (a, b) = (run(5), run(5));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert!(
            a.iter()
                .all(|m| m.object.metadata.resource_version.as_deref() == Some("42"))
        );
        assert!(a.iter().any(|m| m.part == Part::Object) && a.iter().any(|m| m.part == Part::Status));
        // A status write never touches the object, nor an object write the status.
        for m in &a {
            match m.part {
                Part::Status => {
                    assert_eq!((&m.object.spec, &m.object.metadata), (&read.spec, &read.metadata))
                }
                Part::Object => assert_eq!(m.object.status, read.status),
            }
        }
    }
}
