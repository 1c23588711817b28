//! The mutating admission webhook that injects the sidecar, served over HTTPS by every replica
//! (the operator's own leadership does not gate it).
//!
//! - [`certs`]: the self-managed CA and serving certificate (pure);
//! - [`keeper`]: keeps them in a Secret, rotates them, and keeps the `caBundle`;
//! - [`tls`]: HTTPS with a certificate swapped on renewal.
//!
//! `POST /inject` takes an `AdmissionReview` of a Pod and answers with the patch from
//! [`crate::inject::inject`], or a refusal naming the annotation at fault.
//!
//! Whoever reaches the port is not trusted: [`Limits`] caps the size of a review, how many are
//! judged at once and how long one may take (from the first byte of its body to the answer);
//! the injection itself refuses pods of more than
//! [`MAX_CONTAINERS`](crate::inject::patch::MAX_CONTAINERS) containers.

pub mod certs;
pub mod keeper;
pub mod tls;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::post,
};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    ResourceExt,
    core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    inject::{self, InjectError, Injection, SidecarTemplate, patch::respond},
    metrics::{Metrics, OutcomeLabel},
};

/// The webhook's path.
pub const PATH: &str = "/inject";

/// What one client of the webhook may ask of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest AdmissionReview body, in bytes; a larger one is answered 413 (and the API
    /// server applies the failure policy).
    pub body: usize,
    /// Reviews judged at once; more wait for a turn, within their time.
    pub concurrent: usize,
    /// The longest a review may take, waiting for a turn and reading its body included; then it is
    /// answered 503.
    pub review_time: Duration,
}

impl Default for Limits {
    /// 1 MiB (a pod's review is a few KiB; etcd stores objects of at most 1.5 MiB), 64 reviews at
    /// once, 5 s each (the API server waits `webhook.timeoutSeconds`, 10 s by default).
    fn default() -> Self {
        Limits {
            body: 1024 * 1024,
            concurrent: 64,
            review_time: Duration::from_secs(5),
        }
    }
}

/// What the handler needs.
pub struct Webhook {
    /// The sidecar to inject.
    pub template: SidecarTemplate,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
}

/// The webhook's routes, with the default [`Limits`].
pub fn router(webhook: Arc<Webhook>) -> Router {
    limited(
        Router::new().route(PATH, post(admit)).with_state(webhook),
        Limits::default(),
    )
}

/// `routes` with `limits`: the body's size (of requests whose handler reads it whole), requests
/// served at once, and the time of each.
pub fn limited(routes: Router, limits: Limits) -> Router {
    let permits = Arc::new(Semaphore::new(limits.concurrent));
    routes
        .layer(DefaultBodyLimit::max(limits.body))
        .layer(middleware::from_fn_with_state((permits, limits), limit))
}

async fn limit(
    State((permits, limits)): State<(Arc<Semaphore>, Limits)>,
    request: Request,
    next: Next,
) -> Response {
    let served = async {
        // The semaphore is never closed.
        let _turn = permits.acquire().await.ok();
        next.run(request).await
    };
    match tokio::time::timeout(limits.review_time, served).await {
        Ok(response) => response,
        Err(_) => {
            warn!(limit = ?limits.review_time, "a webhook request took too long; answered 503");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the review took longer than {:?} (waiting for one of {} turns, or reading its body)",
                    limits.review_time, limits.concurrent
                ),
            )
                .into_response()
        }
    }
}

fn outcome(decision: &Result<Injection, InjectError>) -> &'static str {
    match decision {
        Ok(Injection::Patch(_)) => "injected",
        Ok(Injection::AlreadyPresent) => "already_present",
        Ok(Injection::NotRequested) => "not_requested",
        Err(_) => "refused",
    }
}

async fn admit(State(webhook): State<Arc<Webhook>>, body: Bytes) -> Response {
    let count = |outcome: &str| {
        webhook
            .metrics
            .webhook_requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    };
    let request: AdmissionRequest<Pod> = match serde_json::from_slice::<AdmissionReview<Pod>>(&body)
        .map_err(|e| e.to_string())
        .and_then(|review| {
            review
                .try_into()
                .map_err(|_| "the AdmissionReview has no request".to_owned())
        }) {
        Ok(request) => request,
        Err(reason) => {
            count("invalid");
            warn!(%reason, "an AdmissionReview that cannot be read");
            let reply = AdmissionResponse::invalid(format!("cannot read the AdmissionReview: {reason}"));
            return (StatusCode::BAD_REQUEST, Json(reply.into_review())).into_response();
        }
    };
    let decision = match &request.object {
        Some(pod) => inject::inject(pod, &webhook.template),
        None => Ok(Injection::NotRequested),
    };
    let pod = request
        .object
        .as_ref()
        .map(|p| {
            let name = p.name_any();
            if name.is_empty() {
                format!("{}*", p.metadata.generate_name.clone().unwrap_or_default())
            } else {
                name
            }
        })
        .unwrap_or_default();
    match &decision {
        Ok(Injection::Patch(_)) => {
            info!(namespace = %request.namespace.clone().unwrap_or_default(), %pod, "sidecar injected")
        }
        Err(err) => {
            info!(namespace = %request.namespace.clone().unwrap_or_default(), %pod, reason = %err, "injection refused")
        }
        Ok(_) => {}
    }
    count(outcome(&decision));
    Json(respond(AdmissionResponse::from(&request), &decision).into_review()).into_response()
}

