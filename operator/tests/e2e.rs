//! The operator on the real control plane, with sidecars as local processes: expiry of a killed
//! holder, pins that stop expiry, revocations, pod loss, HA failover and restarts, and the story
//! told by `kubectl describe`.
//!
//! One scenario per operator rule; they share the setup at the top of this file.

use std::{process::Output, time::Duration};

use k8s_openapi::api::{core::v1::Pod, events::v1::Event};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use leadership_e2e::{
    testenv::{self, TestNamespace},
    units::{self, PROMPTLY, Process, Sidecar, leader, next_leader, three},
};
use leadership_kube::crd::{LeadershipLease, condition};
use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep};

async fn namespace() -> TestNamespace {
    let ns = testenv::shared().namespace().await;
    leadership_kube::crd::install(&ns.client)
        .await
        .expect("install the CRD");
    ns
}

fn operator(ns: &TestNamespace, identity: &str) -> Process {
    units::operator(ns, identity, testenv::shared().kubeconfig())
}

fn cli(ns: &TestNamespace, args: &[&str]) -> Output {
    std::process::Command::new(testenv::binary("kubectl-leadership"))
        .arg("--kubeconfig")
        .arg(testenv::shared().kubeconfig())
        .args(["-n", &ns.name])
        .args(args)
        .output()
        .expect("run kubectl-leadership")
}

/// Polls the lease until `ready` holds; panics with the object after `within`.
async fn lease_until(
    ns: &TestNamespace,
    app: &str,
    within: Duration,
    ready: impl Fn(&LeadershipLease) -> bool,
) -> LeadershipLease {
    let api = ns.api::<LeadershipLease>();
    let deadline = Instant::now() + within;
    loop {
        let object = api.get_opt(app).await.unwrap();
        if let Some(object) = object.filter(|o| ready(o)) {
            return object;
        }
        assert!(
            Instant::now() < deadline,
            "lease {app} never got there: {:?}",
            api.get_opt(app).await
        );
        sleep(Duration::from_millis(50)).await;
    }
}

fn holder(object: &LeadershipLease) -> Option<String> {
    object.status.as_ref().and_then(|s| s.holder.clone())
}

fn last_reason(object: &LeadershipLease) -> Option<String> {
    object
        .status
        .as_ref()
        .and_then(|s| s.history.last())
        .map(|t| t.reason.clone())
}

