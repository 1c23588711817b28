//! The Kubernetes client every process of the project uses: kube's usual configuration
//! (in-cluster, or `KUBECONFIG`) and its authentication, over one HTTP/2 connection where the API
//! server offers it (it always does over TLS). A unit's lease watch and its claims then share one
//! connection and one TLS session, where HTTP/1.1 holds a connection for the watch and another for
//! the writes: the API server keeps half the connections, and a unit starts with one handshake.

use std::time::Duration;

use hyper_util::{client::legacy, rt::TokioExecutor};
use kube::client::{Body, ClientBuilder, ConfigExt};
use tower::ServiceBuilder;

/// How often an idle HTTP/2 connection is pinged, so that a connection the network dropped is
/// noticed (and a watch on it restarted) within this plus [`PING_TIMEOUT`].
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// A client for `config`: HTTP/2 when TLS negotiates it, else HTTP/1.1, with the configuration's
/// base URL, TLS server name, (refreshed as kube refreshes them: a projected token, an exec plugin)
/// and extra headers (impersonation).
pub fn client(config: kube::Config) -> kube::Result<kube::Client> {
    let mut http = legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let mut tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|e| kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(e)))?;
        tls = tls.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let tls = tls.enable_http1().enable_http2().wrap_connector(http);
    let connections = legacy::Client::builder(TokioExecutor::new())
        .http2_keep_alive_interval(PING_INTERVAL)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .build::<_, Body>(tls);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(connections);
    Ok(ClientBuilder::new(service, config.default_namespace).build())
}

/// A client from the usual configuration (in-cluster, or `KUBECONFIG`), and the namespace to use:
/// `namespace` if given, else the configuration's default.
pub async fn connect(namespace: Option<String>) -> leadership::Result<(kube::Client, String)> {
    let unavailable = |source: Box<dyn std::error::Error + Send + Sync>| {
        leadership::Error::Unavailable {
        context: "no Kubernetes client configuration: in a pod the ServiceAccount is used; elsewhere set KUBECONFIG"
            .into(),
        source: Some(source),
    }
    };
    let config = kube::Config::infer()
        .await
        .map_err(|e| unavailable(Box::new(e)))?;
    let client = client(config).map_err(|e| unavailable(Box::new(e)))?;
    let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
    Ok((client, namespace))
}
