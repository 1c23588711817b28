//! What the checker proves: safety in every reachable state, and liveness under fairness.

use stateright::Property;

use crate::{LeaseModel, state::State, unit_name};

/// The names of the safety properties (those that must hold in every state).
pub const SAFETY: [&str; 4] = [
    "no two units lead at once (S1)",
    "the term never decreases and rises with every new holder",
    "a revoked or handed-over holder stops leading before another unit leads",
    "a pinned lease is never taken over",
];

/// The properties of `model`: the safety ones, that a unit sometimes leads, and under the
/// prompt configuration the liveness ones.
pub(crate) fn of(model: &LeaseModel) -> Vec<Property<LeaseModel>> {
    let [one_leader, term, revoked, pinned] = SAFETY;
    let mut properties = vec![
        Property::always(one_leader, |model: &LeaseModel, state: &State| {
            model.leaders(state).len() <= 1
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
