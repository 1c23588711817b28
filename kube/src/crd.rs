//! The `LeadershipLease` custom resource: one per application (namespaced, name = application).
//!
//! `spec` holds intent that people and tools write (pins, a pending revocation, a duration policy);
//! `status` holds the claim, written by claimants and the operator through the status subresource,
//! so that RBAC can separate who may claim from who may pin or revoke. The schema carries the
//! invariants the API server enforces: names, ranges, and a term that never decreases.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time},
    jiff::Timestamp,
};
use kube::{CustomResource, KubeSchema};
use leadership::lease::{Claim, ClaimOutcome, Handover, Lease};
use serde::{Deserialize, Serialize};

/// The reasons given by `status.history` entries, the operator's conditions and its Events: one
/// word per change or state, the same word wherever it appears.
pub mod reason {
    use leadership::ErrorCode;

    /// A unit took the lease (history).
    pub const ACQUIRED: &str = "Acquired";
    /// The holder renewed its claim (history).
    pub const RENEWED: &str = "Renewed";
    /// The holder gave the lease up (history, Event).
    pub const RELEASED: &str = "Released";
    /// The operator cleared a claim that ran out (history, Event).
    pub const EXPIRED: &str = "Expired";
    /// The operator cleared the claim of a holder whose containers had all terminated (history,
    /// Event).
    pub const POD_GONE: &str = "PodGone";
    /// A unit leads in a new term (Event).
    pub const ELECTED: &str = "Elected";
    /// The operator watches the lease (`Ready`).
    pub const RECONCILED: &str = "Reconciled";
    /// A unit holds the lease (`Held` true).
    pub const HELD: &str = "Held";
    /// No unit holds the lease (`Held` false).
    pub const FREE: &str = "Free";
    /// An entity pins the lease (`Pinned` true, Event).
    pub const PINNED: &str = "Pinned";
    /// No entity pins the lease (`Pinned` false).
    pub const NOT_PINNED: &str = "NotPinned";
    /// An entity removed its pin (Event).
    pub const UNPINNED: &str = "Unpinned";
    /// A revoked grant is over (`Revoked` true, Event).
    pub const REVOKED: &str = "Revoked";
    /// A revocation or handover named a unit that does not hold the lease in that term
    /// (`Revoked` false, Warning Event): the error code of the same refusal.
    pub const CLAIM_NOT_HELD: &str = ErrorCode::ClaimNotHeld.as_str();
    /// A handover request ended with a later grant (Event).
    pub const HANDED_OVER: &str = "HandedOver";
    /// A handover's target did not take the lease in time (Warning Event).
    pub const HANDOVER_ABANDONED: &str = "HandoverAbandoned";
    /// The operator asked the holder to hand over to the preferred unit (Event).
    pub const PREFERRED_UNIT: &str = "PreferredUnit";
    /// The operator asked the holder, whose Pod is being deleted, to hand over (Event).
    pub const LEADER_TERMINATING: &str = "LeaderTerminating";
    /// The leader's app is healthy (`LeaderHealthy` true).
    pub const APP_HEALTHY: &str = "AppHealthy";
    /// The leader's app is unhealthy (`LeaderHealthy` false; the Event of the handover it asks).
    pub const APP_UNHEALTHY: &str = "AppUnhealthy";
    /// The leader's app is unhealthy and no standby's is healthy: it keeps leading
    /// (`LeaderHealthy` false, Warning Event).
    pub const NO_HEALTHY_STANDBY: &str = "NoHealthyStandby";
}

/// The types of the conditions the operator writes in `status.conditions`.
pub mod condition {
    /// The operator watches the lease.
    pub const READY: &str = "Ready";
    /// A unit holds the lease.
    pub const HELD: &str = "Held";
    /// An entity pins the lease: its claim does not expire.
    pub const PINNED: &str = "Pinned";
    /// How the last revocation request ended.
    pub const REVOKED: &str = "Revoked";
    /// Whether the leader's app is healthy (only while a unit leads and the health rule is on).
    pub const LEADER_HEALTHY: &str = "LeaderHealthy";

    /// The condition of type `kind` among `conditions`, if there is one.
    pub fn find<'a>(conditions: &'a [super::Condition], kind: &str) -> Option<&'a super::Condition> {
        conditions.iter().find(|c| c.type_ == kind)
    }
}

/// The most transitions kept in `status.history`.
pub const HISTORY_LIMIT: usize = 10;
/// The longest lease, claim-duration bound or lock delay the schema accepts, in milliseconds (one
/// hour; a sidecar's lease is at most `leadership::tracker::timing::MAX_LEASE_LENGTH`).
pub const MAX_LEASE_MS: i64 = 3_600_000;
/// The largest term and renewal count the schema accepts: the core's bound, 2^53 − 1.
pub const MAX_COUNT: i64 = leadership::lease::MAX_COUNT as i64;

