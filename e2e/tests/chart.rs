//! The Helm chart: lint and render, install into the real control plane, least-privilege RBAC
//! checked with `kubectl auth can-i`, the operator and sidecars running with the chart's
//! ServiceAccounts (not as admin) and pod-bound tokens, and the admission policy that lets a pod
//! claim only for itself (every rule of the policy: `attacks.rs`).

use std::time::Duration;

use leadership_e2e::{
    chart::{CHART, Release, document, helm, render, text},
    testenv::{self, TestNamespace},
    units::{self, PROMPTLY, Sidecar, leader},
};
use nix::sys::signal::Signal;

#[test]
fn the_chart_lints_and_renders() {
    let lint = helm(&["lint", CHART, "--strict"]);
    assert!(lint.status.success(), "{}", text(&lint));
    let rendered = helm(&[
        "template",
        "demo",
        CHART,
        "--namespace",
        "leadership-system",
        "--set",
        "example.enabled=true",
    ]);
    assert!(rendered.status.success(), "{}", text(&rendered));
    let yaml = String::from_utf8_lossy(&rendered.stdout);
    for kind in [
        "kind: Deployment",
        "kind: ClusterRole",
        "kind: ValidatingAdmissionPolicy\n",
        "kind: ValidatingAdmissionPolicyBinding",
        "kind: StatefulSet",
        "restartPolicy: Always",
        "readOnlyRootFilesystem: true",
        "name: demo-leadership-example-leader",
        "leadership.dev/leader: \"true\"",
        "kind: MutatingWebhookConfiguration",
        "kind: FlowSchema",
        "kind: PriorityLevelConfiguration",
        "'leadership.dev/application' in object.metadata.annotations",
        "--webhook-address=0.0.0.0:9443",
        "supplementalGroups: [65532]",
        "name: demo-leadership-claims",
        "name: demo-leadership-spec",
        "request.userInfo.username == 'system:serviceaccount:leadership-system:demo-leadership'",
        "request.name == 'leadership-operator'",
        "failurePolicy: Fail",
        "name: demo-leadership-operator-pods",
        "name: demo-leadership-operator-webhook",
        "automountServiceAccountToken: false",
        "name: leadership-token",
        "namespace: leadership-example",
    ] {
        assert!(yaml.contains(kind), "the rendered chart lacks {kind:?}");
    }
    let refused = helm(&["template", "demo", CHART, "--set", "operator.replicaz=3"]);
    assert!(
        !refused.status.success(),
        "the strict schema refuses unknown values"
    );
    assert!(text(&refused).contains("replicaz"), "{}", text(&refused));
    let bad_duration = helm(&["template", "demo", CHART, "--set", "operator.claimDuration=soon"]);
    assert!(!bad_duration.status.success());
    let bad_policy = helm(&[
        "template",
        "demo",
        CHART,
        "--set",
        "webhook.failurePolicy=Sometimes",
    ]);
    assert!(!bad_policy.status.success(), "failurePolicy is Fail or Ignore");
}

