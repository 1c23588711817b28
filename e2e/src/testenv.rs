//! What an integration test needs: one control plane for the whole test run, a fresh namespace per
//! test (deleted afterwards), admin clients, and clients that act as a ServiceAccount.
//!
//! If `LEADERSHIP_E2E_KUBECONFIG` names a kubeconfig (the README's test command starts one control
//! plane and sets it), tests use that cluster. Otherwise the first test in a test binary starts a
//! private control plane that stops by itself when the binary exits, however it exits.
//!
//! Tests that run pods use [`node`] instead: the cluster of `LEADERSHIP_E2E_NODE_KUBECONFIG`, or a
//! private one with a node (root only), with the images of `LEADERSHIP_IMAGES` (default
//! `target/images`, built by `e2e/images` if missing).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use k8s_openapi::{
    api::{
        authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
        core::v1::{Namespace, ServiceAccount},
    },
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
    config::Kubeconfig,
};

use crate::{
    Error,
    controlplane::{ControlPlane, StartOptions, admin_client},
    node::NodeOptions,
    tools::Tools,
};

/// The environment variable naming a running test cluster's admin kubeconfig.
pub const KUBECONFIG_ENV: &str = "LEADERSHIP_E2E_KUBECONFIG";
/// The environment variable naming a running test cluster with a node.
pub const NODE_KUBECONFIG_ENV: &str = "LEADERSHIP_E2E_NODE_KUBECONFIG";

/// The path of one of the workspace's binaries, built (once per test process) if needed, for
/// tests in one crate that run another crate's binary.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&workspace)
            .args(["build", "--quiet", "--bin", name])
            .status()
            .unwrap_or_else(|e| panic!("build {name}: {e}"));
        assert!(status.success(), "cargo build --bin {name} failed");
        built.push(name.to_owned());
    }
    let exe = std::env::current_exe().expect("this program's own path");
    // A test runs from target/<profile>/deps/, a binary from target/<profile>/.
    let mut folder = exe.parent().expect("a target folder");
    if folder.ends_with("deps") {
        folder = folder.parent().expect("a profile folder");
    }
    folder.join(name)
}

/// The shared test cluster.
#[derive(Debug)]
pub struct TestEnv {
    kubeconfig: PathBuf,
    tools: Tools,
    /// Kept alive for the whole test binary when this process started it.
    _plane: Option<ControlPlane>,
}

/// How long the tokens of [`TestNamespace::token`] last: longer than any test.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

static ENV: OnceLock<Result<TestEnv, String>> = OnceLock::new();
static NODE_ENV: OnceLock<Result<TestEnv, String>> = OnceLock::new();
static NAMESPACES: AtomicU32 = AtomicU32::new(0);

/// The test cluster, started on first use. Panics with the reason if it cannot start: a test that
/// needs a control plane must not pass without one.
pub fn shared() -> &'static TestEnv {
    match ENV.get_or_init(|| TestEnv::connect(false).map_err(|err| err.to_string())) {
        Ok(env) => env,
        Err(err) => panic!("no test control plane: {err}"),
    }
}

/// The test cluster with a node, started on first use. Panics with the reason if it cannot start.
pub fn node() -> &'static TestEnv {
    match NODE_ENV.get_or_init(|| TestEnv::connect(true).map_err(|err| err.to_string())) {
        Ok(env) => env,
        Err(err) => panic!("no test cluster with a node: {err}"),
    }
}

/// The image archives for a node: `LEADERSHIP_IMAGES`, else `target/images`, built by
/// `e2e/images` when its pause image is missing.
fn node_images() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("LEADERSHIP_IMAGES") {
        return Ok(dir.into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("target").join("images");
    if !dir.join("pause.tar").exists() {
        let status = Command::new(root.join("e2e").join("images"))
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| Error::io("run e2e/images", e))?;
        if !status.success() {
            return Err(Error::State(format!("e2e/images failed with {status}")));
        }
    }
    Ok(dir)
}

/// Makes [`node`] use the cluster of `kubeconfig` (the demo starts its own). False if it was
/// already set up.
pub fn use_node_cluster(kubeconfig: &Path, tools: Tools) -> bool {
    NODE_ENV
        .set(Ok(TestEnv {
            kubeconfig: kubeconfig.to_owned(),
            tools,
            _plane: None,
        }))
        .is_ok()
}

