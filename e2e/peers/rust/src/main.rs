//! The benchmark's Rust peers behind one command line, so the harness drives them like our sidecar:
//!
//!   rust-peers --impl lease-manager --namespace NS --lease NAME --identity ID
//!              [--lease-seconds N] [--grace-seconds N] [--apps A --units U]
//!
//! One candidate: prints `LEADER` when it becomes leader and `STOPPED` when it stops leading. With
//! `--apps`, the load generator: A applications (leases `NAME0`..) of U candidates each
//! (`NAME0-ID0`..), all in this process over one client, and prints nothing per candidate. On
//! SIGTERM each gives its lease up the way the crate documents, then the process exits.

use std::collections::HashMap;

use anyhow::{bail, Context};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
    task::JoinSet,
};

const USAGE: &str = "usage: rust-peers --impl lease-manager --namespace NS --lease NAME --identity ID [--lease-seconds N] [--grace-seconds N] [--apps A --units U]";

fn flags() -> anyhow::Result<HashMap<String, String>> {
    let mut flags = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let Some(key) = arg.strip_prefix("--") else { bail!("{USAGE}") };
        let (key, value) = match key.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (key.to_owned(), args.next().context(USAGE)?),
        };
        flags.insert(key, value);
    }
    Ok(flags)
}

/// One candidate: follows its leadership until `stop` changes, printing changes if `announce`,
/// then drops the channel, which makes the manager release the lease.
async fn candidate(
    client: kube::Client,
    namespace: String,
    lease: String,
    identity: String,
    (seconds, grace): (u64, u64),
    announce: bool,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &lease)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(seconds)
        .with_grace(grace)
        .build()
        .await?;
    let (mut channel, task) = manager.watch().await;
    let mut leading = false;
    loop {
        tokio::select! {
            _ = stop.changed() => {
                drop(channel);
                let _ = task.await;
                return Ok(());
            }
            changed = channel.changed() => {
                changed?;
                let now = *channel.borrow_and_update();
                if now != leading {
                    leading = now;
                    if announce {
                        println!("{}", if leading { "LEADER" } else { "STOPPED" });
                    }
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = flags()?;
    let get = |key: &str| flags.get(key).cloned().with_context(|| format!("--{key} is required; {USAGE}"));
    let number = |key: &str, default: u64| -> anyhow::Result<u64> {
        flags.get(key).map_or(Ok(default), |v| v.parse().with_context(|| format!("--{key}")))
    };
    let (implementation, namespace, lease, identity) = (get("impl")?, get("namespace")?, get("lease")?, get("identity")?);
    if implementation != "lease-manager" {
        bail!("unknown --impl {implementation}: lease-manager");
    }
    let seconds = number("lease-seconds", kube_lease_manager::DEFAULT_LEASE_DURATION_SECONDS)?;
    let grace = number("grace-seconds", kube_lease_manager::DEFAULT_LEASE_GRACE_SECONDS.min(seconds.saturating_sub(1).max(1)))?;
    let mut terminate = signal(SignalKind::terminate())?;
    let client = kube::Client::try_default().await?;
    let (stop, stopped) = watch::channel(false);
    let mut candidates = JoinSet::new();
    match flags.get("apps") {
        None => {
            candidates.spawn(candidate(client, namespace, lease, identity, (seconds, grace), true, stopped));
        }
        Some(apps) => {
            let apps: usize = apps.parse().context("--apps")?;
            let units = usize::try_from(number("units", 3)?)?;
            for app in 0..apps {
                for unit in 0..units {
                    candidates.spawn(candidate(
                        client.clone(),
                        namespace.clone(),
                        format!("{lease}{app}"),
                        format!("{lease}{app}-{identity}{unit}"),
                        (seconds, grace),
                        false,
                        stopped.clone(),
                    ));
                }
            }
            println!("STARTED {} candidates", apps * units);
        }
    }
    tokio::select! {
        _ = terminate.recv() => {}
        Some(ended) = candidates.join_next() => ended??,
    }
    let _ = stop.send(true);
    while let Some(ended) = candidates.join_next().await {
        ended??;
    }
    Ok(())
}
