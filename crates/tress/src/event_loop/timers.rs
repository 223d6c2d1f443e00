//! One heap of timers with O(1) cancellation.
//!
//! A timer's value lives in a slot of its own; the heap holds only
//! `(deadline, sequence, slot, generation)`. Cancelling takes the value out
//! of its slot at once (a cancelled one-hour timeout does not keep its
//! callback, and what the callback refers to, for an hour) and bumps the
//! slot's generation, which makes the heap entry dead; dead entries are
//! dropped as they reach the top, and the whole heap is compacted once they
//! are more than half of it (and at least [`COMPACT_MIN`]), so its size stays
//! within twice the number of live timers. Timers with the same deadline fire
//! in the order they were scheduled.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

/// Dead entries tolerated before a compaction is considered (asyncio's
/// `_MIN_SCHEDULED_TIMER_HANDLES`).
pub const COMPACT_MIN: usize = 100;

/// Names a scheduled timer; stale once it fired or was cancelled (a slot
/// reused later has another generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

impl TimerId {
    /// The id as one integer (to hand to a caller that stores it, e.g. a
    /// Python handle).
    pub fn to_bits(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The id [`to_bits`](Self::to_bits) made (any other integer names no
    /// timer, or a stale one: cancelling it does nothing).
    pub fn from_bits(bits: u64) -> TimerId {
        TimerId {
            index: bits as u32,
            generation: (bits >> 32) as u32,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Node<D> {
    deadline: D,
    seq: u64,
    index: u32,
    generation: u32,
}

impl<D: Ord> PartialEq for Node<D> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<D: Ord> Eq for Node<D> {}
impl<D: Ord> PartialOrd for Node<D> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<D: Ord> Ord for Node<D> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.deadline
            .cmp(&other.deadline)
            .then(self.seq.cmp(&other.seq))
    }
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Timers carrying a `T` each (a callback, a handle), ordered by deadline
/// (an [`Instant`], or any ordered time of the caller's, e.g. a loop's
/// clock in nanoseconds).
///
/// ```
/// use std::time::{Duration, Instant};
/// use tress::event_loop::Timers;
///
/// let now = Instant::now();
/// let mut timers = Timers::new();
/// let hour = timers.insert(now + Duration::from_secs(3600), "hour");
/// timers.insert(now, "now");
/// assert_eq!(timers.cancel(hour), Some("hour")); // dropped here, not in an hour
/// let mut fired = Vec::new();
/// timers.expire(now, |_, v| fired.push(v));
/// assert_eq!(fired, ["now"]);
/// assert!(timers.is_empty());
/// ```
pub struct Timers<T, D = Instant> {
    heap: BinaryHeap<Reverse<Node<D>>>,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    seq: u64,
    live: usize,
    dead: usize,
}

impl<T, D: Ord + Copy> Default for Timers<T, D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, D> std::fmt::Debug for Timers<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers")
            .field("live", &self.live)
            .field("dead", &self.dead)
            .finish()
    }
}

impl<T, D: Ord + Copy> Timers<T, D> {
    /// No timers.
    pub fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            live: 0,
            dead: 0,
        }
    }

