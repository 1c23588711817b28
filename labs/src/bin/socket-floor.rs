//! The floor the benchmark measures our socket against: a minimal keep-alive HTTP/1.1 responder
//! on a Unix socket that answers every request with the same JSON body, one thread per
//! connection. Runs until killed.
//!
//! `socket-floor --socket PATH --body JSON`

use std::{os::unix::net::UnixListener, path::PathBuf, process::ExitCode};

use clap::Parser;

/// A minimal responder on a Unix socket.
#[derive(Parser, Debug)]
struct Args {
    /// Where to listen (an old socket file there is replaced).
    #[arg(long)]
    socket: PathBuf,
    /// The body of every answer.
    #[arg(long)]
    body: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = std::fs::remove_file(&args.socket);
    let served = UnixListener::bind(&args.socket)
        .and_then(|listener| leadership_labs::bench::socket::serve_floor(listener, args.body.into_bytes()));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("socket-floor: {}: {err}", args.socket.display());
            ExitCode::FAILURE
        }
    }
}
