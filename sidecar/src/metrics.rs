//! The sidecar's Prometheus metrics, in one registry with the `leadership_sidecar` prefix.

use leadership_runtime::metrics::MetricsRegistry;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};

/// Labels of a socket request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route, or `other` for unknown paths (keeps cardinality bounded).
    pub route: String,
    /// The HTTP status code.
    pub code: u16,
}

/// Labels of a hook run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// `elected` or `deposed`.
    pub hook: String,
    /// `ok`, `failed`, `timeout` or `not-started`.
    pub outcome: String,
}

/// Labels of a claim.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClaimLabels {
    /// `acquire`, or `renew` (a claim by the unit whose own grant was last granted).
    pub kind: String,
    /// `granted`, `denied` or `error`.
    pub result: String,
}

/// The labels of the info metric: who this sidecar is.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    /// The application.
    pub application: String,
    /// This unit (the pod's name).
    pub unit: String,
}

/// The metrics, shared with the handlers.
#[derive(Debug)]
pub struct Metrics {
    registry: MetricsRegistry,
    /// 1 while this unit is leader: it holds the lease and its guarantee has not run out.
    pub leader: Gauge,
    /// The fencing term of the lease as the tracker last saw it, whoever holds it; rises at
    /// every grant.
    pub term: Gauge,
    /// Times this unit became leader.
    pub elected: Counter,
    /// Times this unit stopped being leader (deposed, released, or its guarantee ran out).
    pub deposed: Counter,
    /// Socket requests by route (`other` for unknown paths, so the series stay few) and
    /// status code.
    pub requests: Family<RequestLabels, Counter>,
    /// Hook runs by hook and outcome.
    pub hook_runs: Family<HookLabels, Counter>,
    /// Claims by kind and result.
    pub claims: Family<ClaimLabels, Counter>,
    /// 1, labelled with the application and the unit (join on it by pod).
    pub info: Family<InfoLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = MetricsRegistry::with_prefix("leadership_sidecar");
        Metrics {
            leader: r.add("leader", "1 while this unit is leader", Gauge::default()),
            term: r.add("term", "The fencing term last seen", Gauge::default()),
            elected: r.add("elected", "Times this unit became leader", Counter::default()),
            deposed: r.add(
                "deposed",
                "Times this unit stopped being leader",
                Counter::default(),
            ),
            requests: r.add(
                "requests",
                "Socket API requests by route and status",
                Family::default(),
            ),
            hook_runs: r.add(
                "hook_runs",
                "Elected and deposed hook runs by outcome",
                Family::default(),
            ),
            claims: r.add(
                "claims",
                "Claims by kind (acquire, renew) and result (granted, denied, error)",
                Family::default(),
            ),
            info: r.add(
                "info",
                "1, labelled with this sidecar's application and unit",
                Family::default(),
            ),
            registry: r,
        }
    }
}

impl Metrics {
    /// The metrics of the sidecar of `unit` in `application`.
    pub fn for_unit(application: &str, unit: &str) -> Self {
        let metrics = Metrics::default();
        metrics
            .info
            .get_or_create(&InfoLabels {
                application: application.to_owned(),
                unit: unit.to_owned(),
            })
            .set(1);
        metrics
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        self.registry.render()
    }
}