fn describe(ns: &TestNamespace, app: &str) -> String {
    let out = testenv::shared()
        .kubectl()
        .args(["describe", "leadershiplease", app, "-n", &ns.name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_killed_holder_is_expired_by_the_operator_and_a_standby_takes_over() {
    let ns = namespace().await;
    let _operator = operator(&ns, "operator-0");
    units::pod(&ns, "solo-0").await;
    let mut solo = Sidecar::start(&ns, "solo", "solo-0").await;
    leader(std::slice::from_ref(&solo), PROMPTLY).await;
    let held = lease_until(&ns, "solo", PROMPTLY, |o| holder(o).is_some()).await;
    let term = held.status.unwrap().term;
    solo.signal(Signal::SIGKILL);
    let _ = solo.process.exit_code().await;
    // With no other claimant, only the operator can clear the claim: 4 s lease + margin.
    let cleared = lease_until(&ns, "solo", Duration::from_secs(20), |o| holder(o).is_none()).await;
    assert_eq!(last_reason(&cleared).as_deref(), Some("Expired"));
    assert_eq!(
        cleared.status.as_ref().unwrap().term,
        term,
        "clearing a claim keeps the term"
    );
    let wait = cli(&ns, &["wait-released", "solo", "--timeout", "5s"]);
    assert!(wait.status.success(), "blocked callers are released: {wait:?}");

    units::pod(&ns, "solo-1").await;
    let standby = Sidecar::start(&ns, "solo", "solo-1").await;
    let (_, status) = leader(std::slice::from_ref(&standby), PROMPTLY).await;
    assert!(status.term > u64::try_from(term).unwrap());
    let story = describe(&ns, "solo");
    for needle in ["Conditions", "History", "Expired", "Elected", "Held"] {
        assert!(
            story.contains(needle),
            "kubectl describe should show {needle}:\n{story}"
        );
    }
}

#[tokio::test]
async fn a_pinned_lease_is_not_expired_while_its_holder_is_stopped() {
    let ns = namespace().await;
    let _operator = operator(&ns, "operator-0");
    units::pod(&ns, "pinned-0").await;
    let mut holder_unit = Sidecar::start(&ns, "pinned", "pinned-0").await;
    leader(std::slice::from_ref(&holder_unit), PROMPTLY).await;
    let pin = cli(&ns, &["pin", "pinned", "machine-0"]);
    assert!(pin.status.success(), "{pin:?}");
    lease_until(&ns, "pinned", PROMPTLY, |o| {
        o.status.as_ref().is_some_and(|s| s.pinned)
    })
    .await;
    holder_unit.signal(Signal::SIGKILL);
    let _ = holder_unit.process.exit_code().await;
    sleep(Duration::from_secs(10)).await; // well past the 4 s lease
    let still = ns.api::<LeadershipLease>().get("pinned").await.unwrap();
    assert_eq!(holder(&still).as_deref(), Some("pinned-0"), "pinned: not expired");
    let leaders = cli(&ns, &["leaders", "-o", "json"]);
    assert!(String::from_utf8_lossy(&leaders.stdout).contains("pinned-0"));

    let unpin = cli(&ns, &["unpin", "pinned", "machine-0"]);
    assert!(unpin.status.success(), "{unpin:?}");
    let expired = lease_until(&ns, "pinned", Duration::from_secs(20), |o| holder(o).is_none()).await;
    assert_eq!(last_reason(&expired).as_deref(), Some("Expired"));
    let story = describe(&ns, "pinned");
    assert!(story.contains("Pinned") && story.contains("Unpinned"), "{story}");
}

#[tokio::test]
async fn a_repeated_event_is_counted_in_one_series() {
    let ns = namespace().await;
    let _operator = operator(&ns, "operator-0");
    units::pod(&ns, "series-0").await;
    let unit = Sidecar::start(&ns, "series", "series-0").await;
    leader(std::slice::from_ref(&unit), PROMPTLY).await;
    // The operator reports changes from its second visit on: let it see the lease before the pin.
    lease_until(&ns, "series", PROMPTLY, |o| {
        o.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Held" && c.status == "True")
        })
    })
    .await;
    // The operator's Pinned condition, not the `pinned` mirror (a unit's renewal writes that too):
    // each step is seen by a visit of the operator before the next is made.
    let pinned = |yes: bool| {
        move |o: &LeadershipLease| {
            o.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Pinned" && c.status == if yes { "True" } else { "False" })
            })
        }
    };
    for (verb, yes) in [("pin", true), ("unpin", false), ("pin", true)] {
        let done = cli(&ns, &[verb, "series", "machine-0"]);
        assert!(done.status.success(), "{done:?}");
        lease_until(&ns, "series", PROMPTLY, pinned(yes)).await;
    }
    let events: Api<Event> = ns.api();
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let pins: Vec<Event> = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Pinned"))
            .collect();
        let counted = pins.first().and_then(|e| e.series.as_ref()).map(|s| s.count);
        if pins.len() == 1 && counted == Some(2) {
            let event = &pins[0];
            assert_eq!(event.reporting_controller.as_deref(), Some("leadership-operator"));
            assert_eq!(event.reporting_instance.as_deref(), Some("operator-0"));
            assert_eq!(
                event.regarding.as_ref().and_then(|r| r.name.as_deref()),
                Some("series")
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "two pins by the same pinner should be one Event counted twice: {pins:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn revocation_hands_over_safely_and_a_non_holder_is_reported() {
    let ns = namespace().await;
    let _operator = operator(&ns, "operator-0");
    let sidecars = three(&ns, "rev").await;
    let (first, status) = leader(&sidecars, PROMPTLY).await;
    let holder_unit = sidecars[first].unit.clone();
    let other = sidecars[(first + 1) % 3].unit.clone();

    let refused = cli(&ns, &["revoke", "rev", &other]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("leadership lease not held"),
        "{refused:?}"
    );

    // The CLI returns once the revocation is written; the holder steps down when its watch shows
    // it, and holds off while another unit takes over.
    let revoked = cli(&ns, &["revoke", "rev", &holder_unit]);
    assert!(revoked.status.success(), "{revoked:?}");
    let (_, after) = next_leader(&sidecars, first, PROMPTLY).await;
    assert!(after.term > status.term);
    let done = lease_until(&ns, "rev", PROMPTLY, |o| o.spec.revocation.is_none()).await;
    let status = done.status.unwrap();
    let condition = condition::find(&status.conditions, "Revoked").expect("a Revoked condition");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", "Revoked")
    );

    // A revocation written by hand that names a unit not holding the lease is reported.
    let term = after.term;
    let patch = serde_json::json!({ "spec": { "revocation": { "unit": holder_unit, "term": term } } });
    ns.api::<LeadershipLease>()
        .patch("rev", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let reported = lease_until(&ns, "rev", PROMPTLY, |o| o.spec.revocation.is_none()).await;
    let status = reported.status.unwrap();
    let condition = condition::find(&status.conditions, "Revoked").unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "ClaimNotHeld")
    );
    let (_, settled) = leader(&sidecars, PROMPTLY).await;
    assert_eq!(settled.term, term, "reporting a bad request changed nothing");
    assert!(describe(&ns, "rev").contains("ClaimNotHeld"));
}

