//! `cargo run --release -p leadership-model --bin model-check -- [--units 2|3] [--horizon TICKS]
//! [--variant product|no-cas|trust-timestamp|whole-lease] [--liveness] [--faults LIST]
//! [--no-operator | --operator-judges-expiry] [--offsets]`: the larger model check (default: two
//! units and the operator, seven ticks of 500 ms, no faults: a claim made at the start runs out
//! at tick 6 on the fastest clock, so its expiry and a takeover are explored; `--offsets` gives
//! each unit but the first a clock offset of 0 or 3 s).
//! Prints the configuration, the states explored, the time taken and each property's result (a
//! safety or liveness property holds or fails; a state that should be reachable is reached or
//! not); exit code 1 if a property the variant must keep fails or such a state is not reached.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};
use leadership_model::{Budget, Config, LeaseModel, Variant};
use stateright::{Checker, Expectation, Model};

/// The larger model check of the lease protocol.
#[derive(Debug, Parser)]
#[command(name = "model-check")]
struct Args {
    /// How many units.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    units: u8,
    /// How many ticks of 500 ms of real time to explore.
    #[arg(long, default_value_t = 7)]
    horizon: u32,
    /// The rules to check: the product's, or a deliberately broken variant.
    #[arg(long, value_enum, default_value_t = Rules::Product)]
    variant: Rules,
    /// The fair, fault-free configuration for liveness (one voluntary release, no operator).
    #[arg(long)]
    liveness: bool,
    /// The faults allowed, one of each: `all`, `none`, or a comma-separated list of losses,
    /// crashes, operator-restarts, revocations, pins, releases, handovers.
    #[arg(long, value_parser = faults)]
    faults: Option<Budget>,
    /// Leave the operator out (units still judge expiry themselves).
    #[arg(long)]
    no_operator: bool,
    /// Units leave expiry to the operator and take only a free lease (the sidecar's default,
    /// `--expiry-authority operator`); without it, units also judge expiry themselves.
    #[arg(long, conflicts_with = "no_operator")]
    operator_judges_expiry: bool,
    /// Give each unit but the first a clock offset of 0 or 3 s.
    #[arg(long)]
    offsets: bool,
    /// The lease length in ticks of 500 ms (at least 4: twice d, which is 2 ticks).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(4..=8))]
    lease_ticks: u32,
}

/// The `--variant` names.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Rules {
    /// The product's rules.
    Product,
    /// Writes without compare-and-swap.
    NoCas,
    /// Expiry judged from the holder's timestamp.
    TrustTimestamp,
    /// Leader for the whole lease, with no drift margin.
    WholeLease,
}

impl From<Rules> for Variant {
    fn from(rules: Rules) -> Variant {
        match rules {
            Rules::Product => Variant::Product,
            Rules::NoCas => Variant::NoCompareAndSwap,
            Rules::TrustTimestamp => Variant::TrustTheHoldersTimestamp,
            Rules::WholeLease => Variant::LeaderForTheWholeLease,
        }
    }
}

/// The fault budget named by `--faults`: one of each listed kind.
fn faults(list: &str) -> Result<Budget, String> {
    let mut budget = Budget::default();
    match list {
        "all" => return Ok(Budget::every_fault_once()),
        "none" => return Ok(budget),
        _ => {}
    }
    for name in list.split(',') {
        match name {
            "losses" => budget.losses = 1,
            "crashes" => budget.crashes = 1,
            "operator-restarts" => budget.operator_restarts = 1,
            "revocations" => budget.revocations = 1,
            "pins" => budget.pins = 1,
            "releases" => budget.releases = 1,
            "handovers" => budget.handovers = 1,
            other => {
                return Err(format!(
                    "unknown fault {other} (all, none, or a list of losses, crashes, operator-restarts, revocations, pins, releases, handovers)"
                ));
            }
        }
    }
    Ok(budget)
}

impl Args {
    /// The configuration the flags name. Without `--liveness`: the operator too, no faults;
    /// clock offsets and faults on request.
    fn config(&self) -> Config {
        let mut config = if self.liveness {
            Config::liveness(self.horizon)
        } else {
            Config {
                operator: true,
                ..Config::new(self.horizon, Budget::default(), Variant::Product)
            }
        };
        config.units = usize::from(self.units);
        config.variant = self.variant.into();
        if let Some(budget) = self.faults {
            config.budget = budget;
        }
        if self.no_operator {
            config.operator = false;
        }
        if self.operator_judges_expiry {
            config.units_judge_expiry = false;
        }
        if self.offsets {
            config.offsets = vec![Duration::ZERO, Duration::from_secs(3)];
        }
        config.lease_length = config.tick * self.lease_ticks;
        config
    }
}

fn main() -> ExitCode {
    let config = Args::parse().config();
    println!(
        "model: {} units{}, {} ticks of {:?} ({:?} of real time), d = {:?}, lease {:?} (renewal due {:?} after a claim), drift ±{}%, offsets {:?}, {}, {}",
        config.units,
        match (config.operator, config.units_judge_expiry) {
            (false, _) => "",
            (true, true) => " and the operator",
            (true, false) => " and the operator as the only expiry authority",
        },
        config.horizon,
        config.tick,
        config.tick * config.horizon,
        config.claim_duration,
        config.lease_length,
        config.timing().renewal_interval(),
        config.drift * 100.0,
        config.offsets,
        if config.prompt {
            "prompt and fault-free (liveness)".to_owned()
        } else {
            format!("faults {:?}", config.budget)
        },
        config.variant
    );
    let started = Instant::now();
    let model = LeaseModel::new(config);
    let properties = model.properties();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let checker = model.checker().threads(threads).spawn_bfs().join();
    println!(
        "explored {} states ({} unique) in {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        started.elapsed().as_secs_f64()
    );
    let mut ok = true;
    for property in properties {
        let found = checker.discovery(property.name);
        let (holds, verdict) = match property.expectation {
            Expectation::Sometimes if found.is_some() => (true, "reached"),
            Expectation::Sometimes => (false, "NOT REACHED within the horizon"),
            Expectation::Always | Expectation::Eventually if found.is_none() => (true, "holds"),
            Expectation::Always | Expectation::Eventually => (false, "FAILS"),
        };
        println!("{:<60} {verdict}", property.name);
        if let (false, Some(path)) = (holds, found) {
            println!("counterexample:\n{path}");
        }
        ok &= holds;
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
