//! Proves the test control plane is real: the right version, CRDs served, watches, RBAC, and
//! ServiceAccount tokens bound to Pod objects.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::{
        authentication::v1::SelfSubjectReview,
        core::v1::{ConfigMap, Secret},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, PostParams},
    runtime::{
        conditions,
        wait::await_condition,
        watcher::{self, Event},
    },
};
use leadership_e2e::{testenv, tools};

#[tokio::test]
async fn serves_the_kubernetes_release_its_tools_were_built_at() {
    let env = testenv::shared();
    let version = env.client().await.apiserver_version().await.unwrap();
    let expected = tools::kubernetes_version();
    assert_eq!(version.git_version, format!("v{expected}"), "{version:?}");
    let minor = expected.split('.').nth(1).expect("a minor version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", minor),
        "{version:?}"
    );
}

#[tokio::test]
async fn applies_and_serves_a_crd() {
    let env = testenv::shared();
    let ns = env.namespace().await;
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.smoke.leadership.dev" },
        "spec": {
            "group": "smoke.leadership.dev",
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                    "spec": { "type": "object", "properties": { "size": { "type": "integer", "minimum": 0 } } }
                } } }
            }]
        }
    }))
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    if crds
        .get_opt("widgets.smoke.leadership.dev")
        .await
        .unwrap()
        .is_none()
    {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(
            crds,
            "widgets.smoke.leadership.dev",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD established in time")
    .unwrap();

    let gvk = GroupVersionKind::gvk("smoke.leadership.dev", "v1", "Widget");
    let resource = ApiResource::from_gvk(&gvk);
    let widgets: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
    let mut widget = DynamicObject::new("w", &resource);
    widget.data = serde_json::json!({ "spec": { "size": 3 } });
    let mut created = None;
    for _ in 0..50 {
        // Discovery of a new CRD can lag its Established condition by a moment.
        match widgets.create(&PostParams::default(), &widget).await {
            Ok(object) => {
                created = Some(object);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let created = created.expect("custom object created");
    assert_eq!(created.data["spec"]["size"], 3);
    widget.metadata.name = Some("bad".into());
    widget.data = serde_json::json!({ "spec": { "size": -1 } });
    let refused = widgets.create(&PostParams::default(), &widget).await.unwrap_err();
    assert!(
        refused.to_string().contains("spec.size"),
        "schema validation names the field: {refused}"
    );
}

#[tokio::test]
async fn a_watch_receives_events() {
    let env = testenv::shared();
    let ns = env.namespace().await;
    let maps: Api<ConfigMap> = ns.api();
    let mut events = watcher::watcher(maps.clone(), watcher::Config::default()).boxed();
    // The first events are the initial (empty) listing.
    while let Some(event) = events.try_next().await.unwrap() {
        if matches!(event, Event::InitDone) {
            break;
        }
    }
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("watched".into()),
            ..ObjectMeta::default()
        },
        data: Some([("k".to_owned(), "v".to_owned())].into()),
        ..ConfigMap::default()
    };
    maps.create(&PostParams::default(), &map).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.try_next().await.unwrap() {
            // The controller manager adds its own ConfigMap (kube-root-ca.crt) to new namespaces.
            if let Event::Apply(object) = event
                && object.metadata.name.as_deref() == Some("watched")
            {
                return object.metadata.name;
            }
        }
        None
    })
    .await
    .expect("the watch delivered the event");
    assert_eq!(seen.as_deref(), Some("watched"));
}

#[tokio::test]
async fn rbac_refuses_a_service_account_without_rights() {
    let env = testenv::shared();
    let ns = env.namespace().await;
    ns.service_account("nobody").await;
    let token = ns.token("nobody", None).await;
    let client = ns.client_with_token(&token).await;
    let secrets: Api<Secret> = Api::namespaced(client, &ns.name);
    let refused = secrets.list(&Default::default()).await.unwrap_err();
    match refused {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other}"),
    }
}

#[tokio::test]
async fn a_token_bound_to_a_pod_names_the_pod() {
    let env = testenv::shared();
    let ns = env.namespace().await;
    ns.service_account("unit").await;
    let pod = leadership_e2e::units::pod_as(&ns, "web-0", Some("unit")).await;
    let uid = pod.metadata.uid.unwrap();
    let token = ns.token("unit", Some(("web-0", &uid))).await;
    let client = ns.client_with_token(&token).await;
    let reviews: Api<SelfSubjectReview> = Api::all(client);
    let review = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let user = review.status.and_then(|s| s.user_info).expect("user info");
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{}:unit", ns.name).as_str())
    );
    let extra = user.extra.unwrap_or_default();
    assert_eq!(
        extra.get("authentication.kubernetes.io/pod-name"),
        Some(&vec!["web-0".to_owned()]),
        "{extra:?}"
    );
}
