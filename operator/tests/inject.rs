//! Sidecar injection on the real control plane: the chart installed, the operator running as a
//! local process with the chart's flags and ServiceAccount, and the chart's
//! MutatingWebhookConfiguration pointed at it by URL (no kubelet runs pods here, so the API server
//! reaches the webhook on 127.0.0.1). The controller manager creates the Pods of Deployments, and
//! the API server calls the webhook for each.
//!
//! One scenario per injection rule (annotations, refusals, failure policy, certificate rotation);
//! they share the chart and operator setup of this file.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    path::PathBuf,
    time::Duration,
};

use k8s_openapi::{
    ByteString,
    api::{
        admissionregistration::v1::MutatingWebhookConfiguration,
        apps::v1::{Deployment, ReplicaSet},
        core::v1::{ConfigMap, Pod, Secret},
    },
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, ObjectMeta, PostParams},
};
use leadership_e2e::{
    chart::{Release, document, render, sidecar_in, webhook_in},
    testenv::{self, TestNamespace},
    units::{Process, free_loopback_port},
};
use leadership_operator::{
    inject::{Injection, SidecarTemplate, annotations, template::TemplateFile},
    webhook::certs,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

/// The chart installed in `ns`, and the operator serving its webhook on 127.0.0.1.
struct Injector {
    release: Release,
    operator: Process,
    admin_port: u16,
}

impl Injector {
    /// Installs the chart (with `values`) and starts the operator with the chart's flags, its
    /// ServiceAccount's token, and `extra` flags (which replace the chart's of the same name);
    /// returns once the webhook injects.
    async fn start(ns: &TestNamespace, values: &[&str], extra: &[&str]) -> Injector {
        Self::start_with_bundle(ns, values, extra, None).await
    }

    /// As [`start`](Self::start), setting the webhook configuration's `caBundle` to `ca_bundle`
    /// (what cert-manager's CA injector would do).
    async fn start_with_bundle(
        ns: &TestNamespace,
        values: &[&str],
        extra: &[&str],
        ca_bundle: Option<&str>,
    ) -> Injector {
        let (selector, onboarded) = (webhook_in(ns), sidecar_in(ns));
        let mut all = vec!["--set-json", selector.as_str(), "--set-json", onboarded.as_str()];
        all.extend_from_slice(values);
        let release = Release::install(ns, &all);
        let fullname = release.fullname();
        let webhook_port = free_loopback_port();
        let admin_port = free_loopback_port();

        // The sidecar template as the chart's ConfigMap holds it (what the pod would mount).
        let maps: Api<ConfigMap> = ns.api();
        let map = maps.get(&format!("{fullname}-sidecar-template")).await.unwrap();
        let template = scratch(ns).join("sidecar.yaml");
        std::fs::write(&template, &map.data.unwrap()["sidecar.yaml"]).unwrap();

        // The chart Deployment's own flags, with local addresses.
        let deployments: Api<Deployment> = ns.api();
        let deployment = deployments.get(&format!("{fullname}-operator")).await.unwrap();
        let container = &deployment.spec.unwrap().template.spec.unwrap().containers[0];
        let mut args: Vec<String> = container
            .args
            .clone()
            .unwrap()
            .into_iter()
            .filter(|a| {
                let name = a.split('=').next().unwrap_or_default();
                !["--webhook-address", "--admin-address", "--sidecar-template"].contains(&name)
                    && !extra.iter().any(|e| e.split('=').next() == Some(name))
            })
            .collect();
        args.extend([
            format!("--webhook-address=127.0.0.1:{webhook_port}"),
            format!("--admin-address=127.0.0.1:{admin_port}"),
            format!("--sidecar-template={}", template.display()),
            "--webhook-hosts=127.0.0.1".into(),
            format!("--namespace={}", ns.name),
            format!("--watch-namespace={}", ns.name),
            "--identity=operator-0".into(),
        ]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));

        // The chart's webhook configuration, reaching the local process by URL.
        let configs: Api<MutatingWebhookConfiguration> = Api::all(ns.client.clone());
        let name = format!("{fullname}-injector");
        let mut config = configs.get(&name).await.unwrap();
        for webhook in config.webhooks.iter_mut().flatten() {
            webhook.client_config.service = None;
            webhook.client_config.url = Some(format!("https://127.0.0.1:{webhook_port}/inject"));
            if let Some(bundle) = ca_bundle {
                webhook.client_config.ca_bundle = Some(ByteString(bundle.as_bytes().to_vec()));
            }
        }
        configs
            .replace(&name, &PostParams::default(), &config)
            .await
            .unwrap();

        let token = ns.token(&release.operator_account(), None).await;
        let kubeconfig = scratch(ns).join("operator.kubeconfig");
        testenv::shared().token_kubeconfig(&token, &kubeconfig).unwrap();
        let operator = Process::start(
            std::path::Path::new(env!("CARGO_BIN_EXE_leadership-operator")),
            &args,
            &kubeconfig,
            scratch(ns).join("operator.log"),
        );
        let injector = Injector {
            release,
            operator,
            admin_port,
        };
        injector.wait_injecting(ns).await;
        injector
    }

    /// Waits until a dry-run of an annotated pod comes back with the sidecar.
    async fn wait_injecting(&self, ns: &TestNamespace) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let dry = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            if let Ok(pod) = ns.api::<Pod>().create(&dry, &annotated("probe", &[])).await
                && has_sidecar(&pod)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook never injected; operator log:\n{}",
                self.operator.log_text()
            );
            sleep(Duration::from_millis(200)).await;
        }
    }

    /// The operator's metrics.
    fn metrics(&self) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    /// A counter of webhook requests by outcome (0 when absent).
    fn requests(&self, outcome: &str) -> f64 {
        let prefix = format!("leadership_operator_webhook_requests_total{{outcome=\"{outcome}\"}} ");
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }
}

