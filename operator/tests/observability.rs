//! The metrics, the alert rules and the dashboard: the metrics pass `promtool check metrics`, the
//! chart's rules pass `promtool check rules` and fire as intended under `promtool test rules`,
//! and every metric the rules and the dashboard query is one the operator or the sidecar exports.

use std::{
    collections::BTreeSet,
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use leadership_e2e::chart::{document, render};
use leadership_operator::metrics::{KindLabel, LeaseLabels, Metrics as OperatorMetrics, OutcomeLabel};
use leadership_sidecar::metrics::{ClaimLabels, HookLabels, Metrics as SidecarMetrics, RequestLabels};

/// promtool, built once from the Go module proxy by `e2e/tools/promtool` (or `LEADERSHIP_PROMTOOL`).
fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("LEADERSHIP_PROMTOOL") {
        return path.into();
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../e2e/tools/promtool");
    let output = Command::new(script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run e2e/tools/promtool");
    assert!(output.status.success(), "e2e/tools/promtool failed");
    String::from_utf8(output.stdout).unwrap().trim().into()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leadership-observability-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The operator's metrics with every family holding a series.
fn operator_metrics() -> String {
    let metrics = OperatorMetrics::default();
    let labels = LeaseLabels {
        namespace: "shop".into(),
        application: "web".into(),
    };
    metrics.set_lease(&labels, true, 3);
    metrics.transitions.get_or_create(&labels).inc();
    metrics.failover_seconds.observe(0.3);
    metrics.reconcile_seconds.observe(0.004);
    metrics.expiries.inc();
    metrics.pod_releases.inc();
    for family in [
        &metrics.revocations,
        &metrics.handovers,
        &metrics.reconcile_errors,
        &metrics.write_conflicts,
    ] {
        family.get_or_create(&KindLabel { kind: "done".into() }).inc();
    }
    metrics
        .webhook_requests
        .get_or_create(&OutcomeLabel {
            outcome: "injected".into(),
        })
        .inc();
    metrics.webhook_certificate_expiry.set(1_900_000_000);
    metrics.active.set(1);
    metrics.pods_indexed.set(3);
    metrics.events_dropped.inc();
    metrics.render()
}

/// The sidecar's metrics with every family holding a series.
fn sidecar_metrics() -> String {
    let metrics = SidecarMetrics::for_unit("web", "web-0");
    metrics.leader.set(1);
    metrics.term.set(3);
    metrics.elected.inc();
    metrics.deposed.inc();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: "/v1/status".into(),
            code: 200,
        })
        .inc();
    metrics
        .hook_runs
        .get_or_create(&HookLabels {
            hook: "elected".into(),
            outcome: "ok".into(),
        })
        .inc();
    metrics
        .claims
        .get_or_create(&ClaimLabels {
            kind: "renew".into(),
            result: "error".into(),
        })
        .inc();
    metrics.render()
}

/// OpenMetrics (what the programs serve, and Prometheus scrapes) in the Prometheus text format
/// (what `promtool check metrics` reads): a counter family is named with its `_total` there, and
/// there are no `# UNIT` and `# EOF` lines. The samples are the same.
fn text_format(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::new();
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[test]
fn the_metrics_pass_promtool_check_metrics() {
    for (who, text) in [("operator", operator_metrics()), ("sidecar", sidecar_metrics())] {
        let (ok, said) = promtool_check_metrics(&text_format(&text));
        assert!(
            ok && said.trim().is_empty(),
            "{who}: promtool check metrics:\n{said}\n{text}"
        );
    }
}

/// The names of the series the two programs export (histograms with their suffixes).
fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for text in [operator_metrics(), sidecar_metrics()] {
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let name = line.split(['{', ' ']).next().unwrap().to_owned();
            names.insert(name);
        }
    }
    names
}

/// The `leadership_*` metric names an expression uses.
fn queried(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("leadership_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        found.push(expr[start..end].to_owned());
        i = end;
    }
    found
}

fn rendered_rules() -> serde_yaml::Value {
    let documents = render(
        "demo",
        &[
            "--namespace",
            "leadership-system",
            "--set",
            "metrics.prometheusRule.enabled=true",
        ],
    );
    let rule = document(&documents, "PrometheusRule", "demo-leadership");
    rule["spec"].clone()
}

#[test]
fn the_alert_rules_pass_promtool_and_query_only_exported_metrics() {
    let spec = rendered_rules();
    let file = scratch("rules.yaml");
    std::fs::write(&file, serde_yaml::to_string(&spec).unwrap()).unwrap();
    let checked = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let exported = exported();
    let rules = spec["groups"][0]["rules"].as_sequence().unwrap();
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    for wanted in [
        "LeadershipNoLeader",
        "LeadershipFlapping",
        "LeadershipOperatorNotLeading",
        "LeadershipRenewalErrors",
    ] {
        assert!(alerts.contains(&wanted), "{wanted} missing from {alerts:?}");
    }
    for rule in rules {
        for name in queried(rule["expr"].as_str().unwrap()) {
            assert!(
                exported.contains(&name),
                "{} queries {name}, which nothing exports",
                rule["alert"].as_str().unwrap_or_default()
            );
        }
    }
}

