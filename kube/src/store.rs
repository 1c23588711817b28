//! The Kubernetes store: Claimer, Checker, Pinner, Reader, Revoker and Watcher on LeadershipLease
//! objects.
//!
//! - Every write is a compare-and-swap on the `resourceVersion` this store last saw; a conflict
//!   means someone else wrote first: re-read, decide again. Never a blind write.
//! - Expiry is judged by observation on this process's monotonic clock: a claim is run out only
//!   after this store has seen the same (term, renewals) unchanged for its length plus a margin.
//!   Timestamps written by other machines are for display and never decide anything.
//! - A watch per application keeps the view current, so waiting is woken by changes, not polling.
//! - A token vouches only for claims made through this store: only the claimant knows when its
//!   claim was sent, so only it knows when the guarantee ends. A pending revocation or handover
//!   ends it at once: through this store's own write, or as soon as its watch shows one written
//!   elsewhere (a token check reads no object; it answers from this store's view).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use leadership::{
    Checker, Claimer, Error, Grant, LeaseFeed, LeaseView, Pinner, Reader, Result, Revoker, Token, Watcher,
    expiry::{ExpiryPolicy, Observation},
    validate::{self, DurationLimits},
};
use tokio::{
    sync::watch,
    time::{Instant, sleep},
};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, warn};

use crate::crd::{self, HandoverRequest, LeadershipLease, LeadershipLeaseSpec, Pin, Revocation};

/// How many times a write is tried again after a conflict before giving up as "unknown".
const MAX_ATTEMPTS: u32 = 8;
/// How many attempts a transient failure gets (with 50, 100 ms pauses) before it is returned.
const TRANSIENT_ATTEMPTS: u32 = 3;

/// Where a store looks for leases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One namespace.
    Namespace(String),
    /// Every namespace (reads only; writes need a namespace).
    All,
}

/// Settings of a [`KubeStore`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoreConfig {
    /// The accepted claim durations.
    pub limits: DurationLimits,
    /// The margin over a claim's length before this store treats it as run out.
    pub expiry: ExpiryPolicy,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            limits: DurationLimits {
                min: Duration::from_secs(2),
                max: Duration::from_secs(600),
            },
            expiry: ExpiryPolicy::default(),
        }
    }
}

/// The leadership interfaces on LeadershipLease objects; clones share one view and one set of
/// watches, which stop when the last clone is dropped.
#[derive(Clone)]
pub struct KubeStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    scope: Scope,
    config: StoreConfig,
    apps: Mutex<HashMap<String, Arc<App>>>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

/// What this store knows of one application's lease.
struct App {
    state: Mutex<Known>,
    feed: watch::Sender<LeaseView>,
    watching: watch::Sender<WatchState>,
}

