//! The webhook's own CA and serving certificate, without cert-manager: when to renew them and how
//! to make them. Pure but for the key generation: the stored PEM files and `now` in, a decision
//! and new PEM files out.
//!
//! The serving certificate is renewed when less than a third of its validity is left, and
//! re-signed by the same CA. The CA is replaced when less than a third of its own validity is
//! left; the old CA stays in the bundle (the webhook configuration's `caBundle`) until it expires,
//! so API servers that still trust only the old one, or replicas that still serve a certificate it
//! signed, keep working across the change.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};

/// Why certificates could not be read or made.
#[derive(Debug, thiserror::Error)]
#[error("webhook certificates: {0}")]
pub struct CertError(pub String);

fn failed(what: &'static str) -> impl Fn(rcgen::Error) -> CertError {
    move |err| CertError(format!("{what}: {err}"))
}

/// How long certificates live, and the names the serving certificate is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPolicy {
    /// The CA's validity.
    pub ca_validity: Duration,
    /// The serving certificate's validity.
    pub cert_validity: Duration,
    /// DNS names and IP addresses of the serving certificate.
    pub names: Vec<String>,
}

/// The PEM files kept in the webhook's Secret (type `kubernetes.io/tls`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCerts {
    /// `ca.crt`: the CAs API servers should trust, the current one first.
    pub bundle: String,
    /// `ca.key`: the current CA's key.
    pub ca_key: String,
    /// `tls.crt`: the serving certificate.
    pub cert: String,
    /// `tls.key`: its key.
    pub key: String,
}

/// What to do with the stored certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// They are good.
    Keep,
    /// A new serving certificate from the same CA (near expiry, or its names changed).
    Certificate,
    /// A new CA and a serving certificate from it (none yet, unreadable, or the CA near expiry).
    Authority,
}

/// What a certificate says of itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// When it expires.
    pub not_after: SystemTime,
    /// Its DNS names and IP addresses.
    pub names: BTreeSet<String>,
}

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// Reads one DER certificate.
pub fn info(der: &[u8]) -> Option<CertInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let seconds = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    let mut names = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    names.insert((*dns).to_owned());
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Some(CertInfo {
        not_after: UNIX_EPOCH + Duration::from_secs(seconds),
        names,
    })
}

/// The first certificate of a PEM file.
pub fn first_info(pem: &str) -> Option<CertInfo> {
    ders(pem).first().and_then(|der| info(der))
}

/// Whether `key_pem` is the key of the first certificate of `bundle` (the current CA).
pub fn key_matches(bundle: &str, key_pem: &str) -> bool {
    let Ok(key) = KeyPair::from_pem(key_pem) else {
        return false;
    };
    ders(bundle).first().is_some_and(|der| {
        x509_parser::parse_x509_certificate(der)
            .is_ok_and(|(_, cert)| cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
    })
}

fn left(info: &CertInfo, now: SystemTime) -> Duration {
    info.not_after.duration_since(now).unwrap_or_default()
}

/// Decides what to renew at `now`.
pub fn decide(stored: Option<&StoredCerts>, policy: &CertPolicy, now: SystemTime) -> Renewal {
    let Some(stored) = stored else {
        return Renewal::Authority;
    };
    let (Some(ca), Some(cert)) = (first_info(&stored.bundle), first_info(&stored.cert)) else {
        return Renewal::Authority;
    };
    // A CA key that is not the current CA's (unreadable, or the two Secrets written apart by a
    // replica that stopped between them) cannot sign: a new CA.
    if !key_matches(&stored.bundle, &stored.ca_key) {
        return Renewal::Authority;
    }
    if left(&ca, now) < policy.ca_validity / 3 {
        return Renewal::Authority;
    }
    let wanted: BTreeSet<String> = policy.names.iter().cloned().collect();
    if left(&cert, now) < policy.cert_validity / 3
        || cert.names != wanted
        || KeyPair::from_pem(&stored.key).is_err()
    {
        return Renewal::Certificate;
    }
    Renewal::Keep
}

fn offset(at: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(at)
}

/// Makes what `renewal` asks for at `now` (nothing for [`Renewal::Keep`]).
pub fn renew(
    stored: Option<&StoredCerts>,
    renewal: Renewal,
    policy: &CertPolicy,
    now: SystemTime,
) -> Result<Option<StoredCerts>, CertError> {
    // Five minutes of tolerance for clocks that run behind.
    let not_before = now - Duration::from_secs(300);
    let (ca_pem, ca_key, mut bundle) = match (renewal, stored) {
        (Renewal::Keep, _) => return Ok(None),
        (Renewal::Certificate, Some(stored)) => {
            let current = ders(&stored.bundle);
            let first = current
                .first()
                .ok_or_else(|| CertError("the stored bundle has no CA".into()))?;
            let pem = pem_of(first);
            (pem, stored.ca_key.clone(), current)
        }
        _ => {
            let key = KeyPair::generate().map_err(failed("the CA key"))?;
            let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed("the CA"))?;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.distinguished_name.push(
                DnType::CommonName,
                format!("leadership-webhook-ca-{}", seconds(now)),
            );
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
            params.not_before = offset(not_before);
            params.not_after = offset(now + policy.ca_validity);
            let key_pem = key.serialize_pem();
            let ca = CertifiedIssuer::self_signed(params, key).map_err(failed("the CA"))?;
            let mut bundle = vec![ca.der().clone()];
            // The previous CAs stay trusted until they expire.
            if let Some(stored) = stored {
                bundle.extend(ders(&stored.bundle));
            }
            (ca.pem(), key_pem, bundle)
        }
    };
    bundle.retain(|der| info(der).is_some_and(|i| i.not_after > now));

    let ca_signing_key = KeyPair::from_pem(&ca_key).map_err(failed("the CA key"))?;
    let ca_not_after = first_info(&ca_pem).map_or(now, |i| i.not_after);
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_signing_key).map_err(failed("the CA"))?;
    let key = KeyPair::generate().map_err(failed("the serving key"))?;
    let mut params =
        CertificateParams::new(policy.names.clone()).map_err(failed("the serving certificate"))?;
    params.distinguished_name.push(
        DnType::CommonName,
        policy.names.first().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = offset(not_before);
    // Never outlives its CA.
    params.not_after = offset((now + policy.cert_validity).min(ca_not_after));
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(failed("the serving certificate"))?;
    Ok(Some(StoredCerts {
        bundle: bundle.iter().map(pem_of).collect(),
        ca_key,
        cert: cert.pem(),
        key: key.serialize_pem(),
    }))
}

