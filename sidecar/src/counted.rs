//! A store wrapper that counts the unit's claims by kind (an acquisition or a renewal of the
//! unit's own grant) and result, for `leadership_sidecar_claims_total`: renewal errors are the
//! first sign of a leader about to lose its lease.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use leadership::{Claimer, Eligibility, Error, Grant, LeaseFeed, Pinner, Reader, Result, Watcher};

use crate::metrics::{ClaimLabels, Metrics};

/// `store`, with every claim counted in `metrics`.
#[derive(Clone)]
pub struct Counted<S> {
    store: S,
    metrics: Arc<Metrics>,
    /// Whether the last claim was granted and not given up since: the next claim renews it.
    holds: Arc<Mutex<bool>>,
}

impl<S> Counted<S> {
    /// Counts `store`'s claims in `metrics`.
    pub fn new(store: S, metrics: Arc<Metrics>) -> Self {
        Counted {
            store,
            metrics,
            holds: Arc::default(),
        }
    }

    fn holds(&self) -> std::sync::MutexGuard<'_, bool> {
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `result` label of a claim's outcome: `granted`, `denied` (another unit holds the lease),
/// or `error` (no answer: the claim's fate is unknown).
pub fn result_label(outcome: &Result<Grant>) -> &'static str {
    match outcome {
        Ok(_) => "granted",
        Err(Error::ClaimDenied) => "denied",
        Err(_) => "error",
    }
}

impl<S: Claimer> Claimer for Counted<S> {
    async fn claim_leadership(&self, application: &str, unit: &str, duration: Duration) -> Result<Grant> {
        let renewal = *self.holds();
        let outcome = self.store.claim_leadership(application, unit, duration).await;
        match &outcome {
            Ok(_) => *self.holds() = true,
            Err(Error::ClaimDenied) => *self.holds() = false,
            // Unknown: a renewal stays a renewal until the unit learns otherwise.
            Err(_) => {}
        }
        self.metrics
            .claims
            .get_or_create(&ClaimLabels {
                kind: if renewal { "renew" } else { "acquire" }.to_owned(),
                result: result_label(&outcome).to_owned(),
            })
            .inc();
        outcome
    }

    async fn release_leadership(&self, application: &str, unit: &str) -> Result<()> {
        let released = self.store.release_leadership(application, unit).await;
        if released.is_ok() || matches!(released, Err(Error::ClaimNotHeld)) {
            *self.holds() = false;
        }
        released
    }
}

impl<S: Watcher> Watcher for Counted<S> {
    async fn watch(&self, application: &str) -> Result<LeaseFeed> {
        self.store.watch(application).await
    }
}

impl<S: Reader> Reader for Counted<S> {
    async fn leaders(&self) -> Result<BTreeMap<String, String>> {
        self.store.leaders().await
    }
}

impl<S: Pinner> Pinner for Counted<S> {
    async fn pin_leadership(&self, application: &str, entity: &str) -> Result<()> {
        self.store.pin_leadership(application, entity).await
    }

    async fn unpin_leadership(&self, application: &str, entity: &str) -> Result<()> {
        self.store.unpin_leadership(application, entity).await
    }

    async fn pinned_leadership(&self) -> Result<BTreeMap<String, Vec<String>>> {
        self.store.pinned_leadership().await
    }
}

impl<S: Eligibility> Eligibility for Counted<S> {
    async fn record_eligibility(&self, application: &str, unit: &str, reason: Option<&str>) -> Result<()> {
        self.store.record_eligibility(application, unit, reason).await
    }

    async fn declared_ineligible(&self, application: &str, unit: &str) -> Result<Option<String>> {
        self.store.declared_ineligible(application, unit).await
    }
}

#[cfg(test)]
mod tests {
    use leadership::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn claims_are_counted_as_acquisitions_then_renewals_and_denials_reset() {
        let metrics = Arc::new(Metrics::default());
        let store = MemoryStore::default();
        let a = Counted::new(store.clone(), metrics.clone());
        let b = Counted::new(store, metrics.clone());
        let d = Duration::from_secs(10);
        a.claim_leadership("web", "web-0", d).await.unwrap();
        a.claim_leadership("web", "web-0", d).await.unwrap();
        assert!(b.claim_leadership("web", "web-1", d).await.is_err());
        a.release_leadership("web", "web-0").await.unwrap();
        a.claim_leadership("web", "web-0", d).await.unwrap();
        let text = metrics.render();
        for line in [
            "leadership_sidecar_claims_total{kind=\"acquire\",result=\"granted\"} 2",
            "leadership_sidecar_claims_total{kind=\"renew\",result=\"granted\"} 1",
            "leadership_sidecar_claims_total{kind=\"acquire\",result=\"denied\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }
}
