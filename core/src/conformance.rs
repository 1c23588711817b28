//! The store conformance suite: every SPEC rule that applies to a store, written once and run
//! against each store (in-memory here, Kubernetes in its own crate).
//!
//! A store's tests call [`conformance_suite!`](crate::conformance_suite) with a way to make a
//! [`Harness`]; the macro writes one test per rule, named after the rule.
//!
//! One short test per SPEC rule, all in this file, so that a store is checked against every rule
//! or none.

use std::{collections::BTreeMap, future::Future, time::Duration};

use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::{
    Checker, Claimer, Error, LeaseTracker, Pinner, Reader, Revoker, Ticket, Token, Tracker, TrackerConfig,
    Watcher,
};

/// What the suite needs of a store under test.
pub trait Harness: Send + Sync {
    /// The store type.
    type Store: Claimer + Checker + Pinner + Reader + Revoker + Watcher + Clone + 'static;
    /// A client of the store under test. Every call in one test reaches the same state, through a
    /// new observer where the store has such a thing; the state starts empty for each test.
    fn store(&self) -> Self::Store;
    /// Lets `period` pass on the clock the store uses.
    fn sleep(&self, period: Duration) -> impl Future<Output = ()> + Send;
    /// The store's margin over a claim of `length` before another observer may treat it as run
    /// out (zero for a store that shares the claimant's clock).
    fn margin(&self, length: Duration) -> Duration;
}

/// The claim duration used by the suite: the smallest the default limits accept.
pub const D: Duration = Duration::from_secs(2);
/// A generous bound for things that should happen "at once", on a noisy machine.
pub const PROMPTLY: Duration = Duration::from_secs(10);

const APP: &str = "web";

async fn run_out<H: Harness>(h: &H, length: Duration) {
    h.sleep(length + h.margin(length) + Duration::from_millis(200))
        .await;
}

fn denied<T: std::fmt::Debug>(result: crate::Result<T>) {
    assert!(
        matches!(result, Err(Error::ClaimDenied)),
        "expected ClaimDenied, got {result:?}"
    );
}

/// C1: a claim on a free lease is granted.
pub async fn c1_claim_when_free_is_granted<H: Harness>(h: &H) {
    let store = h.store();
    let grant = store
        .claim_leadership(APP, "web-0", D)
        .await
        .expect("claim a free lease");
    assert!(grant.term >= 1);
    assert_eq!(
        h.store().leaders().await.unwrap().get(APP).map(String::as_str),
        Some("web-0")
    );
}

/// C2: the holder's claim extends, and an extension never shortens the lease.
pub async fn c2_holder_claim_extends_and_never_shortens<H: Harness>(h: &H) {
    let (holder, other) = (h.store(), h.store());
    let first = holder.claim_leadership(APP, "web-0", D * 2).await.unwrap();
    let again = holder.claim_leadership(APP, "web-0", D).await.unwrap();
    assert_eq!(first.term, again.term, "an extension keeps the term");
    h.sleep(D + D / 2).await;
    denied(other.claim_leadership(APP, "web-1", D).await);
}

/// C3: a claim by another unit while the lease is held is denied, without a write.
pub async fn c3_claim_by_another_unit_is_denied<H: Harness>(h: &H) {
    let (holder, other) = (h.store(), h.store());
    let grant = holder.claim_leadership(APP, "web-0", D).await.unwrap();
    denied(other.claim_leadership(APP, "web-1", D).await);
    assert_eq!(
        holder.leadership_check(APP, "web-0").check().await.unwrap(),
        grant.term
    );
    assert_eq!(
        h.store().leaders().await.unwrap().get(APP).map(String::as_str),
        Some("web-0")
    );
}

/// C4: after a successful claim the unit leads for at least d from the moment of the call.
pub async fn c4_guarantee_runs_from_the_call<H: Harness>(h: &H) {
    let (holder, other) = (h.store(), h.store());
    let called = Instant::now();
    holder.claim_leadership(APP, "web-0", D).await.unwrap();
    let token = holder.leadership_check(APP, "web-0");
    let mut attempts = 0;
    while called.elapsed() + Duration::from_millis(300) < D {
        let started = Instant::now();
        let claim = other.claim_leadership(APP, "web-1", D).await;
        let check = token.check().await;
        if started.duration_since(called) < D {
            denied(claim);
            if Instant::now().duration_since(called) < D {
                check.expect("the holder's token holds within its guarantee");
            }
        }
        attempts += 1;
        h.sleep(D / 8).await;
    }
    assert!(attempts >= 2, "the guarantee was probed {attempts} times");
}

