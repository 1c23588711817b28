//! The `leadership-operator` binary.

use std::process::ExitCode;

use clap::Parser;
use leadership_operator::config::Args;

#[tokio::main(worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    leadership_runtime::logs::init(args.log_format);
    match leadership_operator::run::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
