//! A model of the lease protocol, explored exhaustively with [stateright], that drives the core
//! crate's own pure functions rather than a re-implementation of them:
//!
//! - the lease rules ([`Lease::claim`], [`Lease::release`], [`Lease::revoke`], [`Lease::expire`],
//!   [`Lease::pin`], [`Lease::unpin`]);
//! - expiry by observation ([`Observation`], [`ExpiryPolicy`]) and the view built from it
//!   ([`LeaseView::of`]);
//! - the tracker's timing ([`Guarantee`], [`TrackerStatus::is_leader`]) and decisions
//!   ([`may_claim`], [`judge_as_leader`]).
//!
//! What is modelled: units that claim, renew at d/2, time out a renewal at the end of their
//! guarantee, release, crash and restart empty; an operator that expires claims it has watched
//! run out, and restarts with no memory; an API server holding one object, linearizable, with a
//! resourceVersion compare-and-swap on every write; watch events that arrive late or not at all
//! (a unit or the operator learns the newest object whenever the model lets it, intermediate
//! events may be missed, and a relist after a lost watch is the same step); writes that reach the
//! server the moment they are sent (the latest instant after the sender read its clock: the worst
//! case for its guarantee) and replies that are delayed or lost, after which the sender gives up
//! (a client timeout); a paused unit (any process may go without a step for as long as the
//! model likes); revocations, handovers, pins and unpins by an administrator. Each process has its own
//! clock: an arbitrary offset and a rate within the drift bound of real time.
//!
//! Real time advances in ticks; a process reads its clock as `offset + rate × real time`. The
//! properties are checked in every reachable state up to a horizon (see [`Config`]).

use std::{fmt, sync::OnceLock, time::Duration};

use leadership::{
    LeaseView, TrackerStatus,
    expiry::{ExpiryPolicy, Observation},
    lease::Lease,
    tracker::{Guarantee, LeaderVerdict, judge_as_leader, may_claim},
};
use stateright::{Model, Property};
use tokio::time::Instant;

/// The instant that real time zero maps to (any fixed instant will do).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The protocol as the product runs it, or a deliberately broken variant that the checker must
/// catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The product's rules.
    Product,
    /// The API server applies writes without comparing resourceVersions.
    NoCompareAndSwap,
    /// Expiry is judged from the holder's own timestamp of its last write (on another clock),
    /// instead of by watching the claim unchanged for its length on the observer's clock.
    TrustTheHoldersTimestamp,
    /// A unit reports "leader" for the whole lease (2d) instead of d, and observers add no
    /// margin for clock drift.
    LeaderForTheWholeLease,
}

/// How many faults of each kind a run may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Budget {
    /// Writes or replies lost.
    pub losses: u8,
    /// Unit crashes (each restarts at once with no memory).
    pub crashes: u8,
    /// Operator restarts (it forgets what it observed).
    pub operator_restarts: u8,
    /// Revocations by an administrator.
    pub revocations: u8,
    /// Pins (each may later be removed).
    pub pins: u8,
    /// Voluntary releases by a leader.
    pub releases: u8,
    /// Handovers asked for by an administrator.
    pub handovers: u8,
}

impl Budget {
    /// One of every fault.
    pub fn every_fault_once() -> Budget {
        Budget {
            losses: 1,
            crashes: 1,
            operator_restarts: 1,
            revocations: 1,
            pins: 1,
            releases: 1,
            handovers: 1,
        }
    }
}

/// What to explore.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many units (2 or 3).
    pub units: usize,
    /// How many ticks of real time to explore.
    pub horizon: u32,
    /// The length of a tick of real time.
    pub tick: Duration,
    /// The claim duration d (each claim asks for 2d).
    pub claim_duration: Duration,
    /// The clock-rate bound: every process's clock runs at 1 ± drift of real time.
    pub drift: f64,
    /// The clock offsets processes may have (any of them, per process).
    pub offsets: Vec<Duration>,
    /// Whether the operator runs (units also judge expiry themselves).
    pub operator: bool,
    /// The faults allowed.
    pub budget: Budget,
    /// No time passes while a message is in flight or a decision is due, and no faults: the
    /// fairness under which liveness is checked.
    pub prompt: bool,
    /// The rules to check.
    pub variant: Variant,
}

