//! The admin port (TCP): `/healthz` and `/readyz` for kubelet probes, `/metrics` for Prometheus.

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};

use crate::api::{Sidecar, Store, probes};

/// The admin routes.
pub fn router<S: Store>(sidecar: Sidecar<S>) -> Router {
    probes().route("/metrics", get(metrics::<S>)).with_state(sidecar)
}

async fn metrics<S: Store>(State(sidecar): State<Sidecar<S>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        sidecar.metrics().render(),
    )
}
