//! Pods on the test node, for the node tests and the demo: waiting for Ready pods and a lease
//! holder, `kubectl exec` and the socket from an app container, containers' ids, pids and
//! signals (through crictl), how a pod's containers ended, and sidecars' admin ports over HTTP.

use std::{
    process::Output,
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{Client as Hyper, connect::HttpConnector},
    rt::TokioExecutor,
};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ContainerStateTerminated, Pod},
};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use leadership_kube::crd::LeadershipLease;
use serde_json::Value;

use crate::{
    chart::{APP_IMAGE, registry_image, text},
    testenv::TestNamespace,
};

/// How long a node test waits for pods, leases and kubelets to settle: generous, as two cores run
/// the control plane, the node and every pod.
pub const SETTLE: Duration = Duration::from_secs(120);

/// Polls `check` every 100 ms until it gives a value, or panics after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the kubelet reports the pod Ready.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pods whose names start with `prefix`, once `count` of them are Ready.
pub async fn ready_pods(ns: &TestNamespace, prefix: &str, count: usize) -> Vec<Pod> {
    ready_pods_in(&ns.api(), prefix, count).await
}

/// The pods of `pods` (a namespace's) whose names start with `prefix`, once `count` of them are
/// Ready and none of them is being deleted.
pub async fn ready_pods_in(pods: &Api<Pod>, prefix: &str, count: usize) -> Vec<Pod> {
    eventually(SETTLE, &format!("{count} Ready pods named {prefix}*"), || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let ready: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.metadata.name.as_deref().is_some_and(|n| n.starts_with(prefix)))
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .collect();
        (ready.len() == count).then_some(ready)
    })
    .await
}

/// The lease's holder and term, once it has a holder that `accept` takes.
pub async fn holder(ns: &TestNamespace, lease: &str, accept: impl Fn(&str) -> bool) -> (String, i64) {
    let leases: Api<LeadershipLease> = ns.api();
    eventually(SETTLE, &format!("a holder of {lease}"), || async {
        let object = leases.get_opt(lease).await.ok()??;
        let status = object.status?;
        let holder = status.holder?;
        accept(&holder).then_some((holder, status.term))
    })
    .await
}

/// The pods' names.
pub fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().filter_map(|p| p.metadata.name.clone()).collect()
}

/// The lease's holder and term, once one of `pods` holds it.
pub async fn holder_among(ns: &TestNamespace, lease: &str, pods: &[Pod]) -> (String, i64) {
    let names = names(pods);
    holder(ns, lease, |h| names.iter().any(|n| n == h)).await
}

/// `sh -c script` in a container, through the API server and the kubelet (`kubectl exec`).
pub fn exec(ns: &TestNamespace, pod: &str, container: &str, script: &str) -> Output {
    ns.env()
        .kubectl()
        .args([
            "exec", "-n", &ns.name, pod, "-c", container, "--", "sh", "-c", script,
        ])
        .output()
        .expect("run kubectl exec")
}

/// The socket's `/v1/status`, asked from a pod's app container with curl.
pub fn socket_status(ns: &TestNamespace, pod: &str) -> Value {
    let out = exec(
        ns,
        pod,
        "app",
        r#"curl -sf --unix-socket "$LEADERSHIP_SOCKET" http://localhost/v1/status"#,
    );
    assert!(out.status.success(), "curl in {pod}: {}", text(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status JSON from {pod}: {e}: {}", text(&out)))
}

/// A container's status among a pod's init and regular containers.
fn container<'a>(pod: &'a Pod, name: &str) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten()
        .find(|c| c.name == name)
}

/// The containerd id of the container `name` in `pod`, if the kubelet reported one.
pub fn container_id(pod: &Pod, name: &str) -> Option<String> {
    let id = container(pod, name)?.container_id.as_deref()?;
    Some(id.trim_start_matches("containerd://").to_owned())
}

/// How many times the kubelet restarted the container `name`.
pub fn restarts(pod: &Pod, name: &str) -> i32 {
    container(pod, name).map_or(0, |c| c.restart_count)
}

