//! The pinned control-plane binaries, built once by `e2e/tools/build` into a version-keyed cache.

use std::{path::PathBuf, process::Command};

use crate::Error;

/// The folder holding etcd, kube-apiserver, kube-controller-manager, kubectl and helm.
#[derive(Clone, Debug)]
pub struct Tools {
    bin: PathBuf,
}

/// The build script, in this crate's folder.
const BUILD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/build");

impl Tools {
    /// Finds the tools: `LEADERSHIP_TOOLS_BIN` if set, else the cache, building what is missing
    /// (which can take many minutes on a cold machine; the script shows its progress).
    pub fn locate() -> Result<Tools, Error> {
        if let Some(bin) = std::env::var_os("LEADERSHIP_TOOLS_BIN") {
            return Ok(Tools { bin: bin.into() });
        }
        let output = Command::new(BUILD)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| Error::io(format!("run {BUILD}"), e))?;
        if !output.status.success() {
            return Err(Error::Tools(format!("{BUILD} failed with {}", output.status)));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let bin = stdout.lines().last().unwrap_or_default().trim();
        if bin.is_empty() {
            return Err(Error::Tools(format!("{BUILD} printed no folder")));
        }
        Ok(Tools { bin: bin.into() })
    }

    /// The path of one tool, as a string for command lines.
    pub fn path(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }
}
