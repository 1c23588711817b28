//! The socket API (HTTP/1.1 + JSON): the unit's tickets, token, release, the namespace's leaders
//! and pins. Every error is `{"error":{"code","message"}}` with a stable code; bad input never
//! panics and never changes state.
//!
//! One short handler per route, beside the route list that both the router and the OpenAPI
//! document are made from: a route and its handler are read together.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, MatchedPath, Query, Request, State, rejection::QueryRejection},
    http::{Method, StatusCode, Uri, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get, post},
};
use leadership::{
    Claimer, Eligibility, Error, ErrorCode, LeaseTracker, Pinner, Reader, Ticket, Tracker, TrackerStatus,
    Watcher,
    wire::{
        ClaimReply, EligibilityReply, EligibilityRequest, EntityRequest, ErrorReply, LeadersReply, PinReply,
        PinsReply, ProbeReply, ReleaseReply, Status, TokenReply,
    },
};
use serde::Deserialize;
use tokio::time::Instant;

use crate::metrics::{Metrics, RequestLabels};

/// The largest request body accepted.
pub const MAX_BODY: usize = 4 * 1024;
/// The longest a wait may be asked to last.
pub const MAX_WAIT_MS: u64 = 24 * 60 * 60 * 1000;

/// What the sidecar's store must offer.
pub trait Store: Claimer + Watcher + Reader + Pinner + Eligibility + Clone + 'static {}
impl<T: Claimer + Watcher + Reader + Pinner + Eligibility + Clone + 'static> Store for T {}

/// One unit's sidecar: its tracker, its store and its identity; cheap to clone.
pub struct Sidecar<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Sidecar<S> {
    fn clone(&self) -> Self {
        Sidecar {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    namespace: String,
    unit: String,
    tracker: LeaseTracker,
    store: S,
    metrics: Arc<Metrics>,
    declaration: Mutex<Declaration>,
}

/// The app's "not me" as this sidecar knows it.
#[derive(Default)]
struct Declaration {
    /// Why the app said it should not lead, while it says so.
    ineligible: Option<String>,
    /// Whether the app has declared through this sidecar process. Until it has, the declaration
    /// the lease keeps from before a sidecar restart stands and is adopted.
    made_here: bool,
}

impl<S: Store> Sidecar<S> {
    /// A sidecar for `tracker`'s unit, in `namespace`.
    pub fn new(namespace: String, tracker: LeaseTracker, store: S, metrics: Arc<Metrics>) -> Self {
        let unit = tracker.unit().to_owned();
        Sidecar {
            inner: Arc::new(Inner {
                namespace,
                unit,
                tracker,
                store,
                metrics,
                declaration: Mutex::default(),
            }),
        }
    }

    /// The tracker.
    pub fn tracker(&self) -> &LeaseTracker {
        &self.inner.tracker
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The status as the API reports it, at this instant.
    pub fn status(&self) -> Status {
        self.status_of(&self.inner.tracker.status())
    }

    /// The status, or `None` while the lease state is not known (before the first read and
    /// watch, or after the tracker stopped).
    pub fn known_status(&self) -> Option<Status> {
        let state = self.inner.tracker.status();
        knows_the_lease(&state).then(|| self.status_of(&state))
    }

    fn status_of(&self, state: &TrackerStatus) -> Status {
        let tracker = &self.inner.tracker;
        let now = Instant::now();
        let leader = state.is_leader(now);
        let ineligible = self.ineligible();
        Status {
            application: tracker.application_name().to_owned(),
            namespace: self.inner.namespace.clone(),
            unit: self.inner.unit.clone(),
            leader,
            holder: if leader {
                Some(self.inner.unit.clone())
            } else {
                state.lease.holder_at(now).map(str::to_owned)
            },
            term: state.term,
            guaranteed_for_ms: millis(state.guaranteed_for(now)),
            pinned: state.lease.pinned,
            claim_duration_ms: millis(tracker.claim_duration()),
            eligible: ineligible.is_none(),
            ineligible_reason: ineligible,
        }
    }

    fn ineligible(&self) -> Option<String> {
        self.declaration().ineligible.clone()
    }

    fn declaration(&self) -> std::sync::MutexGuard<'_, Declaration> {
        // Each change is one assignment, so a poisoned lock still holds a whole declaration.
        self.inner.declaration.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the declaration the lease keeps for this unit (made before this sidecar started)
    /// and reports it, unless the app has declared through this sidecar since.
    pub async fn adopt_standing_declaration(&self) -> leadership::Result<()> {
        let tracker = &self.inner.tracker;
        let standing = self
            .inner
            .store
            .declared_ineligible(tracker.application_name(), tracker.unit())
            .await?;
        let mut declaration = self.declaration();
        if !declaration.made_here {
            declaration.ineligible = standing;
        }
        Ok(())
    }

    /// Whether the lease state is known: the first read is done and the watch runs.
    pub fn is_ready(&self) -> bool {
        knows_the_lease(&self.inner.tracker.status())
    }
}

/// Whether a tracker in `state` knows the lease state: its first read is done and it has not
/// stopped.
fn knows_the_lease(state: &TrackerStatus) -> bool {
    state.ready && !state.stopped
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An error reply and its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reply: ErrorReply,
}

impl ApiError {
    /// An error with `code`, and the status that goes with it.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let reply = ErrorReply::new(code, message);
        let status = StatusCode::from_u16(reply.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        ApiError { status, reply }
    }

    /// The same error with another HTTP status.
    pub fn with_status(self, status: StatusCode) -> Self {
        ApiError { status, ..self }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.reply)).into_response()
    }
}

/// An error reply with the status that goes with its code.
pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    ApiError::new(code, message).into_response()
}

