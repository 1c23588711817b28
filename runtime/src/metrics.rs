//! A Prometheus registry that hands back each metric it registers, so that a process builds its
//! metrics struct in one expression, each field with its name and help beside it, and renders
//! them in the text format its admin port serves.

use prometheus_client::{
    encoding::text::encode,
    registry::{Metric, Registry, Unit},
};

/// The metrics of one process, under one name prefix (`leadership_operator`, `leadership_sidecar`).
#[derive(Debug)]
pub struct MetricsRegistry(Registry);

impl MetricsRegistry {
    /// An empty registry whose metric names all start with `prefix_`.
    pub fn with_prefix(prefix: &str) -> Self {
        MetricsRegistry(Registry::with_prefix(prefix))
    }

    /// Registers `metric` as `name` with `help`, and returns it for the caller to keep.
    pub fn add<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }

    /// Registers `metric`, measured in seconds, as `name` with `help` (the name gains the
    /// `_seconds` suffix), and returns it.
    pub fn add_seconds<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0
            .register_with_unit(name, help, Unit::Seconds, metric.clone());
        metric
    }

    /// Every metric, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.0);
        text
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::{counter::Counter, histogram::Histogram};

    use super::*;

    #[test]
    fn a_registered_metric_is_the_one_rendered() {
        let mut registry = MetricsRegistry::with_prefix("demo");
        let hits: Counter = registry.add("hits", "Hits seen", Counter::default());
        let wait = registry.add_seconds("wait", "Time waited", Histogram::new([0.1, 1.0]));
        hits.inc();
        wait.observe(0.5);
        let text = registry.render();
        for line in [
            "# HELP demo_hits Hits seen.",
            "demo_hits_total 1",
            "# UNIT demo_wait_seconds seconds",
            "demo_wait_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