#[tokio::test]
async fn a_holder_whose_pod_is_gone_hands_over_before_its_lease_would_run_out() {
    let ns = namespace().await;
    let _operator = operator(&ns, "operator-0");
    let mut sidecars = Vec::new();
    for i in 0..3 {
        let unit = format!("gone-{i}");
        units::pod(&ns, &unit).await;
        // A 10 s guarantee: a 20 s lease that expiry alone would wait out.
        sidecars.push(
            Sidecar::spawn_with(
                &ns,
                "gone",
                &unit,
                testenv::shared().kubeconfig(),
                Duration::from_secs(10),
                &[],
            )
            .ready()
            .await,
        );
    }
    let (first, status) = leader(&sidecars, PROMPTLY).await;
    // The pod is lost: its containers stop (the sidecar process dies) and the kubelet reports them
    // terminated, then the Pod object is deleted.
    sidecars[first].signal(Signal::SIGKILL);
    let _ = sidecars[first].process.exit_code().await;
    let lost = Instant::now();
    let pods: Api<Pod> = ns.api();
    let terminated = serde_json::json!({ "status": { "phase": "Failed", "containerStatuses": [{
        "name": "app", "image": "app:1", "imageID": "", "ready": false, "restartCount": 0,
        "state": { "terminated": { "exitCode": 137, "reason": "Killed" } }
    }] } });
    pods.patch_status(
        &sidecars[first].unit,
        &PatchParams::default(),
        &Patch::Merge(&terminated),
    )
    .await
    .unwrap();
    pods.delete(&sidecars[first].unit, &Default::default())
        .await
        .unwrap();
    let dead = sidecars.remove(first);
    let (_, after) = leader(&sidecars, Duration::from_secs(30)).await;
    let handover = lost.elapsed();
    assert!(
        handover < Duration::from_secs(15),
        "handed over before the 20 s lease ran out: {handover:?}"
    );
    assert!(after.term > status.term);
    let object = ns.api::<LeadershipLease>().get("gone").await.unwrap();
    let reasons: Vec<String> = object
        .status
        .unwrap()
        .history
        .into_iter()
        .map(|t| t.reason)
        .collect();
    assert!(reasons.contains(&"PodGone".to_owned()), "{reasons:?}");
    drop(dead);
}

