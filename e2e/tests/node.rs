//! The product as users run it: the chart installed with `helm install oci://...` from a registry
//! on a cluster with a real node (kubelet, containerd, runc, CNI, kube-proxy), pods running the
//! images `e2e/images` builds, which the kubelet pulls from that registry, the kubelet reporting
//! every status. Nothing here writes a Pod status or stands in for a
//! container. The tests run one at a time: each installs the chart with its own operator pair.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    apps::v1::{Deployment, StatefulSet},
    core::v1::{Namespace, Pod, Service},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use leadership_e2e::{
    chart::{APP_IMAGE, PreviousRelease, Release, registry_image, text, webhook_in},
    pods::{
        AdminClient, SETTLE, admin_address, container_id, documented_deployment, eventually, exec, holder,
        holder_among, is_ready, last_terminated, names, ready_pods, restart_rollout, restarts,
        roll_statefulset, signal_containers, socket_status, watch_until_gone,
    },
    testenv::{self, TestNamespace},
    tools::Tools,
};
use leadership_kube::{
    KubeStore, Scope,
    crd::{LeadershipLease, LeadershipLeaseStatus, MAX_COUNT, Revocation, condition},
};
use serde_json::Value;

/// The chart's images.
const SIDECAR_IMAGE: &str = "leadership-sidecar:0.1.0";
const OPERATOR_IMAGE: &str = "leadership-operator:0.1.0";
/// The operator's own lease in its namespace.
const OPERATOR_LEASE: &str = "leadership-operator";

/// Held by each test for its whole run.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The chart's settings for the example application (3 replicas) in the release's namespace, the
/// webhook seeing that namespace only, and helm waiting until every pod is Ready.
fn example_args(ns: &TestNamespace) -> Vec<String> {
    let image = format!("example.image={}", registry_image(APP_IMAGE));
    // The example in the release's namespace: the tests find its pods there.
    let example_ns = format!("example.namespace={}", ns.name);
    [
        "--set",
        "example.enabled=true",
        "--set",
        &example_ns,
        "--set",
        &image,
        "--set-json",
        &webhook_in(ns),
        "--wait",
        "--timeout",
        "5m",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Installs the chart from the node's registry with the example application ([`example_args`])
/// and `extra` settings.
fn install(ns: &TestNamespace, extra: &[&str]) -> Release {
    let example = example_args(ns);
    let mut args: Vec<&str> = example.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    Release::install_from_registry(ns, &args)
}

#[tokio::test]
async fn the_chart_runs_in_real_pods_with_its_own_images_and_an_app_can_use_the_socket() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let release = install(&ns, &[]);
    let example = format!("{}-example", release.fullname());
    let operators = ready_pods(&ns, &format!("{}-operator-", release.fullname()), 2).await;
    let units = ready_pods(&ns, &example, 3).await;

    // The chart's own images, probes and users.
    for pod in &operators {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.containers[0].image, Some(registry_image(OPERATOR_IMAGE)));
        assert!(spec.containers[0].readiness_probe.is_some());
    }
    for pod in &units {
        let spec = pod.spec.as_ref().unwrap();
        let sidecar = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(sidecar.image, Some(registry_image(SIDECAR_IMAGE)));
        assert_eq!(
            sidecar.restart_policy.as_deref(),
            Some("Always"),
            "a native sidecar"
        );
        assert!(sidecar.readiness_probe.is_some() && sidecar.liveness_probe.is_some());
    }

    // The application's lease and the operator's own both have a holder among the pods.
    let names = names(&units);
    let (leader, term) = holder_among(&ns, &example, &units).await;
    holder_among(&ns, OPERATOR_LEASE, &operators).await;

    // The app container runs as another user than the sidecar (1000, not 65532) and uses the
    // socket (mode 0660, group 65532) through the pod's supplemental group.
    for name in &names {
        let id = exec(
            &ns,
            name,
            "app",
            "id -u; stat -c '%a %g' /run/leadership/leadership.sock",
        );
        assert!(id.status.success(), "{}", text(&id));
        assert_eq!(String::from_utf8_lossy(&id.stdout), "1000\n660 65532\n");
        let status = socket_status(&ns, name);
        assert_eq!(status["unit"], name.as_str());
        assert_eq!(status["holder"], leader.as_str());
        assert_eq!(status["leader"], *name == leader, "{name}: {status}");
        if *name == leader {
            assert_eq!(status["term"], term);
            assert!(status["guaranteedForMs"].as_i64().unwrap() > 0);
        }
    }

    // The operator labels the leader's pod, and only it.
    let pods: Api<Pod> = ns.api();
    eventually(SETTLE, "the leader label on the leader only", || async {
        let list = pods
            .list(&ListParams::default().labels("leadership.dev/leader=true"))
            .await
            .ok()?;
        let labelled: Vec<String> = list
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        labelled
            .iter()
            .filter(|n| n.starts_with(&example))
            .eq([&leader])
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_leader_service_follows_the_leader_through_kube_proxy_when_its_pod_is_deleted() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let release = install(&ns, &[]);
    let example = format!("{}-example", release.fullname());
    let units = ready_pods(&ns, &example, 3).await;
    let (leader, term) = holder_among(&ns, &example, &units).await;

    let pods: Api<Pod> = ns.api();
    // Poll the leader Service's ClusterIP while the leader changes.
    let services: Api<Service> = ns.api();
    let ip = services
        .get(&format!("{example}-leader"))
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let address = format!("{ip}:80");
    let http = AdminClient::new(Duration::from_secs(2));
    let answer = || async { http.unit(&address).await.map(|(unit, _)| unit) };
    let first = eventually(SETTLE, "the Service answers", answer).await;
    assert_eq!(first, leader, "the Service routes to the leader");

    let deleted = Instant::now();
    pods.delete(&leader, &DeleteParams::default()).await.unwrap();
    let (next, next_term) = holder(&ns, &example, |h| h != leader).await;
    let handover = deleted.elapsed();
    assert!(next_term > term, "a new term: {term} -> {next_term}");
    assert!(handover < Duration::from_secs(30), "handover took {handover:?}");

    let mut answers = vec![first];
    let settled = Instant::now();
    while settled.elapsed() < Duration::from_secs(60) {
        if let Some(unit) = answer().await
            && answers.last() != Some(&unit)
        {
            answers.push(unit);
        }
        if answers.last() == Some(&next) && settled.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        answers,
        [leader.clone(), next.clone()],
        "the Service answered from the old leader, then only the new one"
    );

    eprintln!("handover after deleting the leader's pod: {handover:?}; Service answers: {answers:?}");
}

/// Installs the chart (its example at one replica) and a StatefulSet `web` of `replicas` injected
/// units running `script`; its Pods, once Ready.
async fn with_workload(
    ns: &TestNamespace,
    replicas: usize,
    claim_duration: &str,
    script: &str,
) -> (Release, Vec<Pod>) {
    let release = install(ns, &["--set", "example.replicas=1"]);
    let sets: Api<StatefulSet> = ns.api();
    let count = i32::try_from(replicas).expect("a few replicas");
    sets.create(
        &PostParams::default(),
        &injected_workload("web", count, claim_duration, script),
    )
    .await
    .unwrap();
    let units = ready_pods(ns, "web-", replicas).await;
    (release, units)
}

/// An app that, told to stop, waits 8 s and then writes what the socket says into its termination
/// message: where leadership was while it was still stopping.
const REPORTS_WHEN_STOPPING: &str = "trap 'sleep 8; curl -s --unix-socket \"$LEADERSHIP_SOCKET\" http://localhost/v1/status > /dev/termination-log; exit 0' TERM; while true; do sleep 0.2; done";

/// An app that exits 1 at once, at every start, while `/scratch/crash` exists (an emptyDir: it
/// outlives the container's restarts), as a crash-looping app does; stopped, it exits at once.
const CRASHES_ON_FLAG: &str =
    "trap 'exit 0' TERM; while true; do if [ -e /scratch/crash ]; then exit 1; fi; sleep 0.2; done";

/// A StatefulSet whose pods get the sidecar from the webhook, with an app container running
/// `script` (as user 1000, with an emptyDir at `/scratch`).
fn injected_workload(name: &str, replicas: i32, claim_duration: &str, script: &str) -> StatefulSet {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": {
                    "labels": { "app": name },
                    "annotations": {
                        "leadership.dev/application": name,
                        "leadership.dev/claim-duration": claim_duration,
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": 20,
                    "containers": [{
                        "name": "app",
                        "image": registry_image(APP_IMAGE),
                        "command": ["sh", "-c", script],
                        "securityContext": { "runAsUser": 1000, "runAsNonRoot": true },
                        "volumeMounts": [{ "name": "scratch", "mountPath": "/scratch" }],
                    }],
                    "volumes": [{ "name": "scratch", "emptyDir": {} }],
                },
            },
        },
    }))
    .expect("a StatefulSet")
}

