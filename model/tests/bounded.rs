//! The bounded model checks of the test suite: the product's rules keep every safety property in
//! every reachable state of several small configurations (each with some of the faults), liveness
//! holds under fairness, and each deliberately broken variant is caught with a counterexample,
//! so the check is not vacuous. `model-check` runs the larger configuration.

use std::time::Duration;

use leadership_model::{Budget, Config, LeaseModel, SAFETY, Variant};
use stateright::{Checker, Model};

fn check(config: Config) -> impl Checker<LeaseModel> {
    let checker = LeaseModel::new(config).checker().spawn_bfs().join();
    println!("{} unique states", checker.unique_state_count());
    checker
}

fn product(horizon: u32, budget: Budget) -> Config {
    Config::new(horizon, budget, Variant::Product)
}

#[test]
fn renewals_expiry_and_takeover_with_drifting_clocks_keep_every_property() {
    // Six ticks of 500 ms: a claim, its renewals, and a takeover once it runs out.
    let checker = check(product(6, Budget::default()));
    checker.assert_properties();
    assert!(
        checker.unique_state_count() > 100_000,
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

/// Checks a broken variant and expects a counterexample to S1.
fn caught(config: Config) {
    let variant = config.variant;
    let checker = check(config);
    let path = checker
        .discovery(SAFETY[0])
        .unwrap_or_else(|| panic!("{variant}: no counterexample to S1"));
    println!("{variant}: a counterexample:\n{path}");
}

#[test]
fn writes_without_compare_and_swap_are_caught() {
    caught(Config::new(2, Budget::default(), Variant::NoCompareAndSwap));
}

#[test]
fn expiry_judged_from_the_holders_timestamp_is_caught() {
    let mut config = Config::new(2, Budget::default(), Variant::TrustTheHoldersTimestamp);
    config.offsets = vec![Duration::ZERO, Duration::from_secs(3)];
    caught(config);
}

#[test]
fn leading_for_the_whole_lease_without_a_drift_margin_is_caught() {
    caught(Config::new(6, Budget::default(), Variant::LeaderForTheWholeLease));
}
