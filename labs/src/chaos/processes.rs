//! The processes of a run: sidecars (each behind its own link, optionally with a skewed clock)
//! and operators, started, asked who leads, and stopped.

use std::time::Duration;

use anyhow::{Context, bail};
use leadership::{client::SocketClient, wire::monotonic_ns};
use leadership_kube::crd::LeadershipLease;
use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep, timeout};

use super::{
    APPLICATION, OPERATOR_LEASE, Operator, Run, Unit,
    credentials::{OPERATOR_ACCOUNT, SIDECAR_ACCOUNT},
    hostile::{HOSTILE, HostileUnit},
    say,
};
use leadership_e2e::{
    link::{Link, LinkState},
    units::{self, Process},
};

impl Run {
    /// Creates every process's Pod object and credentials (and the hostile unit's, when it runs),
    /// then starts the operators and the sidecars.
    pub(super) async fn start_everyone(&mut self) -> anyhow::Result<()> {
        let server = &self.plane.state().server;
        let api_address: std::net::SocketAddr = server
            .trim_start_matches("https://")
            .parse()
            .with_context(|| format!("the API server's address in {server}"))?;
        for i in 0..self.settings.units {
            let name = format!("{APPLICATION}-{i}");
            let link = Link::start(api_address).await?;
            let kubeconfig = self.logs.join(format!("{name}.kubeconfig"));
            self.pod_kubeconfig(&name, SIDECAR_ACCOUNT, true, Some(&link), &kubeconfig)
                .await?;
            self.units.push(Unit {
                socket: std::env::temp_dir()
                    .join(format!("leadership-chaos-{}-{name}.sock", std::process::id())),
                record: self.settings.out.join(format!("{name}.record.jsonl")),
                name,
                link,
                kubeconfig,
                process: None,
                starts: 0,
                rate: None,
            });
        }
        for identity in ["operator-a", "operator-b"] {
            let kubeconfig = self.logs.join(format!("{identity}.kubeconfig"));
            self.pod_kubeconfig(identity, OPERATOR_ACCOUNT, false, None, &kubeconfig)
                .await?;
            self.operators.push(Operator {
                identity: identity.into(),
                kubeconfig,
                process: None,
                starts: 0,
            });
        }
        if self.settings.hostile {
            self.hostile = Some(HostileUnit::prepare(self).await?);
        }
        for i in 0..self.operators.len() {
            self.start_operator(i);
        }
        for i in 0..self.units.len() {
            self.start_unit(i).await;
        }
        say(
            self.started,
            &format!(
                "{} sidecars and 2 operators running{}",
                self.units.len(),
                if self.settings.hostile {
                    format!(", and the hostile unit {HOSTILE} ready")
                } else {
                    String::new()
                }
            ),
        );
        Ok(())
    }

    pub(super) fn start_operator(&mut self, i: usize) {
        let operator = &mut self.operators[i];
        operator.starts += 1;
        let log = self
            .logs
            .join(format!("{}-{}.log", operator.identity, operator.starts));
        operator.process = Some(Process::start(
            &self.settings.operator,
            &units::operator_args(APPLICATION, &operator.identity),
            &operator.kubeconfig,
            log,
        ));
    }

    pub(super) async fn start_unit(&mut self, i: usize) {
        let claim_duration = self.settings.claim_duration;
        let unit = &mut self.units[i];
        unit.starts += 1;
        let mut args =
            units::sidecar_args(APPLICATION, APPLICATION, &unit.name, &unit.socket, claim_duration);
        args.extend(["--record".to_owned(), unit.record.display().to_string()]);
        let env = match unit.rate {
            Some(rate) => vec![
                (
                    "LD_PRELOAD".to_owned(),
                    self.settings.faketime.display().to_string(),
                ),
                ("FAKETIME".to_owned(), format!("+0 x{rate:.4}")),
            ],
            None => Vec::new(),
        };
        let log = self.logs.join(format!("{}-{}.log", unit.name, unit.starts));
        unit.process = Some(Process::start_with_env(
            &self.settings.sidecar,
            &args,
            &unit.kubeconfig,
            log,
            &env,
        ));
        let client = SocketClient::new(&unit.socket);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((status, _)) = client.call(http::Method::GET, "/readyz", None).await
                && status.is_success()
            {
                return;
            }
            sleep(Duration::from_millis(50)).await;
        }
        say(
            self.started,
            &format!("warning: {} not ready after 30 s", unit.name),
        );
    }

    /// The index of the unit that reports leader now, if one does.
    pub(super) async fn leader(&self) -> Option<usize> {
        for (i, unit) in self.units.iter().enumerate() {
            if unit.process.is_none() {
                continue;
            }
            let asked = timeout(
                Duration::from_millis(300),
                SocketClient::new(&unit.socket).status(),
            )
            .await;
            if let Ok(Ok(status)) = asked
                && status.leader
            {
                return Some(i);
            }
        }
        None
    }

    pub(super) async fn first_leader(&self) -> anyhow::Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(i) = self.leader().await {
                say(self.started, &format!("{} leads", self.units[i].name));
                return Ok(monotonic_ns());
            }
            sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "no sidecar became leader within 60 s; logs in {}",
            self.logs.display()
        )
    }

    /// Stops a unit's process: SIGKILL (noting when it was gone) or SIGTERM.
    pub(super) async fn stop_unit(&mut self, i: usize, signal: Signal) {
        if let Some(mut process) = self.units[i].process.take() {
            let pid = process.pid().as_raw();
            process.signal(signal);
            let _ = process.exit_code().await;
            if signal == Signal::SIGKILL {
                self.killed_at
                    .insert(u32::try_from(pid).unwrap_or(0), monotonic_ns());
            }
        }
    }

    pub(super) async fn active_operator(&self) -> Option<usize> {
        let api = self.api::<LeadershipLease>();
        let lease = timeout(Duration::from_secs(2), api.get(OPERATOR_LEASE))
            .await
            .ok()?
            .ok()?;
        let holder = lease.status?.holder?;
        self.operators.iter().position(|o| o.identity == holder)
    }

    pub(super) async fn stop_everyone(&mut self) {
        say(self.started, "stopping: SIGTERM to every sidecar and operator");
        for unit in &self.units {
            unit.link.set(LinkState::Up);
        }
        for i in 0..self.units.len() {
            self.stop_unit(i, Signal::SIGTERM).await;
        }
        for operator in &mut self.operators {
            if let Some(mut process) = operator.process.take() {
                process.signal(Signal::SIGTERM);
                let _ = process.exit_code().await;
            }
        }
    }
}
