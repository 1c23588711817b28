//! `kubectl leadership ...`: the CLI for people, with kubectl's conventions (`-n`, `-A`,
//! `--kubeconfig`, `-o json|yaml`). Errors print the SPEC's message and exit non-zero.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use kube::{
    Api, Client, ResourceExt,
    api::ListParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use leadership::{Claimer, Pinner, Revoker, validate::parse_duration};
use leadership_kube::{KubeStore, Scope, crd::LeadershipLease};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// Look at and steer application leadership.
#[derive(Debug, Parser)]
#[command(name = "kubectl-leadership", bin_name = "kubectl leadership", version, about)]
pub struct Cli {
    /// The namespace (default: the kubeconfig's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace (for `leaders` and `pins`).
    #[arg(short = 'A', long = "all-namespaces", global = true)]
    pub all_namespaces: bool,
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Output format (default: a table).
    #[arg(short = 'o', long, value_enum, global = true)]
    pub output: Option<Output>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Who leads each application.
    Leaders,
    /// One application's lease in detail: holder, term, pins, revocation, conditions, history.
    Status {
        /// The application.
        application: String,
    },
    /// Pin an application's leadership on behalf of an entity (its claim stops expiring).
    Pin {
        /// The application.
        application: String,
        /// The entity pinning it.
        entity: String,
    },
    /// Remove an entity's pin.
    Unpin {
        /// The application.
        application: String,
        /// The entity.
        entity: String,
    },
    /// Which applications are pinned, and by whom.
    Pins,
    /// Revoke a unit's leadership: it steps down at once.
    Revoke {
        /// The application.
        application: String,
        /// The unit that holds it.
        unit: String,
    },
    /// Hand the leader's lease over to UNIT (any other unit when omitted): the holder steps down
    /// and only UNIT may take the lease; waits for the outcome unless --no-wait.
    Handover {
        /// The application.
        application: String,
        /// The unit to take over.
        unit: Option<String>,
        /// Return once the request is written.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this long.
        #[arg(long, value_parser = duration, default_value = "60s")]
        timeout: Duration,
    },
    /// Wait until the leadership held when the command started is released (or has run out).
    WaitReleased {
        /// The application.
        application: String,
        /// Give up after this long.
        #[arg(long, value_parser = duration)]
        timeout: Option<Duration>,
    },
}

/// One row of `leaders`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LeaderRow {
    namespace: String,
    application: String,
    leader: Option<String>,
    term: i64,
    pinned: bool,
}

async fn client(cli: &Cli) -> anyhow::Result<Client> {
    let config = match &cli.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).with_context(|| format!("read {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration (set KUBECONFIG or --kubeconfig)")?,
    };
    Ok(Client::try_from(config)?)
}