impl TestEnv {
    fn connect(with_node: bool) -> Result<TestEnv, Error> {
        let tools = Tools::locate()?;
        let variable = if with_node {
            NODE_KUBECONFIG_ENV
        } else {
            KUBECONFIG_ENV
        };
        if let Some(path) = std::env::var_os(variable) {
            return Ok(TestEnv {
                kubeconfig: path.into(),
                tools,
                _plane: None,
            });
        }
        let starter = tools.clone();
        let node = if with_node {
            Some(NodeOptions::new(node_images()?)?)
        } else {
            None
        };
        // Started on a runtime of its own: each test has its own runtime, and this one must outlive
        // the first test.
        let plane = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("start a runtime", e))?;
            runtime.block_on(ControlPlane::start(
                &starter,
                StartOptions {
                    node,
                    ..StartOptions::owned_by_this_process()
                },
            ))
        })
        .join()
        .map_err(|_| Error::State("the control plane starter panicked".into()))??;
        Ok(TestEnv {
            kubeconfig: plane.kubeconfig().to_owned(),
            tools,
            _plane: Some(plane),
        })
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's address, from the admin kubeconfig: for a [`crate::link::Link`] that
    /// stands between it and a process.
    pub fn api_address(&self) -> std::net::SocketAddr {
        let config = Kubeconfig::read_from(&self.kubeconfig).expect("read the admin kubeconfig");
        let server = config
            .clusters
            .iter()
            .find_map(|c| c.cluster.as_ref()?.server.clone())
            .expect("the kubeconfig names a server");
        server
            .trim_start_matches("https://")
            .parse()
            .unwrap_or_else(|e| panic!("the API server's address {server}: {e}"))
    }

    /// The control-plane tools (kubectl, helm, ...).
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// A new admin client for the calling test's runtime.
    pub async fn client(&self) -> Client {
        admin_client(&self.kubeconfig).await.expect("admin client")
    }

    /// An admin client that impersonates `user` (with the groups the API server gives it: a
    /// ServiceAccount's, for one of theirs), as `kubectl --as` does.
    pub async fn impersonating(&self, user: &str) -> Client {
        self.impersonating_with(user, &[], &[]).await
    }

    /// An admin client that impersonates `user` with `groups` and the user info `extra` (as
    /// `kubectl --as --as-group --as-user-extra` do).
    pub async fn impersonating_with(&self, user: &str, groups: &[&str], extra: &[(&str, &str)]) -> Client {
        impersonating_client(&self.kubeconfig, user, groups, extra)
            .await
            .expect("an impersonating client")
    }

    /// `kubectl` with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.tools.path("kubectl"));
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// `crictl` talking to the node's containerd (a cluster with a node only).
    pub fn crictl(&self) -> Command {
        // The node's tools are located once (the build script answers in a second when cached).
        static NODE_BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        let bin = NODE_BIN.get_or_init(|| Tools::locate_node().expect("the node's tools").bin().to_owned());
        let dir = self.kubeconfig.parent().expect("the cluster's folder");
        let layout = crate::node::config::Layout {
            dir: dir.to_owned(),
            bin: bin.clone(),
        };
        let mut command = Command::new(layout.bin.join("crictl"));
        command.arg(format!(
            "--runtime-endpoint=unix://{}",
            layout.containerd_socket().display()
        ));
        command
    }

    /// A fresh namespace for one test, deleted when the returned guard is dropped.
    pub async fn namespace(&'static self) -> TestNamespace {
        let name = format!(
            "lt-{}-{}",
            std::process::id(),
            NAMESPACES.fetch_add(1, Ordering::Relaxed)
        );
        self.namespace_named(&name).await
    }

    /// A new namespace called `name`, deleted when the returned guard is dropped.
    pub async fn namespace_named(&'static self, name: &str) -> TestNamespace {
        let name = name.to_owned();
        let client = self.client().await;
        create_namespace(&client, &name, &[("leadership.dev/test", "true")])
            .await
            .expect("create namespace");
        TestNamespace {
            name,
            client,
            env: self,
        }
    }

    /// A kubeconfig file that authenticates with `token` instead of the admin certificate.
    pub fn token_kubeconfig(&self, token: &str, path: &Path) -> Result<(), Error> {
        token_kubeconfig(&self.kubeconfig, token, path)
    }
}

/// Writes to `out` a copy of the kubeconfig file `kubeconfig` (the same path is fine) whose users
/// authenticate with `token` instead of their own credentials: the same server and CA.
pub fn token_kubeconfig(kubeconfig: &Path, token: &str, out: &Path) -> Result<(), Error> {
    let mut config = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::State(format!("{}: {e}", kubeconfig.display())))?;
    for named in &mut config.auth_infos {
        let user = serde_json::json!({ "token": token });
        named.auth_info = Some(serde_json::from_value(user).map_err(|e| Error::State(e.to_string()))?);
    }
    let yaml = serde_json::to_string(&config).map_err(|e| Error::State(e.to_string()))?;
    std::fs::write(out, yaml).map_err(|e| Error::io(format!("write {}", out.display()), e))
}

