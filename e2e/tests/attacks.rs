//! The chart's admission policies against every illegal LeadershipLease write, tried directly with
//! kube clients that hold each kind of credential: a standby pod's pod-bound token of the sidecar's
//! ServiceAccount, an unbound token of it, the admin impersonating it, and the operator's
//! ServiceAccount (unbound, and bound to a replica's Pod). Each is refused with the message of the
//! rule it breaks and leaves the lease as it was; the legal writes, made through the store as the
//! sidecar and the operator make them, are admitted. No operator runs here: nothing but the test
//! writes the leases. The operator's account is also tried beyond leases: on pods it changes only
//! the leader labels, on its MutatingWebhookConfiguration only the caBundle.

use std::{collections::BTreeMap, fmt::Debug, time::Duration};

use k8s_openapi::{
    api::core::v1::Pod,
    apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use leadership::{Claimer, Eligibility, Error, Pinner};
use leadership_e2e::{
    chart::Release,
    testenv::{self, TestNamespace},
    units,
};
use leadership_kube::{
    KubeStore, Scope,
    crd::{
        HandoverRequest, Ineligible, LeadershipLease, LeadershipLeaseSpec, LeadershipLeaseStatus,
        LeasePolicy, MAX_COUNT, Pin, Revocation,
    },
};

/// The sidecar's ServiceAccount in the chart's namespace.
const SIDECAR: &str = "leadership-sidecar";
/// The operator's own lease.
const OPERATOR_LEASE: &str = "leadership-operator";
/// The lease every claim here asks for: long, so that no store judges a claim run out mid-test.
const L: Duration = Duration::from_secs(60);

/// A release of the chart in a namespace of its own, and an admin view of its leases.
struct Bench {
    ns: TestNamespace,
    release: Release,
    admin: Api<LeadershipLease>,
}

impl Bench {
    async fn new(values: &[&str]) -> Bench {
        let ns = testenv::shared().namespace().await;
        let release = Release::install_confined(&ns, values);
        release.wait_for_policies(&ns).await;
        let admin = ns.api();
        Bench { ns, release, admin }
    }

    /// A client of `account` as the pod `pod` (a new Pod object).
    async fn pod(&self, account: &str, pod: &str) -> Client {
        units::pod_client(&self.ns, account, pod).await
    }

    /// A client of `account` with an unbound token.
    async fn unbound(&self, account: &str) -> Client {
        self.ns
            .client_with_token(&self.ns.token(account, None).await)
            .await
    }

    /// The sidecar account's user name.
    fn sidecar_user(&self) -> String {
        format!("system:serviceaccount:{}:{SIDECAR}", self.ns.name)
    }

    fn api(&self, client: &Client) -> Api<LeadershipLease> {
        Api::namespaced(client.clone(), &self.ns.name)
    }

    /// The store as a sidecar (or the operator) uses it, with `client`'s credentials.
    fn store(&self, client: &Client) -> KubeStore {
        KubeStore::new(client.clone(), Scope::Namespace(self.ns.name.clone()))
    }

    async fn lease(&self, name: &str) -> LeadershipLease {
        self.admin.get(name).await.expect("read the lease")
    }

    async fn status(&self, name: &str) -> LeadershipLeaseStatus {
        self.lease(name).await.status.unwrap_or_default()
    }

    /// `client` replaces the status of lease `name` with the current one changed by `change`.
    async fn write(
        &self,
        client: &Client,
        name: &str,
        change: impl FnOnce(&mut LeadershipLeaseStatus),
    ) -> kube::Result<LeadershipLease> {
        let mut object = self.lease(name).await;
        let mut status = object.status.clone().unwrap_or_default();
        change(&mut status);
        object.status = Some(status);
        self.api(client)
            .replace_status(name, &PostParams::default(), &object)
            .await
    }

    /// `client` replaces lease `name` (its spec and metadata) with the current one changed by
    /// `change`.
    async fn write_spec(
        &self,
        client: &Client,
        name: &str,
        change: impl FnOnce(&mut LeadershipLease),
    ) -> kube::Result<LeadershipLease> {
        let mut object = self.lease(name).await;
        change(&mut object);
        self.api(client)
            .replace(name, &PostParams::default(), &object)
            .await
    }

    /// Asserts that `client`'s status write is refused saying `expected`, and the lease unchanged.
    async fn refused(
        &self,
        client: &Client,
        name: &str,
        change: impl FnOnce(&mut LeadershipLeaseStatus),
        expected: &str,
    ) {
        let before = self.lease(name).await;
        refusal(self.write(client, name, change).await, expected);
        self.unchanged(name, &before).await;
    }

    /// Asserts that `client`'s write of the object is refused saying `expected`, and the lease
    /// unchanged.
    async fn refused_spec(
        &self,
        client: &Client,
        name: &str,
        change: impl FnOnce(&mut LeadershipLease),
        expected: &str,
    ) {
        let before = self.lease(name).await;
        refusal(self.write_spec(client, name, change).await, expected);
        self.unchanged(name, &before).await;
    }

    /// Asserts that `client` may not create lease `name` with `spec`, saying `expected`.
    async fn refused_create(&self, client: &Client, name: &str, spec: LeadershipLeaseSpec, expected: &str) {
        let mut object = LeadershipLease::empty(&self.ns.name, name);
        object.spec = spec;
        refusal(
            self.api(client).create(&PostParams::default(), &object).await,
            expected,
        );
        assert!(
            self.admin.get_opt(name).await.unwrap().is_none(),
            "the refused create left no lease {name}"
        );
    }

    async fn unchanged(&self, name: &str, before: &LeadershipLease) {
        let after = self.lease(name).await;
        assert_eq!(
            after.metadata.resource_version, before.metadata.resource_version,
            "a refused write leaves lease {name} as it was"
        );
        assert_eq!((&after.spec, &after.status), (&before.spec, &before.status));
    }

    /// `client`'s status write, which must be admitted.
    async fn admitted(
        &self,
        client: &Client,
        name: &str,
        change: impl FnOnce(&mut LeadershipLeaseStatus),
    ) -> LeadershipLeaseStatus {
        self.write(client, name, change)
            .await
            .unwrap_or_else(|e| panic!("a legal write of {name} was refused: {e}"))
            .status
            .unwrap_or_default()
    }

    /// Lists `pods` as the members of lease `name` (creating it empty if needed), as the operator
    /// does for the pods whose `leadership.dev/application` annotation names the application: the
    /// operator's account writes its own status field.
    async fn members(&self, name: &str, pods: &[&str]) {
        if self.admin.get_opt(name).await.expect("read the lease").is_none() {
            self.admin
                .create(
                    &PostParams::default(),
                    &LeadershipLease::empty(&self.ns.name, name),
                )
                .await
                .expect("create the lease");
        }
        let operator = self.unbound(&self.release.operator_account()).await;
        let members = pods.iter().map(|p| (*p).to_owned()).collect();
        self.write(&operator, name, |s| s.members = members)
            .await
            .expect("the operator lists the members");
    }

    /// The admin changes the spec (people and tools with the editor role do).
    async fn set_spec(&self, name: &str, change: impl FnOnce(&mut LeadershipLeaseSpec)) {
        self.write_spec(&self.ns.client, name, |o| change(&mut o.spec))
            .await
            .expect("the admin writes the spec");
    }
}

/// Asserts that `result` is the API server's refusal (the policy's 403 or the schema's 422) and
/// that its message says `expected`.
fn refusal<T: Debug>(result: kube::Result<T>, expected: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.code == 403 || status.code == 422,
                "a refusal by the policy or the schema: {status:?}"
            );
            assert!(
                status.message.contains(expected),
                "the refusal should say {expected:?}, it says: {}",
                status.message
            );
        }
        other => panic!("expected a refusal saying {expected:?}, got {other:?}"),
    }
}