/// How an application's watch is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
enum WatchState {
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

/// A copy of an API error's status (other errors become their message with every cause, such as
/// "Connection refused"), for mapping.
fn clone_api_error(err: &kube::Error) -> kube::Error {
    match err {
        kube::Error::Api(status) => kube::Error::Api(status.clone()),
        other => {
            let mut text = other.to_string();
            let mut cause = std::error::Error::source(other);
            while let Some(inner) = cause {
                text = format!("{text}: {inner}");
                cause = inner.source();
            }
            kube::Error::Service(text.into())
        }
    }
}

#[derive(Default)]
struct Known {
    object: Option<LeadershipLease>,
    seen: Observation,
    /// Claims this store made: unit -> (term, end of its guarantee).
    own: HashMap<String, (u64, Instant)>,
    watching: bool,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

fn resource_version(object: &LeadershipLease) -> Option<u64> {
    object
        .metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
}

/// Maps a Kubernetes error to the leadership error that says what the caller may infer.
fn from_kube(action: &str, err: kube::Error) -> Error {
    match &err {
        kube::Error::Api(status) if status.code == 403 => Error::Forbidden {
            context: format!("{action}: {}", status.message),
        },
        // A missing resource in a known group, or a group the server does not serve at all.
        kube::Error::Api(status)
            if status.code == 404
                && (status
                    .message
                    .contains("the server could not find the requested resource")
                    || status.message.contains("page not found")) =>
        {
            Error::Unavailable {
                context: format!(
                    "{action}: the LeadershipLease CRD is not installed (kubectl apply -f crds/leadershiplease.yaml, or install the chart)"
                ),
                source: None,
            }
        }
        kube::Error::Api(status) if status.code == 422 => {
            Error::invalid("leadershiplease", format!("{action}: {}", status.message))
        }
        _ => Error::Unavailable {
            context: action.to_owned(),
            source: Some(Box::new(err)),
        },
    }
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

impl App {
    fn new() -> Self {
        App {
            state: Mutex::default(),
            feed: watch::Sender::new(LeaseView::default()),
            watching: watch::Sender::new(WatchState::Starting),
        }
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a newer view of the object (older ones, by resourceVersion, are ignored) and
    /// publishes it.
    fn learn(&self, object: Option<LeadershipLease>, policy: &ExpiryPolicy) {
        let now = Instant::now();
        let mut known = self.known();
        if let (Some(new), Some(old)) = (&object, &known.object)
            && let (Some(new_rv), Some(old_rv)) = (resource_version(new), resource_version(old))
            && new_rv < old_rv
        {
            return;
        }
        let lease = object.as_ref().map(LeadershipLease::to_lease).unwrap_or_default();
        known.seen.observe(&lease, now);
        known.object = object;
        let view = LeaseView::of(&lease, &known.seen, policy);
        drop(known);
        self.feed.send_if_modified(|current| {
            let changed = *current != view;
            *current = view;
            changed
        });
    }
}

impl KubeStore {
    /// A store over `scope` with the default settings.
    pub fn new(client: Client, scope: Scope) -> Self {
        Self::with_config(client, scope, StoreConfig::default())
    }

    /// A store over `scope` with explicit settings.
    pub fn with_config(client: Client, scope: Scope, config: StoreConfig) -> Self {
        let stop = CancellationToken::new();
        KubeStore {
            inner: Arc::new(Inner {
                client,
                scope,
                config,
                apps: Mutex::default(),
                _stop_on_drop: stop.clone().drop_guard(),
                stop,
            }),
        }
    }

    /// Checks that the CRD is installed and listable, with an install hint if it is not.
    pub async fn check_installed(&self) -> Result<()> {
        self.list_api()
            .list(&ListParams::default().limit(1))
            .await
            .map(drop)
            .map_err(|e| from_kube("list leadershipleases", e))
    }

    fn namespace(&self) -> Result<&str> {
        match &self.inner.scope {
            Scope::Namespace(ns) => Ok(ns),
            Scope::All => Err(Error::invalid(
                "namespace",
                "writes need a namespace; this store reads all namespaces",
            )),
        }
    }

    fn api(&self) -> Result<Api<LeadershipLease>> {
        Ok(Api::namespaced(self.inner.client.clone(), self.namespace()?))
    }

    fn list_api(&self) -> Api<LeadershipLease> {
        match &self.inner.scope {
            Scope::Namespace(ns) => Api::namespaced(self.inner.client.clone(), ns),
            Scope::All => Api::all(self.inner.client.clone()),
        }
    }

    /// The application's cache, with its watch running.
    fn app(&self, application: &str) -> Result<Arc<App>> {
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
                self.inner.config.expiry,
                self.inner.stop.clone(),
            ));
        }
        Ok(app)
    }

    /// The freshest object: this store's copy, or a read if it has none.
    async fn current(&self, app: &App, application: &str, fresh: bool) -> Result<Option<LeadershipLease>> {
        if !fresh && let Some(object) = app.known().object.clone() {
            return Ok(Some(object));
        }
        let object = self
            .api()?
            .get_opt(application)
            .await
            .map_err(|e| from_kube(&format!("read leadershiplease {application}"), e))?;
        app.learn(object.clone(), &self.inner.config.expiry);
        Ok(object)
    }

    async fn create(&self, app: &App, application: &str, spec: LeadershipLeaseSpec) -> Result<()> {
        let mut object = LeadershipLease::empty(self.namespace()?, application);
        object.spec = spec;
        match self.api()?.create(&PostParams::default(), &object).await {
            Ok(created) => {
                app.learn(Some(created), &self.inner.config.expiry);
                Ok(())
            }
            Err(err) if is_conflict(&err) => Ok(()),
            Err(err) => Err(from_kube(&format!("create leadershiplease {application}"), err)),
        }
    }