fn failure(err: &Error) -> Response {
    error(err.code(), err.to_string())
}

/// A route of the socket API: one list for the router and for the OpenAPI document
/// (`docs/socket-api.yaml`, made by `socket-openapi`), so that neither can leave one out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/status`.
    Status,
    /// `POST /v1/claim`.
    Claim,
    /// `GET /v1/wait/leader`.
    WaitLeader,
    /// `GET /v1/wait/minion`.
    WaitMinion,
    /// `GET /v1/watch`.
    Watch,
    /// `GET /v1/token`.
    Token,
    /// `POST /v1/release`.
    Release,
    /// `GET /v1/leaders`.
    Leaders,
    /// `GET /v1/pins`.
    Pins,
    /// `POST /v1/pin`.
    Pin,
    /// `POST /v1/unpin`.
    Unpin,
    /// `POST /v1/eligibility`.
    Eligibility,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
}

impl Route {
    /// Every route.
    pub const ALL: [Route; 14] = [
        Route::Status,
        Route::Claim,
        Route::WaitLeader,
        Route::WaitMinion,
        Route::Watch,
        Route::Token,
        Route::Release,
        Route::Leaders,
        Route::Pins,
        Route::Pin,
        Route::Unpin,
        Route::Eligibility,
        Route::Healthz,
        Route::Readyz,
    ];

    /// Its path.
    pub fn path(self) -> &'static str {
        match self {
            Route::Status => "/v1/status",
            Route::Claim => "/v1/claim",
            Route::WaitLeader => "/v1/wait/leader",
            Route::WaitMinion => "/v1/wait/minion",
            Route::Watch => "/v1/watch",
            Route::Token => "/v1/token",
            Route::Release => "/v1/release",
            Route::Leaders => "/v1/leaders",
            Route::Pins => "/v1/pins",
            Route::Pin => "/v1/pin",
            Route::Unpin => "/v1/unpin",
            Route::Eligibility => "/v1/eligibility",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
        }
    }

    /// Its method.
    pub fn method(self) -> Method {
        match self {
            Route::Claim | Route::Release | Route::Pin | Route::Unpin | Route::Eligibility => Method::POST,
            _ => Method::GET,
        }
    }

    /// Whether it is a probe (served on the admin port too).
    pub fn is_probe(self) -> bool {
        matches!(self, Route::Healthz | Route::Readyz)
    }

    fn handler<S: Store>(self) -> MethodRouter<Sidecar<S>> {
        match self {
            Route::Status => get(status::<S>),
            Route::Claim => post(claim::<S>),
            Route::WaitLeader => get(wait_leader::<S>),
            Route::WaitMinion => get(wait_minion::<S>),
            Route::Watch => get(watch::<S>),
            Route::Token => get(token::<S>),
            Route::Release => post(release::<S>),
            Route::Leaders => get(leaders::<S>),
            Route::Pins => get(pins::<S>),
            Route::Pin => post(pin::<S>),
            Route::Unpin => post(unpin::<S>),
            Route::Eligibility => post(eligibility::<S>),
            Route::Healthz => get(healthz),
            Route::Readyz => get(readyz::<S>),
        }
    }
}

/// The socket API's routes.
pub fn router<S: Store>(sidecar: Sidecar<S>) -> Router {
    Route::ALL
        .into_iter()
        .filter(|route| !route.is_probe())
        .fold(Router::new(), |routes, route| {
            routes.route(route.path(), route.handler::<S>())
        })
        .merge(probes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(sidecar.clone(), count::<S>))
        .with_state(sidecar)
}

