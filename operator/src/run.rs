//! Wiring: the start-up check, the admin server, and high availability. Every replica runs a
//! tracker for the application `leadership-operator`; only the leader runs the controller, and a
//! standby takes over when the leader stops renewing (or at once when it shuts down).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, bail};
use axum::{Router, extract::State, response::IntoResponse, routing::get};
use leadership::{LeaseTracker, Ticket, Tracker, TrackerConfig, expiry::ExpiryPolicy};
use leadership_kube::{KubeStore, Scope};
use leadership_runtime::{admin, http::serve};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    config::{Args, CertSource},
    inject::SidecarTemplate,
    metrics::Metrics,
    reconcile::{Context, run_controller},
    webhook::{
        self,
        certs::CertPolicy,
        keeper::{Keeper, Source},
        tls::CurrentCert,
    },
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
    let stop = CancellationToken::new();
    // The webhook is served by every replica, from the start: leadership does not gate it.
    let webhook = match webhook_serving(&args, &client, &namespace, &metrics)? {
        Some(serving) => Some(
            webhook::start(serving, metrics.clone(), stop.clone())
                .await
                .context("bind the webhook address")?,
        ),
        None => None,
    };
    let ready = Readiness {
        started: Arc::new(AtomicBool::new(false)),
        webhook: webhook.as_ref().map(|w| w.current.clone()),
    };
    let admin = tokio::net::TcpListener::bind(args.admin_address)
        .await
        .with_context(|| format!("bind the admin address {}", args.admin_address))?;
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ready.clone());
    let admin_routes = admin::router(probes, {
        let metrics = metrics.clone();
        move || metrics.render()
    });
    let admin_task = tokio::spawn(serve(admin, admin_routes, stop.clone()));

    let store = KubeStore::new(client.clone(), Scope::Namespace(namespace.clone()));
    let tracker = LeaseTracker::start(
        store,
        TrackerConfig::new(OPERATOR_APPLICATION, &identity, args.claim_duration),
    )?;
    let ctx = Arc::new(
        Context::new(client, &identity, metrics.clone(), ExpiryPolicy::default())
            .with_handover_timeout(args.handover_timeout),
    );
    ready.started.store(true, Ordering::Release);
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
        ctx.observer.forget_all();
        if signalled {
            break;
        }
        warn!("no longer leading: the controller stopped; waiting to lead again");
    }
    info!("shutting down: releasing the operator's leadership");
    tracker.stop().await;
    stop.cancel();
    let _ = admin_task.await;
    for task in webhook.into_iter().flat_map(|w| w.tasks) {
        let _ = task.await;
    }
    Ok(())
}

/// Whether the replica is ready: started, and serving a webhook certificate if it serves the
/// webhook (so that a Service sends admission requests only to replicas that can answer them).
#[derive(Clone)]
struct Readiness {
    /// Set once the tracker and the controller's context exist.
    started: Arc<AtomicBool>,
    webhook: Option<Arc<CurrentCert>>,
}

/// How to serve the webhook, from the flags; `None` without `--webhook-address`.
fn webhook_serving(
    args: &Args,
    client: &kube::Client,
    namespace: &str,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<webhook::Serving>> {
    let flags = &args.webhook;
    let Some(address) = flags.webhook_address else {
        return Ok(None);
    };
    let path = flags
        .sidecar_template
        .as_ref()
        .context("--sidecar-template is needed with --webhook-address")?;
    let template = SidecarTemplate::load(path)?;
    let source = match flags.webhook_certs {
        CertSource::External => Source::External,
        CertSource::Managed => {
            if flags.webhook_ca_validity < flags.webhook_cert_validity * 3 {
                bail!("--webhook-ca-validity must be at least 3 times --webhook-cert-validity");
            }
            if flags.webhook_cert_validity < std::time::Duration::from_secs(10) {
                bail!("--webhook-cert-validity must be at least 10s");
            }
            let mut names: Vec<String> = flags
                .webhook_service
                .iter()
                .flat_map(|service| webhook::service_names(service, namespace))
                .collect();
            names.extend(flags.webhook_hosts.iter().filter(|h| !h.is_empty()).cloned());
            if names.is_empty() {
                bail!(
                    "--webhook-service or --webhook-hosts must name the webhook's address for its certificate"
                );
            }
            Source::Managed {
                policy: CertPolicy {
                    ca_validity: flags.webhook_ca_validity,
                    cert_validity: flags.webhook_cert_validity,
                    names,
                },
                configuration: flags.webhook_configuration.clone().filter(|n| !n.is_empty()),
                ca_secret: flags
                    .webhook_ca_secret
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| format!("{}-ca", flags.webhook_secret)),
            }
        }
    };
    info!(template = %path.display(), image = template.image(), "sidecar template loaded");
    Ok(Some(webhook::Serving {
        address,
        template,
        keeper: Keeper {
            client: client.clone(),
            namespace: namespace.to_owned(),
            secret: flags.webhook_secret.clone(),
            source,
            current: Arc::new(CurrentCert::default()),
            metrics: metrics.clone(),
        },
    }))
}

async fn readyz(State(ready): State<Readiness>) -> impl IntoResponse {
    if !ready.started.load(Ordering::Acquire) {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting")
    } else if ready.webhook.as_ref().is_some_and(|w| !w.is_loaded()) {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no webhook certificate yet",
        )
    } else {
        (axum::http::StatusCode::OK, "ready")
    }
}
