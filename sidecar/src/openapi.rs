//! The socket API as an OpenAPI 3.1 document (`docs/socket-api.yaml`), made from the routes the
//! router serves ([`Route::ALL`]) and the JSON Schemas of the wire types
//! ([`leadership::wire`]), so that users can generate clients and a test catches any drift.

use leadership::wire::{
    ClaimReply, EligibilityReply, EligibilityRequest, EntityRequest, ErrorReply, LeadersReply, PinReply,
    PinsReply, ProbeReply, ReleaseReply, Status, TokenReply,
};
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_yaml::{Mapping, Value};

use crate::api::{MAX_BODY, MAX_WAIT_MS, Route};

/// Where the document is kept, from the workspace's root.
pub const PATH: &str = "docs/socket-api.yaml";

/// A YAML mapping with its keys in the order given.
fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut mapping = Mapping::new();
    for (key, value) in pairs {
        mapping.insert(Value::String(key.to_owned()), value);
    }
    Value::Mapping(mapping)
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// A JSON value as YAML, keys sorted (the same document whatever the JSON map's order).
fn yaml(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => serde_yaml::to_value(n).unwrap_or(Value::Null),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => Value::Sequence(items.into_iter().map(yaml).collect()),
        serde_json::Value::Object(object) => {
            let mut pairs: Vec<(String, serde_json::Value)> = object.into_iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Mapping(
                pairs
                    .into_iter()
                    .map(|(k, v)| (Value::String(k), yaml(v)))
                    .collect(),
            )
        }
    }
}

struct Schemas(SchemaGenerator);

impl Schemas {
    fn of<T: JsonSchema>(&mut self) -> Value {
        yaml(self.0.subschema_for::<T>().to_value())
    }
}

fn json_reply(description: &str, schema: Value) -> Value {
    map([
        ("description", text(description)),
        ("content", map([("application/json", map([("schema", schema)]))])),
    ])
}

/// An operation's responses: `ok` for 200, then each error status with what it means.
fn responses(error: &Value, ok: Value, errors: &[(&str, &str)]) -> Value {
    let mut mapping = Mapping::new();
    mapping.insert(text("200"), ok);
    for (status, meaning) in errors {
        mapping.insert(text(status), json_reply(meaning, error.clone()));
    }
    Value::Mapping(mapping)
}

const UNAVAILABLE: (&str, &str) = (
    "503",
    "Unavailable: the lease state is not known or the API server did not answer; no inference may be made",
);
const FORBIDDEN: (&str, &str) = ("403", "Forbidden: the sidecar's ServiceAccount may not do this");

fn wait_query() -> Value {
    Value::Sequence(vec![map([
        ("name", text("timeoutMs")),
        ("in", text("query")),
        ("required", Value::Bool(false)),
        (
            "description",
            text("Give up after this many milliseconds (408 Timeout); without it, wait until then."),
        ),
        (
            "schema",
            map([
                ("type", text("integer")),
                ("minimum", Value::from(0)),
                ("maximum", Value::from(MAX_WAIT_MS)),
            ]),
        ),
    ])])
}

/// A required JSON request body of `schema`.
fn request_body(schema: Value) -> Value {
    map([
        ("required", Value::Bool(true)),
        ("content", map([("application/json", map([("schema", schema)]))])),
    ])
}