/// The namespaces a rendering gives the sidecar's ServiceAccount, Role and RoleBinding.
fn onboarded(documents: &[serde_yaml::Value]) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = documents
        .iter()
        .filter(|d| {
            d["metadata"]["name"].as_str() == Some("leadership-sidecar")
                || d["metadata"]["name"].as_str() == Some("demo-leadership-sidecar")
        })
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["metadata"]["namespace"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

#[test]
fn no_namespace_is_onboarded_unless_listed_and_the_example_runs_in_its_own() {
    let none = render("demo", &["--namespace", "ops"]);
    assert_eq!(
        onboarded(&none),
        Vec::<(String, String)>::new(),
        "not even the release's"
    );
    let listed = render(
        "demo",
        &["--namespace", "ops", "--set", "sidecar.namespaces={shop,ops}"],
    );
    let expected: Vec<(String, String)> = ["Role", "RoleBinding", "ServiceAccount"]
        .iter()
        .flat_map(|kind| ["ops", "shop"].map(|ns| ((*kind).to_owned(), ns.to_owned())))
        .collect();
    assert_eq!(onboarded(&listed), expected);

    let example = render("demo", &["--namespace", "ops", "--set", "example.enabled=true"]);
    let statefulset = document(&example, "StatefulSet", "demo-leadership-example");
    assert_eq!(
        statefulset["metadata"]["namespace"].as_str(),
        Some("leadership-example")
    );
    let service = document(&example, "Service", "demo-leadership-example-leader");
    assert_eq!(
        service["metadata"]["namespace"].as_str(),
        Some("leadership-example")
    );
    assert!(
        onboarded(&example)
            .iter()
            .all(|(_, ns)| ns == "leadership-example")
            && onboarded(&example).len() == 3,
        "{:?}",
        onboarded(&example)
    );
    assert!(
        !example.iter().any(|d| d["kind"].as_str() == Some("Namespace")),
        "the namespace is created only when asked"
    );
    let created = render(
        "demo",
        &[
            "--namespace",
            "ops",
            "--set",
            "example.enabled=true",
            "--set",
            "example.createNamespace=true",
        ],
    );
    document(&created, "Namespace", "leadership-example");
    // Only the sidecar mounts a token in the example's pods.
    let spec = &statefulset["spec"]["template"]["spec"];
    assert_eq!(spec["automountServiceAccountToken"].as_bool(), Some(false));
    let token_path = "/var/run/secrets/kubernetes.io/serviceaccount";
    let mounts = |container: &serde_yaml::Value| -> Vec<String> {
        container["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter(|m| m["mountPath"].as_str() == Some(token_path))
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(mounts(&spec["initContainers"][0]), ["leadership-token"]);
    assert!(mounts(&spec["containers"][0]).is_empty());
    let in_release = render(
        "demo",
        &[
            "--namespace",
            "ops",
            "--set",
            "example.enabled=true",
            "--set",
            "example.namespace=",
            "--set",
            "example.createNamespace=true",
        ],
    );
    assert_eq!(
        document(&in_release, "StatefulSet", "demo-leadership-example")["metadata"]["namespace"].as_str(),
        Some("ops")
    );
    assert!(!in_release.iter().any(|d| d["kind"].as_str() == Some("Namespace")));
}

#[test]
fn with_cert_manager_the_chart_asks_it_for_the_certificate_and_the_operator_only_serves_it() {
    let documents = render(
        "demo",
        &["--namespace", "ops", "--set", "webhook.certManager.enabled=true"],
    );
    let certificate = document(&documents, "Certificate", "demo-leadership-webhook");
    assert_eq!(
        certificate["spec"]["secretName"].as_str(),
        Some("demo-leadership-webhook-tls")
    );
    assert_eq!(
        certificate["spec"]["dnsNames"][0].as_str(),
        Some("demo-leadership-webhook.ops.svc")
    );
    assert_eq!(certificate["spec"]["issuerRef"]["kind"].as_str(), Some("Issuer"));
    document(&documents, "Issuer", "demo-leadership-webhook");
    let webhook = document(
        &documents,
        "MutatingWebhookConfiguration",
        "demo-leadership-injector",
    );
    assert_eq!(
        webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].as_str(),
        Some("ops/demo-leadership-webhook")
    );
    let deployment = document(&documents, "Deployment", "demo-leadership-operator");
    let args =
        serde_yaml::to_string(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]).unwrap();
    assert!(
        args.contains("--webhook-certs=external") && !args.contains("--webhook-configuration"),
        "{args}"
    );
    let role =
        serde_yaml::to_string(document(&documents, "ClusterRole", "demo-leadership-operator")).unwrap();
    assert!(
        !role.contains("mutatingwebhookconfigurations"),
        "no caBundle writes: {role}"
    );
    let secrets = serde_yaml::to_string(document(&documents, "Role", "demo-leadership-webhook")).unwrap();
    assert!(
        !secrets.contains("update") && !secrets.contains("create") && !secrets.contains("webhook-ca"),
        "{secrets}"
    );

    let own = render(
        "demo",
        &[
            "--set",
            "webhook.certManager.enabled=true",
            "--set",
            "webhook.certManager.issuerRef.name=corp-ca",
            "--set",
            "webhook.certManager.issuerRef.kind=ClusterIssuer",
        ],
    );
    assert!(
        !own.iter().any(|d| d["kind"].as_str() == Some("Issuer")),
        "no Issuer of ours"
    );
    let certificate = document(&own, "Certificate", "demo-leadership-webhook");
    assert_eq!(certificate["spec"]["issuerRef"]["name"].as_str(), Some("corp-ca"));
}

fn can_i(verb: &str, resource: &str, namespace: Option<&str>, user: &str) -> bool {
    let mut command = testenv::shared().kubectl();
    match resource.split_once('/') {
        Some((resource, subresource)) => {
            command.args(["auth", "can-i", verb, resource, "--subresource", subresource])
        }
        None => command.args(["auth", "can-i", verb, resource]),
    };
    command.args(["--as", user]);
    match namespace {
        Some(ns) => command.args(["-n", ns]),
        None => command.arg("--all-namespaces"),
    };
    String::from_utf8_lossy(&command.output().unwrap().stdout).trim() == "yes"
}

#[tokio::test]
async fn helm_install_gives_least_privilege_and_the_parts_run_with_the_charts_accounts() {
    let ns = testenv::shared().namespace().await;
    let release = Release::install_confined(&ns, &["--set-json", &webhook_elsewhere(&ns)]);
    release.wait_for_policies(&ns).await;
    let operator_user = format!("system:serviceaccount:{}:{}", ns.name, release.operator_account());
    let sidecar_user = format!("system:serviceaccount:{}:leadership-sidecar", ns.name);
    let matrix: &[(&str, &str, Option<&str>, &str, bool)] = &[
        (
            &operator_user,
            "list",
            None,
            "leadershipleases.leadership.dev",
            true,
        ),
        (
            &operator_user,
            "update",
            None,
            "leadershipleases.leadership.dev/status",
            true,
        ),
        (
            &operator_user,
            "update",
            None,
            "leadershipleases.leadership.dev",
            true,
        ),
        (&operator_user, "watch", None, "pods", true),
        (&operator_user, "create", None, "events.events.k8s.io", true),
        (
            &operator_user,
            "delete",
            None,
            "leadershipleases.leadership.dev",
            false,
        ),
        (&operator_user, "get", None, "secrets", false),
        (&operator_user, "patch", None, "pods", true),
        (&operator_user, "create", None, "pods", false),
        (&operator_user, "delete", None, "pods", false),
        (
            &sidecar_user,
            "watch",
            Some(&ns.name),
            "leadershipleases.leadership.dev",
            true,
        ),
        (
            &sidecar_user,
            "create",
            Some(&ns.name),
            "leadershipleases.leadership.dev",
            true,
        ),
        (
            &sidecar_user,
            "update",
            Some(&ns.name),
            "leadershipleases.leadership.dev/status",
            true,
        ),
        (
            &sidecar_user,
            "update",
            Some("default"),
            "leadershipleases.leadership.dev/status",
            false,
        ),
        (
            &sidecar_user,
            "update",
            Some(&ns.name),
            "leadershipleases.leadership.dev",
            false,
        ),
        (
            &sidecar_user,
            "delete",
            Some(&ns.name),
            "leadershipleases.leadership.dev",
            false,
        ),
        (
            &sidecar_user,
            "get",
            Some("default"),
            "leadershipleases.leadership.dev",
            false,
        ),
        (&sidecar_user, "get", Some(&ns.name), "pods", false),
        (&sidecar_user, "get", Some(&ns.name), "secrets", false),
    ];
    for &(user, verb, namespace, resource, allowed) in matrix {
        assert_eq!(
            can_i(verb, resource, namespace, user),
            allowed,
            "{user} {verb} {resource} in {namespace:?}"
        );
    }
    // The webhook's certificate: its one Secret in the release namespace, and the caBundle of its
    // one MutatingWebhookConfiguration; nothing else.
    let webhook_matrix: &[(&str, String, Option<&str>, bool)] = &[
        (
            "get",
            format!("secrets/{}-webhook-tls", release.fullname()),
            Some(&ns.name),
            true,
        ),
        (
            "update",
            format!("secrets/{}-webhook-tls", release.fullname()),
            Some(&ns.name),
            true,
        ),
        (
            "get",
            format!("secrets/{}-webhook-ca", release.fullname()),
            Some(&ns.name),
            true,
        ),
        (
            "update",
            format!("secrets/{}-webhook-ca", release.fullname()),
            Some(&ns.name),
            true,
        ),
        ("get", "secrets/another".into(), Some(&ns.name), false),
        (
            "get",
            format!("secrets/{}-webhook-tls", release.fullname()),
            Some("default"),
            false,
        ),
        (
            "update",
            format!(
                "mutatingwebhookconfigurations.admissionregistration.k8s.io/{}-injector",
                release.fullname()
            ),
            None,
            true,
        ),
        (
            "update",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io/another".into(),
            None,
            false,
        ),
    ];
    for (verb, resource, namespace, allowed) in webhook_matrix {
        let mut command = testenv::shared().kubectl();
        command.args(["auth", "can-i", verb, resource, "--as", &operator_user]);
        if let Some(ns) = namespace {
            command.args(["-n", ns]);
        }
        let answer = String::from_utf8_lossy(&command.output().unwrap().stdout)
            .trim()
            .to_owned();
        assert_eq!(
            answer == "yes",
            *allowed,
            "{operator_user} {verb} {resource} in {namespace:?}"
        );
    }

    // The operator and three sidecars, each with a token of the chart's ServiceAccounts bound to
    // its Pod object, as in real pods: the policy lets the operator's replicas claim its own
    // lease only as their pods.
    let operator_config = units::pod_kubeconfig(&ns, &release.operator_account(), "operator-0").await;
    let _operator = units::operator(&ns, "operator-0", &operator_config);
    let mut sidecars = Vec::new();
    for i in 0..3 {
        let unit = format!("app-{i}");
        let config = units::member_kubeconfig(&ns, "leadership-sidecar", &unit, "app").await;
        sidecars.push(
            Sidecar::spawn_with(&ns, "app", &unit, &config, units::D, &[])
                .ready()
                .await,
        );
    }
    let (first, status) = leader(&sidecars, PROMPTLY).await;
    let listed = testenv::shared()
        .kubectl()
        .args(["get", "leadershipleases", "-n", &ns.name])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&sidecars[first].unit),
        "kubectl get leadershipleases shows the live lease:\n{listed}"
    );
    // A pin through the socket is refused: the sidecar's role has no spec writes.
    let pin = sidecars[first]
        .client()
        .set_pin("machine-0", true)
        .await
        .unwrap_err();
    assert_eq!(pin.code(), "Forbidden", "{pin}");

    sidecars[first].signal(Signal::SIGKILL);
    let mut dead = sidecars.remove(first);
    let _ = dead.process.exit_code().await;
    // The standbys take the lease only once the operator has cleared the run-out claim: the
    // policy lets a unit take only a free lease.
    let (_, after) = leader(&sidecars, Duration::from_secs(30)).await;
    assert!(
        after.term > status.term,
        "a standby took over with the chart's RBAC"
    );
    let lease = ns
        .api::<leadership_kube::crd::LeadershipLease>()
        .get("app")
        .await
        .unwrap();
    let reasons: Vec<&str> = lease
        .status
        .as_ref()
        .unwrap()
        .history
        .iter()
        .map(|t| t.reason.as_str())
        .collect();
    assert!(
        reasons.ends_with(&["Expired", "Acquired"]),
        "the operator cleared the claim, then a standby took the free lease: {reasons:?}"
    );
}