#[tokio::test]
async fn the_standby_operator_takes_over_and_restarts_lose_nothing() {
    let ns = namespace().await;
    let first = operator(&ns, "operator-a");
    let second = operator(&ns, "operator-b");
    let own = lease_until(&ns, "leadership-operator", PROMPTLY, |o| holder(o).is_some()).await;
    let (mut active, standby, standby_name) = if holder(&own).as_deref() == Some("operator-a") {
        (first, second, "operator-b")
    } else {
        (second, first, "operator-a")
    };

    // A pinned holder that is paused, with a revocation it cannot act on yet: all pending state.
    units::pod(&ns, "ha-0").await;
    let unit = Sidecar::start(&ns, "ha", "ha-0").await;
    leader(std::slice::from_ref(&unit), PROMPTLY).await;
    assert!(cli(&ns, &["pin", "ha", "machine-0"]).status.success());
    unit.signal(Signal::SIGSTOP);
    assert!(cli(&ns, &["revoke", "ha", "ha-0"]).status.success());

    // The active operator dies; the standby takes over.
    active.signal(Signal::SIGKILL);
    let _ = active.exit_code().await;
    lease_until(&ns, "leadership-operator", Duration::from_secs(20), |o| {
        holder(o).as_deref() == Some(standby_name)
    })
    .await;

    // A restart: a new replica, then SIGTERM to the active one hands over at once.
    let replacement = operator(&ns, "operator-c");
    sleep(Duration::from_secs(1)).await;
    let mut standby = standby;
    standby.signal(Signal::SIGTERM);
    assert_eq!(standby.exit_code().await, Some(0));
    lease_until(&ns, "leadership-operator", PROMPTLY, |o| {
        holder(o).as_deref() == Some("operator-c")
    })
    .await;
    sleep(Duration::from_secs(6)).await; // past the held claim's 4 s lease: pinned, it stays
    let kept = ns.api::<LeadershipLease>().get("ha").await.unwrap();
    assert_eq!(holder(&kept).as_deref(), Some("ha-0"), "the claim survived");
    assert!(kept.spec.pins.contains_key("machine-0"), "the pin survived");
    assert!(kept.spec.revocation.is_some(), "the pending revocation survived");

    // The holder resumes, sees the revocation and steps down; the operator ends the request.
    unit.signal(Signal::SIGCONT);
    let done = lease_until(&ns, "ha", PROMPTLY, |o| {
        holder(o).is_none() && o.spec.revocation.is_none()
    })
    .await;
    assert_eq!(last_reason(&done).as_deref(), Some("Released"));
    assert!(describe(&ns, "ha").contains("Revoked"));
    drop(replacement);
}

/// The pods of `ns` that carry the leader label.
async fn labelled(ns: &TestNamespace) -> Vec<String> {
    let pods = ns
        .api::<Pod>()
        .list(&kube::api::ListParams::default().labels("leadership.dev/leader=true"))
        .await
        .unwrap();
    pods.items.iter().map(kube::ResourceExt::name_any).collect()
}