impl Config {
    /// Two units, d of two ticks of 500 ms (leases of four), ±5% clock rates, no offsets and no
    /// operator, over `horizon` ticks, with the faults in `budget`.
    pub fn new(horizon: u32, budget: Budget, variant: Variant) -> Config {
        Config {
            units: 2,
            horizon,
            tick: Duration::from_millis(500),
            claim_duration: Duration::from_secs(1),
            drift: 0.05,
            offsets: vec![Duration::ZERO],
            operator: false,
            budget,
            prompt: false,
            variant,
        }
    }

    /// The fair, fault-free configuration for liveness (one voluntary release).
    pub fn liveness(horizon: u32) -> Config {
        Config {
            prompt: true,
            ..Config::new(
                horizon,
                Budget {
                    releases: 1,
                    ..Budget::default()
                },
                Variant::Product,
            )
        }
    }

    /// The expiry policy observers use: the drift bound, at least one tick (none in the variant
    /// without margin).
    pub fn policy(&self) -> ExpiryPolicy {
        match self.variant {
            Variant::LeaderForTheWholeLease => ExpiryPolicy::same_clock(),
            _ => ExpiryPolicy {
                max_drift: self.drift,
                min_margin: self.tick,
            },
        }
    }

    fn lease_length(&self) -> Duration {
        self.claim_duration * 2
    }
}

/// One process's clock: an offset and a rate (in thousandths of real time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Clock {
    /// Added to every reading.
    pub offset: Duration,
    /// Local milliseconds per thousand real milliseconds.
    pub rate_permille: u32,
}

impl Clock {
    fn read(&self, config: &Config, now: u32) -> Instant {
        let real = config.tick * now;
        epoch() + self.offset + real * self.rate_permille / 1000
    }
}

/// The object in the API server, and the holder's own time of the last write (read only by
/// the variant that trusts it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Object {
    /// The lease.
    pub lease: Lease,
    /// The resourceVersion.
    pub version: u64,
    /// The writer's clock reading when the current claim was written.
    pub stamp: Option<Instant>,
}

/// One unit's process: its tracker and its store's view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unit {
    /// Its clock.
    pub clock: Clock,
    /// The newest object it has learned of.
    pub view: Option<Object>,
    /// Its expiry observation.
    pub seen: Observation,
    /// The guarantee of its last successful claim, while it leads.
    pub guarantee: Option<Guarantee>,
    /// The term it leads in.
    pub term: u64,
    /// The request it waits for, if any.
    pub waiting: Option<u8>,
    /// Rises when it abandons a request (giving up, or a crash), so that a late reply to an
    /// abandoned request is ignored.
    pub epoch: u8,
    /// After a voluntary release it claims again only once another grant happened.
    pub released_term: Option<u64>,
}

/// The operator's process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operator {
    /// Its clock.
    pub clock: Clock,
    /// The newest object it has learned of.
    pub view: Option<Object>,
    /// Its expiry observation.
    pub seen: Observation,
}

/// What a write does at the server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WriteKind {
    /// A unit's first claim, sent at `claimed_at` on its clock.
    Claim {
        /// When it was sent.
        claimed_at: Instant,
    },
    /// A leader's renewal, sent at `claimed_at` on its clock.
    Renew {
        /// When it was sent.
        claimed_at: Instant,
    },
    /// A leader gives the lease up (read-modify-write at the server).
    Release,
    /// The operator clears a claim it saw run out.
    Expire,
}

/// A write, as sent to the API server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Write {
    /// The unit that sent it (`None`: the operator).
    pub from: Option<usize>,
    /// The request number, for the reply.
    pub request: u8,
    /// What it does.
    pub kind: WriteKind,
    /// The resourceVersion it was computed from.
    pub expected: u64,
    /// The lease it writes.
    pub next: Lease,
    /// The writer's clock reading when it was sent.
    pub stamp: Instant,
}

/// A reply on its way to a unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reply {
    /// The unit.
    pub to: usize,
    /// The request it answers.
    pub request: u8,
    /// The write it answers.
    pub kind: WriteKind,
    /// Whether the write was applied.
    pub applied: bool,
    /// The object after the write (or the current one, after a conflict: the store re-reads).
    pub object: Object,
}

