//! Wires the sidecar: configuration, the Kubernetes store, the tracker, both listeners, and a
//! graceful shutdown that releases the lease (SPEC T8).

use std::{os::unix::fs::PermissionsExt, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use leadership::{
    LeaseTracker, TrackerConfig,
    tracker::timing::{Configured, check_configured},
    validate,
};
use leadership_kube::{KubeStore, Scope, StoreConfig};
use leadership_runtime::{
    admin,
    http::{serve, serve_on_own_thread},
};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    api::{self, Sidecar, Store},
    config::RunArgs,
    counted::Counted,
    hooks::{self, Hooks},
    metrics::Metrics,
    record::Recorder,
};

/// Runs the sidecar until SIGTERM or SIGINT, then releases the lease and removes the socket.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let application = args
        .application
        .clone()
        .context("--application (or LEADERSHIP_APPLICATION) is required")?;
    validate::application_name(&application)?;
    let unit = args
        .unit
        .clone()
        .context("--unit (or POD_NAME, from the downward API) is required")?;
    validate::unit_name(&unit)?;
    let lease_length = check_configured(args.claim_duration, args.lease_length).map_err(|err| {
        let flag = match err.configured() {
            Configured::ClaimDuration => "--claim-duration",
            Configured::LeaseLength => "--lease-length",
        };
        anyhow::anyhow!("{flag} {err}")
    })?;
    let config = TrackerConfig::new(&application, &unit, args.claim_duration).with_lease_length(lease_length);
    let (client, namespace) = leadership_kube::connect(args.namespace.clone()).await?;
    let store_config = StoreConfig {
        expiry_authority: args.expiry_authority,
        ..StoreConfig::default()
    };
    let store = KubeStore::with_config(client, Scope::Namespace(namespace.clone()), store_config);
    if let Err(err) = store.check_installed().await {
        // Not fatal: a crash loop would help nobody. The sidecar stays unready and keeps trying.
        error!(error = %err, "cannot read LeadershipLeases; not ready until this is fixed");
    }
    let timing = config.timing;
    let metrics = Arc::new(Metrics::for_unit(&application, &unit));
    let store = Counted::new(store, metrics.clone());
    let tracker = LeaseTracker::start(store.clone(), config)?;
    let sidecar = Sidecar::new(namespace.clone(), tracker, store, metrics);
    info!(%application, %unit, %namespace, socket = %args.socket.display(), claim_duration = ?timing.claim_duration, lease_length = ?timing.lease_length, expiry_authority = %args.expiry_authority, renew_every = ?timing.renewal_interval(), "sidecar starting");
    serve_until_signalled(sidecar, &args).await
}

/// Binds the socket: removes a stale file, creates the folder, and sets mode 0660.
fn bind_socket(path: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => info!(socket = %path.display(), "removed a stale socket"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("remove the stale socket {}", path.display())),
    }
    let listener =
        std::os::unix::net::UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("set the mode of {}", path.display()))?;
    Ok(listener)
}

/// Serves both listeners and follows the tracker until a signal; then shuts down in order.
pub async fn serve_until_signalled<S: Store>(sidecar: Sidecar<S>, args: &RunArgs) -> anyhow::Result<()> {
    let socket = bind_socket(&args.socket)?;
    let admin = TcpListener::bind(args.admin_address)
        .await
        .with_context(|| format!("bind the admin address {}", args.admin_address))?;
    let stop = CancellationToken::new();
    let tracker_stopped = CancellationToken::new();
    let recorder = match &args.record {
        Some(path) => {
            let recorder = Recorder::open(path, sidecar.tracker().unit())?;
            Some(tokio::spawn(
                recorder.follow(sidecar.tracker().transitions(), tracker_stopped.clone()),
            ))
        }
        None => None,
    };
    let hooks = (args.on_elected.is_some() || args.on_deposed.is_some()).then(|| {
        let hooks = Hooks {
            on_elected: args.on_elected.clone(),
            on_deposed: args.on_deposed.clone(),
            timeout: args.hook_timeout,
        };
        tokio::spawn(hooks::follow(
            hooks,
            sidecar.clone(),
            sidecar.tracker().transitions(),
            tracker_stopped.clone(),
        ))
    });
    let mut tasks = tokio::task::JoinSet::new();
    // The app's requests are served apart from the tracker: a busy app cannot delay a renewal.
    tasks.spawn(serve_on_own_thread(
        "socket",
        socket,
        api::router(sidecar.clone()),
        stop.clone(),
    )?);
    let metrics = sidecar.clone();
    let admin_routes = admin::router(api::probes().with_state(sidecar.clone()), move || {
        metrics.metrics().render()
    });
    tasks.spawn(serve(admin, admin_routes, stop.clone()));
    tasks.spawn(follow(sidecar.clone(), stop.clone()));
    tasks.spawn(adopt_standing_declaration(sidecar.clone(), stop.clone()));

    let mut terminate = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let which = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    info!(signal = which, "shutting down: releasing leadership");
    sidecar.tracker().stop().await;
    // The record and the hooks see the last change (the deposition) before the sidecar exits.
    tracker_stopped.cancel();
    for task in [recorder, hooks].into_iter().flatten() {
        let _ = task.await;
    }
    stop.cancel();
    tasks.shutdown().await;
    let _ = std::fs::remove_file(&args.socket);
    info!("stopped");
    Ok(())
}

/// Adopts the app's "not me" that the lease keeps from before a sidecar restart, so that the
/// status reports what the lease says; retries every second until the lease can be read.
async fn adopt_standing_declaration<S: Store>(sidecar: Sidecar<S>, stop: CancellationToken) {
    loop {
        match sidecar.adopt_standing_declaration().await {
            Ok(()) => return,
            Err(err) => {
                warn!(error = %err, "cannot read this unit's standing eligibility declaration; retrying")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Logs every change of leadership and keeps the gauges current.
async fn follow<S: Store>(sidecar: Sidecar<S>, stop: CancellationToken) {
    let mut changes = sidecar.tracker().subscribe();
    let mut was_leader = false;
    loop {
        let state = changes.borrow_and_update().clone();
        let leader = state.is_leader(Instant::now());
        let metrics = sidecar.metrics();
        metrics.term.set(i64::try_from(state.term).unwrap_or(i64::MAX));
        metrics.leader.set(i64::from(leader));
        if leader != was_leader {
            if leader {
                metrics.elected.inc();
                info!(term = state.term, "this unit is now leader");
            } else {
                metrics.deposed.inc();
                info!(term = state.term, holder = ?state.lease.holder, "this unit is no longer leader");
            }
            was_leader = leader;
        }
        let deadline = state.guarantee.map(|g| g.leader_until()).filter(|_| leader);
        tokio::select! {
            () = stop.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            () = async { match deadline { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {}
        }
    }
}
