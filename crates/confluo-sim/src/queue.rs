//! The event queue: events ordered by virtual time, ties broken by insertion order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Virtual time in milliseconds.
pub type Millis = u64;

#[derive(Debug)]
struct Slot<E> {
    at: Millis,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Slot<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Slot<E> {}
impl<E> PartialOrd for Slot<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Slot<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A priority queue of events keyed by `(time, sequence)`: two events at the same time pop in
/// the order they were pushed, so the run never depends on the heap's internal layout.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<Slot<E>>>,
    next_seq: u64,
    now: Millis,
}

impl<E> EventQueue<E> {
    /// An empty queue at time `start`.
    pub fn new(start: Millis) -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
            now: start,
        }
    }

    /// The time of the last popped event.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Schedules `event` at `at` (never before now: the past is clamped to now).
    pub fn push(&mut self, at: Millis, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Slot {
            at: at.max(self.now),
            seq,
            event,
        }));
    }

    /// The next event, advancing time to it.
    pub fn pop(&mut self) -> Option<(Millis, E)> {
        let Reverse(slot) = self.heap.pop()?;
        self.now = slot.at;
        Some((slot.at, slot.event))
    }

    /// The time of the next event.
    pub fn peek_time(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse(s)| s.at)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_insertion_order() {
        let mut q = EventQueue::new(0);
        q.push(5, "c");
        q.push(1, "a");
        q.push(5, "d");
        q.push(1, "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![(1, "a"), (1, "b"), (5, "c"), (5, "d")]);
        q.push(2, "past");
        assert_eq!(q.pop(), Some((5, "past")), "the past is clamped to now");
    }
}
