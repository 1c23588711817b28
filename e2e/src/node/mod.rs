//! A real node for the test control plane: containerd (with runc), the CNI bridge, kubelet,
//! kube-proxy and kube-scheduler, on one bridge of this machine's own ([`config::BRIDGE`], with
//! addresses reserved for benchmarking networks), and an OCI registry ([`config::REGISTRY`]) into
//! which `e2e/push` puts the images built here (`e2e/images`) and the chart: the kubelet pulls the
//! workloads' images from it; only the pod sandbox (pause) is imported.
//!
//! The host side (bridge, routes, sysctls, an iptables guard, cgroups) is `node.sh`, copied into
//! the cluster's folder: `up` before the API server starts (it binds the node's address), `down`
//! when the cluster stops, and from every component's watchdog when its owner process is gone, so
//! that containers, mounts, network namespaces, rules and cgroups never outlive a run.

pub mod config;

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::api::core::v1::Node;
use kube::Api;

use self::config::{KubeletPorts, Layout, NODE_IP, NODE_NAME};
use crate::{Error, certs::Certificates, tools::Tools};

/// The host-side script, written into the cluster's folder as `node.sh`.
const NODE_SCRIPT: &str = include_str!("node.sh");

/// The node's part of a control plane's start.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The folder of image archives (`e2e/images` writes them): the pause image is imported, the
    /// others are pushed into the node's registry.
    pub images: PathBuf,
    /// The node's tools.
    pub tools: Tools,
    /// crane: the node's registry.
    pub crane: PathBuf,
}

impl NodeOptions {
    /// The node's tools and crane from the cache (built if missing) and the images in `images`.
    pub fn new(images: impl Into<PathBuf>) -> Result<NodeOptions, Error> {
        Ok(NodeOptions {
            images: images.into(),
            tools: Tools::locate_node()?,
            crane: Tools::locate_crane()?,
        })
    }
}

/// The script that pushes the images and the chart to a registry (`e2e/images --push` runs it).
const PUSH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/push");

/// Pushes the image archives of `options` and the chart into the node's registry with
/// `e2e/push`, using the control plane's helm (`tools`).
pub fn push_to_registry(options: &NodeOptions, tools: &Tools) -> Result<(), Error> {
    run(
        "push the images and the chart to the node's registry (e2e/push)",
        Command::new(PUSH)
            .arg(config::REGISTRY)
            .arg("--plain-http")
            .arg("--images")
            .arg(&options.images)
            .env("LEADERSHIP_CRANE", &options.crane)
            .env("LEADERSHIP_TOOLS_BIN", tools.bin()),
    )
}

/// Whether the node's registry answers (its `/v2/` route).
pub fn registry_ready() -> bool {
    std::net::TcpStream::connect(config::REGISTRY).is_ok()
}

/// The addresses the API server's certificate names in node mode.
pub fn apiserver_addresses() -> [Ipv4Addr; 2] {
    [NODE_IP, config::KUBERNETES_SERVICE_IP]
}

/// The node's script in `dir`, if the cluster there has a node.
pub fn script(dir: &Path) -> Option<PathBuf> {
    let path = dir.join("node.sh");
    path.exists().then_some(path)
}

/// Prepares the host before the control plane starts: writes the script and its environment and
/// runs `node.sh up` (bridge, routes, sysctls, guard rules, cgroups).
pub fn prepare_host(dir: &Path, options: &NodeOptions) -> Result<Layout, Error> {
    check_free_space(dir)?;
    let layout = Layout {
        dir: dir.to_owned(),
        bin: options.tools.bin().to_owned(),
    };
    if !options.images.join("pause.tar").exists() {
        return Err(Error::State(format!(
            "no pause image in {}: run e2e/images first",
            options.images.display()
        )));
    }
    write(&dir.join("node.env"), &config::node_env(&layout))?;
    write(&dir.join("node.sh"), NODE_SCRIPT)?;
    run(
        "node.sh up",
        Command::new("bash").arg(dir.join("node.sh")).arg("up").arg(dir),
    )?;
    Ok(layout)
}

/// The least free space a node starts with, beside twice the kubelet's eviction threshold: room
/// for the images it pulls, the registry's copies and the pods' logs.
const MIN_FREE_BYTES: u64 = 4 << 30;

