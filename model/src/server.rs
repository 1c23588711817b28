//! The API server: one object, linearizable, with a resourceVersion compare-and-swap on every
//! write (unless the variant skips it), and the term and pin rules checked at every change.

use leadership::lease::Lease;
use tokio::time::Instant;

use crate::{
    LeaseModel,
    config::Variant,
    state::{Object, Reply, State, Write, WriteKind},
    unit_name,
};

impl LeaseModel {
    /// A write reaches the server: a release is a read-modify-write there; any other write is
    /// applied only if its resourceVersion is still current (unless the variant skips the
    /// compare-and-swap), and a unit's write gets a reply.
    pub(crate) fn send(&self, state: &mut State, write: Write) {
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

    /// Applies `next` to the server's object, noting broken term and pin rules; the operator
    /// learns the new object at once.
    ///
    /// The operator learning every change as it is written is a sound reduction: an operator
    /// that learns a change later holds an older view until then, whose clear the
    /// compare-and-swap refuses, and once it has learned it, its timer for the claim started no
    /// sooner than the prompt operator's, so it clears no sooner. Whatever it writes, the prompt
    /// operator, which may always wait, can write at the same instant. (Without compare-and-swap
    /// a stale operator's clear would apply; that variant is caught without the operator.)
    pub(crate) fn apply(&self, state: &mut State, next: Lease, stamp: Option<Instant>) {
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
        if self.config.operator {
            self.operator_learns(state);
        }
    }
}
