//! The leadership interfaces on LeadershipLease objects: claims and releases in status, pins,
//! revocations and handovers in spec, the Reader over a listing, and tokens for this store's own
//! claims.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::jiff::Timestamp;
use leadership::{Checker, Claimer, Eligibility, Error, Grant, Pinner, Reader, Result, Revoker, validate};
use tokio::time::Instant;

use super::{KubeStore, writes::now_time};
use crate::crd::{self, HandoverRequest, Ineligible, LeadershipLease, Pin, Revocation};

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
                let Some(mut object) = self.current_or_create(&app, application, fresh).await? else {
                    return Ok(None);
                };
                self.check_policy(&object, duration)?;
                let now = Instant::now();
                let (lease, expired) = {
                    let known = app.known();
                    let lease = object.to_lease();
                    let expired = self.inner.config.run_out(&known.seen, &lease, now);
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
                object.status =
                    Some(object.status_for(&next, crate::crd::reason::RELEASED, Timestamp::now()));
                Ok(self.write_status(&app, &object).await?.map(drop))
            }
        })
        .await
    }
}

/// Leadership checks answer for claims made through this store only: the term of its own last
/// grant, while that grant's guarantee lasts and the lease still vouches for it.
impl Checker for KubeStore {
    async fn leadership_term(&self, application: &str, unit: &str) -> Result<u64> {
        let app = self.app(application)?;
        let known = app.known();
        let vouched = known
            .object
            .as_ref()
            .and_then(|object| object.to_lease().vouches_for(unit));
        match known.own.get(unit) {
            Some(&(term, until)) if Instant::now() < until && vouched == Some(term) => Ok(term),
            _ => Err(Error::not_leader(application, unit)),
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

    /// Checks a claim's duration (the lease length it writes, `status.leaseDurationMs`) against
    /// the range the application's `spec.policy` sets, where it sets one; the store's own limits
    /// fill a bound the policy leaves out.
    fn check_policy(&self, object: &LeadershipLease, duration: Duration) -> Result<()> {
        let Some(policy) = object.spec.policy.as_ref() else {
            return Ok(());
        };
        let ms = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).map(Duration::from_millis);
        let store = self.inner.config.limits;
        let min = ms(policy.min_duration_ms).unwrap_or(store.min);
        let max = ms(policy.max_duration_ms).unwrap_or(store.max);
        if (min..=max).contains(&duration) {
            return Ok(());
        }
        Err(Error::invalid(
            "duration",
            format!(
                "a claim of {duration:?} is outside the range {min:?} to {max:?} that spec.policy \
                 (minDurationMs, maxDurationMs) of LeadershipLease {} sets; the range limits the \
                 lease length a claim writes: a sidecar's --lease-length, by default 4 x its --claim-duration",
                object.metadata.name.as_deref().unwrap_or_default()
            ),
        ))
    }
}

impl Eligibility for KubeStore {
    /// Writes the unit's own entry of `status.ineligible` (with a reason) or removes it, and
    /// nothing else.
    async fn record_eligibility(&self, application: &str, unit: &str, reason: Option<&str>) -> Result<()> {
        let app = self.app(application)?;
        self.retry("declare eligibility", |fresh| {
            let app = app.clone();
            async move {
                let Some(mut object) = self.current_or_create(&app, application, fresh).await? else {
                    return Ok(None);
                };
                let status = object.status.get_or_insert_with(Default::default);
                let changed = match reason {
                    Some(reason) if status.ineligible.get(unit).is_some_and(|e| e.reason == reason) => false,
                    Some(reason) => {
                        let entry = Ineligible {
                            reason: reason.to_owned(),
                            since: Some(now_time()),
                        };
                        status.ineligible.insert(unit.to_owned(), entry);
                        true
                    }
                    None => status.ineligible.remove(unit).is_some(),
                };
                if !changed {
                    return Ok(Some(()));
                }
                Ok(self.write_status(&app, &object).await?.map(|_| ()))
            }
        })
        .await
    }

    async fn declared_ineligible(&self, application: &str, unit: &str) -> Result<Option<String>> {
        validate::application_name(application)?;
        validate::unit_name(unit)?;
        let app = self.app(application)?;
        let object = self.current(&app, application, false).await?;
        Ok(object
            .and_then(|object| object.status)
            .and_then(|mut status| status.ineligible.remove(unit))
            .map(|entry| entry.reason))
    }
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
                    .is_some_and(|app| self.inner.config.run_out(&app.known().seen, &lease, now));
                (!run_out).then(|| (self.key(&object), holder))
            })
            .collect())
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