fn scratch(ns: &TestNamespace) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leadership-inject-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Pod with one app container and the annotations `extra` plus `leadership.dev/application: web`.
fn annotated(name: &str, extra: &[(&str, &str)]) -> Pod {
    let mut annotations: BTreeMap<String, String> =
        [(annotations::APPLICATION.to_owned(), "web".to_owned())].into();
    annotations.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    plain(name, annotations)
}

fn plain(name: &str, annotations: BTreeMap<String, String>) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": annotations },
        "spec": { "containers": [{ "name": "app", "image": "app:1",
                                   "securityContext": { "runAsUser": 1000 } }] }
    }))
    .unwrap()
}

fn has_sidecar(pod: &Pod) -> bool {
    sidecars(pod) == 1
}

fn sidecars(pod: &Pod) -> usize {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map_or(0, |c| c.iter().filter(|c| c.name == "leadership").count())
}

fn deployment(name: &str, replicas: i32, annotations: &[(&str, &str)]) -> Deployment {
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name }, "annotations": annotations },
                "spec": { "containers": [{ "name": "app", "image": "app:1" }] }
            }
        }
    }))
    .unwrap()
}

/// Waits until the controller manager has created `count` Pods labelled `app=NAME`.
async fn pods_of(ns: &TestNamespace, name: &str, count: usize) -> Vec<Pod> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pods = ns
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("app={name}")))
            .await
            .unwrap()
            .items;
        if pods.len() >= count {
            return pods;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {} of {count} pods",
            pods.len()
        );
        sleep(Duration::from_millis(200)).await;
    }
}