/// One reachable state of the whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Real time, in ticks.
    pub now: u32,
    /// The API server's object.
    pub server: Object,
    /// The units.
    pub units: Vec<Unit>,
    /// The operator.
    pub operator: Operator,
    /// Replies in flight.
    pub replies: Vec<Reply>,
    /// Faults still allowed.
    pub budget: Budget,
    /// Set when a write lowered the term, or granted to a new holder without raising it.
    pub term_broken: bool,
    /// Set when a pinned claim was handed to another unit while its holder still held it.
    pub pin_broken: bool,
    /// Set when a unit led after a voluntary release.
    pub led_after_release: bool,
    /// Whether a voluntary release happened.
    pub released: bool,
}

/// One step of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Real time advances one tick.
    Tick,
    /// A unit learns the newest object (a watch event, or a relist after a lost watch).
    Watch(usize),
    /// A minion claims: its view says the lease is free (or its own).
    Claim(usize),
    /// A leader renews, d/2 or more after its last claim.
    Renew(usize),
    /// A unit stops waiting for a reply: a leader's renewal outlived its guarantee (it is a
    /// minion now), or the reply was lost (a client timeout).
    GiveUp(usize),
    /// A leader steps down and releases.
    Release(usize),
    /// The reply at this index reaches its unit.
    Answer(usize),
    /// The reply at this index is lost.
    LoseReply(usize),
    /// A unit's process dies and restarts with no memory.
    Crash(usize),
    /// The operator learns the newest object.
    OperatorWatch,
    /// The operator clears a claim it saw run out.
    OperatorExpire,
    /// The operator restarts with no memory.
    OperatorRestart,
    /// An administrator revokes the holder.
    Revoke,
    /// An administrator pins the lease.
    Pin,
    /// An administrator unpins it.
    Unpin,
    /// An administrator asks the holder to hand over to this unit (any other unit if `None`).
    HandOver(Option<usize>),
}

/// The model: a configuration.
#[derive(Clone, Debug)]
pub struct LeaseModel {
    /// What to explore.
    pub config: Config,
}

/// A unit's name.
pub fn unit_name(i: usize) -> String {
    format!("u{i}")
}

impl LeaseModel {
    /// The model of `config`.
    pub fn new(config: Config) -> LeaseModel {
        LeaseModel { config }
    }

    fn unit_now(&self, state: &State, i: usize) -> Instant {
        state.units[i].clock.read(&self.config, state.now)
    }

    fn operator_now(&self, state: &State) -> Instant {
        state.operator.clock.read(&self.config, state.now)
    }

    /// Whether unit `i` reports "leader" in `state`: the product's own answer.
    pub fn is_leader(&self, state: &State, i: usize) -> bool {
        let unit = &state.units[i];
        let status = TrackerStatus {
            guarantee: unit.guarantee.map(|g| match self.config.variant {
                Variant::LeaderForTheWholeLease => Guarantee {
                    claim_duration: g.claim_duration * 2,
                    ..g
                },
                _ => g,
            }),
            ..TrackerStatus::default()
        };
        status.is_leader(self.unit_now(state, i))
    }

    /// The units that report "leader" in `state`.
    pub fn leaders(&self, state: &State) -> Vec<usize> {
        (0..state.units.len())
            .filter(|&i| self.is_leader(state, i))
            .collect()
    }

    /// What an observer with `seen` knows of `object` at `now`: the product's view, or the
    /// variant that trusts the holder's timestamp.
    fn view_of(&self, object: &Object, seen: &Observation) -> LeaseView {
        let mut view = LeaseView::of(&object.lease, seen, &self.config.policy());
        if self.config.variant == Variant::TrustTheHoldersTimestamp {
            view.expires_at = match (&object.lease.holder, object.stamp) {
                (Some(claim), Some(stamp)) if !object.lease.is_pinned() => Some(stamp + claim.duration),
                _ => None,
            };
        }
        view
    }

    fn expired(&self, object: &Object, seen: &Observation, now: Instant) -> bool {
        self.view_of(object, seen).expires_at.is_some_and(|at| now >= at)
    }