/// The most members a lease lists: units beyond these (in name order) cannot take the lease.
pub const MAX_MEMBERS: usize = 256;

/// What a unit's name must be, in every field that names one: a Pod name (a DNS subdomain name).
const UNIT_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// The schema of a field that names a unit: a Pod name, 1 to 253 characters.
fn unit_name(schema: &mut schemars::Schema) {
    schema.insert("minLength".into(), 1.into());
    schema.insert("maxLength".into(), 253.into());
    schema.insert("pattern".into(), UNIT_NAME_PATTERN.into());
}

/// The schema of a list of unit names.
fn member_names(schema: &mut schemars::Schema) {
    let mut item = schemars::json_schema!({ "type": "string" });
    unit_name(&mut item);
    schema.insert("items".into(), item.into());
    schema.insert("x-kubernetes-list-type".into(), "set".into());
}

/// The schema of `status.ineligible`: keyed by unit (Pod) name, at most 256 entries.
fn ineligible_map(schema: &mut schemars::Schema) {
    schema.insert("maxProperties".into(), MAX_MEMBERS.into());
    let mut key = schemars::json_schema!({ "type": "string" });
    unit_name(&mut key);
    schema.insert("propertyNames".into(), key.into());
}

/// Why a unit's app said it should not lead, and since when.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ineligible {
    /// What the app said (at most 256 characters).
    #[serde(default)]
    #[schemars(length(max = leadership::validate::MAX_INELIGIBLE_REASON))]
    pub reason: String,
    /// When it said so (display only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// The desired state of an application's leadership: what people and tools ask for.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "leadership.dev",
    version = "v1alpha1",
    kind = "LeadershipLease",
    plural = "leadershipleases",
    singular = "leadershiplease",
    shortname = "llease",
    category = "leadership",
    namespaced,
    status = "LeadershipLeaseStatus",
    doc = "The leadership lease of one application: at most one unit (pod) holds it at a time. The object's name is the application's name.",
    validation = Rule::new("size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("the name is the application's name and must be a DNS label (lower case letters, digits and '-', at most 63 characters)"),
    validation = Rule::new("!has(oldSelf.status) || has(self.status)").message("status cannot be removed"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.holder", description = "The unit that holds the lease"),
    printcolumn(name = "Term", type_ = "integer", json_path = ".status.term", description = "The fencing term"),
    printcolumn(name = "Pinned", type_ = "boolean", json_path = ".status.pinned", description = "Whether any entity pins the lease"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expireTime", description = "When the claim runs out by its writer's clock, if not renewed (display only)"),
    printcolumn(name = "Locked", type_ = "boolean", json_path = ".status.locked", description = "Whether the lock delay after an expiry keeps everyone from taking the lease", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct LeadershipLeaseSpec {
    /// Entities that pin the lease, each with when it pinned. While any pin is present the claim
    /// does not expire: the holder stays leader in the store even if it stops renewing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(k, size(k) <= 253 && k.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))").message("pin entities must be DNS subdomain names"))]
    pub pins: BTreeMap<String, Pin>,
    /// A pending revocation of the holder's leadership: the holder steps down, and the operator
    /// clears the request once it is carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
    /// A pending handover (`kubectl leadership handover`): the holder steps down and only the
    /// named unit (any other unit when none is named) may take the lease; the operator clears it
    /// once the lease is taken, or abandons it after its timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<HandoverRequest>,
    /// A unit that should lead whenever it is live (its Pod Ready): when another unit holds the
    /// lease, the operator hands it over to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = unit_name)]
    pub preferred_unit: Option<String>,
    /// Limits on the claim durations units may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<LeasePolicy>,
}

/// One entity's pin.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pin {
    /// When the entity pinned the lease.
    pub since: Time,
}

/// A request to revoke one unit's leadership in one term.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// The unit (Pod name) whose leadership is revoked.
    #[schemars(transform = unit_name)]
    pub unit: String,
    /// The term being revoked: a later term of the same unit is not affected.
    #[schemars(range(min = 1, max = MAX_COUNT))]
    pub term: i64,
    /// When the revocation was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<Time>,
}

/// A request to hand one unit's leadership over, in one term.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HandoverRequest {
    /// The holder that hands over.
    #[schemars(transform = unit_name)]
    pub from: String,
    /// The term it holds: the handover applies until a later grant.
    #[schemars(range(min = 1, max = MAX_COUNT))]
    pub term: i64,
    /// The unit that is to take over; any other unit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = unit_name)]
    pub to: Option<String>,
    /// When the handover was asked for (display only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<Time>,
}

/// Per-application settings: the range of lease lengths a claim may write, the lock delay, the
/// health rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minDurationMs) || !has(self.maxDurationMs) || self.minDurationMs <= self.maxDurationMs").message("minDurationMs must not exceed maxDurationMs"))]
pub struct LeasePolicy {
    /// The shortest lease length a claim may write (`status.leaseDurationMs`), in milliseconds. A
    /// sidecar writes its `--lease-length`, by default 4 x its `--claim-duration` (20 s for 5 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = MAX_LEASE_MS))]
    pub min_duration_ms: Option<i64>,
    /// The longest lease length a claim may write (`status.leaseDurationMs`), in milliseconds. A
    /// sidecar writes its `--lease-length`, by default 4 x its `--claim-duration` (20 s for 5 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = MAX_LEASE_MS))]
    pub max_duration_ms: Option<i64>,
    /// After a claim runs out (not after a release), nobody may take the lease for this long, in
    /// milliseconds, so that a dead leader's in-flight writes can drain. Off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_LEASE_MS))]
    pub lock_delay_ms: Option<i64>,
    /// How leadership follows the app's health; on, with its defaults, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthPolicy>,
}

/// How an application's leadership follows its app's health: a leader whose app containers are
/// not running, or restarted recently, for longer than a grace hands over to a healthy standby
/// when one exists (and keeps leading, saying so, when none does).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthPolicy {
    /// Whether an unhealthy leader hands over (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long the leader's app may be unhealthy before it hands over, in milliseconds (default
    /// 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_LEASE_MS))]
    pub grace_ms: Option<i64>,
    /// A restart of an app container this recent makes the app unhealthy, in milliseconds
    /// (default 30000; 0 ignores restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_LEASE_MS))]
    pub restart_window_ms: Option<i64>,
    /// Whether a Pod that is not Ready counts as unhealthy (default false: many apps report Ready
    /// only while they lead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_ready: Option<bool>,
}

