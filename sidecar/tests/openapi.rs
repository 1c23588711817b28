//! The socket API's OpenAPI document (`docs/socket-api.yaml`): generated from the routes and the
//! wire types (a test fails when the file drifts), every route it names is served and nothing
//! else, the README's table names every route, and a real OpenAPI validator accepts it.

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
use leadership::{LeaseTracker, MemoryStore, Ticket, Tracker, TrackerConfig};
use leadership_sidecar::{
    api::{Route, Sidecar, router},
    metrics::Metrics,
    openapi,
};
use tower::ServiceExt;

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn the_document_is_what_the_routes_and_wire_types_make() {
    let kept = std::fs::read_to_string(workspace().join(openapi::PATH)).expect("docs/socket-api.yaml");
    assert!(
        kept == openapi::render(),
        "{} is out of date: run `cargo run -p leadership-sidecar --bin socket-openapi`",
        openapi::PATH
    );
}

#[test]
fn the_readme_names_every_route() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    for route in Route::ALL {
        let named = format!("`{} {}", route.method(), route.path());
        assert!(
            readme.contains(&named),
            "the README's socket API table lacks {named}`"
        );
    }
}

async fn app() -> Router {
    let store = MemoryStore::default();
    let tracker = LeaseTracker::start(
        store.clone(),
        TrackerConfig::new("web", "web-0", Duration::from_secs(10)),
    )
    .unwrap();
    let led = tokio::time::timeout(Duration::from_secs(30), tracker.wait_leader().wait()).await;
    assert_eq!(led, Ok(true));
    router(Sidecar::new(
        "default".into(),
        tracker,
        store,
        Arc::new(Metrics::default()),
    ))
}

async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(request))
        .await
        .expect("answers promptly")
        .unwrap();
    let status = response.status();
    if uri.starts_with("/v1/watch") {
        // A stream: its first line is enough.
        let mut body = response.into_body();
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap();
        let line = frame.unwrap().unwrap().into_data().unwrap();
        return (status, serde_json::from_slice(&line).unwrap());
    }
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn every_documented_route_is_served_with_its_documented_reply_and_nothing_else() {
    let app = app().await;
    let document: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(workspace().join(openapi::PATH)).unwrap()).unwrap();
    let schemas = &document["components"]["schemas"];
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(paths.len(), Route::ALL.len(), "one path per route");
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let uri = if path.starts_with("/v1/wait/") {
                format!("{path}?timeoutMs=1")
            } else {
                path.clone()
            };
            let body = if path.ends_with("pin") {
                r#"{"entity":"machine-0"}"#
            } else {
                ""
            };
            let (status, reply) = call(&app, &method, &uri, body).await;
            let documented = operation["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(status.as_str()),
                "{method} {uri}: {status} is not documented ({:?}): {reply}",
                documented.keys().collect::<Vec<_>>()
            );
            // The reply carries what its schema requires.
            let response = &documented[status.as_str()];
            let media = response["content"].as_object().unwrap().values().next().unwrap();
            let name = media["schema"]["$ref"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap();
            for field in schemas[name]["required"].as_array().unwrap() {
                let field = field.as_str().unwrap();
                assert!(
                    reply.get(field).is_some(),
                    "{method} {uri}: {field} missing from {reply}"
                );
            }
            // Another method on the same path is refused as such.
            let other = if method == "GET" { "POST" } else { "GET" };
            if !item.as_object().unwrap().contains_key(&other.to_lowercase()) {
                let (status, _) = call(&app, other, path, "").await;
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{other} {path}");
            }
        }
    }
    let (status, reply) = call(&app, "GET", "/v1/undocumented", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
}

/// openapi-spec-validator from PyPI (`e2e/tools/openapi-validator`, or
/// `LEADERSHIP_OPENAPI_VALIDATOR`).
#[test]
fn a_real_openapi_validator_accepts_the_document() {
    let validator = std::env::var("LEADERSHIP_OPENAPI_VALIDATOR").unwrap_or_else(|_| {
        let script = workspace().join("e2e/tools/openapi-validator");
        let output = Command::new(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run e2e/tools/openapi-validator");
        assert!(output.status.success(), "e2e/tools/openapi-validator failed");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    });
    let checked = Command::new(validator)
        .arg(workspace().join(openapi::PATH))
        .output()
        .expect("run openapi-spec-validator");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(checked.status.success() && said.contains("OK"), "{said}");
}
