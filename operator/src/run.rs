//! Wiring: the start-up check, the admin server, and high availability. Every replica runs a
//! tracker for the application `leadership-operator`; only the leader runs the controller, and a
//! standby takes over when the leader stops renewing (or at once when it shuts down).

use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use leadership::{LeaseTracker, Ticket, Tracker, TrackerConfig, expiry::ExpiryPolicy};
use leadership_kube::{KubeStore, Scope};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    config::Args,
    metrics::Metrics,
    reconcile::{Context, run_controller},
};

/// The application name of the operator's own leadership.
pub const OPERATOR_APPLICATION: &str = "leadership-operator";

fn identity(args: &Args) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "operator".into());
        format!("{}-{}", host.trim().to_lowercase(), std::process::id())
    })
}

/// Runs the operator until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let (client, namespace) = leadership_kube::connect(args.namespace.clone()).await?;
    let identity = identity(&args);
    leadership::validate::unit_name(&identity).context("--identity (or POD_NAME)")?;

    let scope = match &args.watch_namespace {
        Some(ns) => Scope::Namespace(ns.clone()),
        None => Scope::All,
    };
    if let Err(err) = KubeStore::new(client.clone(), scope).check_installed().await {
        bail!(
            "{err}\nInstall the CRD first: `helm install leadership charts/leadership` or `kubectl apply -f crds/leadershiplease.yaml`"
        );
    }

    let metrics = Arc::new(Metrics::default());
    let ready = CancellationToken::new();
    let admin = tokio::net::TcpListener::bind(args.admin_address)
        .await
        .with_context(|| format!("bind the admin address {}", args.admin_address))?;
    let admin_routes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state((metrics.clone(), ready.clone()));
    let stop = CancellationToken::new();
    let admin_stop = stop.clone();
    let admin_task = tokio::spawn(async move {
        let served = axum::serve(admin, admin_routes)
            .with_graceful_shutdown(async move { admin_stop.cancelled().await });
        if let Err(err) = served.await {
            warn!(error = %err, "the admin server stopped");
        }
    });

    let store = KubeStore::new(client.clone(), Scope::Namespace(namespace.clone()));
    let tracker = LeaseTracker::start(
        store,
        TrackerConfig::new(OPERATOR_APPLICATION, &identity, args.claim_duration),
    )?;
    let ctx = Arc::new(
        Context::new(client, &identity, metrics.clone(), ExpiryPolicy::default())
            .with_handover_timeout(args.handover_timeout),
    );
    ready.cancel();
    info!(%identity, %namespace, watch = ?args.watch_namespace, "operator started; waiting to lead");

    let mut terminate = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    loop {
        let leads = tracker.wait_leader();
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            leads = leads.wait() => {
                if !leads {
                    bail!("the operator's own leadership tracker stopped");
                }
            }
        }
        info!(term = tracker.status().term, "leading: starting the controller");
        metrics.active.set(1);
        let deposed = CancellationToken::new();
        let controller = tokio::spawn({
            let (ctx, scope, deposed) = (ctx.clone(), args.watch_namespace.clone(), deposed.clone());
            async move { run_controller(ctx, scope.as_deref(), deposed).await }
        });
        let deposed_ticket = tracker.wait_minion();
        let signalled = tokio::select! {
            _ = terminate.recv() => true,
            _ = interrupt.recv() => true,
            _ = deposed_ticket.wait() => false,
        };
        deposed.cancel();
        let _ = controller.await;
        metrics.active.set(0);
        if signalled {
            break;
        }
        warn!("no longer leading: the controller stopped; waiting to lead again");
    }
    info!("shutting down: releasing the operator's leadership");
    tracker.stop().await;
    stop.cancel();
    let _ = admin_task.await;
    Ok(())
}

async fn readyz(State((_, ready)): State<(Arc<Metrics>, CancellationToken)>) -> impl IntoResponse {
    if ready.is_cancelled() {
        (axum::http::StatusCode::OK, "ready")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn render_metrics(State((metrics, _)): State<(Arc<Metrics>, CancellationToken)>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}
