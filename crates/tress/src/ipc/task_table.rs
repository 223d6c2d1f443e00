//! Which task each worker of a process pool runs, in shared memory.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Segment;
use super::ring::monotonic_ns;

const MAGIC: u64 = 0x7472_6573_735f_7431; // "tress_t1"

#[repr(C)]
struct Header {
    magic: AtomicU64,
    workers: AtomicU64,
}

/// One worker's row: the task it runs (0: none) and since when.
#[repr(C)]
struct Row {
    task: AtomicU64,
    /// CLOCK_MONOTONIC in nanoseconds (one clock for every process).
    started: AtomicU64,
}

const HEADER: usize = std::mem::size_of::<Header>();
const ROW: usize = std::mem::size_of::<Row>();

/// A table in shared memory of the task each worker of a pool runs: a
/// worker records the task it takes ([`begin`](Self::begin)) and clears it
/// when done ([`end`](Self::end)); the parent reads it to fail exactly the
/// task of a worker that died ([`take`](Self::take)) or ran too long
/// ([`running`](Self::running)). Task numbers are nonzero.
///
/// A row is two atomic words written by one worker at a time; a worker
/// killed between any two instructions leaves either its task or none.
///
/// # Examples
///
/// ```
/// use tress::ipc::TaskTable;
///
/// let table = TaskTable::create(2).unwrap();
/// table.begin(1, 42);
/// assert_eq!(table.running(1).map(|(task, _)| task), Some(42));
/// assert_eq!(table.take(1), Some(42)); // the worker died: its task, once
/// assert_eq!(table.take(1), None);
/// ```
pub struct TaskTable {
    seg: Segment,
    workers: usize,
}

impl TaskTable {
    /// A table of `workers` rows, every one idle.
    pub fn create(workers: usize) -> io::Result<TaskTable> {
        let len = workers
            .checked_mul(ROW)
            .and_then(|n| n.checked_add(HEADER))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many workers"))?;
        let t = TaskTable {
            seg: Segment::create(len, "task table")?,
            workers,
        };
        t.header().workers.store(workers as u64, Ordering::Relaxed);
        t.header().magic.store(MAGIC, Ordering::Release);
        Ok(t)
    }

    /// The table in `seg`, a segment made by [`create`](Self::create) (in
    /// this or another process).
    pub fn open(seg: Segment) -> io::Result<TaskTable> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a tress task table");
        if seg.len() < HEADER {
            return Err(bad());
        }
        let mut t = TaskTable { seg, workers: 0 };
        let h = t.header();
        let workers = usize::try_from(h.workers.load(Ordering::Relaxed)).map_err(|_| bad())?;
        if h.magic.load(Ordering::Acquire) != MAGIC
            || workers.checked_mul(ROW).and_then(|n| n.checked_add(HEADER)) != Some(t.seg.len())
        {
            return Err(bad());
        }
        t.workers = workers;
        Ok(t)
    }

    /// The shared memory it lives in (its descriptor reaches other processes).
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.workers
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.workers == 0
    }

    fn header(&self) -> &Header {
        // SAFETY: the segment is at least HEADER bytes, page-aligned, and
        // `Header` is all atomics, valid for any bit pattern (zeroes at
        // creation); it lives as long as `self.seg`.
        unsafe { &*(self.seg.as_ptr() as *const Header) }
    }

    fn row(&self, worker: usize) -> &Row {
        assert!(
            worker < self.workers,
            "worker {worker} out of range (the table has {} rows)",
            self.workers
        );
        // SAFETY: `worker < workers`, and `open`/`create` checked that the
        // segment holds HEADER + workers * ROW bytes; rows are 8-aligned
        // (HEADER and ROW are multiples of 8, the segment page-aligned) and
        // all atomics, valid for any bit pattern.
        unsafe { &*(self.seg.as_ptr().add(HEADER + worker * ROW) as *const Row) }
    }

    /// Worker `worker` runs `task` (nonzero) from now on.
    pub fn begin(&self, worker: usize, task: u64) {
        debug_assert!(task != 0, "task numbers are nonzero");
        let row = self.row(worker);
        row.started.store(monotonic_ns(), Ordering::Relaxed);
        row.task.store(task, Ordering::Release);
    }

    /// Worker `worker` runs nothing any more.
    pub fn end(&self, worker: usize) {
        self.row(worker).task.store(0, Ordering::Release);
    }

    /// The task worker `worker` runs and for how long it has run it.
    pub fn running(&self, worker: usize) -> Option<(u64, Duration)> {
        let row = self.row(worker);
        let task = row.task.load(Ordering::Acquire);
        if task == 0 {
            return None;
        }
        let started = row.started.load(Ordering::Relaxed);
        Some((
            task,
            Duration::from_nanos(monotonic_ns().saturating_sub(started)),
        ))
    }

    /// Clears the row of worker `worker` (which died, or was stopped) and
    /// returns the task it ran: whoever takes it owns its failure, once.
    pub fn take(&self, worker: usize) -> Option<u64> {
        match self.row(worker).task.swap(0, Ordering::AcqRel) {
            0 => None,
            task => Some(task),
        }
    }
}
