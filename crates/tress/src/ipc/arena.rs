//! Arenas: the small primitives between processes (locks, semaphores,
//! events; [`sync`](super::sync)) share memory files, many to a file, so
//! the descriptors a process holds grow with its live primitives divided by
//! [`CELLS`], not with its primitives (multiprocessing's 1,500 locks under a
//! 1,024-descriptor limit).
//!
//! An arena is a [`Segment`] of [`CELLS`] cells of [`CELL`] bytes (one
//! cache line each). The first [`HEADER_CELLS`] hold the header: a magic
//! number and a bitmap of the cells in use (their bits set from the start).
//! A primitive is an arena and a cell index; its words are in its cell.
//!
//! | cell word | meaning |
//! |---|---|
//! | `tag` | `TAG` + the primitive's kind once it is set up; 0 while the cell is free or being set up or torn down |
//! | `refs` | handles to the primitive in every process, plus references lent to handles on their way ([`CellRef::lend`]) |
//! | the rest | the primitive's own words ([`Words`]) |
//!
//! **Allocation** sets a free bit of the bitmap with one compare-and-swap,
//! so two processes never take the same cell, and a process killed anywhere
//! leaves the bitmap consistent (at worst with a cell marked in use that
//! nobody will ever free). The taker then sets the words up, `refs` to 1,
//! and publishes `tag` last.
//!
//! **Freeing.** Each handle counts one in `refs`: [`CellRef::create`] and
//! [`CellRef::open`] add one, [`CellRef::adopt`] takes over one lent by
//! [`CellRef::lend`] (what a pickled handle carries), and dropping a handle
//! takes one away. Whoever takes the last clears `tag` and then the cell's
//! bit, and the cell is taken again by the next allocation, in any process.
//! `refs` only grows from a holder of a reference, so it never climbs back
//! from 0.
//!
//! **Fork.** A child copies its parent's handles without counting them. Each
//! process keeps a registry of the cells it holds (handles per cell, per
//! arena); a `pthread_atfork` prepare handler, run in the parent just before
//! the fork with the registry locked, adds the child's share (one per handle)
//! to each cell's `refs`. Counting before the fork, not in the child, means
//! the parent cannot free a cell between the fork and the child's count.
//!
//! **Leaks** (cells never reused, never corrupted): references held by a
//! process that ends without dropping its handles (`SIGKILL`, `_exit`,
//! `exec` after a `fork` that ran the atfork handlers: Python's `os._exit`,
//! which multiprocessing's fork children end with), a lent reference never
//! adopted (a pickle never loaded), a process killed between taking a bit
//! and publishing the cell, or between clearing `tag` and the bit. An arena
//! itself goes away with the last process that maps it, leaked cells and
//! all.
//!
//! **Mappings.** A process maps each arena once, with one descriptor: an
//! arena it is handed again (another lock of the same arena unpickled) is
//! found by the device and inode of the descriptor. It lets go of an arena
//! once it holds no cell in it, keeping at most one such arena to allocate
//! from.
//!
//! Memory ordering: taking a bit is `Acquire` and clearing it `Release`,
//! so the tearing down of a cell's last user happens before its setting up
//! by the next; `tag` is published with `Release` and read with `Acquire` by
//! [`CellRef::open`]. `refs` is Arc's protocol: increments `Relaxed` (made
//! by a holder), the last decrement `Release` followed by an `Acquire` fence
//! before the teardown.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use super::Segment;
use crate::{Lock, Mutex};

/// Bytes per cell.
pub(crate) const CELL: usize = 64;
/// Cells per arena (a multiple of 64: one bitmap word covers 64 cells).
pub(crate) const CELLS: usize = 1024;
/// The cells the header takes.
pub(crate) const HEADER_CELLS: usize = 3;
/// An arena's length: 64 KiB.
const ARENA_LEN: usize = CELL * CELLS;
/// The words of the bitmap.
const BITMAP_WORDS: usize = CELLS / 64;

