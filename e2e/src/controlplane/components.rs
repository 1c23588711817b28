//! The control plane's processes: each component in its own process group under a watchdog
//! shell, started, waited for, stopped and restarted; and what `status` reports of them.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use serde::{Deserialize, Serialize};

use super::ControlPlane;
use crate::Error;

/// Runs the component, and stops it when the owner process is gone (owner 0: no owner); then
/// takes the node's traces away (if it has one) and removes the control plane's folder. A component that ends by itself while its owner lives
/// leaves the folder alone, so that its log can say why.
const WATCHDOG: &str = r#"
owner=$1; shift
[ "$owner" = 0 ] && exec "$@"
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT HUP
while kill -0 "$owner" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5 & wait $!; done
if kill -0 "$owner" 2>/dev/null; then wait "$child"; exit $?; fi
kill -TERM "$child" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$child" 2>/dev/null || break; sleep 0.5; done
kill -KILL "$child" 2>/dev/null
wait "$child" 2>/dev/null
node="$LEADERSHIP_E2E_DIR/node.sh"
[ -f "$node" ] && flock "$node" bash "$node" down "$LEADERSHIP_E2E_DIR"
rm -rf "$LEADERSHIP_E2E_DIR"
"#;

/// One running component.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Component {
    /// The component's name: `etcd`, `kube-apiserver` or `kube-controller-manager`.
    pub name: String,
    /// The process group it runs in.
    pub pgid: i32,
    /// The program and its arguments, kept so that it can be restarted the same way.
    pub command: Vec<String>,
    /// Its log file.
    pub log: PathBuf,
}

impl ControlPlane {
    /// The components that are running now.
    pub fn running(&self) -> Vec<&Component> {
        self.state
            .components
            .iter()
            .filter(|c| group_alive(c.pgid))
            .collect()
    }

    /// Stops one component (SIGTERM, then SIGKILL after 15 s); for restart tests.
    pub fn stop_component(&self, name: &str) -> Result<(), Error> {
        let component = self.component(name)?;
        self.terminate(component);
        Ok(())
    }

    /// Starts a stopped component again with the same command line.
    pub fn start_component(&mut self, name: &str) -> Result<(), Error> {
        let command = self.component(name)?.command.clone();
        self.state.components.retain(|c| c.name != name);
        self.launch(name, command)?;
        self.save()
    }

    /// Stops a component and starts it again, then waits until the API is ready again.
    pub async fn restart_component(&mut self, name: &str) -> Result<(), Error> {
        self.stop_component(name)?;
        self.start_component(name)?;
        self.wait_for_api(Duration::from_secs(90)).await.map(drop)
    }

    pub(super) fn component(&self, name: &str) -> Result<&Component, Error> {
        self.state
            .components
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::State(format!("no component named {name}")))
    }

    pub(super) fn launch(&mut self, name: &str, command: Vec<String>) -> Result<(), Error> {
        let log = self.state.dir.join("logs").join(format!("{name}.log"));
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| Error::io(format!("open {}", log.display()), e))?;
        let err = out.try_clone().map_err(|e| Error::io("open log", e))?;
        let owner = self.state.owner.unwrap_or(0).to_string();
        let child = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(owner)
            .args(&command)
            .env("LEADERSHIP_E2E_DIR", &self.state.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io(format!("start {name}"), e))?;
        let pgid = i32::try_from(child.id()).map_err(|_| Error::State("pid out of range".into()))?;
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), child);
        self.state.components.push(Component {
            name: name.to_owned(),
            pgid,
            command,
            log,
        });
        Ok(())
    }

    pub(super) fn terminate(&self, component: &Component) {
        let group = Pid::from_raw(component.pgid);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            // Reap our own child so that it does not linger as a zombie in the group.
            if let Some(child) = children.get_mut(&component.name) {
                let _ = child.try_wait();
            }
            if !group_alive(component.pgid) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = killpg(group, Signal::SIGKILL);
                if let Some(child) = children.get_mut(&component.name) {
                    let _ = child.wait();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        children.remove(&component.name);
    }

    pub(super) async fn wait<F, Fut>(&self, name: &str, limit: Duration, mut ready: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, Error>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if ready().await? {
                return Ok(());
            }
            let component = self.component(name)?;
            if !group_alive(component.pgid) || self.exited(name) {
                return Err(Error::Start {
                    component: name.to_owned(),
                    log: tail(&component.log),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::Start {
                    component: format!("{name} (not ready after {limit:?})"),
                    log: tail(&component.log),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn exited(&self, name: &str) -> bool {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children
            .get_mut(name)
            .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))))
    }
}

fn group_alive(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
