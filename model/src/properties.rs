//! What the checker proves: safety in every reachable state, and liveness under fairness.

use stateright::Property;

use crate::{LeaseModel, state::State, unit_name};

/// The names of the safety properties (those that must hold in every state).
pub const SAFETY: [&str; 5] = [
    "no two units lead at once (S1)",
    "no two units' tokens check at once, and a revoked holder's never does (K1, V2)",
    "the term never decreases and rises with every new holder",
    "a revoked or handed-over holder stops leading before another unit leads",
    "a pinned lease is never taken over",
];

/// The properties of `model`: the safety ones; that a unit sometimes leads, and when units leave
/// expiry to the operator, that one sometimes leads in a later term than a claim the operator
/// cleared (failover happens within the horizon); and under the prompt configuration the
/// liveness ones.
pub(crate) fn of(model: &LeaseModel) -> Vec<Property<LeaseModel>> {
    let [one_leader, tokens, term, revoked, pinned] = SAFETY;
    let mut properties = vec![
        Property::always(one_leader, |model: &LeaseModel, state: &State| {
            model.leaders(state).len() <= 1
        }),
        Property::always(tokens, |model: &LeaseModel, state: &State| {
            let checking: Vec<usize> = (0..state.units.len())
                .filter(|&i| model.token_checks(state, i))
                .collect();
            let revoked_checks = checking.iter().any(|&i| {
                let seen = state.units[i].observer.view.as_ref();
                seen.is_some_and(|o| o.lease.revoked.as_deref() == Some(unit_name(i).as_str()))
            });
            checking.len() <= 1 && !revoked_checks
        }),
        Property::always(term, |_: &LeaseModel, state: &State| !state.term_broken),
        Property::always(revoked, |model: &LeaseModel, state: &State| {
            match state.server.lease.revoked.as_deref() {
                Some(revoked) => {
                    let leaders = model.leaders(state);
                    !(leaders.iter().any(|&i| unit_name(i) == revoked) && leaders.len() > 1)
                }
                None => true,
            }
        }),
        Property::always(pinned, |_: &LeaseModel, state: &State| !state.pin_broken),
        Property::sometimes("a unit leads", |model: &LeaseModel, state: &State| {
            !model.leaders(state).is_empty()
        }),
    ];
    if !model.config.units_judge_expiry {
        let failover = "a unit leads after the operator cleared a run-out claim";
        properties.push(Property::sometimes(
            failover,
            |model: &LeaseModel, state: &State| {
                state.cleared.is_some_and(|cleared| {
                    model
                        .leaders(state)
                        .iter()
                        .any(|&i| state.units[i].term > cleared)
                })
            },
        ));
    }
    if model.config.prompt {
        properties.push(Property::eventually(
            "with no faults, some unit leads",
            |model: &LeaseModel, state: &State| !model.leaders(state).is_empty(),
        ));
        properties.push(Property::eventually(
            "with no faults, a released lease is taken",
            |_: &LeaseModel, state: &State| state.led_after_release,
        ));
    }
    properties
}
