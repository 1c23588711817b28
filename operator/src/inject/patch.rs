//! The mutation, a pure function from a Pod and the template to a JSON patch (RFC 6902) of
//! explicit `add` operations: it never rewrites what the pod already has, so fields this program
//! does not know survive untouched.

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, VolumeMount};
use kube::core::admission::AdmissionResponse;
use serde_json::{Value, json};

use super::{
    annotations::{self, ADMIN_PORT_ANNOTATION, AnnotationError, INJECTED, Requested},
    template::{SOCKET_ENV, SidecarTemplate},
};

pub use json_patch::{AddOperation, Patch, PatchOperation, jsonptr::PointerBuf};

/// What the webhook does with a pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Injection {
    /// The pod does not carry `leadership.dev/application`: admitted unchanged.
    NotRequested,
    /// The pod already has the sidecar (injected before, or added by hand): admitted unchanged.
    AlreadyPresent,
    /// Admitted with this patch.
    Patch(Patch),
}

/// Why a pod that asks for the sidecar is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// An annotation's value cannot be used.
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    /// The pod has something in the way of the sidecar.
    #[error("{0}")]
    Conflict(String),
    /// The pod is larger than the webhook injects into.
    #[error("{0}")]
    TooLarge(String),
}

impl InjectError {
    /// A low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            InjectError::Annotation(_) => "annotation",
            InjectError::Conflict(_) => "conflict",
            InjectError::TooLarge(_) => "too_large",
        }
    }
}

/// The most containers (init and regular, the sidecar not counted) of a pod the webhook injects
/// into: a bound on the work and the patch of one review. The API server admits pods far larger.
pub const MAX_CONTAINERS: usize = 64;

/// Where a container finds its ServiceAccount token, CA and namespace (the kubelet's automount
/// path, which kube's in-cluster configuration reads).
pub const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The projected volume with the sidecar's own token, in pods that mount no token otherwise.
pub const TOKEN_VOLUME: &str = "leadership-token";