/// C5: of concurrent claims for one application, exactly one wins; the rest are denied.
pub async fn c5_concurrent_claims_have_one_winner<H: Harness>(h: &H) {
    let claims = (0..6).map(|i| {
        let store = h.store();
        async move { store.claim_leadership(APP, &format!("web-{i}"), D * 4).await }
    });
    let results = futures_join_all(claims).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(Error::ClaimDenied))),
        "{results:?}"
    );
}

async fn futures_join_all<F: Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("claim task"));
    }
    out
}

/// C6: blocking until released returns at once with no holder, on release, and on expiry, and
/// reports cancellation.
pub async fn c6_block_until_released<H: Harness>(h: &H) {
    let store = h.store();
    let never = CancellationToken::new();
    timeout(PROMPTLY, store.block_until_leadership_released(APP, &never))
        .await
        .expect("returns at once with no holder")
        .unwrap();

    store.claim_leadership(APP, "web-0", D * 4).await.unwrap();
    let waiter = h.store();
    let blocked = tokio::spawn(async move {
        let never = CancellationToken::new();
        waiter.block_until_leadership_released(APP, &never).await
    });
    h.sleep(D / 2).await;
    assert!(!blocked.is_finished(), "still held: must keep waiting");
    store.release_leadership(APP, "web-0").await.unwrap();
    timeout(PROMPTLY, blocked)
        .await
        .expect("woken by the release")
        .unwrap()
        .unwrap();

    store.claim_leadership(APP, "web-0", D).await.unwrap();
    let waiter = h.store();
    let cancel = CancellationToken::new();
    let blocked = {
        let cancel = cancel.clone();
        tokio::spawn(async move { waiter.block_until_leadership_released(APP, &cancel).await })
    };
    h.sleep(D / 4).await;
    cancel.cancel();
    let cancelled = timeout(PROMPTLY, blocked)
        .await
        .expect("woken by cancel")
        .unwrap();
    assert!(matches!(cancelled, Err(Error::BlockCancelled)), "{cancelled:?}");

    let waiter = h.store();
    let expired = tokio::spawn(async move {
        let never = CancellationToken::new();
        waiter.block_until_leadership_released(APP, &never).await
    });
    timeout(D * 2 + PROMPTLY, expired)
        .await
        .expect("woken when the claim runs out")
        .unwrap()
        .unwrap();
}

