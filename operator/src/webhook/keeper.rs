//! Keeps the webhook's certificate: reads it from its Secret, and in the managed mode creates and
//! renews the CA and serving certificate and keeps the MutatingWebhookConfiguration's `caBundle`
//! equal to the serving Secret's `ca.crt`. Every replica runs it: a creation or renewal is a
//! create or a compare-and-swap replace, so when two replicas race one wins and the other adopts
//! what it wrote.
//!
//! The managed mode keeps two Secrets: the serving one (`tls.crt`, `tls.key`, and `ca.crt`, the
//! CAs to trust) and the CA's (`ca.key` alone), so that whatever reads or mounts the serving
//! Secret never holds the key that could sign a certificate for any name. A serving Secret from
//! before the split, with `ca.key` in it, is migrated at the first round: the key is moved to the
//! CA's Secret, then removed from the serving one. A CA key that does not match the current CA
//! (a replica stopped between its two writes) is replaced with a new CA, the old one kept trusted.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use k8s_openapi::{
    ByteString, api::admissionregistration::v1::MutatingWebhookConfiguration, api::core::v1::Secret,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    certs::{self, CertPolicy, StoredCerts},
    tls::CurrentCert,
};
use crate::metrics::Metrics;

/// Where the certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The operator makes and rotates them, and keeps the named MutatingWebhookConfiguration's
    /// `caBundle` (none: only the Secret is kept).
    Managed {
        /// How long they live and what names they are for.
        policy: CertPolicy,
        /// The MutatingWebhookConfiguration to keep the `caBundle` of.
        configuration: Option<String>,
        /// The Secret, in the same namespace, that holds the CA's key (`ca.key`).
        ca_secret: String,
    },
    /// Someone else (cert-manager) writes `tls.crt` and `tls.key` and the `caBundle`.
    External,
}

/// Keeps one Secret's certificate served.
pub struct Keeper {
    /// A client.
    pub client: Client,
    /// The Secret's namespace (the operator's).
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// Where the certificates come from.
    pub source: Source,
    /// What the webhook serves.
    pub current: Arc<CurrentCert>,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
}

/// The manager of the operator's writes to the Secret.
const MANAGED_BY: &str = "leadership-operator";

/// The serving Secret's type.
const TLS: &str = "kubernetes.io/tls";

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// The CA key file.
const CA_KEY: &str = "ca.key";

/// The certificates as the two Secrets hold them: the CA's key from the CA's Secret, or, before
/// the split, from the serving Secret.
fn stored(serving: Option<&Secret>, ca: Option<&Secret>) -> Option<StoredCerts> {
    let data = serving?.data.as_ref()?;
    let ca_key = ca
        .and_then(|s| s.data.as_ref())
        .and_then(|d| text(d, CA_KEY))
        .or_else(|| text(data, CA_KEY))?;
    Some(StoredCerts {
        bundle: text(data, "ca.crt")?,
        ca_key,
        cert: text(data, "tls.crt")?,
        key: text(data, "tls.key")?,
    })
}

fn bytes(pairs: &[(&str, &String)]) -> BTreeMap<String, ByteString> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// The serving Secret's data: no CA key.
fn serving_data(certs: &StoredCerts) -> BTreeMap<String, ByteString> {
    bytes(&[
        ("ca.crt", &certs.bundle),
        ("tls.crt", &certs.cert),
        ("tls.key", &certs.key),
    ])
}

/// The CA Secret's data.
fn ca_data(certs: &StoredCerts) -> BTreeMap<String, ByteString> {
    bytes(&[(CA_KEY, &certs.ca_key)])
}

/// Why one round failed.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    /// A Kubernetes request failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The failure.
        #[source]
        source: kube::Error,
    },
    /// The certificates could not be made or read.
    #[error("{0}")]
    Certs(String),
}

fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> KeepError {
    let action = action.into();
    move |source| KeepError::Kube { action, source }
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

impl Keeper {
    /// How often to look again.
    pub fn interval(&self) -> Duration {
        match &self.source {
            Source::Managed { policy, .. } => {
                (policy.cert_validity / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
            }
            Source::External => Duration::from_secs(30),
        }
    }

    /// Runs rounds until `stop` fires: at once, then every [`interval`](Self::interval), sooner
    /// after a failure.
    pub async fn run(self, stop: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let wait = match self.round().await {
                Ok(()) => {
                    failures = 0;
                    self.interval()
                }
                Err(err) => {
                    failures += 1;
                    warn!(error = %err, secret = %self.secret, "webhook certificate: round failed; trying again");
                    Duration::from_millis(200 * u64::from(failures.min(25))).min(self.interval())
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One round: read, renew if due, publish the CA bundle, serve.
    pub async fn round(&self) -> Result<(), KeepError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = secrets
            .get_opt(&self.secret)
            .await
            .map_err(kube_error(format!("read the Secret {}", self.secret)))?;
        let (cert, key) = match &self.source {
            Source::External => {
                let data = found.as_ref().and_then(|s| s.data.as_ref());
                match (
                    data.and_then(|d| text(d, "tls.crt")),
                    data.and_then(|d| text(d, "tls.key")),
                ) {
                    (Some(cert), Some(key)) => (cert, key),
                    _ => {
                        return Err(KeepError::Certs(format!(
                            "the Secret {}/{} has no tls.crt and tls.key yet (is cert-manager installed?)",
                            self.namespace, self.secret
                        )));
                    }
                }
            }
            Source::Managed {
                policy,
                configuration,
                ca_secret,
            } => {
                let ca_found = secrets
                    .get_opt(ca_secret)
                    .await
                    .map_err(kube_error(format!("read the Secret {ca_secret}")))?;
                let current = stored(found.as_ref(), ca_found.as_ref());
                let now = SystemTime::now();
                let renewal = certs::decide(current.as_ref(), policy, now);
                let made = certs::renew(current.as_ref(), renewal, policy, now)
                    .map_err(|e| KeepError::Certs(e.to_string()))?;
                let certs = match (made, current) {
                    (None, Some(current)) => {
                        // Before the split, or after a round that stopped between its writes.
                        self.write(
                            &secrets,
                            ca_secret,
                            ca_found.as_ref(),
                            "Opaque",
                            ca_data(&current),
                        )
                        .await?;
                        self.write(
                            &secrets,
                            &self.secret,
                            found.as_ref(),
                            TLS,
                            serving_data(&current),
                        )
                        .await?;
                        current
                    }
                    (None, None) => return Err(KeepError::Certs("no certificate stored or made".into())),
                    (Some(next), _) => {
                        // Trust the new CA before anyone serves a certificate it signed.
                        if let Some(name) = configuration {
                            self.publish_bundle(name, &next.bundle).await?;
                        }
                        // The CA's key first: a serving certificate is never stored before the key
                        // of the CA that signed it.
                        self.write(&secrets, ca_secret, ca_found.as_ref(), "Opaque", ca_data(&next))
                            .await?;
                        self.write(&secrets, &self.secret, found.as_ref(), TLS, serving_data(&next))
                            .await?;
                        info!(secret = %self.secret, ca_secret = %ca_secret, ?renewal, cas = certs::count(&next.bundle), "webhook certificate written");
                        next
                    }
                };
                if let Some(name) = configuration {
                    self.publish_bundle(name, &certs.bundle).await?;
                }
                (certs.cert, certs.key)
            }
        };
        if self.current.load(&cert, &key).map_err(KeepError::Certs)? {
            info!(secret = %self.secret, "serving a new webhook certificate");
        }
        if let Some(expiry) = certs::first_info(&cert) {
            let seconds = expiry
                .not_after
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            self.metrics
                .webhook_certificate_expiry
                .set(i64::try_from(seconds).unwrap_or(i64::MAX));
        }
        Ok(())
    }

    /// Makes the Secret `name` hold exactly `data` (of type `type_`): nothing when it does
    /// already, else a compare-and-swap replace of what was `found`, or a create.
    async fn write(
        &self,
        secrets: &Api<Secret>,
        name: &str,
        found: Option<&Secret>,
        type_: &str,
        data: BTreeMap<String, ByteString>,
    ) -> Result<(), KeepError> {
        let result = match found {
            Some(existing)
                if existing.data.as_ref() == Some(&data) && existing.type_.as_deref() == Some(type_) =>
            {
                return Ok(());
            }
            Some(existing) if existing.type_.as_deref() != Some(type_) => {
                // A Secret's type cannot change: only a serving Secret made by hand could differ.
                return Err(KeepError::Certs(format!(
                    "the Secret {name} has type {:?}, not {type_}: delete it and the operator makes it again",
                    existing.type_.as_deref().unwrap_or_default()
                )));
            }
            Some(existing) => {
                let mut secret = existing.clone();
                secret.data = Some(data);
                secret.string_data = None;
                secrets.replace(name, &PostParams::default(), &secret).await
            }
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.to_owned()),
                        labels: Some(
                            [("app.kubernetes.io/managed-by".to_owned(), MANAGED_BY.to_owned())].into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    type_: Some(type_.to_owned()),
                    data: Some(data),
                    ..Secret::default()
                };
                secrets.create(&PostParams::default(), &secret).await
            }
        };
        match result {
            Ok(_) => Ok(()),
            // Another replica wrote first: the next round adopts what it wrote.
            Err(err) if is_status(&err, 409) => Err(KeepError::Certs(format!(
                "the Secret {name} was written by another replica first; adopting it"
            ))),
            Err(err) => Err(kube_error(format!("write the Secret {name}"))(err)),
        }
    }

    /// Sets every webhook's `caBundle` in the configuration `name` to `bundle` (a
    /// compare-and-swap replace, and only when it differs).
    async fn publish_bundle(&self, name: &str, bundle: &str) -> Result<(), KeepError> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let Some(mut config) = api.get_opt(name).await.map_err(kube_error(format!(
            "read the MutatingWebhookConfiguration {name}"
        )))?
        else {
            return Err(KeepError::Certs(format!(
                "the MutatingWebhookConfiguration {name} does not exist (yet)"
            )));
        };
        let wanted = ByteString(bundle.as_bytes().to_vec());
        let mut changed = false;
        for webhook in config.webhooks.iter_mut().flatten() {
            if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
                webhook.client_config.ca_bundle = Some(wanted.clone());
                changed = true;
            }
        }
        if changed {
            api.replace(name, &PostParams::default(), &config)
                .await
                .map_err(kube_error(format!("update the caBundle of {name}")))?;
            info!(configuration = %name, cas = certs::count(bundle), "caBundle updated");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn the_ca_key_is_read_from_its_own_secret_and_before_the_split_from_the_serving_one() {
        let serving = [("ca.crt", "bundle"), ("tls.crt", "cert"), ("tls.key", "key")];
        let split = stored(Some(&secret(&serving)), Some(&secret(&[("ca.key", "ca-key")]))).unwrap();
        assert_eq!(split.ca_key, "ca-key");
        let combined = [serving.as_slice(), &[("ca.key", "old-key")]].concat();
        let before = stored(Some(&secret(&combined)), None).unwrap();
        assert_eq!(before.ca_key, "old-key", "a Secret from before the split");
        assert_eq!(
            stored(Some(&secret(&combined)), Some(&secret(&[("ca.key", "ca-key")])))
                .unwrap()
                .ca_key,
            "ca-key",
            "the CA's Secret wins"
        );
        assert_eq!(stored(Some(&secret(&serving)), None), None, "no CA key anywhere");
        // What is written back: the serving Secret without the key, the key alone in the other.
        assert_eq!(
            serving_data(&before).keys().collect::<Vec<_>>(),
            ["ca.crt", "tls.crt", "tls.key"]
        );
        assert_eq!(ca_data(&before).keys().collect::<Vec<_>>(), ["ca.key"]);
    }
}