    /// The write unit `i` would send to claim now, if its tracker would claim.
    fn claim_write(&self, state: &State, i: usize) -> Option<Write> {
        let unit = &state.units[i];
        let now = self.unit_now(state, i);
        if unit.waiting.is_some() || self.is_leader(state, i) {
            return None;
        }
        let object = unit.view.as_ref()?;
        if unit.released_term.is_some_and(|t| object.lease.term <= t) {
            return None;
        }
        let name = unit_name(i);
        if !may_claim(&self.view_of(object, &unit.seen), &name, now) {
            return None;
        }
        let expired = self.expired(object, &unit.seen, now);
        let (next, _) = object
            .lease
            .claim(&name, self.config.lease_length(), expired)
            .ok()?;
        Some(Write {
            from: Some(i),
            request: unit.epoch,
            kind: WriteKind::Claim { claimed_at: now },
            expected: object.version,
            next,
            stamp: now,
        })
    }

    /// The renewal unit `i` would send now, if it is due.
    fn renew_write(&self, state: &State, i: usize) -> Option<Write> {
        let unit = &state.units[i];
        let now = self.unit_now(state, i);
        let guarantee = unit.guarantee?;
        if unit.waiting.is_some() || now < guarantee.renew_at() || now >= guarantee.leader_until() {
            return None;
        }
        let object = unit.view.as_ref()?;
        let (next, _) = object
            .lease
            .claim(&unit_name(i), self.config.lease_length(), false)
            .ok()?;
        Some(Write {
            from: Some(i),
            request: unit.epoch,
            kind: WriteKind::Renew { claimed_at: now },
            expected: object.version,
            next,
            stamp: now,
        })
    }

    fn expire_write(&self, state: &State) -> Option<Write> {
        let operator = &state.operator;
        let object = operator.view.as_ref()?;
        let now = self.operator_now(state);
        let next = object.lease.expire(self.expired(object, &operator.seen, now))?;
        Some(Write {
            from: None,
            request: 0,
            kind: WriteKind::Expire,
            expected: object.version,
            next,
            stamp: now,
        })
    }

    /// Whether a step is due that a prompt system takes before time passes.
    fn anything_due(&self, state: &State) -> bool {
        let stale = |view: &Option<Object>| view.as_ref().is_none_or(|o| o.version != state.server.version);
        !state.replies.is_empty()
            || state.units.iter().any(|u| stale(&u.view))
            || (self.config.operator && stale(&state.operator.view))
            || (0..state.units.len())
                .any(|i| self.claim_write(state, i).is_some() || self.renew_write(state, i).is_some())
            || (state.budget.releases > 0 && !self.leaders(state).is_empty())
            || (self.config.operator && self.expire_write(state).is_some())
    }

    /// A write reaches the server: a release is a read-modify-write there; any other write is
    /// applied only if its resourceVersion is still current (unless the variant skips the
    /// compare-and-swap), and a unit's write gets a reply.
    fn send(&self, state: &mut State, write: Write) {
        if write.kind == WriteKind::Release {
            let name = unit_name(write.from.unwrap_or_default());
            if let Ok(next) = state.server.lease.release(&name) {
                self.apply(state, next, None);
            }
            return;
        }
        let applied =
            self.config.variant == Variant::NoCompareAndSwap || write.expected == state.server.version;
        if applied {
            self.apply(state, write.next.clone(), Some(write.stamp));
        }
        if let Some(to) = write.from {
            state.replies.push(Reply {
                to,
                request: write.request,
                kind: write.kind,
                applied,
                object: state.server.clone(),
            });
        }
    }

    /// Applies `next` to the server's object, noting broken term and pin rules.
    fn apply(&self, state: &mut State, next: Lease, stamp: Option<Instant>) {
        let old = &state.server.lease;
        let new_holder = next.holder_unit().is_some() && next.holder_unit() != old.holder_unit();
        if next.term < old.term || (new_holder && next.term <= old.term) {
            state.term_broken = true;
        }
        if old.is_pinned() && old.holder_unit().is_some() && new_holder {
            state.pin_broken = true;
        }
        // The holder's timestamp changes with every grant or renewal, and goes with the claim.
        let stamp = match next.holder {
            None => None,
            Some(_) if next.claim_id() == old.claim_id() => state.server.stamp,
            Some(_) => stamp,
        };
        state.server = Object {
            lease: next,
            version: state.server.version + 1,
            stamp,
        };
    }

