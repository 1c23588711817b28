//! Shared fixtures of the Kubernetes store tests.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, CustomResourceExt,
    api::{Patch, PatchParams},
    runtime::{conditions, wait::await_condition},
};
use leadership_e2e::testenv::{self, TestNamespace};
use leadership_kube::{KubeStore, Scope, crd::LeadershipLease};

/// Installs (or updates) the CRD with server-side apply and waits until it is served.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = LeadershipLease::crd();
    let name = crd.metadata.name.clone().expect("CRD name");
    crds.patch(
        &name,
        &PatchParams::apply("leadership-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .expect("watch CRD");
    // Discovery can lag the Established condition for a moment.
    let probe: Api<LeadershipLease> = Api::namespaced(client.clone(), "default");
    for _ in 0..100 {
        if probe.list(&Default::default()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("LeadershipLeases are not served");
}

/// A fresh namespace with the CRD installed.
pub async fn namespace() -> TestNamespace {
    let ns = testenv::shared().namespace().await;
    install_crd(&ns.client).await;
    ns
}

/// A new store (a new observer) on the namespace.
pub fn store(ns: &TestNamespace) -> KubeStore {
    KubeStore::new(ns.client.clone(), Scope::Namespace(ns.name.clone()))
}
