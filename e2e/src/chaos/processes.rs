//! The processes of a run: sidecars (each behind its own link, optionally with a skewed clock)
//! and operators, started, asked who leads, and stopped.

use std::time::Duration;

use anyhow::{Context, bail};
use kube::{Api, api::PostParams};
use leadership::{client::SocketClient, wire::monotonic_ns};
use leadership_kube::crd::LeadershipLease;
use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep, timeout};

use super::{APPLICATION, OPERATOR_LEASE, Operator, Run, Unit, say};
use crate::{
    link::{Link, LinkState},
    units::{self, Process},
};

impl Run {
    pub(super) async fn start_everyone(&mut self) -> anyhow::Result<()> {
        let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(self.client.clone(), APPLICATION);
        let server = &self.plane.state().server;
        let api_address: std::net::SocketAddr = server
            .trim_start_matches("https://")
            .parse()
            .with_context(|| format!("the API server's address in {server}"))?;
        for i in 0..self.settings.units {
            let name = format!("{APPLICATION}-{i}");
            pods.create(&PostParams::default(), &units::unit_pod(&name))
                .await
                .with_context(|| format!("create the Pod object {name}"))?;
            let link = Link::start(api_address).await?;
            let kubeconfig = self.logs.join(format!("{name}.kubeconfig"));
            link.kubeconfig(self.plane.kubeconfig(), &kubeconfig)?;
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
            self.operators.push(Operator {
                identity: identity.into(),
                process: None,
                starts: 0,
            });
        }
        for i in 0..self.operators.len() {
            self.start_operator(i);
        }
        for i in 0..self.units.len() {
            self.start_unit(i).await;
        }
        say(
            self.started,
            &format!("{} sidecars and 2 operators running", self.units.len()),
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
            self.plane.kubeconfig(),
            log,
        ));
    }

    pub(super) async fn start_unit(&mut self, i: usize) {
        let claim_duration = self.claim_duration();
        let unit = &mut self.units[i];
        unit.starts += 1;
        let mut args = units::sidecar_args(
            APPLICATION,
            APPLICATION,
            &unit.name,
            &unit.socket,
            &claim_duration,
        );
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
        let api = Api::<LeadershipLease>::namespaced(self.client.clone(), APPLICATION);
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