/// Polls the labels until only `unit` carries the leader label; fails if two pods ever do.
async fn label_on(ns: &TestNamespace, unit: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = labelled(ns).await;
        assert!(now.len() <= 1, "two pods labelled leader at once: {now:?}");
        if now == [unit] {
            return;
        }
        assert!(Instant::now() < deadline, "the label is on {now:?}, not {unit}");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_leader_label_follows_every_change_of_holder_and_is_never_on_two_pods() {
    let ns = namespace().await;
    let _operator = operator(&ns, "operator-0");
    let mut sidecars = three(&ns, "routed").await;
    let (first, _) = leader(&sidecars, PROMPTLY).await;
    label_on(&ns, &sidecars[first].unit).await;
    let pod = ns.api::<Pod>().get(&sidecars[first].unit).await.unwrap();
    assert_eq!(
        pod.metadata
            .labels
            .unwrap_or_default()
            .get("leadership.dev/leader-of")
            .map(String::as_str),
        Some("routed")
    );

    // A release moves it.
    assert!(sidecars[first].client().release().await.unwrap());
    let (second, _) = leader(&sidecars, PROMPTLY).await;
    assert_ne!(second, first);
    label_on(&ns, &sidecars[second].unit).await;

    // A crash: the operator expires the claim and the label moves with the next holder.
    sidecars[second].signal(Signal::SIGKILL);
    let _ = sidecars[second].process.exit_code().await;
    let dead = sidecars.remove(second);
    let (third, _) = leader(&sidecars, Duration::from_secs(30)).await;
    label_on(&ns, &sidecars[third].unit).await;
    assert!(!labelled(&ns).await.contains(&dead.unit));
}

#[tokio::test]
async fn wait_released_wakes_on_every_release_though_a_standby_takes_over_at_once() {
    let ns = namespace().await;
    let sidecars = three(&ns, "relay").await;
    for round in 0..10 {
        let (holder, before) = leader(&sidecars, PROMPTLY).await;
        let mut waiter = tokio::process::Command::new(testenv::binary("kubectl-leadership"))
            .arg("--kubeconfig")
            .arg(testenv::shared().kubeconfig())
            .args(["-n", &ns.name, "wait-released", "relay", "--timeout", "60s"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Let it start watching; it must not return while the lease is held.
        sleep(Duration::from_secs(1)).await;
        assert!(
            waiter.try_wait().unwrap().is_none(),
            "round {round}: returned while held"
        );
        if round % 2 == 0 {
            assert!(sidecars[holder].client().release().await.unwrap());
        } else {
            let out = cli(&ns, &["revoke", "relay", &sidecars[holder].unit]);
            assert!(out.status.success(), "{out:?}");
        }
        let done = tokio::time::timeout(PROMPTLY, waiter.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("round {round}: wait-released missed the release"))
            .unwrap();
        assert!(done.status.success(), "round {round}: {done:?}");
        assert!(
            String::from_utf8_lossy(&done.stdout)
                .contains("relay: the leadership held when waiting started is over")
        );
        let (_, after) = leader(&sidecars, PROMPTLY).await;
        assert!(after.term > before.term, "a standby took over");
    }
}

#[tokio::test]
async fn a_handover_moves_leadership_to_the_named_unit_at_once_every_time() {
    let ns = namespace().await;
    let _operator = operator(&ns, "operator-0");
    let sidecars = three(&ns, "drained").await;
    for _ in 0..3 {
        let (holder, before) = leader(&sidecars, PROMPTLY).await;
        // Always the unit after the holder: the third unit races for the lease and never wins.
        let target = (holder + 1) % sidecars.len();
        let out = cli(
            &ns,
            &["handover", "drained", &sidecars[target].unit, "--timeout", "30s"],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("handed over to {}", sidecars[target].unit)),
            "{said}"
        );
        let (now, after) = leader(&sidecars, PROMPTLY).await;
        assert_eq!(now, target);
        assert!(after.term > before.term);
        // The operator cleared the request and said so.
        lease_until(&ns, "drained", PROMPTLY, |o| o.spec.handover.is_none()).await;
    }
    // Without a target, any unit but the holder takes over.
    let (holder, _) = leader(&sidecars, PROMPTLY).await;
    let out = cli(&ns, &["handover", "drained"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (now, _) = leader(&sidecars, PROMPTLY).await;
    assert_ne!(now, holder);
}

#[tokio::test]
async fn a_handover_nobody_takes_refuses_the_others_then_is_abandoned_and_reported() {
    let ns = namespace().await;
    let mut args = units::operator_args(&ns.name, "operator-0");
    args.extend(["--handover-timeout".to_owned(), "4s".to_owned()]);
    let log = std::env::temp_dir().join(format!("{}-operator.log", ns.name));
    let _operator = Process::start(
        &testenv::binary("leadership-operator"),
        &args,
        testenv::shared().kubeconfig(),
        log,
    );
    let sidecars = three(&ns, "stuck").await;
    let (_, before) = leader(&sidecars, PROMPTLY).await;
    // A target with no sidecar: the holder steps down and nobody else may take the lease.
    let out = cli(&ns, &["handover", "stuck", "stuck-9", "--no-wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sleep(Duration::from_millis(500)).await;
    let refused_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < refused_until {
        for sidecar in &sidecars {
            let status = sidecar.status().await.unwrap();
            assert!(
                !status.leader,
                "{} leads while the handover to stuck-9 is pending",
                sidecar.unit
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
    // Abandoned after the operator's timeout: any unit may claim again.
    lease_until(&ns, "stuck", Duration::from_secs(30), |o| {
        o.spec.handover.is_none()
    })
    .await;
    let (_, after) = leader(&sidecars, PROMPTLY).await;
    assert!(after.term > before.term);
    let described = testenv::shared()
        .kubectl()
        .args(["describe", "leadershiplease", "stuck", "-n", &ns.name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(text.contains("HandoverAbandoned"), "{text}");
}

#[tokio::test]
async fn the_preferred_unit_takes_over_once_its_pod_is_ready_and_keeps_it() {
    let ns = namespace().await;
    let _operator = operator(&ns, "operator-0");
    let sidecars = three(&ns, "preferred").await;
    let (holder, before) = leader(&sidecars, PROMPTLY).await;
    let preferred = (holder + 2) % sidecars.len();
    let unit = sidecars[preferred].unit.clone();
    ns.api::<LeadershipLease>()
        .patch(
            "preferred",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "preferredUnit": unit } })),
        )
        .await
        .unwrap();
    // Its Pod is not Ready (no kubelet reported it): nothing moves.
    sleep(Duration::from_secs(3)).await;
    assert_eq!(leader(&sidecars, PROMPTLY).await.0, holder);
    // Its Pod is reported Ready with its app running (as a kubelet would): the operator hands
    // the lease over to it.
    ns.api::<Pod>()
        .patch_status(
            &unit,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": {
                "conditions": [{ "type": "Ready", "status": "True" }],
                "containerStatuses": [{
                    "name": "app", "image": "app:1", "imageID": "", "ready": true, "restartCount": 0,
                    "state": { "running": {} }
                }]
            } })),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (now, status) = leader(&sidecars, PROMPTLY).await;
        if now == preferred {
            assert!(status.term > before.term);
            break;
        }
        assert!(Instant::now() < deadline, "{unit} never took over");
        sleep(Duration::from_millis(50)).await;
    }
    // And keeps it: no further handovers.
    sleep(Duration::from_secs(3)).await;
    assert_eq!(leader(&sidecars, PROMPTLY).await.0, preferred);
    let described = testenv::shared()
        .kubectl()
        .args(["describe", "leadershiplease", "preferred", "-n", &ns.name])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&described.stdout).contains("PreferredUnit"));
}

#[tokio::test]
async fn a_lock_delay_keeps_an_expired_lease_from_everyone_for_its_length_but_not_a_released_one() {
    let ns = namespace().await;
    let _operator = operator(&ns, "operator-0");
    let mut sidecars = three(&ns, "locked").await;
    let (holder, before) = leader(&sidecars, PROMPTLY).await;
    ns.api::<LeadershipLease>()
        .patch(
            "locked",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "policy": { "lockDelayMs": 4000 } } })),
        )
        .await
        .unwrap();
    // A release is not an expiry: a standby takes over at once.
    assert!(sidecars[holder].client().release().await.unwrap());
    let (holder, released) = leader(&sidecars, PROMPTLY).await;
    assert!(released.term > before.term);

    // A crash: once the claim runs out the lease is locked, and nobody leads until the delay ends.
    sidecars[holder].signal(Signal::SIGKILL);
    let _ = sidecars[holder].process.exit_code().await;
    sidecars.remove(holder);
    lease_until(&ns, "locked", Duration::from_secs(30), |o| {
        o.status.as_ref().is_some_and(|s| s.locked)
    })
    .await;
    let wide = testenv::shared()
        .kubectl()
        .args(["get", "leadershiplease", "locked", "-n", &ns.name, "-o", "wide"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&wide.stdout);
    assert!(
        text.lines().next().unwrap_or_default().contains("LOCKED"),
        "{text}"
    );
    assert!(text.contains("true"), "{text}");
    let locked_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < locked_until {
        for sidecar in &sidecars {
            assert!(
                !sidecar.status().await.unwrap().leader,
                "{} leads while locked",
                sidecar.unit
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
    let (_, after) = leader(&sidecars, Duration::from_secs(30)).await;
    assert!(after.term > released.term);
    lease_until(&ns, "locked", PROMPTLY, |o| {
        o.status.as_ref().is_some_and(|s| !s.locked)
    })
    .await;
}