/// The claim on an application's lease, as its writers last left it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.holder) || has(self.leaseDurationMs)").message("a claim needs leaseDurationMs"))]
pub struct LeadershipLeaseStatus {
    /// The unit (Pod name) that holds the lease; absent when no unit does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = unit_name)]
    pub holder: Option<String>,
    /// The fencing term: rises by one at every grant that is not an extension and never decreases.
    /// At most 2^53 − 1.
    #[serde(default)]
    #[schemars(range(min = 0, max = MAX_COUNT))]
    #[x_kube(
        validation = Rule::new("self >= oldSelf").message("the term must never decrease"),
        validation = Rule::new("self <= oldSelf + 1").message("the term rises by at most one per write: a grant takes the next term")
    )]
    pub term: i64,
    /// How many times the current grant has been renewed; with the term, it identifies the claim
    /// that observers time. At most 2^53 − 1.
    #[serde(default)]
    #[schemars(range(min = 0, max = MAX_COUNT))]
    pub renewals: i64,
    /// How long the claim lasts after each write, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_LEASE_MS))]
    pub lease_duration_ms: Option<i64>,
    /// When the current holder acquired the lease (display only; no decision uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<MicroTime>,
    /// When the claim was last written (display only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<MicroTime>,
    /// When the claim runs out if not renewed, by its writer's clock (display only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<MicroTime>,
    /// Whether any entity pins the lease (mirrors spec.pins for display).
    #[serde(default)]
    pub pinned: bool,
    /// Whether the claim has run out and the lock delay still keeps everyone from taking it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locked: bool,
    /// `Ready`, `Held` and `Pinned` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The units (Pods) that belong to the application, as the operator last saw them: the Pods
    /// of the namespace whose `leadership.dev/application` annotation names it and that are not
    /// being deleted. Only a member may take a free lease (the chart's admission policy); renewals
    /// and releases do not look. Written by the operator alone: at most 256, in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_MEMBERS), transform = member_names)]
    pub members: Vec<String>,
    /// The members whose app is unhealthy, as the operator judges them (an app container not
    /// running or restarted recently): they take a free lease only after the others had their
    /// chance. Written by the operator alone: at most 256, in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_MEMBERS), transform = member_names)]
    pub unhealthy: Vec<String>,
    /// The units whose app said it should not lead now (warming up, lagging, draining), each
    /// written by that unit alone: a leader listed here hands over to a healthy standby, a
    /// standby takes a free lease only after the others had their chance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = ineligible_map)]
    pub ineligible: BTreeMap<String, Ineligible>,
    /// The latest changes of holder, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub history: Vec<Transition>,
}