const MAGIC: u64 = 0x7472_6573_735f_6131; // "tress_a1"
/// The high bits of a set-up cell's `tag`; the kind is the low byte.
const TAG: u32 = 0x7473_0000;

/// An arena's first bytes.
#[repr(C)]
struct Header {
    /// `MAGIC`, stored last at creation.
    magic: AtomicU64,
    /// `CELL`, for a reader to check.
    cell_size: AtomicU32,
    /// `CELLS`, for a reader to check.
    cells: AtomicU32,
    /// Bit `i % 64` of word `i / 64`: cell `i` is in use (or the header).
    bitmap: [AtomicU64; BITMAP_WORDS],
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_CELLS * CELL);
const _: () = assert!(CELLS % 64 == 0 && HEADER_CELLS < 64);

/// The words of one cell: the bookkeeping, then the primitive's.
#[repr(C, align(64))]
pub(crate) struct Words {
    /// `TAG` + kind while set up; 0 otherwise.
    tag: AtomicU32,
    /// References to the cell in every process (see the module docs).
    refs: AtomicU32,
    /// The semaphore's count (for the RLock: 1 while free); the event's
    /// flag; the barrier's state.
    pub(crate) value: AtomicU32,
    /// Processes' threads asleep on `value`.
    pub(crate) waiters: AtomicU32,
    /// The semaphore's bound (`u32::MAX`: none); the barrier's parties.
    pub(crate) max: AtomicU32,
    /// The RLock's owning process.
    pub(crate) owner_pid: AtomicU32,
    /// The RLock's recursion count; the waiters in a barrier.
    pub(crate) count: AtomicU32,
    /// Unused.
    reserved: AtomicU32,
    /// The RLock's owning thread.
    pub(crate) owner_tid: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Words>() == CELL);

/// One mapped arena.
#[derive(Debug)]
struct Arena {
    /// The memory file, mapped whole.
    seg: Segment,
    /// Its device and inode: the arena's name in this process.
    key: (u64, u64),
}

/// The device and inode of the file behind `fd`.
fn file_key(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is an open descriptor for the call and `st` a valid
    // out-pointer, initialized by fstat when it returns 0.
    let st = unsafe {
        if libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        st.assume_init()
    };
    Ok((st.st_dev, st.st_ino))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not a tress shared-memory primitive of this kind: {what}"),
    )
}

impl Arena {
    fn create() -> io::Result<Arena> {
        let seg = Segment::create(ARENA_LEN, "arena")?;
        let key = file_key(std::os::fd::AsFd::as_fd(&seg))?;
        let a = Arena { seg, key };
        let h = a.header();
        h.cell_size.store(CELL as u32, Ordering::Relaxed);
        h.cells.store(CELLS as u32, Ordering::Relaxed);
        h.bitmap[0].store((1 << HEADER_CELLS) - 1, Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Release);
        Ok(a)
    }

    fn open(fd: BorrowedFd<'_>, key: (u64, u64)) -> io::Result<Arena> {
        let seg = Segment::from_fd_len(fd.try_clone_to_owned()?, ARENA_LEN)?;
        let a = Arena { seg, key };
        let h = a.header();
        if h.magic.load(Ordering::Acquire) != MAGIC
            || h.cell_size.load(Ordering::Relaxed) != CELL as u32
            || h.cells.load(Ordering::Relaxed) != CELLS as u32
        {
            return Err(bad("no arena behind the descriptor"));
        }
        Ok(a)
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is ARENA_LEN bytes, page-aligned, and starts
        // with a `Header`, all atomics (valid for any bit pattern, zeroes at
        // creation); the borrow lives no longer than `self.seg`.
        unsafe { &*(self.seg.as_ptr() as *const Header) }
    }

    fn words(&self, index: usize) -> &Words {
        assert!(index < CELLS);
        // SAFETY: cell `index` lies within the ARENA_LEN-byte mapping, at a
        // multiple of 64 bytes from its page-aligned start (so aligned for
        // `Words`), and `Words` is all atomics, valid for any bit pattern;
        // the borrow lives no longer than `self.seg`.
        unsafe { &*(self.seg.as_ptr().add(index * CELL) as *const Words) }
    }

