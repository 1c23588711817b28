//! The Helm chart in tests and the fault checker: `helm` with a cluster's kubeconfig, rendering to
//! YAML documents, a release installed for one test (uninstalled when dropped), and waiting until
//! the chart's admission policies are in force.

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use leadership_kube::crd::{LeadershipLease, LeadershipLeaseStatus};

use crate::{
    Error,
    controlplane::admin_client,
    node::config::REGISTRY,
    testenv::{self, TestEnv, TestNamespace},
    tools::Tools,
};

/// The example app's image (busybox and curl), built by `e2e/images` and pushed into the node's
/// registry with the chart's, under its default name and tag.
pub const APP_IMAGE: &str = "example-app:1.0";

/// The chart's folder.
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/leadership");

/// Runs `helm` with the test cluster's kubeconfig.
pub fn helm(args: &[&str]) -> Output {
    helm_in(testenv::shared(), args)
}

/// Runs `helm` with the kubeconfig of `env`.
pub fn helm_in(env: &TestEnv, args: &[&str]) -> Output {
    run_helm(env.tools(), env.kubeconfig(), args).expect("run helm")
}

/// Runs the `helm` of `tools` with `args` and the kubeconfig file `kubeconfig`.
pub fn run_helm(tools: &Tools, kubeconfig: &Path, args: &[&str]) -> Result<Output, Error> {
    std::process::Command::new(tools.path("helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .map_err(|e| Error::io("run helm", e))
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

/// The script that builds the previous release for the upgrade test.
const PREVIOUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/previous");

/// The release the upgrade test installs before upgrading to the working tree: the commit
/// `e2e/previous-release` names, its chart and its images as `e2e/previous` built them.
#[derive(Clone, Debug)]
pub struct PreviousRelease {
    /// The folder `e2e/previous` wrote (`chart/`, `images/`, `commit`).
    pub dir: PathBuf,
    /// The commit.
    pub commit: String,
}

impl PreviousRelease {
    /// `LEADERSHIP_PREVIOUS` if set (`e2e/test` sets it), else what `e2e/previous` prints
    /// (building it once per commit).
    pub fn locate() -> Result<PreviousRelease, Error> {
        let dir = match std::env::var_os("LEADERSHIP_PREVIOUS") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let out = std::process::Command::new(PREVIOUS)
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .map_err(|e| Error::io("run e2e/previous", e))?;
                if !out.status.success() {
                    return Err(Error::State(format!("e2e/previous failed with {}", out.status)));
                }
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
        };
        let commit = std::fs::read_to_string(dir.join("commit"))
            .map_err(|e| Error::io(format!("read {}/commit", dir.display()), e))?;
        Ok(PreviousRelease {
            commit: commit.trim().to_owned(),
            dir,
        })
    }

    /// Its chart folder.
    pub fn chart(&self) -> PathBuf {
        self.dir.join("chart")
    }

    /// The tag its images have in the node's registry: `previous-` and the short commit (its
    /// chart's appVersion is the current one's too).
    pub fn tag(&self) -> String {
        format!("previous-{}", &self.commit[..self.commit.len().min(12)])
    }

    /// Pushes its operator and sidecar images into the node's registry with `crane`, under
    /// [`PreviousRelease::tag`].
    pub fn push(&self, crane: &Path) -> Result<(), Error> {
        for image in ["leadership-operator", "leadership-sidecar"] {
            let archive = self.dir.join("images").join(format!("{image}.tar"));
            let reference = format!("{REGISTRY}/{image}:{}", self.tag());
            let out = std::process::Command::new(crane)
                .args(["push", "--insecure"])
                .arg(&archive)
                .arg(&reference)
                .output()
                .map_err(|e| Error::io("run crane push", e))?;
            if !out.status.success() {
                return Err(Error::State(format!("crane push {reference}: {}", text(&out))));
            }
        }
        Ok(())
    }

    /// `helm install` arguments for its images in the node's registry.
    pub fn image_args(&self) -> Vec<String> {
        let mut args = registry_args();
        args.retain(|a| a != "--plain-http");
        for part in ["operator", "sidecar"] {
            args.push("--set".into());
            args.push(format!("{part}.image.tag={}", self.tag()));
        }
        args
    }
}

/// The chart in the node's registry, where `e2e/push` put it.
pub fn registry_chart() -> String {
    format!("oci://{REGISTRY}/charts/leadership")
}

/// `name:tag` as pushed into the node's registry (`example-app:1.0`, `leadership-sidecar:0.1.0`).
pub fn registry_image(name_and_tag: &str) -> String {
    format!("{REGISTRY}/{name_and_tag}")
}

/// `helm install` arguments for the chart in the node's registry: plain HTTP, and the operator's
/// and the sidecar's images from that registry.
pub fn registry_args() -> Vec<String> {
    vec![
        "--plain-http".into(),
        "--set".into(),
        format!("operator.image.repository={REGISTRY}/leadership-operator"),
        "--set".into(),
        format!("sidecar.image.repository={REGISTRY}/leadership-sidecar"),
    ]
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
        Release::install_chart(ns, CHART, args)
    }

    /// Installs the chart from the node's registry, with its images from there too (see
    /// [`registry_chart`], [`registry_args`]): what `helm install oci://...` gives a cluster.
    pub fn install_from_registry(ns: &TestNamespace, args: &[&str]) -> Release {
        let from_registry = registry_args();
        let mut all: Vec<&str> = from_registry.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        Release::install_chart(ns, &registry_chart(), &all)
    }

    /// Installs the previous release's chart (from its folder) with its images from the node's
    /// registry (see [`PreviousRelease::push`]): the starting point of an upgrade.
    pub fn install_previous(ns: &TestNamespace, previous: &PreviousRelease, args: &[&str]) -> Release {
        let images = previous.image_args();
        let mut all: Vec<&str> = images.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        Release::install_chart(ns, &previous.chart().display().to_string(), &all)
    }

    /// `helm upgrade` of this release to the chart in the node's registry, with `args` (such as
    /// `--reuse-values` and `--set` flags). Returns helm's output.
    pub fn upgrade_from_registry(&self, args: &[&str]) -> Output {
        let chart = registry_chart();
        let mut all = vec![
            "upgrade",
            &self.name,
            &chart,
            "--namespace",
            &self.name,
            "--plain-http",
        ];
        all.extend_from_slice(args);
        helm_in(self.env, &all)
    }

    fn install_chart(ns: &TestNamespace, chart: &str, args: &[&str]) -> Release {
        let mut all = vec!["install", &ns.name, chart, "--namespace", &ns.name];
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

    /// Installs the chart with `args`, its webhook and its admission policies confined to the
    /// namespace ([`webhook_in`], [`policies_in`]): tests install releases side by side. The
    /// namespace is the one onboarded ([`sidecar_in`]).
    pub fn install_confined(ns: &TestNamespace, args: &[&str]) -> Release {
        let (webhook, policies, sidecar) = (webhook_in(ns), policies_in(ns), sidecar_in(ns));
        let mut all = vec![
            "--set-json",
            webhook.as_str(),
            "--set-json",
            policies.as_str(),
            "--set-json",
            sidecar.as_str(),
        ];
        all.extend_from_slice(args);
        Release::install(ns, &all)
    }

    /// Waits until the release's admission policies judge writes in `ns` (see
    /// [`wait_for_policies`]).
    pub async fn wait_for_policies(&self, ns: &TestNamespace) {
        wait_for_policies(ns.env().kubeconfig(), &ns.name)
            .await
            .expect("the release's admission policies in force");
    }

    /// The full name prefix of the release's resources.
    pub fn fullname(&self) -> String {
        format!("{}-leadership", self.name)
    }

    /// The operator's ServiceAccount.
    pub fn operator_account(&self) -> String {
        self.fullname()
    }

    /// The operator's user name, as the API server sees its ServiceAccount's tokens.
    pub fn operator_user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.name, self.operator_account())
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm_in(self.env, &["uninstall", &self.name, "--namespace", &self.name]);
    }
}

