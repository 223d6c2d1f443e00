//! The orders a [`Queue`](super::Queue) can keep its items in: [`Fifo`],
//! [`Lifo`] and [`Priority`] (a binary min-heap under a caller's
//! comparison, Python's `heapq` step for step).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;

/// How a queue stores its items and which one comes out next.
///
/// `push` and `pop` may fail (a [`Priority`] order whose comparison runs
/// user code that can fail); a failed call leaves the store exactly as it
/// was, and a failed `push` hands the item back.
pub trait Order<T> {
    /// What a comparison can fail with; [`Infallible`] for plain orders.
    type Error;

    /// How many items are stored.
    fn len(&self) -> usize;

    /// Whether no item is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `item`; on failure the store is unchanged and the item comes
    /// back with the error.
    fn push(&mut self, item: T) -> Result<(), (T, Self::Error)>;

    /// Takes the next item out, if any; on failure the store is unchanged.
    fn pop(&mut self) -> Result<Option<T>, Self::Error>;

    /// Takes every item out, in no particular order, without comparing.
    fn drain_all(&mut self) -> Vec<T>;

    /// Calls `f` on every stored item, in no particular order.
    fn for_each(&self, f: &mut dyn FnMut(&T));
}

/// Gives back memory after a burst: once at most a quarter of a large
/// buffer is used, halve it.
macro_rules! shrink_after_burst {
    ($buf:expr) => {{
        let cap = $buf.capacity();
        if cap > 1024 && $buf.len() < cap / 4 {
            $buf.shrink_to(cap / 2);
        }
    }};
}

/// First in, first out (Python's `queue.Queue`).
#[derive(Debug, Clone)]
pub struct Fifo<T>(VecDeque<T>);

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Self(VecDeque::new())
    }
}

impl<T> Order<T> for Fifo<T> {
    type Error = Infallible;

    #[inline]
    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline(always)]
    fn push(&mut self, item: T) -> Result<(), (T, Infallible)> {
        self.0.push_back(item);
        Ok(())
    }

    #[inline(always)]
    fn pop(&mut self) -> Result<Option<T>, Infallible> {
        let item = self.0.pop_front();
        shrink_after_burst!(self.0);
        Ok(item)
    }

    fn drain_all(&mut self) -> Vec<T> {
        std::mem::take(&mut self.0).into()
    }

    fn for_each(&self, f: &mut dyn FnMut(&T)) {
        self.0.iter().for_each(f);
    }
}

/// Last in, first out (Python's `queue.LifoQueue`).
#[derive(Debug, Clone)]
pub struct Lifo<T>(Vec<T>);

impl<T> Default for Lifo<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Order<T> for Lifo<T> {
    type Error = Infallible;

    #[inline]
    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline(always)]
    fn push(&mut self, item: T) -> Result<(), (T, Infallible)> {
        self.0.push(item);
        Ok(())
    }

    #[inline(always)]
    fn pop(&mut self) -> Result<Option<T>, Infallible> {
        let item = self.0.pop();
        shrink_after_burst!(self.0);
        Ok(item)
    }

    fn drain_all(&mut self) -> Vec<T> {
        std::mem::take(&mut self.0)
    }

    fn for_each(&self, f: &mut dyn FnMut(&T)) {
        self.0.iter().for_each(f);
    }
}

/// The comparison of an [`Ord`] type: `a < b`.
pub type OrdLess<T> = fn(&T, &T) -> Result<bool, Infallible>;

/// Smallest first (Python's `queue.PriorityQueue`): a binary min-heap under
/// `less(a, b)` ("`a` comes out before `b`"), which may fail.
///
/// The sift steps are those of Python's `heapq` (`heappush`, and
/// `heappop`'s sift to a leaf and back up), so items that compare equal
/// come out in the same order as from `queue.PriorityQueue`, and the same
/// comparisons are made. Every step is a swap recorded on an undo list: a
/// comparison that fails midway (or panics) is rolled back, so the heap is
/// left as it was, with no item lost or duplicated.
pub struct Priority<T, F = OrdLess<T>> {
    heap: Vec<T>,
    less: F,
    /// Swaps made by the current sift, for rolling it back.
    undo: Vec<(usize, usize)>,
}

