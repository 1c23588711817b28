//! `controlplane up|down|status`: the control plane for people (run through `e2e/cluster`).
//!
//! `up [--owner PID]` starts it (or finds it running) and prints the admin kubeconfig's path as its
//! last line; with `--owner`, it stops by itself when that process ends. `down` stops it and
//! removes its folder; `status` says what runs. The folder is `$LEADERSHIP_CLUSTER_DIR`, by default
//! `$TMPDIR/leadership-e2e-cluster`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use leadership_e2e::{
    controlplane::{ControlPlane, STATE_FILE, StartOptions},
    tools::Tools,
};

const USAGE: &str = "usage: e2e/cluster up [--owner PID] | down | status";

fn cluster_dir() -> PathBuf {
    std::env::var_os("LEADERSHIP_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("leadership-e2e-cluster"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["up"] => up(None).await,
        ["up", "--owner", pid] => match pid.parse() {
            Ok(pid) => up(Some(pid)).await,
            Err(_) => {
                eprintln!("--owner takes a process id, not {pid:?}");
                return ExitCode::from(2);
            }
        },
        ["down"] => down(),
        ["status"] => status().await,
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            Ok(true)
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn running() -> Option<ControlPlane> {
    let dir = cluster_dir();
    let plane = ControlPlane::attach(&dir).ok()?;
    (plane.running().len() == plane.state().components.len()).then_some(plane)
}

async fn up(owner: Option<u32>) -> anyhow::Result<bool> {
    if let Some(plane) = running() {
        eprintln!("the control plane is already running ({})", plane.state().server);
        println!("{}", plane.kubeconfig().display());
        return Ok(true);
    }
    let dir = cluster_dir();
    if dir.join(STATE_FILE).exists() {
        eprintln!("cleaning up a control plane that is partly down");
        ControlPlane::attach(&dir)?.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let tools = Tools::locate()?;
    let plane = ControlPlane::start(
        &tools,
        StartOptions {
            dir: Some(dir),
            owner,
        },
    )
    .await
    .context("starting the control plane")?;
    eprintln!(
        "Kubernetes {} is up at {}",
        plane.state().version,
        plane.state().server
    );
    eprintln!("use it with: export KUBECONFIG={}", plane.kubeconfig().display());
    println!("{}", plane.kubeconfig().display());
    Ok(true)
}

fn down() -> anyhow::Result<bool> {
    let dir = cluster_dir();
    match ControlPlane::attach(&dir) {
        Ok(mut plane) => {
            plane.stop();
            eprintln!("the control plane is stopped");
        }
        Err(_) => eprintln!("no control plane is running"),
    }
    Ok(true)
}

async fn status() -> anyhow::Result<bool> {
    let dir = cluster_dir();
    let Ok(plane) = ControlPlane::attach(&dir) else {
        println!("not running");
        return Ok(false);
    };
    let state = plane.state();
    println!("server:     {}", state.server);
    println!("version:    {}", state.version);
    println!("kubeconfig: {}", state.kubeconfig.display());
    let running = plane.running();
    for component in &state.components {
        let up = running.iter().any(|c| c.name == component.name);
        println!(
            "{:<24} {} (process group {})",
            component.name,
            if up { "running" } else { "STOPPED" },
            component.pgid
        );
    }
    let healthy = running.len() == state.components.len() && plane.client().await.is_ok();
    Ok(healthy)
}
