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
/// certificate in `system:masters`, and the service-account signing key. The CA stays in memory
/// and issues the node's certificates too ([`Certificates::client`], [`Certificates::server`]).
pub struct Certificates {
    /// The cluster CA.
    pub ca: Pem,
    /// kube-apiserver's serving certificate (127.0.0.1, localhost, the in-cluster names and the
    /// addresses given to [`Certificates::generate`]).
    pub apiserver: Pem,
    /// A client certificate for `admin`, in the group `system:masters`.
    pub admin: Pem,
    /// The key that signs service-account tokens (PKCS#8).
    pub service_account_key: String,
    /// Its public half, which verifies them.
    pub service_account_public_key: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

fn failed(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |err| Error::Certificates(format!("{what}: {err}"))
}

impl Certificates {
    /// Makes a new CA and everything signed by it; the API server's certificate also names
    /// `addresses` (the node's address and the `kubernetes` Service's ClusterIP, in node mode).
    pub fn generate(addresses: &[Ipv4Addr]) -> Result<Self, Error> {
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
        let issuer = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(failed("CA"))?;
        let ca = Pem {
            cert: issuer.pem(),
            key: ca_key_pem,
        };
        let sa_key = KeyPair::generate().map_err(failed("service-account key"))?;
        let mut certs = Certificates {
            ca,
            apiserver: Pem {
                cert: String::new(),
                key: String::new(),
            },
            admin: Pem {
                cert: String::new(),
                key: String::new(),
            },
            service_account_key: sa_key.serialize_pem(),
            service_account_public_key: sa_key.public_key_pem(),
            issuer,
        };
        let names = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
        ];
        let mut ips = vec![Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, 0, 1)];
        ips.extend_from_slice(addresses);
        certs.apiserver = certs.server("kube-apiserver", &names, &ips)?;
        certs.admin = certs.client("admin", Some("system:masters"))?;
        Ok(certs)
    }

    /// A client certificate for the user `common_name`, in the group `organization` if given.
    pub fn client(&self, common_name: &str, organization: Option<&str>) -> Result<Pem, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed(common_name))?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        if let Some(organization) = organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, organization);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(common_name, params)
    }

    /// A serving certificate for these names and addresses.
    pub fn server(&self, common_name: &str, names: &[&str], ips: &[Ipv4Addr]) -> Result<Pem, Error> {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .map_err(failed(common_name))?;
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(*ip)));
        }
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(common_name, params)
    }

    fn sign(&self, what: &str, params: CertificateParams) -> Result<Pem, Error> {
        let key = KeyPair::generate().map_err(failed(what))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(failed(what))?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}
