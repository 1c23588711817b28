//! HTTPS for the webhook: a certificate that can be swapped while serving (renewals need no
//! restart), and an HTTP/1.1 loop over TLS connections.

use std::{
    fmt,
    sync::{Arc, RwLock},
    time::Duration,
};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The certificate served now; none until the first one is loaded.
pub struct CurrentCert {
    provider: Arc<CryptoProvider>,
    current: RwLock<Option<(String, Arc<CertifiedKey>)>>,
}

impl fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentCert")
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl Default for CurrentCert {
    fn default() -> Self {
        CurrentCert {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            current: RwLock::new(None),
        }
    }
}

impl CurrentCert {
    /// Serves `cert_pem` (the chain) with `key_pem` from now on; false if it was served already.
    pub fn load(&self, cert_pem: &str, key_pem: &str) -> Result<bool, String> {
        if self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|(pem, _)| pem == cert_pem)
        {
            return Ok(false);
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls.crt: {e}"))?;
        if chain.is_empty() {
            return Err("tls.crt holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("tls.key: {e}"))?;
        let signing = self
            .provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| format!("tls.key: {e}"))?;
        let certified = Arc::new(CertifiedKey::new(chain, signing));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some((cert_pem.to_owned(), certified));
        Ok(true)
    }

    /// Whether a certificate is loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// A TLS acceptor that always serves the current certificate.
    pub fn acceptor(self: &Arc<Self>) -> TlsAcceptor {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| b.with_no_client_auth().with_cert_resolver(self.clone()))
            .unwrap_or_else(|_| {
                ServerConfig::builder()
                    .with_no_client_auth()
                    .with_cert_resolver(self.clone())
            });
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, key)| key.clone())
    }
}

/// How long a client may take for the TLS handshake and for a request's headers.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS on every connection of `listener`, until `stop` fires.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, router: Router, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(err) => {
                debug!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (acceptor, service) = (acceptor.clone(), TowerToHyperService::new(router.clone()));
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(CLIENT_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => return debug!(error = %err, "TLS handshake failed"),
                Err(_) => return debug!("TLS handshake timed out"),
            };
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(CLIENT_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(err) = connection.await {
                debug!(error = %err, "webhook connection ended with an error");
            }
        });
    }
}