    /// Writes `object`'s status with a compare-and-swap on its resourceVersion. `Ok(None)` is a
    /// lost race: read again and decide again.
    async fn write_status(&self, app: &App, object: &LeadershipLease) -> Result<Option<LeadershipLease>> {
        let name = object.metadata.name.clone().unwrap_or_default();
        match self
            .api()?
            .replace_status(&name, &PostParams::default(), object)
            .await
        {
            Ok(written) => {
                app.learn(Some(written.clone()), &self.inner.config.expiry);
                Ok(Some(written))
            }
            Err(err) if is_conflict(&err) || is_not_found(&err) => Ok(None),
            Err(err) => Err(from_kube(
                &format!("write the claim on leadershiplease {name}"),
                err,
            )),
        }
    }

    /// Writes `object`'s spec with a compare-and-swap; `Ok(None)` is a lost race.
    async fn write_spec(&self, app: &App, object: &LeadershipLease) -> Result<Option<LeadershipLease>> {
        let name = object.metadata.name.clone().unwrap_or_default();
        match self.api()?.replace(&name, &PostParams::default(), object).await {
            Ok(written) => {
                app.learn(Some(written.clone()), &self.inner.config.expiry);
                Ok(Some(written))
            }
            Err(err) if is_conflict(&err) || is_not_found(&err) => Ok(None),
            Err(err) => Err(from_kube(&format!("write leadershiplease {name}"), err)),
        }
    }

    /// Runs `step` until it does not lose a race: each attempt reads (fresh after the first),
    /// decides, and writes with a compare-and-swap. A refusal decided on this store's cached copy
    /// is confirmed on a fresh read first, so a lagging watch never causes a wrong refusal.
    async fn retry<T, F, Fut>(&self, action: &str, mut step: F) -> Result<T>
    where
        F: FnMut(bool) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        for attempt in 0..MAX_ATTEMPTS {
            let fresh = attempt > 0;
            match step(fresh).await {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {
                    debug!(action, attempt, "lost a write race; reading again");
                    sleep(Duration::from_millis(5 << attempt.min(5))).await;
                }
                Err(Error::ClaimDenied | Error::ClaimNotHeld) if !fresh => {}
                // A transient failure (the API server restarting, a dropped connection): try
                // again, a few times, on a fresh read. A write that landed before its reply was
                // lost makes the retry's compare-and-swap fail, and the fresh read shows it.
                Err(err @ Error::Unavailable { .. }) if attempt + 1 < TRANSIENT_ATTEMPTS => {
                    debug!(action, attempt, error = %err, "transient failure; trying again");
                    sleep(Duration::from_millis(50 << attempt)).await;
                }
                Err(err) => return Err(err),
            }
        }
        Err(Error::unavailable(format!(
            "{action}: gave up after {MAX_ATTEMPTS} conflicting writes"
        )))
    }

    fn check_duration(&self, object: Option<&LeadershipLease>, duration: Duration) -> Result<()> {
        let mut limits = self.inner.config.limits;
        if let Some(policy) = object.and_then(|o| o.spec.policy.as_ref()) {
            let ms = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).map(Duration::from_millis);
            limits.min = ms(policy.min_duration_ms).unwrap_or(limits.min);
            limits.max = ms(policy.max_duration_ms).unwrap_or(limits.max);
        }
        limits.check(duration)
    }
}