/// `promtool test rules`: the alerts fire when they should and not before.
#[test]
fn the_alerts_fire_as_intended() {
    let rules = scratch("alerts.yaml");
    std::fs::write(&rules, serde_yaml::to_string(&rendered_rules()).unwrap()).unwrap();
    let tests = format!(
        r#"
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'leadership_operator_lease_held{{namespace="shop", application="web", pod="operator-0"}}'
        values: '1 1 0 0 0 0 0 0 0 0'
      - series: 'leadership_operator_lease_held{{namespace="shop", application="db", pod="operator-0"}}'
        values: '1 1 1 1 1 1 1 1 1 1'
      - series: 'leadership_operator_transitions_total{{namespace="shop", application="db", pod="operator-0"}}'
        values: '0 2 4 6 8 10 12 14 16 18'
      - series: 'leadership_operator_active{{namespace="leadership-system", pod="operator-0"}}'
        values: '1 1 1 0 0 0 0 0 0 0'
      - series: 'leadership_sidecar_claims_total{{namespace="shop", pod="web-0", kind="renew", result="error"}}'
        values: '0 1 2 3 4 5 6 7 8 9'
      - series: 'leadership_sidecar_claims_total{{namespace="shop", pod="db-0", kind="renew", result="granted"}}'
        values: '0 1 2 3 4 5 6 7 8 9'
    alert_rule_test:
      - eval_time: 5m
        alertname: LeadershipNoLeader
        exp_alerts: []
      - eval_time: 8m
        alertname: LeadershipNoLeader
        exp_alerts:
          - exp_labels: {{severity: warning, namespace: shop, application: web}}
            exp_annotations:
              summary: "shop/web has had no leader for 5m"
              description: "No unit holds the LeadershipLease web: are its pods running and their sidecars ready? kubectl describe leadershiplease web -n shop"
      - eval_time: 9m
        alertname: LeadershipFlapping
        exp_alerts:
          - exp_labels: {{severity: warning, namespace: shop, application: db}}
            exp_annotations:
              summary: "shop/db changed leader more than 6 times in 15m"
              description: "Leaders keep losing their lease: look for renewal errors, pods restarting, or a claim duration too short for the API server's latency."
      - eval_time: 3m
        alertname: LeadershipOperatorNotLeading
        exp_alerts: []
      - eval_time: 9m
        alertname: LeadershipOperatorNotLeading
        exp_alerts:
          - exp_labels: {{severity: warning}}
            exp_annotations:
              summary: "No leadership-operator replica in leadership-system has led for 1m"
              description: "Crash failover stops (run-out claims are not cleared), new pods are not listed as members, and revocations, handovers and leader labels wait until an operator leads; renewals, releases and graceful handovers go on: kubectl logs -n leadership-system deploy/demo-leadership-operator"
      - eval_time: 9m
        alertname: LeadershipRenewalErrors
        exp_alerts:
          - exp_labels: {{severity: warning, namespace: shop, pod: web-0}}
            exp_annotations:
              summary: "The sidecar of shop/web-0 fails to renew its lease"
              description: "Renewals get no answer (API server unreachable or forbidden): the leader steps down when its guarantee runs out. See the sidecar's log and /readyz."
"#,
        rules = rules.display()
    );
    let file = scratch("alerts_test.yaml");
    std::fs::write(&file, tests).unwrap();
    let tested = Command::new(promtool())
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        tested.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
}

#[test]
fn the_dashboard_is_a_configmap_for_grafana_and_queries_only_exported_metrics() {
    let documents = render(
        "demo",
        &[
            "--namespace",
            "monitoring",
            "--set",
            "metrics.dashboard.enabled=true",
        ],
    );
    let map = document(&documents, "ConfigMap", "demo-leadership-dashboard");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"].as_str(), Some("1"));
    let json: serde_json::Value = serde_json::from_str(map["data"]["leadership.json"].as_str().unwrap())
        .expect("the dashboard is JSON");
    let exported = exported();
    let panels = json["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
    for wanted in [
        "Leader per application",
        "Terms",
        "Leadership transitions",
        "Failover time",
        "Renewal errors",
    ] {
        assert!(titles.contains(&wanted), "{wanted} missing from {titles:?}");
    }
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for target in targets {
            for name in queried(target["expr"].as_str().unwrap()) {
                assert!(
                    exported.contains(&name),
                    "{} queries {name}, which nothing exports",
                    panel["title"]
                );
            }
        }
    }
}