/// Points the webhook at a namespace with no pods: the unit Pods here carry the application
/// annotation (the operator lists members by it), and no node runs the webhook's Service.
fn webhook_elsewhere(ns: &TestNamespace) -> String {
    format!(
        "webhook.namespaceSelector={{\"matchLabels\":{{\"kubernetes.io/metadata.name\":\"{}-injected\"}}}}",
        ns.name
    )
}

#[tokio::test]
async fn a_pod_cannot_claim_as_another_pod() {
    let ns = testenv::shared().namespace().await;
    let release = Release::install_confined(&ns, &["--set-json", &webhook_elsewhere(&ns)]);
    release.wait_for_policies(&ns).await;
    let config = units::member_kubeconfig(&ns, "leadership-sidecar", "web-a", "web").await;
    units::member_pod(&ns, "web-b", "web", Some("leadership-sidecar")).await;
    // The operator lists the members (the Pods annotated with the application) that may claim.
    let operator_config = units::pod_kubeconfig(&ns, &release.operator_account(), "operator-0").await;
    let _operator = units::operator(&ns, "operator-0", &operator_config);

    // Pod A's sidecar configured to claim as pod B: the API server refuses every claim.
    let impostor = Sidecar::spawn_with(&ns, "web", "web-b", &config, units::D, &[])
        .ready()
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = impostor.status().await.unwrap();
    assert!(!status.leader, "{status:?}");
    let log = impostor.process.log_text();
    assert!(
        log.contains("a pod may claim leadership only for itself"),
        "the refusal is logged clearly:\n{log}"
    );

    // The same token claiming as itself works.
    let honest = Sidecar::spawn_with(&ns, "web", "web-a", &config, units::D, &[])
        .ready()
        .await;
    let (_, status) = leader(std::slice::from_ref(&honest), PROMPTLY).await;
    assert_eq!(status.unit, "web-a");

    // As itself, but for an application its Pod does not belong to: refused at every grant.
    drop(honest);
    let stranger = Sidecar::spawn_with(&ns, "shop", "web-a", &config, units::D, &[])
        .ready()
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = stranger.status().await.unwrap();
    assert!(!status.leader, "{status:?}");
    let log = stranger.process.log_text();
    assert!(
        log.contains("is not a member of application shop"),
        "the refusal is logged clearly:\n{log}"
    );
}

