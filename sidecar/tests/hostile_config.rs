//! A sidecar pointed at a cluster without the CRD, at a namespace it may not read, or at an API
//! server that is not there: each time it stays up (no crash loop), not ready, says why on
//! `/readyz` (and `/v1/status` answers 503 `Unavailable`, not a guess) and in its log, stops at once on SIGTERM, and (for the missing CRD) leads as soon as
//! the cause is fixed, without a restart.

mod common;

use std::{
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    time::Duration,
};

use http::{Method, StatusCode};
use leadership::client::SocketClient;
use leadership_e2e::{
    controlplane::{ControlPlane, StartOptions},
    link, testenv,
    tools::Tools,
    units::{self, Process},
};
use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep};

/// Starts a sidecar for unit `unit` of application `hostile` without waiting for it to be ready.
fn start(kubeconfig: &Path, namespace: &str, unit: &str) -> (Process, PathBuf) {
    let dir = std::env::temp_dir().join(format!("leadership-hostile-{}-{unit}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let socket = dir.join("sidecar.sock");
    let args = units::sidecar_args(namespace, "hostile", unit, &socket, units::D);
    let process = Process::start(
        &testenv::binary("leadership-sidecar"),
        &args,
        kubeconfig,
        dir.join("sidecar.log"),
    );
    (process, socket)
}

/// Waits until `/readyz` answers `expected`; the body then.
async fn readyz_until(socket: &Path, expected: StatusCode, process: &Process) -> String {
    let client = SocketClient::new(socket);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((status, body)) = client.call(Method::GET, "/readyz", None).await
            && status == expected
        {
            return String::from_utf8_lossy(&body).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {expected}; log:\n{}",
            process.log_text()
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// The sidecar keeps running for a while (no crash loop), then exits cleanly on SIGTERM.
async fn stays_up_then_stops(mut process: Process) {
    sleep(Duration::from_secs(5)).await;
    assert!(
        process.is_running(),
        "the sidecar exited; log:\n{}",
        process.log_text()
    );
    let asked = Instant::now();
    process.signal(Signal::SIGTERM);
    assert_eq!(process.exit_code().await, Some(0), "log:\n{}", process.log_text());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "SIGTERM took {:?}",
        asked.elapsed()
    );
}

#[tokio::test]
async fn without_the_crd_it_waits_unready_says_why_and_leads_once_the_crd_is_installed() {
    let tools = Tools::locate().expect("control-plane tools");
    let mut plane = ControlPlane::start(&tools, StartOptions::owned_by_this_process())
        .await
        .expect("a control plane without the CRD");
    let (process, socket) = start(plane.kubeconfig(), "default", "hostile-0");
    let why = readyz_until(&socket, StatusCode::SERVICE_UNAVAILABLE, &process).await;
    assert!(why.contains("CRD is not installed"), "{why}");
    assert!(
        why.contains("kubectl apply -f crds/leadershiplease.yaml"),
        "{why}"
    );
    assert!(process.log_text().contains("CRD is not installed"));

    // Fixing the cause is enough: the sidecar notices by itself and leads.
    let client = plane.client().await.expect("admin client");
    leadership_kube::crd::install(&client)
        .await
        .expect("install the CRD");
    readyz_until(&socket, StatusCode::OK, &process).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !SocketClient::new(&socket).status().await.is_ok_and(|s| s.leader) {
        assert!(
            Instant::now() < deadline,
            "not leader; log:\n{}",
            process.log_text()
        );
        sleep(Duration::from_millis(100)).await;
    }
    stays_up_then_stops(process).await;
    plane.stop();
}

#[tokio::test]
async fn a_forbidden_namespace_is_reported_and_does_not_crash_the_sidecar() {
    let ns = common::namespace().await;
    ns.service_account("nobody").await;
    let token = ns.token("nobody", None).await;
    let kubeconfig = std::env::temp_dir().join(format!("{}-nobody.kubeconfig", ns.name));
    testenv::shared()
        .token_kubeconfig(&token, &kubeconfig)
        .expect("token kubeconfig");
    let (process, socket) = start(&kubeconfig, &ns.name, "hostile-1");
    let why = readyz_until(&socket, StatusCode::SERVICE_UNAVAILABLE, &process).await;
    assert!(why.contains("forbidden"), "{why}");
    assert!(why.contains("leadershipleases"), "{why}");
    stays_up_then_stops(process).await;
}

#[tokio::test]
async fn a_dead_api_server_is_reported_and_does_not_crash_the_sidecar() {
    let ns = common::namespace().await;
    // A port nothing listens on: every connection is refused.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let kubeconfig = std::env::temp_dir().join(format!("{}-dead.kubeconfig", ns.name));
    link::kubeconfig_for_server(
        testenv::shared().kubeconfig(),
        &format!("https://127.0.0.1:{port}"),
        &kubeconfig,
    )
    .expect("write the kubeconfig");
    let (process, socket) = start(&kubeconfig, &ns.name, "hostile-2");
    let why = readyz_until(&socket, StatusCode::SERVICE_UNAVAILABLE, &process).await;
    assert!(why.to_lowercase().contains("connect"), "{why}");
    // The status says the lease state is not known, never a guessed "not leader".
    let (status, body) = SocketClient::new(&socket)
        .call(Method::GET, "/v1/status", None)
        .await
        .expect("the socket answers");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("\"Unavailable\""), "{body}");
    stays_up_then_stops(process).await;
}