fn env_of(container: &k8s_openapi::api::core::v1::Container) -> BTreeMap<String, Option<String>> {
    container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

#[tokio::test]
async fn an_annotated_deployments_pods_get_the_sidecar_and_others_never_reach_the_webhook() {
    let ns = testenv::shared().namespace().await;
    let injector = Injector::start(&ns, &[], &[]).await;
    let deployments: Api<Deployment> = ns.api();
    let before = injector.requests("not_requested");
    deployments
        .create(
            &PostParams::default(),
            &deployment(
                "web",
                2,
                &[
                    (annotations::APPLICATION, "web"),
                    ("leadership.dev/claim-duration", "4s"),
                    ("leadership.dev/lease-length", "12s"),
                    ("leadership.dev/on-elected", "echo elected"),
                ],
            ),
        )
        .await
        .unwrap();
    deployments
        .create(&PostParams::default(), &deployment("plain", 2, &[]))
        .await
        .unwrap();

    for pod in pods_of(&ns, "web", 2).await {
        let spec = pod.spec.clone().unwrap();
        let init = spec.init_containers.clone().unwrap();
        assert_eq!(init.len(), 1, "{}", pod.name_any());
        let sidecar = &init[0];
        assert_eq!(sidecar.name, "leadership");
        assert_eq!(
            sidecar.restart_policy.as_deref(),
            Some("Always"),
            "a native sidecar"
        );
        let env = env_of(sidecar);
        assert_eq!(env["LEADERSHIP_APPLICATION"].as_deref(), Some("web"));
        assert_eq!(env["LEADERSHIP_CLAIM_DURATION"].as_deref(), Some("4s"));
        assert_eq!(env["LEADERSHIP_LEASE_LENGTH"].as_deref(), Some("12s"));
        assert_eq!(env["LEADERSHIP_ON_ELECTED"].as_deref(), Some("echo elected"));
        assert!(env.contains_key("POD_NAME") && env.contains_key("POD_NAMESPACE"));
        assert!(sidecar.readiness_probe.is_some() && sidecar.liveness_probe.is_some());
        assert!(
            sidecar
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .is_some()
        );
        let app = &spec.containers[0];
        assert_eq!(
            env_of(app)["LEADERSHIP_SOCKET"].as_deref(),
            Some("/run/leadership/leadership.sock")
        );
        assert!(
            app.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "leadership" && m.mount_path == "/run/leadership")
        );
        assert!(
            spec.volumes
                .iter()
                .flatten()
                .any(|v| v.name == "leadership" && v.empty_dir.is_some())
        );
        assert_eq!(
            spec.security_context.and_then(|s| s.supplemental_groups),
            Some(vec![65532]),
            "the socket's group for every container"
        );
        assert_eq!(spec.service_account_name.as_deref(), Some("leadership-sidecar"));
        assert!(pod.annotations().contains_key(annotations::INJECTED));
    }
    for pod in pods_of(&ns, "plain", 2).await {
        assert_eq!(sidecars(&pod), 0, "{} is not annotated", pod.name_any());
        assert!(!pod.annotations().contains_key(annotations::INJECTED));
    }
    assert!(injector.requests("injected") >= 2.0);
    assert_eq!(
        injector.requests("not_requested"),
        before,
        "unannotated pods never reach the webhook (its match condition keeps them away)"
    );
}

/// The README's one-line example. Here the control plane has no node, so its pods are checked as
/// the API server stored them; on a cluster with a node they run and one of them leads.
#[tokio::test]
async fn the_documented_deployment_gets_the_sidecar_from_its_one_annotation() {
    let ns = testenv::shared().namespace().await;
    let _injector = Injector::start(&ns, &[], &[]).await;
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/injected-deployment.yaml"
    );
    let deployment: Deployment = serde_yaml::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let replicas = usize::try_from(deployment.spec.as_ref().unwrap().replicas.unwrap()).unwrap();
    let template = &deployment.spec.as_ref().unwrap().template;
    assert_eq!(
        template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()
            .len(),
        1,
        "one line"
    );
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    for pod in pods_of(&ns, "web", replicas).await {
        assert!(has_sidecar(&pod), "{}", pod.name_any());
        let app = &pod.spec.as_ref().unwrap().containers[0];
        assert!(env_of(app).contains_key("LEADERSHIP_SOCKET"));
    }
}

#[tokio::test]
async fn a_pod_is_never_injected_twice() {
    let ns = testenv::shared().namespace().await;
    let _injector = Injector::start(&ns, &[], &[]).await;
    let pods = ns.api::<Pod>();
    let first = pods
        .create(&PostParams::default(), &annotated("web-0", &[]))
        .await
        .unwrap();
    assert!(has_sidecar(&first));

    // The injected pod's own spec, created again (its annotations included).
    let mut copy = first.clone();
    copy.metadata = ObjectMeta {
        name: Some("web-1".into()),
        annotations: first.metadata.annotations.clone(),
        ..ObjectMeta::default()
    };
    copy.status = None;
    let second = pods.create(&PostParams::default(), &copy).await.unwrap();
    assert_eq!(sidecars(&second), 1);
    assert_eq!(
        second.spec.as_ref().unwrap().volumes,
        first.spec.as_ref().unwrap().volumes,
        "no second socket volume"
    );
    assert_eq!(
        second.spec.as_ref().unwrap().containers,
        first.spec.as_ref().unwrap().containers,
        "no second mount or variable"
    );
    assert_eq!(
        second.spec.as_ref().unwrap().security_context,
        first.spec.as_ref().unwrap().security_context
    );
}

