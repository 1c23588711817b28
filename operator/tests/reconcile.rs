//! The controller in this process on the real control plane, its metrics read directly: a visit
//! that writes a condition and then the spec loses no race with itself, a standby's grant loses
//! none to the operator, and the pod index forgets churned pods.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use leadership::expiry::ExpiryPolicy;
use leadership_e2e::{
    testenv::{self, TestNamespace},
    units,
};
use leadership_kube::crd::{self, LeadershipLease, LeadershipLeaseStatus};
use leadership_operator::{
    metrics::{KindLabel, Metrics},
    plan::QUIET_AFTER_FREE,
    reconcile::{Context, run_controller},
};
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

/// A namespace with the CRD, and the controller watching it until the returned token is cancelled.
async fn controlled() -> (TestNamespace, Arc<Metrics>, CancellationToken) {
    controlled_with(QUIET_AFTER_FREE).await
}

/// [`controlled`], the controller leaving a lease that became free unwritten for `quiet`.
async fn controlled_with(quiet: Duration) -> (TestNamespace, Arc<Metrics>, CancellationToken) {
    let ns = testenv::shared().namespace().await;
    leadership_kube::crd::install(&ns.client)
        .await
        .expect("install the CRD");
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(
        Context::new(
            ns.client.clone(),
            "operator-0",
            metrics.clone(),
            ExpiryPolicy::default(),
        )
        .with_quiet_after_free(quiet),
    );
    let stop = CancellationToken::new();
    let scope = ns.name.clone();
    let token = stop.clone();
    tokio::spawn(async move { run_controller(ctx, Some(&scope), token).await });
    (ns, metrics, stop)
}

/// Waits until `ready` holds of `what`, polling; panics after `within`.
async fn until<T>(within: Duration, mut what: impl AsyncFnMut() -> T, ready: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + within;
    loop {
        let value = what().await;
        if ready(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "never got there");
        sleep(Duration::from_millis(50)).await;
    }
}