/// Waits until the chart's admission policies judge lease writes in `namespace` of the cluster
/// whose admin kubeconfig is `kubeconfig`: the API server loads them a moment after they are
/// created. Probes with dry runs on a lease of its own (deleted afterwards): a status write by the
/// admin, who has no pod binding, and a label written with a pod binding (the admin impersonating
/// one), each from the probe as it is then (an operator may be writing its conditions). Fails
/// after 60 s.
pub async fn wait_for_policies(kubeconfig: &Path, namespace: &str) -> Result<(), Error> {
    const PROBE: &str = "policy-probe";
    let admin = Api::<LeadershipLease>::namespaced(admin_client(kubeconfig).await?, namespace);
    let created = admin
        .create(&PostParams::default(), &LeadershipLease::empty(namespace, PROBE))
        .await
        .map_err(Error::kube("create the probe lease"))?;
    let pod = testenv::impersonating_client(
        kubeconfig,
        "leadership-probe",
        &["system:masters"],
        &[("authentication.kubernetes.io/pod-name", PROBE)],
    )
    .await?;
    let as_pod = Api::<LeadershipLease>::namespaced(pod, namespace);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let refused =
        |result: kube::Result<LeadershipLease>| matches!(result, Err(kube::Error::Api(s)) if s.code == 403);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut current = created;
    let in_force = loop {
        // From the probe as it is now: an operator may have written its conditions.
        if let Ok(read) = admin.get(PROBE).await {
            current = read;
        }
        let mut claim = current.clone();
        claim.status = Some(LeadershipLeaseStatus {
            holder: Some(PROBE.into()),
            term: 1,
            lease_duration_ms: Some(1_000),
            ..LeadershipLeaseStatus::default()
        });
        let mut labelled = current.clone();
        labelled.metadata.labels = Some([("probe".to_owned(), "yes".to_owned())].into());
        let claims = refused(admin.replace_status(PROBE, &dry, &claim).await);
        let spec = refused(as_pod.replace(PROBE, &dry, &labelled).await);
        if claims && spec {
            break Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(Error::State(format!(
                "the admission policies are not in force in {namespace} after 60 s (claims {claims}, spec {spec})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    admin
        .delete(PROBE, &DeleteParams::default())
        .await
        .map_err(Error::kube("delete the probe lease"))?;
    in_force
}

/// The chart's settings that keep a test's webhook to its own namespace: the chart's default
/// sees every namespace, and tests run side by side.
pub fn webhook_in(ns: &TestNamespace) -> String {
    format!(
        "webhook.namespaceSelector={{\"matchLabels\":{{\"kubernetes.io/metadata.name\":\"{}\"}}}}",
        ns.name
    )
}

/// The chart's setting that onboards the test's namespace: the sidecar's ServiceAccount and Role
/// there (by default the chart onboards no namespace).
pub fn sidecar_in(ns: &TestNamespace) -> String {
    format!("sidecar.namespaces=[\"{}\"]", ns.name)
}

/// The chart's settings that keep a test's admission policies to its own namespace: by default
/// they judge every namespace, and each release's policies know only their own operator, so a
/// release running beside another would refuse the other operator's writes.
pub fn policies_in(ns: &TestNamespace) -> String {
    format!(
        "admissionPolicy.namespaceSelector={{\"matchLabels\":{{\"kubernetes.io/metadata.name\":\"{}\"}}}}",
        ns.name
    )
}