/// The operation of one route.
fn operation(route: Route, schemas: &mut Schemas) -> Value {
    let status = schemas.of::<Status>();
    let error = schemas.of::<ErrorReply>();
    let bad_query = (
        "400",
        "BadRequest: a malformed or unknown query field, or timeoutMs above 24 h",
    );
    let timeout = ("408", "Timeout: the wait ran out first");
    let (id, summary, description, extra, responses) = match route {
        Route::Status => (
            "getStatus",
            "This unit's leadership now",
            "leader is true only while leadership is guaranteed for at least claimDurationMs more. Until the sidecar knows the lease state (its first read and its watch), 503, never a guess.",
            None,
            responses(&error, json_reply("The status", status), &[UNAVAILABLE]),
        ),
        Route::Claim => (
            "claim",
            "Claim leadership (the ClaimLeader ticket)",
            "leader is true only if leadership is guaranteed for the claim duration from the request.",
            None,
            responses(
                &error,
                json_reply(
                    "Whether this unit leads, and the term",
                    schemas_of::<ClaimReply>(schemas),
                ),
                &[UNAVAILABLE],
            ),
        ),
        Route::WaitLeader => (
            "waitLeader",
            "Wait until this unit leads (the WaitLeader ticket)",
            "A long poll: answers with the status once this unit is leader.",
            Some(("parameters", wait_query())),
            responses(
                &error,
                json_reply("The status, leading", status),
                &[bad_query, timeout, UNAVAILABLE],
            ),
        ),
        Route::WaitMinion => (
            "waitMinion",
            "Wait until this unit is not guaranteed leader (the WaitMinion ticket)",
            "A long poll: at once for a minion.",
            Some(("parameters", wait_query())),
            responses(
                &error,
                json_reply("The status, not leading", status),
                &[bad_query, timeout, UNAVAILABLE],
            ),
        ),
        Route::Watch => (
            "watch",
            "Follow this unit's leadership",
            "Newline-delimited JSON: the status now, then one line at every change, until the client disconnects.",
            None,
            responses(
                &error,
                map([
                    ("description", text("One Status per line")),
                    (
                        "content",
                        map([("application/x-ndjson", map([("schema", status)]))]),
                    ),
                ]),
                &[],
            ),
        ),
        Route::Token => (
            "getToken",
            "The fencing token, while leader",
            "Put term into your writes so that a deposed leader's late writes are refused.",
            None,
            responses(
                &error,
                json_reply("The token", schemas_of::<TokenReply>(schemas)),
                &[("409", "NotLeader: this unit is not leader")],
            ),
        ),
        Route::Release => (
            "release",
            "Step down now",
            "This unit does not claim again until another unit has taken the lease or a lease length has passed.",
            None,
            responses(
                &error,
                json_reply(
                    "Whether a lease was released",
                    schemas_of::<ReleaseReply>(schemas),
                ),
                &[UNAVAILABLE],
            ),
        ),
        Route::Leaders => (
            "getLeaders",
            "Every application's leader in the namespace (the Reader)",
            "",
            None,
            responses(
                &error,
                json_reply("Application to leader", schemas_of::<LeadersReply>(schemas)),
                &[FORBIDDEN, UNAVAILABLE],
            ),
        ),
        Route::Pins => (
            "getPins",
            "Every pinned application in the namespace",
            "",
            None,
            responses(
                &error,
                json_reply(
                    "Application to the entities pinning it",
                    schemas_of::<PinsReply>(schemas),
                ),
                &[FORBIDDEN, UNAVAILABLE],
            ),
        ),
        Route::Pin | Route::Unpin => {
            let (id, summary) = if route == Route::Pin {
                ("pin", "Pin this unit's application for an entity")
            } else {
                ("unpin", "Remove an entity's pin of this unit's application")
            };
            let body = request_body(schemas_of::<EntityRequest>(schemas));
            (
                id,
                summary,
                "Needs spec writes (the chart's sidecar.allowPinning).",
                Some(("requestBody", body)),
                responses(
                    &error,
                    json_reply("The pin now", schemas_of::<PinReply>(schemas)),
                    &[
                        ("400", "BadRequest: the body is not {\"entity\":\"NAME\"}"),
                        FORBIDDEN,
                        ("413", "BadRequest: a body over the limit"),
                        UNAVAILABLE,
                    ],
                ),
            )
        }
        Route::Eligibility => (
            "declareEligibility",
            "Say whether this unit's app should lead now",
            "{\"eligible\":false,\"reason\":\"warming up\"} while the app should not lead (warming up, lagging, draining): a leader hands over to a standby whose app is healthy, when one exists; a standby lets the others take a free lease first (it still takes it if nobody else does). {\"eligible\":true} when it may lead again. The declaration is kept in the lease until the app says otherwise.",
            Some((
                "requestBody",
                request_body(schemas_of::<EligibilityRequest>(schemas)),
            )),
            responses(
                &error,
                json_reply("What the unit declared", schemas_of::<EligibilityReply>(schemas)),
                &[
                    (
                        "400",
                        "BadRequest: not {\"eligible\":BOOL,\"reason\":\"WHY\"}, no reason with eligible false, or a reason over 256 characters or not one line",
                    ),
                    ("413", "BadRequest: a body over the limit"),
                    FORBIDDEN,
                    UNAVAILABLE,
                ],
            ),
        ),
        Route::Healthz => (
            "healthz",
            "Alive",
            "",
            None,
            responses(
                &error,
                json_reply("{\"status\":\"ok\"}", schemas_of::<ProbeReply>(schemas)),
                &[],
            ),
        ),
        Route::Readyz => (
            "readyz",
            "Ready: the lease state is known (first read done, watch running)",
            "",
            None,
            responses(
                &error,
                json_reply("{\"status\":\"ready\"}", schemas_of::<ProbeReply>(schemas)),
                &[("503", "Unavailable: not ready; the message says why")],
            ),
        ),
    };
    let mut mapping = Mapping::new();
    mapping.insert(text("operationId"), text(id));
    mapping.insert(text("summary"), text(summary));
    if !description.is_empty() {
        mapping.insert(text("description"), text(description));
    }
    if let Some((key, value)) = extra {
        mapping.insert(text(key), value);
    }
    mapping.insert(text("responses"), responses);
    Value::Mapping(mapping)
}