fn print<T: Serialize>(
    output: Option<Output>,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match output {
        Some(Output::Json) => println!("{}", serde_json::to_string_pretty(value)?),
        Some(Output::Yaml) => print!("{}", serde_yaml::to_string(value)?),
        None => print!("{}", table()),
    }
    Ok(())
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        format!("{}\n", padded.join("   ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Runs the CLI.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = client(&cli).await?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let store = KubeStore::new(client.clone(), Scope::Namespace(namespace.clone()));
    let list_api: Api<LeadershipLease> = if cli.all_namespaces {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), &namespace)
    };
    match &cli.command {
        Command::Leaders => {
            let mut objects = list_api.list(&ListParams::default()).await?.items;
            objects.sort_by_key(|o| (o.namespace(), o.name_any()));
            let rows: Vec<LeaderRow> = objects
                .iter()
                .map(|o| {
                    let status = o.status.clone().unwrap_or_default();
                    LeaderRow {
                        namespace: o.namespace().unwrap_or_default(),
                        application: o.name_any(),
                        leader: status.holder,
                        term: status.term,
                        pinned: !o.spec.pins.is_empty(),
                    }
                })
                .collect();
            print(cli.output, &rows, || {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        let mut cells = vec![
                            r.application.clone(),
                            r.leader.clone().unwrap_or_else(|| "<none>".into()),
                            r.term.to_string(),
                            r.pinned.to_string(),
                        ];
                        if cli.all_namespaces {
                            cells.insert(0, r.namespace.clone());
                        }
                        cells
                    })
                    .collect();
                let mut header = vec!["APPLICATION", "LEADER", "TERM", "PINNED"];
                if cli.all_namespaces {
                    header.insert(0, "NAMESPACE");
                }
                table(&header, &cells)
            })
        }
        Command::Status { application } => {
            let object = Api::<LeadershipLease>::namespaced(client.clone(), &namespace)
                .get_opt(application)
                .await?
                .with_context(|| format!("no leadership lease for {application} in namespace {namespace}"))?;
            print(cli.output, &object, || describe(&object))
        }
        Command::Pin { application, entity } => {
            store.pin_leadership(application, entity).await?;
            println!("{application} pinned by {entity}");
            Ok(())
        }
        Command::Unpin { application, entity } => {
            store.unpin_leadership(application, entity).await?;
            println!("{entity} no longer pins {application}");
            Ok(())
        }
        Command::Pins => {
            let objects = list_api.list(&ListParams::default()).await?.items;
            let pins: Vec<(String, String, Vec<String>)> = objects
                .iter()
                .filter(|o| !o.spec.pins.is_empty())
                .map(|o| {
                    (
                        o.namespace().unwrap_or_default(),
                        o.name_any(),
                        o.spec.pins.keys().cloned().collect(),
                    )
                })
                .collect();
            let value: Vec<serde_json::Value> = pins
                .iter()
                .map(|(ns, app, entities)| serde_json::json!({"namespace": ns, "application": app, "entities": entities}))
                .collect();
            print(cli.output, &value, || {
                let rows: Vec<Vec<String>> = pins
                    .iter()
                    .map(|(ns, app, entities)| vec![ns.clone(), app.clone(), entities.join(",")])
                    .collect();
                table(&["NAMESPACE", "APPLICATION", "PINNED BY"], &rows)
            })
        }
        Command::Revoke { application, unit } => {
            store.revoke_leadership(application, unit).await?;
            println!("revoked {unit}'s leadership of {application}");
            Ok(())
        }
        Command::Handover {
            application,
            unit,
            no_wait,
            timeout,
        } => {
            let asked = tokio::time::Instant::now();
            let (from, term) = store.hand_over(application, unit.as_deref()).await?;
            let target = unit.as_deref().unwrap_or("another unit");
            println!("{from} (term {term}) is handing {application} over to {target}");
            if *no_wait {
                return Ok(());
            }
            let api: Api<LeadershipLease> = Api::namespaced(client.clone(), &namespace);
            loop {
                let object = api.get(application).await?;
                let status = object.status.clone().unwrap_or_default();
                let now_term = u64::try_from(status.term).unwrap_or(0);
                if now_term > term {
                    let holder = status.holder.unwrap_or_else(|| "<none>".into());
                    println!(
                        "handed over to {holder} in term {now_term} after {} ms",
                        asked.elapsed().as_millis()
                    );
                    return Ok(());
                }
                if object.spec.handover.is_none() {
                    anyhow::bail!(
                        "the handover was abandoned: {target} did not take the lease in time (see kubectl describe leadershiplease {application})"
                    );
                }
                if asked.elapsed() > *timeout {
                    anyhow::bail!("gave up waiting after {timeout:?}; the handover is still pending");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Command::WaitReleased { application, timeout } => {
            let cancel = CancellationToken::new();
            let trigger = cancel.clone();
            let limit = *timeout;
            tokio::spawn(async move {
                match limit {
                    Some(limit) => tokio::select! {
                        () = tokio::time::sleep(limit) => {}
                        _ = tokio::signal::ctrl_c() => {}
                    },
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
                trigger.cancel();
            });
            store
                .block_until_leadership_released(application, &cancel)
                .await?;
            println!("{application}: the leadership held when waiting started is over");
            Ok(())
        }
    }
}

fn describe(object: &LeadershipLease) -> String {
    let status = object.status.clone().unwrap_or_default();
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<16}{v}\n"));
    line("Application:", object.name_any());
    line("Namespace:", object.namespace().unwrap_or_default());
    line(
        "Leader:",
        status.holder.clone().unwrap_or_else(|| "<none>".into()),
    );
    line("Term:", status.term.to_string());
    line("Renewals:", status.renewals.to_string());
    line(
        "Lease:",
        status
            .lease_duration_ms
            .map_or("-".into(), |ms| format!("{ms} ms")),
    );
    line(
        "Acquired:",
        status
            .acquire_time
            .as_ref()
            .map_or("-".into(), |t| t.0.to_string()),
    );
    line(
        "Renewed:",
        status.renew_time.as_ref().map_or("-".into(), |t| t.0.to_string()),
    );
    line(
        "Pinned by:",
        if object.spec.pins.is_empty() {
            "-".into()
        } else {
            object.spec.pins.keys().cloned().collect::<Vec<_>>().join(", ")
        },
    );
    line(
        "Revocation:",
        object
            .spec
            .revocation
            .as_ref()
            .map_or("-".into(), |r| format!("{} (term {}) pending", r.unit, r.term)),
    );
    out.push_str("Conditions:\n");
    for c in &status.conditions {
        out.push_str(&format!(
            "  {:<10}{:<6}{:<14}{}\n",
            c.type_, c.status, c.reason, c.message
        ));
    }
    out.push_str("History:\n");
    for t in &status.history {
        out.push_str(&format!(
            "  {}  term {:<4} {:<10} {}\n",
            t.time.0,
            t.term,
            t.reason,
            t.holder.as_deref().unwrap_or("<none>")
        ));
    }
    out
}
