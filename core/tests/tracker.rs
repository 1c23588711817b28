//! Tracker behaviour on a paused clock (SPEC T2-T8), over the in-memory store and over a store
//! that can be cut off, as a partitioned API server would be.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use leadership::{
    Claimer, Eligibility, Error, Grant, LeaseFeed, LeaseTracker, MemoryStore, Result, Ticket, Tracker,
    TrackerConfig, Transition, Watcher, tracker::timing::STAND_ASIDE, validate::DurationLimits,
};
use tokio::time::{Instant, sleep};

const D: Duration = Duration::from_secs(10);

/// A store whose claims fail with "unknown" while cut off, and whose reads and claims each take
/// `delay` to answer.
#[derive(Clone)]
struct Flaky {
    inner: MemoryStore,
    cut: Arc<AtomicBool>,
    delay: Duration,
}

impl Flaky {
    fn new(cut: bool) -> Self {
        Flaky {
            inner: store(),
            cut: Arc::new(AtomicBool::new(cut)),
            delay: Duration::ZERO,
        }
    }

    async fn check(&self) -> Result<()> {
        sleep(self.delay).await;
        if self.cut.load(Ordering::SeqCst) {
            Err(Error::unavailable("cut off"))
        } else {
            Ok(())
        }
    }
}

impl Claimer for Flaky {
    async fn claim_leadership(&self, application: &str, unit: &str, duration: Duration) -> Result<Grant> {
        self.check().await?;
        self.inner.claim_leadership(application, unit, duration).await
    }

    async fn release_leadership(&self, application: &str, unit: &str) -> Result<()> {
        self.check().await?;
        self.inner.release_leadership(application, unit).await
    }
}

impl Watcher for Flaky {
    async fn watch(&self, application: &str) -> Result<LeaseFeed> {
        sleep(self.delay).await;
        self.inner.watch(application).await
    }
}

fn store() -> MemoryStore {
    MemoryStore::new(DurationLimits::default())
}

