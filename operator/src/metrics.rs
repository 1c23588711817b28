//! The operator's Prometheus metrics, in one registry with the `leadership_operator` prefix.
//! Per-application series are exported by the active replica only (a standby has not looked).

use leadership_runtime::metrics::MetricsRegistry;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};

/// A label with one low-cardinality value (an error kind, a revocation result).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The kind.
    pub kind: String,
}

/// The outcome of a webhook request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `injected`, `already_present`, `not_requested`, `refused` or `invalid`.
    pub outcome: String,
}

/// One application's lease.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct LeaseLabels {
    /// Its namespace.
    pub namespace: String,
    /// The application.
    pub application: String,
}

/// The metrics, shared with the reconciler and the admin server.
#[derive(Debug)]
pub struct Metrics {
    registry: MetricsRegistry,
    /// LeadershipLeases watched.
    pub leases: Gauge,
    /// Leases with a holder.
    pub leaders: Gauge,
    /// Per application: 1 while a unit holds a claim that has not run out.
    pub lease_held: Family<LeaseLabels, Gauge>,
    /// Per application: the fencing term.
    pub lease_term: Family<LeaseLabels, Gauge>,
    /// Changes of holder seen, per application.
    pub transitions: Family<LeaseLabels, Counter>,
    /// Per application: 1 while its leader's app has been unhealthy for the grace (it hands over
    /// when a healthy standby exists, and keeps leading when none does).
    pub lease_leader_unhealthy: Family<LeaseLabels, Gauge>,
    /// How long applications went without a leader before each new grant (a lower bound on the
    /// operator's clock: from the old holder's release, or the end of its last guarantee, to the
    /// new grant).
    pub failover_seconds: Histogram,
    /// Claims cleared after they ran out.
    pub expiries: Counter,
    /// How late each run-out claim was cleared: from when it ran out on this operator's clock to
    /// when the write that cleared it returned.
    pub expiry_lag_seconds: Histogram,
    /// Claims released early because the holder's containers all terminated.
    pub pod_releases: Counter,
    /// Revocation requests ended, by result (`done`, `not_held`).
    pub revocations: Family<KindLabel, Counter>,
    /// Handovers ended, by how (`done`, `abandoned`, `not_held`).
    pub handovers: Family<KindLabel, Counter>,
    /// Handovers the operator asked for, by why (`unhealthy`, `terminating`, `preferred`).
    pub handovers_asked: Family<KindLabel, Counter>,
    /// Reconcile duration.
    pub reconcile_seconds: Histogram,
    /// Reconcile errors by kind (the write that failed).
    pub reconcile_errors: Family<KindLabel, Counter>,
    /// Writes that lost a compare-and-swap race, by write (`clear_claim`, `status`, `spec`).
    pub write_conflicts: Family<KindLabel, Counter>,
    /// Pods whose facts the operator keeps (every pod in its scope, none that is gone).
    pub pods_indexed: Gauge,
    /// Events not recorded because too many were waiting to be written.
    pub events_dropped: Counter,
    /// 1 while this replica is the active one.
    pub active: Gauge,
    /// Webhook requests by outcome.
    pub webhook_requests: Family<OutcomeLabel, Counter>,
    /// When the webhook's serving certificate expires (Unix time).
    pub webhook_certificate_expiry: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let buckets = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
        let failover_buckets = [
            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
        ];
        let mut r = MetricsRegistry::with_prefix("leadership_operator");
        Metrics {
            leases: r.add("leases", "LeadershipLeases watched", Gauge::default()),
            leaders: r.add("leaders", "Leases with a holder", Gauge::default()),
            lease_held: r.add(
                "lease_held",
                "1 while a unit holds the application's lease and its claim has not run out",
                Family::default(),
            ),
            lease_term: r.add("lease_term", "The application's fencing term", Family::default()),
            transitions: r.add(
                "transitions",
                "Changes of holder seen, per application",
                Family::default(),
            ),
            lease_leader_unhealthy: r.add(
                "lease_leader_unhealthy",
                "1 while the application's leader's app has been unhealthy for the grace",
                Family::default(),
            ),
            failover_seconds: r.add_seconds(
                "failover_duration",
                "Time an application went without a leader before each new grant (a lower bound)",
                Histogram::new(failover_buckets),
            ),
            expiries: r.add(
                "expiries",
                "Claims cleared after they ran out",
                Counter::default(),
            ),
            expiry_lag_seconds: r.add_seconds(
                "expiry_lag",
                "From when a claim ran out on the operator's clock to when its clear was written",
                Histogram::new(buckets),
            ),
            pod_releases: r.add(
                "pod_releases",
                "Claims released because the holder's containers terminated",
                Counter::default(),
            ),
            revocations: r.add(
                "revocations",
                "Revocation requests ended, by result",
                Family::default(),
            ),
            handovers: r.add(
                "handovers",
                "Handover requests ended, by result",
                Family::default(),
            ),
            handovers_asked: r.add(
                "handovers_asked",
                "Handovers the operator asked for, by why",
                Family::default(),
            ),
            reconcile_seconds: r.add_seconds(
                "reconcile_duration",
                "Reconcile duration",
                Histogram::new(buckets),
            ),
            reconcile_errors: r.add("reconcile_errors", "Reconcile errors by kind", Family::default()),
            write_conflicts: r.add(
                "write_conflicts",
                "Lease writes that lost a compare-and-swap race, by write",
                Family::default(),
            ),
            pods_indexed: r.add(
                "pods_indexed",
                "Pods whose facts the operator keeps",
                Gauge::default(),
            ),
            events_dropped: r.add(
                "events_dropped",
                "Events not recorded because too many were waiting to be written",
                Counter::default(),
            ),
            active: r.add(
                "active",
                "1 while this replica is the active one",
                Gauge::default(),
            ),
            webhook_requests: r.add(
                "webhook_requests",
                "Sidecar injection webhook requests, by outcome",
                Family::default(),
            ),
            webhook_certificate_expiry: r.add_seconds(
                "webhook_certificate_expiry_timestamp",
                "When the webhook's serving certificate expires, in Unix time",
                Gauge::default(),
            ),
            registry: r,
        }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        self.registry.render()
    }

    /// Sets one application's gauges.
    pub fn set_lease(&self, labels: &LeaseLabels, held: bool, term: u64) {
        self.lease_held.get_or_create(labels).set(i64::from(held));
        self.lease_term
            .get_or_create(labels)
            .set(i64::try_from(term).unwrap_or(i64::MAX));
    }

    /// Drops one application's series (its lease is gone).
    pub fn forget_lease(&self, labels: &LeaseLabels) {
        self.lease_held.remove(labels);
        self.lease_term.remove(labels);
        self.transitions.remove(labels);
        self.lease_leader_unhealthy.remove(labels);
    }

    /// Drops every per-application series (this replica stopped being the active one).
    pub fn forget_leases(&self) {
        self.lease_held.clear();
        self.lease_term.clear();
        self.transitions.clear();
        self.lease_leader_unhealthy.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_units_follow_the_prometheus_conventions() {
        let metrics = Metrics::default();
        let labels = LeaseLabels {
            namespace: "shop".into(),
            application: "web".into(),
        };
        metrics.set_lease(&labels, true, 3);
        metrics.transitions.get_or_create(&labels).inc();
        metrics.failover_seconds.observe(0.2);
        let text = metrics.render();
        for line in [
            "# TYPE leadership_operator_failover_duration_seconds histogram",
            "# UNIT leadership_operator_failover_duration_seconds seconds",
            "# TYPE leadership_operator_reconcile_duration_seconds histogram",
            "# TYPE leadership_operator_expiry_lag_seconds histogram",
            "leadership_operator_transitions_total{namespace=\"shop\",application=\"web\"} 1",
            "leadership_operator_lease_held{namespace=\"shop\",application=\"web\"} 1",
            "leadership_operator_lease_term{namespace=\"shop\",application=\"web\"} 3",
            "# TYPE leadership_operator_webhook_certificate_expiry_timestamp_seconds gauge",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        metrics.forget_lease(&labels);
        assert!(!metrics.render().contains("application=\"web\""));
    }
}