/// `/healthz` and `/readyz`, served on the socket and on the admin port.
pub fn probes<S: Store>() -> Router<Sidecar<S>> {
    Route::ALL
        .into_iter()
        .filter(|route| route.is_probe())
        .fold(Router::new(), |routes, route| {
            routes.route(route.path(), route.handler::<S>())
        })
}

async fn count<S: Store>(State(sidecar): State<Sidecar<S>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    sidecar
        .metrics()
        .requests
        .get_or_create(&RequestLabels {
            route,
            code: response.status().as_u16(),
        })
        .inc();
    response
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        ErrorCode::NotFound,
        format!(
            "no route {method} {}; the routes are listed in the README",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let mut response = error(
        ErrorCode::BadRequest,
        format!("method {method} is not allowed on {}", uri.path()),
    );
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

async fn healthz() -> Response {
    Json(ProbeReply { status: "ok".into() }).into_response()
}

async fn readyz<S: Store>(State(sidecar): State<Sidecar<S>>) -> Response {
    if sidecar.is_ready() {
        return Json(ProbeReply {
            status: "ready".into(),
        })
        .into_response();
    }
    not_known(&sidecar)
}

/// 503: the lease state is not known (yet, or any more), with the tracker's last problem.
fn not_known<S: Store>(sidecar: &Sidecar<S>) -> Response {
    match sidecar.tracker().status().problem {
        Some(problem) => error(
            ErrorCode::Unavailable,
            format!("the lease state is not known: {problem}"),
        ),
        None => error(
            ErrorCode::Unavailable,
            "the lease state is not known yet (is the API server reachable and the CRD installed?)",
        ),
    }
}

async fn status<S: Store>(State(sidecar): State<Sidecar<S>>) -> Response {
    match sidecar.known_status() {
        Some(status) => Json(status).into_response(),
        None => not_known(&sidecar),
    }
}

async fn claim<S: Store>(State(sidecar): State<Sidecar<S>>) -> Json<ClaimReply> {
    let leader = sidecar.tracker().claim_leader().wait().await;
    Json(ClaimReply {
        leader,
        term: sidecar.tracker().status().term,
    })
}

/// The query of the wait routes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitQuery {
    /// Give up after this many milliseconds.
    pub timeout_ms: Option<u64>,
}

/// The wait's time limit, or a 400 reply.
fn wait_limit(query: Result<Query<WaitQuery>, QueryRejection>) -> Result<Option<Duration>, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("bad query: {}", e.body_text())))?;
    match query.timeout_ms {
        Some(ms) if ms > MAX_WAIT_MS => Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("timeoutMs must be at most {MAX_WAIT_MS}"),
        )),
        other => Ok(other.map(Duration::from_millis)),
    }
}

async fn wait_for<S: Store>(
    sidecar: &Sidecar<S>,
    limit: Option<Duration>,
    ticket: impl Ticket,
    what: &str,
) -> Response {
    let answer = match limit {
        Some(limit) => tokio::time::timeout(limit, ticket.wait()).await.ok(),
        None => Some(ticket.wait().await),
    };
    match answer {
        None => error(
            ErrorCode::Timeout,
            format!("not {what} within {} ms", limit.map_or(0, millis)),
        ),
        Some(false) => error(ErrorCode::Unavailable, "the sidecar is shutting down"),
        Some(true) => Json(sidecar.status()).into_response(),
    }
}

