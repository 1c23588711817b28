//! `e2e/bench [--quick] [--only PARTS] [--ours-only] [--out DIR]`: measures this project and its peers (client-go's
//! leaderelection, kube-lease-manager; kube-leader-election does not build) in one run on one local
//! control plane, and writes `DIR/report.json` and `DIR/report.md` (the plot is drawn from the JSON
//! by `e2e/plot.py`). The wrapper script builds the binaries and passes their paths
//! (`BENCH_SIDECAR`, `BENCH_OPERATOR`, `BENCH_CLIENT_GO`, `BENCH_RUST_PEERS`) and where the raw
//! logs go (`BENCH_LOGS`, default `target/bench-logs`). The measuring is in
//! [`leadership_labs::bench`].

use std::{collections::BTreeSet, path::PathBuf, process::ExitCode};

use anyhow::{Context, bail};
use leadership_labs::bench::{PARTS, Plan};

const USAGE: &str =
    "usage: e2e/bench [--quick] [--only election,flood,load,operator,socket] [--ours-only] [--out DIR]";

fn parse_args() -> anyhow::Result<(Plan, BTreeSet<String>, PathBuf)> {
    let mut quick = false;
    let mut ours_only = false;
    let mut parts: BTreeSet<String> = PARTS.iter().map(|p| (*p).to_owned()).collect();
    let mut out = PathBuf::from("bench-report");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--ours-only" => ours_only = true,
            "--out" => out = args.next().context("--out needs a folder")?.into(),
            "--only" => {
                let list = args
                    .next()
                    .context("--only needs parts: election, flood, load, operator, socket")?;
                parts = list.split(',').map(|p| p.trim().to_owned()).collect();
                if let Some(unknown) = parts.iter().find(|p| !PARTS.contains(&p.as_str())) {
                    bail!(
                        "unknown part {unknown:?} in --only; the parts are {}",
                        PARTS.join(", ")
                    );
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    Ok((
        Plan {
            ours_only,
            ..Plan::new(quick)
        },
        parts,
        out,
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let run = async {
        let (plan, parts, out) = parse_args()?;
        let logs =
            std::env::var_os("BENCH_LOGS").map_or_else(|| PathBuf::from("target/bench-logs"), PathBuf::from);
        leadership_labs::bench::run(plan, &parts, &out, &logs).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
