//! Hostile input for the socket API, without a cluster: random methods, paths, queries and bodies
//! never panic, always get a well-formed reply with a known code, and change state only when the
//! request was valid.

use std::{sync::Arc, time::Duration};

use axum::{Router, body::Body};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use leadership::{LeaseTracker, MemoryStore, Pinner, Ticket, Tracker, TrackerConfig, validate};
use leadership_sidecar::{
    api::{Sidecar, router},
    metrics::Metrics,
};
use proptest::prelude::*;
use tower::ServiceExt;

const CODES: [&str; 9] = [
    "ClaimDenied",
    "ClaimNotHeld",
    "BlockCancelled",
    "NotLeader",
    "BadRequest",
    "NotFound",
    "Timeout",
    "Forbidden",
    "Unavailable",
];

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_owned()),
        Just("POST".to_owned()),
        Just("PUT".to_owned()),
        Just("DELETE".to_owned()),
        Just("PATCH".to_owned()),
        "[A-Z]{1,8}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "/v1/status",
        "/v1/claim",
        "/v1/wait/leader",
        "/v1/wait/minion",
        "/v1/token",
        "/v1/release",
        "/v1/leaders",
        "/v1/pins",
        "/v1/pin",
        "/v1/unpin",
        "/healthz",
        "/readyz",
        "/v1/watch",
    ]);
    prop_oneof![
        4 => known.prop_map(str::to_owned),
        1 => "/[a-zA-Z0-9/_.%-]{0,40}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (0u64..50).prop_map(|ms| format!("?timeoutMs={ms}")),
        "\\?[a-zA-Z=&%0-9-]{0,30}",
        Just("?timeoutMs=18446744073709551615".to_owned()),
        Just("?timeoutMs=-1".to_owned()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        "[a-z0-9.-]{0,20}".prop_map(|e| format!("{{\"entity\":\"{e}\"}}").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300),
        Just(vec![b'{'; 5000]),
    ]
}

async fn sidecar() -> (Router, MemoryStore) {
    let store = MemoryStore::default();
    let tracker = LeaseTracker::start(
        store.clone(),
        TrackerConfig::new("web", "web-0", Duration::from_secs(10)),
    )
    .unwrap();
    let led = tokio::time::timeout(Duration::from_secs(30), tracker.wait_leader().wait()).await;
    assert_eq!(led, Ok(true), "the only unit leads within 30 s");
    let sidecar = Sidecar::new(
        "default".into(),
        tracker,
        store.clone(),
        Arc::new(Metrics::default()),
    );
    (router(sidecar), store)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn any_request_gets_a_well_formed_reply(method in method(), path in path(), query in query(), body in body()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (app, store) = sidecar().await;
            // Waits that would legitimately wait for ever (wait/minion while leader, with no
            // timeoutMs in the query, such as "?" alone) get a bound.
            let query = if path.starts_with("/v1/wait/") && !query.contains("timeoutMs") { "?timeoutMs=5".to_owned() } else { query };
            let Ok(request) = Request::builder().method(method.as_str()).uri(format!("{path}{query}")).body(Body::from(body.clone())) else {
                return Ok(()); // not a request a client could send
            };
            let response = tokio::time::timeout(Duration::from_secs(5), app.oneshot(request)).await.expect("answers promptly").unwrap();
            let status = response.status();
            prop_assert!([200, 400, 404, 405, 408, 409, 413, 503].contains(&status.as_u16()), "{method} {path}{query}: {status}");
            if path == "/v1/watch" && status == StatusCode::OK {
                return Ok(()); // a stream: not read to its end
            }
            let bytes = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
                .await
                .unwrap_or_else(|_| panic!("{method} {path}{query}: the body ends promptly"))
                .unwrap()
                .to_bytes();
            let reply: serde_json::Value = serde_json::from_slice(&bytes).expect("every reply is JSON");
            if !status.is_success() {
                let code = reply["error"]["code"].as_str().unwrap_or_default();
                prop_assert!(CODES.contains(&code), "{method} {path}{query}: unknown code {code:?}");
            }
            let pins = store.pinned_leadership().await.unwrap();
            let valid_pin = method == "POST" && path == "/v1/pin" && serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("entity").and_then(|e| e.as_str()).map(str::to_owned))
                .is_some_and(|e| validate::entity_name(&e).is_ok());
            prop_assert_eq!(!pins.is_empty(), valid_pin && status.is_success(), "only a valid pin request pins");
            Ok(())
        })?;
    }
}