/// The documented one-annotation Deployment (`docs/examples/injected-deployment.yaml`), with the
/// app image built here.
#[tokio::test]
async fn the_documented_deployment_is_injected_elects_a_leader_and_a_killed_sidecar_rejoins_as_a_minion() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let _release = install(&ns, &["--set", "example.replicas=1"]);
    let deployments: Api<Deployment> = ns.api();
    deployments
        .create(&PostParams::default(), &documented_deployment())
        .await
        .unwrap();
    let units = ready_pods(&ns, "web-", 3).await;
    for pod in &units {
        let spec = pod.spec.as_ref().unwrap();
        let sidecar = &spec.init_containers.as_ref().expect("an injected sidecar")[0];
        assert_eq!(sidecar.name, "leadership");
        assert_eq!(sidecar.image, Some(registry_image(SIDECAR_IMAGE)));
    }
    let names = names(&units);
    let (leader, term) = holder_among(&ns, "web", &units).await;
    let minion = names.iter().find(|n| **n != leader).unwrap().clone();

    let pods: Api<Pod> = ns.api();
    let before = pods.get(&minion).await.unwrap();
    let restarts_before = restarts(&before, "leadership");
    let sidecar = container_id(&before, "leadership").expect("a running sidecar");
    signal_containers(&ns, &[sidecar], "KILL").unwrap();
    // The kubelet restarts it; it becomes Ready again and answers as a minion of the same leader.
    eventually(
        SETTLE,
        "the sidecar restarted by the kubelet and Ready",
        || async {
            let pod = pods.get(&minion).await.ok()?;
            (restarts(&pod, "leadership") > restarts_before && is_ready(&pod)).then_some(())
        },
    )
    .await;
    let status = eventually(SETTLE, "the restarted sidecar answers", || async {
        let status = socket_status(&ns, &minion);
        (status["holder"] == leader.as_str()).then_some(status)
    })
    .await;
    assert_eq!(status["leader"], false, "{status}");
    let (still, same_term) = holder(&ns, "web", |_| true).await;
    assert_eq!((&still, same_term), (&leader, term), "the leader never changed");

    // A rolling restart creates a Pod at the new revision before it deletes an old one: whichever
    // old Pod leads, leadership moves once, to a Pod at the new revision.
    restart_rollout(&deployments, "web")
        .await
        .expect("restart the rollout");
    let all_new = eventually(SETTLE, "the rollout to complete", || async {
        let status = deployments.get("web").await.ok()?.status?;
        let done = status.updated_replicas == Some(3)
            && status.ready_replicas == Some(3)
            && status.replicas == Some(3);
        done.then_some(())
    });
    all_new.await;
    let (after, after_term) = holder(&ns, "web", |h| !names.iter().any(|n| n == h)).await;
    eprintln!(
        "Deployment rollout with {leader} leading: {} grant(s), {after} leads",
        after_term - term
    );
    assert_eq!(after_term - term, 1, "one grant in the rollout");
}

/// The container port of `pod`'s injected sidecar (its admin port).
fn sidecar_port(pod: &Pod) -> i32 {
    let spec = pod.spec.as_ref().expect("a pod spec");
    let sidecar = &spec.init_containers.as_ref().expect("an injected sidecar")[0];
    sidecar.ports.as_ref().expect("the admin port")[0].container_port
}

