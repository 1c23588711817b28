//! The benchmark's load generator for this project: `--apps A --units U` applications of U units
//! each, every unit a `LeaseTracker` over a `KubeStore` of its own (its own lease watch, as in its
//! own pod), all in this process over the project's HTTP/2 client: one connection per
//! [`UNITS_PER_CONNECTION`] units (a unit has at most a watch and a claim open at once; the
//! kube-apiserver allows 100 streams on a connection, and a request past them waits). Leases are `NAME0`.., units `NAME0-ID0`.. On
//! SIGUSR1 it prints a tally of what the trackers did since the last one (a
//! `TALLY` line: elections, renewals and their latency, leaderships lost). On SIGTERM every tracker
//! releases its lease, then the process exits.
//!
//! `load-trackers --namespace NS --lease NAME --identity ID --apps A --units U
//!  --claim-duration 5s [--lease-length 20s] [--expiry-authority operator|units]`

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use clap::Parser;
use leadership::{
    LeaseTracker, TrackerConfig,
    tracker::{Timing, Transition},
    validate::parse_duration,
};
use leadership_kube::{ExpiryAuthority, KubeStore, Scope, StoreConfig};
use leadership_labs::bench::tally::Tally;
use tokio::signal::unix::{SignalKind, signal};

/// Many trackers in one process.
#[derive(Parser, Debug)]
struct Args {
    /// The namespace of the leases.
    #[arg(long)]
    namespace: String,
    /// The prefix of the applications' names.
    #[arg(long)]
    lease: String,
    /// The prefix of the unit part of the units' names.
    #[arg(long)]
    identity: String,
    /// How many applications.
    #[arg(long)]
    apps: usize,
    /// Units per application.
    #[arg(long, default_value_t = 3)]
    units: usize,
    /// The guarantee d of every unit.
    #[arg(long, value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    claim_duration: Duration,
    /// The lease length L (default 4d, as the sidecar's).
    #[arg(long, value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    lease_length: Option<Duration>,
    /// Who frees a lease whose claim ran out: the operator, as for the sidecar (the benchmark
    /// runs one), or the units themselves.
    #[arg(long, default_value_t = ExpiryAuthority::Operator)]
    expiry_authority: ExpiryAuthority,
}

/// Lets this process hold one connection per watch: the soft limit on open files raised to the
/// hard one.
fn raise_open_files_limit() -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(())
}

/// Units that share one client (one HTTP/2 connection).
const UNITS_PER_CONNECTION: usize = 40;

async fn run(args: Args) -> anyhow::Result<()> {
    raise_open_files_limit().context("raise the open files limit")?;
    let config = kube::Config::infer()
        .await
        .context("read the client configuration")?;
    let total = args.apps * args.units;
    let clients = (0..total.div_ceil(UNITS_PER_CONNECTION))
        .map(|_| leadership_kube::client::client(config.clone()))
        .collect::<Result<Vec<_>, _>>()
        .context("make a client")?;
    let mut trackers = Vec::with_capacity(total);
    for app in 0..args.apps {
        let application = format!("{}{app}", args.lease);
        for unit in 0..args.units {
            let client = clients[trackers.len() / UNITS_PER_CONNECTION].clone();
            let name = format!("{application}-{}{unit}", args.identity);
            let store = KubeStore::with_config(
                client,
                Scope::Namespace(args.namespace.clone()),
                StoreConfig {
                    expiry_authority: args.expiry_authority,
                    ..StoreConfig::default()
                },
            );
            let config = TrackerConfig::new(&application, &name, args.claim_duration).with_lease_length(
                args.lease_length
                    .unwrap_or(Timing::default_lease_length(args.claim_duration)),
            );
            trackers.push(LeaseTracker::start(store, config)?);
        }
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    for tracker in &trackers {
        tokio::spawn(count(tracker.transitions(), tally.clone()));
    }
    println!("STARTED {} candidates", trackers.len());
    let (mut terminate, mut usr1) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::user_defined1())?,
    );
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = usr1.recv() => {
                let reading = tally.lock().unwrap_or_else(|p| p.into_inner()).take();
                println!("{}", reading.line());
            }
        }
    }
    futures::future::join_all(trackers.iter().map(LeaseTracker::stop)).await;
    Ok(())
}

/// Counts one tracker's transitions into the tally; a renewal's latency is from its sending
/// (the guarantee's start) to now, when its answer was published.
async fn count(mut transitions: tokio::sync::broadcast::Receiver<Transition>, tally: Arc<Mutex<Tally>>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let transition = match transitions.recv().await {
            Ok(transition) => transition,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
        match transition {
            Transition::Elected { .. } => tally.elected(),
            Transition::Renewed { guarantee, .. } => {
                tally.renewed(guarantee.claimed_at.elapsed().as_secs_f64() * 1000.0)
            }
            Transition::Deposed { .. } => tally.deposed(),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("load-trackers: {err:#}");
            ExitCode::FAILURE
        }
    }
}