fn schemas_of<T: JsonSchema>(schemas: &mut Schemas) -> Value {
    schemas.of::<T>()
}

/// The document.
pub fn document() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    });
    let mut schemas = Schemas(settings.into_generator());
    let mut paths = Mapping::new();
    for route in Route::ALL {
        let method = route.method().as_str().to_lowercase();
        let operation = operation(route, &mut schemas);
        let entry = paths
            .entry(text(route.path()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if let Value::Mapping(item) = entry {
            item.insert(Value::String(method), operation);
        }
    }
    let definitions = schemas.0.take_definitions(true);
    let components = yaml(serde_json::Value::Object(definitions));
    map([
        ("openapi", text("3.1.0")),
        (
            "info",
            map([
                ("title", text("leadership-sidecar socket API")),
                ("version", text(env!("CARGO_PKG_VERSION"))),
                (
                    "description",
                    text(&format!(
                        "HTTP/1.1 + JSON on the sidecar's Unix socket (LEADERSHIP_SOCKET, default \
                         /run/leadership/leadership.sock, mode 0660): curl --unix-socket \"$LEADERSHIP_SOCKET\" \
                         http://localhost/v1/status. Every error is an ErrorReply with a stable code. Request \
                         bodies are at most {MAX_BODY} bytes; a wrong method is 405. Generated by socket-openapi \
                         from the sidecar's routes and wire types."
                    )),
                ),
            ]),
        ),
        (
            "servers",
            Value::Sequence(vec![map([
                ("url", text("http://localhost")),
                (
                    "description",
                    text("The Unix socket (any host name; the socket is the address)"),
                ),
            ])]),
        ),
        ("paths", Value::Mapping(paths)),
        ("components", map([("schemas", components)])),
    ])
}

/// The document as the YAML file holds it.
pub fn render() -> String {
    format!(
        "# The leadership-sidecar socket API. Generated: cargo run -p leadership-sidecar --bin socket-openapi\n{}",
        serde_yaml::to_string(&document()).unwrap_or_default()
    )
}