/// Keeps one application's view current from a watch on its object.
async fn watch_app(
    api: Api<LeadershipLease>,
    application: String,
    app: Arc<App>,
    policy: ExpiryPolicy,
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
            Some(Ok(watcher::Event::Apply(object))) => app.learn(Some(object), &policy),
            Some(Ok(watcher::Event::Delete(_))) => app.learn(None, &policy),
            Some(Ok(watcher::Event::Init)) => listed = None,
            Some(Ok(watcher::Event::InitApply(object))) => listed = Some(object),
            Some(Ok(watcher::Event::InitDone)) => {
                app.learn(listed.take(), &policy);
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

impl Claimer for KubeStore {
    async fn claim_leadership(&self, application: &str, unit: &str, duration: Duration) -> Result<Grant> {
        validate::application_name(application)?;
        validate::unit_name(unit)?;
        self.inner.config.limits.check(duration)?;
        let called = Instant::now();
        let app = self.app(application)?;
        self.retry("claim leadership", |fresh| {
            let app = app.clone();
            async move {
                let Some(mut object) = self.current(&app, application, fresh).await? else {
                    self.create(&app, application, LeadershipLeaseSpec::default())
                        .await?;
                    return Ok(None);
                };
                self.check_duration(Some(&object), duration)?;
                let now = Instant::now();
                let (lease, expired) = {
                    let known = app.known();
                    let lease = object.to_lease();
                    let expired = known.seen.is_expired(&lease, &self.inner.config.expiry, now);
                    (lease, expired)
                };
                let (next, outcome) = lease.claim(unit, duration, expired)?;
                object.status = Some(object.status_for(&next, crd::claim_reason(outcome), Timestamp::now()));
                let Some(_) = self.write_status(&app, &object).await? else {
                    return Ok(None);
                };
                app.known()
                    .own
                    .insert(unit.to_owned(), (next.term, called + duration));
                Ok(Some(Grant { term: next.term }))
            }
        })
        .await
    }

    async fn block_until_leadership_released(
        &self,
        application: &str,
        cancel: &CancellationToken,
    ) -> Result<()> {
        validate::application_name(application)?;
        leadership::api::block_until_released(self, application, cancel).await
    }

    async fn release_leadership(&self, application: &str, unit: &str) -> Result<()> {
        validate::application_name(application)?;
        validate::unit_name(unit)?;
        let app = self.app(application)?;
        app.known().own.remove(unit);
        self.retry("release leadership", |fresh| {
            let app = app.clone();
            async move {
                let Some(mut object) = self.current(&app, application, fresh).await? else {
                    return Err(Error::ClaimNotHeld);
                };
                let next = object.to_lease().release(unit)?;
                object.status = Some(object.status_for(&next, "Released", Timestamp::now()));
                Ok(self.write_status(&app, &object).await?.map(drop))
            }
        })
        .await
    }
}

/// A leadership check against a [`KubeStore`], for claims made through it.
#[derive(Clone, Debug)]
pub struct KubeToken {
    store: KubeStore,
    application: String,
    unit: String,
}

impl Token for KubeToken {
    async fn check(&self) -> Result<u64> {
        validate::application_name(&self.application)?;
        validate::unit_name(&self.unit)?;
        let app = self.store.app(&self.application)?;
        let known = app.known();
        let vouched = known
            .object
            .as_ref()
            .and_then(|object| object.to_lease().vouches_for(&self.unit));
        match known.own.get(&self.unit) {
            Some(&(term, until)) if Instant::now() < until && vouched == Some(term) => Ok(term),
            _ => Err(Error::not_leader(&self.application, &self.unit)),
        }
    }
}

impl Checker for KubeStore {
    type Token = KubeToken;

    fn leadership_check(&self, application: &str, unit: &str) -> KubeToken {
        KubeToken {
            store: self.clone(),
            application: application.to_owned(),
            unit: unit.to_owned(),
        }
    }
}

impl KubeStore {
    /// Asks the holder of `application` to hand over to `to` (any other unit when `None`): writes
    /// `spec.handover` with a compare-and-swap. The holder steps down when it sees it, and until
    /// the next grant only the target may claim; the operator ends or abandons the request.
    /// Returns the unit handing over and its term.
    pub async fn hand_over(&self, application: &str, to: Option<&str>) -> Result<(String, u64)> {
        validate::application_name(application)?;
        if let Some(to) = to {
            validate::unit_name(to)?;
        }
        let handed = std::sync::Mutex::new(None);
        self.update_spec(application, "hand over leadership", |object| {
            let lease = object.to_lease();
            lease.hand_over(to)?;
            let from = lease.holder_unit().unwrap_or_default().to_owned();
            object.spec.handover = Some(HandoverRequest {
                from: from.clone(),
                term: i64::try_from(lease.term).unwrap_or(i64::MAX),
                to: to.map(str::to_owned),
                requested_at: Some(now_time()),
            });
            *handed.lock().unwrap_or_else(|p| p.into_inner()) = Some((from, lease.term));
            Ok(true)
        })
        .await?;
        handed
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .ok_or(Error::ClaimNotHeld)
    }
}

impl KubeStore {
    /// Changes the spec with `change` (which returns false for "nothing to do"), creating the
    /// object if needed.
    async fn update_spec(
        &self,
        application: &str,
        action: &str,
        change: impl Fn(&mut LeadershipLease) -> Result<bool>,
    ) -> Result<()> {
        let app = self.app(application)?;
        let change = &change;
        self.retry(action, |fresh| {
            let app = app.clone();
            async move {
                let Some(mut object) = self.current(&app, application, fresh).await? else {
                    let mut empty = LeadershipLease::empty(self.namespace()?, application);
                    if !change(&mut empty)? {
                        return Ok(Some(()));
                    }
                    self.create(&app, application, empty.spec).await?;
                    return Ok(None);
                };
                if !change(&mut object)? {
                    return Ok(Some(()));
                }
                Ok(self.write_spec(&app, &object).await?.map(drop))
            }
        })
        .await
    }
}

fn now_time() -> Time {
    Time(Timestamp::now())
}

impl Pinner for KubeStore {
    async fn pin_leadership(&self, application: &str, entity: &str) -> Result<()> {
        validate::application_name(application)?;
        validate::entity_name(entity)?;
        self.update_spec(application, "pin leadership", |object| {
            if object.spec.pins.contains_key(entity) {
                return Ok(false);
            }
            object
                .spec
                .pins
                .insert(entity.to_owned(), Pin { since: now_time() });
            Ok(true)
        })
        .await
    }

    async fn unpin_leadership(&self, application: &str, entity: &str) -> Result<()> {
        validate::application_name(application)?;
        validate::entity_name(entity)?;
        self.update_spec(application, "unpin leadership", |object| {
            Ok(object.spec.pins.remove(entity).is_some())
        })
        .await
    }

    async fn pinned_leadership(&self) -> Result<BTreeMap<String, Vec<String>>> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|object| !object.spec.pins.is_empty())
            .map(|object| (self.key(&object), object.spec.pins.into_keys().collect()))
            .collect())
    }
}