/// What a unit writes to take a free lease (or to try to take a held one) for `unit`.
fn grant(unit: &str) -> impl FnOnce(&mut LeadershipLeaseStatus) {
    let unit = unit.to_owned();
    move |s| {
        s.holder = Some(unit);
        s.term += 1;
        s.renewals = 0;
        s.lease_duration_ms = Some(4_000);
    }
}

/// What a holder writes to release (or another to try to clear its claim).
fn clear(s: &mut LeadershipLeaseStatus) {
    s.holder = None;
    s.renewals = 0;
    s.lease_duration_ms = None;
}

fn renew(s: &mut LeadershipLeaseStatus) {
    s.renewals += 1;
}

fn condition() -> Condition {
    Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "Held".into(),
        message: String::new(),
        observed_generation: None,
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
    }
}

fn pinned_spec() -> LeadershipLeaseSpec {
    LeadershipLeaseSpec {
        pins: BTreeMap::from([(
            "machine-0".to_owned(),
            Pin {
                since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
            },
        )]),
        ..LeadershipLeaseSpec::default()
    }
}

#[tokio::test]
async fn a_pod_takes_only_a_free_lease_for_itself_and_never_changes_another_units_claim() {
    let b = Bench::new(&[]).await;
    let web0 = b.pod(SIDECAR, "web-0").await;
    let web1 = b.pod(SIDECAR, "web-1").await;
    b.members("web", &["web-0", "web-1"]).await;
    b.members("db", &["db-0"]).await;
    b.members("batch", &["batch-0", "web-1"]).await;
    b.members("shop", &["shop-0"]).await;

    // Legal: a member takes the free lease, as its sidecar does.
    let granted = b.store(&web0).claim_leadership("web", "web-0", L).await.unwrap();
    assert_eq!(granted.term, 1);

    // A standby's own store refuses itself; written directly, each way of taking, changing or
    // ending web-0's live claim is refused.
    let held = "the lease is held by web-0: only the operator clears a claim; a unit takes only a free lease (pod web-1";
    let others = "the lease is held by web-0: a unit changes only its own claim (pod web-1";
    b.refused(&web1, "web", grant("web-1"), held).await;
    b.refused(&web1, "web", clear, held).await;
    b.refused(&web1, "web", |s| s.lease_duration_ms = Some(1_000), others)
        .await;
    b.refused(&web1, "web", |s| s.lease_duration_ms = Some(3_600_000), others)
        .await;
    b.refused(&web1, "web", renew, others).await;
    // The term: the schema's own rules come first (+2, 2^53 − 1 and 2^53).
    let jump = "the term rises by at most one per write";
    b.refused(
        &web1,
        "web",
        |s| {
            grant("web-1")(s);
            s.term += 1;
        },
        jump,
    )
    .await;
    b.refused(
        &web1,
        "web",
        |s| {
            grant("web-1")(s);
            s.term = MAX_COUNT;
        },
        jump,
    )
    .await;
    b.refused(
        &web1,
        "web",
        |s| {
            grant("web-1")(s);
            s.term = MAX_COUNT + 1;
        },
        "less than or equal to 9007199254740991",
    )
    .await;
    b.refused(
        &web1,
        "web",
        |s| s.renewals = MAX_COUNT + 1,
        "less than or equal to 9007199254740991",
    )
    .await;

    // Another application's lease, held by its own unit.
    let db0 = b.pod(SIDECAR, "db-0").await;
    b.store(&db0).claim_leadership("db", "db-0", L).await.unwrap();
    b.refused(
        &web1,
        "db",
        grant("web-1"),
        "the lease is held by db-0: only the operator clears a claim; a unit takes only a free lease",
    )
    .await;

    // A free lease: taken only for oneself, with the next term, renewals 0 and a duration.
    let batch0 = b.pod(SIDECAR, "batch-0").await;
    let store = b.store(&batch0);
    store.claim_leadership("batch", "batch-0", L).await.unwrap();
    store.release_leadership("batch", "batch-0").await.unwrap();
    assert_eq!(b.status("batch").await.holder, None, "a legal release");
    b.refused(
        &web1,
        "batch",
        grant("batch-0"),
        "claim refused: a pod may claim leadership only for itself (pod web-1 wrote holder batch-0)",
    )
    .await;
    b.refused(
        &web1,
        "batch",
        |s| {
            grant("web-1")(s);
            s.term -= 1;
        },
        "grant refused: the term must rise by exactly one (pod web-1, old 1, new 1)",
    )
    .await;
    b.refused(
        &web1,
        "batch",
        |s| {
            grant("web-1")(s);
            s.renewals = 3;
        },
        "grant refused: a grant starts at renewals 0 (pod web-1, renewals 3)",
    )
    .await;
    b.refused(
        &web1,
        "batch",
        |s| {
            grant("web-1")(s);
            s.lease_duration_ms = None;
        },
        "a claim needs leaseDurationMs",
    )
    .await;
    b.refused(
        &web1,
        "batch",
        |s| s.renewals = 5,
        "no claim written: a unit writes status only to take a free lease, renew its own claim, release it or declare its own eligibility, and pod web-1",
    )
    .await;
    let taken = b
        .store(&web1)
        .claim_leadership("batch", "web-1", L)
        .await
        .unwrap();
    assert_eq!(taken.term, 2, "a legal grant of the free lease");
    // Its own store now judges web-1 the holder: the standby's write is the legal renewal.
    let renewed = b
        .store(&web1)
        .claim_leadership("batch", "web-1", L)
        .await
        .unwrap();
    assert_eq!(renewed.term, 2);
    assert_eq!(b.status("batch").await.renewals, 1);

    // Another application's free lease: web-1 is no member of shop (its annotation names web).
    let member = "grant refused: pod web-1 is not a member of application shop (members are the pods whose leadership.dev/application annotation names it, as the operator lists them: shop-0)";
    b.refused(&web1, "shop", grant("web-1"), member).await;
    let denied = b
        .store(&web1)
        .claim_leadership("shop", "web-1", L)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), "Forbidden", "{denied:?}");
    // Nor may a unit list others (or itself): members are the operator's to write, even in an
    // otherwise legal renewal of its own claim.
    b.refused(
        &web1,
        "batch",
        |s| {
            renew(s);
            s.members.push("shop-9".into());
        },
        "the operator's fields are not a unit's to write: pod web-1 changed members",
    )
    .await;
}