fn field<T: std::fmt::Debug>(result: crate::Result<T>) -> &'static str {
    match result {
        Err(Error::Invalid { field, .. }) => field,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

/// C7 and E6: out-of-range durations and bad names are refused, naming the field, and change
/// nothing.
pub async fn c7_e6_bad_input_is_refused_and_changes_nothing<H: Harness>(h: &H) {
    let store = h.store();
    for (application, unit, duration, refused) in [
        (APP, "web-0", Duration::from_millis(500), "duration"),
        (APP, "web-0", Duration::from_secs(3600), "duration"),
        ("Web_App", "web-0", D, "application"),
        (APP, "web/0", D, "unit"),
    ] {
        let claimed = store.claim_leadership(application, unit, duration).await;
        assert_eq!(field(claimed), refused, "{application}/{unit} for {duration:?}");
    }
    assert_eq!(field(store.pin_leadership(APP, "Not An Entity").await), "entity");
    assert_eq!(field(store.revoke_leadership(APP, "").await), "unit");
    assert!(store.leaders().await.unwrap().is_empty());
    assert!(store.pinned_leadership().await.unwrap().is_empty());
}

/// K1: a token checks the holder and its guarantee; K2: it carries the fencing term.
pub async fn k1_token_checks_holder_and_guarantee<H: Harness>(h: &H) {
    let store = h.store();
    let grant = store.claim_leadership(APP, "web-0", D).await.unwrap();
    let token = store.leadership_check(APP, "web-0");
    assert_eq!(token.check().await.unwrap(), grant.term);
    let other = store.leadership_check(APP, "web-1").check().await.unwrap_err();
    assert!(other.is_not_leader(), "{other}");
    assert_eq!(other.to_string(), "web-1 is not leader of web");
    store.release_leadership(APP, "web-0").await.unwrap();
    assert!(token.check().await.unwrap_err().is_not_leader());
}

/// K2: the term rises at every change of holder (also A -> none -> A) and never decreases.
pub async fn k2_term_rises_at_every_change_of_holder<H: Harness>(h: &H) {
    let store = h.store();
    let t1 = store.claim_leadership(APP, "web-0", D).await.unwrap().term;
    assert_eq!(store.claim_leadership(APP, "web-0", D).await.unwrap().term, t1);
    store.release_leadership(APP, "web-0").await.unwrap();
    let t2 = store.claim_leadership(APP, "web-1", D).await.unwrap().term;
    assert!(t2 > t1);
    store.release_leadership(APP, "web-1").await.unwrap();
    let t3 = store.claim_leadership(APP, "web-1", D).await.unwrap().term;
    assert!(t3 > t2, "A -> none -> A is a new term");
    let observer = h.store();
    observer.watch(APP).await.unwrap();
    run_out(h, D).await;
    let t4 = observer.claim_leadership(APP, "web-2", D).await.unwrap().term;
    assert!(t4 > t3, "takeover after expiry is a new term");
}

/// P1: a pinned lease does not expire: its holder stays leader in Leaders() and others are denied,
/// though the holder's own token follows its own renewals; expiry resumes after the last unpin.
pub async fn p1_pinned_lease_does_not_expire<H: Harness>(h: &H) {
    let (holder, other) = (h.store(), h.store());
    holder.claim_leadership(APP, "web-0", D).await.unwrap();
    holder.pin_leadership(APP, "machine-0").await.unwrap();
    run_out(h, D).await;
    denied(other.claim_leadership(APP, "web-1", D).await);
    assert_eq!(
        other.leaders().await.unwrap().get(APP).map(String::as_str),
        Some("web-0")
    );
    let own = holder.leadership_check(APP, "web-0").check().await.unwrap_err();
    assert!(
        own.is_not_leader(),
        "the holder's guarantee came from its own claims only: {own}"
    );

    holder.unpin_leadership(APP, "machine-0").await.unwrap();
    let observer = h.store();
    observer.watch(APP).await.unwrap();
    let waited = Instant::now();
    let claimed = loop {
        match observer.claim_leadership(APP, "web-1", D).await {
            Ok(grant) => break grant,
            Err(Error::ClaimDenied) if waited.elapsed() < D * 2 + PROMPTLY => h.sleep(D / 4).await,
            other => panic!("expiry did not resume after the last unpin: {other:?}"),
        }
    };
    assert!(claimed.term >= 2);
}

/// P1: pinning a lease with no holder applies to the next claimant.
pub async fn p1_pin_without_holder_applies_to_next_claimant<H: Harness>(h: &H) {
    let store = h.store();
    store.pin_leadership(APP, "machine-0").await.unwrap();
    store.claim_leadership(APP, "web-0", D).await.unwrap();
    run_out(h, D).await;
    denied(h.store().claim_leadership(APP, "web-1", D).await);
}

/// P2: pins are per entity and idempotent; unpinning an absent pin is ok.
pub async fn p2_pins_are_idempotent_per_entity<H: Harness>(h: &H) {
    let store = h.store();
    store.pin_leadership(APP, "machine-0").await.unwrap();
    store.pin_leadership(APP, "machine-0").await.unwrap();
    store.pin_leadership(APP, "machine-1").await.unwrap();
    store.unpin_leadership(APP, "machine-0").await.unwrap();
    store.unpin_leadership(APP, "nobody").await.unwrap();
    let pins = store.pinned_leadership().await.unwrap();
    assert_eq!(pins.get(APP), Some(&vec!["machine-1".to_owned()]));
    store.unpin_leadership(APP, "machine-1").await.unwrap();
    assert!(store.pinned_leadership().await.unwrap().is_empty());
}

/// P3: pinned leadership maps applications to the entities that pin them.
pub async fn p3_pinned_leadership_lists_entities<H: Harness>(h: &H) {
    let store = h.store();
    store.pin_leadership("web", "machine-0").await.unwrap();
    store.pin_leadership("db", "machine-1").await.unwrap();
    store.pin_leadership("db", "machine-2").await.unwrap();
    let expected: BTreeMap<String, Vec<String>> = [
        (
            "db".to_owned(),
            vec!["machine-1".to_owned(), "machine-2".to_owned()],
        ),
        ("web".to_owned(), vec!["machine-0".to_owned()]),
    ]
    .into();
    assert_eq!(store.pinned_leadership().await.unwrap(), expected);
}

/// R1: leaders maps every application with a current holder, and only those.
pub async fn r1_leaders_lists_current_holders<H: Harness>(h: &H) {
    let store = h.store();
    store.claim_leadership("web", "web-0", D * 4).await.unwrap();
    store.claim_leadership("db", "db-1", D * 4).await.unwrap();
    store.claim_leadership("cache", "cache-0", D * 4).await.unwrap();
    store.release_leadership("cache", "cache-0").await.unwrap();
    let expected: BTreeMap<String, String> = [
        ("db".to_owned(), "db-1".to_owned()),
        ("web".to_owned(), "web-0".to_owned()),
    ]
    .into();
    assert_eq!(h.store().leaders().await.unwrap(), expected);
}

/// V1: revoking the holder is ok, revoking with no holder is ok, revoking a non-holder is
/// ClaimNotHeld.
pub async fn v1_revoke_names_the_holder<H: Harness>(h: &H) {
    let store = h.store();
    store
        .revoke_leadership(APP, "web-0")
        .await
        .expect("no holder: ok");
    store.claim_leadership(APP, "web-0", D).await.unwrap();
    let err = store.revoke_leadership(APP, "web-1").await.unwrap_err();
    assert!(matches!(err, Error::ClaimNotHeld), "{err}");
    assert_eq!(err.to_string(), "leadership lease not held");
    store
        .revoke_leadership(APP, "web-0")
        .await
        .expect("revoke the holder");
}

/// V2: a revoked holder may not renew; others wait until it steps down or its claim runs out.
pub async fn v2_revocation_is_safe<H: Harness>(h: &H) {
    let (holder, other) = (h.store(), h.store());
    holder.claim_leadership(APP, "web-0", D).await.unwrap();
    other.watch(APP).await.unwrap();
    holder.revoke_leadership(APP, "web-0").await.unwrap();
    denied(holder.claim_leadership(APP, "web-0", D).await);
    denied(other.claim_leadership(APP, "web-1", D).await);
    holder.release_leadership(APP, "web-0").await.unwrap();
    other
        .claim_leadership(APP, "web-1", D)
        .await
        .expect("free once the revoked holder stepped down");

    // A revoked holder that never steps down: others take over when its claim runs out.
    other.revoke_leadership(APP, "web-1").await.unwrap();
    let waited = Instant::now();
    loop {
        match holder.claim_leadership(APP, "web-0", D).await {
            Ok(_) => break,
            Err(Error::ClaimDenied) if waited.elapsed() < D * 2 + PROMPTLY => h.sleep(D / 4).await,
            other => panic!("a revoked claim must run out: {other:?}"),
        }
    }
    assert!(
        waited.elapsed() + Duration::from_millis(50) >= D,
        "taken over before the claim ran out"
    );
}

/// V3: a revocation wakes blocked callers once the revoked holder steps down.
pub async fn v3_revocation_wakes_blocked_callers<H: Harness>(h: &H) {
    let config = TrackerConfig::new(APP, "web-0", D);
    let tracker = LeaseTracker::start(h.store(), config).unwrap();
    assert!(timeout(PROMPTLY, tracker.wait_leader().wait()).await.unwrap());
    let waiter = h.store();
    let blocked = tokio::spawn(async move {
        let never = CancellationToken::new();
        waiter.block_until_leadership_released(APP, &never).await
    });
    h.store().revoke_leadership(APP, "web-0").await.unwrap();
    assert!(
        timeout(PROMPTLY, tracker.wait_minion().wait()).await.unwrap(),
        "the holder learns at once"
    );
    timeout(PROMPTLY, blocked)
        .await
        .expect("blocked callers wake")
        .unwrap()
        .unwrap();
    tracker.stop().await;
}

/// V2 and K1: a revoked holder's token fails with `NotLeader` at once through the store that
/// revoked it, and as soon as the holder's own store learns of a revocation written elsewhere,
/// though its claim has not run out.
pub async fn v2_a_revoked_holders_token_fails_at_once<H: Harness>(h: &H) {
    let holder = h.store();
    let grant = holder.claim_leadership(APP, "web-0", D * 4).await.unwrap();
    let token = holder.leadership_check(APP, "web-0");
    assert_eq!(token.check().await.unwrap(), grant.term);
    holder.revoke_leadership(APP, "web-0").await.unwrap();
    let refused = token.check().await.unwrap_err();
    assert!(
        refused.is_not_leader(),
        "revoked through its own store: {refused}"
    );
    holder.release_leadership(APP, "web-0").await.unwrap();

    // Revoked by another client (an operator, a person with the CLI).
    let grant = holder.claim_leadership(APP, "web-0", D * 4).await.unwrap();
    assert_eq!(token.check().await.unwrap(), grant.term);
    h.store().revoke_leadership(APP, "web-0").await.unwrap();
    let waited = Instant::now();
    loop {
        match token.check().await {
            Err(err) if err.is_not_leader() => break,
            Ok(term) if waited.elapsed() < PROMPTLY => {
                assert_eq!(term, grant.term);
                h.sleep(Duration::from_millis(20)).await;
            }
            other => panic!("a revoked holder's token must fail once its store knows: {other:?}"),
        }
    }
    assert!(
        waited.elapsed() < D * 4,
        "it failed because of the revocation, not because the claim ran out"
    );
    denied(holder.claim_leadership(APP, "web-0", D).await);
}

/// C6 and V3: every caller blocked when the holder lets go wakes, even when a standby takes the
/// lease straight away and no view without a holder is ever seen. Repeated, since the standby's
/// claim races the waiters.
pub async fn c6_v3_a_release_wakes_every_blocked_caller_though_a_standby_claims_at_once<H: Harness>(h: &H) {
    let trackers = [
        LeaseTracker::start(h.store(), TrackerConfig::new(APP, "web-0", D)).unwrap(),
        LeaseTracker::start(h.store(), TrackerConfig::new(APP, "web-1", D)).unwrap(),
    ];
    for round in 0..20 {
        let leading = leader_of(&trackers).await;
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let waiter = h.store();
                tokio::spawn(async move {
                    let never = CancellationToken::new();
                    waiter.block_until_leadership_released(APP, &never).await
                })
            })
            .collect();
        h.sleep(D / 4).await;
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "round {round}: held, so the callers must wait"
        );
        if round % 2 == 0 {
            assert!(trackers[leading].release().await.unwrap(), "round {round}");
        } else {
            let unit = trackers[leading].unit().to_owned();
            h.store().revoke_leadership(APP, &unit).await.unwrap();
        }
        for waiter in waiters {
            timeout(PROMPTLY, waiter)
                .await
                .unwrap_or_else(|_| panic!("round {round}: a blocked caller missed the release"))
                .unwrap()
                .unwrap();
        }
    }
    for tracker in &trackers {
        tracker.stop().await;
    }
}