#[tokio::test(start_paused = true)]
async fn t1_leader_always_has_at_least_d_more() {
    let tracker = LeaseTracker::start(store(), TrackerConfig::new("web", "web-0", D)).unwrap();
    assert!(tracker.wait_leader().wait().await);
    for _ in 0..40 {
        let status = tracker.status();
        let now = Instant::now();
        assert!(status.is_leader(now));
        assert!(
            status.guaranteed_for(now) >= D,
            "{:?}",
            status.guaranteed_for(now)
        );
        sleep(Duration::from_millis(700)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn t1_a_longer_lease_renews_less_often_and_leader_still_means_d_more() {
    let config = TrackerConfig::new("web", "web-0", D).with_lease_length(D * 3);
    let interval = config.timing.renewal_interval();
    assert_eq!(interval, Duration::from_secs(17), "L - d - 3 retries of 1 s");
    let tracker = LeaseTracker::start(store(), config).unwrap();
    let mut transitions = tracker.transitions();
    assert!(tracker.wait_leader().wait().await);
    let started = Instant::now();
    let mut renewals = 0;
    while started.elapsed() < Duration::from_secs(60) {
        let now = Instant::now();
        let status = tracker.status();
        assert!(status.is_leader(now));
        assert!(
            status.guaranteed_for(now) >= D,
            "{:?}",
            status.guaranteed_for(now)
        );
        while let Ok(transition) = transitions.try_recv() {
            renewals += usize::from(matches!(transition, Transition::Renewed { .. }));
        }
        sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(renewals, 3, "one renewal per {interval:?} in a minute");
}

#[test]
fn t1_a_lease_shorter_than_2d_is_refused() {
    let config = TrackerConfig::new("web", "web-0", D).with_lease_length(D);
    let err = LeaseTracker::start(store(), config).unwrap_err();
    assert!(err.to_string().contains("lease length"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn t2_claim_ticket_is_never_true_on_error() {
    let flaky = Flaky::new(true);
    let tracker = LeaseTracker::start(flaky, TrackerConfig::new("web", "web-0", D)).unwrap();
    sleep(Duration::from_secs(3)).await;
    assert!(!tracker.claim_leader().wait().await);
    assert!(!tracker.status().is_leader(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn t2_a_claim_ticket_taken_before_the_first_claim_waits_for_its_outcome() {
    // A slow first read and claim (500 ms each): the ticket is taken before the tracker knows
    // anything of the lease.
    let slow = Flaky {
        delay: Duration::from_millis(500),
        ..Flaky::new(false)
    };
    let tracker = LeaseTracker::start(slow.clone(), TrackerConfig::new("web", "web-0", D)).unwrap();
    let ticket = tracker.claim_leader();
    assert!(ticket.wait().await, "the lease was free: the first claim wins");
    assert!(tracker.status().is_leader(Instant::now()));

    // Held by another unit: false, once the first read shows it.
    let other = LeaseTracker::start(slow, TrackerConfig::new("web", "web-1", D)).unwrap();
    let started = Instant::now();
    assert!(!other.claim_leader().wait().await);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "answered only once the lease was read"
    );
}

#[tokio::test(start_paused = true)]
async fn t2_a_claim_ticket_waits_for_the_first_outcome_no_longer_than_d() {
    let tracker = LeaseTracker::start(Silent(store()), TrackerConfig::new("web", "web-0", D)).unwrap();
    let started = Instant::now();
    assert!(!tracker.claim_leader().wait().await, "never true without a claim");
    assert_eq!(started.elapsed(), D, "bounded by the claim duration");
}

#[tokio::test(start_paused = true)]
async fn t3_wait_leader_is_false_when_the_tracker_stops_first() {
    let memory = store();
    memory.claim_leadership("web", "web-9", D * 5).await.unwrap();
    let tracker = LeaseTracker::start(memory, TrackerConfig::new("web", "web-0", D)).unwrap();
    let leads = tracker.wait_leader();
    sleep(D).await;
    tracker.stop().await;
    assert!(!leads.wait().await);
}

#[tokio::test(start_paused = true)]
async fn t4_wait_minion_is_ready_at_once_for_a_minion() {
    let memory = store();
    memory.claim_leadership("web", "web-9", D * 5).await.unwrap();
    let tracker = LeaseTracker::start(memory, TrackerConfig::new("web", "web-0", D)).unwrap();
    sleep(Duration::from_millis(10)).await;
    let minion = tracker.wait_minion();
    tokio::time::timeout(Duration::from_millis(10), minion.ready())
        .await
        .expect("ready at once");
}

#[tokio::test(start_paused = true)]
async fn t5_tickets_answer_the_same_every_time() {
    let tracker = LeaseTracker::start(store(), TrackerConfig::new("web", "web-0", D)).unwrap();
    let ticket = tracker.wait_leader();
    ticket.ready().await;
    for _ in 0..3 {
        assert!(ticket.wait().await);
        assert_eq!(ticket.try_value(), Some(true));
    }
}

#[tokio::test(start_paused = true)]
async fn t7_unreachable_store_makes_the_leader_a_minion_when_its_guarantee_runs_out() {
    let flaky = Flaky::new(false);
    let tracker = LeaseTracker::start(flaky.clone(), TrackerConfig::new("web", "web-0", D)).unwrap();
    assert!(tracker.wait_leader().wait().await);
    let guarantee = tracker.status().guarantee.unwrap();
    flaky.cut.store(true, Ordering::SeqCst);
    let minion = tracker.wait_minion();
    minion.ready().await;
    let stepped_down = Instant::now();
    // Renewals kept failing: it stepped down exactly when "at least d more" stopped being true.
    assert!(stepped_down >= guarantee.leader_until());
    assert!(
        stepped_down < guarantee.leader_until() + Duration::from_secs(1),
        "{:?}",
        stepped_down
    );
    assert!(!tracker.status().is_leader(Instant::now()));
    // The network coming back does not make the old guarantee valid again.
    flaky.cut.store(false, Ordering::SeqCst);
    assert!(!tracker.status().is_leader(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn t7_leader_answer_is_computed_from_the_clock_even_before_the_tracker_runs() {
    let tracker = LeaseTracker::start(store(), TrackerConfig::new("web", "web-0", D)).unwrap();
    assert!(tracker.wait_leader().wait().await);
    let status = tracker.status();
    // As after SIGSTOP/SIGCONT: the clock jumped, and the answer follows the clock, not the task.
    let later = Instant::now() + D * 3;
    assert!(!status.is_leader(later));
    assert_eq!(status.guaranteed_for(later), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn release_hands_over_and_holds_off() {
    let memory = store();
    let first = LeaseTracker::start(memory.clone(), TrackerConfig::new("web", "web-0", D)).unwrap();
    assert!(first.wait_leader().wait().await);
    let second = LeaseTracker::start(memory.clone(), TrackerConfig::new("web", "web-1", D)).unwrap();
    sleep(Duration::from_millis(100)).await;
    assert!(first.release().await.unwrap());
    assert!(second.wait_leader().wait().await);
    assert!(!first.release().await.unwrap(), "nothing to release as a minion");
    second.stop().await;
    // web-1 released on stop; web-0 took the lease since another unit had taken it after its
    // release.
    assert!(first.wait_leader().wait().await);
}

#[tokio::test(start_paused = true)]
async fn a_unit_that_said_it_should_not_lead_leaves_a_free_lease_to_the_others_and_takes_it_if_nobody_does() {
    let memory = store();
    memory
        .declare_eligibility("web", "web-0", Some("warming up"))
        .await
        .unwrap();
    let standing = memory.declared_ineligible("web", "web-0").await.unwrap();
    assert_eq!(standing.as_deref(), Some("warming up"), "the store keeps it");
    let warming = LeaseTracker::start(memory.clone(), TrackerConfig::new("web", "web-0", D)).unwrap();
    sleep(Duration::from_millis(100)).await;
    let ready = LeaseTracker::start(memory.clone(), TrackerConfig::new("web", "web-1", D)).unwrap();
    let took = tokio::time::timeout(D, ready.wait_leader().wait()).await;
    assert_eq!(took, Ok(true), "the eligible unit took the free lease");
    assert!(!warming.status().is_leader(Instant::now()), "it stood aside");
    // Alone at the free lease, it stands aside once more, then takes it: a bad leader beats none.
    let freed = Instant::now();
    ready.stop().await;
    assert!(warming.wait_leader().wait().await);
    assert!(
        Instant::now() >= freed + STAND_ASIDE,
        "it gave the others their chance first"
    );
    // Eligible again: it is no longer asked to stand aside.
    memory.declare_eligibility("web", "web-0", None).await.unwrap();
    assert_eq!(memory.declared_ineligible("web", "web-0").await.unwrap(), None);
    let view = memory.watch("web").await.unwrap().current();
    assert!(view.stand_aside.is_empty(), "{view:?}");
}

#[tokio::test(start_paused = true)]
async fn release_alone_holds_off_for_a_lease_length() {
    let tracker = LeaseTracker::start(store(), TrackerConfig::new("web", "web-0", D)).unwrap();
    assert!(tracker.wait_leader().wait().await);
    let released = Instant::now();
    assert!(tracker.release().await.unwrap());
    assert!(tracker.wait_leader().wait().await);
    assert!(
        Instant::now() >= released + D * 2,
        "claimed again only after a full lease length"
    );
}

#[tokio::test(start_paused = true)]
async fn v2_a_holder_revoked_while_it_could_not_renew_releases_when_it_notices() {
    let flaky = Flaky::new(false);
    let tracker = LeaseTracker::start(flaky.clone(), TrackerConfig::new("web", "web-0", D)).unwrap();
    assert!(tracker.wait_leader().wait().await);
    flaky.cut.store(true, Ordering::SeqCst);
    tracker.wait_minion().ready().await;
    // Its guarantee ran out but its 2d lease has not: the store still names it.
    use leadership::{Reader, Revoker};
    assert_eq!(
        flaky
            .inner
            .leaders()
            .await
            .unwrap()
            .get("web")
            .map(String::as_str),
        Some("web-0")
    );
    flaky.cut.store(false, Ordering::SeqCst);
    flaky.inner.revoke_leadership("web", "web-0").await.unwrap();
    let mut feed = flaky.inner.watch("web").await.unwrap();
    let released = tokio::time::timeout(D / 2, feed.wait_until(|view, _| view.holder.is_none())).await;
    assert!(
        released.is_ok(),
        "released at once, long before the lease ran out"
    );
    assert!(!tracker.status().is_leader(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn transitions_come_in_order_and_a_lost_guarantee_ends_when_it_ran_out() {
    let flaky = Flaky::new(false);
    let tracker = LeaseTracker::start(flaky.clone(), TrackerConfig::new("web", "web-0", D)).unwrap();
    let mut transitions = tracker.transitions();
    let Transition::Elected { term, guarantee, at } = transitions.recv().await.unwrap() else {
        panic!("the first transition is an election");
    };
    let Transition::Renewed {
        term: renewed_term,
        guarantee: mut last,
    } = transitions.recv().await.unwrap()
    else {
        panic!("then a renewal");
    };
    assert_eq!(renewed_term, term);
    assert!(at >= guarantee.claimed_at, "published after the claim was sent");
    assert!(last.leader_until() > guarantee.leader_until());
    flaky.cut.store(true, Ordering::SeqCst);
    let (deposed_term, at) = loop {
        match transitions.recv().await.unwrap() {
            Transition::Renewed { guarantee, .. } => last = guarantee,
            Transition::Deposed { term, at } => break (term, at),
            Transition::Elected { .. } => panic!("elected again without being deposed"),
        }
    };
    assert_eq!(deposed_term, term);
    // Renewals failed: it stopped reporting leader exactly when its last guarantee ran out.
    assert_eq!(at, last.leader_until());
}

#[tokio::test(start_paused = true)]
async fn a_release_is_published_as_deposed_at_that_instant() {
    let tracker = LeaseTracker::start(store(), TrackerConfig::new("web", "web-0", D)).unwrap();
    let mut transitions = tracker.transitions();
    assert!(tracker.wait_leader().wait().await);
    sleep(Duration::from_secs(1)).await;
    let released = Instant::now();
    assert!(tracker.release().await.unwrap());
    assert!(matches!(
        transitions.recv().await.unwrap(),
        Transition::Elected { .. }
    ));
    let Transition::Deposed { at, .. } = transitions.recv().await.unwrap() else {
        panic!("deposed after the release");
    };
    assert_eq!(at, released);
    // A later subscriber sees only what happens after it subscribed.
    assert!(tracker.transitions().try_recv().is_err());
}

/// A store whose first claim takes `first_claim` to answer; the rest answer at once.
#[derive(Clone)]
struct SlowFirstClaim {
    inner: MemoryStore,
    claims: Arc<std::sync::atomic::AtomicUsize>,
    first_claim: Duration,
}

impl Claimer for SlowFirstClaim {
    async fn claim_leadership(&self, application: &str, unit: &str, duration: Duration) -> Result<Grant> {
        if self.claims.fetch_add(1, Ordering::SeqCst) == 0 {
            sleep(self.first_claim).await;
        }
        self.inner.claim_leadership(application, unit, duration).await
    }

    async fn release_leadership(&self, application: &str, unit: &str) -> Result<()> {
        self.inner.release_leadership(application, unit).await
    }
}

impl Watcher for SlowFirstClaim {
    async fn watch(&self, application: &str) -> Result<LeaseFeed> {
        self.inner.watch(application).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_grant_that_comes_back_too_late_to_keep_is_renewed_before_leader_is_announced() {
    let config = TrackerConfig::new("web", "web-0", D);
    let timing = config.timing;
    // The first grant comes back with less than the renewal slack of its leadership left.
    let first_claim = timing.leads_for() - timing.renew_slack() + Duration::from_secs(1);
    let store = SlowFirstClaim {
        inner: store(),
        claims: Arc::default(),
        first_claim,
    };
    let started = Instant::now();
    let tracker = LeaseTracker::start(store.clone(), config).unwrap();
    let mut transitions = tracker.transitions();
    let Transition::Elected { guarantee, at, .. } = transitions.recv().await.unwrap() else {
        panic!("the first transition is an election");
    };
    // Announced on the renewal's grant, with the whole slack ahead: not on the late one.
    assert!(guarantee.claimed_at >= started + first_claim, "{guarantee:?}");
    assert!(
        guarantee.renew_at() > at,
        "announced with less than the slack left"
    );
    assert_eq!(store.claims.load(Ordering::SeqCst), 2);
    assert!(tracker.wait_leader().wait().await);
    // It keeps leading on its renewals, without a deposition in between.
    sleep(D * 3).await;
    while let Ok(transition) = transitions.try_recv() {
        assert!(matches!(transition, Transition::Renewed { .. }), "{transition:?}");
    }
}

/// A store whose watch never answers, as one whose lease cannot be listed.
#[derive(Clone)]
struct Silent(MemoryStore);

impl Claimer for Silent {
    async fn claim_leadership(&self, application: &str, unit: &str, duration: Duration) -> Result<Grant> {
        self.0.claim_leadership(application, unit, duration).await
    }

    async fn release_leadership(&self, application: &str, unit: &str) -> Result<()> {
        self.0.release_leadership(application, unit).await
    }
}

impl Watcher for Silent {
    async fn watch(&self, _application: &str) -> Result<LeaseFeed> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn stop_returns_even_while_the_watch_never_answers() {
    let tracker = LeaseTracker::start(Silent(store()), TrackerConfig::new("web", "web-0", D)).unwrap();
    sleep(Duration::from_secs(60)).await;
    assert!(!tracker.status().ready);
    tokio::time::timeout(Duration::from_secs(1), tracker.stop())
        .await
        .expect("stop does not wait for the watch");
    assert!(tracker.status().stopped);
}
