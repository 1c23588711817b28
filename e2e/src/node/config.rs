//! The node's configuration files, as pure functions of its [`Layout`]: containerd's, the
//! kubelet's, kube-proxy's flags, the CNI network, and the environment the node script reads.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde_json::json;

/// The node's name (also its kubelet's `--hostname-override`).
pub const NODE_NAME: &str = "leadership-node";
/// The bridge that holds the node's address and every pod's veth.
pub const BRIDGE: &str = "lship0";
/// The node's address, on the bridge: the API server binds and advertises it, the kubelet serves
/// on it, and it is every pod's gateway. 198.18.0.0/15 is reserved for benchmarking networks
/// (RFC 2544): nothing outside this machine is ever addressed.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The node's pod subnet (on the bridge).
pub const POD_SUBNET: &str = "198.18.0.0/24";
/// The cluster's pod range (kube-proxy's `--cluster-cidr`).
pub const CLUSTER_CIDR: &str = "198.18.0.0/16";
/// The Service range; routed to the bridge so that nothing for it leaves the machine.
pub const SERVICE_CIDR: &str = "198.19.0.0/16";
/// The `kubernetes` Service's ClusterIP (the first of the range).
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The cgroup (in every hierarchy) under which the kubelet puts its pods.
pub const CGROUP_ROOT: &str = "/leadership-e2e";
/// The sandbox image containerd runs for every pod (built by `e2e/images` and imported: the
/// node's own, as a kubelet's pause image is).
pub const PAUSE_IMAGE: &str = "leadership.local/pause:1.0";
/// The node's OCI registry (`crane registry serve`, plain HTTP on the node's address): `e2e/push`
/// puts the images and the chart there, and containerd pulls the workloads' images from it.
pub const REGISTRY: &str = "198.18.0.1:5000";

/// Where the node's files and sockets live, under the cluster's folder.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The cluster's folder.
    pub dir: PathBuf,
    /// The node's tools (kubelet, containerd, ..., `cni/`).
    pub bin: PathBuf,
}

impl Layout {
    /// containerd's folder (root, state, socket, config).
    pub fn containerd(&self) -> PathBuf {
        self.dir.join("containerd")
    }
    /// containerd's socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd().join("containerd.sock")
    }
    /// The kubelet's folder (`--root-dir`), with its config and certificates.
    pub fn kubelet(&self) -> PathBuf {
        self.dir.join("kubelet")
    }
    /// containerd's registry hosts (`config_path`): one folder per registry with its
    /// `hosts.toml`.
    pub fn registry_hosts(&self) -> PathBuf {
        self.containerd().join("certs.d")
    }
    /// Where the node's registry keeps what is pushed to it.
    pub fn registry_store(&self) -> PathBuf {
        self.dir.join("registry")
    }
    /// The CNI network configuration folder.
    pub fn cni_conf(&self) -> PathBuf {
        self.dir.join("cni").join("net.d")
    }
    /// Where the pods' container logs go.
    pub fn pod_logs(&self) -> PathBuf {
        self.dir.join("pod-logs")
    }
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

/// containerd's configuration (version 3): its own root, state and socket; the CRI plugin with
/// runc on cgroupfs, the CNI plugins and network of [`cni_network`], our pause image, and network
/// namespaces kept under its state folder.
pub fn containerd_toml(layout: &Layout) -> String {
    let base = layout.containerd();
    let quote = |path: PathBuf| format!("'{}'", text(&path));
    format!(
        r#"version = 3
root = {root}
state = {state}
# Plugins this node does not use (and whose defaults would reach outside the cluster's folder).
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.snapshotter.v1.btrfs', 'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.blockfile', 'io.containerd.snapshotter.v1.erofs', 'io.containerd.tracing.processor.v1.otlp', 'io.containerd.internal.v1.tracing']

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = {opt}
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{pause}'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = {hosts}
  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    # This machine gives root no CAP_SYS_RESOURCE: no process may lower its OOM score below
    # containerd's own, which the kubelet's -998 for sandboxes would.
    restrict_oom_score_adj = true
    enable_unprivileged_ports = true
    enable_unprivileged_icmp = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = {runc}
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [{cni_bin}]
      conf_dir = {cni_conf}
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
"#,
        root = quote(base.join("root")),
        state = quote(base.join("state")),
        socket = quote(layout.containerd_socket()),
        ttrpc = quote(base.join("containerd.ttrpc.sock")),
        opt = quote(base.join("opt")),
        pause = PAUSE_IMAGE,
        hosts = quote(layout.registry_hosts()),
        cni_bin = quote(layout.bin.join("cni")),
        runc = quote(layout.bin.join("runc")),
        cni_conf = quote(layout.cni_conf()),
    )
}

/// containerd's `hosts.toml` for the node's [`REGISTRY`]: plain HTTP, for pulls and resolves,
/// as a cluster is told of an internal registry without TLS.
pub fn registry_hosts_toml() -> String {
    format!(
        r#"server = "http://{REGISTRY}"

[host."http://{REGISTRY}"]
  capabilities = ["pull", "resolve"]
"#
    )
}

