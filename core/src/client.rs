//! A client of the sidecar's Unix-socket API, and [`SocketTracker`]: the Tracker interface for an
//! app container whose sidecar does the claiming.

use std::{path::PathBuf, time::Duration};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::{
    Error, ErrorCode, Result, SharedTicket, Tracker,
    wire::{
        ClaimReply, EligibilityReply, EligibilityRequest, EntityRequest, ErrorReply, LeadersReply, PinReply,
        PinsReply, ReleaseReply, Status, TokenReply,
    },
};

/// Where the sidecar's socket is unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/leadership/leadership.sock";
/// The environment variable that announces the socket to app containers.
pub const SOCKET_ENV: &str = "LEADERSHIP_SOCKET";

/// Speaks HTTP/1.1 + JSON to a sidecar over its Unix socket, one connection per request.
#[derive(Clone, Debug)]
pub struct SocketClient {
    path: PathBuf,
}

fn unavailable(context: String) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> Error {
    move |source| Error::Unavailable {
        context,
        source: Some(source),
    }
}

/// The error an error reply stands for.
fn decode_error(status: StatusCode, body: &[u8]) -> Error {
    let Ok(reply) = serde_json::from_slice::<ErrorReply>(body) else {
        return Error::unavailable(format!(
            "the sidecar answered HTTP {status} without an error body"
        ));
    };
    let message = reply.error.message;
    match ErrorCode::parse(&reply.error.code) {
        Some(ErrorCode::ClaimDenied) => Error::ClaimDenied,
        Some(ErrorCode::ClaimNotHeld) => Error::ClaimNotHeld,
        Some(ErrorCode::BlockCancelled) => Error::BlockCancelled,
        Some(ErrorCode::NotLeader) => match message.split_once(" is not leader of ") {
            Some((unit, application)) => Error::not_leader(application, unit),
            None => Error::not_leader("", &message),
        },
        Some(ErrorCode::BadRequest) => Error::invalid("request", message),
        Some(ErrorCode::Forbidden) => Error::Forbidden { context: message },
        Some(ErrorCode::NotFound | ErrorCode::Timeout | ErrorCode::Unavailable) | None => {
            Error::unavailable(message)
        }
    }
}