#[tokio::test]
async fn a_holder_renews_by_one_keeps_its_term_and_its_duration_and_stops_when_revoked() {
    let b = Bench::new(&[]).await;
    let web0 = b.pod(SIDECAR, "web-0").await;
    let web1 = b.pod(SIDECAR, "web-1").await;
    b.members("web", &["web-0", "web-1", "web-2"]).await;
    let web2 = b.pod(SIDECAR, "web-2").await;
    let store = b.store(&web0);
    store.claim_leadership("web", "web-0", L).await.unwrap();
    store.claim_leadership("web", "web-0", L).await.unwrap();
    assert_eq!(b.status("web").await.renewals, 1, "a legal renewal");

    b.refused(
        &web0,
        "web",
        |s| s.renew_time = None,
        "renewal refused: renewals must rise by exactly one (pod web-0, old 1, new 1)",
    )
    .await;
    b.refused(
        &web0,
        "web",
        |s| s.renewals += 2,
        "renewal refused: renewals must rise by exactly one (pod web-0, old 1, new 3)",
    )
    .await;
    b.refused(
        &web0,
        "web",
        |s| {
            renew(s);
            s.lease_duration_ms = Some(1_000);
        },
        "renewal refused: leaseDurationMs must not shrink (pod web-0, old 60000, new 1000)",
    )
    .await;
    b.refused(
        &web0,
        "web",
        grant("web-0"),
        "renewal refused: a renewal keeps the term; a unit takes a new term only on a free lease (pod web-0, old 1, new 2)",
    )
    .await;
    // The operator's fields.
    let fields = "the operator's fields are not a unit's to write: pod web-0 changed";
    b.refused(
        &web0,
        "web",
        |s| {
            renew(s);
            s.conditions = vec![condition()];
        },
        &format!("{fields} conditions"),
    )
    .await;
    b.refused(
        &web0,
        "web",
        |s| {
            renew(s);
            s.observed_generation = Some(7);
        },
        &format!("{fields} observedGeneration"),
    )
    .await;
    b.refused(
        &web0,
        "web",
        |s| {
            renew(s);
            s.pinned = true;
        },
        &format!("{fields} pinned"),
    )
    .await;
    b.refused(
        &web0,
        "web",
        |s| {
            renew(s);
            s.locked = true;
        },
        &format!("{fields} locked"),
    )
    .await;
    // A claim write mirrors spec.pins into `pinned`, which is legal.
    b.set_spec("web", |spec| spec.pins = pinned_spec().pins).await;
    store.claim_leadership("web", "web-0", L).await.unwrap();
    assert!(b.status("web").await.pinned, "the renewal mirrored the pin");
    b.set_spec("web", |spec| spec.pins.clear()).await;

    // Revoked in its term: its store refuses itself, and so does the API server.
    b.set_spec("web", |spec| {
        spec.revocation = Some(Revocation {
            unit: "web-0".into(),
            term: 1,
            requested_at: None,
        });
    })
    .await;
    let denied = store.claim_leadership("web", "web-0", L).await.unwrap_err();
    assert!(matches!(denied, Error::ClaimDenied), "{denied:?}");
    b.refused(
        &web0,
        "web",
        renew,
        "renewal refused: the leadership of pod web-0 in term 1 is revoked: it steps down instead",
    )
    .await;
    // Handing over in its term: the same, and after its release only the target may take it.
    b.set_spec("web", |spec| {
        spec.revocation = None;
        spec.handover = Some(HandoverRequest {
            from: "web-0".into(),
            term: 1,
            to: Some("web-2".into()),
            requested_at: None,
        });
    })
    .await;
    b.refused(
        &web0,
        "web",
        renew,
        "renewal refused: pod web-0 is handing its term 1 over: it steps down instead",
    )
    .await;
    b.refused(
        &web0,
        "web",
        |s| {
            clear(s);
            s.term += 1;
        },
        "release refused: a release keeps the term (pod web-0, old 1, new 2)",
    )
    .await;
    store.release_leadership("web", "web-0").await.unwrap();
    let released = b.status("web").await;
    assert_eq!((released.holder, released.term), (None, 1), "a legal release");
    b.refused(
        &web1,
        "web",
        grant("web-1"),
        "grant refused: the handover from web-0 in term 1 admits only web-2 (pod web-1)",
    )
    .await;
    let taken = b.store(&web2).claim_leadership("web", "web-2", L).await.unwrap();
    assert_eq!(taken.term, 2, "the handover's target takes the lease");
}