impl Reader for KubeStore {
    async fn leaders(&self) -> Result<BTreeMap<String, String>> {
        let objects = self.list().await?;
        let now = Instant::now();
        let apps = self.inner.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(objects
            .into_iter()
            .filter_map(|object| {
                let lease = object.to_lease();
                let holder = lease.holder_unit()?.to_owned();
                // Where this store has timed this very claim, a run-out claim is no leader.
                let run_out = object
                    .metadata
                    .name
                    .as_ref()
                    .and_then(|name| apps.get(name))
                    .is_some_and(|app| {
                        app.known()
                            .seen
                            .is_expired(&lease, &self.inner.config.expiry, now)
                    });
                (!run_out).then(|| (self.key(&object), holder))
            })
            .collect())
    }
}

impl KubeStore {
    /// Every lease in the store's scope.
    async fn list(&self) -> Result<Vec<LeadershipLease>> {
        let objects = self
            .list_api()
            .list(&ListParams::default())
            .await
            .map_err(|e| from_kube("list leadershipleases", e))?;
        Ok(objects.items)
    }

    /// How the Reader and Pinner name an application: its name in a namespace scope,
    /// `namespace/name` when the store reads every namespace (names repeat across namespaces).
    fn key(&self, object: &LeadershipLease) -> String {
        let name = object.metadata.name.clone().unwrap_or_default();
        match (&self.inner.scope, &object.metadata.namespace) {
            (Scope::All, Some(namespace)) => format!("{namespace}/{name}"),
            _ => name,
        }
    }
}

impl Revoker for KubeStore {
    async fn revoke_leadership(&self, application: &str, unit: &str) -> Result<()> {
        validate::application_name(application)?;
        validate::unit_name(unit)?;
        self.update_spec(application, "revoke leadership", |object| {
            let lease = object.to_lease();
            match lease.revoke(unit)? {
                None => Ok(false),
                Some(_) => {
                    let term = i64::try_from(lease.term).unwrap_or(i64::MAX);
                    object.spec.revocation = Some(Revocation {
                        unit: unit.to_owned(),
                        term,
                        requested_at: Some(now_time()),
                    });
                    Ok(true)
                }
            }
        })
        .await
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
