//! What this store knows of each application's object: the newest copy (from its watch, reads and
//! its own writes' replies; an older resourceVersion never replaces a newer one), its expiry
//! observation, the guarantees of its own claims, and the watch that keeps it current.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use futures::StreamExt;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use leadership::{Error, LeaseFeed, LeaseView, Result, Watcher, expiry::Observation, validate};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{
    ExpiryAuthority, KubeStore, StoreConfig,
    errors::{clone_api_error, from_kube},
};
use crate::crd::LeadershipLease;

/// What this store knows of one application's lease.
pub(super) struct App {
    state: Mutex<Known>,
    feed: watch::Sender<LeaseView>,
    watching: watch::Sender<WatchState>,
}

/// How an application's watch is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum WatchState {
    /// Not listed yet.
    Starting,
    /// Listed, and following changes.
    Synced,
    /// The last attempt failed (it is retried with a backoff).
    Failing {
        /// Whether the API server refused for lack of permission.
        forbidden: bool,
        /// What went wrong, as the user should read it.
        reason: String,
    },
}

impl WatchState {
    fn failing(err: &watcher::Error) -> WatchState {
        let mapped = match err {
            watcher::Error::InitialListFailed(e)
            | watcher::Error::WatchStartFailed(e)
            | watcher::Error::WatchFailed(e) => from_kube("watch leadershipleases", clone_api_error(e)),
            other => Error::unavailable(format!("watch leadershipleases: {other}")),
        };
        let (forbidden, reason) = match mapped {
            Error::Forbidden { context } => (true, context),
            Error::Unavailable {
                context,
                source: None,
            } => (false, context),
            Error::Unavailable {
                context,
                source: Some(source),
            } => (false, format!("{context}: {source}")),
            other => (false, other.to_string()),
        };
        WatchState::Failing { forbidden, reason }
    }
}

#[derive(Default)]
pub(super) struct Known {
    pub(super) object: Option<LeadershipLease>,
    pub(super) seen: Observation,
    /// Claims this store made: unit -> (term, end of its guarantee).
    pub(super) own: HashMap<String, (u64, Instant)>,
    pub(super) watching: bool,
}

impl App {
    pub(super) fn new() -> Self {
        App {
            state: Mutex::default(),
            feed: watch::Sender::new(LeaseView::default()),
            watching: watch::Sender::new(WatchState::Starting),
        }
    }

    pub(super) fn known(&self) -> MutexGuard<'_, Known> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a newer view of the object (older ones, by resourceVersion, are ignored) and
    /// publishes it.
    pub(super) fn learn(&self, object: Option<LeadershipLease>, config: &StoreConfig) {
        let now = Instant::now();
        let mut known = self.known();
        if let (Some(new), Some(old)) = (&object, &known.object)
            && let (Some(new_rv), Some(old_rv)) = (new.version(), old.version())
            && new_rv < old_rv
        {
            return;
        }
        let lease = object.as_ref().map(LeadershipLease::to_lease).unwrap_or_default();
        known.seen.observe(&lease, now);
        let stand_aside = object
            .as_ref()
            .map(LeadershipLease::stand_aside)
            .unwrap_or_default();
        known.object = object;
        let mut view = LeaseView::of(&lease, &known.seen, &config.expiry);
        view.stand_aside = stand_aside;
        if config.expiry_authority == ExpiryAuthority::Operator {
            // The claim stands until the operator clears it: nobody here waits for its end.
            view.expires_at = None;
        }
        drop(known);
        self.feed.send_if_modified(|current| {
            let changed = *current != view;
            *current = view;
            changed
        });
    }
}

impl KubeStore {
    /// The application's cache, with its watch running.
    pub(super) fn app(&self, application: &str) -> Result<Arc<App>> {
        let api = self.api()?;
        let mut apps = self.inner.apps.lock().unwrap_or_else(|p| p.into_inner());
        let app = apps
            .entry(application.to_owned())
            .or_insert_with(|| Arc::new(App::new()))
            .clone();
        drop(apps);
        let start = {
            let mut known = app.known();
            !std::mem::replace(&mut known.watching, true)
        };
        if start {
            tokio::spawn(watch_app(
                api,
                application.to_owned(),
                app.clone(),
                self.inner.config,
                self.inner.stop.clone(),
            ));
        }
        Ok(app)
    }

    /// The object: unless `fresh`, this store's copy, or its absence once the watch has listed
    /// and follows (a write decided on a stale copy loses its compare-and-swap or its create, and
    /// the caller reads fresh); otherwise a read.
    pub(super) async fn current(
        &self,
        app: &App,
        application: &str,
        fresh: bool,
    ) -> Result<Option<LeadershipLease>> {
        if !fresh {
            let known = app.known().object.clone();
            if known.is_some() || *app.watching.borrow() == WatchState::Synced {
                return Ok(known);
            }
        }
        let object = self
            .api()?
            .get_opt(application)
            .await
            .map_err(|e| from_kube(&format!("read leadershiplease {application}"), e))?;
        app.learn(object.clone(), &self.inner.config);
        Ok(object)
    }
}

/// Keeps one application's view current from a watch on its object.
async fn watch_app(
    api: Api<LeadershipLease>,
    application: String,
    app: Arc<App>,
    store: StoreConfig,
    stop: CancellationToken,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={application}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut listed: Option<LeadershipLease> = None;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            Some(Ok(watcher::Event::Apply(object))) => app.learn(Some(object), &store),
            Some(Ok(watcher::Event::Delete(_))) => app.learn(None, &store),
            Some(Ok(watcher::Event::Init)) => listed = None,
            Some(Ok(watcher::Event::InitApply(object))) => listed = Some(object),
            Some(Ok(watcher::Event::InitDone)) => {
                app.learn(listed.take(), &store);
                app.watching.send_replace(WatchState::Synced);
            }
            Some(Err(err)) => {
                let state = WatchState::failing(&err);
                if let WatchState::Failing { reason, .. } = &state {
                    warn!(application = %application, error = %reason, "lease watch failed; retrying");
                }
                app.watching.send_replace(state);
            }
            None => return,
        }
    }
}

impl Watcher for KubeStore {
    async fn watch(&self, application: &str) -> Result<LeaseFeed> {
        validate::application_name(application)?;
        let app = self.app(application)?;
        let mut watching = app.watching.subscribe();
        let state = watching
            .wait_for(|state| *state != WatchState::Starting)
            .await
            .map_err(|_| Error::unavailable("the lease watch stopped"))?
            .clone();
        match state {
            WatchState::Synced | WatchState::Starting => Ok(LeaseFeed::new(app.feed.subscribe())),
            WatchState::Failing {
                forbidden: true,
                reason,
            } => Err(Error::Forbidden { context: reason }),
            WatchState::Failing { reason, .. } => Err(Error::unavailable(reason)),
        }
    }
}
