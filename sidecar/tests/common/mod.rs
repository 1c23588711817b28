//! Sidecars as local processes, one per Pod object, against the test control plane.
#![allow(dead_code)] // each test binary uses a different part of this module
#![allow(clippy::unwrap_used)] // test fixtures: a failed step is a failed test

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::{ObjectMeta, PostParams};
use leadership::{client::SocketClient, wire::Status};
use leadership_e2e::testenv::{self, TestNamespace};
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    process::{Child, Command},
    time::{Instant, sleep, timeout},
};

/// The claim duration the tests run sidecars with: leases of 4 s.
pub const D: &str = "2s";
/// A generous bound for what should happen "at once" on a shared machine.
pub const PROMPTLY: Duration = Duration::from_secs(10);

/// A fresh namespace with the CRD installed.
pub async fn namespace() -> TestNamespace {
    let ns = testenv::shared().namespace().await;
    leadership_kube::crd::install(&ns.client)
        .await
        .expect("install the CRD");
    ns
}

/// Creates a Pod object for a unit (no kubelet runs it: the sidecar runs as a local process).
pub async fn pod(ns: &TestNamespace, name: &str) -> Pod {
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
}

/// One sidecar process.
pub struct Sidecar {
    /// The unit (pod) name.
    pub unit: String,
    /// Its socket.
    pub socket: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    child: Child,
}

impl Sidecar {
    /// Starts `leadership-sidecar` for `unit` of `application`, with the admin kubeconfig.
    pub async fn start(ns: &TestNamespace, application: &str, unit: &str) -> Sidecar {
        Self::start_with(ns, application, unit, testenv::shared().kubeconfig(), &[]).await
    }

    /// Starts a sidecar with a given kubeconfig and extra flags.
    pub async fn start_with(
        ns: &TestNamespace,
        application: &str,
        unit: &str,
        kubeconfig: &Path,
        extra: &[&str],
    ) -> Sidecar {
        let dir = std::env::temp_dir().join(format!("leadership-sidecar-{}", ns.name));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join(format!("{unit}.sock"));
        let log = dir.join(format!("{unit}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_leadership-sidecar"))
            .args([
                "--application",
                application,
                "--unit",
                unit,
                "--namespace",
                &ns.name,
            ])
            .arg("--socket")
            .arg(&socket)
            .args(["--claim-duration", D, "--admin-address", "127.0.0.1:0"])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start leadership-sidecar");
        let sidecar = Sidecar {
            unit: unit.into(),
            socket,
            log,
            child,
        };
        sidecar.wait_ready().await;
        sidecar
    }

    /// A client of this sidecar's socket.
    pub fn client(&self) -> SocketClient {
        SocketClient::new(&self.socket)
    }

    /// The status, or `None` if the sidecar does not answer.
    pub async fn status(&self) -> Option<Status> {
        self.client().status().await.ok()
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((status, _)) = self.client().call(http::Method::GET, "/readyz", None).await
                && status.is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready; log:\n{}",
                self.unit,
                self.log_text()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id().expect("running")).unwrap())
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(self.pid(), signal).unwrap();
    }

    /// Waits for the process to exit; its exit code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits in time")
            .unwrap()
            .code()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts three sidecars for `application` (with their Pod objects).
pub async fn three(ns: &TestNamespace, application: &str) -> Vec<Sidecar> {
    let mut sidecars = Vec::new();
    for i in 0..3 {
        let unit = format!("{application}-{i}");
        pod(ns, &unit).await;
        sidecars.push(Sidecar::start(ns, application, &unit).await);
    }
    sidecars
}

/// Waits until exactly one of `sidecars` (those answering) reports leader; its index and status.
pub async fn leader(sidecars: &[Sidecar], within: Duration) -> (usize, Status) {
    let deadline = Instant::now() + within;
    loop {
        let mut leaders = Vec::new();
        for (i, sidecar) in sidecars.iter().enumerate() {
            if let Some(status) = sidecar.status().await
                && status.leader
            {
                leaders.push((i, status));
            }
        }
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        if let Some(found) = leaders.pop() {
            return found;
        }
        assert!(Instant::now() < deadline, "no leader within {within:?}");
        sleep(Duration::from_millis(20)).await;
    }
}
