//! The operator's command line (each flag also read from the environment).

use std::{net::SocketAddr, time::Duration};

use clap::{Parser, ValueEnum};
use leadership::validate::parse_duration;

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
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}