/// How the webhook is served.
pub struct Serving {
    /// Where.
    pub address: SocketAddr,
    /// The sidecar to inject.
    pub template: SidecarTemplate,
    /// Where its certificate is kept.
    pub keeper: keeper::Keeper,
}

/// A running webhook.
pub struct Running {
    /// The certificate served (none until the first round of the keeper).
    pub current: Arc<tls::CurrentCert>,
    /// The tasks: the keeper and the server.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds the address and starts the keeper and the server, until `stop` fires.
pub async fn start(
    serving: Serving,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(serving.address).await?;
    let current = serving.keeper.current.clone();
    let routes = router(Arc::new(Webhook {
        template: serving.template,
        metrics,
    }));
    info!(address = %listener.local_addr()?, path = PATH, "serving the sidecar injection webhook");
    let keeper = tokio::spawn(serving.keeper.run(stop.clone()));
    let server = tokio::spawn(tls::serve(listener, current.acceptor(), routes, stop));
    Ok(Running {
        current,
        tasks: vec![keeper, server],
    })
}

/// The DNS names of a Service `name` in `namespace`, as API servers address a webhook behind it.
pub fn service_names(name: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{name}.{namespace}.svc"),
        format!("{name}.{namespace}.svc.cluster.local"),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::{body::Body, http::Request};
    use tower::ServiceExt as _;

    use super::*;
    use crate::inject::template::tests::chart_like;

    fn post_body(path: &str, body: Vec<u8>) -> Request<Body> {
        Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    }

    fn webhook() -> Router {
        router(Arc::new(Webhook {
            template: chart_like(),
            metrics: Arc::new(Metrics::default()),
        }))
    }

    #[tokio::test]
    async fn a_review_larger_than_the_limit_is_refused_unread() {
        let limit = Limits::default().body;
        let routes = limited(
            Router::new().route("/", post(|body: Bytes| async move { body.len().to_string() })),
            Limits::default(),
        );
        let at_limit = routes
            .clone()
            .oneshot(post_body("/", vec![b' '; limit]))
            .await
            .unwrap();
        assert_eq!(at_limit.status(), StatusCode::OK);
        let over = routes
            .oneshot(post_body("/", vec![b' '; limit + 1]))
            .await
            .unwrap();
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // The webhook itself: 1 MiB of padding in an otherwise fine review.
        let review = format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","padding":"{}"}}"#,
            " ".repeat(limit)
        );
        let answer = webhook()
            .oneshot(post_body(PATH, review.into_bytes()))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn at_most_the_limit_of_reviews_are_judged_at_once() {
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, m) = (now.clone(), most.clone());
        let handler = move || {
            let (now, most) = (n.clone(), m.clone());
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                "done"
            }
        };
        let limits = Limits {
            concurrent: 3,
            ..Limits::default()
        };
        let routes = limited(Router::new().route("/", post(handler)), limits);
        let requests: Vec<_> = (0..12)
            .map(|_| tokio::spawn(routes.clone().oneshot(post_body("/", Vec::new()))))
            .collect();
        for request in requests {
            assert_eq!(request.await.unwrap().unwrap().status(), StatusCode::OK);
        }
        assert_eq!(most.load(Ordering::SeqCst), 3, "three at once, never more");
    }

    #[tokio::test]
    async fn a_review_that_takes_too_long_is_answered_503_and_frees_its_turn() {
        let limits = Limits {
            concurrent: 1,
            review_time: Duration::from_millis(100),
            ..Limits::default()
        };
        let routes = limited(
            Router::new()
                .route(
                    "/slow",
                    post(|| async {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        "late"
                    }),
                )
                .route("/fast", post(|| async { "fast" })),
            limits,
        );
        let started = tokio::time::Instant::now();
        let slow = routes
            .clone()
            .oneshot(post_body("/slow", Vec::new()))
            .await
            .unwrap();
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(5));
        // A body that never ends is cut off the same way.
        let (_sender, body) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let trickle = Request::post("/fast").body(Body::from_stream(body)).unwrap();
        let routes_reading = limited(
            Router::new().route("/fast", post(|body: Bytes| async move { body.len().to_string() })),
            limits,
        );
        let cut = routes_reading.oneshot(trickle).await.unwrap();
        assert_eq!(cut.status(), StatusCode::SERVICE_UNAVAILABLE);
        // The turn the slow review held is free again.
        let fast = routes.oneshot(post_body("/fast", Vec::new())).await.unwrap();
        assert_eq!(fast.status(), StatusCode::OK);
    }
}