/// A bare Pod of application `app` whose app container declares `port`, written to pass Pod
/// Security "restricted" on its own.
fn restricted_pod(name: &str, app: &str, port: i32, annotations: &[(&str, &str)]) -> Pod {
    let mut all: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    all.insert("leadership.dev/application", app);
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "annotations": all },
        "spec": {
            "automountServiceAccountToken": false,
            "securityContext": { "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "app",
                "image": registry_image(APP_IMAGE),
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
                "ports": [{ "containerPort": port }],
                "securityContext": {
                    "runAsNonRoot": true, "runAsUser": 1000, "allowPrivilegeEscalation": false,
                    "capabilities": { "drop": ["ALL"] },
                },
            }],
        },
    }))
    .expect("a Pod")
}

#[tokio::test]
async fn pod_security_restricted_admits_the_chart_and_injected_pods_on_the_admin_port_chosen() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    let enforce = serde_json::json!({ "metadata": { "labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    } } });
    namespaces
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(&enforce))
        .await
        .expect("enforce Pod Security restricted");
    // The operator, the example and the injected pods all run here; helm waits until they are Ready.
    let release = install(
        &ns,
        &["--set", "example.replicas=1", "--set", "sidecar.adminPort=9555"],
    );
    let example = ready_pods(&ns, &format!("{}-example-", release.fullname()), 1).await;
    assert_eq!(
        sidecar_port(&example[0]),
        9555,
        "the example's sidecar on the value's port"
    );
    let deployments: Api<Deployment> = ns.api();
    deployments
        .create(&PostParams::default(), &documented_deployment())
        .await
        .expect("the documented Deployment passes restricted once injected");
    let units = ready_pods(&ns, "web-", 3).await;
    for pod in &units {
        // Ready: the kubelet's probes reached the sidecar on that port.
        assert_eq!(sidecar_port(pod), 9555);
    }
    holder_among(&ns, "web", &units).await;

    let pods: Api<Pod> = ns.api();
    // The namespace does enforce it: the same pod without its seccomp profile is refused.
    let mut loose = restricted_pod("loose-0", "loose", 8000, &[]);
    loose.spec.as_mut().expect("a spec").security_context = None;
    let refused = pods
        .create(&PostParams::default(), &loose)
        .await
        .expect_err("a pod that is not restricted");
    assert!(refused.to_string().contains("PodSecurity"), "{refused}");
    // An app that uses the admin port itself is refused, naming the annotation that moves it...
    let refused = pods
        .create(
            &PostParams::default(),
            &restricted_pod("busy-0", "busy", 9555, &[]),
        )
        .await
        .expect_err("a pod whose app declares the admin port");
    let message = refused.to_string();
    assert!(
        message.contains("declares port 9555") && message.contains("leadership.dev/admin-port"),
        "{message}"
    );
    // ... and runs, Ready and leading, once the annotation moves the sidecar's port.
    let moved = restricted_pod("busy-0", "busy", 9555, &[("leadership.dev/admin-port", "9600")]);
    pods.create(&PostParams::default(), &moved)
        .await
        .expect("admitted with the sidecar on another port");
    let busy = ready_pods(&ns, "busy-", 1).await;
    assert_eq!(sidecar_port(&busy[0]), 9600);
    holder_among(&ns, "busy", &busy).await;
}

/// `pod`'s app says, on its socket, whether it should lead now.
fn declare(ns: &TestNamespace, pod: &str, body: &str) {
    let script =
        format!("curl -sf --unix-socket \"$LEADERSHIP_SOCKET\" -d '{body}' http://localhost/v1/eligibility");
    let out = exec(ns, pod, "app", &script);
    assert!(out.status.success(), "{pod} declares {body}: {}", text(&out));
}

#[tokio::test]
async fn an_app_that_says_not_me_hands_over_and_is_skipped_as_a_standby() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let (_release, units) = with_workload(&ns, 3, "5s", CRASHES_ON_FLAG).await;
    let units = names(&units);
    let (leader, term) = holder(&ns, "web", |h| units.iter().any(|u| u == h)).await;
    let others: Vec<&String> = units.iter().filter(|u| **u != leader).collect();
    let (warming, ready) = (others[0], others[1]);

    // A standby's app is warming up; then the leader's app is draining: the operator asks the
    // leader to hand over at once (no grace), to the one standby whose app did not say "not me".
    declare(&ns, warming, r#"{"eligible":false,"reason":"warming up"}"#);
    let asked = Instant::now();
    declare(&ns, &leader, r#"{"eligible":false,"reason":"draining"}"#);
    let (next, next_term) = holder(&ns, "web", |h| h != leader).await;
    eprintln!(
        "{leader} said it is draining: {next} leads after {:?}",
        asked.elapsed()
    );
    assert_eq!(
        (&next, next_term),
        (ready, term + 1),
        "skipped {warming}, which is warming up"
    );
    let events = event_messages(&ns, "AppUnhealthy");
    assert!(events.contains("it said: draining"), "{events}");

    // The warming unit may lead again: it is listed no more.
    declare(&ns, warming, r#"{"eligible":true}"#);
    let leases: Api<LeadershipLease> = ns.api();
    let ineligible = leases.get("web").await.unwrap().status.unwrap().ineligible;
    assert_eq!(ineligible.keys().collect::<Vec<_>>(), [&leader]);
}

#[tokio::test]
async fn a_statefulset_rollout_moves_leadership_at_most_twice_from_its_first_pod_and_once_otherwise() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let (_release, _) = with_workload(&ns, 3, "5s", CRASHES_ON_FLAG).await;
    let sets: Api<StatefulSet> = ns.api();
    holder(&ns, "web", |_| true).await;
    let store = KubeStore::new(ns.client.clone(), Scope::Namespace(ns.name.clone()));
    // A StatefulSet replaces its Pods from the highest ordinal down.
    let mut grants = Vec::new();
    for ordinal in [2, 1, 0] {
        let unit = format!("web-{ordinal}");
        let (current, _) = holder(&ns, "web", |_| true).await;
        if current != unit {
            store.hand_over("web", Some(&unit)).await.expect("hand over");
        }
        let (_, term) = holder(&ns, "web", |h| h == unit).await;
        roll_statefulset(&sets, "web", 3, SETTLE)
            .await
            .expect("the rollout completes");
        let (after, after_term) = holder(&ns, "web", |_| true).await;
        grants.push((unit.clone(), after_term - term));
        eprintln!(
            "StatefulSet rollout with {unit} leading: {} grant(s), {after} leads",
            after_term - term
        );
    }
    assert_eq!(
        grants,
        [
            ("web-2".to_owned(), 2),
            ("web-1".to_owned(), 1),
            ("web-0".to_owned(), 1)
        ],
        "grants per rollout, by the leader when it began"
    );
}

#[tokio::test]
async fn a_deleted_leaders_pod_hands_over_at_once_while_its_app_is_still_stopping() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let (_release, units) = with_workload(&ns, 2, "5s", REPORTS_WHEN_STOPPING).await;
    let (leader, term) = holder_among(&ns, "web", &units).await;

    // The operator sees the Pod being deleted and asks its sidecar to hand over to the other
    // unit at once: leadership does not wait for the kubelet to stop the app (8 s here) and then
    // the sidecar.
    let pods: Api<Pod> = ns.api();
    let uid = pods.get(&leader).await.unwrap().metadata.uid.unwrap();
    let versions = watch_until_gone(&pods, &leader, &uid);
    let deleted = Instant::now();
    pods.delete(&leader, &DeleteParams::default()).await.unwrap();
    let (next, next_term) = holder(&ns, "web", |h| h != leader).await;
    let handover = deleted.elapsed();
    assert_eq!(next_term, term + 1, "one grant");
    let versions = versions.await.unwrap();
    let app = last_terminated(&versions, "app").expect("the kubelet reported the app container terminated");
    let said: Value = serde_json::from_str(app.message.as_deref().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the app's termination message is the socket's status: {e}: {app:?}"));
    assert_eq!(
        (said["leader"].as_bool(), said["holder"].as_str()),
        (Some(false), Some(next.as_str())),
        "8 s into its stop, the app saw the other unit lead: {said}"
    );
    if let Some(sidecar) = last_terminated(&versions, "leadership") {
        assert!(
            sidecar.finished_at >= app.finished_at,
            "the sidecar stopped after the app"
        );
        assert_eq!(sidecar.exit_code, 0, "the sidecar stopped cleanly: {sidecar:?}");
    }
    let events = event_messages(&ns, "LeaderTerminating");
    assert!(
        events.contains(&format!(
            "{leader}'s Pod is being deleted: it hands over to {next}"
        )),
        "a LeaderTerminating Event: {events}"
    );
    eprintln!("handover from {leader} to {next} after deleting its pod: {handover:?}");
}

/// The messages of the namespace's Events with `reason`, space-separated.
fn event_messages(ns: &TestNamespace, reason: &str) -> String {
    let selector = format!("reason={reason}");
    let out = ns
        .env()
        .kubectl()
        .args(["get", "events", "-n", &ns.name, "--field-selector", &selector])
        .args(["-o", "jsonpath={.items[*].message}"])
        .output()
        .expect("run kubectl");
    assert!(out.status.success(), "kubectl get events: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lease's `LeaderHealthy` condition: (status, reason, message).
async fn leader_health(ns: &TestNamespace, lease: &str) -> Option<(String, String, String)> {
    let leases: Api<LeadershipLease> = ns.api();
    let object = leases.get_opt(lease).await.ok()??;
    let status = object.status?;
    let c = condition::find(&status.conditions, "LeaderHealthy")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn a_crash_looping_leader_hands_over_to_a_healthy_unit_and_with_none_healthy_keeps_leading() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let (_release, units) = with_workload(&ns, 3, "5s", CRASHES_ON_FLAG).await;
    let (leader, term) = holder_among(&ns, "web", &units).await;
    eventually(SETTLE, "the leader reported healthy", || async {
        leader_health(&ns, "web")
            .await
            .filter(|(status, ..)| status == "True")
    })
    .await;

    // The leader's app starts crash-looping (its sidecar lives on): after the grace (5 s), the
    // operator asks it to hand over to a healthy unit.
    let crash = |pod: &str| {
        let out = exec(&ns, pod, "app", "touch /scratch/crash");
        assert!(out.status.success(), "crash {pod}'s app: {}", text(&out));
    };
    let broken = Instant::now();
    crash(&leader);
    let (next, next_term) = holder(&ns, "web", |h| h != leader).await;
    let moved = broken.elapsed();
    assert_eq!(next_term, term + 1, "one grant");
    let pods: Api<Pod> = ns.api();
    assert!(
        restarts(&pods.get(&leader).await.unwrap(), "app") >= 1,
        "the old leader's app restarted"
    );
    eprintln!("crash loop of {leader}'s app: {next} leads after {moved:?}");

    // Every app crash-loops: a bad leader beats none. The leader stays, and the lease says why.
    for unit in names(&units).iter().filter(|u| **u != leader) {
        crash(unit);
    }
    let (_, reason, message) = eventually(SETTLE, "the condition says no standby is healthy", || async {
        leader_health(&ns, "web")
            .await
            .filter(|(_, reason, _)| reason == "NoHealthyStandby")
    })
    .await;
    assert!(
        message.starts_with(&format!("{next}'s app is unhealthy")),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (still, still_term) = holder(&ns, "web", |_| true).await;
    assert_eq!(
        (still.as_str(), still_term),
        (next.as_str(), next_term),
        "{reason}: {message}"
    );
    let events = event_messages(&ns, "NoHealthyStandby");
    assert!(
        events.contains("it keeps leading"),
        "a NoHealthyStandby Event: {events}"
    );
}

#[tokio::test]
async fn the_operator_releases_a_lost_pods_lease_on_what_the_kubelet_reports() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let _release = install(&ns, &["--set", "example.replicas=1"]);
    // One pod that is never restarted, with a long claim: only the pod-loss rule can free its
    // lease soon after both its containers die at once.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "batch-0",
            "annotations": {
                "leadership.dev/application": "batch",
                "leadership.dev/claim-duration": "60s",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "app",
                "image": registry_image(APP_IMAGE),
                "command": ["sh", "-c", "while true; do sleep 1; done"],
                "securityContext": { "runAsUser": 1000, "runAsNonRoot": true },
            }],
        },
    }))
    .unwrap();
    let pods: Api<Pod> = ns.api();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = ready_pods(&ns, "batch-0", 1).await.remove(0);
    let (holder_name, term) = holder(&ns, "batch", |h| h == "batch-0").await;

    let killed = Instant::now();
    let ids = ["leadership", "app"].map(|c| container_id(&running, c).expect("a running container"));
    signal_containers(&ns, &ids, "KILL").unwrap();
    let leases: Api<LeadershipLease> = ns.api();
    let released = eventually(
        Duration::from_secs(90),
        "the lease released after the pod's loss",
        || async {
            let status = leases.get("batch").await.ok()?.status?;
            status.holder.is_none().then_some(status)
        },
    )
    .await;
    let took = killed.elapsed();
    let last = released.history.last().expect("a transition");
    assert_eq!(
        last.reason, "PodGone",
        "released by the operator's pod-loss rule: {:?}",
        released.history
    );
    assert_eq!(released.term, term, "a release keeps the term");
    assert!(
        took < Duration::from_secs(60),
        "well before the 120 s lease ran out: {took:?}"
    );
    let reported = pods.get("batch-0").await.unwrap();
    let states: BTreeMap<String, bool> = ["leadership", "app"]
        .iter()
        .map(|name| {
            (
                name.to_string(),
                last_terminated(std::slice::from_ref(&reported), name).is_some(),
            )
        })
        .collect();
    assert!(
        states.values().all(|t| *t),
        "the kubelet reports every container terminated: {states:?}"
    );
    eprintln!("{holder_name}'s lease released by the operator {took:?} after its containers were killed");
}