/// A client with the credentials of the kubeconfig file `kubeconfig` (an admin's) that impersonates
/// `user` with `groups` and the user info `extra` (as `kubectl --as --as-group --as-user-extra`
/// do). Without groups, the API server gives a ServiceAccount's user name its account's groups.
pub async fn impersonating_client(
    kubeconfig: &Path,
    user: &str,
    groups: &[&str],
    extra: &[(&str, &str)],
) -> Result<Client, Error> {
    let file = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::State(format!("{}: {e}", kubeconfig.display())))?;
    let mut config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| Error::State(format!("{}: {e}", kubeconfig.display())))?;
    config.auth_info.impersonate = Some(user.to_owned());
    if !groups.is_empty() {
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
    }
    if !extra.is_empty() {
        config.auth_info.impersonate_user_extra = Some(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
                .collect(),
        );
    }
    Client::try_from(config).map_err(Error::kube("make an impersonating client"))
}

/// Asks the API server for a token of ServiceAccount `account` (in the namespace of `accounts`)
/// that lasts `lifetime`, bound to the Pod `pod` (name, uid) when given: its user info then names
/// the pod, as a real pod's projected token does, and the token dies with the Pod object. Fails
/// if the token issued expires sooner (an API server whose
/// `--service-account-max-token-expiration` is shorter).
pub async fn request_token(
    accounts: &Api<ServiceAccount>,
    account: &str,
    pod: Option<(&str, &str)>,
    lifetime: Duration,
) -> Result<String, Error> {
    let seconds = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(seconds),
            bound_object_ref: pod.map(|(name, uid)| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.to_owned()),
                uid: Some(uid.to_owned()),
            }),
        }),
        ..TokenRequest::default()
    };
    let asked_at = Timestamp::now();
    let issued: TokenRequest = accounts
        .create_subresource("token", account, &PostParams::default(), &request)
        .await
        .map_err(Error::kube("request a token"))?;
    let status = issued.status.unwrap_or_default();
    let (Some(token), Some(expires)) = (status.token, status.expiration_timestamp) else {
        return Err(Error::State(format!(
            "the API server issued no token for {account}"
        )));
    };
    // A minute of slack for the clocks of this process and the API server.
    let wanted = asked_at
        .checked_add(SignedDuration::from_secs(seconds.saturating_sub(60)))
        .unwrap_or(Timestamp::MAX);
    if expires.0 < wanted {
        return Err(Error::State(format!(
            "the API server issued a token of {account} that expires at {}, sooner than the {seconds} s asked for (its --service-account-max-token-expiration?)",
            expires.0
        )));
    }
    Ok(token)
}

/// Creates the namespace `name` with `labels`.
pub async fn create_namespace(
    client: &Client,
    name: &str,
    labels: &[(&str, &str)],
) -> kube::Result<Namespace> {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: (!labels.is_empty()).then(|| {
                labels
                    .iter()
                    .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            }),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
}

/// A namespace that lives as long as one test.
pub struct TestNamespace {
    /// The namespace's name.
    pub name: String,
    /// An admin client.
    pub client: Client,
    env: &'static TestEnv,
}

impl TestNamespace {
    /// The cluster this namespace is in.
    pub fn env(&self) -> &'static TestEnv {
        self.env
    }

    /// An API for namespaced resources of type `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates a ServiceAccount in this namespace.
    pub async fn service_account(&self, name: &str) -> ServiceAccount {
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        self.api::<ServiceAccount>()
            .create(&PostParams::default(), &account)
            .await
            .expect("create ServiceAccount")
    }

    /// A token for ServiceAccount `account`, bound to the Pod `pod` when given (its user info then
    /// names the pod, as for a real pod's projected token).
    pub async fn token(&self, account: &str, pod: Option<(&str, &str)>) -> String {
        request_token(&self.api(), account, pod, TOKEN_LIFETIME)
            .await
            .expect("request a token")
    }

    /// A client that authenticates with `token`.
    pub async fn client_with_token(&self, token: &str) -> Client {
        let path = std::env::temp_dir().join(format!("{}-{}.kubeconfig", self.name, token.len()));
        self.env.token_kubeconfig(token, &path).expect("token kubeconfig");
        let client = admin_client(&path).await.expect("token client");
        let _ = std::fs::remove_file(&path);
        client
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = self
            .env
            .kubectl()
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .output();
    }
}
