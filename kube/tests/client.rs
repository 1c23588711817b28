//! The project's client on a real API server: it speaks HTTP/2, and a unit's watch and its claims
//! share that connection (the watch holds a stream open while the claims come and go).

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use leadership::{Claimer, Error, Watcher};
use leadership_e2e::testenv;
use leadership_kube::{KubeStore, Scope};
use tokio::time::timeout;

async fn http2_client() -> kube::Client {
    let file = Kubeconfig::read_from(testenv::shared().kubeconfig()).expect("read the admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .expect("a configuration");
    leadership_kube::client::client(config).expect("a client")
}

#[tokio::test]
async fn the_client_speaks_http2_and_a_watch_and_claims_share_its_connection() {
    let ns = testenv::shared().namespace().await;
    leadership_kube::crd::install(&ns.client)
        .await
        .expect("install the CRD");
    let client = http2_client().await;
    let request = http::Request::get("/version").body(Vec::new()).unwrap();
    let response = client.send(request.map(Into::into)).await.expect("GET /version");
    assert_eq!(response.version(), http::Version::HTTP_2);

    // Two units on one client: each watches and claims; exactly one wins, and the other's watch
    // shows the winner.
    let stores: Vec<KubeStore> = (0..2)
        .map(|_| KubeStore::new(client.clone(), Scope::Namespace(ns.name.clone())))
        .collect();
    let mut feeds = Vec::new();
    for store in &stores {
        feeds.push(store.watch("web").await.expect("watch"));
    }
    let mut winners = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        match store
            .claim_leadership("web", &format!("web-{i}"), Duration::from_secs(10))
            .await
        {
            Ok(_) => winners.push(i),
            Err(Error::ClaimDenied) => {}
            Err(other) => panic!("a claim is granted or denied, got {other}"),
        }
    }
    assert_eq!(winners, vec![0], "the first claim wins, the second is denied");
    timeout(
        Duration::from_secs(30),
        feeds[1].wait_until(|view, _| view.holder.as_deref() == Some("web-0")),
    )
    .await
    .expect("the other unit's watch shows the winner")
    .expect("the watch runs");
}
