//! Starts and stops a real control plane on 127.0.0.1: etcd, kube-apiserver and
//! kube-controller-manager, with their own CA, in a temp folder; with a node (see [`crate::node`])
//! the API server serves on the node's bridge address and pods run.
//!
//! Every component runs in its own process group under a small watchdog shell: when an owner
//! process is given (a test binary), the watchdog stops the component as soon as the owner is gone,
//! so an interrupted or crashed test leaves nothing running. Without an owner (`e2e/cluster up`)
//! the components run until [`ControlPlane::stop`] (`e2e/cluster down`).

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Child,
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::{Deserialize, Serialize};

use crate::{Error, certs::Certificates, node, tools::Tools};

mod components;

pub use self::components::Component;

/// The file in a control plane's folder that describes it to other processes.
pub const STATE_FILE: &str = "cluster.json";

/// What another process needs to know of a running control plane; stored as [`STATE_FILE`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterState {
    /// The folder holding certificates, etcd data, logs and the kubeconfig.
    pub dir: PathBuf,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The API server's URL.
    pub server: String,
    /// The Kubernetes version served.
    pub version: String,
    /// The components, in start order.
    pub components: Vec<Component>,
    /// The owner process whose exit stops the components, if any.
    pub owner: Option<u32>,
}

/// How to start a control plane.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Where to keep its files; a new temp folder if not given.
    pub dir: Option<PathBuf>,
    /// A process whose exit stops everything (tests pass their own pid).
    pub owner: Option<u32>,
    /// Start a node as well (kubelet, containerd, kube-proxy, kube-scheduler): pods run.
    pub node: Option<node::NodeOptions>,
}

impl StartOptions {
    /// A temp folder, and everything stops when this process ends.
    pub fn owned_by_this_process() -> Self {
        StartOptions {
            dir: None,
            owner: Some(std::process::id()),
            node: None,
        }
    }
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    state: ClusterState,
    children: Mutex<BTreeMap<String, Child>>,
}

fn elapsed(start: Instant) -> String {
    format!("{:5.1}s", start.elapsed().as_secs_f64())
}

fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| Error::io("pick a free port", e))?;
    Ok(listener
        .local_addr()
        .map_err(|e| Error::io("pick a free port", e))?
        .port())
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    fs::write(path, contents).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

fn new_temp_dir() -> Result<PathBuf, Error> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("leadership-e2e-{}-{nanos:x}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    Ok(dir)
}

/// A kubeconfig for `server` as `user`, with the certificates inline.
fn kubeconfig(server: &str, ca: &str, client: &crate::certs::Pem, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: leadership-e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: leadership-e2e\n  context:\n    cluster: leadership-e2e\n    user: {user}\n    namespace: default\ncurrent-context: leadership-e2e\n",
        ca = B64.encode(ca),
        cert = B64.encode(&client.cert),
        key = B64.encode(&client.key),
    )
}

/// `GET path` on 127.0.0.1:`port` (HTTP/1.0, 2 s read timeout): the whole reply, if any.
pub(crate) fn local_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    Some(reply)
}

/// Whether etcd at `port` answers its health check.
fn etcd_healthy(port: u16) -> bool {
    local_get(port, "/health").is_some_and(|reply| reply.contains("\"health\":\"true\""))
}

