//! Keeps the webhook's certificate: reads it from its Secret, and in the managed mode creates and
//! renews the CA and serving certificate there and keeps the MutatingWebhookConfiguration's
//! `caBundle` equal to the Secret's `ca.crt`. Every replica runs it: a creation or renewal is a
//! create or a compare-and-swap replace, so when two replicas race one wins and the other adopts
//! what it wrote.

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

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok())
}

fn stored(secret: &Secret) -> Option<StoredCerts> {
    let data = secret.data.as_ref()?;
    Some(StoredCerts {
        bundle: text(data, "ca.crt")?,
        ca_key: text(data, "ca.key")?,
        cert: text(data, "tls.crt")?,
        key: text(data, "tls.key")?,
    })
}

fn data(certs: &StoredCerts) -> BTreeMap<String, ByteString> {
    [
        ("ca.crt", &certs.bundle),
        ("ca.key", &certs.ca_key),
        ("tls.crt", &certs.cert),
        ("tls.key", &certs.key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.clone().into_bytes())))
    .collect()
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
            } => {
                let current = found.as_ref().and_then(stored);
                let now = SystemTime::now();
                let renewal = certs::decide(current.as_ref(), policy, now);
                let made = certs::renew(current.as_ref(), renewal, policy, now)
                    .map_err(|e| KeepError::Certs(e.to_string()))?;
                let certs = match (made, current) {
                    (None, Some(current)) => current,
                    (None, None) => return Err(KeepError::Certs("no certificate stored or made".into())),
                    (Some(next), _) => {
                        // Trust the new CA before anyone serves a certificate it signed.
                        if let Some(name) = configuration {
                            self.publish_bundle(name, &next.bundle).await?;
                        }
                        self.write(&secrets, found.as_ref(), &next).await?;
                        info!(secret = %self.secret, ?renewal, cas = certs::count(&next.bundle), "webhook certificate written");
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

    async fn write(
        &self,
        secrets: &Api<Secret>,
        found: Option<&Secret>,
        next: &StoredCerts,
    ) -> Result<(), KeepError> {
        let result = match found {
            Some(existing) => {
                let mut secret = existing.clone();
                secret.data = Some(data(next));
                secret.type_ = Some("kubernetes.io/tls".into());
                secrets
                    .replace(&self.secret, &PostParams::default(), &secret)
                    .await
            }
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.secret.clone()),
                        labels: Some(
                            [("app.kubernetes.io/managed-by".to_owned(), MANAGED_BY.to_owned())].into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    data: Some(data(next)),
                    ..Secret::default()
                };
                secrets.create(&PostParams::default(), &secret).await
            }
        };
        match result {
            Ok(_) => Ok(()),
            // Another replica wrote first: the next round adopts what it wrote.
            Err(err) if is_status(&err, 409) => Err(KeepError::Certs(format!(
                "the Secret {} was written by another replica first; adopting it",
                self.secret
            ))),
            Err(err) => Err(kube_error(format!("write the Secret {}", self.secret))(err)),
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
