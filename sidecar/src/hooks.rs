//! Elected and deposed hooks (`--on-elected`, `--on-deposed`): a command run through `sh -c` when
//! this unit becomes leader and when it stops being leader, with the status as JSON on stdin and in
//! environment variables. Hooks run one at a time, in the order of the changes, in a task of their
//! own: a slow or stuck hook never delays the tracker, and is killed at its timeout. Each run is
//! logged with its exit code and counted in `leadership_sidecar_hook_runs_total`.

use std::{process::Stdio, time::Duration};

use leadership::{Transition, wire::Status};
use tokio::{io::AsyncWriteExt, process::Command, sync::broadcast, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    api::{Sidecar, Store},
    metrics::HookLabels,
};

/// The commands to run on changes of leadership.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    /// Run when this unit becomes leader.
    pub on_elected: Option<String>,
    /// Run when this unit stops being leader.
    pub on_deposed: Option<String>,
    /// How long a hook may run before it is killed.
    pub timeout: Duration,
}

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `--on-elected`.
    Elected,
    /// `--on-deposed`.
    Deposed,
}

impl Hook {
    /// The event name, as in `LEADERSHIP_EVENT`.
    pub fn event(self) -> &'static str {
        match self {
            Hook::Elected => "elected",
            Hook::Deposed => "deposed",
        }
    }
}

/// How a hook run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this code (`None`: killed by a signal).
    Exited(Option<i32>),
    /// It ran past the timeout and was killed.
    TimedOut,
    /// It could not be started.
    NotStarted(String),
}

impl Outcome {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Exited(Some(0)) => "ok",
            Outcome::Exited(_) => "failed",
            Outcome::TimedOut => "timeout",
            Outcome::NotStarted(_) => "not-started",
        }
    }
}

/// The environment a hook gets, besides the sidecar's own.
pub fn environment(hook: Hook, status: &Status) -> Vec<(&'static str, String)> {
    vec![
        ("LEADERSHIP_EVENT", hook.event().to_owned()),
        ("LEADERSHIP_APPLICATION", status.application.clone()),
        ("LEADERSHIP_NAMESPACE", status.namespace.clone()),
        ("LEADERSHIP_UNIT", status.unit.clone()),
        ("LEADERSHIP_TERM", status.term.to_string()),
        ("LEADERSHIP_LEADER", status.leader.to_string()),
    ]
}

/// Runs `command` through `sh -c` with `status` on stdin and in the environment; kills it at
/// `timeout`.
pub async fn run_hook(command: &str, hook: Hook, status: &Status, timeout: Duration) -> Outcome {
    let mut child = match Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(environment(hook, status))
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => return Outcome::NotStarted(err.to_string()),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let mut body = serde_json::to_vec(status).unwrap_or_default();
        body.push(b'\n');
        // A hook that does not read its stdin is fine.
        let _ = tokio::time::timeout(timeout, stdin.write_all(&body)).await;
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(exit)) => Outcome::Exited(exit.code()),
        Ok(Err(err)) => Outcome::NotStarted(err.to_string()),
        Err(_) => {
            let _ = child.kill().await;
            Outcome::TimedOut
        }
    }
}

/// Runs the hooks for every transition until `stop`, then for those already published (the
/// deposed hook of a graceful shutdown runs before the sidecar exits). Changes that come while a
/// hook runs wait their turn (past 256 they are dropped with a warning).
pub async fn follow<S: Store>(
    hooks: Hooks,
    sidecar: Sidecar<S>,
    mut transitions: broadcast::Receiver<Transition>,
    stop: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            received = transitions.recv() => received,
            () = stop.cancelled() => break,
        };
        match received {
            Ok(transition) => hooks.run_for(&sidecar, transition).await,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(
                    missed,
                    "hooks fell behind; some changes of leadership ran no hook"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
    while let Ok(transition) = transitions.try_recv() {
        hooks.run_for(&sidecar, transition).await;
    }
}

impl Hooks {
    /// Runs the hook for one transition, if one is set for it.
    async fn run_for<S: Store>(&self, sidecar: &Sidecar<S>, transition: Transition) {
        let (hook, term, command) = match transition {
            Transition::Elected { term, .. } => (Hook::Elected, term, self.on_elected.as_deref()),
            Transition::Deposed { term, .. } => (Hook::Deposed, term, self.on_deposed.as_deref()),
            Transition::Renewed { .. } => return,
        };
        let Some(command) = command else { return };
        // The status as of the change: the term of the grant, and "leader" as the event says.
        let status = Status {
            term,
            leader: hook == Hook::Elected,
            ..sidecar.status()
        };
        let started = Instant::now();
        let outcome = run_hook(command, hook, &status, self.timeout).await;
        let millis = started.elapsed().as_millis();
        match &outcome {
            Outcome::Exited(Some(0)) => info!(hook = hook.event(), term, exit_code = 0, millis, "hook ran"),
            Outcome::Exited(code) => {
                warn!(hook = hook.event(), term, exit_code = ?code, millis, "hook failed")
            }
            Outcome::TimedOut => {
                warn!(hook = hook.event(), term, timeout = ?self.timeout, "hook timed out and was killed")
            }
            Outcome::NotStarted(err) => {
                warn!(hook = hook.event(), term, error = %err, "hook could not be started")
            }
        }
        sidecar
            .metrics()
            .hook_runs
            .get_or_create(&HookLabels {
                hook: hook.event().to_owned(),
                outcome: outcome.label().to_owned(),
            })
            .inc();
    }
}
