//! The CRD: generated, committed without drift, served with useful columns, and strict: the API
//! server refuses malformed objects with a message that names the problem.

mod common;

use std::{io::Write, process::Stdio, time::Duration};

use kube::api::PostParams;
use leadership::{Claimer, Error, Pinner};
use leadership_e2e::testenv::{self, TestNamespace};
use leadership_kube::crd::{LeadershipLease, LeadershipLeaseStatus, LeasePolicy, MAX_COUNT, crd_yaml};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/leadershiplease.yaml");
const CHART_COPY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/leadership/crds/leadershiplease.yaml"
);

#[test]
fn the_committed_crd_matches_the_types() {
    let committed = std::fs::read_to_string(COMMITTED).expect("crds/leadershiplease.yaml");
    assert!(
        committed == crd_yaml(),
        "crds/leadershiplease.yaml is stale: run `cargo run -p leadership-kube --bin crdgen > crds/leadershiplease.yaml`"
    );
}

#[test]
fn the_charts_crd_is_byte_identical_to_the_generated_one() {
    let chart = std::fs::read(CHART_COPY).expect("charts/leadership/crds/leadershiplease.yaml");
    let generated = std::fs::read(COMMITTED).expect("crds/leadershiplease.yaml");
    assert!(
        chart == generated,
        "copy crds/leadershiplease.yaml to charts/leadership/crds/"
    );
}