/// Which of `trackers` leads, once one does and every other knows it is not leader.
async fn leader_of(trackers: &[LeaseTracker]) -> usize {
    let waited = Instant::now();
    loop {
        let now = Instant::now();
        let leading: Vec<usize> = (0..trackers.len())
            .filter(|&i| trackers[i].status().is_leader(now))
            .collect();
        if let [one] = leading[..] {
            return one;
        }
        assert!(waited.elapsed() < PROMPTLY, "no single leader: {leading:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// P1, P4 and T8: a pinned holder that stops gracefully keeps its claim, so the pin carries
/// leadership across a restart of the unit (what pins are for during upgrades): it does not
/// expire, others are denied, and the unit leads again in the same term when it comes back. An
/// explicit release still gives the lease up.
pub async fn p1_t8_a_pinned_holder_keeps_its_lease_across_a_restart<H: Harness>(h: &H) {
    let first = LeaseTracker::start(h.store(), TrackerConfig::new(APP, "web-0", D)).unwrap();
    assert!(timeout(PROMPTLY, first.wait_leader().wait()).await.unwrap());
    let term = first.status().term;
    h.store().pin_leadership(APP, "upgrade").await.unwrap();
    let mut seen = first.subscribe();
    timeout(PROMPTLY, seen.wait_for(|s| s.lease.pinned))
        .await
        .expect("the holder sees the pin")
        .unwrap();
    first.stop().await;
    assert!(
        !first.status().is_leader(Instant::now()),
        "a stopped tracker never leads"
    );

    run_out(h, D * 2).await;
    assert_eq!(
        h.store().leaders().await.unwrap().get(APP).map(String::as_str),
        Some("web-0"),
        "the pinned claim outlives its holder's process"
    );
    denied(h.store().claim_leadership(APP, "web-1", D).await);

    let again = LeaseTracker::start(h.store(), TrackerConfig::new(APP, "web-0", D)).unwrap();
    assert!(timeout(PROMPTLY, again.wait_leader().wait()).await.unwrap());
    assert_eq!(again.status().term, term, "the unit resumes its own claim");
    assert!(again.release().await.unwrap(), "an explicit release gives it up");
    assert!(h.store().leaders().await.unwrap().is_empty());
    again.stop().await;
    h.store().unpin_leadership(APP, "upgrade").await.unwrap();
}

/// T1/T2: a tracker leads, renews before its guarantee runs out, and its tickets say so.
pub async fn t1_tracker_leads_and_renews<H: Harness>(h: &H) {
    let tracker = LeaseTracker::start(h.store(), TrackerConfig::new(APP, "web-0", D)).unwrap();
    assert!(timeout(PROMPTLY, tracker.wait_leader().wait()).await.unwrap());
    let term = tracker.status().term;
    h.sleep(D * 3).await;
    assert!(
        tracker.claim_leader().wait().await,
        "still leader after several renewals"
    );
    assert_eq!(tracker.status().term, term, "renewals keep the term");
    assert!(tracker.status().guaranteed_for(Instant::now()) >= D);
    tracker.stop().await;
}

/// T3/T6/T8: a minion takes over as soon as the leader shuts down, with no polling period.
pub async fn t6_minion_takes_over_on_release<H: Harness>(h: &H) {
    let first = LeaseTracker::start(h.store(), TrackerConfig::new(APP, "web-0", D * 5)).unwrap();
    assert!(timeout(PROMPTLY, first.wait_leader().wait()).await.unwrap());
    let second = LeaseTracker::start(h.store(), TrackerConfig::new(APP, "web-1", D * 5)).unwrap();
    let second_leads = second.wait_leader();
    h.sleep(D / 2).await;
    assert!(
        !second.claim_leader().wait().await,
        "a minion's claim ticket is false"
    );
    assert_eq!(second_leads.try_value(), None);
    let term = first.status().term;
    let minion = first.wait_minion();
    first.stop().await;
    assert!(minion.wait().await, "shutdown makes a minion");
    // Far sooner than the 20 s lease: the release, not expiry, hands over.
    assert!(
        timeout(D * 2, second_leads.wait())
            .await
            .expect("taken over at once")
            .then_some(())
            .is_some()
    );
    assert!(second.status().term > term);
    second.stop().await;
}

/// Writes one test per rule, each with a fresh harness from the given async block.
#[macro_export]
macro_rules! conformance_suite {
    ($(#[$attr:meta])* async fn harness() -> $harness:ty $body:block) => {
        $crate::conformance_suite!(@each [$(#[$attr])*] $harness, $body;
            c1_claim_when_free_is_granted,
            c2_holder_claim_extends_and_never_shortens,
            c3_claim_by_another_unit_is_denied,
            c4_guarantee_runs_from_the_call,
            c5_concurrent_claims_have_one_winner,
            c6_block_until_released,
            c7_e6_bad_input_is_refused_and_changes_nothing,
            k1_token_checks_holder_and_guarantee,
            k2_term_rises_at_every_change_of_holder,
            p1_pinned_lease_does_not_expire,
            p1_pin_without_holder_applies_to_next_claimant,
            p2_pins_are_idempotent_per_entity,
            p3_pinned_leadership_lists_entities,
            r1_leaders_lists_current_holders,
            v1_revoke_names_the_holder,
            v2_revocation_is_safe,
            v3_revocation_wakes_blocked_callers,
            v2_a_revoked_holders_token_fails_at_once,
            c6_v3_a_release_wakes_every_blocked_caller_though_a_standby_claims_at_once,
            p1_t8_a_pinned_holder_keeps_its_lease_across_a_restart,
            t1_tracker_leads_and_renews,
            t6_minion_takes_over_on_release,
        );
    };
    (@each $attrs:tt $harness:ty, $body:block; $rule:ident, $($rest:ident,)*) => {
        $crate::conformance_suite!(@one $attrs $harness, $body, $rule);
        $crate::conformance_suite!(@each $attrs $harness, $body; $($rest,)*);
    };
    (@each $attrs:tt $harness:ty, $body:block;) => {};
    (@one [$(#[$attr:meta])*] $harness:ty, $body:block, $rule:ident) => {
        $(#[$attr])*
        async fn $rule() {
            let harness: $harness = $body;
            $crate::conformance::$rule(&harness).await;
        }
    };
}