    /// Timers scheduled, neither fired nor cancelled.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no timer is scheduled.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Entries in the heap, dead ones included (at most about twice
    /// [`len`](Self::len), or [`COMPACT_MIN`] more).
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// Schedules `value` for `deadline`.
    pub fn insert(&mut self, deadline: D, value: T) -> TimerId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 timers");
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                i
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.value = Some(value);
        let generation = slot.generation;
        self.seq += 1;
        self.heap.push(Reverse(Node {
            deadline,
            seq: self.seq,
            index,
            generation,
        }));
        self.live += 1;
        TimerId { index, generation }
    }

    /// Whether `id` is still scheduled.
    pub fn contains(&self, id: TimerId) -> bool {
        self.slots
            .get(id.index as usize)
            .is_some_and(|s| s.generation == id.generation && s.value.is_some())
    }

    /// Cancels `id`: its value, if it was still scheduled (the caller drops
    /// it, now). O(1), plus an occasional compaction amortised over the
    /// cancellations that caused it.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let value = self.release(id.index, id.generation)?;
        self.dead += 1;
        if self.dead >= COMPACT_MIN && self.dead * 2 > self.heap.len() {
            self.compact();
        }
        Some(value)
    }

    /// Takes the value out of a live slot and frees the slot.
    fn release(&mut self, index: u32, generation: u32) -> Option<T> {
        let slot = self.slots.get_mut(index as usize)?;
        if slot.generation != generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.live -= 1;
        Some(value)
    }

    fn is_live(&self, node: &Node<D>) -> bool {
        let slot = &self.slots[node.index as usize];
        slot.generation == node.generation && slot.value.is_some()
    }

    /// Drops every dead entry: O(n).
    fn compact(&mut self) {
        let heap = std::mem::take(&mut self.heap);
        let live: Vec<_> = heap
            .into_vec()
            .into_iter()
            .filter(|Reverse(n)| self.is_live(n))
            .collect();
        self.heap = BinaryHeap::from(live);
        self.dead = 0;
    }

    /// Drops dead entries from the top.
    fn skip_dead(&mut self) {
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.is_live(top) {
                return;
            }
            self.heap.pop();
            self.dead = self.dead.saturating_sub(1);
        }
    }

    /// The earliest deadline scheduled.
    pub fn next_deadline(&mut self) -> Option<D> {
        self.skip_dead();
        self.heap.peek().map(|Reverse(n)| n.deadline)
    }

    /// Removes every timer whose deadline is at or before `now` and hands
    /// it to `fire`, earliest first (same deadlines in scheduling order).
    /// A timer is never due before its deadline. Returns how many fired.
    pub fn expire(&mut self, now: D, mut fire: impl FnMut(TimerId, T)) -> usize {
        let mut fired = 0;
        loop {
            self.skip_dead();
            let Some(Reverse(top)) = self.heap.peek().copied() else {
                break;
            };
            if top.deadline > now {
                break;
            }
            self.heap.pop();
            let value = self
                .release(top.index, top.generation)
                .expect("a live top entry has its value");
            fire(
                TimerId {
                    index: top.index,
                    generation: top.generation,
                },
                value,
            );
            fired += 1;
        }
        fired
    }

    /// The values scheduled, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.slots.iter().filter_map(|s| s.value.as_ref())
    }

    /// Cancels every timer; their values, in no particular order.
    pub fn clear(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.live);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(v) = slot.value.take() {
                slot.generation = slot.generation.wrapping_add(1);
                self.free.push(i as u32);
                out.push(v);
            }
        }
        self.heap.clear();
        self.live = 0;
        self.dead = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;
    use std::time::Duration;

    #[test]
    fn fires_in_deadline_then_scheduling_order() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        for (k, ms) in [(0, 30), (1, 10), (2, 20), (3, 10), (4, 0)] {
            timers.insert(t0 + Duration::from_millis(ms), k);
        }
        let mut fired = Vec::new();
        assert_eq!(
            timers.expire(t0 + Duration::from_millis(20), |_, v| fired.push(v)),
            4
        );
        assert_eq!(fired, [4, 1, 3, 2]);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_millis(30)));
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn never_fires_before_its_deadline() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.insert(t0 + Duration::from_nanos(1), ());
        assert_eq!(timers.expire(t0, |_, _| {}), 0);
        assert_eq!(timers.expire(t0 + Duration::from_nanos(1), |_, _| {}), 1);
    }

    #[test]
    fn cancel_drops_the_value_at_once_and_a_stale_id_does_nothing() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let payload = Rc::new(());
        let id = timers.insert(t0 + Duration::from_secs(3600), Rc::clone(&payload));
        assert_eq!(Rc::strong_count(&payload), 2);
        drop(timers.cancel(id));
        assert_eq!(Rc::strong_count(&payload), 1);
        assert!(timers.cancel(id).is_none());
        // the slot is reused; the old id must not cancel the new timer
        let new = timers.insert(t0, Rc::clone(&payload));
        assert!(timers.cancel(id).is_none());
        assert!(timers.contains(new));
        assert_eq!(timers.next_deadline(), Some(t0));
    }

    #[test]
    fn cancelled_entries_are_compacted() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let keep: Vec<_> = (0..10)
            .map(|i| timers.insert(t0 + Duration::from_secs(i), i))
            .collect();
        for round in 0..100u64 {
            let ids: Vec<_> = (0..1000)
                .map(|i| timers.insert(t0 + Duration::from_secs(3600 + round + i), 0))
                .collect();
            for id in ids {
                timers.cancel(id);
            }
            assert!(
                timers.heap_len() <= 2 * timers.len() + COMPACT_MIN,
                "heap {} for {} live",
                timers.heap_len(),
                timers.len()
            );
        }
        assert_eq!(timers.len(), 10);
        assert!(keep.iter().all(|&id| timers.contains(id)));
        let mut fired = Vec::new();
        timers.expire(t0 + Duration::from_secs(100_000), |_, v| fired.push(v));
        assert_eq!(fired, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn matches_a_sorted_model_under_random_operations() {
        // a small deterministic generator: no dependency, same run every time
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let mut model: Vec<(u64, u64, TimerId)> = Vec::new(); // (ms, seq, id)
        let mut seq = 0;
        let mut now_ms = 0;
        for _ in 0..20_000 {
            match next() % 4 {
                0 | 1 => {
                    let ms = now_ms + next() % 50;
                    seq += 1;
                    let id = timers.insert(t0 + Duration::from_millis(ms), seq);
                    model.push((ms, seq, id));
                }
                2 if !model.is_empty() => {
                    let k = (next() % model.len() as u64) as usize;
                    let (_, s, id) = model.swap_remove(k);
                    assert_eq!(timers.cancel(id), Some(s));
                }
                _ => {
                    now_ms += next() % 10;
                    let mut fired = Vec::new();
                    timers.expire(t0 + Duration::from_millis(now_ms), |_, v| fired.push(v));
                    model.sort_by_key(|m| (m.0, m.1));
                    let due: Vec<_> = model
                        .iter()
                        .take_while(|m| m.0 <= now_ms)
                        .map(|m| m.1)
                        .collect();
                    model.drain(..due.len());
                    assert_eq!(fired, due);
                }
            }
            assert_eq!(timers.len(), model.len());
        }
    }
}
