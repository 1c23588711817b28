//! A real Kubernetes control plane on this machine, for tests and the demo.
//!
//! - [`tools`]: the pinned etcd, kube-apiserver, kube-controller-manager, kubectl and helm binaries,
//!   built from the Go module proxy by `e2e/tools/build` into `~/.cache/leadership-e2e/`;
//! - [`controlplane`]: starts and stops them on 127.0.0.1 with their own CA;
//! - [`testenv`]: one control plane per test run, a client and a fresh namespace per test;
//! - [`chart`]: helm, the rendered chart, a release per test, and waiting for its policies;
//! - [`images`]: container images written as OCI archives without Docker (`e2e/images`);
//! - [`units`]: sidecars and operators as local processes, one sidecar per Pod object;
//! - [`mod@bench`]: the benchmark behind `e2e/bench`: candidates, measurements, statistics, report;
//! - [`node`]: a real node (containerd, runc, CNI, kubelet, kube-proxy, kube-scheduler) that runs pods;
//! - [`pods`]: pods on the node for tests and the demo: readiness, holders, exec, containers' pids;
//! - [`link`]: a TCP link to the API server that a test can cut or slow down;
//! - [`chaos`]: the fault checker behind `e2e/chaos`, with its hostile unit.
#![forbid(unsafe_code)]

pub mod bench;
pub mod certs;
pub mod chaos;
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