/// The priority level API Priority and Fairness put a request by `user` on `path` in (the UID the
/// API server names in the response's `X-Kubernetes-PF-PriorityLevel-UID`), whatever the answer.
async fn priority_level_of(user: &str, path: &str) -> Option<String> {
    let client = testenv::shared().impersonating(user).await;
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    let response = client.send(request.map(Into::into)).await.ok()?;
    response
        .headers()
        .get("x-kubernetes-pf-prioritylevel-uid")?
        .to_str()
        .ok()
        .map(str::to_owned)
}

#[tokio::test]
async fn the_lease_traffic_of_the_charts_accounts_has_a_priority_level_of_its_own() {
    let ns = testenv::shared().namespace().await;
    let release = Release::install_confined(&ns, &["--set-json", &webhook_elsewhere(&ns)]);
    let client = testenv::shared().client().await;
    let levels: kube::Api<k8s_openapi::api::flowcontrol::v1::PriorityLevelConfiguration> =
        kube::Api::all(client);
    let ours = levels
        .get(&release.fullname())
        .await
        .expect("the chart's PriorityLevelConfiguration");
    let uid = ours.metadata.uid.clone();
    let limited = ours.spec.and_then(|s| s.limited).expect("a limited level");
    assert_eq!(limited.lendable_percent, Some(0), "its seats are never lent");

    let sidecar_user = format!("system:serviceaccount:{}:leadership-sidecar", ns.name);
    let leases = format!(
        "/apis/leadership.dev/v1alpha1/namespaces/{}/leadershipleases",
        ns.name
    );
    // The API server loads new flow schemas a moment after they are created.
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    while priority_level_of(&sidecar_user, &leases).await != uid {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sidecar's lease requests never reached the chart's priority level"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let operator_leases = "/apis/leadership.dev/v1alpha1/leadershipleases";
    assert_eq!(
        priority_level_of(&release.operator_user(), operator_leases).await,
        uid
    );
    // Only lease traffic: the same accounts' other requests, and another account's lease
    // requests, stay where the cluster puts them.
    let pods = format!("/api/v1/namespaces/{}/pods", ns.name);
    assert_ne!(priority_level_of(&sidecar_user, &pods).await, uid);
    let stranger = format!("system:serviceaccount:{}:default", ns.name);
    assert_ne!(priority_level_of(&stranger, &leases).await, uid);
}
