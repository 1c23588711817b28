//! The command line: flags (each also read from the environment) and the client subcommands.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use leadership::{client::DEFAULT_SOCKET, validate::parse_duration};
use leadership_kube::ExpiryAuthority;
use leadership_runtime::logs::LogFormat;

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// The admin address without `--admin-address`: a port apps rarely use (the chart's
/// `sidecar.adminPort` has the same default).
pub const DEFAULT_ADMIN_ADDRESS: &str = "0.0.0.0:9476";

/// Keeps this pod's leadership of its application and serves it to the app containers.
#[derive(Debug, Parser)]
#[command(name = "leadership-sidecar", version, about)]
pub struct Cli {
    /// What to do; without a subcommand, run the sidecar.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The sidecar's settings.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The settings of a running sidecar.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// The application whose leadership this unit takes part in.
    #[arg(long, env = "LEADERSHIP_APPLICATION", global = true)]
    pub application: Option<String>,
    /// This unit's name: the pod's name.
    #[arg(long, env = "POD_NAME", global = true)]
    pub unit: Option<String>,
    /// The namespace of the lease (default: the pod's, then the kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE", global = true)]
    pub namespace: Option<String>,
    /// The Unix socket served to the app containers (mode 0660).
    #[arg(long, env = "LEADERSHIP_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,
    /// The guarantee d: "leader" always means leader for at least d more (1s to 5m).
    #[arg(long, env = "LEADERSHIP_CLAIM_DURATION", default_value = "5s", value_parser = duration, global = true)]
    pub claim_duration: Duration,
    /// The lease length L each claim asks for (at least 2d, at most 10m; default 4d, at most 10m).
    /// A crashed leader is replaced about L after its last renewal; a leader renews once per
    /// L − d minus a few retry intervals, so a longer lease writes less often for the same
    /// guarantee.
    #[arg(long, env = "LEADERSHIP_LEASE_LENGTH", value_parser = duration, global = true)]
    pub lease_length: Option<Duration>,
    /// Who frees a lease whose holder stopped renewing: `operator` (the default: the operator
    /// clears the run-out claim and this unit takes only a free lease, the one grant the chart's
    /// admission policy admits) or `units` (this unit takes over a claim it judges run out; only
    /// for namespaces whose pods are all trusted, without the chart's policy).
    #[arg(long, env = "LEADERSHIP_EXPIRY_AUTHORITY", default_value_t = ExpiryAuthority::Operator, global = true)]
    pub expiry_authority: ExpiryAuthority,
    /// Where to serve /healthz, /readyz and /metrics over TCP, for probes and Prometheus.
    #[arg(
        long,
        env = "LEADERSHIP_ADMIN_ADDRESS",
        default_value = DEFAULT_ADMIN_ADDRESS,
        global = true
    )]
    pub admin_address: SocketAddr,
    /// Append every change of this unit's leadership to this file, as JSON lines timed on the
    /// machine's CLOCK_MONOTONIC (for the fault checker, `e2e/chaos`).
    #[arg(long, env = "LEADERSHIP_RECORD", global = true)]
    pub record: Option<PathBuf>,
    /// Run this command (through `sh -c`) when this unit becomes leader, with the status as JSON
    /// on stdin and LEADERSHIP_EVENT, _APPLICATION, _NAMESPACE, _UNIT, _TERM, _LEADER in its
    /// environment. It never delays the tracker.
    #[arg(long, env = "LEADERSHIP_ON_ELECTED", global = true)]
    pub on_elected: Option<String>,
    /// Run this command when this unit stops being leader (as --on-elected).
    #[arg(long, env = "LEADERSHIP_ON_DEPOSED", global = true)]
    pub on_deposed: Option<String>,
    /// Kill a hook that runs longer than this.
    #[arg(long, env = "LEADERSHIP_HOOK_TIMEOUT", default_value = "30s", value_parser = duration, global = true)]
    pub hook_timeout: Duration,
    /// Log format.
    #[arg(long, env = "LEADERSHIP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,
}

/// Client subcommands, for exec probes and shell scripts; they ask a running sidecar.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Exit 0 if this unit is leader, 1 if not, 2 on error.
    IsLeader,
    /// Wait until this unit is leader; exit 0 then, 1 on timeout, 2 on error.
    WaitLeader(WaitArgs),
    /// Wait until this unit is not guaranteed leader; exit 0 then, 1 on timeout, 2 on error.
    WaitMinion(WaitArgs),
    /// Print the status as JSON.
    Status,
    /// Step down now; prints whether a lease was released.
    Release,
    /// Say this unit's app should not lead now, and why (a leader hands over to a healthy
    /// standby; a standby lets the others take a free lease first).
    Ineligible(IneligibleArgs),
    /// Say this unit's app may lead again.
    Eligible,
}

/// Why the app should not lead now.
#[derive(Clone, Debug, Args)]
pub struct IneligibleArgs {
    /// The reason, one line (for example "warming up").
    pub reason: String,
}

/// How long a wait subcommand waits.
#[derive(Clone, Debug, Args)]
pub struct WaitArgs {
    /// Give up after this long (default: wait for ever).
    #[arg(long, value_parser = duration)]
    pub timeout: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use leadership::tracker::timing::DEFAULT_CLAIM_DURATION;

    use super::*;

    #[test]
    fn the_default_guarantee_is_the_one_the_webhook_and_docs_assume() {
        let cli = Cli::try_parse_from(["leadership-sidecar"]).unwrap();
        assert_eq!(cli.run.claim_duration, DEFAULT_CLAIM_DURATION);
        assert_eq!(cli.run.lease_length, None);
    }

    #[test]
    fn the_operator_judges_expiry_unless_told_otherwise_and_nothing_else_is_accepted() {
        let cli = Cli::try_parse_from(["leadership-sidecar"]).unwrap();
        assert_eq!(cli.run.expiry_authority, ExpiryAuthority::Operator);
        let units = Cli::try_parse_from(["leadership-sidecar", "--expiry-authority", "units"]).unwrap();
        assert_eq!(units.run.expiry_authority, ExpiryAuthority::Units);
        let bad = Cli::try_parse_from(["leadership-sidecar", "--expiry-authority", "nobody"]).unwrap_err();
        assert!(bad.to_string().contains("operator or units"), "{bad}");
    }
}
