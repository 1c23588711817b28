//! The client subcommands: ask a running sidecar over its socket, for exec probes and scripts.

use std::{path::Path, process::ExitCode};

use leadership::client::SocketClient;

use crate::config::Command;

/// Exit code: yes / done.
const YES: u8 = 0;
/// Exit code: no / timed out.
const NO: u8 = 1;
/// Exit code: could not tell.
const ERROR: u8 = 2;

/// Prints what a declaration of eligibility left the unit as.
fn declared(reply: leadership::Result<leadership::wire::EligibilityReply>) -> leadership::Result<u8> {
    reply.map(|reply| {
        println!("{}", serde_json::to_string(&reply).unwrap_or_default());
        YES
    })
}

/// Runs one client subcommand against the socket at `socket`.
pub async fn run(command: Command, socket: &Path) -> ExitCode {
    let client = SocketClient::new(socket);
    let outcome = match command {
        Command::IsLeader => client.status().await.map(|s| if s.leader { YES } else { NO }),
        Command::WaitLeader(wait) => client
            .wait_leader(wait.timeout)
            .await
            .map(|s| if s.is_some() { YES } else { NO }),
        Command::WaitMinion(wait) => client
            .wait_minion(wait.timeout)
            .await
            .map(|s| if s.is_some() { YES } else { NO }),
        Command::Status => client.status().await.map(|s| {
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            YES
        }),
        Command::Release => client.release().await.map(|released| {
            println!("{}", serde_json::json!({ "released": released }));
            YES
        }),
        Command::Ineligible(args) => declared(client.declare_eligibility(Some(&args.reason)).await),
        Command::Eligible => declared(client.declare_eligibility(None).await),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(ERROR)
        }
    }
}