#[tokio::test]
async fn bad_annotations_are_refused_naming_the_annotation() {
    let ns = testenv::shared().namespace().await;
    let _injector = Injector::start(&ns, &[], &[]).await;
    let pods = ns.api::<Pod>();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("leadership.dev/claim-duration", "soon")],
            "leadership.dev/claim-duration",
        ),
        (
            &[("leadership.dev/claim-duration", "10m")],
            "leadership.dev/claim-duration",
        ),
        (
            &[("leadership.dev/lease-length", "5s")],
            "leadership.dev/lease-length",
        ),
        (
            &[("leadership.dev/hook-timeout", "forever")],
            "leadership.dev/hook-timeout",
        ),
        (
            &[("leadership.dev/claim-durration", "4s")],
            "leadership.dev/claim-durration",
        ),
    ];
    for (i, (extra, named)) in cases.iter().enumerate() {
        let err = pods
            .create(&PostParams::default(), &annotated(&format!("bad-{i}"), extra))
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("denied the request") && message.contains(&format!("annotation {named}:")),
            "{extra:?}: {message}"
        );
    }
    let mut bad_name = annotated("bad-app", &[]);
    bad_name
        .annotations_mut()
        .insert(annotations::APPLICATION.into(), "Not_A_Name".into());
    let message = pods
        .create(&PostParams::default(), &bad_name)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("annotation leadership.dev/application:"),
        "{message}"
    );

    // Through a Deployment, the refusal is where its owner looks: the ReplicaSet's condition.
    ns.api::<Deployment>()
        .create(
            &PostParams::default(),
            &deployment(
                "typo",
                1,
                &[
                    (annotations::APPLICATION, "typo"),
                    ("leadership.dev/claim-duration", "1y"),
                ],
            ),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sets = ns
            .api::<ReplicaSet>()
            .list(&ListParams::default().labels("app=typo"))
            .await
            .unwrap();
        let failure = sets
            .items
            .iter()
            .flat_map(|rs| rs.status.iter().flat_map(|s| s.conditions.iter().flatten()))
            .find(|c| c.type_ == "ReplicaFailure")
            .and_then(|c| c.message.clone());
        if let Some(message) = failure {
            assert!(
                message.contains("annotation leadership.dev/claim-duration"),
                "{message}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no ReplicaFailure condition: {sets:?}");
        sleep(Duration::from_millis(200)).await;
    }
}

/// The names of the volumes `container` mounts on the ServiceAccount token's path.
fn token_mounts(container: &k8s_openapi::api::core::v1::Container) -> Vec<String> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount")
        .map(|m| m.name.clone())
        .collect()
}

