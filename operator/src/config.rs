//! The operator's command line (each flag also read from the environment).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use leadership::validate::parse_duration;
use leadership_runtime::logs::LogFormat;

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// Reconciles LeadershipLeases: clears expired claims, carries out revocations, releases claims
/// of pods whose containers all terminated, and reports conditions, Events and metrics.
#[derive(Clone, Debug, Parser)]
#[command(name = "leadership-operator", version, about)]
pub struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "LEADERSHIP_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// The namespace of the operator's own leadership lease (default: the pod's, then the
    /// kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's name in its own leadership (default: the pod's name, then the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// The guarantee of the operator's own leadership (replicas fail over within about 2x this).
    #[arg(long, env = "LEADERSHIP_OPERATOR_CLAIM_DURATION", default_value = "5s", value_parser = duration)]
    pub claim_duration: Duration,
    /// Abandon a handover whose target has not taken the lease within this long.
    #[arg(long, env = "LEADERSHIP_HANDOVER_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub handover_timeout: Duration,
    /// Where to serve /healthz, /readyz and /metrics.
    #[arg(long, env = "LEADERSHIP_ADMIN_ADDRESS", default_value = "0.0.0.0:8080")]
    pub admin_address: SocketAddr,
    /// Log format.
    #[arg(long, env = "LEADERSHIP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// The sidecar injection webhook.
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// The sidecar injection webhook's flags. Every replica serves the webhook, leading or not.
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// Serve the sidecar injection webhook (HTTPS, path /inject) here. Unset: no webhook.
    #[arg(long, env = "LEADERSHIP_WEBHOOK_ADDRESS")]
    pub webhook_address: Option<SocketAddr>,
    /// The sidecar to inject, as the chart renders it (needed with --webhook-address).
    #[arg(long, env = "LEADERSHIP_SIDECAR_TEMPLATE")]
    pub sidecar_template: Option<PathBuf>,
    /// The Secret, in the operator's namespace, that holds the webhook's serving certificate
    /// (`tls.crt`, `tls.key`, and `ca.crt`: the CAs to trust).
    #[arg(
        long,
        env = "LEADERSHIP_WEBHOOK_SECRET",
        default_value = "leadership-webhook-tls"
    )]
    pub webhook_secret: String,
    /// The Secret, in the operator's namespace, that holds the managed CA's key apart from the
    /// serving certificate (default: the --webhook-secret name and `-ca`).
    #[arg(long, env = "LEADERSHIP_WEBHOOK_CA_SECRET")]
    pub webhook_ca_secret: Option<String>,
    /// Who makes the certificate: `managed` (the operator makes and rotates its own CA and
    /// serving certificate, and keeps the webhook's caBundle) or `external` (cert-manager, or
    /// anyone, writes tls.crt and tls.key and the caBundle; the operator only serves them).
    #[arg(long, env = "LEADERSHIP_WEBHOOK_CERTS", value_enum, default_value_t = CertSource::Managed)]
    pub webhook_certs: CertSource,
    /// The MutatingWebhookConfiguration whose caBundle the operator keeps (managed certificates).
    #[arg(long, env = "LEADERSHIP_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,
    /// The Service in front of the webhook: the certificate is for NAME.NAMESPACE.svc (and
    /// .svc.cluster.local).
    #[arg(long, env = "LEADERSHIP_WEBHOOK_SERVICE")]
    pub webhook_service: Option<String>,
    /// More DNS names or IP addresses for the certificate, comma-separated.
    #[arg(long, env = "LEADERSHIP_WEBHOOK_HOSTS", value_delimiter = ',')]
    pub webhook_hosts: Vec<String>,
    /// The managed serving certificate's validity; it is renewed with a third of it left.
    #[arg(long, env = "LEADERSHIP_WEBHOOK_CERT_VALIDITY", default_value = "8760h", value_parser = duration)]
    pub webhook_cert_validity: Duration,
    /// The managed CA's validity (at least 3x the certificate's); it is replaced with a third of
    /// it left, and trusted alongside its successor until it expires.
    #[arg(long, env = "LEADERSHIP_WEBHOOK_CA_VALIDITY", default_value = "43800h", value_parser = duration)]
    pub webhook_ca_validity: Duration,
}

/// Who makes the webhook's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CertSource {
    /// The operator.
    Managed,
    /// cert-manager, or anyone else.
    External,
}
