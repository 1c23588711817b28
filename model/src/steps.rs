//! The steps of the model: the initial states (every combination of clocks), the actions enabled
//! in a state, and what each does.

use stateright::{Model, Property};

use crate::{
    LeaseModel,
    config::Budget,
    properties,
    state::{Action, Clock, Object, Observer, State, Unit, Write, WriteKind},
    unit_name,
};
use leadership::tracker::Guarantee;

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
        // Every combination of the units' clocks; offsets are relative, so the first unit's is
        // zero. The operator's clock is the fast one, with no offset: the operator only waits for
        // deadlines on its own clock (a claim's length after it first saw it, or in the broken
        // variant the holder's timestamp plus the length), and may always wait longer than it
        // must (the fair configuration for liveness has no operator), so whatever it does with a
        // slower clock it can do with the fast one at the same instants: a sound reduction.
        let processes = self.config.units + 1;
        let mut combinations: Vec<Vec<Clock>> = vec![Vec::new()];
        for p in 0..processes {
            let choices: Vec<Clock> = clocks
                .iter()
                .copied()
                .filter(|c| (p != 0 && p != self.config.units) || c.offset.is_zero())
                .filter(|c| p != self.config.units || c.rate_permille == rates[1])
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
                    .map(|&clock| Unit::new(clock))
                    .collect(),
                operator: Observer::new(clocks[self.config.units]),
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
                cleared: None,
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
            if unit.observer.is_behind(&state.server) {
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
                self.send(&mut state, Write::release(i, now));
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
                                timing: self.config.timing(),
                            });
                            unit.term = reply.object.lease.term;
                            unit.released_term = None;
                        }
                        WriteKind::Renew { claimed_at } => {
                            if unit.guarantee.is_some_and(|g| now < g.leader_until()) {
                                unit.guarantee = Some(Guarantee {
                                    claimed_at,
                                    timing: self.config.timing(),
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
                state.units[i] = state.units[i].restarted();
                state.replies.retain(|r| r.to != i);
                state.budget.crashes -= 1;
            }
            Action::OperatorExpire => {
                let write = self.expire_write(&state)?;
                // Its view is the server's object (it learns every change), so the clear applies.
                state.cleared = Some(write.next.term);
                self.send(&mut state, write);
            }
            Action::OperatorRestart => {
                // It relists at once: relisting later would only start its timers later.
                state.operator.forget();
                self.operator_learns(&mut state);
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
        properties::of(self)
    }
}