/// App containers get no token they did not have before injection: with
/// `automountServiceAccountToken: false` (or no token mounted anywhere) the sidecar alone mounts
/// one, its own projected volume; with the automounted token, the pod is left as it was.
#[tokio::test]
async fn only_the_sidecar_gets_a_token_the_app_containers_did_not_have() {
    let ns = testenv::shared().namespace().await;
    let _injector = Injector::start(&ns, &[], &[]).await;
    let pods = ns.api::<Pod>();
    let mut locked = annotated("locked", &[]);
    locked.spec.as_mut().unwrap().automount_service_account_token = Some(false);
    let spec = pods
        .create(&PostParams::default(), &locked)
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    let sidecar = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        token_mounts(sidecar),
        ["leadership-token"],
        "the sidecar's own token"
    );
    assert!(
        token_mounts(&spec.containers[0]).is_empty(),
        "the app container has no token: {:?}",
        spec.containers[0].volume_mounts
    );
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "leadership-token")
        .unwrap();
    let sources = volume.projected.as_ref().unwrap().sources.as_ref().unwrap();
    assert!(sources[0].service_account_token.is_some());
    assert!(
        !spec
            .volumes
            .iter()
            .flatten()
            .any(|v| v.name.starts_with("kube-api-access-")),
        "no automounted token volume"
    );

    // Automount unset and no token anywhere: here the API server runs without its ServiceAccount
    // admission (no kubelet), as a cluster does for a ServiceAccount that opts out. The app
    // containers had no token: only the sidecar gets one, and the pod opts out for good.
    let unset = pods
        .create(&PostParams::default(), &annotated("unset", &[]))
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(unset.automount_service_account_token, Some(false));
    assert_eq!(
        token_mounts(&unset.init_containers.unwrap()[0]),
        ["leadership-token"]
    );
    assert!(token_mounts(&unset.containers[0]).is_empty());

    // What the ServiceAccount admission makes of a pod whose account automounts (before webhooks
    // run): a kube-api-access volume mounted into every container. The app keeps its token, and
    // the webhook adds none of its own (that admission, run again after the webhook, mounts the
    // same volume into the sidecar).
    let mut automounted = annotated("automounted", &[]);
    let spec = automounted.spec.as_mut().unwrap();
    spec.volumes = Some(vec![
        serde_json::from_value(
            json!({ "name": "kube-api-access-x1y2z", "projected": { "sources": [
            { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } }] } }),
        )
        .unwrap(),
    ]);
    spec.containers[0].volume_mounts = Some(vec![
        serde_json::from_value(json!({ "name": "kube-api-access-x1y2z",
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true }))
        .unwrap(),
    ]);
    let open = pods
        .create(&PostParams::default(), &automounted)
        .await
        .unwrap()
        .spec
        .unwrap();
    assert!(has_sidecar_spec(&open));
    assert_eq!(open.automount_service_account_token, None);
    assert_eq!(token_mounts(&open.containers[0]), ["kube-api-access-x1y2z"]);
    assert!(
        !open
            .volumes
            .iter()
            .flatten()
            .any(|v| v.name == "leadership-token")
    );
}

fn has_sidecar_spec(spec: &k8s_openapi::api::core::v1::PodSpec) -> bool {
    spec.init_containers
        .iter()
        .flatten()
        .any(|c| c.name == "leadership")
}

/// The webhook's limits on the real API server: a pod of more containers than it injects into is
/// refused saying so; a review larger than its body limit is not read (the API server then applies
/// the failure policy, Fail by default).
#[tokio::test]
async fn pods_beyond_the_webhooks_limits_are_refused() {
    use k8s_openapi::api::core::v1::{Container, EnvVar};

    let ns = testenv::shared().namespace().await;
    let _injector = Injector::start(&ns, &[], &[]).await;
    let pods = ns.api::<Pod>();
    let mut many = annotated("many", &[]);
    many.spec.as_mut().unwrap().containers = (0..65)
        .map(|i| Container {
            name: format!("c{i}"),
            image: Some("app:1".into()),
            ..Container::default()
        })
        .collect();
    let message = pods
        .create(&PostParams::default(), &many)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("denied the request")
            && message.contains("the pod has 65 containers; the sidecar is injected into pods of at most 64"),
        "{message}"
    );

    let mut big = annotated("big", &[]);
    big.spec.as_mut().unwrap().containers[0].env = Some(vec![EnvVar {
        name: "PADDING".into(),
        value: Some("x".repeat(1_100_000)),
        value_from: None,
    }]);
    let message = pods
        .create(&PostParams::default(), &big)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("failed calling webhook") && message.contains("inject.leadership.dev"),
        "{message}"
    );
    // A pod of the same size without the annotation never reaches the webhook.
    let mut plain_big = big.clone();
    plain_big.metadata.annotations = None;
    plain_big.metadata.name = Some("plain-big".into());
    pods.create(&PostParams::default(), &plain_big)
        .await
        .expect("unannotated pods are not the webhook's");
}

/// Starts the webhook with `failure_policy`, then stops the operator.
async fn webhook_down(ns: &TestNamespace, failure_policy: &str) -> Injector {
    let mut injector = Injector::start(
        ns,
        &["--set", &format!("webhook.failurePolicy={failure_policy}")],
        &[],
    )
    .await;
    injector.operator.signal(Signal::SIGTERM);
    let _ = injector.operator.exit_code().await;
    injector
}

