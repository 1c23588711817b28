//! Elected and deposed hooks on the real control plane: they run with the status on stdin and in
//! the environment, in order, also on a graceful shutdown; a stuck hook is killed at its timeout
//! and never delays the tracker.

mod common;

use std::{path::Path, time::Duration};

use common::{PROMPTLY, Sidecar, leader};
use leadership::wire::Status;
use leadership_e2e::{testenv, units};
use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep};

/// Waits until the hook log in `dir` has `line`; all its lines then.
async fn hook_line(dir: &Path, line: &str) -> Vec<String> {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let text = std::fs::read_to_string(dir.join("events")).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.iter().any(|l| l == line) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no hook line {line:?}; lines: {lines:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

async fn start(ns: &testenv::TestNamespace, unit: &str, extra: &[&str]) -> Sidecar {
    units::pod(ns, unit).await;
    Sidecar::spawn_with(
        ns,
        "hooked",
        unit,
        testenv::shared().kubeconfig(),
        units::D,
        extra,
    )
    .ready()
    .await
}

#[tokio::test]
async fn hooks_run_in_order_with_the_status_and_on_a_graceful_shutdown() {
    let ns = common::namespace().await;
    let dir = std::env::temp_dir().join(format!("leadership-hooks-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let elected = format!(
        r#"cat > "{d}/$LEADERSHIP_UNIT-$LEADERSHIP_TERM.json"; echo "$LEADERSHIP_EVENT $LEADERSHIP_UNIT $LEADERSHIP_TERM $LEADERSHIP_LEADER $LEADERSHIP_APPLICATION" >> "{d}/events""#
    );
    let deposed = format!(
        r#"echo "$LEADERSHIP_EVENT $LEADERSHIP_UNIT $LEADERSHIP_TERM $LEADERSHIP_LEADER" >> "{d}/events"; exit 3"#
    );
    let flags = ["--on-elected", elected.as_str(), "--on-deposed", deposed.as_str()];
    let first = start(&ns, "hooked-0", &flags).await;
    let (_, status) = leader(std::slice::from_ref(&first), PROMPTLY).await;
    let term = status.term;
    let second = start(&ns, "hooked-1", &flags).await;
    hook_line(&dir, &format!("elected hooked-0 {term} true hooked")).await;

    // The status on stdin is the socket API's, as of the election.
    let body = std::fs::read_to_string(dir.join(format!("hooked-0-{term}.json"))).unwrap();
    let on_stdin: Status = serde_json::from_str(&body).unwrap();
    assert!(on_stdin.leader);
    assert_eq!((on_stdin.unit.as_str(), on_stdin.term), ("hooked-0", term));
    assert_eq!(on_stdin.namespace, ns.name);

    // A release: the old leader's deposed hook and the new leader's elected hook.
    assert!(first.client().release().await.unwrap());
    hook_line(&dir, &format!("elected hooked-1 {} true hooked", term + 1)).await;
    let lines = hook_line(&dir, &format!("deposed hooked-0 {term} false")).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    // A failing hook is logged with its exit code.
    let deadline = Instant::now() + PROMPTLY;
    while !first.process.log_text().contains("hook failed") {
        assert!(Instant::now() < deadline, "{}", first.process.log_text());
        sleep(Duration::from_millis(50)).await;
    }
    assert!(first.process.log_text().contains("Some(3)"));

    // SIGTERM: the deposed hook runs before the sidecar exits.
    let mut second = second;
    second.signal(Signal::SIGTERM);
    assert_eq!(second.process.exit_code().await, Some(0));
    let text = std::fs::read_to_string(dir.join("events")).unwrap();
    assert!(
        text.lines()
            .any(|l| l == format!("deposed hooked-1 {} false", term + 1)),
        "{text}"
    );
}

#[tokio::test]
async fn a_stuck_hook_is_killed_at_its_timeout_and_never_delays_the_tracker() {
    let ns = common::namespace().await;
    let flags = ["--on-elected", "sleep 60", "--hook-timeout", "3s"];
    let sidecar = start(&ns, "stuck-0", &flags).await;
    let (_, first) = leader(std::slice::from_ref(&sidecar), PROMPTLY).await;
    // While the hook hangs the unit keeps renewing: still leader, in the same term, past 2d.
    sleep(Duration::from_secs(5)).await;
    let status = sidecar.status().await.unwrap();
    assert!(status.leader, "{status:?}");
    assert_eq!(status.term, first.term);
    let log = sidecar.process.log_text();
    assert!(log.contains("hook timed out and was killed"), "{log}");
}
