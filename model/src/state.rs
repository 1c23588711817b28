//! The state the model explores: the API server's object, each process and the messages in flight,
//! and the steps ([`Action`]) between states.

use std::time::Duration;

use leadership::{expiry::Observation, lease::Lease, tracker::Guarantee};
use tokio::time::Instant;

use crate::config::{Budget, Config};

/// One process's clock: an offset and a rate (in thousandths of real time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Clock {
    /// Added to every reading.
    pub offset: Duration,
    /// Local milliseconds per thousand real milliseconds.
    pub rate_permille: u32,
}

impl Clock {
    /// The clock's reading at real time `now` (in ticks).
    pub fn read(&self, config: &Config, now: u32) -> Instant {
        let real = config.tick * now;
        crate::epoch() + self.offset + real * self.rate_permille / 1000
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

/// What one process (a unit or the operator) knows of the lease: its clock, the newest object it
/// has learned of, and its expiry observation of that object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Observer {
    /// Its clock.
    pub clock: Clock,
    /// The newest object it has learned of.
    pub view: Option<Object>,
    /// Its expiry observation.
    pub seen: Observation,
}

impl Observer {
    /// A process that knows nothing yet.
    pub fn new(clock: Clock) -> Observer {
        Observer {
            clock,
            view: None,
            seen: Observation::default(),
        }
    }

    /// Whether the server holds an object this process has not learned of.
    pub fn is_behind(&self, server: &Object) -> bool {
        self.view.as_ref().is_none_or(|v| v.version != server.version)
    }

    /// Learns `object`, observed at `now` on this process's clock, unless it knows a newer one.
    pub fn learn(&mut self, object: Object, now: Instant) {
        if self.view.as_ref().is_none_or(|v| v.version <= object.version) {
            self.seen.observe(&object.lease, now);
            self.view = Some(object);
        }
    }

    /// Forgets everything but the clock (a restart).
    pub fn forget(&mut self) {
        self.view = None;
        self.seen = Observation::default();
    }
}

/// One unit's process: what it knows of the lease, and its tracker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unit {
    /// Its clock, view and observation.
    pub observer: Observer,
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

impl Unit {
    /// A unit that has just started.
    pub fn new(clock: Clock) -> Unit {
        Unit {
            observer: Observer::new(clock),
            guarantee: None,
            term: 0,
            waiting: None,
            epoch: 0,
            released_term: None,
        }
    }

    /// The unit after a crash and restart: it keeps only its clock, and ignores any late reply
    /// to what it sent before.
    pub fn restarted(&self) -> Unit {
        Unit {
            epoch: self.epoch.wrapping_add(1),
            ..Unit::new(self.observer.clock)
        }
    }
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

impl Write {
    /// Unit `from` gives the lease up, at `stamp` on its clock (a read-modify-write at the server,
    /// with no reply awaited).
    pub fn release(from: usize, stamp: Instant) -> Write {
        Write {
            from: Some(from),
            request: 0,
            kind: WriteKind::Release,
            expected: 0,
            next: Lease::default(),
            stamp,
        }
    }
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
    pub operator: Observer,
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
    /// The term of the last claim the operator cleared (it saw the claim run out).
    pub cleared: Option<u64>,
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
    /// A leader renews, once its renewal may be sent (from `Guarantee::renew_at_spread(1.0)`, the
    /// earliest moment of the tracker's spread).
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
    /// The operator clears a claim it saw run out.
    OperatorExpire,
    /// The operator restarts with no memory and relists the object.
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
