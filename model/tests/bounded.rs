//! The bounded model checks of the test suite: the product's rules keep every safety property in
//! every reachable state of several small configurations (each with some of the faults), both
//! with units that judge expiry themselves and with the operator as the only expiry authority
//! (the product's default), liveness holds under fairness, and each deliberately broken variant
//! is caught with a counterexample, so the check is not vacuous. `model-check` runs the larger
//! configurations.

use std::time::Duration;

use leadership_model::{Action, Budget, Config, LeaseModel, SAFETY, State, Variant};
use stateright::{Checker, Model};

fn check(config: Config) -> impl Checker<LeaseModel> {
    let checker = LeaseModel::new(config).checker().spawn_bfs().join();
    println!("{} unique states", checker.unique_state_count());
    checker
}

fn product(horizon: u32, budget: Budget) -> Config {
    Config::new(horizon, budget, Variant::Product)
}

/// Takes `steps` in turn from `state`, each of which must be enabled, and returns the state
/// reached: a schedule inside the explored configuration.
fn play(model: &LeaseModel, mut state: State, steps: &[Action]) -> State {
    for step in steps {
        state = model
            .next_steps(&state)
            .into_iter()
            .find(|(action, _)| action == step)
            .unwrap_or_else(|| panic!("{step:?} is not enabled at tick {}", state.now))
            .1;
    }
    state
}

/// A failover inside the explored configuration: plays `before` from the initial state in which
/// both units' clocks run slow, checks that the first of `take` (the step that ends unit 0's
/// claim) is not enabled yet, then a tick later plays `take`, which must leave unit 1 leading in
/// a new term.
fn fails_over(model: &LeaseModel, before: &[Action], take: &[Action]) {
    let slow = model
        .init_states()
        .into_iter()
        .find(|s| s.units.iter().all(|u| u.observer.clock.rate_permille < 1000))
        .expect("an initial state with slow units");
    let waiting = play(model, slow, before);
    assert!(
        !model
            .next_steps(&waiting)
            .iter()
            .any(|(action, _)| *action == take[0]),
        "{:?} is enabled too soon, at tick {}",
        take[0],
        waiting.now
    );
    let ticked = play(model, waiting, &[Action::Tick]);
    let taken = play(model, ticked, take);
    assert_eq!(model.leaders(&taken), [1]);
    assert_eq!(taken.units[1].term, 2);
}

#[test]
fn renewals_expiry_and_takeover_with_drifting_clocks_keep_every_property() {
    use Action::{Answer, Claim, Tick, Watch};
    // Five ticks of 2 s: a claim, its renewal, and a takeover once it runs out. Unit 1 saw unit
    // 0's claim at tick 0; at tick 3 it has not run out on unit 1's clock, at tick 4 it has.
    let model = LeaseModel::new(Config::coarse(5, Budget::default(), Variant::Product));
    let before = [Watch(0), Claim(0), Answer(0), Watch(1), Tick, Tick, Tick];
    fails_over(&model, &before, &[Claim(1), Answer(0)]);
    let checker = check(model.config);
    checker.assert_properties();
    assert!(
        checker.unique_state_count() > 500_000,
        "the exploration is not trivial"
    );
}

#[test]
fn a_lease_longer_than_2d_renews_late_and_keeps_every_property() {
    // L = 3d: "leader" for 2d after each claim, the renewal due two ticks (half of that) before
    // it ends.
    let mut config = product(7, Budget::default());
    config.lease_length = config.claim_duration * 3;
    assert_eq!(config.timing().renewal_interval(), Duration::from_secs(1));
    check(config).assert_properties();
}

#[test]
fn crashes_and_lost_replies_keep_every_property() {
    let budget = Budget {
        crashes: 1,
        losses: 1,
        ..Budget::default()
    };
    check(product(3, budget)).assert_properties();
}

#[test]
fn revocations_and_releases_keep_every_property() {
    let budget = Budget {
        revocations: 1,
        releases: 1,
        ..Budget::default()
    };
    check(product(3, budget)).assert_properties();
}

#[test]
fn handovers_keep_every_property() {
    let budget = Budget {
        handovers: 1,
        ..Budget::default()
    };
    check(product(3, budget)).assert_properties();
}

#[test]
fn pins_keep_every_property() {
    let budget = Budget {
        pins: 1,
        ..Budget::default()
    };
    check(product(3, budget)).assert_properties();
}

#[test]
fn with_no_faults_some_unit_leads_and_a_released_lease_is_taken() {
    check(Config::liveness(6)).assert_properties();
}

/// The product's default, bounded (`Config::operator_authority`): units leave expiry to the
/// operator, the only one that clears a run-out claim.
fn operator_authority(horizon: u32, budget: Budget) -> Config {
    Config::operator_authority(horizon, budget, Variant::Product)
}

