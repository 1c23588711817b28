//! The pinned control-plane binaries, built once by `e2e/tools/build` into a version-keyed cache.

use std::{path::PathBuf, process::Command};

use crate::Error;

/// A folder of pinned binaries: the control plane's (etcd, kube-apiserver,
/// kube-controller-manager, kubectl, helm) or the node's (kubelet, kube-scheduler, kube-proxy,
/// containerd and its shim, ctr, crictl, and the CNI plugins under `cni/`).
#[derive(Clone, Debug)]
pub struct Tools {
    bin: PathBuf,
}

/// The build scripts, in this crate's folder.
const BUILD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/build");
const BUILD_NODE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/node");
const BUILD_CRANE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/crane");

/// The pinned versions (sourced by the build scripts).
const VERSIONS: &str = include_str!("../tools/versions.sh");

/// The Kubernetes release the tools are built at: `LEADERSHIP_K8S_VERSION` if set (`e2e/compat`
/// sets it), else the one `e2e/tools/versions.sh` pins.
pub fn kubernetes_version() -> String {
    if let Ok(version) = std::env::var("LEADERSHIP_K8S_VERSION") {
        return version;
    }
    VERSIONS
        .lines()
        .find_map(|line| line.strip_prefix("K8S_VERSION=${LEADERSHIP_K8S_VERSION:-"))
        .and_then(|rest| rest.strip_suffix('}'))
        .expect("e2e/tools/versions.sh pins K8S_VERSION")
        .to_owned()
}

impl Tools {
    /// Finds the control plane's tools: `LEADERSHIP_TOOLS_BIN` if set, else the cache, building
    /// what is missing (which can take many minutes on a cold machine; the script shows its
    /// progress).
    pub fn locate() -> Result<Tools, Error> {
        Tools::locate_with("LEADERSHIP_TOOLS_BIN", BUILD)
    }

    /// Finds the node's tools: `LEADERSHIP_NODE_BIN` if set, else the cache, building what is
    /// missing and installing the Debian packages the node needs.
    pub fn locate_node() -> Result<Tools, Error> {
        Tools::locate_with("LEADERSHIP_NODE_BIN", BUILD_NODE)
    }

    /// Finds crane (go-containerregistry), the node's registry and the images' pusher:
    /// `LEADERSHIP_CRANE` if set, else the cache, built if missing by `e2e/tools/crane`.
    pub fn locate_crane() -> Result<PathBuf, Error> {
        if let Some(crane) = std::env::var_os("LEADERSHIP_CRANE") {
            return Ok(crane.into());
        }
        Ok(Tools::run_build(BUILD_CRANE)?.into())
    }

    fn locate_with(variable: &str, script: &str) -> Result<Tools, Error> {
        if let Some(bin) = std::env::var_os(variable) {
            return Ok(Tools { bin: bin.into() });
        }
        Ok(Tools {
            bin: Tools::run_build(script)?.into(),
        })
    }

    /// Runs a build script; the last line it printed (where it put what it built).
    fn run_build(script: &str) -> Result<String, Error> {
        let output = Command::new(script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| Error::io(format!("run {script}"), e))?;
        if !output.status.success() {
            return Err(Error::Tools(format!("{script} failed with {}", output.status)));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let built = stdout.lines().last().unwrap_or_default().trim();
        if built.is_empty() {
            return Err(Error::Tools(format!("{script} printed no path")));
        }
        Ok(built.to_owned())
    }

    /// The path of one tool, as a string for command lines.
    pub fn path(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    /// The folder itself.
    pub fn bin(&self) -> &std::path::Path {
        &self.bin
    }
}
