//! Sidecars and operators as local processes, one sidecar per Pod object the test creates: what a
//! kubelet would run, without a kubelet.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ServiceAccount};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use leadership::{client::SocketClient, wire::Status};
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    process::{Child, Command},
    time::{Instant, sleep},
};

use crate::{
    Error,
    testenv::{self, TestNamespace},
};

/// The claim duration tests run sidecars with (leases of 2d), and a generous bound for what should
/// happen "at once" on a shared machine: the store conformance suite's.
pub use leadership::conformance::{D, PROMPTLY};

/// Creates a Pod object for a unit (no kubelet runs it: its sidecar runs as a local process).
pub async fn pod(ns: &TestNamespace, name: &str) -> Pod {
    pod_as(ns, name, None).await
}

/// Creates a Pod object for a unit that runs as `service_account`.
pub async fn pod_as(ns: &TestNamespace, name: &str, service_account: Option<&str>) -> Pod {
    create_pod(ns, name, service_account, None).await
}

/// Creates a Pod object for a unit that runs as `service_account` and belongs to `application`
/// (its `leadership.dev/application` annotation, from which the operator lists the members that
/// may take the lease).
pub async fn member_pod(
    ns: &TestNamespace,
    name: &str,
    application: &str,
    service_account: Option<&str>,
) -> Pod {
    create_pod(ns, name, service_account, Some(application)).await
}

async fn create_pod(
    ns: &TestNamespace,
    name: &str,
    service_account: Option<&str>,
    application: Option<&str>,
) -> Pod {
    ns.api::<Pod>()
        .create(
            &PostParams::default(),
            &unit_pod_as(name, service_account, application),
        )
        .await
        .expect("create the Pod object")
}

/// The annotation naming the application a pod belongs to.
pub const APPLICATION_ANNOTATION: &str = "leadership.dev/application";

/// A token of ServiceAccount `account` bound to a new Pod object `pod` that runs as it: what the
/// pod's projected token gives its containers (the API server's user info then names the pod).
pub async fn pod_token(ns: &TestNamespace, account: &str, pod: &str) -> String {
    bound_token(ns, account, pod, None).await
}

async fn bound_token(ns: &TestNamespace, account: &str, pod: &str, application: Option<&str>) -> String {
    let pod = unit_pod_as(pod, Some(account), application);
    create_with_token(&ns.api(), &ns.api(), &pod, testenv::TOKEN_LIFETIME)
        .await
        .expect("a Pod object and a token bound to it")
}

/// Creates the Pod object `pod` with `pods`, and asks `accounts` (its namespace's) for a token of
/// the ServiceAccount it runs as, bound to it and lasting `lifetime`: what the pod's projected
/// token gives its containers (the API server's user info then names the pod).
pub async fn create_with_token(
    pods: &Api<Pod>,
    accounts: &Api<ServiceAccount>,
    pod: &Pod,
    lifetime: Duration,
) -> Result<String, Error> {
    let created = pods
        .create(&PostParams::default(), pod)
        .await
        .map_err(Error::kube("create a Pod object"))?;
    let account = created.spec.and_then(|s| s.service_account_name);
    let (Some(account), Some(name), Some(uid)) = (account, created.metadata.name, created.metadata.uid)
    else {
        return Err(Error::State(
            "a Pod object bound to a token needs a ServiceAccount, a name and a uid".into(),
        ));
    };
    testenv::request_token(accounts, &account, Some((&name, &uid)), lifetime).await
}

/// A client with [`pod_token`]: a request as pod `pod` of ServiceAccount `account`.
pub async fn pod_client(ns: &TestNamespace, account: &str, pod: &str) -> kube::Client {
    ns.client_with_token(&pod_token(ns, account, pod).await).await
}

/// A kubeconfig file with [`pod_token`], for a process (sidecar, operator) that runs as `pod`.
pub async fn pod_kubeconfig(ns: &TestNamespace, account: &str, pod: &str) -> PathBuf {
    token_file(ns, pod, bound_token(ns, account, pod, None).await)
}

/// Like [`pod_kubeconfig`], for a sidecar whose Pod belongs to `application` (see [`member_pod`]).
pub async fn member_kubeconfig(ns: &TestNamespace, account: &str, pod: &str, application: &str) -> PathBuf {
    token_file(ns, pod, bound_token(ns, account, pod, Some(application)).await)
}

fn token_file(ns: &TestNamespace, pod: &str, token: String) -> PathBuf {
    let path = scratch(ns).join(format!("{pod}.kubeconfig"));
    ns.env()
        .token_kubeconfig(&token, &path)
        .expect("write a token kubeconfig");
    path
}

/// The Pod object of a unit named `name`, with one app container (nothing runs it).
pub fn unit_pod(name: &str) -> Pod {
    unit_pod_as(name, None, None)
}