impl<T: fmt::Debug, F> fmt::Debug for Priority<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Priority")
            .field("heap", &self.heap)
            .finish_non_exhaustive()
    }
}

impl<T: Ord> Default for Priority<T> {
    fn default() -> Self {
        Self::by(|a, b| Ok(a < b))
    }
}

impl<T, E, F: FnMut(&T, &T) -> Result<bool, E>> Priority<T, F> {
    /// A heap ordered by `less(a, b)`: whether `a` comes out before `b`.
    ///
    /// ```
    /// use tress::queue::{Order, Priority};
    ///
    /// // Largest first.
    /// let mut p = Priority::by(|a: &i32, b: &i32| Ok::<_, ()>(a > b));
    /// for x in [3, 9, 1] {
    ///     p.push(x).unwrap();
    /// }
    /// assert_eq!(p.pop(), Ok(Some(9)));
    /// ```
    pub fn by(less: F) -> Self {
        Self {
            heap: Vec::new(),
            less,
            undo: Vec::new(),
        }
    }

    /// `heapq._siftdown`: moves the item at `pos` up towards `start` while
    /// it is less than its parent.
    fn sift_towards_root(&mut self, start: usize, mut pos: usize) -> Result<(), E> {
        while pos > start {
            let parent = (pos - 1) >> 1;
            if !(self.less)(&self.heap[pos], &self.heap[parent])? {
                break;
            }
            self.heap.swap(pos, parent);
            self.undo.push((pos, parent));
            pos = parent;
        }
        Ok(())
    }

    /// `heapq._siftup`: moves the smaller child up until the item at `pos`
    /// reaches a leaf, then sifts it back towards `pos`.
    fn sift_to_leaf(&mut self, mut pos: usize) -> Result<(), E> {
        let end = self.heap.len();
        let start = pos;
        let limit = end >> 1;
        while pos < limit {
            let mut child = 2 * pos + 1;
            if child + 1 < end && !(self.less)(&self.heap[child], &self.heap[child + 1])? {
                child += 1;
            }
            self.heap.swap(pos, child);
            self.undo.push((pos, child));
            pos = child;
        }
        self.sift_towards_root(start, pos)
    }
}

/// Rolls a sift back when dropped armed: on a failed comparison, or while
/// unwinding from a panicking one, the heap is left as it was before the
/// call.
struct Rollback<'a, T, F> {
    p: &'a mut Priority<T, F>,
    /// For a pop: the item taken from the root, put back on rollback. For a
    /// push: `None`, and the pushed item (last after the undo) is dropped.
    taken: Option<T>,
    armed: bool,
}

impl<T, F> Rollback<'_, T, F> {
    /// Undoes the swaps; then a push removes its item (returned), a pop
    /// puts the taken item back at the root.
    fn undo(&mut self) -> Option<T> {
        self.armed = false;
        while let Some((a, b)) = self.p.undo.pop() {
            self.p.heap.swap(a, b);
        }
        match self.taken.take() {
            Some(first) => {
                let last = std::mem::replace(&mut self.p.heap[0], first);
                self.p.heap.push(last);
                None
            }
            None => self.p.heap.pop(),
        }
    }
}

impl<T, F> Drop for Rollback<'_, T, F> {
    fn drop(&mut self) {
        if self.armed {
            drop(self.undo());
        }
    }
}

impl<T, E, F: FnMut(&T, &T) -> Result<bool, E>> Order<T> for Priority<T, F> {
    type Error = E;

    #[inline]
    fn len(&self) -> usize {
        self.heap.len()
    }

    fn push(&mut self, item: T) -> Result<(), (T, E)> {
        self.heap.push(item);
        self.undo.clear();
        let last = self.heap.len() - 1;
        let mut guard = Rollback {
            p: self,
            taken: None,
            armed: true,
        };
        match guard.p.sift_towards_root(0, last) {
            Ok(()) => {
                guard.armed = false;
                Ok(())
            }
            Err(e) => {
                let item = guard.undo().expect("the item just pushed");
                Err((item, e))
            }
        }
    }

