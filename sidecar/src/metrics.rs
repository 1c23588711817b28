//! The sidecar's Prometheus metrics, in one registry with the `leadership_sidecar` prefix.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
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
    registry: Registry,
    /// 1 while this unit is leader.
    pub leader: Gauge,
    /// The fencing term last seen.
    pub term: Gauge,
    /// Times this unit became leader.
    pub elected: Counter,
    /// Times this unit stopped being leader.
    pub deposed: Counter,
    /// Socket requests by route and status.
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
        let mut registry = Registry::with_prefix("leadership_sidecar");
        let metrics = Metrics {
            leader: Gauge::default(),
            term: Gauge::default(),
            elected: Counter::default(),
            deposed: Counter::default(),
            requests: Family::default(),
            hook_runs: Family::default(),
            claims: Family::default(),
            info: Family::default(),
            registry: Registry::default(),
        };
        registry.register("leader", "1 while this unit is leader", metrics.leader.clone());
        registry.register("term", "The fencing term last seen", metrics.term.clone());
        registry.register(
            "elected",
            "Times this unit became leader",
            metrics.elected.clone(),
        );
        registry.register(
            "deposed",
            "Times this unit stopped being leader",
            metrics.deposed.clone(),
        );
        registry.register(
            "requests",
            "Socket API requests by route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "hook_runs",
            "Elected and deposed hook runs by outcome",
            metrics.hook_runs.clone(),
        );
        registry.register(
            "claims",
            "Claims by kind (acquire, renew) and result (granted, denied, error)",
            metrics.claims.clone(),
        );
        registry.register(
            "info",
            "1, labelled with this sidecar's application and unit",
            metrics.info.clone(),
        );
        Metrics { registry, ..metrics }
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
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