fn condition(object: &LeadershipLease, kind: &str) -> Option<(String, String)> {
    crd::condition::find(&object.status.as_ref()?.conditions, kind)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn the_end_of_a_revocation_writes_its_condition_and_the_spec_without_a_conflict() {
    let (ns, metrics, stop) = controlled().await;
    let api = ns.api::<LeadershipLease>();
    api.create(&PostParams::default(), &LeadershipLease::empty(&ns.name, "web"))
        .await
        .unwrap();
    // The test writes as a unit would: read, change, compare-and-swap, again on a lost race
    // (the operator writes its conditions meanwhile).
    let claim = async |holder: Option<&str>| {
        until(
            Duration::from_secs(30),
            async || {
                let mut object = api.get("web").await.unwrap();
                object.status = Some(LeadershipLeaseStatus {
                    holder: holder.map(str::to_owned),
                    term: 1,
                    lease_duration_ms: Some(600_000),
                    ..object.status.unwrap_or_default()
                });
                api.replace_status("web", &PostParams::default(), &object)
                    .await
                    .is_ok()
            },
            |written| *written,
        )
        .await
    };
    claim(Some("web-0")).await;
    until(
        Duration::from_secs(30),
        async || api.get("web").await.unwrap(),
        |o| condition(o, "Held") == Some(("True".into(), "Held".into())),
    )
    .await;

    let revoke = serde_json::json!({ "spec": { "revocation": { "unit": "web-0", "term": 1 } } });
    api.patch("web", &PatchParams::default(), &Patch::Merge(&revoke))
        .await
        .unwrap();
    // The holder steps down: the visit that follows writes the Revoked condition, then clears the
    // request from the spec.
    claim(None).await;
    let done = until(
        Duration::from_secs(30),
        async || api.get("web").await.unwrap(),
        |o| o.spec.revocation.is_none(),
    )
    .await;
    assert_eq!(
        condition(&done, "Revoked"),
        Some(("True".into(), "Revoked".into()))
    );
    let conflicts: u64 = ["clear_claim", "status", "spec"]
        .into_iter()
        .map(|kind| {
            metrics
                .write_conflicts
                .get_or_create(&KindLabel { kind: kind.into() })
                .get()
        })
        .sum();
    assert_eq!(conflicts, 0, "{}", metrics.render());
    assert_eq!(
        metrics
            .revocations
            .get_or_create(&KindLabel { kind: "done".into() })
            .get(),
        1
    );
    stop.cancel();
}

/// How many visits the controller has made.
fn visits(metrics: &Metrics) -> u64 {
    metrics
        .render()
        .lines()
        .find_map(|line| line.strip_prefix("leadership_operator_reconcile_duration_seconds_count "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// `object` with its claim set as a unit writes it.
fn claimed(mut object: LeadershipLease, holder: Option<&str>, term: i64) -> LeadershipLease {
    object.status = Some(LeadershipLeaseStatus {
        holder: holder.map(str::to_owned),
        term,
        lease_duration_ms: holder.map(|_| 600_000),
        ..object.status.unwrap_or_default()
    });
    object
}

#[tokio::test]
async fn a_standby_takes_a_released_lease_with_its_first_write_and_a_lease_nobody_takes_is_reported_free() {
    // A quiet longer than this test's steps take on a loaded machine; the product's is shorter.
    let quiet = Duration::from_secs(8);
    let (ns, metrics, stop) = controlled_with(quiet).await;
    let api = ns.api::<LeadershipLease>();
    api.create(&PostParams::default(), &LeadershipLease::empty(&ns.name, "web"))
        .await
        .unwrap();
    // The first claim may race the operator's first report of the new lease: again on a conflict.
    until(
        Duration::from_secs(30),
        async || {
            let object = api.get("web").await.unwrap();
            api.replace_status("web", &PostParams::default(), &claimed(object, Some("web-0"), 1))
                .await
                .is_ok()
        },
        |written| *written,
    )
    .await;
    let held = until(
        Duration::from_secs(30),
        async || api.get("web").await.unwrap(),
        |o| condition(o, "Held") == Some(("True".into(), "Held".into())),
    )
    .await;

    // The holder releases, and the operator visits the free lease (its watch event).
    let visited = visits(&metrics);
    let released = api
        .replace_status("web", &PostParams::default(), &claimed(held, None, 1))
        .await
        .expect("the release: the operator writes nothing once the lease is reported held");
    until(
        Duration::from_secs(30),
        async || visits(&metrics),
        |n| *n > visited,
    )
    .await;
    // A standby's grant, a compare-and-swap on the release it saw, finds nothing written since.
    api.replace_status(
        "web",
        &PostParams::default(),
        &claimed(released, Some("web-1"), 2),
    )
    .await
    .expect("the standby's grant loses no race to the operator");
    until(
        Duration::from_secs(30),
        async || api.get("web").await.unwrap(),
        |o| {
            o.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.message == "held by web-1 in term 2")
            })
        },
    )
    .await;

    // Released with nobody to take it: reported free once the quiet is over.
    let freed = Instant::now();
    until(
        Duration::from_secs(60),
        async || {
            api.replace_status(
                "web",
                &PostParams::default(),
                &claimed(api.get("web").await.unwrap(), None, 2),
            )
            .await
            .is_ok()
        },
        |written| *written,
    )
    .await;
    until(
        Duration::from_secs(60),
        async || api.get("web").await.unwrap(),
        |o| condition(o, "Held") == Some(("False".into(), "Free".into())),
    )
    .await;
    assert!(
        freed.elapsed() >= quiet,
        "reported free before the quiet was over"
    );
    stop.cancel();
}

#[tokio::test]
async fn churned_pods_leave_the_pod_index_as_it_was() {
    let (ns, metrics, stop) = controlled().await;
    let pods = ns.api::<Pod>();
    pods.create(&PostParams::default(), &units::unit_pod("web-0"))
        .await
        .unwrap();
    let baseline = until(
        Duration::from_secs(30),
        async || metrics.pods_indexed.get(),
        |n| *n == 1,
    )
    .await;
    for round in 0..3 {
        let names: Vec<String> = (0..20).map(|i| format!("job-{round}-{i}")).collect();
        for name in &names {
            pods.create(&PostParams::default(), &units::unit_pod(name))
                .await
                .unwrap();
        }
        until(
            Duration::from_secs(30),
            async || metrics.pods_indexed.get(),
            |n| *n == baseline + 20,
        )
        .await;
        for name in &names {
            pods.delete(name, &DeleteParams::default()).await.unwrap();
        }
        until(
            Duration::from_secs(30),
            async || metrics.pods_indexed.get(),
            |n| *n == baseline,
        )
        .await;
    }
    stop.cancel();
}
