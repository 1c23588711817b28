//! The client examples of `docs/examples/clients/` (Python and Go with their standard libraries,
//! and sh with curl) run against a real sidecar: each waits until its unit leads, works (with the
//! term), and stops working as soon as its unit is deposed, then waits again.

mod common;

use std::{path::Path, process::Stdio};

use common::{PROMPTLY, leader, three};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{ChildStdout, Command},
    time::timeout,
};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/clients");

/// Reads lines until `wanted`; the lines before it.
async fn until_line(lines: &mut Lines<BufReader<ChildStdout>>, wanted: &str) -> Vec<String> {
    let mut before = Vec::new();
    let found = timeout(PROMPTLY, async {
        while let Some(line) = lines.next_line().await.expect("read the example's output") {
            if line == wanted {
                return true;
            }
            before.push(line);
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "no line {wanted:?}; the lines before: {before:?}"
    );
    before
}

/// Runs `example` beside the leader of three sidecars, deposes that leader, and checks what the
/// example printed: `said(term)` gives its lines for leading, working and deposed.
async fn follows_leadership(application: &str, mut example: Command, said: fn(u64) -> [String; 3]) {
    let ns = common::namespace().await;
    let sidecars = three(&ns, application).await;
    let (first, status) = leader(&sidecars, PROMPTLY).await;
    let mut child = example
        .env("LEADERSHIP_SOCKET", &sidecars[first].socket)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example");
    let mut lines = BufReader::new(child.stdout.take().expect("its output")).lines();
    let [leading, working, deposed] = said(status.term);
    until_line(&mut lines, &leading).await;
    until_line(&mut lines, &working).await;

    assert!(sidecars[first].client().release().await.expect("release"));
    until_line(&mut lines, &deposed).await;
    let next = lines.next_line().await.expect("read").expect("a line");
    assert_eq!(next, "waiting", "no work after the deposition");
    child.kill().await.expect("stop the example");
}

/// The Python and Go examples' lines.
fn with_term(term: u64) -> [String; 3] {
    ["leading", "working", "deposed"].map(|step| format!("{step} term={term}"))
}

#[tokio::test]
async fn the_shell_example_runs_its_command_only_while_its_unit_leads() {
    let mut shell = Command::new("sh");
    shell
        .arg(Path::new(EXAMPLES).join("shell/follow-leadership.sh"))
        .args(["sh", "-c", "while true; do echo working; sleep 0.2; done"]);
    follows_leadership("client-sh", shell, |_| {
        ["leading", "working", "deposed"].map(str::to_owned)
    })
    .await;
}

#[tokio::test]
async fn the_python_example_works_only_while_its_unit_leads() {
    let mut python = Command::new("python3");
    python.arg(Path::new(EXAMPLES).join("python/follow_leadership.py"));
    follows_leadership("client-py", python, with_term).await;
}

#[tokio::test]
async fn the_go_example_works_only_while_its_unit_leads() {
    let out = std::env::temp_dir().join(format!("follow-leadership-{}", std::process::id()));
    let built = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(Path::new(EXAMPLES).join("go"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .status()
        .expect("run go build");
    assert!(built.success(), "go build of the Go example failed");
    follows_leadership("client-go", Command::new(&out), with_term).await;
    let _ = std::fs::remove_file(out);
}
