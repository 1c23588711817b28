//! Races and restarts on a real API server: concurrent claimants, claims racing renewals, a stale
//! view that tries to take over, and the API server and etcd restarted under a leader.

mod common;

use std::time::Duration;

use kube::api::PostParams;
use leadership::{Claimer, Error, LeaseTracker, Pinner, Reader, Ticket, Tracker, TrackerConfig, Watcher};
use leadership_e2e::{
    controlplane::{ControlPlane, StartOptions},
    tools::Tools,
};
use leadership_kube::{KubeStore, Scope, crd::LeadershipLease};
use tokio::time::{Instant, sleep, timeout};

const D: Duration = Duration::from_secs(2);

#[tokio::test]
async fn many_concurrent_claimants_have_exactly_one_winner() {
    let ns = common::namespace().await;
    let claims: Vec<_> = (0..16)
        .map(|i| {
            let store = common::store(&ns);
            tokio::spawn(async move { store.claim_leadership("web", &format!("web-{i}"), D * 5).await })
        })
        .collect();
    let mut winners = 0;
    for claim in claims {
        match claim.await.unwrap() {
            Ok(_) => winners += 1,
            Err(Error::ClaimDenied) => {}
            Err(other) => panic!("a claim must be granted or denied, got {other}"),
        }
    }
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn claims_racing_renewals_never_win() {
    let ns = common::namespace().await;
    let leader = LeaseTracker::start(common::store(&ns), TrackerConfig::new("web", "web-0", D)).unwrap();
    assert!(
        timeout(Duration::from_secs(30), leader.wait_leader().wait())
            .await
            .unwrap()
    );
    let challenger = common::store(&ns);
    challenger.watch("web").await.unwrap();
    let until = Instant::now() + D * 5;
    let mut attempts = 0;
    while Instant::now() < until {
        let claim = challenger.claim_leadership("web", "web-1", D).await;
        assert!(
            matches!(claim, Err(Error::ClaimDenied)),
            "attempt {attempts}: {claim:?}"
        );
        assert!(
            leader.status().is_leader(Instant::now()),
            "the renewing leader stays leader"
        );
        attempts += 1;
        sleep(Duration::from_millis(50)).await;
    }
    assert!(attempts > 20);
    leader.stop().await;
}

#[tokio::test]
async fn a_takeover_decided_on_a_stale_read_is_refused_by_the_compare_and_swap() {
    let ns = common::namespace().await;
    let store = common::store(&ns);
    store.claim_leadership("web", "web-0", D).await.unwrap();
    let api = ns.api::<LeadershipLease>();
    let stale = api.get("web").await.unwrap();
    // The holder renews; the stale reader does not hear of it.
    store.claim_leadership("web", "web-0", D).await.unwrap();
    // The stale reader judged the old claim run out and writes a takeover on its stale version.
    let mut takeover = stale.clone();
    let (next, _) = stale.to_lease().claim("web-1", D, true).unwrap();
    takeover.status = Some(stale.status_for(&next, "Acquired", k8s_openapi::jiff::Timestamp::now()));
    match api.replace_status("web", &PostParams::default(), &takeover).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("the stale takeover must conflict, got {other:?}"),
    }
    let current = api.get("web").await.unwrap().to_lease();
    assert_eq!(current.holder_unit(), Some("web-0"));
    assert_eq!(current.claim_id().map(|id| id.renewals), Some(1));
}

#[tokio::test]
async fn pins_and_the_holder_survive_restarts_of_the_api_server_and_etcd() {
    let tools = Tools::locate().expect("tools");
    let mut plane = ControlPlane::start(&tools, StartOptions::owned_by_this_process())
        .await
        .expect("a private control plane");
    let client = plane.client().await.unwrap();
    common::install_crd(&client).await;
    let store = KubeStore::new(client.clone(), Scope::Namespace("default".into()));
    let tracker = LeaseTracker::start(store.clone(), TrackerConfig::new("web", "web-0", D * 3)).unwrap();
    assert!(
        timeout(Duration::from_secs(30), tracker.wait_leader().wait())
            .await
            .unwrap()
    );
    store.pin_leadership("web", "machine-0").await.unwrap();
    let term = tracker.status().term;

    for component in ["kube-apiserver", "etcd"] {
        plane
            .restart_component(component)
            .await
            .unwrap_or_else(|e| panic!("restart {component}: {e}"));
        let fresh = KubeStore::new(plane.client().await.unwrap(), Scope::Namespace("default".into()));
        assert_eq!(
            fresh.leaders().await.unwrap().get("web").map(String::as_str),
            Some("web-0"),
            "after {component}"
        );
        let pins = fresh.pinned_leadership().await.unwrap();
        assert_eq!(
            pins.get("web"),
            Some(&vec!["machine-0".to_owned()]),
            "after {component}"
        );
        // The tracker claims through the restarted server (a renewal, or a re-claim of its own
        // lease if the restart outlasted its guarantee) and keeps its term.
        let restarted = Instant::now();
        timeout(Duration::from_secs(60), async {
            while tracker
                .status()
                .guarantee
                .is_none_or(|g| g.claimed_at <= restarted)
            {
                sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("claimed again after the {component} restart"));
        assert_eq!(
            tracker.status().term,
            term,
            "the same grant continues after {component}"
        );
    }
    tracker.stop().await;
    plane.stop();
}
