//! Leadership on Kubernetes: the `LeadershipLease` custom resource ([`crd`]) and the store that
//! implements the leadership interfaces on it ([`store`]).
#![forbid(unsafe_code)]

pub mod crd;
pub mod store;

pub use store::{ExpiryAuthority, KubeStore, Scope, StoreConfig};

/// A client from the usual configuration (in-cluster, or `KUBECONFIG`), and the namespace to use:
/// `namespace` if given, else the configuration's default.
pub async fn connect(namespace: Option<String>) -> leadership::Result<(kube::Client, String)> {
    let client = kube::Client::try_default().await.map_err(|e| leadership::Error::Unavailable {
        context: "no Kubernetes client configuration: in a pod the ServiceAccount is used; elsewhere set KUBECONFIG"
            .into(),
        source: Some(Box::new(e)),
    })?;
    let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
    Ok((client, namespace))
}
