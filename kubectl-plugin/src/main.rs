//! `kubectl-leadership`: on the PATH, `kubectl leadership ...` runs it as a kubectl plugin.

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, run};

mod cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
