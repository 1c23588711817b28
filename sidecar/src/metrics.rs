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
        Metrics { registry, ..metrics }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