impl SocketClient {
    /// A client of the socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SocketClient { path: path.into() }
    }

    /// A client of the socket named by `LEADERSHIP_SOCKET`, or the default path.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var_os(SOCKET_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| DEFAULT_SOCKET.into()),
        )
    }

    /// Sends one request; returns the status and body.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        let context = || format!("ask the sidecar at {} ({method} {uri})", self.path.display());
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(|e| unavailable(context())(Box::new(e)))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unavailable(context())(Box::new(e)))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unavailable(context())(Box::new(e)))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unavailable(context())(Box::new(e)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unavailable(context())(Box::new(e)))?
            .to_bytes();
        Ok((status, body))
    }

    async fn json<T: DeserializeOwned>(&self, method: Method, uri: &str, body: Option<Vec<u8>>) -> Result<T> {
        let (status, bytes) = self.call(method, uri, body).await?;
        if !status.is_success() {
            return Err(decode_error(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::unavailable(format!("unreadable reply to {uri}: {e}")))
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Status> {
        self.json(Method::GET, "/v1/status", None).await
    }

    /// `POST /v1/claim`: the ClaimLeader ticket.
    pub async fn claim(&self) -> Result<ClaimReply> {
        self.json(Method::POST, "/v1/claim", None).await
    }

    async fn wait(&self, route: &str, timeout: Option<Duration>) -> Result<Option<Status>> {
        let uri = match timeout {
            Some(t) => format!("{route}?timeoutMs={}", t.as_millis()),
            None => route.to_owned(),
        };
        let (status, bytes) = self.call(Method::GET, &uri, None).await?;
        match status {
            StatusCode::REQUEST_TIMEOUT => Ok(None),
            s if s.is_success() => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::unavailable(format!("unreadable reply to {route}: {e}"))),
            s => Err(decode_error(s, &bytes)),
        }
    }

    /// `GET /v1/wait/leader`: the status once this unit leads; `None` if `timeout` passed first.
    pub async fn wait_leader(&self, timeout: Option<Duration>) -> Result<Option<Status>> {
        self.wait("/v1/wait/leader", timeout).await
    }

    /// `GET /v1/wait/minion`: the status once this unit is not guaranteed leader; `None` if
    /// `timeout` passed first.
    pub async fn wait_minion(&self, timeout: Option<Duration>) -> Result<Option<Status>> {
        self.wait("/v1/wait/minion", timeout).await
    }

    /// `GET /v1/token`: the fencing term while leader, else [`Error::NotLeader`].
    pub async fn token(&self) -> Result<TokenReply> {
        self.json(Method::GET, "/v1/token", None).await
    }

    /// `POST /v1/release`: step down now; true if a lease was released.
    pub async fn release(&self) -> Result<bool> {
        self.json::<ReleaseReply>(Method::POST, "/v1/release", None)
            .await
            .map(|r| r.released)
    }

    /// `POST /v1/eligibility`: says whether this unit's app should lead now (`reason`: why not).
    pub async fn declare_eligibility(&self, ineligible: Option<&str>) -> Result<EligibilityReply> {
        let body = serde_json::to_vec(&EligibilityRequest {
            eligible: ineligible.is_none(),
            reason: ineligible.map(str::to_owned),
        })
        .map_err(|e| Error::unavailable(format!("encode the request: {e}")))?;
        self.json(Method::POST, "/v1/eligibility", Some(body)).await
    }

    /// `GET /v1/leaders`.
    pub async fn leaders(&self) -> Result<LeadersReply> {
        self.json(Method::GET, "/v1/leaders", None).await
    }

    /// `GET /v1/pins`.
    pub async fn pins(&self) -> Result<PinsReply> {
        self.json(Method::GET, "/v1/pins", None).await
    }

    /// `POST /v1/pin` (or `/v1/unpin` when `pin` is false) for `entity`.
    pub async fn set_pin(&self, entity: &str, pin: bool) -> Result<PinReply> {
        let body = serde_json::to_vec(&EntityRequest {
            entity: entity.to_owned(),
        })
        .map_err(|e| Error::unavailable(format!("encode the request: {e}")))?;
        self.json(
            Method::POST,
            if pin { "/v1/pin" } else { "/v1/unpin" },
            Some(body),
        )
        .await
    }
}

/// The Tracker interface over a sidecar: for app containers written in Rust.
#[derive(Clone, Debug)]
pub struct SocketTracker {
    client: SocketClient,
    application: String,
    claim_duration: Duration,
}

impl SocketTracker {
    /// Connects to the sidecar and learns its application and claim duration.
    pub async fn connect(client: SocketClient) -> Result<Self> {
        let status = client.status().await?;
        Ok(SocketTracker {
            client,
            application: status.application,
            claim_duration: Duration::from_millis(status.claim_duration_ms),
        })
    }
}

impl Tracker for SocketTracker {
    type Ticket = SharedTicket;

    fn application_name(&self) -> &str {
        &self.application
    }

    fn claim_duration(&self) -> Duration {
        self.claim_duration
    }

    fn claim_leader(&self) -> SharedTicket {
        let client = self.client.clone();
        SharedTicket::spawn(async move { client.claim().await.is_ok_and(|reply| reply.leader) })
    }

    fn wait_leader(&self) -> SharedTicket {
        let client = self.client.clone();
        // False if the sidecar goes away first: the tracker stopped.
        SharedTicket::spawn(async move { matches!(client.wait_leader(None).await, Ok(Some(_))) })
    }

    fn wait_minion(&self) -> SharedTicket {
        let client = self.client.clone();
        // A sidecar that cannot be asked vouches for nothing: act as a minion.
        SharedTicket::spawn(async move {
            let _ = client.wait_minion(None).await;
            true
        })
    }
}