/// The lifetime of the sidecar's token: the kubelet replaces it at 80% of that, and the sidecar's
/// client reads the file again.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// The projected volume that gives the sidecar alone what the kubelet's automount gives every
/// container: a token of the pod's ServiceAccount bound to the pod, the cluster's CA
/// (`kube-root-ca.crt`) and the namespace.
pub fn token_volume() -> Value {
    json!({
        "name": TOKEN_VOLUME,
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                { "serviceAccountToken": { "expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token" } },
                { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                { "downwardAPI": { "items": [{ "path": "namespace",
                    "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } }
            ]
        }
    })
}

/// The sidecar's mount of [`token_volume`].
pub fn token_mount() -> VolumeMount {
    VolumeMount {
        name: TOKEN_VOLUME.to_owned(),
        mount_path: TOKEN_PATH.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn mounts_token(container: &Container) -> bool {
    container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path.trim_end_matches('/') == TOKEN_PATH)
}

fn add(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        value,
    })
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The sidecar container for a pod that asked for `requested` (from its annotations): the
/// template's container, with those variables first and the template's own after them, and its
/// admin port (the first container port) moved where the pod asked.
pub fn sidecar_container(template: &SidecarTemplate, requested: &Requested) -> Container {
    let mut container = template.container.clone();
    let own = container.env.take().unwrap_or_default();
    let mut all: Vec<EnvVar> = requested
        .env
        .iter()
        .map(|(name, value)| EnvVar {
            name: (*name).to_owned(),
            value: Some(value.clone()),
            value_from: None,
        })
        .collect();
    all.extend(
        own.into_iter()
            .filter(|e| !requested.env.iter().any(|(name, _)| *name == e.name)),
    );
    container.env = Some(all);
    if let (Some(port), Some(first)) = (
        requested.admin_port,
        container.ports.as_mut().and_then(|ports| ports.first_mut()),
    ) {
        first.container_port = i32::from(port);
    }
    container
}

/// Decides what to do with `pod`, and builds the patch that injects the sidecar:
///
/// - the sidecar as the first init container (a native sidecar: it starts before the others and
///   keeps running), with the annotations' settings in its environment;
/// - an emptyDir for the socket, mounted (with `LEADERSHIP_SOCKET` set) into every other container
///   that does not mount that folder or set that variable already;
/// - the sidecar's group as a supplemental group of the pod, so that containers running as any
///   user can use the socket (mode 0660);
/// - the template's ServiceAccount, if the pod runs as the namespace's `default` one;
/// - the ServiceAccount token for the sidecar alone, when the pod's own containers get none: the
///   pod sets `automountServiceAccountToken: false`, or (unset) no container mounts a token
///   because the API server's ServiceAccount admission, which runs before webhooks, mounted none
///   (its ServiceAccount opts out). Then the pod gets (or keeps) `automountServiceAccountToken:
///   false` and a projected volume (token, `kube-root-ca.crt`, namespace: what the automount
///   projects) mounted only into the sidecar, so its app containers still have no token. When the
///   pod's containers do get the automounted token (unset and mounted, or `true`), nothing is
///   added: the API server's ServiceAccount admission, run again after the webhook changed the
///   pod, mounts that same volume into the sidecar, and the app containers keep what they had;
/// - `leadership.dev/injected` naming the sidecar image.
///
/// Pods with more than [`MAX_CONTAINERS`] containers are refused.
pub fn inject(pod: &Pod, template: &SidecarTemplate) -> Result<Injection, InjectError> {
    let empty = Default::default();
    let pod_annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let Some(requested) = annotations::requested(pod_annotations, template.claim_duration())? else {
        return Ok(Injection::NotRequested);
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let name = &template.container.name;
    let init = spec.init_containers.clone().unwrap_or_default();
    if init.iter().chain(&spec.containers).any(|c| &c.name == name) {
        return Ok(Injection::AlreadyPresent);
    }
    let containers = init.len() + spec.containers.len();
    if containers > MAX_CONTAINERS {
        return Err(InjectError::TooLarge(format!(
            "the pod has {containers} containers; the sidecar is injected into pods of at most {MAX_CONTAINERS}"
        )));
    }
    let own_token = match spec.automount_service_account_token {
        Some(automount) => !automount,
        None => !init.iter().chain(&spec.containers).any(mounts_token),
    };
    if own_token && spec.volumes.iter().flatten().any(|v| v.name == TOKEN_VOLUME) {
        return Err(InjectError::Conflict(format!(
            "the pod already has a volume named {TOKEN_VOLUME:?}, which the sidecar's token needs"
        )));
    }
    let admin_port = requested.admin_port.unwrap_or(template.admin_port);
    let taken = init.iter().chain(&spec.containers).find(|c| {
        c.ports
            .iter()
            .flatten()
            .any(|p| p.container_port == i32::from(admin_port))
    });
    if let Some(container) = taken {
        return Err(InjectError::Conflict(format!(
            "container {:?} declares port {admin_port}, the sidecar's admin port; give the sidecar another with the annotation {}",
            container.name, ADMIN_PORT_ANNOTATION
        )));
    }
    if spec.volumes.iter().flatten().any(|v| v.name == template.volume) {
        return Err(InjectError::Conflict(format!(
            "the pod already has a volume named {:?}, which the sidecar's socket needs",
            template.volume
        )));
    }

    let mut ops = vec![add(
        &["metadata", "annotations", INJECTED],
        Value::String(template.image().to_owned()),
    )];

    if let Some(account) = &template.service_account_name {
        let current = spec.service_account_name.as_deref().unwrap_or_default();
        if current.is_empty() || current == "default" {
            ops.push(add(&["spec", "serviceAccountName"], json!(account)));
            if spec.service_account.is_some() {
                // The deprecated alias must agree.
                ops.push(add(&["spec", "serviceAccount"], json!(account)));
            }
        }
    }

    let pull_secrets = spec.image_pull_secrets.clone().unwrap_or_default();
    let missing: Vec<&String> = template
        .image_pull_secrets
        .iter()
        .filter(|name| !pull_secrets.iter().any(|s| &&s.name == name))
        .collect();
    match (&spec.image_pull_secrets, missing.is_empty()) {
        (_, true) => {}
        (None, false) => ops.push(add(
            &["spec", "imagePullSecrets"],
            json!(
                missing
                    .iter()
                    .map(|name| json!({ "name": name }))
                    .collect::<Vec<_>>()
            ),
        )),
        (Some(_), false) => ops.extend(
            missing
                .iter()
                .map(|name| add(&["spec", "imagePullSecrets", "-"], json!({ "name": name }))),
        ),
    }

    let groups = spec
        .security_context
        .as_ref()
        .map(|s| s.supplemental_groups.clone());
    match groups {
        None => ops.push(add(
            &["spec", "securityContext"],
            json!({ "supplementalGroups": [template.group] }),
        )),
        Some(None) => ops.push(add(
            &["spec", "securityContext", "supplementalGroups"],
            json!([template.group]),
        )),
        Some(Some(groups)) if !groups.contains(&template.group) => ops.push(add(
            &["spec", "securityContext", "supplementalGroups", "-"],
            json!(template.group),
        )),
        Some(Some(_)) => {}
    }

    let volume = json!({ "name": template.volume, "emptyDir": {} });
    ops.push(match spec.volumes {
        Some(_) => add(&["spec", "volumes", "-"], volume),
        None => add(&["spec", "volumes"], json!([volume])),
    });
    if own_token {
        ops.push(add(&["spec", "volumes", "-"], token_volume()));
        if spec.automount_service_account_token.is_none() {
            ops.push(add(&["spec", "automountServiceAccountToken"], json!(false)));
        }
    }

    // Every other container gets the socket (init containers first: their indices shift when
    // the sidecar is inserted before them, below).
    let mount = VolumeMount {
        name: template.volume.clone(),
        mount_path: template.mount_path.clone(),
        ..VolumeMount::default()
    };
    let socket_env = EnvVar {
        name: SOCKET_ENV.to_owned(),
        value: Some(template.socket.clone()),
        value_from: None,
    };
    for (list, containers) in [("initContainers", &init), ("containers", &spec.containers)] {
        for (i, container) in containers.iter().enumerate() {
            let index = i.to_string();
            let at = |field: &'static str| [String::from("spec"), list.into(), index.clone(), field.into()];
            let mounted = container
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path.trim_end_matches('/') == template.mount_path);
            if !mounted {
                let path = at("volumeMounts");
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                ops.push(match container.volume_mounts {
                    Some(_) => add(&[&path[..], &["-"]].concat(), to_value(&mount)),
                    None => add(&path, json!([to_value(&mount)])),
                });
            }
            let announced = container.env.iter().flatten().any(|e| e.name == SOCKET_ENV);
            if !announced {
                let path = at("env");
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                ops.push(match container.env {
                    Some(_) => add(&[&path[..], &["-"]].concat(), to_value(&socket_env)),
                    None => add(&path, json!([to_value(&socket_env)])),
                });
            }
        }
    }

    let mut sidecar = sidecar_container(template, &requested);
    if own_token {
        sidecar.volume_mounts.get_or_insert_default().push(token_mount());
    }
    let sidecar = to_value(&sidecar);
    ops.push(match spec.init_containers {
        Some(_) => add(&["spec", "initContainers", "0"], sidecar),
        None => add(&["spec", "initContainers"], json!([sidecar])),
    });
    Ok(Injection::Patch(Patch(ops)))
}

/// The admission response for a decision: allowed with or without a patch, or denied with the
/// reason (which the API server shows to whoever created the pod).
pub fn respond(response: AdmissionResponse, decision: &Result<Injection, InjectError>) -> AdmissionResponse {
    match decision {
        Ok(Injection::Patch(patch)) => match response.clone().with_patch(patch.clone()) {
            Ok(patched) => patched,
            Err(err) => response.deny(format!("cannot encode the sidecar patch: {err}")),
        },
        Ok(_) => response,
        Err(err) => response.deny(format!("leadership sidecar injection refused: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::PodSpec;
    use kube::api::ObjectMeta;

    use super::*;
    use crate::inject::template::tests::chart_like;

    fn pod(annotations: &[(&str, &str)], spec: serde_json::Value) -> Pod {
        Pod {
            metadata: ObjectMeta {
                generate_name: Some("web-".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(serde_json::from_value::<PodSpec>(spec).unwrap()),
            ..Pod::default()
        }
    }

    fn app_pod() -> Pod {
        pod(
            &[
                (annotations::APPLICATION, "web"),
                ("leadership.dev/claim-duration", "4s"),
            ],
            json!({ "containers": [{ "name": "app", "image": "app:1" }] }),
        )
    }

    /// Applies the decision's patch to the pod, as the API server does.
    fn applied(pod: &Pod, injection: &Injection) -> Pod {
        let mut doc = serde_json::to_value(pod).unwrap();
        if let Injection::Patch(patch) = injection {
            json_patch::patch(&mut doc, patch).expect("the patch applies");
        }
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn an_annotated_pod_gets_the_sidecar_first_the_socket_everywhere_and_the_group() {
        let template = chart_like();
        let before = app_pod();
        let injection = inject(&before, &template).unwrap();
        let after = applied(&before, &injection);
        let spec = after.spec.unwrap();
        let init = spec.init_containers.unwrap();
        assert_eq!(init.len(), 1);
        let sidecar = &init[0];
        assert_eq!(sidecar.name, "leadership");
        assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
        let env: Vec<(String, Option<String>)> = sidecar
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        assert_eq!(
            env,
            vec![
                ("LEADERSHIP_APPLICATION".into(), Some("web".into())),
                ("LEADERSHIP_CLAIM_DURATION".into(), Some("4s".into())),
                (
                    "LEADERSHIP_SOCKET".into(),
                    Some("/run/leadership/leadership.sock".into())
                ),
                ("POD_NAME".into(), None),
                ("POD_NAMESPACE".into(), None),
                ("LEADERSHIP_ADMIN_ADDRESS".into(), Some("0.0.0.0:9476".into())),
            ]
        );
        assert_eq!(sidecar.readiness_probe, template.container.readiness_probe);
        let pull: Vec<_> = spec
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(pull, ["registry"], "the sidecar's pull secret");
        let app = &spec.containers[0];
        assert_eq!(
            app.volume_mounts.as_ref().unwrap()[0].mount_path,
            "/run/leadership"
        );
        assert_eq!(app.env.as_ref().unwrap()[0].name, "LEADERSHIP_SOCKET");
        assert_eq!(spec.volumes.unwrap()[0].name, "leadership");
        assert_eq!(
            spec.security_context.unwrap().supplemental_groups,
            Some(vec![65532])
        );
        assert_eq!(spec.service_account_name.as_deref(), Some("leadership-sidecar"));
        assert_eq!(
            after.metadata.annotations.unwrap()[INJECTED],
            "ghcr.io/leadership-dev/leadership-sidecar:0.1.0"
        );
    }

    #[test]
    fn injecting_an_injected_pod_changes_nothing() {
        let template = chart_like();
        let once = applied(&app_pod(), &inject(&app_pod(), &template).unwrap());
        assert_eq!(inject(&once, &template), Ok(Injection::AlreadyPresent));
    }

    #[test]
    fn a_pod_without_the_annotation_is_left_alone_whatever_else_it_has() {
        let plain = pod(
            &[("leadership.dev/claim-duration", "nonsense")],
            json!({ "containers": [{ "name": "app" }] }),
        );
        assert_eq!(inject(&plain, &chart_like()), Ok(Injection::NotRequested));
    }

    #[test]
    fn what_the_pod_has_is_kept_and_extended_not_replaced() {
        let template = chart_like();
        let before = pod(
            &[(annotations::APPLICATION, "db")],
            json!({
                "serviceAccountName": "db-owner",
                "securityContext": { "runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [3000] },
                "volumes": [{ "name": "data", "emptyDir": {} }],
                "initContainers": [{ "name": "migrate", "image": "db:1", "env": [{ "name": "A", "value": "1" }] }],
                "containers": [
                    { "name": "db", "image": "db:1", "volumeMounts": [{ "name": "data", "mountPath": "/data" }] },
                    { "name": "probe", "image": "p:1",
                      "env": [{ "name": "LEADERSHIP_SOCKET", "value": "/custom.sock" }],
                      "volumeMounts": [{ "name": "own", "mountPath": "/run/leadership/" }] }
                ]
            }),
        );
        let after = applied(&before, &inject(&before, &template).unwrap())
            .spec
            .unwrap();
        assert_eq!(
            after.service_account_name.as_deref(),
            Some("db-owner"),
            "an explicit account stays"
        );
        let security = after.security_context.unwrap();
        assert_eq!(security.supplemental_groups, Some(vec![3000, 65532]));
        assert_eq!(
            (security.run_as_user, security.fs_group),
            (Some(1000), Some(2000))
        );
        let names: Vec<&str> = after.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["data", "leadership", TOKEN_VOLUME]);
        let init = after.init_containers.unwrap();
        assert_eq!(
            init.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["leadership", "migrate"]
        );
        let migrate_env: Vec<&str> = init[1].env.iter().flatten().map(|e| e.name.as_str()).collect();
        assert_eq!(migrate_env, ["A", "LEADERSHIP_SOCKET"]);
        let db = &after.containers[0];
        let mounts: Vec<&str> = db
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/data", "/run/leadership"]);
        let probe = &after.containers[1];
        assert_eq!(
            probe.env.as_ref().unwrap().len(),
            1,
            "its own LEADERSHIP_SOCKET is kept"
        );
        assert_eq!(
            probe.volume_mounts.as_ref().unwrap().len(),
            1,
            "its own mount there is kept"
        );
    }

    #[test]
    fn the_default_service_account_is_replaced_and_its_deprecated_alias_too() {
        let before = pod(
            &[(annotations::APPLICATION, "web")],
            json!({ "serviceAccountName": "default", "serviceAccount": "default", "containers": [{ "name": "app" }] }),
        );
        let after = applied(&before, &inject(&before, &chart_like()).unwrap())
            .spec
            .unwrap();
        assert_eq!(after.service_account_name.as_deref(), Some("leadership-sidecar"));
        assert_eq!(after.service_account.as_deref(), Some("leadership-sidecar"));
    }

    #[test]
    fn pull_secrets_the_pod_lists_already_are_kept_and_not_added_twice() {
        for listed in [
            json!([{ "name": "own" }, { "name": "registry" }]),
            json!([{ "name": "own" }]),
        ] {
            let before = pod(
                &[(annotations::APPLICATION, "web")],
                json!({ "imagePullSecrets": listed, "containers": [{ "name": "app" }] }),
            );
            let after = applied(&before, &inject(&before, &chart_like()).unwrap())
                .spec
                .unwrap();
            let pull: Vec<_> = after
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|s| s.name.as_str())
                .collect();
            assert_eq!(pull, ["own", "registry"], "{listed}");
        }
    }

    #[test]
    fn a_group_already_there_is_not_added_twice() {
        let before = pod(
            &[(annotations::APPLICATION, "web")],
            json!({ "securityContext": { "supplementalGroups": [65532] }, "containers": [{ "name": "app" }] }),
        );
        let after = applied(&before, &inject(&before, &chart_like()).unwrap())
            .spec
            .unwrap();
        assert_eq!(
            after.security_context.unwrap().supplemental_groups,
            Some(vec![65532])
        );
    }

    #[test]
    fn the_admin_port_moves_with_the_annotation_and_a_port_in_use_is_refused_naming_it() {
        let sidecar_of = |pod: &Pod| {
            let after = applied(pod, &inject(pod, &chart_like()).unwrap()).spec.unwrap();
            after.init_containers.unwrap().remove(0)
        };
        let port_and_address = |sidecar: &Container| {
            let port = sidecar.ports.as_ref().unwrap()[0].container_port;
            let address = sidecar
                .env
                .iter()
                .flatten()
                .find(|e| e.name == "LEADERSHIP_ADMIN_ADDRESS")
                .and_then(|e| e.value.clone());
            (port, address)
        };
        let plain = pod(
            &[(annotations::APPLICATION, "web")],
            json!({ "containers": [{ "name": "app" }] }),
        );
        assert_eq!(
            port_and_address(&sidecar_of(&plain)),
            (9476, Some("0.0.0.0:9476".to_owned()))
        );
        let moved = pod(
            &[(annotations::APPLICATION, "web"), (ADMIN_PORT_ANNOTATION, "9555")],
            json!({ "containers": [{ "name": "app", "ports": [{ "containerPort": 9476 }] }] }),
        );
        let sidecar = sidecar_of(&moved);
        assert_eq!(
            port_and_address(&sidecar),
            (9555, Some("0.0.0.0:9555".to_owned()))
        );
        assert_eq!(
            sidecar
                .env
                .iter()
                .flatten()
                .filter(|e| e.name == "LEADERSHIP_ADMIN_ADDRESS")
                .count(),
            1,
            "the annotation's address replaces the template's"
        );
        let clash = pod(
            &[(annotations::APPLICATION, "web")],
            json!({ "containers": [{ "name": "app", "ports": [{ "containerPort": 9476 }] }] }),
        );
        let err = inject(&clash, &chart_like()).unwrap_err().to_string();
        assert!(
            err.contains("\"app\" declares port 9476") && err.contains(ADMIN_PORT_ANNOTATION),
            "{err}"
        );
    }

    #[test]
    fn a_volume_in_the_way_or_a_bad_annotation_is_refused() {
        let taken = pod(
            &[(annotations::APPLICATION, "web")],
            json!({ "volumes": [{ "name": "leadership", "emptyDir": {} }], "containers": [{ "name": "app" }] }),
        );
        let err = inject(&taken, &chart_like()).unwrap_err();
        assert!(err.to_string().contains("volume named \"leadership\""), "{err}");
        let bad = pod(
            &[
                (annotations::APPLICATION, "web"),
                ("leadership.dev/lease-length", "1s"),
            ],
            json!({ "containers": [{ "name": "app" }] }),
        );
        let err = inject(&bad, &chart_like()).unwrap_err();
        assert_eq!(err.kind(), "annotation");
        let denied = respond(AdmissionResponse::invalid("x"), &Err(err));
        assert!(!denied.allowed);
        assert!(
            denied
                .result
                .message
                .contains("annotation leadership.dev/lease-length"),
            "{}",
            denied.result.message
        );
    }

    fn token_mounts(container: &Container) -> Vec<String> {
        container
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| m.mount_path == TOKEN_PATH)
            .map(|m| m.name.clone())
            .collect()
    }

    #[test]
    fn a_pod_without_automount_gets_a_token_for_the_sidecar_alone() {
        let before = pod(
            &[(annotations::APPLICATION, "web")],
            json!({
                "automountServiceAccountToken": false,
                "initContainers": [{ "name": "migrate" }],
                "containers": [{ "name": "app" }, { "name": "helper" }]
            }),
        );
        let after = applied(&before, &inject(&before, &chart_like()).unwrap())
            .spec
            .unwrap();
        assert_eq!(after.automount_service_account_token, Some(false));
        let init = after.init_containers.unwrap();
        assert_eq!(token_mounts(&init[0]), [TOKEN_VOLUME], "the sidecar's own token");
        assert_eq!(init[0].volume_mounts.as_ref().unwrap()[1].read_only, Some(true));
        for app in init[1..].iter().chain(&after.containers) {
            assert!(
                token_mounts(app).is_empty(),
                "{} gets no token it did not have",
                app.name
            );
        }
        let volume = after
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == TOKEN_VOLUME)
            .expect("the token volume");
        let sources = volume.projected.as_ref().unwrap().sources.as_ref().unwrap();
        let token = sources[0].service_account_token.as_ref().unwrap();
        assert_eq!(
            (token.path.as_str(), token.expiration_seconds),
            ("token", Some(TOKEN_EXPIRATION_SECONDS))
        );
        assert_eq!(sources[1].config_map.as_ref().unwrap().name, "kube-root-ca.crt");
        assert!(sources[2].downward_api.is_some());
    }

    #[test]
    fn a_pod_whose_account_mounts_no_token_keeps_its_app_containers_without_one() {
        // Automount unset, and no container mounts a token: the API server's ServiceAccount
        // admission (before the webhook) found the ServiceAccount opting out.
        let before = pod(
            &[(annotations::APPLICATION, "web")],
            json!({ "containers": [{ "name": "app" }] }),
        );
        let after = applied(&before, &inject(&before, &chart_like()).unwrap())
            .spec
            .unwrap();
        assert_eq!(
            after.automount_service_account_token,
            Some(false),
            "a later run of the ServiceAccount admission adds no token to the app"
        );
        assert_eq!(token_mounts(&after.init_containers.unwrap()[0]), [TOKEN_VOLUME]);
        assert!(token_mounts(&after.containers[0]).is_empty());
    }

    #[test]
    fn a_pod_with_the_automounted_token_is_left_as_it_was() {
        let automounted = json!({
            "volumes": [{ "name": "kube-api-access-x1y2z", "projected": { "sources": [] } }],
            "containers": [{ "name": "app",
                "volumeMounts": [{ "name": "kube-api-access-x1y2z", "mountPath": TOKEN_PATH, "readOnly": true }] }]
        });
        let explicit = json!({ "automountServiceAccountToken": true, "containers": [{ "name": "app" }] });
        for spec in [automounted, explicit] {
            let before = pod(&[(annotations::APPLICATION, "web")], spec.clone());
            let after = applied(&before, &inject(&before, &chart_like()).unwrap())
                .spec
                .unwrap();
            assert_eq!(
                after.automount_service_account_token,
                before.spec.as_ref().unwrap().automount_service_account_token,
                "{spec}"
            );
            assert!(
                token_mounts(&after.init_containers.unwrap()[0]).is_empty(),
                "the API server mounts the pod's own token volume into the sidecar: {spec}"
            );
            assert!(!after.volumes.iter().flatten().any(|v| v.name == TOKEN_VOLUME));
            assert_eq!(
                token_mounts(&after.containers[0]),
                token_mounts(&before.spec.clone().unwrap().containers[0])
            );
        }
    }

    #[test]
    fn a_pod_with_too_many_containers_is_refused_politely() {
        let with = |count: usize| {
            let containers: Vec<Value> = (0..count).map(|i| json!({ "name": format!("c{i}") })).collect();
            pod(
                &[(annotations::APPLICATION, "web")],
                json!({ "initContainers": [{ "name": "init" }], "containers": containers }),
            )
        };
        assert!(matches!(
            inject(&with(MAX_CONTAINERS - 1), &chart_like()),
            Ok(Injection::Patch(_))
        ));
        let err = inject(&with(MAX_CONTAINERS), &chart_like()).unwrap_err();
        assert_eq!(err.kind(), "too_large");
        let denied = respond(AdmissionResponse::invalid("x"), &Err(err));
        assert!(!denied.allowed);
        assert_eq!(
            denied.result.message,
            "leadership sidecar injection refused: the pod has 65 containers; the sidecar is injected into pods of at most 64"
        );
    }

    #[test]
    fn the_patch_only_adds() {
        let Injection::Patch(patch) = inject(&app_pod(), &chart_like()).unwrap() else {
            panic!("a patch");
        };
        assert!(patch.0.iter().all(|op| matches!(op, PatchOperation::Add(_))));
        let text = serde_json::to_string(&patch).unwrap();
        assert!(
            text.contains("/metadata/annotations/leadership.dev~1injected"),
            "{text}"
        );
    }
}
