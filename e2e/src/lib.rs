//! The fixtures: a real Kubernetes control plane (and a node that runs pods) on this machine, the
//! images, the chart, and our binaries as local processes; what the tests, the demo and the labs
//! (`leadership-labs`) run on.
//!
//! Each module says what it holds; `docs/architecture.md` (Layout) lists them all by role.
#![forbid(unsafe_code)]

pub mod certs;
pub mod chart;
pub mod controlplane;
pub mod images;
pub mod link;
pub mod node;
pub mod pods;
pub mod testenv;
pub mod tools;
pub mod units;

/// What can go wrong while building, starting or using the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The certificates could not be made.
    #[error("cannot make certificates: {0}")]
    Certificates(String),
    /// The tools could not be built or found.
    #[error("control-plane tools unavailable: {0}")]
    Tools(String),
    /// A component did not start; the end of its log follows.
    #[error("{component} did not start; the end of its log:\n{log}")]
    Start {
        /// The component.
        component: String,
        /// The last lines of its log.
        log: String,
    },
    /// A Kubernetes request failed.
    #[error("cannot {action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The failure.
        #[source]
        source: kube::Error,
    },
    /// The control plane's state is missing or unreadable.
    #[error("control plane state: {0}")]
    State(String),
}

impl Error {
    fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            action: action.into(),
            source,
        }
    }

    fn kube(action: &str) -> impl Fn(kube::Error) -> Error + '_ {
        move |source| Error::Kube {
            action: action.to_owned(),
            source,
        }
    }
}
