//! The controller in this process on the real control plane, its metrics read directly: a visit
//! that writes a condition and then the spec loses no race with itself, and the pod index forgets
//! churned pods.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use leadership::expiry::ExpiryPolicy;
use leadership_e2e::{
    testenv::{self, TestNamespace},
    units,
};
use leadership_kube::crd::{LeadershipLease, LeadershipLeaseStatus};
use leadership_operator::{
    metrics::{KindLabel, Metrics},
    reconcile::{Context, run_controller},
};
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

/// A namespace with the CRD, and the controller watching it until the returned token is cancelled.
async fn controlled() -> (TestNamespace, Arc<Metrics>, CancellationToken) {
    let ns = testenv::shared().namespace().await;
    leadership_kube::crd::install(&ns.client)
        .await
        .expect("install the CRD");
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(Context::new(
        ns.client.clone(),
        "operator-0",
        metrics.clone(),
        ExpiryPolicy::default(),
    ));
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
    object
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
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
