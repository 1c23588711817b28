//! The chart on the checker's control plane, as on a real cluster: its RBAC and admission policies
//! installed in the application's namespace (which is also the release's, so the operators' own
//! lease there is the one the policies keep for the operator's replicas), and for every process a
//! token of one of the chart's ServiceAccounts bound to a Pod object of its own, as a pod's
//! projected token is.

use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use kube::Client;

use super::{APPLICATION, Run};
use leadership_e2e::{chart, controlplane::admin_client, link::Link, testenv, tools::Tools, units};

/// The chart's release, in the application's namespace.
const RELEASE: &str = "leadership";
/// The operator's ServiceAccount: the release's full name.
pub(super) const OPERATOR_ACCOUNT: &str = RELEASE;
/// The sidecar's ServiceAccount (the chart's `sidecar.serviceAccountName`).
pub(super) const SIDECAR_ACCOUNT: &str = "leadership-sidecar";

/// Installs the chart into the application's namespace with the admin kubeconfig `kubeconfig`,
/// onboarding that namespace for sidecars, and waits until its admission policies are in force.
/// Left out: the CRD (the checker installs it first), the injection webhook (nothing would serve
/// it) and the operator Deployment's replicas (the operators run as local processes).
pub(super) async fn install_chart(tools: &Tools, kubeconfig: &Path) -> anyhow::Result<()> {
    let onboarded = format!("sidecar.namespaces=[\"{APPLICATION}\"]");
    let installed = chart::run_helm(
        tools,
        kubeconfig,
        &[
            "install",
            RELEASE,
            chart::CHART,
            "--namespace",
            APPLICATION,
            "--skip-crds",
            "--set",
            "operator.replicas=0",
            "--set",
            "webhook.enabled=false",
            "--set-json",
            &onboarded,
        ],
    )?;
    if !installed.status.success() {
        bail!("helm install of the chart failed:\n{}", chart::text(&installed));
    }
    chart::wait_for_policies(kubeconfig, APPLICATION).await?;
    Ok(())
}

impl Run {
    /// How long every token lasts: the fault run, and an hour for everything around it.
    fn token_lifetime(&self) -> Duration {
        self.settings.duration + Duration::from_secs(3600)
    }

    /// Creates the Pod object `pod`, which runs as `account` and, when `member`, belongs to the
    /// application; writes to `out` a kubeconfig with a token bound to it, whose requests go
    /// through `link` when one is given.
    pub(super) async fn pod_kubeconfig(
        &self,
        pod: &str,
        account: &str,
        member: bool,
        link: Option<&Link>,
        out: &Path,
    ) -> anyhow::Result<()> {
        let object = units::unit_pod_as(pod, Some(account), member.then_some(APPLICATION));
        let token = units::create_with_token(&self.api(), &self.api(), &object, self.token_lifetime())
            .await
            .with_context(|| format!("a token bound to the Pod object {pod}"))?;
        let admin = self.plane.kubeconfig();
        let base = match link {
            Some(link) => {
                link.kubeconfig(admin, out)?;
                out
            }
            None => admin,
        };
        testenv::token_kubeconfig(base, &token, out)?;
        Ok(())
    }

    /// A client with a token of `account` bound to no pod; its kubeconfig is written to `out`.
    pub(super) async fn unbound_client(&self, account: &str, out: &Path) -> anyhow::Result<Client> {
        let token = testenv::request_token(&self.api(), account, None, self.token_lifetime()).await?;
        testenv::token_kubeconfig(self.plane.kubeconfig(), &token, out)?;
        Ok(admin_client(out).await?)
    }
}
