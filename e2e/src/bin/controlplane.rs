//! `controlplane up|down|status`: the control plane for people (run through `e2e/cluster`).
//!
//! `up [--node] [--owner PID]` starts it (or finds it running) and prints the admin kubeconfig's
//! path as its last line; with `--owner`, it stops by itself when that process ends. With `--node`
//! a node joins (kubelet, containerd, kube-proxy, kube-scheduler) and pods run, from the images in
//! `$LEADERSHIP_IMAGES` (default `target/images`, written by `e2e/images`). `down` stops it and
//! removes its folder; `status` says what runs. The folder is `$LEADERSHIP_CLUSTER_DIR`, by default
//! `$TMPDIR/leadership-e2e-cluster`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use leadership_e2e::{
    controlplane::{ControlPlane, STATE_FILE, StartOptions},
    node::NodeOptions,
    tools::Tools,
};

const USAGE: &str = "usage: e2e/cluster up [--node] [--owner PID] | down | status";

fn cluster_dir() -> PathBuf {
    std::env::var_os("LEADERSHIP_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("leadership-e2e-cluster"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => match parse_up(&args[1..]) {
            Ok((node, owner)) => up(node, owner).await,
            Err(message) => {
                eprintln!("{message}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        Some("down") if args.len() == 1 => down(),
        Some("status") if args.len() == 1 => status().await,
        Some("-h" | "--help" | "help") => {
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

/// `up`'s flags: whether to start a node, and the owner process.
fn parse_up(args: &[String]) -> Result<(bool, Option<u32>), String> {
    let (mut node, mut owner) = (false, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--node" => node = true,
            "--owner" => {
                let pid = args.next().ok_or("--owner takes a process id")?;
                owner = Some(
                    pid.parse()
                        .map_err(|_| format!("--owner takes a process id, not {pid:?}"))?,
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((node, owner))
}

fn running() -> Option<ControlPlane> {
    let dir = cluster_dir();
    let plane = ControlPlane::attach(&dir).ok()?;
    (plane.running().len() == plane.state().components.len()).then_some(plane)
}

async fn up(node: bool, owner: Option<u32>) -> anyhow::Result<bool> {
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
    let node = if node {
        let images = std::env::var_os("LEADERSHIP_IMAGES")
            .map_or_else(|| PathBuf::from("target/images"), PathBuf::from);
        Some(NodeOptions::new(images)?)
    } else {
        None
    };
    let plane = ControlPlane::start(
        &tools,
        StartOptions {
            dir: Some(dir),
            owner,
            node,
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
