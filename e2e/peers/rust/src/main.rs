//! The benchmark's Rust peers behind one command line, so the harness drives them like our sidecar:
//!
//!   rust-peers --impl lease-manager --namespace NS --lease NAME --identity ID --lease-seconds N
//!
//! Prints `LEADER` when this process becomes leader and `STOPPED` when it stops leading; on SIGTERM
//! it gives the lease up the way the crate documents, then exits.

use std::collections::HashMap;

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, SignalKind};

fn flags() -> anyhow::Result<HashMap<String, String>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut flags = HashMap::new();
    for pair in args.chunks(2) {
        match pair {
            [key, value] if key.starts_with("--") => {
                flags.insert(key.trim_start_matches("--").to_owned(), value.clone());
            }
            _ => bail!("usage: rust-peers --impl lease-manager --namespace NS --lease NAME --identity ID --lease-seconds N"),
        }
    }
    Ok(flags)
}

fn announce(leading: bool) {
    println!("{}", if leading { "LEADER" } else { "STOPPED" });
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let flags = flags()?;
    let get = |key: &str| flags.get(key).cloned().with_context(|| format!("--{key} is required"));
    let (implementation, namespace, lease, identity) = (get("impl")?, get("namespace")?, get("lease")?, get("identity")?);
    let seconds: u64 = get("lease-seconds")?.parse().context("--lease-seconds")?;
    let mut terminate = signal(SignalKind::terminate())?;
    match implementation.as_str() {
        "lease-manager" => {
            let client = kube::Client::try_default().await?;
            let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &lease)
                .with_namespace(&namespace)
                .with_identity(&identity)
                .with_duration(seconds)
                .with_grace((seconds / 3).max(1))
                .build()
                .await?;
            let (mut channel, task) = manager.watch().await;
            let mut leading = false;
            loop {
                tokio::select! {
                    _ = terminate.recv() => {
                        // Dropping the channel makes the manager release the lease and end.
                        drop(channel);
                        let _ = task.await;
                        return Ok(());
                    }
                    changed = channel.changed() => {
                        changed?;
                        let now = *channel.borrow_and_update();
                        if now != leading {
                            leading = now;
                            announce(leading);
                        }
                    }
                }
            }
        }
        other => bail!("unknown --impl {other}: lease-manager"),
    }
}
