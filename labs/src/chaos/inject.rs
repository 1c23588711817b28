//! Injecting one planned fault: picking its target (the leader, or a unit by number), doing it
//! for its hold time, and noting it as [`Injected`].

use std::time::Duration;

use leadership::wire::monotonic_ns;
use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep};

use super::{
    Run,
    faults::{FaultKind, PlannedFault, Target},
    outcome::Injected,
    say,
};
use leadership_e2e::link::LinkState;

impl Run {
    pub(super) async fn inject(
        &mut self,
        n: usize,
        total: usize,
        fault: &PlannedFault,
    ) -> anyhow::Result<()> {
        let hold = Duration::from_millis(fault.hold_ms);
        let at_ns = monotonic_ns();
        let (target, hit_leader) = if fault.kind.targets_a_unit() {
            let (i, leads) = self.pick_unit(fault.target).await;
            (Some(i), leads)
        } else {
            (None, false)
        };
        let name = target.map(|i| self.units[i].name.clone());
        let mut detail = format!("{:.1}s", hold.as_secs_f64());
        match (fault.kind, target) {
            (FaultKind::KillSidecar, Some(i)) => {
                self.stop_unit(i, Signal::SIGKILL).await;
                sleep(hold).await;
                self.start_unit(i).await;
            }
            (FaultKind::TermSidecar, Some(i)) => {
                self.stop_unit(i, Signal::SIGTERM).await;
                sleep(hold).await;
                self.start_unit(i).await;
            }
            (FaultKind::SkewClock, Some(i)) => {
                self.stop_unit(i, Signal::SIGTERM).await;
                sleep(hold).await;
                self.units[i].rate = Some(fault.parameter);
                detail = format!("clock rate x{:.4}", fault.parameter);
                self.start_unit(i).await;
            }
            (FaultKind::PauseSidecar, Some(i)) => {
                if let Some(process) = &self.units[i].process {
                    process.signal(Signal::SIGSTOP);
                    sleep(hold).await;
                    process.signal(Signal::SIGCONT);
                }
            }
            (FaultKind::CutLink, Some(i)) => {
                self.units[i].link.set(LinkState::Cut);
                sleep(hold).await;
                self.units[i].link.set(LinkState::Up);
            }
            (FaultKind::SlowLink, Some(i)) => {
                let delay = Duration::from_millis(fault.parameter as u64);
                self.units[i].link.set(LinkState::Slow(delay));
                detail = format!("{detail} at +{} ms per chunk", delay.as_millis());
                sleep(hold).await;
                self.units[i].link.set(LinkState::Up);
            }
            (FaultKind::RestartApiServer, _) => {
                let began = Instant::now();
                self.plane.restart_component("kube-apiserver").await?;
                detail = format!("back in {:.1}s", began.elapsed().as_secs_f64());
            }
            (FaultKind::RestartEtcd, _) => {
                let began = Instant::now();
                self.plane.restart_component("etcd").await?;
                detail = format!("back in {:.1}s", began.elapsed().as_secs_f64());
            }
            (FaultKind::KillOperator, _) => {
                let i = self.active_operator().await.unwrap_or(0);
                if let Some(mut process) = self.operators[i].process.take() {
                    process.signal(Signal::SIGKILL);
                    let _ = process.exit_code().await;
                }
                sleep(hold).await;
                self.start_operator(i);
                self.record(
                    at_ns,
                    fault.kind,
                    Some(self.operators[i].identity.clone()),
                    false,
                    detail,
                );
                return Ok(());
            }
            (_, None) => unreachable!("faults aimed at a unit always have one"),
        }
        let who = name.as_deref().unwrap_or("control plane");
        say(
            self.started,
            &format!(
                "fault {n}/{total}: {} {who}{} ({detail})",
                fault.kind.name(),
                if hit_leader { " (the leader)" } else { "" }
            ),
        );
        self.record(at_ns, fault.kind, name, hit_leader, detail);
        Ok(())
    }

    async fn pick_unit(&mut self, target: Target) -> (usize, bool) {
        let leader = self.leader().await;
        let chosen = match (target, leader) {
            (Target::Leader, Some(i)) => i,
            (Target::Leader, None) => self.rng.below(self.units.len()),
            (Target::Unit(i), _) => i % self.units.len(),
        };
        (chosen, leader == Some(chosen))
    }

    fn record(
        &mut self,
        at_ns: u64,
        kind: FaultKind,
        target: Option<String>,
        hit_leader: bool,
        detail: String,
    ) {
        if kind == FaultKind::KillOperator {
            say(
                self.started,
                &format!(
                    "fault: kill-operator {} ({detail})",
                    target.as_deref().unwrap_or("?")
                ),
            );
        }
        self.injected.push(Injected {
            at_ns,
            kind,
            target,
            hit_leader,
            detail,
        });
    }
}
