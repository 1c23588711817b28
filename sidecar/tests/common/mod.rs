//! Shared fixtures of the sidecar's end-to-end tests.

use leadership_e2e::testenv::{self, TestNamespace};
#[allow(unused_imports, reason = "not every test binary uses every fixture")]
pub use leadership_e2e::units::{PROMPTLY, Sidecar, leader, next_leader, three, three_with};

/// A fresh namespace with the CRD installed.
pub async fn namespace() -> TestNamespace {
    let ns = testenv::shared().namespace().await;
    leadership_kube::crd::install(&ns.client)
        .await
        .expect("install the CRD");
    ns
}