    /// Takes a free cell (its bit set) if there is one.
    fn take(&self) -> Option<usize> {
        for (w, word) in self.header().bitmap.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != u64::MAX {
                let bit = (!bits).trailing_zeros();
                match word.compare_exchange_weak(
                    bits,
                    bits | 1 << bit,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(w * 64 + bit as usize),
                    Err(now) => bits = now,
                }
            }
        }
        None
    }

    /// Gives cell `index` back to the bitmap.
    fn give_back(&self, index: usize) {
        self.header().bitmap[index / 64].fetch_and(!(1 << (index % 64)), Ordering::Release);
    }
}

/// An arena this process maps and the cells it holds there.
#[derive(Debug)]
struct Entry {
    /// The mapping (shared with the handles into it).
    arena: Arc<Arena>,
    /// Handles this process holds to each cell.
    held: Box<[u32]>,
    /// Their sum.
    live: u32,
}

/// The arenas this process maps.
#[derive(Debug)]
struct Registry {
    /// One per arena mapped, in no order.
    entries: Vec<Entry>,
    /// The entry the last allocation came from.
    hint: usize,
}

/// This process's arenas (locked across `fork`, see `before_fork`).
static REGISTRY: Mutex<Registry> = lock_api::Mutex::const_new(
    Lock::new(),
    Registry {
        entries: Vec::new(),
        hint: 0,
    },
);

/// The registry, locked; the fork handlers installed on first use.
fn registry() -> lock_api::MutexGuard<'static, Lock, Registry> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the three handlers live as long as the process (they are
        // part of this library) and only lock, count with atomics and
        // unlock (see `before_fork`).
        unsafe {
            libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork));
        }
    });
    REGISTRY.lock()
}