/// One change of holder.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// The term after the change.
    #[schemars(range(min = 0, max = MAX_COUNT))]
    pub term: i64,
    /// The holder after the change; absent when the lease became free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// Why: `Acquired`, `Released`, `Expired`, `Revoked` or `PodGone`.
    #[schemars(length(min = 1, max = 64))]
    pub reason: String,
    /// When, by the writer's clock.
    pub time: MicroTime,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn micro_time(at: Timestamp) -> MicroTime {
    MicroTime(at)
}

impl LeadershipLease {
    /// A new, empty lease object for `application` in `namespace`.
    pub fn empty(namespace: &str, application: &str) -> Self {
        let mut lease = LeadershipLease::new(application, LeadershipLeaseSpec::default());
        lease.metadata.namespace = Some(namespace.to_owned());
        lease
    }

    /// The resourceVersion as a number, to order two views of this object (the API server's
    /// are etcd revisions); `None` when it has none or it is not a number.
    pub fn version(&self) -> Option<u64> {
        self.metadata.resource_version.as_deref()?.parse().ok()
    }

    /// The units that take a free lease only after the others had their chance: those the
    /// operator lists as unhealthy and those whose app said it should not lead.
    pub fn stand_aside(&self) -> std::collections::BTreeSet<String> {
        let Some(status) = &self.status else {
            return std::collections::BTreeSet::new();
        };
        status
            .unhealthy
            .iter()
            .chain(status.ineligible.keys())
            .cloned()
            .collect()
    }

    /// The object as the pure lease rules see it. A revocation applies only to the unit and term it
    /// names.
    pub fn to_lease(&self) -> Lease {
        let status = self.status.clone().unwrap_or_default();
        let term = to_u64(status.term);
        let holder = status.holder.clone().map(|unit| Claim {
            unit,
            duration: Duration::from_millis(to_u64(status.lease_duration_ms.unwrap_or(0))),
            renewals: to_u64(status.renewals),
        });
        let revoked = self.spec.revocation.as_ref().and_then(|r| {
            (holder.as_ref().map(|c| c.unit.as_str()) == Some(r.unit.as_str()) && to_u64(r.term) == term)
                .then(|| r.unit.clone())
        });
        // A handover applies until the next grant raises the term; its holder is revoked.
        let handover = self
            .spec
            .handover
            .as_ref()
            .filter(|h| to_u64(h.term) == term)
            .map(|h| Handover {
                from: h.from.clone(),
                to: h.to.clone(),
            });
        let revoked = revoked.or_else(|| {
            let from = &handover.as_ref()?.from;
            (holder.as_ref().map(|c| &c.unit) == Some(from)).then(|| from.clone())
        });
        Lease {
            holder,
            term,
            pins: self.spec.pins.keys().cloned().collect(),
            revoked,
            handover,
            lock_delay: Duration::from_millis(to_u64(
                self.spec
                    .policy
                    .as_ref()
                    .and_then(|p| p.lock_delay_ms)
                    .unwrap_or(0),
            )),
        }
    }

    /// The status after the claim state changed to `next`, at wall-clock time `now` (display times
    /// only), with a history entry for a change of holder; conditions and the rest are kept.
    pub fn status_for(&self, next: &Lease, reason: &str, now: Timestamp) -> LeadershipLeaseStatus {
        let mut status = self.status.clone().unwrap_or_default();
        let previous_holder = status.holder.clone();
        let previous_term = status.term;
        status.holder = next.holder_unit().map(str::to_owned);
        status.term = to_i64(next.term);
        status.pinned = next.is_pinned();
        match &next.holder {
            Some(claim) => {
                status.renewals = to_i64(claim.renewals);
                status.lease_duration_ms = Some(millis(claim.duration));
                status.renew_time = Some(micro_time(now));
                status.expire_time = now.checked_add(claim.duration).ok().map(micro_time);
                if previous_holder.as_deref() != Some(claim.unit.as_str()) || previous_term != status.term {
                    status.acquire_time = Some(micro_time(now));
                }
            }
            None => {
                status.renewals = 0;
                status.lease_duration_ms = None;
                status.acquire_time = None;
                status.renew_time = None;
                status.expire_time = None;
            }
        }
        if previous_holder != status.holder || previous_term != status.term {
            // A new grant or a cleared claim ends any lock delay.
            status.locked = false;
            status.history.push(Transition {
                term: status.term,
                holder: status.holder.clone(),
                reason: reason.to_owned(),
                time: micro_time(now),
            });
            let excess = status.history.len().saturating_sub(HISTORY_LIMIT);
            status.history.drain(..excess);
        }
        status
    }
}

