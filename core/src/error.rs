//! The one error type of the leadership API, with the stable codes of SPEC E1-E6.

/// The result type of every leadership operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed leadership operation.
///
/// Only [`Error::ClaimDenied`], [`Error::ClaimNotHeld`], [`Error::BlockCancelled`],
/// [`Error::NotLeader`] and [`Error::Invalid`] are definite answers. [`Error::Unavailable`] and
/// [`Error::Forbidden`] mean "no inference may be made" (SPEC E5): the caller must not treat them as
/// either "leader" or "denied".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another unit holds the lease: the claimant is definitely not leader (E1).
    #[error("leadership claim denied")]
    ClaimDenied,
    /// A revocation or release named a unit that does not hold the lease (E2).
    #[error("leadership lease not held")]
    ClaimNotHeld,
    /// The caller stopped waiting for leadership to be released (E3).
    #[error("waiting for leadership cancelled by client")]
    BlockCancelled,
    /// The unit does not hold the application's lease, or its guarantee ran out (E4).
    #[error("{unit} is not leader of {application}")]
    NotLeader {
        /// The application asked about.
        application: String,
        /// The unit that is not leader.
        unit: String,
    },
    /// Bad input: nothing was changed (E6).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The name of the offending field, as the caller wrote it.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The store refused the action for lack of permission; no inference may be made.
    #[error("forbidden: {context}")]
    Forbidden {
        /// What was refused, and by whom.
        context: String,
    },
    /// The outcome is unknown (timeouts, an unreachable store); no inference may be made (E5).
    #[error("leadership state unknown: {context}")]
    Unavailable {
        /// What was being attempted.
        context: String,
        /// The underlying failure, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// The message with every underlying cause, for logs and readiness reports.
    pub fn detail(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(err) = cause {
            let line = err.to_string();
            if !text.contains(&line) {
                text.push_str(": ");
                text.push_str(&line);
            }
            cause = err.source();
        }
        text
    }

    /// The stable, low-cardinality code of this error, as used on the wire and in metrics.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::ClaimDenied => ErrorCode::ClaimDenied,
            Error::ClaimNotHeld => ErrorCode::ClaimNotHeld,
            Error::BlockCancelled => ErrorCode::BlockCancelled,
            Error::NotLeader { .. } => ErrorCode::NotLeader,
            Error::Invalid { .. } => ErrorCode::BadRequest,
            Error::Forbidden { .. } => ErrorCode::Forbidden,
            Error::Unavailable { .. } => ErrorCode::Unavailable,
        }
    }

    /// Whether this error says that the unit is not leader (SPEC E4).
    pub fn is_not_leader(&self) -> bool {
        matches!(self, Error::NotLeader { .. })
    }

    /// Whether this error is a definite answer about leadership, as opposed to "unknown" (SPEC E5).
    pub fn is_definite(&self) -> bool {
        !matches!(self, Error::Unavailable { .. } | Error::Forbidden { .. })
    }

    /// An [`Error::Invalid`] for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// An [`Error::Unavailable`] with a context and no source.
    pub fn unavailable(context: impl Into<String>) -> Self {
        Error::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// An [`Error::NotLeader`] for `unit` of `application`.
    pub fn not_leader(application: &str, unit: &str) -> Self {
        Error::NotLeader {
            application: application.to_owned(),
            unit: unit.to_owned(),
        }
    }
}

/// The stable error codes: of [`Error`], on the socket API's error replies (with the HTTP status
/// each goes with), and as the reasons of the operator's conditions and Events that report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// [`Error::ClaimDenied`].
    ClaimDenied,
    /// [`Error::ClaimNotHeld`].
    ClaimNotHeld,
    /// [`Error::BlockCancelled`].
    BlockCancelled,
    /// [`Error::NotLeader`].
    NotLeader,
    /// [`Error::Invalid`], or a request the socket API cannot read.
    BadRequest,
    /// No such route on the socket API.
    NotFound,
    /// A wait on the socket API ran out of time.
    Timeout,
    /// [`Error::Forbidden`].
    Forbidden,
    /// [`Error::Unavailable`].
    Unavailable,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::ClaimDenied,
        ErrorCode::ClaimNotHeld,
        ErrorCode::BlockCancelled,
        ErrorCode::NotLeader,
        ErrorCode::BadRequest,
        ErrorCode::NotFound,
        ErrorCode::Timeout,
        ErrorCode::Forbidden,
        ErrorCode::Unavailable,
    ];

    /// The code as written on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ClaimDenied => "ClaimDenied",
            ErrorCode::ClaimNotHeld => "ClaimNotHeld",
            ErrorCode::BlockCancelled => "BlockCancelled",
            ErrorCode::NotLeader => "NotLeader",
            ErrorCode::BadRequest => "BadRequest",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::Timeout => "Timeout",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::Unavailable => "Unavailable",
        }
    }

    /// The code written as `text`, if it is one.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|code| code.as_str() == text)
    }

    /// The HTTP status of a socket API reply with this code.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Timeout => 408,
            ErrorCode::ClaimDenied
            | ErrorCode::ClaimNotHeld
            | ErrorCode::NotLeader
            | ErrorCode::BlockCancelled => 409,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