/// Refuses to start a node on a filesystem so full that the kubelet would soon evict every pod
/// (`evictionHard` below 1% free), which shows up later as pods Pending on a `disk-pressure` taint.
fn check_free_space(dir: &Path) -> Result<(), Error> {
    let stat = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| Error::io(format!("statvfs {}", dir.display()), e.into()))?;
    let block = stat.fragment_size();
    let (free, size) = (stat.blocks_available() * block, stat.blocks() * block);
    let needed = MIN_FREE_BYTES.max(size / 50);
    if free >= needed {
        return Ok(());
    }
    let gib = |bytes: u64| bytes as f64 / f64::from(1u32 << 30);
    Err(Error::State(format!(
        "only {:.1} GiB free on the filesystem of {}: the node's kubelet evicts every pod below 1% \
         free ({:.1} GiB) and needs room for images and logs; free space until {:.1} GiB are free \
         (old clones, target folders, old clusters' folders)",
        gib(free),
        dir.display(),
        gib(size / 100),
        gib(needed)
    )))
}

/// Runs `node.sh down` for the cluster in `dir` (every container, mount, rule, link and cgroup).
pub fn clean_host(dir: &Path) {
    if let Some(script) = script(dir) {
        let _ = Command::new("bash").arg(script).arg("down").arg(dir).status();
    }
}

/// The API server's flags that differ on a node: the node's address, the Service range, the Node
/// authorizer, ServiceAccount admission, and how to reach kubelets.
pub fn apiserver_flags(pki: &Path) -> Vec<String> {
    vec![
        format!("--bind-address={NODE_IP}"),
        format!("--advertise-address={NODE_IP}"),
        format!("--service-cluster-ip-range={}", config::SERVICE_CIDR),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        format!(
            "--kubelet-client-certificate={}",
            pki.join("apiserver-kubelet-client.crt").display()
        ),
        format!(
            "--kubelet-client-key={}",
            pki.join("apiserver-kubelet-client.key").display()
        ),
        format!("--kubelet-certificate-authority={}", pki.join("ca.crt").display()),
        "--kubelet-preferred-address-types=InternalIP".into(),
    ]
}

/// Writes the certificates of the node's components: the API server's client certificate for
/// kubelets, the kubelet's serving and client certificates, kube-proxy's and kube-scheduler's.
pub fn write_certificates(pki: &Path, layout: &Layout, certs: &Certificates) -> Result<(), Error> {
    let pair = |name: &str, pem: crate::certs::Pem| -> Result<(), Error> {
        write(&pki.join(format!("{name}.crt")), &pem.cert)?;
        write(&pki.join(format!("{name}.key")), &pem.key)
    };
    pair(
        "apiserver-kubelet-client",
        certs.client("kube-apiserver-kubelet-client", Some("system:masters"))?,
    )?;
    pair(
        "kubelet-client",
        certs.client(&format!("system:node:{NODE_NAME}"), Some("system:nodes"))?,
    )?;
    pair("kube-proxy", certs.client("system:kube-proxy", None)?)?;
    pair("kube-scheduler", certs.client("system:kube-scheduler", None)?)?;
    let kubelet_pki = layout.kubelet().join("pki");
    fs::create_dir_all(&kubelet_pki).map_err(|e| Error::io("create the kubelet's pki folder", e))?;
    let serving = certs.server(NODE_NAME, &[NODE_NAME], &[NODE_IP])?;
    write(&kubelet_pki.join("kubelet.crt"), &serving.cert)?;
    write(&kubelet_pki.join("kubelet.key"), &serving.key)
}

/// The commands of the node's components, in start order, with the files they read written.
pub struct Components {
    /// The registry.
    pub registry: Vec<String>,
    /// containerd.
    pub containerd: Vec<String>,
    /// kube-scheduler.
    pub scheduler: Vec<String>,
    /// The kubelet.
    pub kubelet: Vec<String>,
    /// kube-proxy.
    pub proxy: Vec<String>,
    /// kube-proxy's `/healthz` port on 127.0.0.1 (ready once its rules are written).
    pub proxy_healthz: u16,
}