/// The history reason for a claim outcome.
pub fn claim_reason(outcome: ClaimOutcome) -> &'static str {
    match outcome {
        ClaimOutcome::Granted => reason::ACQUIRED,
        ClaimOutcome::Extended => reason::RENEWED,
    }
}

/// Installs or updates the CRD with server-side apply and waits until LeadershipLeases are served:
/// for tests and local runs (clusters get the CRD from the chart).
pub async fn install(client: &kube::Client) -> Result<(), kube::Error> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::{
        Api, CustomResourceExt,
        api::{Patch, PatchParams},
        runtime::{conditions, wait::await_condition},
    };
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = LeadershipLease::crd();
    let name = crd.metadata.name.clone().unwrap_or_default();
    crds.patch(
        &name,
        &PatchParams::apply("leadership").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    let established = await_condition(crds, &name, conditions::is_crd_established());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), established).await;
    // Discovery can lag the Established condition for a moment.
    let probe: kube::Api<LeadershipLease> = kube::Api::all(client.clone());
    let mut attempts = 0;
    loop {
        match probe.list(&kube::api::ListParams::default().limit(1)).await {
            Ok(_) => return Ok(()),
            Err(err) if attempts >= 100 => return Err(err),
            Err(_) => attempts += 1,
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The CRD as YAML, exactly as committed in `crds/leadershiplease.yaml`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = LeadershipLease::crd();
    let yaml = serde_yaml::to_string(&crd).unwrap_or_default();
    format!("# Generated by `cargo run -p leadership-kube --bin crdgen`; do not edit.\n{yaml}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(unit: &str, term: i64) -> LeadershipLease {
        let mut lease = LeadershipLease::empty("ns", "web");
        lease.status = Some(LeadershipLeaseStatus {
            holder: Some(unit.into()),
            term,
            renewals: 3,
            lease_duration_ms: Some(20_000),
            ..LeadershipLeaseStatus::default()
        });
        lease
    }

    #[test]
    fn the_object_reads_as_a_lease() {
        let lease = held("web-0", 4).to_lease();
        assert_eq!(lease.holder_unit(), Some("web-0"));
        assert_eq!(lease.claim_id().map(|id| (id.term, id.renewals)), Some((4, 3)));
        assert_eq!(lease.holder.unwrap().duration, Duration::from_secs(20));
    }

    #[test]
    fn a_revocation_applies_only_to_its_unit_and_term() {
        let mut object = held("web-0", 4);
        object.spec.revocation = Some(Revocation {
            unit: "web-0".into(),
            term: 4,
            requested_at: None,
        });
        assert_eq!(object.to_lease().revoked.as_deref(), Some("web-0"));
        object.spec.revocation = Some(Revocation {
            unit: "web-0".into(),
            term: 3,
            requested_at: None,
        });
        assert_eq!(
            object.to_lease().revoked,
            None,
            "an old term's revocation does not touch a new grant"
        );
        object.spec.revocation = Some(Revocation {
            unit: "web-1".into(),
            term: 4,
            requested_at: None,
        });
        assert_eq!(object.to_lease().revoked, None);
    }

    #[test]
    fn status_records_a_bounded_history_of_changes_of_holder() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut object = LeadershipLease::empty("ns", "web");
        for i in 0..15 {
            let unit = format!("web-{}", i % 2);
            let (next, outcome) = object
                .to_lease()
                .claim(&unit, Duration::from_secs(20), true)
                .unwrap();
            object.status = Some(object.status_for(&next, claim_reason(outcome), now));
            let (renewed, outcome) = object
                .to_lease()
                .claim(&unit, Duration::from_secs(20), false)
                .unwrap();
            object.status = Some(object.status_for(&renewed, claim_reason(outcome), now));
        }
        let status = object.status.unwrap();
        assert_eq!(status.term, 15);
        assert_eq!(status.renewals, 1);
        assert_eq!(status.history.len(), HISTORY_LIMIT);
        assert_eq!(status.history.last().map(|t| t.term), Some(15));
        assert!(
            status.history.iter().all(|t| t.reason == "Acquired"),
            "renewals are not history"
        );
    }

    #[test]
    fn the_crd_names_its_columns_and_rules() {
        let yaml = crd_yaml();
        for needle in [
            "leadershipleases",
            "llease",
            "Leader",
            "Term",
            "Pinned",
            "Expires",
            "self >= oldSelf",
            "self <= oldSelf + 1",
            "maximum: 9007199254740991.0",
        ] {
            assert!(yaml.contains(needle), "{needle}");
        }
    }
}