#[tokio::test]
async fn credentials_without_a_pod_binding_write_no_claims_and_create_only_empty_leases() {
    let b = Bench::new(&[]).await;
    let web0 = b.pod(SIDECAR, "web-0").await;
    let unbound = b.unbound(SIDECAR).await;
    let impersonated = b.ns.env().impersonating(&b.sidecar_user()).await;
    b.members("web", &["web-0"]).await;
    let store = b.store(&web0);
    store.claim_leadership("web", "web-0", L).await.unwrap();

    let needs = "status writes need a pod-bound ServiceAccount token: a unit claims only as its own pod, and";
    let writers = [
        (&unbound, b.sidecar_user()),
        (&impersonated, b.sidecar_user()),
        // The admin is a user too: nobody but pods and the operator writes claims.
        (&b.ns.client, String::new()),
    ];
    for (client, user) in &writers {
        let expected = format!("{needs} {user}");
        b.refused(client, "web", renew, &expected).await;
        b.refused(client, "web", clear, &expected).await;
    }
    store.release_leadership("web", "web-0").await.unwrap();
    for (client, user) in &writers {
        b.refused(client, "web", grant("web-0"), &format!("{needs} {user}"))
            .await;
    }
    // Through the store, as a sidecar with such a token would: Forbidden, never a grant.
    let forbidden = b
        .store(&unbound)
        .claim_leadership("web", "web-0", L)
        .await
        .unwrap_err();
    assert_eq!(forbidden.code(), "Forbidden", "{forbidden:?}");
    assert!(forbidden.detail().contains(needs), "{}", forbidden.detail());

    // Creates: a unit creates its application's lease, empty; nobody who may not write the spec
    // pre-seeds it (a pin on creation would keep the first claim from ever running out).
    let empty = "create refused: a lease is created with an empty spec;";
    let user = b.sidecar_user();
    b.refused_create(
        &unbound,
        "seeded",
        pinned_spec(),
        &format!("{empty} {user} may not pre-seed pins"),
    )
    .await;
    b.refused_create(
        &impersonated,
        "seeded",
        pinned_spec(),
        &format!("{empty} {user} may not pre-seed pins"),
    )
    .await;
    b.refused_create(
        &web0,
        "seeded",
        pinned_spec(),
        &format!("{empty} pod web-0 may not pre-seed pins"),
    )
    .await;
    let policy = LeadershipLeaseSpec {
        policy: Some(LeasePolicy {
            min_duration_ms: None,
            max_duration_ms: None,
            lock_delay_ms: Some(60_000),
            health: None,
        }),
        ..LeadershipLeaseSpec::default()
    };
    b.refused_create(
        &web0,
        "seeded",
        policy,
        &format!("{empty} pod web-0 may not pre-seed policy"),
    )
    .await;
    // Nor an owner, whose deletion would delete the lease and start its terms again from 1.
    let pod_uid = b.ns.api::<Pod>().get("web-0").await.unwrap().metadata.uid;
    let mut owned = LeadershipLease::empty(&b.ns.name, "seeded");
    owned.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: "web-0".into(),
        uid: pod_uid.unwrap(),
        ..OwnerReference::default()
    }]);
    refusal(
        b.api(&web0).create(&PostParams::default(), &owned).await,
        &format!("{empty} pod web-0 may not pre-seed metadata.ownerReferences"),
    );
    // Whoever may write the spec may create it with one (the admin here; the editor role).
    let mut seeded = LeadershipLease::empty(&b.ns.name, "seeded");
    seeded.spec = pinned_spec();
    b.admin
        .create(&PostParams::default(), &seeded)
        .await
        .expect("the admin creates a pinned lease");
}

