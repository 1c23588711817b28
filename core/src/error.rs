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
    pub fn code(&self) -> &'static str {
        match self {
            Error::ClaimDenied => "ClaimDenied",
            Error::ClaimNotHeld => "ClaimNotHeld",
            Error::BlockCancelled => "BlockCancelled",
            Error::NotLeader { .. } => "NotLeader",
            Error::Invalid { .. } => "BadRequest",
            Error::Forbidden { .. } => "Forbidden",
            Error::Unavailable { .. } => "Unavailable",
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