#[tokio::test]
async fn with_the_webhook_down_and_failure_policy_fail_annotated_pods_are_refused_and_others_admitted() {
    let ns = testenv::shared().namespace().await;
    let _injector = webhook_down(&ns, "Fail").await;
    let pods = ns.api::<Pod>();
    let refused = pods
        .create(&PostParams::default(), &annotated("web-0", &[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("failed calling webhook") && refused.contains("inject.leadership.dev"),
        "failurePolicy Fail: {refused}"
    );
    let unannotated = pods
        .create(&PostParams::default(), &plain("other-0", BTreeMap::new()))
        .await
        .expect("a pod without the annotation is never refused");
    assert_eq!(sidecars(&unannotated), 0);
}

#[tokio::test]
async fn with_the_webhook_down_and_failure_policy_ignore_annotated_pods_are_admitted_uninjected() {
    let ns = testenv::shared().namespace().await;
    let _injector = webhook_down(&ns, "Ignore").await;
    let admitted = ns
        .api::<Pod>()
        .create(&PostParams::default(), &annotated("web-0", &[]))
        .await
        .expect("failurePolicy Ignore admits");
    assert_eq!(sidecars(&admitted), 0, "admitted without the sidecar");
}

#[tokio::test]
async fn the_operator_rotates_its_ca_and_certificate_and_injection_goes_on() {
    let ns = testenv::shared().namespace().await;
    let injector = Injector::start(
        &ns,
        &[
            "--set",
            "webhook.certValidity=15s",
            "--set",
            "webhook.caValidity=45s",
        ],
        &[],
    )
    .await;
    let secret_name = format!("{}-webhook-tls", injector.release.fullname());
    let secrets: Api<Secret> = ns.api();
    let configs: Api<MutatingWebhookConfiguration> = Api::all(ns.client.clone());
    let config_name = format!("{}-injector", injector.release.fullname());
    let read =
        |data: &BTreeMap<String, ByteString>, key: &str| String::from_utf8(data[key].0.clone()).unwrap();

    let ca_secret_name = format!("{}-webhook-ca", injector.release.fullname());
    let first = secrets.get(&secret_name).await.unwrap().data.unwrap();
    assert_eq!(certs::count(&read(&first, "ca.crt")), 1);
    assert!(
        !first.contains_key("ca.key"),
        "the serving Secret holds no CA key: {:?}",
        first.keys()
    );
    let first_ca_key = read(
        &secrets.get(&ca_secret_name).await.unwrap().data.unwrap(),
        "ca.key",
    );
    assert!(certs::key_matches(&read(&first, "ca.crt"), &first_ca_key));
    // The current CA: the first certificate of the bundle.
    let current_ca = |data: &BTreeMap<String, ByteString>| {
        let bundle = read(data, "ca.crt");
        let end = "-----END CERTIFICATE-----";
        bundle[..bundle.find(end).unwrap() + end.len()].to_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut renewed_certificate = false;
    loop {
        let now = secrets.get(&secret_name).await.unwrap().data.unwrap();
        if read(&now, "tls.crt") != read(&first, "tls.crt") && current_ca(&now) == current_ca(&first) {
            renewed_certificate = true;
        }
        if current_ca(&now) != current_ca(&first) {
            let ca_key = read(
                &secrets.get(&ca_secret_name).await.unwrap().data.unwrap(),
                "ca.key",
            );
            assert_ne!(ca_key, first_ca_key, "a new CA key, in the CA's Secret");
            // A new CA: both are trusted, in the Secret and in the caBundle the API server uses.
            let bundle = read(&now, "ca.crt");
            assert_eq!(certs::count(&bundle), 2, "new and old CA");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let config = configs.get(&config_name).await.unwrap();
                let published = config.webhooks.unwrap()[0].client_config.ca_bundle.clone();
                if published.map(|b| b.0) == Some(bundle.clone().into_bytes()) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the caBundle never followed the Secret"
                );
                sleep(Duration::from_millis(200)).await;
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no CA rotation within 90 s; operator log:\n{}",
            injector.operator.log_text()
        );
        sleep(Duration::from_millis(500)).await;
    }
    assert!(
        renewed_certificate,
        "the serving certificate was renewed before the CA"
    );
    injector.wait_injecting(&ns).await;
    let pod = ns
        .api::<Pod>()
        .create(&PostParams::default(), &annotated("after", &[]))
        .await
        .unwrap();
    assert!(has_sidecar(&pod), "injection goes on after the rotation");
    assert!(
        injector
            .metrics()
            .contains("leadership_operator_webhook_certificate_expiry_timestamp_seconds")
    );
}

/// An upgrade from a release that kept the CA key in the serving Secret: the operator moves the
/// key to the CA's Secret and removes it from the serving one, keeping the certificate it serves.
#[tokio::test]
async fn a_serving_secret_with_the_ca_key_is_split_on_upgrade() {
    let ns = testenv::shared().namespace().await;
    // The names the operator asks for (its Service's, and the local address here): no renewal.
    let service = format!("{}-leadership-webhook", ns.name);
    let mut names = leadership_operator::webhook::service_names(&service, &ns.name);
    names.push("127.0.0.1".into());
    let policy = certs::CertPolicy {
        ca_validity: Duration::from_secs(3 * 3600),
        cert_validity: Duration::from_secs(3600),
        names,
    };
    let made = new_authority(&policy);
    let name = format!("{}-leadership-webhook-tls", ns.name);
    let combined: Secret = serde_json::from_value(json!({
        "metadata": { "name": name },
        "type": "kubernetes.io/tls",
        "stringData": { "tls.crt": made.cert, "tls.key": made.key, "ca.crt": made.bundle, "ca.key": made.ca_key }
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &combined)
        .await
        .unwrap();
    let injector = Injector::start(
        &ns,
        &[
            "--set",
            "webhook.certValidity=1h",
            "--set",
            "webhook.caValidity=3h",
        ],
        &[],
    )
    .await;
    let secrets = ns.api::<Secret>();
    let deadline = Instant::now() + Duration::from_secs(30);
    let serving = loop {
        let serving = secrets.get(&name).await.unwrap().data.unwrap();
        if !serving.contains_key("ca.key") {
            break serving;
        }
        assert!(
            Instant::now() < deadline,
            "the CA key is still in the serving Secret; operator log:\n{}",
            injector.operator.log_text()
        );
        sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(serving["tls.crt"].0, made.cert.as_bytes(), "the same certificate");
    assert_eq!(serving["ca.crt"].0, made.bundle.as_bytes(), "the same CA");
    let ca = secrets
        .get(&format!("{}-leadership-webhook-ca", ns.name))
        .await
        .unwrap();
    assert_eq!(
        ca.data.unwrap()["ca.key"].0,
        made.ca_key.as_bytes(),
        "the same key, moved"
    );
    assert_eq!(ca.type_.as_deref(), Some("Opaque"));
    let pod = ns
        .api::<Pod>()
        .create(&PostParams::default(), &annotated("after", &[]))
        .await
        .unwrap();
    assert!(has_sidecar(&pod));
}

/// A pod spec as JSON, without what the sidecar brings: the pure inverse of the injection, for
/// the example's pod.
fn without_the_sidecar(spec: &mut Value) {
    let drop_where = |list: &mut Value, keep: &dyn Fn(&Value) -> bool| {
        if let Some(items) = list.as_array_mut() {
            items.retain(|i| keep(i));
        }
    };
    let spec = spec.as_object_mut().unwrap();
    if let Some(init) = spec.get_mut("initContainers") {
        drop_where(init, &|c| c["name"] != "leadership");
    }
    if spec["initContainers"].as_array().is_some_and(Vec::is_empty) {
        spec.remove("initContainers");
    }
    drop_where(spec.get_mut("volumes").unwrap(), &|v| {
        v["name"] != "leadership" && v["name"] != "leadership-token"
    });
    if spec["volumes"].as_array().is_some_and(Vec::is_empty) {
        spec.remove("volumes");
    }
    // The pod's own security settings stay; the socket's group is what the webhook adds.
    let context = spec["securityContext"].as_object_mut().unwrap();
    context.remove("supplementalGroups");
    if context.is_empty() {
        spec.remove("securityContext");
    }
    for container in spec["containers"].as_array_mut().unwrap() {
        let container = container.as_object_mut().unwrap();
        for (field, key, value) in [
            ("env", "name", "LEADERSHIP_SOCKET"),
            ("volumeMounts", "mountPath", "/run/leadership"),
        ] {
            if let Some(list) = container.get_mut(field) {
                drop_where(list, &|i| i[key] != value);
                if list.as_array().is_some_and(Vec::is_empty) {
                    container.remove(field);
                }
            }
        }
    }
}

#[test]
fn an_injected_pod_has_exactly_the_shape_of_the_charts_example() {
    let documents = render(
        "demo",
        &[
            "--set",
            "example.enabled=true",
            "--set",
            "example.onElected=echo hi",
            "--set",
            "sidecar.image.pullPolicy=Always",
        ],
    );
    let statefulset = document(&documents, "StatefulSet", "demo-leadership-example");
    let map = document(&documents, "ConfigMap", "demo-leadership-sidecar-template");
    let file: TemplateFile = serde_yaml::from_str(map["data"]["sidecar.yaml"].as_str().unwrap()).unwrap();
    let template = SidecarTemplate::new(file).unwrap();

    let example: Value = serde_json::to_value(&statefulset["spec"]["template"]).unwrap();
    let mut bare = example.clone();
    without_the_sidecar(&mut bare["spec"]);
    let bare_pod: Pod = serde_json::from_value(bare).unwrap();
    let Injection::Patch(patch) = leadership_operator::inject::inject(&bare_pod, &template).unwrap() else {
        panic!("the example's annotations ask for the sidecar");
    };
    let mut injected = serde_json::to_value(&bare_pod).unwrap();
    json_patch::patch(&mut injected, &patch).unwrap();
    let expected = serde_json::to_value(serde_json::from_value::<Pod>(example.clone()).unwrap()).unwrap();
    assert_eq!(
        injected["spec"],
        expected["spec"],
        "the webhook's pod and the chart's example differ:\n{}\n{}",
        serde_yaml::to_string(&injected["spec"]).unwrap(),
        serde_yaml::to_string(&expected["spec"]).unwrap()
    );
    // The example itself already has its sidecar: the webhook leaves it alone.
    let example_pod: Pod = serde_json::from_value(example).unwrap();
    assert_eq!(
        leadership_operator::inject::inject(&example_pod, &template),
        Ok(Injection::AlreadyPresent)
    );
}

#[tokio::test]
async fn with_external_certificates_the_operator_serves_what_the_secret_holds() {
    let ns = testenv::shared().namespace().await;
    // What cert-manager would write (here made by the same pure code the managed mode uses).
    let policy = certs::CertPolicy {
        ca_validity: Duration::from_secs(3600),
        cert_validity: Duration::from_secs(1200),
        names: vec!["127.0.0.1".into()],
    };
    let made = new_authority(&policy);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": format!("{}-leadership-webhook-tls", ns.name) },
        "type": "kubernetes.io/tls",
        "stringData": { "tls.crt": made.cert, "tls.key": made.key, "ca.crt": made.bundle }
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let injector =
        Injector::start_with_bundle(&ns, &[], &["--webhook-certs=external"], Some(&made.bundle)).await;
    let pod = ns
        .api::<Pod>()
        .create(&PostParams::default(), &annotated("web-0", &[]))
        .await
        .unwrap();
    assert!(has_sidecar(&pod));
    // The operator wrote nothing: the Secret is as it was.
    let kept = ns
        .api::<Secret>()
        .get(&secret.name_any())
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(kept["tls.crt"].0, made.cert.as_bytes());
    assert!(
        !injector
            .operator
            .log_text()
            .contains("webhook certificate written")
    );
}

/// A new CA and a certificate for `policy`'s names, as the keeper makes them.
fn new_authority(policy: &certs::CertPolicy) -> certs::StoredCerts {
    certs::renew(
        None,
        certs::Renewal::Authority,
        policy,
        std::time::SystemTime::now(),
    )
    .unwrap()
    .unwrap()
}
