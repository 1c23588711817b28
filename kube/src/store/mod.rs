//! The Kubernetes store: Claimer, Checker, Pinner, Reader, Revoker and Watcher on LeadershipLease
//! objects.
//!
//! - `cache`: what this store knows of each application's object, fed by its watch and its own
//!   writes' replies, and the Watcher;
//! - `writes`: compare-and-swap writes of status and spec, and the retry loop around them;
//! - `interfaces`: the leadership interfaces on top of both;
//! - `errors`: what a Kubernetes error lets the caller infer.
//!
//! - Every write is a compare-and-swap on the `resourceVersion` this store last saw; a conflict
//!   means someone else wrote first: re-read, decide again. Never a blind write.
//! - Expiry is judged by observation on a monotonic clock: a claim is run out only after its judge
//!   has seen the same (term, renewals) unchanged for its length plus a margin. Timestamps written
//!   by other machines are for display and never decide anything. The judge is the operator (it
//!   clears the claim; units take only a free lease, which is all the API server's admission
//!   policy admits from a pod) or, where configured, this store itself ([`ExpiryAuthority`]).
//! - A watch per application keeps the view current, so waiting is woken by changes, not polling.
//! - A token vouches only for claims made through this store: only the claimant knows when its
//!   claim was sent, so only it knows when the guarantee ends. A pending revocation or handover
//!   ends it at once: through this store's own write, or as soon as its watch shows one written
//!   elsewhere (a token check reads no object; it answers from this store's view).

mod cache;
mod errors;
mod interfaces;
mod writes;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{Api, Client, api::ListParams};
use leadership::{
    Error, Result,
    expiry::{ExpiryPolicy, Observation},
    lease::Lease,
    validate::DurationLimits,
};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use self::{cache::App, errors::from_kube};
use crate::crd::LeadershipLease;

/// Where a store looks for leases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One namespace.
    Namespace(String),
    /// Every namespace (reads only; writes need a namespace).
    All,
}

/// Who decides that a claim has run out and frees the lease.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExpiryAuthority {
    /// Every store judges expiry by its own observation, and a unit takes a lease whose claim it
    /// judges run out (a grant over a named holder). For namespaces whose pods are trusted, and
    /// for the operator's replicas on their own lease. The default of the library.
    #[default]
    Units,
    /// Only the operator clears a claim that ran out; a unit takes only a free lease (no holder),
    /// the one grant the chart's admission policy admits from a pod. The sidecar's default.
    Operator,
}

impl std::str::FromStr for ExpiryAuthority {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "operator" => Ok(ExpiryAuthority::Operator),
            "units" => Ok(ExpiryAuthority::Units),
            other => Err(format!("{other:?} is not an expiry authority: operator or units")),
        }
    }
}

impl std::fmt::Display for ExpiryAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExpiryAuthority::Operator => "operator",
            ExpiryAuthority::Units => "units",
        })
    }
}

/// Settings of a [`KubeStore`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoreConfig {
    /// The accepted claim durations.
    pub limits: DurationLimits,
    /// The margin over a claim's length before this store treats it as run out.
    pub expiry: ExpiryPolicy,
    /// Who frees a lease whose claim ran out.
    pub expiry_authority: ExpiryAuthority,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            limits: DurationLimits {
                min: Duration::from_secs(2),
                max: Duration::from_secs(600),
            },
            expiry: ExpiryPolicy::default(),
            expiry_authority: ExpiryAuthority::default(),
        }
    }
}

impl StoreConfig {
    /// Whether this store treats the claim it has `seen` as run out at `now`: never when the
    /// operator is the authority (the claim stands until the operator clears it).
    pub(crate) fn run_out(&self, seen: &Observation, lease: &Lease, now: Instant) -> bool {
        self.expiry_authority == ExpiryAuthority::Units && seen.is_expired(lease, &self.expiry, now)
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

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
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