impl ControlPlane {
    /// Generates certificates, starts etcd, kube-apiserver and kube-controller-manager on free
    /// loopback ports, and waits until the API is ready, the `default` namespace exists and the
    /// controller manager has made its first ServiceAccount. With [`StartOptions::node`], the API
    /// server serves on the node's bridge address instead and a node joins (see [`crate::node`]).
    /// Progress goes to stderr.
    pub async fn start(tools: &Tools, options: StartOptions) -> Result<ControlPlane, Error> {
        let started = Instant::now();
        let dir = match options.dir {
            Some(dir) => {
                fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
                dir
            }
            None => new_temp_dir()?,
        };
        let pki = dir.join("pki");
        fs::create_dir_all(&pki).map_err(|e| Error::io("create pki folder", e))?;
        fs::create_dir_all(dir.join("logs")).map_err(|e| Error::io("create logs folder", e))?;
        let layout = match &options.node {
            Some(node) => {
                let layout = node::prepare_host(&dir, node);
                if layout.is_err() {
                    node::clean_host(&dir);
                }
                Some(layout?)
            }
            None => None,
        };
        let address = if layout.is_some() {
            node::config::NODE_IP
        } else {
            Ipv4Addr::LOCALHOST
        };
        let certs = if layout.is_some() {
            Certificates::generate(&node::apiserver_addresses())?
        } else {
            Certificates::generate(&[])?
        };
        let file = |name: &str, contents: &str| -> Result<String, Error> {
            let path = pki.join(name);
            write(&path, contents)?;
            Ok(path.display().to_string())
        };
        let ca = file("ca.crt", &certs.ca.cert)?;
        let server_crt = file("apiserver.crt", &certs.apiserver.cert)?;
        let server_key = file("apiserver.key", &certs.apiserver.key)?;
        let sa_key = file("sa.key", &certs.service_account_key)?;
        let sa_pub = file("sa.pub", &certs.service_account_public_key)?;
        if let Some(layout) = &layout {
            node::write_certificates(&pki, layout, &certs)?;
        }

        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let server = format!("https://{address}:{api_port}");
        let kubeconfig_path = dir.join("admin.kubeconfig");
        write(
            &kubeconfig_path,
            &kubeconfig(&server, &certs.ca.cert, &certs.admin, "admin"),
        )?;
        let kubeconfig_arg = kubeconfig_path.display().to_string();

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = vec![
            tools.path("etcd"),
            "--name=e2e".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=e2e={peer_url}"),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ];
        let mut apiserver = vec![
            tools.path("kube-apiserver"),
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", dir.join("apiserver").display()),
            format!("--tls-cert-file={server_crt}"),
            format!("--tls-private-key-file={server_key}"),
            format!("--client-ca-file={ca}"),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={sa_pub}"),
            format!("--service-account-signing-key-file={sa_key}"),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
        ];
        if layout.is_some() {
            apiserver.extend(node::apiserver_flags(&pki));
        } else {
            apiserver.extend([
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--authorization-mode=RBAC".into(),
                "--endpoint-reconciler-type=none".into(),
                // No kubelet runs pods here; the plugin would only race namespace creation.
                "--disable-admission-plugins=ServiceAccount".into(),
            ]);
        }
        let controller_manager = vec![
            tools.path("kube-controller-manager"),
            format!("--kubeconfig={kubeconfig_arg}"),
            format!("--authentication-kubeconfig={kubeconfig_arg}"),
            format!("--authorization-kubeconfig={kubeconfig_arg}"),
            "--leader-elect=false".into(),
            // Nothing reads its HTTPS port (readiness is its first ServiceAccount), and a port
            // picked in advance can be taken by the time it binds.
            "--secure-port=0".into(),
            format!("--service-account-private-key-file={sa_key}"),
            format!("--root-ca-file={ca}"),
            "--use-service-account-credentials=false".into(),
            "--profiling=false".into(),
        ];

        let mut plane = ControlPlane {
            state: ClusterState {
                dir: dir.clone(),
                kubeconfig: kubeconfig_path,
                server,
                version: String::new(),
                components: Vec::new(),
                owner: options.owner,
            },
            children: Mutex::new(BTreeMap::new()),
        };
        let result = async {
            plane.launch("etcd", etcd)?;
            plane
                .wait("etcd", Duration::from_secs(30), || async {
                    Ok(etcd_healthy(etcd_port))
                })
                .await?;
            eprintln!("[controlplane {}] etcd ready on {etcd_url}", elapsed(started));
            plane.launch("kube-apiserver", apiserver)?;
            let client = plane.wait_for_api(Duration::from_secs(90)).await?;
            eprintln!(
                "[controlplane {}] kube-apiserver ready on {}",
                elapsed(started),
                plane.state.server
            );
            plane.launch("kube-controller-manager", controller_manager)?;
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
            plane
                .wait("kube-controller-manager", Duration::from_secs(90), || async {
                    Ok(accounts.get_opt("default").await.ok().flatten().is_some())
                })
                .await?;
            eprintln!(
                "[controlplane {}] kube-controller-manager ready",
                elapsed(started)
            );
            if let (Some(layout), Some(node)) = (&layout, &options.node) {
                plane
                    .start_node(tools, layout, node, &certs, &pki, &client, started)
                    .await?;
            }
            plane.state.version = client
                .apiserver_version()
                .await
                .map_err(Error::kube("read /version"))?
                .git_version;
            plane.save()
        }
        .await;
        if let Err(err) = result {
            plane.stop();
            return Err(err);
        }
        Ok(plane)
    }

    /// Starts the node's registry (and fills it with `e2e/push`) and its components on a running
    /// control plane, and waits until the node is Ready and kube-proxy has written its rules.
    #[allow(clippy::too_many_arguments, reason = "the start's parts, each used once")]
    async fn start_node(
        &mut self,
        tools: &Tools,
        layout: &node::config::Layout,
        options: &node::NodeOptions,
        certs: &Certificates,
        pki: &Path,
        client: &Client,
        started: Instant,
    ) -> Result<(), Error> {
        let server = self.state.server.clone();
        let dir = self.state.dir.clone();
        let kubeconfig_of = |user: &str| -> Result<PathBuf, Error> {
            let read = |ext: &str| {
                let path = pki.join(format!("{user}.{ext}"));
                fs::read_to_string(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))
            };
            let pem = crate::certs::Pem {
                cert: read("crt")?,
                key: read("key")?,
            };
            let path = dir.join(format!("{user}.kubeconfig"));
            write(&path, &kubeconfig(&server, &certs.ca.cert, &pem, user))?;
            Ok(path)
        };
        let components = node::components(layout, &options.crane, pki, &kubeconfig_of, &free_port)?;
        self.launch("registry", components.registry)?;
        self.wait("registry", Duration::from_secs(30), || async {
            Ok(node::registry_ready())
        })
        .await?;
        node::push_to_registry(options, tools)?;
        eprintln!(
            "[controlplane {}] registry {} ready: the images of {} and the chart pushed",
            elapsed(started),
            node::config::REGISTRY,
            options.images.display()
        );
        self.launch("containerd", components.containerd)?;
        self.wait("containerd", Duration::from_secs(60), || async {
            Ok(node::containerd_ready(layout))
        })
        .await?;
        node::import_pause(layout, &options.images)?;
        eprintln!(
            "[controlplane {}] containerd ready, the pause image imported",
            elapsed(started)
        );
        self.launch("kube-scheduler", components.scheduler)?;
        self.launch("kubelet", components.kubelet)?;
        let nodes: Api<Node> = Api::all(client.clone());
        self.wait("kubelet", Duration::from_secs(180), || async {
            Ok(node::node_ready(&nodes).await)
        })
        .await?;
        eprintln!(
            "[controlplane {}] kubelet ready: node {} is Ready",
            elapsed(started),
            node::config::NODE_NAME
        );
        self.launch("kube-proxy", components.proxy)?;
        let port = components.proxy_healthz;
        self.wait("kube-proxy", Duration::from_secs(60), || async {
            Ok(node::proxy_ready(port))
        })
        .await?;
        eprintln!("[controlplane {}] kube-proxy ready", elapsed(started));
        Ok(())
    }

