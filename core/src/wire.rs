//! The JSON bodies of the sidecar's socket API, shared by the server and the client so that both
//! speak exactly one format, and the lines of the sidecar's leadership record with the clock they are
//! timed on. Field names are camelCase on the wire and are a public contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, ErrorCode};

/// `GET /v1/status`, and the body of `wait/leader`, `wait/minion` and each `watch` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The application.
    pub application: String,
    /// Its namespace.
    pub namespace: String,
    /// This unit (the pod).
    pub unit: String,
    /// Whether this unit is leader, guaranteed for at least the claim duration.
    pub leader: bool,
    /// The current holder as this sidecar sees it, if any.
    pub holder: Option<String>,
    /// The fencing term: this unit's while leader, else the latest seen.
    pub term: u64,
    /// How long this unit's leadership is still guaranteed (0 for a minion).
    pub guaranteed_for_ms: u64,
    /// Whether any entity pins the lease.
    pub pinned: bool,
    /// The guarantee every "leader" answer carries.
    pub claim_duration_ms: u64,
    /// Whether this unit's app may lead, as it last said through this sidecar
    /// (`POST /v1/eligibility`); true until it says otherwise.
    pub eligible: bool,
    /// What the app said when it declared itself ineligible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ineligible_reason: Option<String>,
}

/// `POST /v1/claim`: the ClaimLeader ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClaimReply {
    /// True only if leadership is guaranteed for the claim duration from the request.
    pub leader: bool,
    /// The fencing term.
    pub term: u64,
}

/// `GET /v1/token` while leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenReply {
    /// The application.
    pub application: String,
    /// This unit.
    pub unit: String,
    /// The fencing term to put into writes.
    pub term: u64,
    /// How long the token stays valid.
    pub valid_for_ms: u64,
}

/// `POST /v1/release`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReleaseReply {
    /// Whether a lease was released (false for a minion).
    pub released: bool,
}

/// `GET /v1/leaders`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeadersReply {
    /// Application -> holder, for the namespace.
    pub leaders: BTreeMap<String, String>,
}

/// `GET /v1/pins`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PinsReply {
    /// Application -> entities pinning it, for the namespace.
    pub pins: BTreeMap<String, Vec<String>>,
}

/// The body of `POST /v1/pin` and `POST /v1/unpin`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRequest {
    /// The entity that pins or unpins this unit's application.
    pub entity: String,
}

/// The reply to `POST /v1/pin` and `POST /v1/unpin`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PinReply {
    /// The application.
    pub application: String,
    /// The entity.
    pub entity: String,
    /// Whether the entity pins the application now.
    pub pinned: bool,
}

/// The body of `POST /v1/eligibility`: whether this unit's app should lead now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EligibilityRequest {
    /// False: the app should not lead now (a leader hands over to a healthy standby when one
    /// exists; a standby lets the others take a free lease first). True: it may lead again.
    pub eligible: bool,
    /// Why not (one line, at most 256 characters); required when `eligible` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The reply to `POST /v1/eligibility`: what the unit declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EligibilityReply {
    /// Whether this unit may lead.
    pub eligible: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// This unit.
    pub unit: String,
}

/// `GET /healthz` and `GET /readyz` when healthy: `{"status":"ok"}`, `{"status":"ready"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProbeReply {
    /// `ok` (alive) or `ready` (the lease state is known).
    pub status: String,
}

/// Every error reply: `{"error":{"code":"...","message":"..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorReply {
    /// The error.
    pub error: ErrorDetail,
}

/// The code and message of an error reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorDetail {
    /// A stable code, one of those listed; a client reads a code it does not know as
    /// Unavailable.
    #[cfg_attr(feature = "schema", schemars(schema_with = "error_code_schema"))]
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

#[cfg(feature = "schema")]
fn error_code_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "A stable code, for programs: what went wrong, and whether anything may be inferred (never from Unavailable or Forbidden).",
        "type": "string",
        "enum": ErrorCode::ALL.map(ErrorCode::as_str),
    })
}

impl ErrorReply {
    /// An error reply with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
                message: message.into(),
            },
        }
    }

    /// The HTTP status that goes with the code (503 for a code this version does not know).
    pub fn http_status(&self) -> u16 {
        ErrorCode::parse(&self.error.code).map_or(503, ErrorCode::http_status)
    }
}

impl From<&Error> for ErrorReply {
    fn from(err: &Error) -> Self {
        ErrorReply::new(err.code(), err.to_string())
    }
}

/// One line of a sidecar's leadership record (`--record FILE`): a change of its unit's
/// leadership, with times in nanoseconds of the machine's CLOCK_MONOTONIC, which every local
/// process shares. The fault checker reads these to prove that no two units led at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordLine {
    /// The unit.
    pub unit: String,
    /// The sidecar's process id (a restarted sidecar writes to the same file).
    pub pid: u32,
    /// What happened.
    #[serde(flatten)]
    pub event: RecordEvent,
}

/// The machine's CLOCK_MONOTONIC now, in nanoseconds: the clock of every [`RecordLine`]. It is
/// read from the kernel directly (not through libc), so it stays the machine's shared clock even
/// in a process whose own clock is faked to run at another rate.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// What a [`RecordLine`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum RecordEvent {
    /// Became leader. `sinceNs` is just before "leader" was first published (no answer says
    /// "leader" earlier); `untilNs` is when its guarantee runs out unless renewed.
    Elected {
        /// The fencing term.
        term: u64,
        /// When it began to report "leader".
        since_ns: u64,
        /// When "leader" stops unless renewed.
        until_ns: u64,
    },
    /// Renewed: "leader" now lasts until `untilNs` unless renewed again.
    Renewed {
        /// The fencing term.
        term: u64,
        /// When "leader" stops unless renewed.
        until_ns: u64,
    },
    /// Stopped reporting "leader" at `atNs`.
    Deposed {
        /// The fencing term it held.
        term: u64,
        /// When it stopped.
        at_ns: u64,
    },
    /// The recorder fell behind and missed this many changes: the record is incomplete.
    Lagged {
        /// How many changes were missed.
        missed: u64,
    },
}
