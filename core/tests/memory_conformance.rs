//! The conformance suite against the in-memory store, on a paused (manual) clock.

use std::time::Duration;

use leadership::{MemoryStore, conformance::Harness, validate::DurationLimits};

struct MemoryHarness(MemoryStore);

impl Harness for MemoryHarness {
    type Store = MemoryStore;

    fn store(&self) -> MemoryStore {
        self.0.clone()
    }

    async fn sleep(&self, period: Duration) {
        tokio::time::sleep(period).await;
    }

    fn margin(&self, _length: Duration) -> Duration {
        Duration::ZERO
    }
}

leadership::conformance_suite! {
    #[tokio::test(start_paused = true)]
    async fn harness() -> MemoryHarness {
        MemoryHarness(MemoryStore::new(DurationLimits::default()))
    }
}
