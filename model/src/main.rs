//! `cargo run --release -p leadership-model --bin model-check -- [--units 2|3] [--horizon TICKS]
//! [--variant product|no-cas|trust-timestamp|whole-lease] [--liveness] [--faults LIST]
//! [--no-operator] [--offsets]`: the larger model check (default: two units and the operator, six
//! ticks of 500 ms, no faults; `--offsets` gives each unit but the first a clock offset of 0 or 3 s).
//! Prints the configuration, the states explored, the time taken and each property's result;
//! exit code 1 if a property the variant must keep fails.

use std::{process::ExitCode, time::Instant};

use leadership_model::{Budget, Config, LeaseModel, Variant};
use stateright::{Checker, Expectation, Model};

const USAGE: &str = "usage: model-check [--units 2|3] [--horizon TICKS] [--variant product|no-cas|trust-timestamp|whole-lease] [--liveness] [--faults all|none|losses,crashes,operator-restarts,revocations,pins,releases,handovers] [--no-operator] [--offsets]";

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
            other => return Err(format!("unknown fault {other}\n{USAGE}")),
        }
    }
    Ok(budget)
}

fn config() -> Result<Config, String> {
    // The larger configuration: the operator too, six ticks (its expiries are reachable); clock
    // offsets and faults on request.
    let mut config = Config::new(6, Budget::default(), Variant::Product);
    config.operator = true;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--liveness" => {
                config = Config {
                    units: config.units,
                    ..Config::liveness(config.horizon)
                }
            }
            "--units" | "--horizon" | "--variant" | "--faults" => {
                let value = args.next().ok_or(format!("{flag} needs a value\n{USAGE}"))?;
                match flag.as_str() {
                    "--units" => {
                        config.units = value
                            .parse()
                            .map_err(|_| format!("--units takes 2 or 3\n{USAGE}"))?
                    }
                    "--faults" => config.budget = faults(&value)?,
                    "--horizon" => {
                        config.horizon = value
                            .parse()
                            .map_err(|_| format!("--horizon takes a number\n{USAGE}"))?
                    }
                    _ => {
                        config.variant = match value.as_str() {
                            "product" => Variant::Product,
                            "no-cas" => Variant::NoCompareAndSwap,
                            "trust-timestamp" => Variant::TrustTheHoldersTimestamp,
                            "whole-lease" => Variant::LeaderForTheWholeLease,
                            other => return Err(format!("unknown variant {other}\n{USAGE}")),
                        }
                    }
                }
            }
            "--no-operator" => config.operator = false,
            "--offsets" => {
                config.offsets = vec![std::time::Duration::ZERO, std::time::Duration::from_secs(3)]
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !(2..=3).contains(&config.units) {
        return Err(format!("--units takes 2 or 3\n{USAGE}"));
    }
    Ok(config)
}

fn main() -> ExitCode {
    let config = match config() {
        Ok(config) => config,
        Err(message) if message == USAGE => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    println!(
        "model: {} units{}, {} ticks of {:?} ({:?} of real time), d = {:?}, drift ±{}%, offsets {:?}, {}, {}",
        config.units,
        if config.operator { " and the operator" } else { "" },
        config.horizon,
        config.tick,
        config.tick * config.horizon,
        config.claim_duration,
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
        let holds = match property.expectation {
            Expectation::Sometimes => found.is_some(),
            Expectation::Always | Expectation::Eventually => found.is_none(),
        };
        println!("{:<60} {}", property.name, if holds { "holds" } else { "FAILS" });
        if let (false, Some(path)) = (holds, found) {
            println!("counterexample:\n{path}");
        }
        ok &= holds;
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