#[tokio::test]
async fn the_operator_only_clears_claims_and_writes_its_own_fields() {
    let b = Bench::new(&[]).await;
    let web0 = b.pod(SIDECAR, "web-0").await;
    let operator = b.unbound(&b.release.operator_account()).await;
    b.members("web", &["web-0"]).await;
    b.store(&web0).claim_leadership("web", "web-0", L).await.unwrap();

    let sets = "the operator never sets a holder: it only clears claims";
    let term = "the operator never changes the term: it only clears claims";
    let only = "the operator changes a claim only by clearing it";
    b.refused(&operator, "web", grant("web-1"), sets).await;
    b.refused(&operator, "web", |s| s.term += 1, term).await;
    b.refused(&operator, "web", |s| s.lease_duration_ms = Some(1_000), only)
        .await;
    b.refused(&operator, "web", |s| s.lease_duration_ms = Some(3_600_000), only)
        .await;
    b.refused(&operator, "web", renew, only).await;
    b.refused(
        &operator,
        "web",
        |s| {
            clear(s);
            s.term += 1;
        },
        term,
    )
    .await;

    // Legal: its own fields, by server-side apply as it writes them.
    let patch = serde_json::json!({
        "apiVersion": "leadership.dev/v1alpha1",
        "kind": "LeadershipLease",
        "status": {
            "conditions": [condition()],
            "pinned": false,
            "locked": true,
            "observedGeneration": 1,
        }
    });
    b.api(&operator)
        .patch_status(
            "web",
            &PatchParams::apply("leadership-operator").force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("the operator writes its own fields");
    let status = b.status("web").await;
    assert_eq!(
        (status.holder.as_deref(), status.locked, status.conditions.len()),
        (Some("web-0"), true, 1)
    );

    // Legal: it clears a claim (one that ran out, by its own judgement), keeping the term.
    let object = b.lease("web").await;
    let next = object.to_lease().expire(true).expect("a claim to clear");
    let mut cleared = object.clone();
    cleared.status = Some(object.status_for(&next, "Expired", Timestamp::now()));
    let written = b
        .api(&operator)
        .replace_status("web", &PostParams::default(), &cleared)
        .await
        .expect("the operator clears a claim");
    let status = written.status.unwrap();
    assert_eq!((status.holder, status.term), (None, 1));

    // On the free lease it still never sets a holder.
    b.refused(&operator, "web", grant("web-0"), sets).await;
}

#[tokio::test]
async fn a_unit_declares_only_its_own_eligibility_and_never_writes_the_operators_judgement() {
    let b = Bench::new(&[]).await;
    let web0 = b.pod(SIDECAR, "web-0").await;
    let web1 = b.pod(SIDECAR, "web-1").await;
    let operator = b.unbound(&b.release.operator_account()).await;
    b.members("web", &["web-0", "web-1"]).await;
    b.store(&web0).claim_leadership("web", "web-0", L).await.unwrap();

    // Legal: each unit, through its own store, says its app should not lead now.
    b.store(&web1)
        .declare_eligibility("web", "web-1", Some("warming up"))
        .await
        .unwrap();
    b.store(&web0)
        .declare_eligibility("web", "web-0", Some("draining"))
        .await
        .unwrap();
    let status = b.status("web").await;
    assert_eq!(
        status
            .ineligible
            .iter()
            .map(|(u, e)| (u.as_str(), e.reason.as_str()))
            .collect::<Vec<_>>(),
        [("web-0", "draining"), ("web-1", "warming up")]
    );

    // Another unit's entry: removed, changed or added.
    let others = "a unit declares only its own eligibility: pod web-1 changed the status.ineligible entry of";
    b.refused(
        &web1,
        "web",
        |s| drop(s.ineligible.remove("web-0")),
        &format!("{others} web-0"),
    )
    .await;
    b.refused(
        &web1,
        "web",
        |s| {
            if let Some(entry) = s.ineligible.get_mut("web-0") {
                entry.reason = "forged".into();
            }
        },
        &format!("{others} web-0"),
    )
    .await;
    b.refused(
        &web1,
        "web",
        |s| drop(s.ineligible.insert("web-2".into(), Ineligible::default())),
        &format!("{others} web-2"),
    )
    .await;
    // Nor with a claim write: the holder's renewal that also clears a standby's entry.
    b.refused(
        &web0,
        "web",
        |s| {
            renew(s);
            s.ineligible.remove("web-1");
        },
        "a unit declares only its own eligibility: pod web-0 changed the status.ineligible entry of web-1",
    )
    .await;
    // The schema bounds what a unit may say: a reason of at most 256 characters, unit names only.
    b.refused(
        &web1,
        "web",
        |s| {
            drop(s.ineligible.insert(
                "web-1".into(),
                Ineligible {
                    reason: "x".repeat(300),
                    since: None,
                },
            ))
        },
        // The schema's refusal, naming the field (1.36 adds the `status.` prefix, 1.30 does not).
        "ineligible.web-1.reason: Too long",
    )
    .await;
    b.refused(
        &web1,
        "web",
        |s| drop(s.ineligible.insert("Not A Pod".into(), Ineligible::default())),
        "status.ineligible",
    )
    .await;
    // A declaration changes nothing else.
    b.refused(
        &web1,
        "web",
        |s| {
            s.ineligible.remove("web-1");
            s.history.clear();
        },
        "a declaration of eligibility changes nothing else: pod web-1 also changed history",
    )
    .await;
    // The operator's judgement of who is unhealthy is not a unit's to write.
    b.refused(
        &web0,
        "web",
        |s| {
            renew(s);
            s.unhealthy = vec!["web-1".into()];
        },
        "the operator's fields are not a unit's to write: pod web-0 changed unhealthy",
    )
    .await;
    // The operator lists the unhealthy, and never changes what a unit declared.
    b.admitted(&operator, "web", |s| s.unhealthy = vec!["web-1".into()])
        .await;
    b.refused(
        &operator,
        "web",
        |s| s.ineligible.clear(),
        "the operator never changes what a unit declared",
    )
    .await;

    // Legal: eligible again.
    b.store(&web1)
        .declare_eligibility("web", "web-1", None)
        .await
        .unwrap();
    let status = b.status("web").await;
    assert_eq!(status.ineligible.keys().collect::<Vec<_>>(), ["web-0"]);
    assert_eq!(status.unhealthy, ["web-1"]);
}

#[tokio::test]
async fn the_operators_replicas_claim_its_own_lease_only_as_their_pods() {
    let b = Bench::new(&[]).await;
    let account = b.release.operator_account();
    let op0 = b.pod(&account, "operator-0").await;
    let op1 = b.pod(&account, "operator-1").await;
    let unbound = b.unbound(&account).await;
    let web1 = b.pod(SIDECAR, "web-1").await;

    // Legal: a replica creates and takes the operator's lease, and renews, through the store.
    let store = b.store(&op0);
    assert_eq!(
        store
            .claim_leadership(OPERATOR_LEASE, "operator-0", L)
            .await
            .unwrap()
            .term,
        1
    );
    store
        .claim_leadership(OPERATOR_LEASE, "operator-0", L)
        .await
        .unwrap();

    b.refused(
        &unbound,
        OPERATOR_LEASE,
        grant("operator-1"),
        "claims on the operator's own lease need a pod-bound token: a replica claims only as its own pod",
    )
    .await;
    let itself =
        "operator claim refused: a replica claims the operator's own lease only for its own pod operator-1";
    b.refused(&op1, OPERATOR_LEASE, grant("operator-0"), itself).await;
    b.refused(&op1, OPERATOR_LEASE, renew, itself).await;
    b.refused(
        &op1,
        OPERATOR_LEASE,
        |s| {
            grant("operator-1")(s);
            s.renewals = 2;
        },
        "grant refused: a grant starts at renewals 0 (pod operator-1, renewals 2)",
    )
    .await;
    b.refused(
        &op0,
        OPERATOR_LEASE,
        |s| s.renewals += 2,
        "renewal refused: renewals must rise by exactly one (pod operator-0, old 1, new 3)",
    )
    .await;
    // No unit claims it, held or free.
    let replicas_only = "the operator's own lease is claimed only by the operator's replicas (pod web-1";
    b.refused(&web1, OPERATOR_LEASE, grant("web-1"), replicas_only)
        .await;

    // Legal: a replica takes over a held lease (it judged the claim run out itself).
    let taken = b.admitted(&op1, OPERATOR_LEASE, grant("operator-1")).await;
    assert_eq!((taken.holder.as_deref(), taken.term), (Some("operator-1"), 2));
    // Legal: the operator, even unbound, clears its own lease as it clears any other.
    let free = b.admitted(&unbound, OPERATOR_LEASE, clear).await;
    assert_eq!((free.holder, free.term), (None, 2));
    b.refused(&web1, OPERATOR_LEASE, grant("web-1"), replicas_only)
        .await;
    assert_eq!(
        store
            .claim_leadership(OPERATOR_LEASE, "operator-0", L)
            .await
            .unwrap()
            .term,
        3,
        "a replica takes the free lease"
    );
}

#[tokio::test]
async fn a_pod_changes_only_the_pins_of_a_lease() {
    let b = Bench::new(&["--set", "sidecar.allowPinning=true"]).await;
    let web0 = b.pod(SIDECAR, "web-0").await;
    let store = b.store(&web0);
    // Legal, as the sidecar pins through its socket: a pin of a lease that does not exist yet
    // creates it with the pin (the pod may write the spec's pins), and unpinning removes it.
    store.pin_leadership("web", "machine-0").await.unwrap();
    assert!(b.lease("web").await.spec.pins.contains_key("machine-0"));
    store.unpin_leadership("web", "machine-0").await.unwrap();
    store.pin_leadership("web", "machine-1").await.unwrap();

    let only = "spec write refused: a pod-bound token changes only spec.pins, and pod web-0 changed";
    b.refused_spec(
        &web0,
        "web",
        |o| {
            o.spec.revocation = Some(Revocation {
                unit: "web-1".into(),
                term: 1,
                requested_at: None,
            });
        },
        &format!("{only} spec.revocation"),
    )
    .await;
    b.refused_spec(
        &web0,
        "web",
        |o| {
            o.spec.handover = Some(HandoverRequest {
                from: "web-1".into(),
                term: 1,
                to: Some("web-0".into()),
                requested_at: None,
            });
        },
        &format!("{only} spec.handover"),
    )
    .await;
    b.refused_spec(
        &web0,
        "web",
        |o| o.spec.preferred_unit = Some("web-0".into()),
        &format!("{only} spec.preferredUnit"),
    )
    .await;
    b.refused_spec(
        &web0,
        "web",
        |o| {
            o.spec.policy = Some(LeasePolicy {
                min_duration_ms: None,
                max_duration_ms: None,
                lock_delay_ms: Some(60_000),
                health: None,
            });
        },
        &format!("{only} spec.policy"),
    )
    .await;
    b.refused_spec(
        &web0,
        "web",
        |o| {
            o.metadata
                .labels
                .get_or_insert_default()
                .insert("owner".into(), "web-0".into());
        },
        &format!("{only} metadata.labels"),
    )
    .await;
    b.refused_spec(
        &web0,
        "web",
        |o| o.metadata.finalizers = Some(vec!["leadership.dev/keep".into()]),
        &format!("{only} metadata.finalizers"),
    )
    .await;
    // Not on the operator's own lease: a pin would keep a dead replica's claim from running out.
    let own = "the operator's own lease is written only by the operator's replicas (pod web-0)";
    b.refused_create(&web0, OPERATOR_LEASE, pinned_spec(), own).await;
    b.admin
        .create(
            &PostParams::default(),
            &LeadershipLease::empty(&b.ns.name, OPERATOR_LEASE),
        )
        .await
        .unwrap();
    b.refused_spec(
        &web0,
        OPERATOR_LEASE,
        |o| {
            o.spec.pins = pinned_spec().pins;
        },
        own,
    )
    .await;
    // With the right to write pins, a pod may create a lease with pins, never with more.
    b.refused_create(
        &web0,
        "seeded",
        LeadershipLeaseSpec {
            preferred_unit: Some("web-0".into()),
            ..pinned_spec()
        },
        "create refused: a lease is created with an empty spec; pod web-0 may not pre-seed preferredUnit (",
    )
    .await;
}

/// Retries the dry run `probe` until the API server refuses it (403): the API server loads a new
/// policy a moment after it is created.
async fn until_refused<T: Debug, F: std::future::Future<Output = kube::Result<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match probe().await {
            Err(kube::Error::Api(status)) if status.code == 403 => return,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: still {other:?} after 60 s"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A dry-run patch: the policies judge it, nothing is stored.
fn dry_patch() -> PatchParams {
    PatchParams {
        dry_run: true,
        ..PatchParams::default()
    }
}

#[tokio::test]
async fn the_operator_changes_only_the_leader_labels_of_a_pod() {
    let b = Bench::new(&[]).await;
    units::pod_as(&b.ns, "web-0", None).await;
    let operator = b.unbound(&b.release.operator_account()).await;
    let pods: Api<Pod> = Api::namespaced(operator, &b.ns.name);
    let image = serde_json::json!({ "spec": { "containers": [{ "name": "app", "image": "evil:1" }] } });
    let (dry, image_patch) = (dry_patch(), Patch::Strategic(image.clone()));
    until_refused("the operator-pods policy", || {
        pods.patch("web-0", &dry, &image_patch)
    })
    .await;

    let rule = "the leadership operator changes only the labels leadership.dev/leader and leadership.dev/leader-of of a pod";
    let refused = |patch: serde_json::Value, expected: String| {
        let pods = pods.clone();
        async move {
            refusal(
                pods.patch("web-0", &PatchParams::default(), &Patch::Strategic(&patch))
                    .await,
                &expected,
            );
        }
    };
    let who = b.release.operator_user();
    refused(image.clone(), format!("{rule}: {who} changed spec of pod web-0")).await;
    refused(
        serde_json::json!({ "metadata": { "labels": { "app": "evil", "leadership.dev/leader": "true" } } }),
        format!("{rule}: {who} changed the labels app of pod web-0"),
    )
    .await;
    refused(
        serde_json::json!({ "metadata": { "annotations": { "leadership.dev/on-elected": "curl evil" } } }),
        format!("{rule}: {who} changed metadata.annotations"),
    )
    .await;
    refused(
        serde_json::json!({ "metadata": { "finalizers": ["leadership.dev/keep"] } }),
        format!("{rule}: {who} changed metadata.finalizers"),
    )
    .await;
    refused(
        serde_json::json!({ "spec": { "activeDeadlineSeconds": 1 } }),
        format!("{rule}: {who} changed spec"),
    )
    .await;
    let pod = b.ns.api::<Pod>().get("web-0").await.unwrap();
    assert_eq!(
        pod.spec.unwrap().containers[0].image.as_deref(),
        Some("app:1"),
        "the refused writes changed nothing"
    );
    assert!(pod.metadata.labels.unwrap_or_default().is_empty());

    // Legal: the leader labels, set and removed, as the operator writes them (a merge patch).
    let leads = serde_json::json!({ "metadata": { "labels": { "leadership.dev/leader": "true", "leadership.dev/leader-of": "web" } } });
    let written = pods
        .patch("web-0", &PatchParams::default(), &Patch::Merge(&leads))
        .await
        .expect("the operator sets the leader labels");
    assert_eq!(
        written.metadata.labels.unwrap()["leadership.dev/leader-of"],
        "web"
    );
    let steps_down = serde_json::json!({ "metadata": { "labels": { "leadership.dev/leader": null, "leadership.dev/leader-of": null } } });
    let written = pods
        .patch("web-0", &PatchParams::default(), &Patch::Merge(&steps_down))
        .await
        .expect("the operator removes the leader labels");
    assert!(written.metadata.labels.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn the_operator_changes_only_the_ca_bundle_of_its_webhook_configuration() {
    use k8s_openapi::{ByteString, api::admissionregistration::v1::MutatingWebhookConfiguration};

    let b = Bench::new(&[]).await;
    let operator = b.unbound(&b.release.operator_account()).await;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(operator);
    let name = format!("{}-injector", b.release.fullname());
    let current = configs
        .get(&name)
        .await
        .expect("the operator reads its configuration");
    let rewritten = |change: &dyn Fn(&mut MutatingWebhookConfiguration)| {
        let mut config = current.clone();
        change(&mut config);
        config
    };
    let every_operation = rewritten(&|c| {
        for webhook in c.webhooks.iter_mut().flatten() {
            for rule in webhook.rules.iter_mut().flatten() {
                rule.operations = Some(vec!["CREATE".into(), "UPDATE".into()]);
            }
        }
    });
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    until_refused("the operator-webhook policy", || {
        configs.replace(&name, &dry, &every_operation)
    })
    .await;

    let rule = "the leadership operator changes only the caBundle of its MutatingWebhookConfiguration";
    let who = b.release.operator_user();
    refusal(
        configs
            .replace(&name, &PostParams::default(), &every_operation)
            .await,
        &format!("{rule}: {who} changed webhooks[].rules of {name}"),
    );
    let every_namespace = rewritten(&|c| {
        for webhook in c.webhooks.iter_mut().flatten() {
            webhook.namespace_selector = Some(Default::default());
            webhook.match_conditions = None;
        }
    });
    refusal(
        configs
            .replace(&name, &PostParams::default(), &every_namespace)
            .await,
        &format!("{rule}: {who} changed webhooks[].matchConditions, webhooks[].namespaceSelector of {name}"),
    );
    let elsewhere = rewritten(&|c| {
        for webhook in c.webhooks.iter_mut().flatten() {
            webhook.client_config.service = None;
            webhook.client_config.url = Some("https://evil.example/inject".into());
            webhook.failure_policy = Some("Ignore".into());
        }
    });
    refusal(
        configs.replace(&name, &PostParams::default(), &elsewhere).await,
        &format!(
            "{rule}: {who} changed webhooks[].clientConfig.url, webhooks[].clientConfig.service, webhooks[].failurePolicy of {name}"
        ),
    );
    let relabelled = rewritten(&|c| {
        c.metadata
            .labels
            .get_or_insert_default()
            .insert("evil".into(), "yes".into());
    });
    refusal(
        configs.replace(&name, &PostParams::default(), &relabelled).await,
        &format!("{rule}: {who} changed metadata.labels of {name}"),
    );

    // Legal: the caBundle alone, as the keeper writes it.
    let bundle = ByteString(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec());
    let rebundled = rewritten(&|c| {
        for webhook in c.webhooks.iter_mut().flatten() {
            webhook.client_config.ca_bundle = Some(bundle.clone());
        }
    });
    let written = configs
        .replace(&name, &PostParams::default(), &rebundled)
        .await
        .expect("the operator writes the caBundle");
    let webhook = &written.webhooks.unwrap()[0];
    assert_eq!(webhook.client_config.ca_bundle.as_ref(), Some(&bundle));
    assert_eq!(webhook.rules, current.webhooks.as_ref().unwrap()[0].rules);
}