/// The CNI network: every pod on [`BRIDGE`] with an address of [`POD_SUBNET`], the node as its
/// gateway, hairpin traffic allowed (a pod reaching itself through a Service), and no masquerade
/// (nothing is routed out of the machine).
pub fn cni_network(layout: &Layout) -> String {
    let network = json!({
        "cniVersion": "1.0.0",
        "name": "leadership",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{
                        "subnet": POD_SUBNET,
                        "gateway": NODE_IP.to_string(),
                        "rangeStart": "198.18.0.10",
                    }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": text(&layout.dir.join("cni").join("ipam")),
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    serde_json::to_string_pretty(&network).expect("a JSON value serialises")
}

/// The ports the kubelet takes, both free ports chosen by the caller.
#[derive(Clone, Copy, Debug)]
pub struct KubeletPorts {
    /// Its API (logs, exec), on [`NODE_IP`].
    pub api: u16,
    /// Its `/healthz`, on 127.0.0.1.
    pub healthz: u16,
}

/// The kubelet's configuration: cgroupfs on cgroup v1, pods under [`CGROUP_ROOT`], certificates
/// from the cluster CA, API authentication and authorisation through the API server, no DNS, no
/// eviction or image garbage collection that would remove images no registry can give back.
pub fn kubelet_yaml(layout: &Layout, ports: KubeletPorts, ca: &Path) -> String {
    let kubelet = layout.kubelet();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine runs cgroup v1 (hybrid), which Kubernetes 1.35+ refuses unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
containerRuntimeEndpoint: unix://{socket}
address: {node_ip}
port: {api}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
tlsCertFile: {kubelet}/pki/kubelet.crt
tlsPrivateKeyFile: {kubelet}/pki/kubelet.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
podCIDR: {pod_subnet}
podLogsDir: {pod_logs}
resolvConf: {kubelet}/resolv.conf
failSwapOn: false
registerNode: true
serializeImagePulls: false
# The pause image is imported, not pulled: never collect images.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
# Prompt status for tests: container states and node status reach the API server quickly.
syncFrequency: 5s
nodeStatusUpdateFrequency: 4s
fileCheckFrequency: 5s
"#,
        cgroup_root = CGROUP_ROOT,
        socket = text(&layout.containerd_socket()),
        node_ip = NODE_IP,
        api = ports.api,
        healthz = ports.healthz,
        kubelet = text(&kubelet),
        ca = text(ca),
        pod_subnet = POD_SUBNET,
        pod_logs = text(&layout.pod_logs()),
    )
}

/// What `node.sh` reads: the cluster's folder, the tools, and the network and cgroup names.
pub fn node_env(layout: &Layout) -> String {
    format!(
        "DIR='{dir}'\nNODE_BIN='{bin}'\nBRIDGE='{BRIDGE}'\nNODE_IP='{NODE_IP}'\nPOD_SUBNET='{POD_SUBNET}'\nCLUSTER_CIDR='{CLUSTER_CIDR}'\nSERVICE_CIDR='{SERVICE_CIDR}'\nCGROUP_ROOT='{CGROUP_ROOT}'\nCONTAINERD_SOCKET='{socket}'\n",
        dir = text(&layout.dir),
        bin = text(&layout.bin),
        socket = text(&layout.containerd_socket()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            dir: PathBuf::from("/tmp/cluster"),
            bin: PathBuf::from("/cache/node/bin"),
        }
    }

    #[test]
    fn containerd_keeps_everything_under_the_clusters_folder() {
        let toml = containerd_toml(&layout());
        for line in toml.lines().filter(|l| l.contains("= '/")) {
            assert!(
                line.contains("'/tmp/cluster/") || line.contains("'/cache/node/bin/"),
                "outside the folder: {line}"
            );
        }
        assert!(toml.contains("netns_mounts_under_state_dir = true"));
        assert!(toml.contains(&format!("sandbox = '{PAUSE_IMAGE}'")));
        assert!(
            toml.contains("config_path = '/tmp/cluster/containerd/certs.d'"),
            "{toml}"
        );
        assert!(toml.contains("SystemdCgroup = false"));
    }

    #[test]
    fn the_pod_network_stays_on_the_bridge_and_is_not_masqueraded() {
        let network: serde_json::Value = serde_json::from_str(&cni_network(&layout())).unwrap();
        let bridge = &network["plugins"][0];
        assert_eq!(bridge["bridge"], BRIDGE);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], NODE_IP.to_string());
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], POD_SUBNET);
    }

    #[test]
    fn the_kubelet_runs_on_cgroup_v1_with_its_ports_and_no_image_collection() {
        let yaml = kubelet_yaml(
            &layout(),
            KubeletPorts {
                api: 10250,
                healthz: 10248,
            },
            Path::new("/ca.crt"),
        );
        let config: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(config["failCgroupV1"], serde_yaml::Value::Bool(false));
        assert_eq!(config["port"].as_u64(), Some(10250));
        assert_eq!(config["healthzPort"].as_u64(), Some(10248));
        assert_eq!(config["address"].as_str(), Some("198.18.0.1"));
        assert_eq!(config["imageGCHighThresholdPercent"].as_u64(), Some(100));
        assert_eq!(
            config["authentication"]["x509"]["clientCAFile"].as_str(),
            Some("/ca.crt")
        );
    }
}