/// In the parent, just before `fork`: lock the registry (so the child's
/// copy is consistent) and count the child's copies of this process's
/// handles.
extern "C" fn before_fork() {
    let reg = REGISTRY.lock();
    for e in reg.entries.iter().filter(|e| e.live > 0) {
        for (i, &n) in e.held.iter().enumerate() {
            if n > 0 {
                e.arena.words(i).refs.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
    std::mem::forget(reg);
}

/// In the parent and in the child, just after `fork`: unlock the registry
/// that `before_fork` locked.
extern "C" fn after_fork() {
    // SAFETY: `before_fork` locked the registry in this thread (the same
    // thread in the child: the one that forked) and forgot its guard.
    unsafe { REGISTRY.force_unlock() };
}

impl Registry {
    fn index_of(&self, arena: &Arc<Arena>) -> usize {
        self.entries
            .iter()
            .position(|e| Arc::ptr_eq(&e.arena, arena))
            .expect("a live handle's arena is registered")
    }

    fn hold(&mut self, e: usize, index: usize) {
        let entry = &mut self.entries[e];
        entry.held[index] += 1;
        entry.live += 1;
    }

    /// Lets go of entry `e` if this process holds nothing in it and keeps
    /// another such arena to allocate from.
    fn trim(&mut self, e: usize) {
        if self.entries[e].live == 0
            && self
                .entries
                .iter()
                .enumerate()
                .any(|(j, o)| j != e && o.live == 0)
        {
            self.entries.swap_remove(e);
            if self.hint >= self.entries.len() {
                self.hint = 0;
            }
        }
    }
}

/// A handle to one cell: one reference (see the module docs), dropped when
/// the handle is.
#[derive(Debug)]
pub(crate) struct CellRef {
    /// The arena, kept mapped while the handle lives.
    arena: Arc<Arena>,
    /// The cell in it.
    index: u32,
}

impl CellRef {
    /// A new primitive of `kind` in a free cell of this process's arenas
    /// (a new arena if they are full), its words set by `init`.
    pub(crate) fn create(kind: u8, init: impl FnOnce(&Words)) -> io::Result<CellRef> {
        let mut reg = registry();
        let n = reg.entries.len();
        let found = (0..n).map(|k| (reg.hint + k) % n).find_map(|e| {
            let i = reg.entries[e].arena.take()?;
            Some((e, i))
        });
        let (e, index) = match found {
            Some(found) => found,
            None => {
                let arena = Arena::create()?;
                let index = arena.take().expect("a new arena has free cells");
                reg.entries.push(Entry {
                    arena: Arc::new(arena),
                    held: vec![0; CELLS].into_boxed_slice(),
                    live: 0,
                });
                (reg.entries.len() - 1, index)
            }
        };
        reg.hint = e;
        let arena = Arc::clone(&reg.entries[e].arena);
        let w = arena.words(index);
        for word in [
            &w.value,
            &w.waiters,
            &w.max,
            &w.owner_pid,
            &w.count,
            &w.reserved,
        ] {
            word.store(0, Ordering::Relaxed);
        }
        w.owner_tid.store(0, Ordering::Relaxed);
        init(w);
        w.refs.store(1, Ordering::Relaxed);
        w.tag.store(TAG | u32::from(kind), Ordering::Release);
        reg.hold(e, index);
        Ok(CellRef {
            arena,
            index: index as u32,
        })
    }

    /// A new handle to the primitive of `kind` in cell `index` of the arena
    /// behind `fd`: counted now (`adopt` false; the caller makes sure some
    /// handle to it lives meanwhile), or taking over a reference
    /// [`lend`](Self::lend) counted (`adopt` true).
    pub(crate) fn open(
        fd: BorrowedFd<'_>,
        index: u32,
        kind: u8,
        adopt: bool,
    ) -> io::Result<CellRef> {
        let i = index as usize;
        if !(HEADER_CELLS..CELLS).contains(&i) {
            return Err(bad("cell index out of range"));
        }
        let key = file_key(fd)?;
        let mut reg = registry();
        let e = match reg.entries.iter().position(|e| e.arena.key == key) {
            Some(e) => e,
            None => {
                let arena = Arena::open(fd, key)?;
                reg.entries.push(Entry {
                    arena: Arc::new(arena),
                    held: vec![0; CELLS].into_boxed_slice(),
                    live: 0,
                });
                reg.entries.len() - 1
            }
        };
        let arena = Arc::clone(&reg.entries[e].arena);
        let w = arena.words(i);
        if w.tag.load(Ordering::Acquire) != TAG | u32::from(kind)
            || w.refs.load(Ordering::Relaxed) == 0
        {
            reg.trim(e);
            return Err(bad("the cell holds another kind or nothing"));
        }
        if !adopt {
            w.refs.fetch_add(1, Ordering::Relaxed);
        }
        reg.hold(e, i);
        Ok(CellRef { arena, index })
    }

    /// Counts one more reference, for a handle on its way to another
    /// process that takes it over with `open(.., adopt = true)`.
    pub(crate) fn lend(&self) {
        self.words().refs.fetch_add(1, Ordering::Relaxed);
    }

    /// The cell's words.
    pub(crate) fn words(&self) -> &Words {
        self.arena.words(self.index as usize)
    }

    /// The arena's descriptor (this process's).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.arena.seg)
    }

    /// The cell's index in its arena.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }
}

impl Drop for CellRef {
    fn drop(&mut self) {
        let mut reg = registry();
        let e = reg.index_of(&self.arena);
        let i = self.index as usize;
        let entry = &mut reg.entries[e];
        entry.held[i] -= 1;
        entry.live -= 1;
        let w = self.arena.words(i);
        if w.refs.fetch_sub(1, Ordering::Release) == 1 {
            fence(Ordering::Acquire);
            w.tag.store(0, Ordering::Relaxed);
            self.arena.give_back(i);
        }
        reg.trim(e);
    }
}

/// How many arenas this process maps (for tests).
#[doc(hidden)]
pub fn arenas_mapped() -> usize {
    registry().entries.len()
}
