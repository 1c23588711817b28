//! `e2e/chaos [--duration 30m] [--units 4] [--seed N] [--claim-duration 2s] [--schedule FILE]
//! [--out DIR] [--no-hostile]`: the fault checker. Runs one application with sidecars and two
//! operators on a control plane of its own, with the chart's RBAC and admission policies in force
//! and every process writing with a pod-bound token, injects faults, and proves from the sidecars'
//! records that no two units led at once. Meanwhile a hostile unit (a member pod with no sidecar;
//! off with `--no-hostile`) sends random writes of the leases with its pod's token, an unbound
//! token and impersonation, and every write the API server admits is judged: an illegal one fails
//! the run. Prints the faults by kind, the intervals checked, overlaps, availability, recovery
//! times and the hostile unit's figures; the last line is the summary. Exit code 1 if anything was
//! wrong. The wrapper script builds the release binaries and passes their paths in
//! `CHAOS_SIDECAR` and `CHAOS_OPERATOR`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use leadership::validate::parse_duration;
use leadership_e2e::tools::Tools;
use leadership_labs::chaos::{self, Settings, faults::PlannedFault};

const USAGE: &str = "usage: e2e/chaos [--duration 30m] [--units 3-5] [--seed N] [--claim-duration 2s] [--schedule FAULTS.json] [--out DIR] [--no-hostile]

  --no-hostile  leave out the hostile unit: a member pod with no sidecar that, every 100-300 ms,
                reads the application's lease (or the operators' own) and sends a random write of
                it as a compare-and-swap, with its pod's token, an unbound token or the admin
                impersonating the sidecar's account. Every admitted write is judged by the rules
                of docs/security.md; one that breaks them fails the run like an overlap
                (\"illegal writes admitted: N\" in the report and the summary line; the writes in
                DIR/hostile.json).";

fn settings() -> anyhow::Result<Settings> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        std::process::exit(0);
    }
    let mut settings = Settings {
        duration: Duration::from_secs(30 * 60),
        units: 4,
        claim_duration: Duration::from_secs(2),
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
        plan: None,
        out: PathBuf::from("target/chaos"),
        sidecar: std::env::var_os("CHAOS_SIDECAR")
            .map(PathBuf::from)
            .context("CHAOS_SIDECAR is not set: run e2e/chaos, which builds the binaries")?,
        operator: std::env::var_os("CHAOS_OPERATOR")
            .map(PathBuf::from)
            .context("CHAOS_OPERATOR is not set: run e2e/chaos, which builds the binaries")?,
        faketime: chaos::default_faketime(),
        hostile: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--no-hostile" {
            settings.hostile = false;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--duration" => settings.duration = parse_duration(&value)?,
            "--claim-duration" => settings.claim_duration = parse_duration(&value)?,
            "--units" => settings.units = value.parse().context("--units takes a number")?,
            "--seed" => settings.seed = value.parse().context("--seed takes a number")?,
            "--out" => settings.out = PathBuf::from(value),
            "--schedule" => {
                let text = std::fs::read_to_string(&value).with_context(|| format!("read {value}"))?;
                let file: serde_json::Value =
                    serde_json::from_str(&text).with_context(|| format!("parse {value}"))?;
                if let Some(seed) = file.get("seed").and_then(serde_json::Value::as_u64) {
                    settings.seed = seed;
                }
                let plan: Vec<PlannedFault> =
                    serde_json::from_value(file.get("plan").cloned().unwrap_or_default())
                        .with_context(|| format!("{value} has no valid \"plan\""))?;
                settings.plan = Some(plan);
            }
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    Ok(settings)
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = async {
        let settings = settings()?;
        let out = settings.out.clone();
        eprintln!(
            "chaos: {} sidecars, claim duration {:?}, faults for {:?}, seed {}, hostile unit {}; files in {}",
            settings.units,
            settings.claim_duration,
            settings.duration,
            settings.seed,
            if settings.hostile { "on" } else { "off" },
            out.display()
        );
        let tools = Tools::locate()?;
        let outcome = chaos::run(&tools, settings).await?;
        println!("{}", outcome.report());
        if !outcome.passed() {
            eprintln!(
                "FAILED: the history is in {0}/history.json and the records, the hostile unit's writes in {0}/hostile.json; replay the schedule with --schedule {0}/faults.json",
                out.display()
            );
        }
        anyhow::Ok(outcome.passed())
    }
    .await;
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("chaos failed: {err:#}");
            ExitCode::from(2)
        }
    }
}