    /// A unit's store learns `object` (if newer than what it knew) on the unit's clock; the
    /// tracker acts on it when it is not waiting for a write, as its loop does.
    fn learn(&self, state: &mut State, i: usize, object: Object) {
        let now = self.unit_now(state, i);
        let unit = &mut state.units[i];
        if unit.view.as_ref().is_none_or(|v| v.version <= object.version) {
            unit.seen.observe(&object.lease, now);
            unit.view = Some(object);
        }
        if unit.waiting.is_none() {
            self.judge(state, i);
        }
    }

    /// The tracker looks at its latest view: a leader keeps leading, loses the lease, or steps
    /// down and releases when revoked; a minion still named holder releases when revoked.
    fn judge(&self, state: &mut State, i: usize) {
        let now = self.unit_now(state, i);
        let name = unit_name(i);
        let unit = &mut state.units[i];
        let Some(object) = &unit.view else { return };
        let view = self.view_of(object, &unit.seen);
        let release = match unit.guarantee {
            Some(_) => match judge_as_leader(&view, &name, unit.term) {
                LeaderVerdict::Keep => false,
                LeaderVerdict::Lost => {
                    unit.guarantee = None;
                    false
                }
                LeaderVerdict::Revoked => {
                    unit.guarantee = None;
                    true
                }
            },
            None => view.holder.as_deref() == Some(&name) && view.revoked.as_deref() == Some(&name),
        };
        if release {
            self.send(
                state,
                Write {
                    from: Some(i),
                    request: 0,
                    kind: WriteKind::Release,
                    expected: 0,
                    next: Lease::default(),
                    stamp: now,
                },
            );
        }
    }
}