/// The Pod object of a unit named `name` like [`unit_pod`]'s, that runs as `service_account` (the
/// namespace's default if none) and belongs to `application` when given (its
/// [`APPLICATION_ANNOTATION`], from which the operator lists the members that may take the lease).
pub fn unit_pod_as(name: &str, service_account: Option<&str>, application: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: application
                .map(|application| [(APPLICATION_ANNOTATION.to_owned(), application.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:1".into()),
                ..Container::default()
            }],
            service_account_name: service_account.map(str::to_owned),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// One of the project's binaries running as a local process, its output in a log file.
pub struct Process {
    /// The log file.
    pub log: PathBuf,
    child: Child,
}

impl Process {
    /// Starts `binary` with `args` and the given kubeconfig; killed when dropped.
    pub fn start(binary: &Path, args: &[String], kubeconfig: &Path, log: PathBuf) -> Process {
        Self::start_with_env(binary, args, kubeconfig, log, &[])
    }

    /// Starts `binary` as [`start`](Self::start) does, with extra environment variables.
    pub fn start_with_env(
        binary: &Path,
        args: &[String],
        kubeconfig: &Path,
        log: PathBuf,
        env: &[(String, String)],
    ) -> Process {
        let out = std::fs::File::create(&log).expect("create the log file");
        let err = out.try_clone().expect("clone the log file");
        let child = Command::new(binary)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        Process { log, child }
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(
            self.child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .expect("still running"),
        )
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(self.pid(), signal).expect("send a signal");
    }

    /// Waits (30 s at most) for the process to exit; its exit code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits in time")
            .ok()?
            .code()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn scratch(ns: &TestNamespace) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leadership-units-{}", ns.name));
    std::fs::create_dir_all(&dir).expect("create the scratch folder");
    dir
}

/// One sidecar process.
pub struct Sidecar {
    /// The unit (pod) name.
    pub unit: String,
    /// Its socket.
    pub socket: PathBuf,
    /// The process.
    pub process: Process,
}

impl Sidecar {
    /// Starts `leadership-sidecar` for `unit` of `application` with the admin kubeconfig, and
    /// waits until it is ready.
    pub async fn start(ns: &TestNamespace, application: &str, unit: &str) -> Sidecar {
        Self::spawn_with(ns, application, unit, testenv::shared().kubeconfig(), D, &[])
            .ready()
            .await
    }

    /// Starts a sidecar with a given kubeconfig, claim duration and extra flags, without waiting
    /// for it to be ready (see [`Sidecar::ready`]).
    pub fn spawn_with(
        ns: &TestNamespace,
        application: &str,
        unit: &str,
        kubeconfig: &Path,
        claim_duration: Duration,
        extra: &[&str],
    ) -> Sidecar {
        let dir = scratch(ns);
        let socket = dir.join(format!("{unit}.sock"));
        let mut args = sidecar_args(&ns.name, application, unit, &socket, claim_duration);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let binary = testenv::binary("leadership-sidecar");
        let process = Process::start(&binary, &args, kubeconfig, dir.join(format!("{unit}.log")));
        Sidecar {
            unit: unit.into(),
            socket,
            process,
        }
    }

    /// A client of this sidecar's socket.
    pub fn client(&self) -> SocketClient {
        SocketClient::new(&self.socket)
    }

    /// The status, or `None` if the sidecar does not answer.
    pub async fn status(&self) -> Option<Status> {
        self.client().status().await.ok()
    }

    /// This sidecar once its `/readyz` answers (it panics, with the log, after 30 s).
    pub async fn ready(self) -> Sidecar {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((status, _)) = self.client().call(http::Method::GET, "/readyz", None).await
                && status.is_success()
            {
                return self;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready; log:\n{}",
                self.unit,
                self.process.log_text()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }
}

/// Starts three sidecars for `application`, each with its Pod object.
pub async fn three(ns: &TestNamespace, application: &str) -> Vec<Sidecar> {
    three_with(ns, application, &[]).await
}

/// Like [`three`], each sidecar with the `extra` flags.
pub async fn three_with(ns: &TestNamespace, application: &str, extra: &[&str]) -> Vec<Sidecar> {
    let mut sidecars = Vec::new();
    for i in 0..3 {
        let unit = format!("{application}-{i}");
        pod(ns, &unit).await;
        let kubeconfig = testenv::shared().kubeconfig();
        sidecars.push(
            Sidecar::spawn_with(ns, application, &unit, kubeconfig, D, extra)
                .ready()
                .await,
        );
    }
    sidecars
}

/// Waits until exactly one of the answering `sidecars` reports leader; its index and status.
/// Fails at once if two report leader together.
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

/// The leader once it is another than sidecar `former` (which may still report leader for a
/// moment after it was told to step down), within `within`; never two at once.
pub async fn next_leader(sidecars: &[Sidecar], former: usize, within: Duration) -> (usize, Status) {
    let deadline = Instant::now() + within;
    loop {
        let found = leader(sidecars, within).await;
        if found.0 != former {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "sidecar {former} still leads after {within:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// The command line of a sidecar for `unit` of `application` in `namespace`, with the shortest
/// lease for `claim_duration` (2d, so that failovers in tests are quick) and its admin port on a
/// free loopback port.
pub fn sidecar_args(
    namespace: &str,
    application: &str,
    unit: &str,
    socket: &Path,
    claim_duration: Duration,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--application",
        application,
        "--unit",
        unit,
        "--namespace",
        namespace,
        "--admin-address",
        "127.0.0.1:0",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.extend([
        format!("--claim-duration={}ms", claim_duration.as_millis()),
        format!("--lease-length={}ms", (claim_duration * 2).as_millis()),
        "--socket".to_owned(),
        socket.display().to_string(),
    ]);
    args
}

/// The command line of an operator watching `namespace`, with its own lease there, named
/// `identity`, and its admin port on a free loopback port.
pub fn operator_args(namespace: &str, identity: &str) -> Vec<String> {
    [
        "--watch-namespace",
        namespace,
        "--namespace",
        namespace,
        "--identity",
        identity,
        "--admin-address",
        "127.0.0.1:0",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!("--claim-duration={}ms", D.as_millis())])
    .collect()
}

/// Starts `leadership-operator` watching `ns` with its own lease there, named `identity`.
pub fn operator(ns: &TestNamespace, identity: &str, kubeconfig: &Path) -> Process {
    let binary = testenv::binary("leadership-operator");
    Process::start(
        &binary,
        &operator_args(&ns.name, identity),
        kubeconfig,
        scratch(ns).join(format!("{identity}.log")),
    )
}

/// A TCP port on 127.0.0.1 that is free now (for a process that must be told its port).
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
