//! Shared fixtures of the Kubernetes store tests.

use kube::Client;
use leadership_e2e::testenv::{self, TestNamespace};
use leadership_kube::{KubeStore, Scope};

/// Installs (or updates) the CRD and waits until it is served.
pub async fn install_crd(client: &Client) {
    leadership_kube::crd::install(client)
        .await
        .expect("install the CRD");
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
