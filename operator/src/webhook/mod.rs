//! The mutating admission webhook that injects the sidecar, served over HTTPS by every replica
//! (the operator's own leadership does not gate it).
//!
//! - [`certs`]: the self-managed CA and serving certificate (pure);
//! - [`keeper`]: keeps them in a Secret, rotates them, and keeps the `caBundle`;
//! - [`tls`]: HTTPS with a certificate swapped on renewal.
//!
//! `POST /inject` takes an `AdmissionReview` of a Pod and answers with the patch from
//! [`crate::inject::inject`], or a refusal naming the annotation at fault.

pub mod certs;
pub mod keeper;
pub mod tls;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    ResourceExt,
    core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    inject::{self, InjectError, Injection, SidecarTemplate, patch::respond},
    metrics::{Metrics, OutcomeLabel},
};

/// The webhook's path.
pub const PATH: &str = "/inject";
/// The largest AdmissionReview accepted (the API server's own request limit is 3 MiB).
const MAX_REVIEW: usize = 4 * 1024 * 1024;

/// What the handler needs.
pub struct Webhook {
    /// The sidecar to inject.
    pub template: SidecarTemplate,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
}

/// The webhook's routes.
pub fn router(webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route(PATH, post(admit))
        .layer(DefaultBodyLimit::max(MAX_REVIEW))
        .with_state(webhook)
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