#[tokio::test]
async fn the_operator_fails_over_as_pods_and_uninstalling_leaves_only_the_crd() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let release = install(&ns, &["--set", "example.replicas=2"]);
    let lease = OPERATOR_LEASE;
    let operators = ready_pods(&ns, &format!("{}-operator-", release.fullname()), 2).await;
    let names = names(&operators);
    let (leading, term) = holder_among(&ns, lease, &operators).await;
    let pods: Api<Pod> = ns.api();
    pods.delete(&leading, &DeleteParams::default()).await.unwrap();
    let (next, next_term) = holder(&ns, lease, |h| h != leading).await;
    assert!(next_term > term);
    assert!(names.contains(&next) || next.starts_with(&format!("{}-operator-", release.fullname())));

    // The new leader works: it moves the leader label when the example's leader goes.
    let example = format!("{}-example", release.fullname());
    let (app_leader, _) = holder(&ns, &example, |h| h.starts_with(&example)).await;
    pods.delete(&app_leader, &DeleteParams::default()).await.unwrap();
    let (app_next, _) = holder(&ns, &example, |h| h != app_leader).await;
    eventually(
        SETTLE,
        "the new operator leader labels the new application leader",
        || async {
            let pod = pods.get(&app_next).await.ok()?;
            (pod.metadata
                .labels?
                .get("leadership.dev/leader")
                .map(String::as_str)
                == Some("true"))
            .then_some(())
        },
    )
    .await;

    // helm uninstall: what the chart made goes; leases stay as application data, the CRD stays.
    let name = release.name.clone();
    drop(release);
    let env = ns.env();
    eventually(SETTLE, "nothing of the release left in its namespace", || async {
        let out = env
            .kubectl()
            .args([
                "get",
                "-n",
                &name,
                "deployments,statefulsets,pods,services,configmaps,secrets,serviceaccounts,roles,rolebindings,podmonitors",
                "-o",
                "name",
            ])
            .output()
            .ok()?;
        let left: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !matches!(*l, "configmap/kube-root-ca.crt" | "serviceaccount/default"))
            .map(str::to_owned)
            .collect();
        left.is_empty().then_some(())
    })
    .await;
    let cluster = env
        .kubectl()
        .args([
            "get",
            "clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingadmissionpolicies,validatingadmissionpolicybindings",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    let left: Vec<String> = String::from_utf8_lossy(&cluster.stdout)
        .lines()
        .filter(|l| l.contains(&name))
        .map(str::to_owned)
        .collect();
    assert!(
        left.is_empty(),
        "cluster-wide objects of the release left: {left:?}"
    );
    let crd = env
        .kubectl()
        .args(["get", "crd", "leadershipleases.leadership.dev", "-o", "name"])
        .output()
        .unwrap();
    assert!(
        crd.status.success(),
        "the CRD stays, as Helm leaves CRDs: {}",
        text(&crd)
    );
}

/// Sends `method path` with the JSON `body` from `pod`'s app container, as a compromised app
/// would: curl through the `kubernetes` Service, with the ServiceAccount token and CA the kubelet
/// mounted there (a token bound to that pod). The HTTP code and the response's message.
fn from_app(ns: &TestNamespace, pod: &str, method: &str, path: &str, body: &Value) -> (u16, String) {
    let script = format!(
        "sa=/var/run/secrets/kubernetes.io/serviceaccount; \
         curl -sS --cacert $sa/ca.crt -H \"Authorization: Bearer $(cat $sa/token)\" \
         -H 'Content-Type: application/json' -X {method} --data-binary @- -w '\\n%{{http_code}}' \
         \"https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT{path}\" <<'BODY'\n{body}\nBODY"
    );
    let out = exec(ns, pod, "app", &script);
    assert!(
        out.status.success(),
        "curl in {pod}'s app container: {}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (response, code) = stdout.trim_end().rsplit_once('\n').unwrap_or_default();
    let code = code
        .parse()
        .unwrap_or_else(|_| panic!("an HTTP code from curl: {stdout}"));
    let message = serde_json::from_str::<Value>(response)
        .ok()
        .and_then(|r| r["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| response.to_owned());
    (code, message)
}

/// `pod`'s app container writes `lease` (`part` "/status" for the claim, "" for the object) as
/// `change` makes it from the lease as it is now, with that version (a race lost to a renewal is
/// tried again). Asserts the API server refuses it saying `expected`, and the claim is as it was.
async fn refused_from_app(
    ns: &TestNamespace,
    pod: &str,
    lease: &str,
    part: &str,
    change: Box<dyn Fn(&mut LeadershipLease)>,
    expected: &str,
) {
    let leases: Api<LeadershipLease> = ns.api();
    let path = format!(
        "/apis/leadership.dev/v1alpha1/namespaces/{}/leadershipleases/{lease}{part}",
        ns.name
    );
    let claim = |l: &LeadershipLease| {
        l.status
            .as_ref()
            .map(|s| (s.holder.clone(), s.term, s.lease_duration_ms))
    };
    for _ in 0..20 {
        let mut before = leases.get(lease).await.expect("read the lease");
        before.metadata.managed_fields = None;
        let mut next = before.clone();
        change(&mut next);
        let body = serde_json::to_value(&next).expect("a lease as JSON");
        let (code, message) = from_app(ns, pod, "PUT", &path, &body);
        if code == 409 {
            continue;
        }
        assert!(
            matches!(code, 403 | 422) && message.contains(expected),
            "{pod} writing {lease}: expected a refusal saying {expected:?}, got {code}: {message}"
        );
        let after = leases.get(lease).await.expect("read the lease");
        assert_eq!(claim(&after), claim(&before), "{lease}'s claim is unchanged");
        return;
    }
    panic!("{pod} writing {lease}: every try lost a race with a renewal");
}

/// The part of a lease a write goes to: its status (the claim), or the object.
const STATUS: &str = "/status";
const OBJECT: &str = "";

/// A change of a lease's status.
fn status(change: impl Fn(&mut LeadershipLeaseStatus)) -> impl Fn(&mut LeadershipLease) {
    move |lease| change(lease.status.get_or_insert_with(Default::default))
}

/// A grant to `unit` as if the lease were free: holder, the next term, renewals 0, a duration.
fn take(unit: &str) -> impl Fn(&mut LeadershipLease) + use<> {
    let unit = unit.to_owned();
    status(move |s| {
        s.holder = Some(unit.clone());
        s.term += 1;
        s.renewals = 0;
        s.lease_duration_ms = Some(30_000);
    })
}

#[tokio::test]
async fn a_compromised_app_container_with_its_pods_token_is_refused_every_illegal_write() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let release = install(&ns, &["--set", "example.replicas=1"]);
    release.wait_for_policies(&ns).await;
    // The example opts its app out of a token: only its sidecar has one.
    let example = ready_pods(&ns, &format!("{}-example", release.fullname()), 1).await;
    let no_token = exec(
        &ns,
        &names(&example)[0],
        "app",
        "test ! -e /var/run/secrets/kubernetes.io/serviceaccount/token",
    );
    assert!(
        no_token.status.success(),
        "the example's app container has no token: {}",
        text(&no_token)
    );

    // A workload whose app containers keep the automounted token: the sidecar's ServiceAccount,
    // bound by the kubelet to each pod. A long claim, so that renewals seldom race the attacks.
    let sets: Api<StatefulSet> = ns.api();
    sets.create(
        &PostParams::default(),
        &injected_workload("web", 3, "30s", REPORTS_WHEN_STOPPING),
    )
    .await
    .unwrap();
    let units = ready_pods(&ns, "web-", 3).await;
    let (leader, term) = holder_among(&ns, "web", &units).await;
    let standby = names(&units).into_iter().find(|n| *n != leader).unwrap();
    let attack = |lease, part, change, expected: String| {
        let standby = standby.clone();
        let ns = &ns;
        async move { refused_from_app(ns, &standby, lease, part, change, &expected).await }
    };
    // The live claim of its own application: taken, cleared, shortened, lengthened, its term
    // jumped (the schema's rules come first).
    let held = format!(
        "the lease is held by {leader}: only the operator clears a claim; a unit takes only a free lease (pod {standby}"
    );
    let others = format!("the lease is held by {leader}: a unit changes only its own claim (pod {standby}");
    attack("web", STATUS, Box::new(take(&standby)), held.clone()).await;
    attack("web", STATUS, Box::new(status(|s| s.holder = None)), held).await;
    attack(
        "web",
        STATUS,
        Box::new(status(|s| s.lease_duration_ms = Some(1))),
        others.clone(),
    )
    .await;
    attack(
        "web",
        STATUS,
        Box::new(status(|s| s.lease_duration_ms = Some(3_600_000))),
        others,
    )
    .await;
    attack(
        "web",
        STATUS,
        Box::new(status(|s| s.term = MAX_COUNT)),
        "the term rises by at most one per write".into(),
    )
    .await;
    attack(
        "web",
        STATUS,
        Box::new(status(|s| s.term = MAX_COUNT + 1)),
        "less than or equal to 9007199254740991".into(),
    )
    .await;
    // The spec is not a unit's to write (without allowPinning, not even its pins).
    let revoke = {
        let leader = leader.clone();
        move |l: &mut LeadershipLease| {
            l.spec.revocation = Some(Revocation {
                unit: leader.clone(),
                term,
                requested_at: None,
            });
        }
    };
    attack(
        "web",
        OBJECT,
        Box::new(revoke),
        "cannot update resource \"leadershipleases\"".into(),
    )
    .await;

    // The operator's own lease, in the same namespace.
    attack(
        OPERATOR_LEASE,
        STATUS,
        Box::new(take(&standby)),
        format!("the operator's own lease is claimed only by the operator's replicas (pod {standby}"),
    )
    .await;

    // Another application's free lease, and a holder that is no pod at all.
    let leases: Api<LeadershipLease> = ns.api();
    leases
        .create(&PostParams::default(), &LeadershipLease::empty(&ns.name, "other"))
        .await
        .unwrap();
    attack(
        "other",
        STATUS,
        Box::new(take(&standby)),
        format!("grant refused: pod {standby} is not a member of application other"),
    )
    .await;
    attack(
        "other",
        STATUS,
        Box::new(take("ghost")),
        format!(
            "claim refused: a pod may claim leadership only for itself (pod {standby} wrote holder ghost)"
        ),
    )
    .await;

    // Credentials that are no pod's: the sidecar's account impersonated renews the live claim.
    let sidecar_user = format!("system:serviceaccount:{}:leadership-sidecar", ns.name);
    let impersonated: Api<LeadershipLease> =
        Api::namespaced(ns.env().impersonating(&sidecar_user).await, &ns.name);
    let mut renewal = leases.get("web").await.unwrap();
    renewal.metadata.managed_fields = None;
    status(|s| s.renewals += 1)(&mut renewal);
    match impersonated
        .replace_status("web", &PostParams::default(), &renewal)
        .await
    {
        Err(kube::Error::Api(s)) => assert!(
            s.code == 403
                && s.message
                    .contains("status writes need a pod-bound ServiceAccount token"),
            "{s:?}"
        ),
        other => panic!("an impersonated sidecar account renewed a claim: {other:?}"),
    }
    // The operator's account, bound to its running replica, changes a unit's image.
    let operator = ready_pods(&ns, &format!("{}-operator-", release.fullname()), 2)
        .await
        .remove(0);
    let bound = (
        operator.metadata.name.as_deref().unwrap(),
        operator.metadata.uid.as_deref().unwrap(),
    );
    let token = ns.token(&release.operator_account(), Some(bound)).await;
    let operator_client = ns.client_with_token(&token).await;
    let as_operator: Api<Pod> = Api::namespaced(operator_client.clone(), &ns.name);
    let image = serde_json::json!({ "spec": { "containers": [{ "name": "app", "image": "evil:1" }] } });
    match as_operator
        .patch(&standby, &PatchParams::default(), &Patch::Strategic(&image))
        .await
    {
        Err(kube::Error::Api(s)) => assert!(
            s.code == 403
                && s.message.contains(
                    "the leadership operator changes only the labels leadership.dev/leader and leadership.dev/leader-of of a pod"
                ),
            "{s:?}"
        ),
        other => panic!("the operator's account changed a unit's image: {other:?}"),
    }
    // ... and rewrites its webhook configuration to see every operation (only its caBundle is its
    // to write).
    let configs: Api<MutatingWebhookConfiguration> = Api::all(operator_client);
    let injector = format!("{}-injector", release.fullname());
    let mut widened = configs
        .get(&injector)
        .await
        .expect("the operator reads its configuration");
    for rule in widened
        .webhooks
        .iter_mut()
        .flatten()
        .flat_map(|w| w.rules.iter_mut().flatten())
    {
        rule.operations = Some(vec!["CREATE".into(), "UPDATE".into()]);
    }
    match configs
        .replace(&injector, &PostParams::default(), &widened)
        .await
    {
        Err(kube::Error::Api(s)) => assert!(
            s.code == 403
                && s.message.contains(&format!(
                    "the leadership operator changes only the caBundle of its MutatingWebhookConfiguration: {} changed webhooks[].rules",
                    release.operator_user()
                )),
            "{s:?}"
        ),
        other => panic!("the operator's account rewrote its webhook configuration: {other:?}"),
    }

    // The workload kept its leader, in the same term, and exactly one unit says it leads.
    let (still, same_term) = holder(&ns, "web", |_| true).await;
    assert_eq!((still.as_str(), same_term), (leader.as_str(), term));
    let leading: Vec<String> = names(&units)
        .into_iter()
        .filter(|n| socket_status(&ns, n)["leader"] == true)
        .collect();
    assert_eq!(leading, [leader]);
}

/// The current tree's CRD, which docs/upgrades.md has users apply before `helm upgrade`.
const CRD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/leadershiplease.yaml");

/// What [`count_leaders`] saw.
#[derive(Debug, Default)]
struct LeaderSamples {
    /// Rounds in which every pod of the application was asked.
    rounds: usize,
    /// The rounds in which more than one unit said it led, with those units.
    overlaps: Vec<Vec<String>>,
}

/// Asks every pod named `prefix*`, round after round until `stop`, whether its sidecar leads (its
/// admin port's `leader` gauge): old pods and new, Ready or not. A round in which two units say
/// they lead asks those units again in the reverse order: a handover that fell between two answers
/// of one pass (the first unit stepped down, then the second took the lease) is no overlap; two
/// units that still both lead, each asked after the other said so, led at once.
async fn count_leaders(pods: Api<Pod>, prefix: String, stop: Arc<AtomicBool>) -> LeaderSamples {
    let admin = AdminClient::new(Duration::from_millis(500));
    let mut samples = LeaderSamples::default();
    while !stop.load(Ordering::SeqCst) {
        if let Ok(list) = pods.list(&ListParams::default()).await {
            let mut leading = Vec::new();
            for pod in &list.items {
                if !pod
                    .metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&prefix))
                {
                    continue;
                }
                if let Some(address) = admin_address(pod)
                    && let Some((unit, true)) = admin.unit(&address).await
                {
                    leading.push((address, unit));
                }
            }
            samples.rounds += 1;
            if leading.len() > 1 {
                let mut still = Vec::new();
                for (address, unit) in leading.iter().rev() {
                    if admin.unit(address).await == Some((unit.clone(), true)) {
                        still.push(unit.clone());
                    }
                }
                if still.len() > 1 {
                    samples.overlaps.push(still);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    samples
}

/// Asks the API server, every 250 ms until `stop`, to create (as a dry run) a pod that asks for
/// the sidecar: the mutating webhook must answer each time (it fails closed). The answers that
/// came back injected, and what went wrong with the others.
async fn probe_webhook(pods: Api<Pod>, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let probe = restricted_pod("webhook-probe", "webhook-probe", 8000, &[]);
    let (mut injected, mut failures) = (0, Vec::new());
    while !stop.load(Ordering::SeqCst) {
        match pods.create(&dry_run, &probe).await {
            Ok(pod) if sidecar_image(&pod).is_some() => injected += 1,
            Ok(_) => failures.push("admitted without the sidecar".to_owned()),
            Err(err) => failures.push(err.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (injected, failures)
}

/// Every lease of the namespace: name -> (holder, term).
async fn leases(ns: &TestNamespace) -> BTreeMap<String, (Option<String>, i64)> {
    let leases: Api<LeadershipLease> = ns.api();
    let list = leases
        .list(&ListParams::default())
        .await
        .expect("list the leases");
    list.items
        .into_iter()
        .map(|lease| {
            let status = lease.status.unwrap_or_default();
            (
                lease.metadata.name.unwrap_or_default(),
                (status.holder, status.term),
            )
        })
        .collect()
}

/// The image of `pod`'s injected sidecar.
fn sidecar_image(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .init_containers
        .as_ref()?
        .first()?
        .image
        .clone()
}

#[tokio::test]
async fn an_upgrade_from_the_previous_release_keeps_the_leases_one_leader_and_the_webhook_serving() {
    let _serial = SERIAL.lock().await;
    let ns = testenv::node().namespace().await;
    let env = ns.env();
    let previous = PreviousRelease::locate().expect("the previous release (e2e/previous)");
    previous
        .push(&Tools::locate_crane().expect("crane"))
        .expect("push the previous release's images to the node's registry");
    // The CRD as the previous release's `helm install` left it: Helm creates a chart's CRDs when
    // they are missing and never changes them.
    let crd_present = env
        .kubectl()
        .args(["get", "crd", "leadershipleases.leadership.dev"])
        .output()
        .unwrap();
    if crd_present.status.success() {
        let replaced = env
            .kubectl()
            .args(["replace", "--field-manager=helm", "-f"])
            .arg(previous.chart().join("crds/leadershiplease.yaml"))
            .output()
            .unwrap();
        assert!(replaced.status.success(), "{}", text(&replaced));
    }
    // The previous release with its example, and the user's own Deployment beside it.
    let example_settings = example_args(&ns);
    let settings: Vec<&str> = example_settings.iter().map(String::as_str).collect();
    let release = Release::install_previous(&ns, &previous, &settings);
    let example = format!("{}-example", release.fullname());
    let deployments: Api<Deployment> = ns.api();
    deployments
        .create(&PostParams::default(), &documented_deployment())
        .await
        .expect("create the documented Deployment");
    let previous_sidecar = registry_image(&format!("leadership-sidecar:{}", previous.tag()));
    let mut units = ready_pods(&ns, &format!("{example}-"), 3).await;
    units.extend(ready_pods(&ns, "web-", 3).await);
    for pod in &units {
        assert_eq!(
            sidecar_image(pod),
            Some(previous_sidecar.clone()),
            "the previous sidecar"
        );
    }
    let (web_leader, web_term) = holder(&ns, "web", |h| h.starts_with("web-")).await;
    holder(&ns, &example, |h| h.starts_with(&example)).await;
    let before = leases(&ns).await;

    let stop = Arc::new(AtomicBool::new(false));
    let samplers = [format!("{example}-"), "web-".to_owned()]
        .map(|prefix| tokio::spawn(count_leaders(ns.api(), prefix, stop.clone())));
    let webhook = tokio::spawn(probe_webhook(ns.api(), stop.clone()));

    // The documented steps (docs/upgrades.md): the CRD first, then the release with the values it
    // was installed with; the image tags go back to the new chart's appVersion. The release rolls
    // what it owns (the operator, the example); the user's Deployment is left as it is.
    let started = Instant::now();
    let crd = env
        .kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f", CRD])
        .output()
        .unwrap();
    assert!(crd.status.success(), "{}", text(&crd));
    let upgraded = release.upgrade_from_registry(&[
        "--reset-then-reuse-values",
        "--set",
        "operator.image.tag=",
        "--set",
        "sidecar.image.tag=",
        "--wait",
        "--timeout",
        "5m",
    ]);
    assert!(upgraded.status.success(), "{}", text(&upgraded));
    let upgrade_took = started.elapsed();
    let operators = ready_pods(&ns, &format!("{}-operator-", release.fullname()), 2).await;
    for pod in &operators {
        let image = pod.spec.as_ref().unwrap().containers[0].image.clone();
        assert_eq!(
            image,
            Some(registry_image(OPERATOR_IMAGE)),
            "the new operator runs"
        );
    }
    let mut units = ready_pods(&ns, &format!("{example}-"), 3).await;
    let (example_leader, _) = holder_among(&ns, &example, &units).await;
    // The user's app kept its leader through the upgrade: the same holder, the same term.
    assert_eq!(holder(&ns, "web", |_| true).await, (web_leader.clone(), web_term));

    // The user's next rollout gives its pods the new sidecar, beside the old ones until done.
    restart_rollout(&deployments, "web")
        .await
        .expect("restart the rollout");
    eventually(SETTLE, "the Deployment's rollout done", || async {
        let d = deployments.get("web").await.ok()?;
        let status = d.status?;
        (d.metadata.generation == status.observed_generation
            && status.replicas == Some(3)
            && status.updated_replicas == Some(3)
            && status.ready_replicas == Some(3))
        .then_some(())
    })
    .await;
    units.extend(ready_pods(&ns, "web-", 3).await);
    for pod in &units {
        assert_eq!(
            sidecar_image(pod),
            Some(registry_image(SIDECAR_IMAGE)),
            "the new sidecar"
        );
    }
    let (web_after, web_after_term) = holder(&ns, "web", |h| {
        units.iter().any(|u| u.metadata.name.as_deref() == Some(h))
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut samples = Vec::new();
    for sampler in samplers {
        samples.push(sampler.await.unwrap());
    }
    let (injected, failures) = webhook.await.unwrap();

    let later = leases(&ns).await;
    assert_eq!(
        later.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "the same leases"
    );
    for (name, (_, term)) in &before {
        assert!(
            later[name].1 >= *term,
            "{name}: term {} after {term}",
            later[name].1
        );
    }
    for sample in &samples {
        assert!(
            sample.overlaps.is_empty(),
            "two units said they led at once: {:?}",
            sample.overlaps
        );
        assert!(
            sample.rounds >= 10,
            "the leaders were sampled ({} rounds)",
            sample.rounds
        );
    }
    assert!(failures.is_empty(), "the webhook did not answer: {failures:?}");
    assert!(injected >= 10, "the webhook was probed ({injected} answers)");
    let pods: Api<Pod> = ns.api();
    let all = pods.list(&ListParams::default()).await.unwrap().items;
    let not_ready: Vec<String> = all
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !is_ready(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert!(
        not_ready.is_empty(),
        "pods not Ready after the upgrade: {not_ready:?}"
    );
    eprintln!(
        "upgrade from {}: CRD and helm upgrade (operator and example rolled) in {upgrade_took:?}, \
         the example led by {example_leader} after; web kept {web_leader} in term {web_term}, \
         and after its rollout {web_after} leads in term {web_after_term}; {} leader samples, none \
         with two leaders; the webhook answered all {injected} probes",
        previous.tag(),
        samples.iter().map(|s| s.rounds).sum::<usize>(),
    );
}
