//! The store conformance suite against the Kubernetes store on a real API server, one namespace
//! per rule; every `store()` is a separate observer, as separate pods would be.

mod common;

use std::time::Duration;

use leadership::{conformance::Harness, expiry::ExpiryPolicy};
use leadership_e2e::testenv::TestNamespace;
use leadership_kube::KubeStore;

struct KubeHarness(TestNamespace);

impl Harness for KubeHarness {
    type Store = KubeStore;

    fn store(&self) -> KubeStore {
        common::store(&self.0)
    }

    async fn sleep(&self, period: Duration) {
        tokio::time::sleep(period).await;
    }

    fn margin(&self, length: Duration) -> Duration {
        ExpiryPolicy::default().margin(length)
    }
}

leadership::conformance_suite! {
    #[tokio::test]
    async fn harness() -> KubeHarness {
        KubeHarness(common::namespace().await)
    }
}