    fn pop(&mut self) -> Result<Option<T>, E> {
        let Some(last) = self.heap.pop() else {
            return Ok(None);
        };
        if self.heap.is_empty() {
            shrink_after_burst!(self.heap);
            return Ok(Some(last));
        }
        let first = std::mem::replace(&mut self.heap[0], last);
        self.undo.clear();
        let mut guard = Rollback {
            p: self,
            taken: Some(first),
            armed: true,
        };
        match guard.p.sift_to_leaf(0) {
            Ok(()) => {
                guard.armed = false;
                let first = guard.taken.take().expect("the root taken above");
                drop(guard);
                shrink_after_burst!(self.heap);
                Ok(Some(first))
            }
            Err(e) => {
                guard.undo();
                Err(e)
            }
        }
    }

    fn drain_all(&mut self) -> Vec<T> {
        std::mem::take(&mut self.heap)
    }

    fn for_each(&self, f: &mut dyn FnMut(&T)) {
        self.heap.iter().for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain<O: Order<i32, Error = Infallible>>(o: &mut O) -> Vec<i32> {
        std::iter::from_fn(|| o.pop().unwrap()).collect()
    }

    #[test]
    fn fifo_and_lifo() {
        let mut f = Fifo::default();
        let mut l = Lifo::default();
        for x in [1, 2, 3] {
            f.push(x).unwrap();
            l.push(x).unwrap();
        }
        assert_eq!(drain(&mut f), [1, 2, 3]);
        assert_eq!(drain(&mut l), [3, 2, 1]);
    }

    #[test]
    fn priority_sorts() {
        let mut p = Priority::default();
        let input = [5, 3, 8, 1, 9, 2, 7, 3, 0, 6, 4];
        for x in input {
            p.push(x).unwrap();
        }
        let mut sorted = input.to_vec();
        sorted.sort();
        assert_eq!(drain(&mut p), sorted);
    }

    #[test]
    fn burst_memory_is_given_back() {
        let mut f = Fifo::default();
        for x in 0..100_000 {
            f.push(x).unwrap();
        }
        while f.len() > 10 {
            f.pop().unwrap();
        }
        assert!(f.0.capacity() < 10_000, "capacity {}", f.0.capacity());
    }

    /// A comparison that fails on its `fail_at`-th call leaves the heap as
    /// it was, whichever call that is.
    #[test]
    fn failed_comparisons_roll_back() {
        use std::cell::Cell;
        use std::rc::Rc;
        let input = [50, 30, 80, 10, 90, 20, 70, 30, 0, 60, 40, 15, 85];
        for fail_at in 0..12 {
            let calls = Rc::new(Cell::new(0usize));
            let armed = Rc::new(Cell::new(false));
            let (c, a) = (Rc::clone(&calls), Rc::clone(&armed));
            let mut p = Priority::by(move |x: &i32, y: &i32| {
                if a.get() {
                    let n = c.get();
                    c.set(n + 1);
                    if n == fail_at {
                        return Err("boom");
                    }
                }
                Ok(x < y)
            });
            for x in input {
                p.push(x).unwrap();
            }
            let before = p.heap.clone();
            armed.set(true);
            if p.push(-5).is_err() {
                assert_eq!(p.heap, before, "push rolled back (fail_at {fail_at})");
            }
            calls.set(0);
            let before = p.heap.clone();
            if p.pop().is_err() {
                assert_eq!(p.heap, before, "pop rolled back (fail_at {fail_at})");
            }
            armed.set(false);
            let mut out = Vec::new();
            while let Some(x) = p.pop().unwrap() {
                out.push(x);
            }
            let mut sorted = out.clone();
            sorted.sort();
            assert_eq!(out, sorted, "still a heap (fail_at {fail_at})");
        }
    }
}