impl Model for LeaseModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let rates = [
            1000 - (self.config.drift * 1000.0).round() as u32,
            1000 + (self.config.drift * 1000.0).round() as u32,
        ];
        let clocks: Vec<Clock> = rates
            .iter()
            .flat_map(|&rate_permille| {
                self.config.offsets.iter().map(move |&offset| Clock {
                    offset,
                    rate_permille,
                })
            })
            .collect();
        // Every combination of clocks; offsets are relative, so the first unit's is zero (and the
        // operator's, which only measures intervals).
        let processes = self.config.units + 1;
        let mut combinations: Vec<Vec<Clock>> = vec![Vec::new()];
        for p in 0..processes {
            let choices: Vec<Clock> = clocks
                .iter()
                .copied()
                .filter(|c| (p != 0 && p != self.config.units) || c.offset.is_zero())
                .filter(|c| p != self.config.units || self.config.operator || c.rate_permille == rates[0])
                .collect();
            combinations = combinations
                .into_iter()
                .flat_map(|prefix| {
                    choices.iter().map(move |c| {
                        let mut next = prefix.clone();
                        next.push(*c);
                        next
                    })
                })
                .collect();
        }
        combinations
            .into_iter()
            .map(|clocks| State {
                now: 0,
                server: Object::default(),
                units: clocks[..self.config.units]
                    .iter()
                    .map(|&clock| Unit {
                        clock,
                        view: None,
                        seen: Observation::default(),
                        guarantee: None,
                        term: 0,
                        waiting: None,
                        epoch: 0,
                        released_term: None,
                    })
                    .collect(),
                operator: Operator {
                    clock: clocks[self.config.units],
                    view: None,
                    seen: Observation::default(),
                },
                replies: Vec::new(),
                budget: if self.config.prompt {
                    Budget {
                        releases: self.config.budget.releases,
                        ..Budget::default()
                    }
                } else {
                    self.config.budget
                },
                term_broken: false,
                pin_broken: false,
                led_after_release: false,
                released: false,
            })
            .collect()
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        if state.now >= self.config.horizon {
            return;
        }
        if !self.config.prompt || !self.anything_due(state) {
            actions.push(Action::Tick);
        }
        let leaders = self.leaders(state);
        for i in 0..state.units.len() {
            let unit = &state.units[i];
            if unit
                .view
                .as_ref()
                .is_none_or(|v| v.version != state.server.version)
            {
                actions.push(Action::Watch(i));
            }
            if self.claim_write(state, i).is_some() {
                actions.push(Action::Claim(i));
            }
            if self.renew_write(state, i).is_some() {
                actions.push(Action::Renew(i));
            }
            if let Some(request) = unit.waiting {
                let timed_out = unit
                    .guarantee
                    .is_some_and(|g| self.unit_now(state, i) >= g.leader_until());
                let lost = !state.replies.iter().any(|r| r.to == i && r.request == request);
                if timed_out || lost {
                    actions.push(Action::GiveUp(i));
                }
            }
            if state.budget.releases > 0 && leaders.contains(&i) {
                actions.push(Action::Release(i));
            }
            if state.budget.crashes > 0 {
                actions.push(Action::Crash(i));
            }
        }
        for k in 0..state.replies.len() {
            actions.push(Action::Answer(k));
            if state.budget.losses > 0 {
                actions.push(Action::LoseReply(k));
            }
        }
        if self.config.operator {
            if state
                .operator
                .view
                .as_ref()
                .is_none_or(|v| v.version != state.server.version)
            {
                actions.push(Action::OperatorWatch);
            }
            if self.expire_write(state).is_some() {
                actions.push(Action::OperatorExpire);
            }
            if state.budget.operator_restarts > 0 {
                actions.push(Action::OperatorRestart);
            }
        }
        let lease = &state.server.lease;
        if state.budget.revocations > 0 && lease.holder.is_some() && lease.revoked.is_none() {
            actions.push(Action::Revoke);
        }
        if state.budget.pins > 0 && !lease.is_pinned() {
            actions.push(Action::Pin);
        }
        if lease.is_pinned() {
            actions.push(Action::Unpin);
        }
        if state.budget.handovers > 0
            && lease.holder.is_some()
            && lease.handover.is_none()
            && lease.revoked.is_none()
        {
            actions.push(Action::HandOver(None));
            for i in 0..state.units.len() {
                if lease.holder_unit() != Some(unit_name(i).as_str()) {
                    actions.push(Action::HandOver(Some(i)));
                }
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        match action {
            Action::Tick => state.now += 1,
            Action::Watch(i) => {
                let object = state.server.clone();
                self.learn(&mut state, i, object);
            }
            Action::Claim(i) | Action::Renew(i) => {
                let write = match action {
                    Action::Claim(_) => self.claim_write(&state, i)?,
                    _ => self.renew_write(&state, i)?,
                };
                let unit = &mut state.units[i];
                unit.waiting = Some(write.request);
                self.send(&mut state, write);
            }
            Action::GiveUp(i) => {
                let unit = &mut state.units[i];
                unit.epoch = unit.epoch.wrapping_add(1);
                unit.waiting = None;
                unit.guarantee = None;
                self.judge(&mut state, i);
            }
            Action::Release(i) => {
                let now = self.unit_now(&state, i);
                let unit = &mut state.units[i];
                unit.guarantee = None;
                unit.released_term = Some(unit.term);
                state.budget.releases -= 1;
                state.released = true;
                self.send(
                    &mut state,
                    Write {
                        from: Some(i),
                        request: 0,
                        kind: WriteKind::Release,
                        expected: 0,
                        next: Lease::default(),
                        stamp: now,
                    },
                );
            }
            Action::Answer(k) => {
                let reply = state.replies.remove(k);
                let i = reply.to;
                if state.units[i].waiting != Some(reply.request) {
                    return Some(state);
                }
                state.units[i].waiting = None;
                let now = self.unit_now(&state, i);
                if reply.applied {
                    let unit = &mut state.units[i];
                    match reply.kind {
                        WriteKind::Claim { claimed_at } => {
                            unit.guarantee = Some(Guarantee {
                                claimed_at,
                                claim_duration: self.config.claim_duration,
                            });
                            unit.term = reply.object.lease.term;
                            unit.released_term = None;
                        }
                        WriteKind::Renew { claimed_at } => {
                            if unit.guarantee.is_some_and(|g| now < g.leader_until()) {
                                unit.guarantee = Some(Guarantee {
                                    claimed_at,
                                    claim_duration: self.config.claim_duration,
                                });
                            } else {
                                unit.guarantee = None;
                            }
                        }
                        WriteKind::Release | WriteKind::Expire => {}
                    }
                }
                self.learn(&mut state, i, reply.object);
                if state.released && self.is_leader(&state, i) {
                    state.led_after_release = true;
                }
            }
            Action::LoseReply(k) => {
                state.replies.remove(k);
                state.budget.losses -= 1;
            }
            Action::Crash(i) => {
                let unit = &mut state.units[i];
                unit.epoch = unit.epoch.wrapping_add(1);
                unit.view = None;
                unit.seen = Observation::default();
                unit.guarantee = None;
                unit.term = 0;
                unit.waiting = None;
                unit.released_term = None;
                state.replies.retain(|r| r.to != i);
                state.budget.crashes -= 1;
            }
            Action::OperatorWatch => {
                let now = self.operator_now(&state);
                let object = state.server.clone();
                state.operator.seen.observe(&object.lease, now);
                state.operator.view = Some(object);
            }
            Action::OperatorExpire => {
                let write = self.expire_write(&state)?;
                self.send(&mut state, write);
            }
            Action::OperatorRestart => {
                state.operator.view = None;
                state.operator.seen = Observation::default();
                state.budget.operator_restarts -= 1;
            }
            Action::Revoke => {
                let holder = state.server.lease.holder_unit()?.to_owned();
                let next = state.server.lease.revoke(&holder).ok()??;
                self.apply(&mut state, next, None);
                state.budget.revocations -= 1;
            }
            Action::Pin => {
                let next = state.server.lease.pin("admin")?;
                self.apply(&mut state, next, None);
                state.budget.pins -= 1;
            }
            Action::Unpin => {
                let next = state.server.lease.unpin("admin")?;
                self.apply(&mut state, next, None);
            }
            Action::HandOver(to) => {
                let next = state.server.lease.hand_over(to.map(unit_name).as_deref()).ok()?;
                self.apply(&mut state, next, None);
                state.budget.handovers -= 1;
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always(
                "no two units lead at once (S1)",
                |model: &LeaseModel, state: &State| model.leaders(state).len() <= 1,
            ),
            Property::always(
                "the term never decreases and rises with every new holder",
                |_: &LeaseModel, state: &State| !state.term_broken,
            ),
            Property::always(
                "a revoked or handed-over holder stops leading before another unit leads",
                |model: &LeaseModel, state: &State| match state.server.lease.revoked.as_deref() {
                    Some(revoked) => {
                        let leaders = model.leaders(state);
                        !(leaders.iter().any(|&i| unit_name(i) == revoked) && leaders.len() > 1)
                    }
                    None => true,
                },
            ),
            Property::always(
                "a pinned lease is never taken over",
                |_: &LeaseModel, state: &State| !state.pin_broken,
            ),
            Property::sometimes("a unit leads", |model: &LeaseModel, state: &State| {
                !model.leaders(state).is_empty()
            }),
        ];
        if self.config.prompt {
            properties.push(Property::eventually(
                "with no faults, some unit leads",
                |model: &LeaseModel, state: &State| !model.leaders(state).is_empty(),
            ));
            properties.push(Property::eventually(
                "with no faults, a released lease is taken",
                |_: &LeaseModel, state: &State| state.led_after_release,
            ));
        }
        properties
    }
}

/// The names of the safety properties (those that must hold in every state).
pub const SAFETY: [&str; 4] = [
    "no two units lead at once (S1)",
    "the term never decreases and rises with every new holder",
    "a revoked or handed-over holder stops leading before another unit leads",
    "a pinned lease is never taken over",
];

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::Product => "the product's rules",
            Variant::NoCompareAndSwap => "writes without compare-and-swap",
            Variant::TrustTheHoldersTimestamp => "expiry judged from the holder's timestamp",
            Variant::LeaderForTheWholeLease => "leader for the whole lease, no drift margin",
        })
    }
}
