//! The Helm chart in tests: `helm` with the test cluster's kubeconfig, rendering to YAML
//! documents, and a release installed for one test (uninstalled when dropped).

use std::process::Output;

use crate::testenv::{self, TestEnv, TestNamespace};

/// The chart's folder.
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/leadership");

/// Runs `helm` with the test cluster's kubeconfig.
pub fn helm(args: &[&str]) -> Output {
    helm_in(testenv::shared(), args)
}

/// Runs `helm` with the kubeconfig of `env`.
pub fn helm_in(env: &TestEnv, args: &[&str]) -> Output {
    std::process::Command::new(env.tools().path("helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(env.kubeconfig())
        .output()
        .expect("run helm")
}

/// A command's stdout and stderr, for messages.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `helm template RELEASE CHART` with `args`: the rendered documents. Panics if it fails.
pub fn render(release: &str, args: &[&str]) -> Vec<serde_yaml::Value> {
    let mut all = vec!["template", release, CHART];
    all.extend_from_slice(args);
    let rendered = helm(&all);
    assert!(rendered.status.success(), "{}", text(&rendered));
    let yaml = String::from_utf8_lossy(&rendered.stdout).into_owned();
    serde_yaml::Deserializer::from_str(&yaml)
        .filter_map(|doc| serde::Deserialize::deserialize(doc).ok())
        .filter(|doc: &serde_yaml::Value| !doc.is_null())
        .collect()
}

/// The rendered document of `kind` named `name`.
pub fn document<'a>(documents: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    documents
        .iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered chart"))
}

/// The chart installed as release `ns.name` into the namespace; uninstalled when dropped.
pub struct Release {
    /// The release's name (the namespace's).
    pub name: String,
    env: &'static TestEnv,
}

impl Release {
    /// Installs the chart with `args` (such as `--set` flags).
    pub fn install(ns: &TestNamespace, args: &[&str]) -> Release {
        let mut all = vec!["install", &ns.name, CHART, "--namespace", &ns.name];
        all.extend_from_slice(args);
        let installed = helm_in(ns.env(), &all);
        assert!(installed.status.success(), "{}", text(&installed));
        assert!(
            text(&installed).contains("kubectl get leadershipleases"),
            "NOTES.txt says what to do next"
        );
        Release {
            name: ns.name.clone(),
            env: ns.env(),
        }
    }

    /// The full name prefix of the release's resources.
    pub fn fullname(&self) -> String {
        format!("{}-leadership", self.name)
    }

    /// The operator's ServiceAccount.
    pub fn operator_account(&self) -> String {
        self.fullname()
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm_in(self.env, &["uninstall", &self.name, "--namespace", &self.name]);
    }
}

/// The chart's settings that keep a test's webhook to its own namespace: the chart's default
/// sees every namespace, and tests run side by side.
pub fn webhook_in(ns: &TestNamespace) -> String {
    format!(
        "webhook.namespaceSelector={{\"matchLabels\":{{\"kubernetes.io/metadata.name\":\"{}\"}}}}",
        ns.name
    )
}