/// Writes the configuration files and returns the components' command lines; `kubeconfig` makes a
/// kubeconfig for a user from its certificate files.
pub fn components(
    layout: &Layout,
    crane: &Path,
    pki: &Path,
    kubeconfig: &dyn Fn(&str) -> Result<PathBuf, Error>,
    free_port: &dyn Fn() -> Result<u16, Error>,
) -> Result<Components, Error> {
    let tool = |name: &str| layout.bin.join(name).display().to_string();
    fs::create_dir_all(layout.containerd()).map_err(|e| Error::io("create containerd's folder", e))?;
    fs::create_dir_all(layout.registry_store()).map_err(|e| Error::io("create the registry's folder", e))?;
    let containerd_config = layout.containerd().join("config.toml");
    write(&containerd_config, &config::containerd_toml(layout))?;
    write(
        &layout.cni_conf().join("10-leadership.conflist"),
        &config::cni_network(layout),
    )?;
    write(
        &layout.registry_hosts().join(config::REGISTRY).join("hosts.toml"),
        &config::registry_hosts_toml(),
    )?;
    let ports = KubeletPorts {
        api: free_port()?,
        healthz: free_port()?,
    };
    let kubelet_config = layout.kubelet().join("config.yaml");
    write(
        &kubelet_config,
        &config::kubelet_yaml(layout, ports, &pki.join("ca.crt")),
    )?;
    let proxy_healthz = free_port()?;
    // containerd finds its shim and runc on PATH.
    let path = format!(
        "PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        layout.bin.display()
    );
    Ok(Components {
        registry: vec![
            crane.display().to_string(),
            "registry".into(),
            "serve".into(),
            format!("--address={}", config::REGISTRY),
            format!("--disk={}", layout.registry_store().display()),
        ],
        containerd: vec![
            "env".into(),
            path,
            tool("containerd"),
            format!("--config={}", containerd_config.display()),
            "--log-level=warn".into(),
        ],
        scheduler: vec![
            tool("kube-scheduler"),
            format!("--kubeconfig={}", kubeconfig("kube-scheduler")?.display()),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ],
        kubelet: vec![
            tool("kubelet"),
            format!("--config={}", kubelet_config.display()),
            format!("--kubeconfig={}", kubeconfig("kubelet-client")?.display()),
            format!("--root-dir={}", layout.kubelet().display()),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={NODE_IP}"),
            "--v=1".into(),
        ],
        proxy: vec![
            tool("kube-proxy"),
            format!("--kubeconfig={}", kubeconfig("kube-proxy")?.display()),
            format!("--hostname-override={NODE_NAME}"),
            "--proxy-mode=iptables".into(),
            format!("--cluster-cidr={}", config::CLUSTER_CIDR),
            format!("--healthz-bind-address=127.0.0.1:{proxy_healthz}"),
            format!("--metrics-bind-address=127.0.0.1:{}", free_port()?),
            // Leave the machine's conntrack settings alone.
            "--conntrack-max-per-core=0".into(),
            "--conntrack-tcp-timeout-established=0".into(),
            "--conntrack-tcp-timeout-close-wait=0".into(),
        ],
        proxy_healthz,
    })
}

/// Whether containerd answers on its socket.
pub fn containerd_ready(layout: &Layout) -> bool {
    Command::new(layout.bin.join("ctr"))
        .arg(format!("--address={}", layout.containerd_socket().display()))
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Imports the pause image of `images` into containerd's `k8s.io` namespace (where the
/// kubelet's images live): the pod sandbox is the node's own, never pulled.
pub fn import_pause(layout: &Layout, images: &Path) -> Result<(), Error> {
    let archive = images.join("pause.tar");
    run(
        &format!("import {}", archive.display()),
        Command::new(layout.bin.join("ctr"))
            .arg(format!("--address={}", layout.containerd_socket().display()))
            .args(["--namespace=k8s.io", "images", "import"])
            .arg(&archive),
    )
}

/// Whether kube-proxy has written its rules (its `/healthz` answers 200).
pub fn proxy_ready(port: u16) -> bool {
    crate::controlplane::local_get(port, "/healthz")
        .is_some_and(|reply| reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"))
}

/// Whether the node is registered and Ready.
pub async fn node_ready(nodes: &Api<Node>) -> bool {
    let Ok(Some(node)) = nodes.get_opt(NODE_NAME).await else {
        return false;
    };
    node.status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    fs::write(path, contents).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

fn run(what: &str, command: &mut Command) -> Result<(), Error> {
    let output = command.output().map_err(|e| Error::io(what, e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Start {
        component: what.to_owned(),
        log: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}