/// The operator clears unit 0's claim, and unit 1 learns that the lease is free and takes it.
const CLEAR_AND_TAKE: [Action; 4] = [
    Action::OperatorExpire,
    Action::Watch(1),
    Action::Claim(1),
    Action::Answer(0),
];

#[test]
fn with_the_operator_as_expiry_authority_a_crashed_holders_claim_is_cleared_and_taken_safely() {
    use Action::{Answer, Claim, Crash, Tick, Watch};
    let budget = Budget {
        crashes: 1,
        ..Budget::default()
    };
    let model = LeaseModel::new(operator_authority(5, budget));
    // Unit 0 claims at tick 0 and crashes holding the lease; at tick 3 the claim has not run out
    // on the operator's clock, at tick 4 it has.
    let before = [Watch(0), Claim(0), Answer(0), Crash(0), Tick, Tick, Tick];
    fails_over(&model, &before, &CLEAR_AND_TAKE);
    let checker = check(model.config);
    checker.assert_properties();
    assert!(
        checker.unique_state_count() > 1_000_000,
        "the exploration is not trivial"
    );
}

#[test]
fn with_the_operator_as_expiry_authority_a_restarted_operator_observes_a_claim_again_safely() {
    use Action::{Answer, Claim, OperatorRestart, Tick, Watch};
    let budget = Budget {
        operator_restarts: 1,
        ..Budget::default()
    };
    let model = LeaseModel::new(operator_authority(6, budget));
    // Unit 0 claims at tick 0 and then pauses (it does not renew); the operator restarts at tick
    // 1, so at tick 4, when it would have cleared the claim, it has seen it for three ticks only;
    // it clears at tick 5.
    let before = [
        Watch(0),
        Claim(0),
        Answer(0),
        Tick,
        OperatorRestart,
        Tick,
        Tick,
        Tick,
    ];
    fails_over(&model, &before, &CLEAR_AND_TAKE);
    let checker = check(model.config);
    checker.assert_properties();
    assert!(
        checker.unique_state_count() > 2_000_000,
        "the exploration is not trivial"
    );
}

#[test]
fn with_the_operator_as_expiry_authority_lost_replies_keep_every_property() {
    use Action::{Claim, GiveUp, LoseReply, Tick, Watch};
    let budget = Budget {
        losses: 1,
        ..Budget::default()
    };
    let model = LeaseModel::new(operator_authority(5, budget));
    // Unit 0's claim is granted but the reply is lost: it gives up, named holder of a claim it
    // does not know of, which the operator clears once it ran out.
    let before = [Watch(0), Claim(0), LoseReply(0), GiveUp(0), Tick, Tick, Tick];
    fails_over(&model, &before, &CLEAR_AND_TAKE);
    let checker = check(model.config);
    checker.assert_properties();
    assert!(
        checker.unique_state_count() > 1_500_000,
        "the exploration is not trivial"
    );
}

/// Checks a broken variant and expects a counterexample to `property`; returns its steps.
fn caught(config: Config, property: &'static str) -> Vec<Action> {
    let variant = config.variant;
    let checker = check(config);
    let path = checker
        .discovery(property)
        .unwrap_or_else(|| panic!("{variant}: no counterexample to {property}"));
    println!("{variant}: a counterexample to {property}:\n{path}");
    path.into_actions()
}

#[test]
fn writes_without_compare_and_swap_are_caught() {
    caught(
        Config::new(2, Budget::default(), Variant::NoCompareAndSwap),
        SAFETY[0],
    );
}

#[test]
fn expiry_judged_from_the_holders_timestamp_is_caught() {
    let mut config = Config::new(2, Budget::default(), Variant::TrustTheHoldersTimestamp);
    config.offsets = vec![Duration::ZERO, Duration::from_secs(3)];
    caught(config, SAFETY[0]);
}

#[test]
fn leading_for_the_whole_lease_without_a_drift_margin_is_caught() {
    caught(
        Config::new(6, Budget::default(), Variant::LeaderForTheWholeLease),
        SAFETY[0],
    );
}

#[test]
fn with_the_operator_as_expiry_authority_clearing_with_no_drift_margin_is_caught() {
    // The operator clears a claim it saw at tick 0 at tick 2 (L on its fast clock), while the
    // holder, on a slow clock, still leads for the whole lease: two leaders.
    let config = Config::operator_authority(3, Budget::default(), Variant::LeaderForTheWholeLease);
    let steps = caught(config, SAFETY[0]);
    assert!(steps.contains(&Action::OperatorExpire));
}

#[test]
fn with_the_operator_as_expiry_authority_clearing_by_the_holders_timestamp_is_caught() {
    // The operator clears at tick 2, the holder's timestamp plus L on its own fast clock, while
    // the holder's token, on a slow clock, still checks: two tokens check at once.
    let config = Config::operator_authority(3, Budget::default(), Variant::TrustTheHoldersTimestamp);
    let steps = caught(config, SAFETY[1]);
    assert!(steps.contains(&Action::OperatorExpire));
}
