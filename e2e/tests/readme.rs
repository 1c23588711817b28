//! The README, followed: its install commands run as written, in order, on the cluster with a node,
//! as a platform engineer would run them on theirs. Only what names their environment changes: the
//! registry (`registry.example.com/platform` and `REGISTRY`) is the node's, and as that registry
//! speaks plain HTTP, `e2e/images --push` and `helm install`/`upgrade` get `--plain-http` (the
//! README says so). Between the commands the test does what the reader does: waits for the pods
//! and runs an app (the README's Deployment) in the namespace it onboarded. The quick start's
//! `e2e/demo` and `e2e/test` are not run here: `.ci/run` runs `e2e/test`, and the demo runs the
//! cluster it needs on its own.

use std::{process::Command, time::Duration};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use leadership_e2e::{
    chart::text,
    node::config::REGISTRY,
    pods::{SETTLE, documented_deployment, eventually, ready_pods_in},
    testenv::{self, TestEnv},
    tools::Tools,
};
use leadership_kube::crd::LeadershipLease;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Where the README's commands put the images and the chart: a folder of the node's registry.
fn registry() -> String {
    format!("{REGISTRY}/readme")
}

/// The README's `sh` blocks, in order.
fn sh_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(block.join("\n"));
        }
    }
    blocks
}

/// A block with this cluster's registry in it, which speaks plain HTTP.
fn for_this_cluster(block: &str) -> String {
    let registry = registry();
    block
        .replace("registry.example.com/platform", &registry)
        .replace("REGISTRY", &registry)
        .replace(
            &format!("--push {registry}"),
            &format!("--push {registry} --plain-http"),
        )
        .replace("helm install ", "helm install --plain-http ")
        .replace("helm upgrade ", "helm upgrade --plain-http ")
}

