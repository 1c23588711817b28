//! The admin port: each binary's own probes (`/healthz`, `/readyz`, whose meaning differs per
//! binary) and `/metrics` in the OpenMetrics text format, served by [`crate::http::serve`].

use axum::{Router, http::header, routing::get};

/// The content type of `/metrics`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The admin routes: `probes` with `/metrics` answered by `render`.
pub fn router(probes: Router, render: impl Fn() -> String + Clone + Send + Sync + 'static) -> Router {
    probes.route(
        "/metrics",
        get(move || {
            let text = render();
            async move { ([(header::CONTENT_TYPE, OPENMETRICS)], text) }
        }),
    )
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics_beside_the_probes() {
        let probes = Router::new().route("/healthz", get(|| async { "ok" }));
        let routes = router(probes, || "# EOF\n".to_owned());
        let metrics = routes
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(metrics.headers()[header::CONTENT_TYPE], OPENMETRICS);
        let body = axum::body::to_bytes(metrics.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"# EOF\n");
        let health = routes
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(health.status().is_success());
    }
}