fn seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The number of certificates in a PEM bundle.
pub fn count(bundle: &str) -> usize {
    ders(bundle).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CertPolicy {
        CertPolicy {
            ca_validity: Duration::from_secs(900),
            cert_validity: Duration::from_secs(300),
            names: vec!["inject.ns.svc".into(), "127.0.0.1".into()],
        }
    }

    fn fresh(now: SystemTime) -> StoredCerts {
        renew(None, Renewal::Authority, &policy(), now).unwrap().unwrap()
    }

    #[test]
    fn nothing_stored_makes_a_ca_and_a_certificate_for_the_names() {
        let now = SystemTime::now();
        assert_eq!(decide(None, &policy(), now), Renewal::Authority);
        let made = fresh(now);
        assert_eq!(count(&made.bundle), 1);
        let cert = first_info(&made.cert).unwrap();
        assert_eq!(
            cert.names,
            ["127.0.0.1", "inject.ns.svc"]
                .map(String::from)
                .into_iter()
                .collect()
        );
        assert_eq!(decide(Some(&made), &policy(), now), Renewal::Keep);
    }

    #[test]
    fn the_certificate_is_renewed_with_a_third_of_its_life_left_by_the_same_ca() {
        let now = SystemTime::now();
        let made = fresh(now);
        let later = now + Duration::from_secs(210);
        assert_eq!(
            decide(Some(&made), &policy(), now + Duration::from_secs(190)),
            Renewal::Keep
        );
        assert_eq!(decide(Some(&made), &policy(), later), Renewal::Certificate);
        let renewed = renew(Some(&made), Renewal::Certificate, &policy(), later)
            .unwrap()
            .unwrap();
        assert_eq!(renewed.bundle, made.bundle, "same CA");
        assert_ne!(renewed.cert, made.cert);
        assert_eq!(decide(Some(&renewed), &policy(), later), Renewal::Keep);
    }

    #[test]
    fn the_ca_is_replaced_near_its_end_and_the_old_one_stays_trusted_until_it_expires() {
        let now = SystemTime::now();
        let made = fresh(now);
        let late = now + Duration::from_secs(700);
        assert_eq!(decide(Some(&made), &policy(), late), Renewal::Authority);
        let rotated = renew(Some(&made), Renewal::Authority, &policy(), late)
            .unwrap()
            .unwrap();
        assert_eq!(count(&rotated.bundle), 2, "new and old CA");
        assert!(rotated.bundle.ends_with(&made.bundle), "the old CA comes second");
        assert_ne!(rotated.ca_key, made.ca_key);
        // The serving certificate never outlives its CA.
        let cert = first_info(&rotated.cert).unwrap();
        let ca = first_info(&rotated.bundle).unwrap();
        assert!(cert.not_after <= ca.not_after);
        // Past the old CA's end, the next renewal drops it.
        let after = now + Duration::from_secs(1000);
        let next = renew(Some(&rotated), Renewal::Certificate, &policy(), after)
            .unwrap()
            .unwrap();
        assert_eq!(count(&next.bundle), 1);
    }

    #[test]
    fn changed_names_or_unreadable_files_renew() {
        let now = SystemTime::now();
        let made = fresh(now);
        let mut more = policy();
        more.names.push("inject.ns.svc.cluster.local".into());
        assert_eq!(decide(Some(&made), &more, now), Renewal::Certificate);
        let broken = StoredCerts {
            bundle: "garbage".into(),
            ..made.clone()
        };
        assert_eq!(decide(Some(&broken), &policy(), now), Renewal::Authority);
        let no_key = StoredCerts {
            key: "garbage".into(),
            ..made
        };
        assert_eq!(decide(Some(&no_key), &policy(), now), Renewal::Certificate);
    }

    #[test]
    fn a_ca_key_that_is_not_the_current_cas_makes_a_new_ca() {
        let now = SystemTime::now();
        let (one, other) = (fresh(now), fresh(now));
        assert!(key_matches(&one.bundle, &one.ca_key));
        assert!(!key_matches(&one.bundle, &other.ca_key));
        assert!(!key_matches(&one.bundle, "garbage"));
        let mixed = StoredCerts {
            ca_key: other.ca_key.clone(),
            ..one.clone()
        };
        assert_eq!(decide(Some(&mixed), &policy(), now), Renewal::Authority);
        let healed = renew(Some(&mixed), Renewal::Authority, &policy(), now)
            .unwrap()
            .unwrap();
        assert!(key_matches(&healed.bundle, &healed.ca_key));
        assert_eq!(count(&healed.bundle), 2, "the old CA stays trusted");
    }
}