async fn wait_leader<S: Store>(
    State(sidecar): State<Sidecar<S>>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Response {
    match wait_limit(query) {
        Ok(limit) => wait_for(&sidecar, limit, sidecar.tracker().wait_leader(), "leader").await,
        Err(err) => err.into_response(),
    }
}

async fn wait_minion<S: Store>(
    State(sidecar): State<Sidecar<S>>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Response {
    match wait_limit(query) {
        Ok(limit) => wait_for(&sidecar, limit, sidecar.tracker().wait_minion(), "minion").await,
        Err(err) => err.into_response(),
    }
}

/// One NDJSON line per change of status (the guarantee's countdown is not a change).
async fn watch<S: Store>(State(sidecar): State<Sidecar<S>>) -> Response {
    let changes = sidecar.tracker().subscribe();
    let stream = futures::stream::unfold(
        (changes, None::<Status>, false),
        move |(mut changes, last, done)| {
            let sidecar = sidecar.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let status = sidecar.status();
                    let comparable = Status {
                        guaranteed_for_ms: 0,
                        ..status.clone()
                    };
                    let stopped = changes.borrow().stopped;
                    if last.as_ref() != Some(&comparable) {
                        let mut line = serde_json::to_vec(&status).unwrap_or_default();
                        line.push(b'\n');
                        return Some((
                            Ok::<_, Infallible>(Bytes::from(line)),
                            (changes, Some(comparable), stopped),
                        ));
                    }
                    if stopped {
                        return None;
                    }
                    let deadline = changes
                        .borrow()
                        .guarantee
                        .map(|g| g.leader_until())
                        .filter(|_| status.leader);
                    tokio::select! {
                        changed = changes.changed() => if changed.is_err() { return None },
                        () = sleep_until(deadline) => {}
                    }
                }
            }
        },
    );
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn token<S: Store>(State(sidecar): State<Sidecar<S>>) -> Response {
    let status = sidecar.status();
    if !status.leader {
        return failure(&Error::not_leader(&status.application, &status.unit));
    }
    Json(TokenReply {
        application: status.application,
        unit: status.unit,
        term: status.term,
        valid_for_ms: status.guaranteed_for_ms,
    })
    .into_response()
}

async fn release<S: Store>(State(sidecar): State<Sidecar<S>>) -> Response {
    match sidecar.tracker().release().await {
        Ok(released) => Json(ReleaseReply { released }).into_response(),
        Err(err) => failure(&err),
    }
}

async fn leaders<S: Store>(State(sidecar): State<Sidecar<S>>) -> Response {
    match sidecar.inner.store.leaders().await {
        Ok(leaders) => Json(LeadersReply { leaders }).into_response(),
        Err(err) => failure(&err),
    }
}

async fn pins<S: Store>(State(sidecar): State<Sidecar<S>>) -> Response {
    match sidecar.inner.store.pinned_leadership().await {
        Ok(pins) => Json(PinsReply { pins }).into_response(),
        Err(err) => failure(&err),
    }
}

/// The entity named by a pin or unpin body, or a 400/413 reply.
fn entity(body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Result<String, ApiError> {
    let body = body.map_err(|rejection| {
        ApiError::new(ErrorCode::BadRequest, rejection.body_text()).with_status(rejection.status())
    })?;
    let request: EntityRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("the body must be {{\"entity\":\"NAME\"}}: {e}"),
        )
    })?;
    Ok(request.entity)
}

async fn set_pin<S: Store>(
    sidecar: Sidecar<S>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    pin: bool,
) -> Response {
    let entity = match entity(body) {
        Ok(entity) => entity,
        Err(err) => return err.into_response(),
    };
    let application = sidecar.tracker().application_name().to_owned();
    let store = &sidecar.inner.store;
    let done = if pin {
        store.pin_leadership(&application, &entity).await
    } else {
        store.unpin_leadership(&application, &entity).await
    };
    match done {
        Ok(()) => Json(PinReply {
            application,
            entity,
            pinned: pin,
        })
        .into_response(),
        Err(err) => failure(&err),
    }
}

async fn pin<S: Store>(
    State(sidecar): State<Sidecar<S>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    set_pin(sidecar, body, true).await
}

async fn unpin<S: Store>(
    State(sidecar): State<Sidecar<S>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    set_pin(sidecar, body, false).await
}

async fn eligibility<S: Store>(
    State(sidecar): State<Sidecar<S>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return ApiError::new(ErrorCode::BadRequest, rejection.body_text())
                .with_status(rejection.status())
                .into_response();
        }
    };
    let request: EligibilityRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                ErrorCode::BadRequest,
                format!(
                    "the body must be {{\"eligible\":false,\"reason\":\"WHY\"}} or {{\"eligible\":true}}: {e}"
                ),
            );
        }
    };
    let ineligible = match (request.eligible, request.reason) {
        (true, _) => None,
        (false, Some(reason)) if !reason.trim().is_empty() => Some(reason),
        (false, _) => {
            return error(
                ErrorCode::BadRequest,
                "a reason is required with \"eligible\": false",
            );
        }
    };
    let tracker = sidecar.tracker();
    let done = sidecar
        .inner
        .store
        .declare_eligibility(tracker.application_name(), tracker.unit(), ineligible.as_deref())
        .await;
    if let Err(err) = done {
        return failure(&err);
    }
    *sidecar.declaration() = Declaration {
        ineligible: ineligible.clone(),
        made_here: true,
    };
    Json(EligibilityReply {
        unit: tracker.unit().to_owned(),
        eligible: ineligible.is_none(),
        reason: ineligible,
    })
    .into_response()
}
