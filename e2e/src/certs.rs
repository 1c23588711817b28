//! The control plane's own CA and certificates, made fresh for every start.

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Error;

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

/// Everything the control plane needs: a CA, the API server's serving certificate, an admin client
/// certificate in `system:masters`, and the service-account signing key.
#[derive(Debug)]
pub struct Certificates {
    /// The cluster CA.
    pub ca: Pem,
    /// kube-apiserver's serving certificate (127.0.0.1, localhost and the in-cluster names).
    pub apiserver: Pem,
    /// A client certificate for `admin`, in the group `system:masters`.
    pub admin: Pem,
    /// The key that signs service-account tokens (PKCS#8).
    pub service_account_key: String,
    /// Its public half, which verifies them.
    pub service_account_public_key: String,
}

fn failed(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |err| Error::Certificates(format!("{what}: {err}"))
}

impl Certificates {
    /// Makes a new CA and everything signed by it.
    pub fn generate() -> Result<Self, Error> {
        let ca_key = KeyPair::generate().map_err(failed("CA key"))?;
        let ca_key_pem = ca_key.serialize_pem();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed("CA"))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "leadership-e2e-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(failed("CA"))?;

        let names = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
        ];
        let mut server =
            CertificateParams::new(names.map(String::from).to_vec()).map_err(failed("server"))?;
        server
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        server
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().map_err(failed("server key"))?;
        let server_cert = server.signed_by(&server_key, &ca).map_err(failed("server"))?;

        let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(failed("admin"))?;
        admin.distinguished_name.push(DnType::CommonName, "admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate().map_err(failed("admin key"))?;
        let admin_cert = admin.signed_by(&admin_key, &ca).map_err(failed("admin"))?;

        let sa_key = KeyPair::generate().map_err(failed("service-account key"))?;
        Ok(Certificates {
            ca: Pem {
                cert: ca.pem(),
                key: ca_key_pem,
            },
            apiserver: Pem {
                cert: server_cert.pem(),
                key: server_key.serialize_pem(),
            },
            admin: Pem {
                cert: admin_cert.pem(),
                key: admin_key.serialize_pem(),
            },
            service_account_key: sa_key.serialize_pem(),
            service_account_public_key: sa_key.public_key_pem(),
        })
    }
}
