//! What the benchmark reads from the system: the API server's request counters, a process's
//! memory and CPU time from `/proc`, the machine and the versions measured.

use anyhow::Context;
use std::{collections::BTreeMap, time::Duration};

use kube::Client;
use tokio::time::sleep;

/// (requests, writes) so far to each of `resources` (`None`: every resource), from one read of
/// the API server's `apiserver_request_total`.
pub async fn request_counts(client: &Client, resources: &[Option<&str>]) -> anyhow::Result<Vec<(f64, f64)>> {
    let text = apiserver_metrics(client).await?;
    Ok(resources
        .iter()
        .map(|resource| counts_in(&text, *resource))
        .collect())
}

/// The API server's own `/metrics`, as text.
pub async fn apiserver_metrics(client: &Client) -> anyhow::Result<String> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    Ok(client.request_text(request).await?)
}

/// The API server's live Go heap, in MiB: what its last garbage collection found reachable
/// (`go_gc_heap_live_bytes`). Unlike its resident memory, it falls again when a load goes away.
pub async fn apiserver_heap_mib(client: &Client) -> anyhow::Result<f64> {
    let text = apiserver_metrics(client).await?;
    let bytes: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("go_gc_heap_live_bytes "))
        .context("no go_gc_heap_live_bytes in the API server's metrics")?
        .trim()
        .parse()?;
    Ok(bytes / (1024.0 * 1024.0))
}

/// The sum of the series of the metric `name` in the metrics `text` whose labels include every one
/// of `labels` (`key="value"`, as the text writes them).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    let series = format!("{name}{{");
    text.lines()
        .filter(|line| line.starts_with(&series))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(head, _)| labels.iter().all(|label| head.contains(label)))
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// (requests, writes) to `resource` (or to every resource) in the metrics `text`.
fn counts_in(text: &str, resource: Option<&str>) -> (f64, f64) {
    let wanted = resource.map_or_else(String::new, |r| format!("resource=\"{r}\""));
    let mut requests = 0.0;
    let mut writes = 0.0;
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if !labels.contains(&wanted) {
            continue;
        }
        let value: f64 = value.parse().unwrap_or(0.0);
        requests += value;
        if [
            "verb=\"POST\"",
            "verb=\"PUT\"",
            "verb=\"PATCH\"",
            "verb=\"DELETE\"",
            "verb=\"APPLY\"",
        ]
        .iter()
        .any(|v| labels.contains(v))
        {
            writes += value;
        }
    }
    (requests, writes)
}

/// The process named `name` (by its command name) in the process group `pgid`, if any: a
/// control-plane component runs under a watchdog in its group.
pub fn process_in_group(pgid: u32, name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1;
        let group: u32 = rest.split_whitespace().nth(2)?.parse().ok()?;
        (group == pgid && name.starts_with(comm)).then_some(pid)
    })
}

/// A process's resident memory in MiB.
pub fn process_rss_mib(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// A process's CPU time (user + system) in seconds.
fn process_cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A process's CPU use over `window`, in % of one core.
pub async fn cpu_percent(pid: Option<u32>, window: Duration) -> Option<f64> {
    let meter = CpuMeter::start(&[pid]);
    sleep(window).await;
    meter.percent()[0]
}

/// The CPU use of some processes from a start until now.
pub struct CpuMeter {
    pids: Vec<Option<u32>>,
    before: Vec<Option<f64>>,
    started: std::time::Instant,
}

impl CpuMeter {
    /// Starts measuring `pids` (a missing pid measures as `None`).
    pub fn start(pids: &[Option<u32>]) -> Self {
        CpuMeter {
            pids: pids.to_vec(),
            before: pids.iter().map(|pid| process_cpu_seconds(*pid)).collect(),
            started: std::time::Instant::now(),
        }
    }

    /// Each process's CPU use since the start, in % of one core, in the order given.
    pub fn percent(&self) -> Vec<Option<f64>> {
        let seconds = self.started.elapsed().as_secs_f64();
        self.pids
            .iter()
            .zip(&self.before)
            .map(|(pid, before)| Some((process_cpu_seconds(*pid)? - (*before)?) / seconds * 100.0))
            .collect()
    }
}

/// The machine: CPUs, memory, CPU model, kernel.
pub fn machine() -> BTreeMap<String, String> {
    let mut machine = BTreeMap::new();
    machine.insert(
        "cpus".into(),
        std::thread::available_parallelism().map_or("?".into(), |n| n.to_string()),
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(total) = meminfo.lines().find(|l| l.starts_with("MemTotal:")) {
        machine.insert(
            "memory".into(),
            total.trim_start_matches("MemTotal:").trim().into(),
        );
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(model) = cpuinfo.lines().find(|l| l.starts_with("model name")) {
        machine.insert("cpu".into(), model.split(':').nth(1).unwrap_or("").trim().into());
    }
    machine.insert(
        "kernel".into(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .into(),
    );
    machine
}

/// The versions of everything measured, with `kubernetes` the control plane's.
pub fn versions(kubernetes: &str) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    versions.insert("kubernetes".into(), kubernetes.into());
    versions.insert("leadership".into(), env!("CARGO_PKG_VERSION").into());
    versions.insert("client-go".into(), "v0.36.3".into());
    versions.insert("kube-lease-manager".into(), "0.13.1".into());
    for (name, command) in [("rustc", ["rustc", "--version"]), ("go", ["go", "version"])] {
        if let Ok(out) = std::process::Command::new(command[0]).arg(command[1]).output() {
            versions.insert(name.into(), String::from_utf8_lossy(&out.stdout).trim().into());
        }
    }
    versions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_summed_over_the_series_whose_labels_match() {
        let text = "\
# HELP apiserver_flowcontrol_current_inqueue_requests [BETA] Number of requests queued
apiserver_flowcontrol_current_inqueue_requests{flow_schema=\"service-accounts\",priority_level=\"workload-low\"} 7
apiserver_flowcontrol_current_inqueue_requests{flow_schema=\"global-default\",priority_level=\"workload-low\"} 2
apiserver_flowcontrol_current_inqueue_requests{flow_schema=\"leadership\",priority_level=\"leadership\"} 1
apiserver_flowcontrol_current_inqueue_requests_total{priority_level=\"workload-low\"} 100
";
        let name = "apiserver_flowcontrol_current_inqueue_requests";
        assert_eq!(metric_sum(text, name, &["priority_level=\"workload-low\""]), 9.0);
        assert_eq!(metric_sum(text, name, &[]), 10.0);
        assert_eq!(metric_sum(text, name, &["priority_level=\"exempt\""]), 0.0);
    }
}
