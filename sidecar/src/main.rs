//! The `leadership-sidecar` binary.

use std::process::ExitCode;

use clap::Parser;
use leadership_sidecar::config::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(command) = cli.command {
        return runtime.block_on(leadership_sidecar::cli::run(command, &cli.run.socket));
    }
    leadership_runtime::logs::init(cli.run.log_format);
    match runtime.block_on(leadership_sidecar::run::run(cli.run)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
