//! Compare-and-swap writes: every write carries the resourceVersion this store last saw; a lost
//! race reads again and decides again (a refusal decided on the cached copy is confirmed on a
//! fresh read), and a transient failure is tried again a few times.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::api::PostParams;
use leadership::{Error, Result};
use tokio::time::sleep;
use tracing::debug;

use super::{
    KubeStore,
    cache::App,
    errors::{from_kube, is_conflict, is_not_found},
};
use crate::crd::{LeadershipLease, LeadershipLeaseSpec};

/// How many times a write is tried again after a conflict before giving up as "unknown".
const MAX_ATTEMPTS: u32 = 8;
/// How many attempts a transient failure gets (with 50, 100 ms pauses) before it is returned.
const TRANSIENT_ATTEMPTS: u32 = 3;

impl KubeStore {
    /// Creates the application's object with `spec`: the object as created, or `None` when another
    /// writer created it first (read it again).
    pub(super) async fn create(
        &self,
        app: &App,
        application: &str,
        spec: LeadershipLeaseSpec,
    ) -> Result<Option<LeadershipLease>> {
        let mut object = LeadershipLease::empty(self.namespace()?, application);
        object.spec = spec;
        match self.api()?.create(&PostParams::default(), &object).await {
            Ok(created) => {
                app.learn(Some(created.clone()), &self.inner.config);
                Ok(Some(created))
            }
            Err(err) if is_conflict(&err) => Ok(None),
            Err(err) => Err(from_kube(&format!("create leadershiplease {application}"), err)),
        }
    }

    /// The object as [`KubeStore::current`] reads it; when there is none, creates it empty and
    /// answers the object as created (the creator decides on it at once, with no read between),
    /// or `None` when another writer created it first: the caller decides again on the next
    /// attempt.
    pub(super) async fn current_or_create(
        &self,
        app: &App,
        application: &str,
        fresh: bool,
    ) -> Result<Option<LeadershipLease>> {
        if let Some(object) = self.current(app, application, fresh).await? {
            return Ok(Some(object));
        }
        self.create(app, application, LeadershipLeaseSpec::default())
            .await
    }

    /// Writes `object`'s status with a compare-and-swap on its resourceVersion. `Ok(None)` is a
    /// lost race: read again and decide again.
    pub(super) async fn write_status(
        &self,
        app: &App,
        object: &LeadershipLease,
    ) -> Result<Option<LeadershipLease>> {
        let name = object.metadata.name.clone().unwrap_or_default();
        match self
            .api()?
            .replace_status(&name, &PostParams::default(), object)
            .await
        {
            Ok(written) => {
                app.learn(Some(written.clone()), &self.inner.config);
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
    pub(super) async fn write_spec(
        &self,
        app: &App,
        object: &LeadershipLease,
    ) -> Result<Option<LeadershipLease>> {
        let name = object.metadata.name.clone().unwrap_or_default();
        match self.api()?.replace(&name, &PostParams::default(), object).await {
            Ok(written) => {
                app.learn(Some(written.clone()), &self.inner.config);
                Ok(Some(written))
            }
            Err(err) if is_conflict(&err) || is_not_found(&err) => Ok(None),
            Err(err) => Err(from_kube(&format!("write leadershiplease {name}"), err)),
        }
    }

    /// Runs `step` until it does not lose a race: each attempt reads (fresh after the first),
    /// decides, and writes with a compare-and-swap. A refusal decided on this store's cached copy
    /// is confirmed on a fresh read first, so a lagging watch never causes a wrong refusal.
    pub(super) async fn retry<T, F, Fut>(&self, action: &str, mut step: F) -> Result<T>
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
                    sleep(jittered(Duration::from_millis(5 << attempt.min(5)))).await;
                }
                // A transient failure (the API server restarting, a dropped connection): try
                // again, a few times, on a fresh read. A write that landed before its reply was
                // lost makes the retry's compare-and-swap fail, and the fresh read shows it.
                Err(err @ Error::Unavailable { .. }) if attempt + 1 < TRANSIENT_ATTEMPTS => {
                    debug!(action, attempt, error = %err, "transient failure; trying again");
                    sleep(jittered(Duration::from_millis(50 << attempt))).await;
                }
                // A refusal decided on the watch's view (a claim denied, a handover refused as
                // pending) may come from a view that lags the API server: it stands only once
                // a fresh read confirms it.
                Err(err) if !fresh => {
                    debug!(action, error = %err, "refused on the cached view; confirming on a fresh read");
                }
                Err(err) => return Err(err),
            }
        }
        Err(Error::unavailable(format!(
            "{action}: gave up after {MAX_ATTEMPTS} conflicting writes"
        )))
    }

    /// Changes the spec with `change` (which returns false for "nothing to do"), creating the
    /// object if needed.
    pub(super) async fn update_spec(
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
                    // Created with the change, it is done; created by another first, decide again.
                    return Ok(self.create(&app, application, empty.spec).await?.map(drop));
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

/// A pause between half of `step` and all of it, drawn at random: writers that lost the same race
/// (or met the same failure) do not all try again at the same instant.
fn jittered(step: Duration) -> Duration {
    step.mul_f64(0.5 + 0.5 * fastrand::f64())
}

/// Now, as a Kubernetes time (for display fields).
pub(super) fn now_time() -> Time {
    Time(Timestamp::now())
}
