//! Causal delivery: the gate between received effects and the keyspace.
//!
//! Contract: [`CausalBuffer::offer`] applies an effect exactly once, and only after every effect
//! it depends on (its `deps` and the previous dot of its actor) has been applied. Duplicates are
//! dropped by dot; effects that arrive early wait in the buffer and are applied as soon as they
//! become deliverable. This is what lets the keyspace assume causal delivery.

use super::clock::VectorClock;
use super::effect::Effect;
use super::keyspace::Keyspace;

#[derive(Default)]
pub struct CausalBuffer {
    waiting: Vec<Effect>,
}

/// What happened to an offered effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Applied,
    Duplicate,
    Buffered,
}

impl CausalBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn deliverable(clock: &VectorClock, effect: &Effect) -> bool {
        clock.get(effect.dot.actor) + 1 == effect.dot.seq && clock.dominates(&effect.deps)
    }

    /// Offers a received effect; returns what happened to it. Effects applied as a consequence
    /// (previously buffered ones) are applied too.
    pub fn offer(&mut self, keyspace: &mut Keyspace, effect: Effect) -> Offer {
        if keyspace.clock().covers(effect.dot) {
            return Offer::Duplicate;
        }
        if !Self::deliverable(keyspace.clock(), &effect) {
            if !self.waiting.iter().any(|e| e.dot == effect.dot) {
                self.waiting.push(effect);
            }
            return Offer::Buffered;
        }
        keyspace.apply(&effect);
        self.drain(keyspace);
        Offer::Applied
    }

    /// Like [`CausalBuffer::offer`], also collecting every effect applied as a result, in the
    /// order applied (the caller logs and forwards them).
    pub fn offer_collect(
        &mut self,
        keyspace: &mut Keyspace,
        effect: Effect,
        applied: &mut Vec<Effect>,
    ) -> Offer {
        if keyspace.clock().covers(effect.dot) {
            return Offer::Duplicate;
        }
        if !Self::deliverable(keyspace.clock(), &effect) {
            if !self.waiting.iter().any(|e| e.dot == effect.dot) {
                self.waiting.push(effect);
            }
            return Offer::Buffered;
        }
        keyspace.apply(&effect);
        applied.push(effect);
        self.release(keyspace, applied);
        Offer::Applied
    }

    /// Applies every buffered effect that has become deliverable, pushing each onto `applied`
    /// in the order applied. Needed after the keyspace's clock moves without an offer (a
    /// state merge): an effect that waited for what the merge brought would otherwise wait
    /// until some later offer happens to apply directly.
    pub fn release(&mut self, keyspace: &mut Keyspace, applied: &mut Vec<Effect>) {
        loop {
            self.waiting.retain(|e| !keyspace.clock().covers(e.dot));
            let Some(pos) = self
                .waiting
                .iter()
                .position(|e| Self::deliverable(keyspace.clock(), e))
            else {
                break;
            };
            let next = self.waiting.swap_remove(pos);
            keyspace.apply(&next);
            applied.push(next);
        }
    }

    /// Forgets buffered effects (after a full state transfer replaced the keyspace).
    pub fn clear(&mut self) {
        self.waiting.clear();
    }

    fn drain(&mut self, keyspace: &mut Keyspace) {
        loop {
            self.waiting.retain(|e| !keyspace.clock().covers(e.dot));
            let Some(pos) = self
                .waiting
                .iter()
                .position(|e| Self::deliverable(keyspace.clock(), e))
            else {
                return;
            };
            let effect = self.waiting.swap_remove(pos);
            keyspace.apply(&effect);
        }
    }
}