/// The host pid of a container's main process (from containerd, through crictl).
pub fn container_pid(ns: &TestNamespace, id: &str) -> Result<String, String> {
    let out = ns
        .env()
        .crictl()
        .args([
            "inspect",
            "--output",
            "go-template",
            "--template",
            "{{.info.pid}}",
            id,
        ])
        .output()
        .map_err(|e| format!("run crictl inspect: {e}"))?;
    if !out.status.success() {
        return Err(format!("crictl inspect {id}: {}", text(&out)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Sends `signal` (such as `KILL`) to the main processes of containers, in one `kill` call.
pub fn signal_containers(ns: &TestNamespace, ids: &[String], signal: &str) -> Result<(), String> {
    let pids = ids
        .iter()
        .map(|id| container_pid(ns, id))
        .collect::<Result<Vec<_>, _>>()?;
    let out = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .args(&pids)
        .output()
        .map_err(|e| format!("run kill: {e}"))?;
    if !out.status.success() {
        return Err(format!("kill -{signal} {pids:?}: {}", text(&out)));
    }
    Ok(())
}

/// Watches the pod `name` with `uid` until it is gone (or [`SETTLE`] passes): every version of it.
pub fn watch_until_gone(pods: &Api<Pod>, name: &str, uid: &str) -> tokio::task::JoinHandle<Vec<Pod>> {
    let (pods, name, uid) = (pods.clone(), name.to_owned(), uid.to_owned());
    tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher(pods, config).applied_objects().boxed();
        let mut seen = Vec::new();
        let deadline = Instant::now() + SETTLE;
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), stream.try_next()).await {
                Ok(Ok(Some(pod))) if pod.metadata.uid.as_deref() == Some(&uid) => seen.push(pod),
                // A new pod of the same name (a StatefulSet's): the old one is gone.
                Ok(Ok(Some(_)) | Ok(None)) => break,
                Ok(Err(_)) | Err(_) => {}
            }
        }
        seen
    })
}

/// The last terminated state the kubelet reported for the container `name` among `versions`.
pub fn last_terminated(versions: &[Pod], name: &str) -> Option<ContainerStateTerminated> {
    versions
        .iter()
        .rev()
        .find_map(|pod| container(pod, name)?.state.as_ref()?.terminated.clone())
}

/// Plain HTTP/1.1 GETs to sidecars' admin ports (at a pod's address, or through a Service's
/// ClusterIP), each with a short timeout.
pub struct AdminClient {
    client: Hyper<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl AdminClient {
    /// A client whose connects and replies time out after `timeout`.
    pub fn new(timeout: Duration) -> AdminClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        AdminClient {
            client: Hyper::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector),
            timeout,
        }
    }

    /// The sidecar's `/metrics` at `address` (`IP:PORT`): the unit its info metric names and
    /// whether it leads.
    pub async fn unit(&self, address: &str) -> Option<(String, bool)> {
        let uri = format!("http://{address}/metrics").parse().ok()?;
        let response = tokio::time::timeout(self.timeout, self.client.get(uri))
            .await
            .ok()?
            .ok()?;
        let body = tokio::time::timeout(self.timeout, response.into_body().collect())
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8(body.to_bytes().to_vec()).ok()?;
        let unit = text
            .lines()
            .find(|l| l.starts_with("leadership_sidecar_info{"))?
            .split("unit=\"")
            .nth(1)?
            .split('"')
            .next()?
            .to_owned();
        let leads = text.lines().any(|l| l == "leadership_sidecar_leader 1");
        Some((unit, leads))
    }
}

/// Starts a rolling restart of workload `name`, as `kubectl rollout restart` does.
pub async fn restart_rollout<K>(api: &Api<K>, name: &str) -> kube::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let at = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({ "spec": { "template": { "metadata": { "annotations": {
        "kubectl.kubernetes.io/restartedAt": at,
    } } } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Restarts StatefulSet `name`'s rollout and waits, at most `within`, until its `replicas` Pods
/// are all Ready at the new revision.
pub async fn roll_statefulset(
    api: &Api<StatefulSet>,
    name: &str,
    replicas: i32,
    within: Duration,
) -> anyhow::Result<()> {
    let revision = api.get(name).await?.status.and_then(|s| s.current_revision);
    restart_rollout(api, name).await?;
    let deadline = Instant::now() + within;
    loop {
        let status = api.get(name).await?.status.unwrap_or_default();
        if status.current_revision != revision
            && status.current_revision == status.update_revision
            && status.updated_replicas == Some(replicas)
            && status.ready_replicas == Some(replicas)
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the rollout of {name} did not complete within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `IP:PORT` of `pod`'s sidecar admin port (the container port named `leadership`), once the
/// pod has an address.
pub fn admin_address(pod: &Pod) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.clone()?;
    let spec = pod.spec.as_ref()?;
    let port = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("leadership"))?
        .container_port;
    Some(format!("{ip}:{port}"))
}

/// The README's Deployment (`docs/examples/injected-deployment.yaml`), its app image the example
/// app's in the node's registry (busybox and curl, as the documented image has).
pub fn documented_deployment() -> Deployment {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/injected-deployment.yaml"
    );
    let text = std::fs::read_to_string(path).expect("read the documented Deployment");
    let mut deployment: Deployment = serde_yaml::from_str(&text).expect("a Deployment");
    let spec = deployment
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("a pod spec");
    spec.containers[0].image = Some(registry_image(APP_IMAGE));
    deployment
}