/// `kubectl apply -f -` of `yaml` in the namespace; the combined output and whether it worked.
fn kubectl_apply(ns: &TestNamespace, yaml: &str) -> (bool, String) {
    let mut child = testenv::shared()
        .kubectl()
        .args(["apply", "-n", &ns.name, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write manifest");
    let output = child.wait_with_output().expect("kubectl output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn manifest(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: leadership.dev/v1alpha1\nkind: LeadershipLease\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

#[tokio::test]
async fn kubectl_apply_refuses_malformed_specs_with_clear_messages() {
    let ns = common::namespace().await;
    let (ok, out) = kubectl_apply(
        &ns,
        &manifest(
            "web",
            "  pins:\n    machine-0:\n      since: \"2026-01-01T00:00:00Z\"\n",
        ),
    );
    assert!(ok, "a well-formed lease is accepted: {out}");
    let refused = [
        (manifest("Web_App", "  {}\n"), "must be a DNS label"),
        (manifest(&"x".repeat(64), "  {}\n"), "must be a DNS label"),
        (
            manifest(
                "bad-pin",
                "  pins:\n    Not_An_Entity:\n      since: \"2026-01-01T00:00:00Z\"\n",
            ),
            "pin entities must be DNS subdomain names",
        ),
        (
            manifest("bad-revocation", "  revocation:\n    unit: web-0\n    term: 0\n"),
            "spec.revocation.term",
        ),
        (
            manifest("bad-unit", "  revocation:\n    unit: Web/0\n    term: 1\n"),
            "spec.revocation.unit",
        ),
        (
            manifest(
                "bad-policy",
                "  policy:\n    minDurationMs: 5000\n    maxDurationMs: 1000\n",
            ),
            "minDurationMs must not exceed maxDurationMs",
        ),
        (
            manifest("tiny-policy", "  policy:\n    maxDurationMs: 1\n"),
            "spec.policy.maxDurationMs",
        ),
        (
            manifest("bad-lock", "  policy:\n    lockDelayMs: -1\n"),
            "spec.policy.lockDelayMs",
        ),
        (
            manifest("bad-handover", "  handover:\n    from: web-0\n    term: 0\n"),
            "spec.handover.term",
        ),
        (
            manifest(
                "bad-target",
                "  handover:\n    from: web-0\n    term: 1\n    to: Web_2\n",
            ),
            "spec.handover.to",
        ),
        (
            manifest("bad-preference", "  preferredUnit: \"web 0\"\n"),
            "spec.preferredUnit",
        ),
        (
            manifest(
                "bad-pin-time",
                "  pins:\n    machine-0:\n      since: yesterday\n",
            ),
            "since",
        ),
    ];
    for (yaml, expected) in refused {
        let (ok, out) = kubectl_apply(&ns, &yaml);
        assert!(!ok, "accepted:\n{yaml}");
        assert!(
            out.contains(expected),
            "the refusal should say {expected:?}, got: {out}"
        );
    }
}

#[tokio::test]
async fn status_writes_keep_the_invariants() {
    let ns = common::namespace().await;
    let store = common::store(&ns);
    store
        .claim_leadership("web", "web-0", std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let api = ns.api::<LeadershipLease>();
    let current = api.get("web").await.unwrap();
    let status = current.status.clone().unwrap();
    let attempt = |change: fn(&mut LeadershipLeaseStatus)| {
        let mut object = current.clone();
        let mut status = status.clone();
        change(&mut status);
        object.status = Some(status);
        let api = api.clone();
        async move { api.replace_status("web", &PostParams::default(), &object).await }
    };
    let refused = |result: Result<LeadershipLease, kube::Error>, expected: &str| match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            // A field's path: Kubernetes 1.36 names it from the object (`status.renewals: ...`),
            // 1.30 from the status (`renewals: ...`).
            let in_status = expected.strip_prefix("status.").is_some_and(|field| {
                status.message.contains(&format!("[{field}: "))
                    || status.message.contains(&format!("invalid: {field}: "))
            });
            assert!(
                status.message.contains(expected) || in_status,
                "expected {expected:?} in {}",
                status.message
            );
        }
        other => panic!("expected a refusal mentioning {expected:?}, got {other:?}"),
    };
    refused(attempt(|s| s.term = 0).await, "the term must never decrease");
    refused(attempt(|s| s.term = -1).await, "status.term");
    refused(
        attempt(|s| s.term += 2).await,
        "the term rises by at most one per write",
    );
    refused(
        attempt(|s| s.term = MAX_COUNT + 1).await,
        "less than or equal to 9007199254740991",
    );
    refused(attempt(|s| s.renewals = -1).await, "status.renewals");
    refused(
        attempt(|s| s.renewals = MAX_COUNT + 1).await,
        "less than or equal to 9007199254740991",
    );
    refused(
        attempt(|s| s.holder = Some("Web/0".into())).await,
        "status.holder",
    );
    refused(
        attempt(|s| s.lease_duration_ms = None).await,
        "a claim needs leaseDurationMs",
    );
    refused(
        attempt(|s| s.lease_duration_ms = Some(0)).await,
        "status.leaseDurationMs",
    );
    attempt(|s| s.term += 1).await.expect("a rising term is accepted");
}

#[tokio::test]
async fn kubectl_get_shows_leader_term_pinned_expires_and_age() {
    let ns = common::namespace().await;
    let store = common::store(&ns);
    store
        .claim_leadership("web", "web-0", std::time::Duration::from_secs(30))
        .await
        .unwrap();
    store
        .claim_leadership("db", "db-1", std::time::Duration::from_secs(30))
        .await
        .unwrap();
    store.pin_leadership("db", "machine-0").await.unwrap();
    // The Pinned column mirrors spec.pins at the next status write.
    store
        .claim_leadership("db", "db-1", std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let output = testenv::shared()
        .kubectl()
        .args(["get", "leadershipleases", "-n", &ns.name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        ["NAME", "LEADER", "TERM", "PINNED", "EXPIRES", "AGE"],
        "{text}"
    );
    assert_eq!(&lines[1][..4], ["db", "db-1", "1", "true"], "{text}");
    assert_eq!(&lines[2][..4], ["web", "web-0", "1", "false"], "{text}");
    let short = testenv::shared()
        .kubectl()
        .args(["get", "llease", "-A"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&short.stdout).contains(&ns.name),
        "short name and -A work"
    );
    let category = testenv::shared()
        .kubectl()
        .args(["get", "leadership", "-n", &ns.name])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&category.stdout).contains("web-0"),
        "the category lists leases"
    );
}

#[tokio::test]
async fn a_policy_limits_the_lease_length_a_claim_writes_and_the_refusal_says_so() {
    let ns = common::namespace().await;
    let mut lease = LeadershipLease::empty(&ns.name, "limited");
    lease.spec.policy = Some(LeasePolicy {
        min_duration_ms: None,
        max_duration_ms: Some(10_000),
        lock_delay_ms: None,
        health: None,
    });
    ns.api::<LeadershipLease>()
        .create(&PostParams::default(), &lease)
        .await
        .expect("create the lease with its policy");
    let store = common::store(&ns);
    // A sidecar with the default claim duration (5 s) writes a lease length of 20 s.
    let refused = store
        .claim_leadership("limited", "web-0", Duration::from_secs(20))
        .await;
    match refused {
        Err(Error::Invalid { field, reason }) => {
            assert_eq!(field, "duration");
            assert!(
                reason.contains("spec.policy") && reason.contains("4 x its --claim-duration"),
                "{reason}"
            );
        }
        other => panic!("a claim over the policy's range is refused as invalid, got {other:?}"),
    }
    store
        .claim_leadership("limited", "web-0", Duration::from_secs(10))
        .await
        .expect("a lease length within the range is granted");
}