/// Runs a block with bash (`-euo pipefail`) from the repository's root, with kubectl and helm of
/// the cluster on the PATH and its kubeconfig; panics with the output if it fails.
fn run(env: &TestEnv, block: &str) -> String {
    let tools = env.tools().bin();
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", block])
        .current_dir(ROOT)
        .env("PATH", path)
        .env("KUBECONFIG", env.kubeconfig())
        .env("LEADERSHIP_TOOLS_BIN", tools)
        .env("LEADERSHIP_CRANE", Tools::locate_crane().expect("crane"))
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the README's commands failed:\n{block}\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes what the README's commands make (the release, its namespace, the app namespaces), so
/// that a run starts and ends clean.
fn clean(env: &TestEnv) {
    let _ = Command::new(env.tools().path("helm"))
        .args(["uninstall", "leadership", "-n", "leadership-system", "--wait"])
        .arg("--kubeconfig")
        .arg(env.kubeconfig())
        .output();
    let deleted = env
        .kubectl()
        .args([
            "delete",
            "namespace",
            "shop",
            "billing",
            "leadership-system",
            "--ignore-not-found",
            "--wait",
            "--timeout=180s",
        ])
        .output()
        .expect("run kubectl");
    assert!(deleted.status.success(), "{}", text(&deleted));
}

/// Deletes what the README made when the test ends, however it ends.
struct Cleanup(&'static TestEnv);

impl Drop for Cleanup {
    fn drop(&mut self) {
        clean(self.0);
    }
}

/// The holder and term of lease `web` in `shop` once one of `units` holds it and the operator has
/// labelled that pod, and only it, the leader.
async fn led(client: &Client, units: &[Pod]) -> (String, i64) {
    let leases: Api<LeadershipLease> = Api::namespaced(client.clone(), "shop");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    eventually(SETTLE, "a leader of web among its pods, labelled", || async {
        let status = leases.get_opt("web").await.ok()??.status?;
        let holder = status.holder?;
        units
            .iter()
            .any(|u| u.metadata.name.as_deref() == Some(&holder))
            .then_some(())?;
        let labelled = pods
            .list(&ListParams::default().labels("leadership.dev/leader=true"))
            .await
            .ok()?;
        let names: Vec<String> = labelled
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        (names == [holder.clone()]).then_some((holder, status.term))
    })
    .await
}

#[tokio::test]
async fn the_readme_takes_a_cluster_to_a_deployment_with_a_leader() {
    let env = testenv::node();
    let readme = std::fs::read_to_string(README).expect("read the README");
    let blocks = sh_blocks(&readme);
    let [push, install, onboard, verify, socket, quick_start] = blocks.as_slice() else {
        panic!(
            "the README has {} sh blocks, this test follows 6: run a new one here\n{blocks:#?}",
            blocks.len()
        );
    };
    assert!(push.starts_with("e2e/images --push"), "{push}");
    assert!(
        quick_start.contains("e2e/demo") && quick_start.contains("e2e/test"),
        "{quick_start}"
    );
    clean(env);
    let _cleanup = Cleanup(env);
    let client = env.client().await;

    // 1. Images and chart into the registry; 2. the chart.
    // What it pushed is what the install pulls: the chart by helm, the images by the kubelet.
    run(env, &for_this_cluster(push));
    run(env, &for_this_cluster(install));
    let platform: Api<Pod> = Api::namespaced(client.clone(), "leadership-system");
    let operators = ready_pods_in(&platform, "leadership-operator-", 2).await;
    for pod in &operators {
        let image = pod.spec.as_ref().and_then(|s| s.containers[0].image.clone());
        assert_eq!(
            image,
            Some(format!("{}/leadership-operator:0.1.0", registry())),
            "pulled from the registry"
        );
    }

    // Add leadership to an app: the README's Deployment in the namespace the install onboarded.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    deployments
        .create(&PostParams::default(), &documented_deployment())
        .await
        .expect("the README's Deployment in shop");
    let shop: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let units = ready_pods_in(&shop, "web-", 3).await;
    for pod in &units {
        let sidecar = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref()?.first()?.image.clone());
        assert_eq!(
            sidecar,
            Some(format!("{}/leadership-sidecar:0.1.0", registry())),
            "injected"
        );
    }
    let (leader, term) = led(&client, &units).await;

    // 3. Onboard another namespace.
    run(env, &for_this_cluster(onboard));
    let account = env
        .kubectl()
        .args([
            "get",
            "serviceaccount",
            "leadership-sidecar",
            "-n",
            "billing",
            "-o",
            "name",
        ])
        .output()
        .expect("run kubectl");
    assert!(account.status.success(), "billing onboarded: {}", text(&account));

    // 4. Verify: the operator's pods, the lease and its leader, the leader's label.
    let shown = run(env, &for_this_cluster(verify));
    for pod in &operators {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with(name) && l.contains("Running")),
            "{shown}"
        );
    }
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("shop") && l.contains(&leader) && l.contains(&format!(" {term} "))),
        "the lease row names the leader and the term:\n{shown}"
    );
    let labelled: Vec<&str> = shown
        .lines()
        .filter(|l| l.starts_with("web-") && l.trim_end().ends_with("true"))
        .collect();
    assert_eq!(labelled.len(), 1, "one pod labelled leader:\n{shown}");
    assert!(labelled[0].starts_with(&leader), "{shown}");

    // Use the socket: the README's block in an app container.
    let answers = eventually(
        Duration::from_secs(30),
        "the socket block in the leader's app",
        || async {
            let out = env
                .kubectl()
                .args([
                    "exec", "-n", "shop", &leader, "-c", "app", "--", "sh", "-euc", socket,
                ])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        },
    )
    .await;
    let replies: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&answers)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("JSON replies ({e}):\n{answers}"));
    assert_eq!(
        replies.len(),
        3,
        "status, wait/leader and token replied:\n{answers}"
    );
    assert_eq!(replies[0]["unit"], leader.as_str(), "{answers}");
    assert_eq!(replies[1]["leader"], true, "{answers}");
    assert_eq!(replies[2]["term"], term, "{answers}");
    eprintln!("the README's commands took a cluster to Deployment web led by {leader} in term {term}");
}