    /// Reads the state of a control plane started by another process.
    pub fn attach(dir: &Path) -> Result<ControlPlane, Error> {
        let path = dir.join(STATE_FILE);
        let text = fs::read_to_string(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let state =
            serde_json::from_str(&text).map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
        Ok(ControlPlane {
            state,
            children: Mutex::new(BTreeMap::new()),
        })
    }

    /// What other processes need to know of this control plane.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The admin kubeconfig's path.
    pub fn kubeconfig(&self) -> &Path {
        &self.state.kubeconfig
    }

    /// A new admin client (a client belongs to the tokio runtime that first uses it).
    pub async fn client(&self) -> Result<Client, Error> {
        admin_client(self.kubeconfig()).await
    }

    /// Stops every component, newest first, and removes the folder.
    pub fn stop(&mut self) {
        for component in self.state.components.iter().rev() {
            self.terminate(component);
        }
        self.state.components.clear();
        node::clean_host(&self.state.dir);
        let _ = fs::remove_dir_all(&self.state.dir);
    }

    fn save(&self) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(&self.state).map_err(|e| Error::State(e.to_string()))?;
        write(&self.state.dir.join(STATE_FILE), &text)
    }

    async fn wait_for_api(&self, limit: Duration) -> Result<Client, Error> {
        let client = self.client().await?;
        self.wait("kube-apiserver", limit, || async {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| Error::State(e.to_string()))?;
            Ok(client
                .request_text(request)
                .await
                .is_ok_and(|body| body.trim() == "ok"))
        })
        .await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        self.wait("kube-apiserver", limit, || async {
            Ok(namespaces.get_opt("default").await.ok().flatten().is_some())
        })
        .await?;
        Ok(client)
    }
}

/// A client from an admin kubeconfig file.
pub async fn admin_client(kubeconfig: &Path) -> Result<Client, Error> {
    let file = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::State(format!("{}: {e}", kubeconfig.display())))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::State(format!("{}: {e}", kubeconfig.display())))?;
    Client::try_from(config).map_err(Error::kube("make a client"))
}
