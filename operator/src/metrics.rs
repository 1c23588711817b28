//! The operator's Prometheus metrics, in one registry with the `leadership_operator` prefix.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// A label with one low-cardinality value (an error kind, a revocation result).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The kind.
    pub kind: String,
}

/// The metrics, shared with the reconciler and the admin server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// LeadershipLeases watched.
    pub leases: Gauge,
    /// Leases with a holder.
    pub leaders: Gauge,
    /// Changes of holder seen.
    pub transitions: Counter,
    /// Claims cleared after they ran out.
    pub expiries: Counter,
    /// Claims released early because the holder's containers all terminated.
    pub pod_releases: Counter,
    /// Revocation requests ended, by result (`done`, `not_held`).
    pub revocations: Family<KindLabel, Counter>,
    /// Handovers ended, by how (`done`, `abandoned`, `not_held`).
    pub handovers: Family<KindLabel, Counter>,
    /// Reconcile duration.
    pub reconcile_seconds: Histogram,
    /// Reconcile errors by kind.
    pub reconcile_errors: Family<KindLabel, Counter>,
    /// 1 while this replica is the active one.
    pub active: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let buckets = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
        let metrics = Metrics {
            registry: Registry::default(),
            leases: Gauge::default(),
            leaders: Gauge::default(),
            transitions: Counter::default(),
            expiries: Counter::default(),
            pod_releases: Counter::default(),
            revocations: Family::default(),
            handovers: Family::default(),
            reconcile_seconds: Histogram::new(buckets),
            reconcile_errors: Family::default(),
            active: Gauge::default(),
        };
        let mut registry = Registry::with_prefix("leadership_operator");
        registry.register("leases", "LeadershipLeases watched", metrics.leases.clone());
        registry.register("leaders", "Leases with a holder", metrics.leaders.clone());
        registry.register(
            "transitions",
            "Changes of holder seen",
            metrics.transitions.clone(),
        );
        registry.register(
            "expiries",
            "Claims cleared after they ran out",
            metrics.expiries.clone(),
        );
        registry.register(
            "pod_releases",
            "Claims released because the holder's containers terminated",
            metrics.pod_releases.clone(),
        );
        registry.register(
            "revocations",
            "Revocation requests ended, by result",
            metrics.revocations.clone(),
        );
        registry.register(
            "handovers",
            "Handover requests ended, by result",
            metrics.handovers.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            metrics.reconcile_seconds.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by kind",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "active",
            "1 while this replica is the active one",
            metrics.active.clone(),
        );
        Metrics { registry, ..metrics }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let _ = encode(&mut text, &self.registry);
        text
    }
}
