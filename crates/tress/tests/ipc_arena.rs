//! The arenas the small shared primitives live in (`tress::ipc::ShmSemaphore`,
//! `ShmRLock`, `ShmEvent`): many primitives to a descriptor, cells reused
//! once no process holds them, forked children counted, allocation from
//! several processes at once. Its own test binary: children are forked from
//! it, and the tests run one at a time (they count this process's
//! descriptors and arenas).

mod common;

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tress::ipc::{ShmEvent, ShmRLock, ShmSemaphore, arenas_mapped};

const BOUND: Duration = Duration::from_secs(60);

/// The tests count process-wide things: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

use common::fork_child;

/// Waits (bounded) for `pid` to exit; its exit status, or the signal that
/// killed it as a negative number.
fn reap(pid: libc::pid_t) -> i32 {
    common::reap_within(pid, BOUND)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just opened both descriptors for us.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

/// Which cell of which memory file: (device, inode, cell).
fn key((fd, cell): (BorrowedFd<'_>, u32)) -> (u64, u64, u32) {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is open and `st` a valid out-pointer, initialized by
    // fstat when it returns 0.
    let st = unsafe {
        assert_eq!(libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()), 0);
        st.assume_init()
    };
    (st.st_dev, st.st_ino, cell)
}

#[test]
fn many_primitives_share_one_descriptor() {
    let _serial = serial();
    let fds = open_fds();
    let sems: Vec<_> = (0..1000)
        .map(|i| ShmSemaphore::create(i, None).unwrap())
        .collect();
    let rlocks: Vec<_> = (0..500).map(|_| ShmRLock::create().unwrap()).collect();
    let events: Vec<_> = (0..500).map(|_| ShmEvent::create().unwrap()).collect();
    // 2,000 primitives, 1,021 to an arena.
    assert!(open_fds() <= fds + 2, "{} descriptors", open_fds() - fds);
    let arenas: HashSet<_> = sems
        .iter()
        .map(|s| key(s.location()))
        .chain(rlocks.iter().map(|l| key(l.location())))
        .chain(events.iter().map(|e| key(e.location())))
        .map(|(dev, ino, _)| (dev, ino))
        .collect();
    assert!(arenas.len() <= 3, "{} arenas", arenas.len());
    // each keeps its own state
    for (i, s) in sems.iter().enumerate() {
        assert_eq!(s.value(), i as u32);
    }
    events[7].set();
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, e)| e.is_set() == (i == 7))
    );
    assert!(rlocks[3].try_acquire(1));
    assert!(!rlocks[3].try_acquire(2));
    assert!(rlocks[4].try_acquire(2));
}

#[test]
fn opening_a_known_arena_maps_nothing_new() {
    let _serial = serial();
    let a = ShmSemaphore::create(2, None).unwrap();
    let b = ShmEvent::create().unwrap();
    let (fds, arenas) = (open_fds(), arenas_mapped());
    let (fd, cell) = a.location();
    let again = ShmSemaphore::open(fd, cell).unwrap();
    let (fd, cell) = b.location();
    let ev = ShmEvent::open(fd, cell).unwrap();
    assert_eq!((open_fds(), arenas_mapped()), (fds, arenas));
    assert!(again.try_acquire());
    assert_eq!(a.value(), 1);
    ev.set();
    assert!(b.is_set());
    // the wrong kind, or a free cell, is refused
    let (fd, cell) = b.location();
    assert!(ShmSemaphore::open(fd, cell).is_err());
    assert!(ShmRLock::open(a.location().0, a.location().1).is_err());
    assert!(ShmSemaphore::open(fd, 1).is_err(), "a header cell");
    drop((a, again));
    let stale = ShmEvent::create().unwrap();
    drop(stale);
    let _ = ShmSemaphore::open(ev.location().0, 1023); // free or another's: no panic
}

#[test]
fn cells_are_reused_after_drop() {
    let _serial = serial();
    let fds = open_fds();
    for i in 0..100_000u32 {
        let s = ShmSemaphore::create(i % 7, Some(7)).unwrap();
        assert_eq!(s.value(), i % 7, "a reused cell starts afresh");
        let r = ShmRLock::create().unwrap();
        assert!(r.try_acquire(1));
        let e = ShmEvent::create().unwrap();
        assert!(!e.is_set());
        e.set();
    }
    assert!(arenas_mapped() <= 2, "{} arenas", arenas_mapped());
    // and in bulk: thousands live at once, dropped, again and again
    for round in 0..20 {
        let many: Vec<_> = (0..3000)
            .map(|_| ShmSemaphore::create(round, None).unwrap())
            .collect();
        assert!(many.iter().all(|s| s.value() == round));
        assert!(arenas_mapped() <= 5, "{} arenas", arenas_mapped());
    }
    assert!(arenas_mapped() <= 2, "{} arenas", arenas_mapped());
    assert!(open_fds() <= fds + 1, "{} descriptors", open_fds() - fds);
}

/// Semaphores made from a fresh arena: would a cell of `mine` be among them?
fn any_reused(mine: &[(u64, u64, u32)]) -> bool {
    let fresh: Vec<_> = (0..3000)
        .map(|_| ShmSemaphore::create(0, None).unwrap())
        .collect();
    let events: Vec<_> = (0..100).map(|_| ShmEvent::create().unwrap()).collect();
    fresh
        .iter()
        .map(|s| key(s.location()))
        .chain(events.iter().map(|e| key(e.location())))
        .any(|k| mine.contains(&k))
}

#[test]
fn a_forked_child_dropping_an_inherited_primitive_leaves_it_to_the_parent() {
    let _serial = serial();
    let sem = ShmSemaphore::create(3, None).unwrap();
    let ev = ShmEvent::create().unwrap();
    let lock = ShmRLock::create().unwrap();
    let mine = [
        key(sem.location()),
        key(ev.location()),
        key(lock.location()),
    ];
    ev.set();
    assert!(lock.try_acquire(9));
    // the child takes its copies out and drops them; the parent's stay
    let held = RefCell::new(Some((sem, ev, lock)));
    let child = fork_child(|| {
        let (sem, ev, lock) = held.borrow_mut().take().unwrap();
        assert!(sem.try_acquire());
        assert!(ev.is_set());
        assert!(!lock.is_owned(9), "another process's thread");
        drop((sem, ev, lock));
        assert!(!any_reused(&mine), "the child took a cell the parent holds");
    });
    assert_eq!(reap(child), 0);
    let (sem, ev, lock) = held.into_inner().unwrap();
    assert!(
        !any_reused(&mine),
        "the child's drop freed the parent's cells"
    );
    assert_eq!(sem.value(), 2, "the child's acquisition is seen");
    assert!(ev.is_set());
    assert_eq!(lock.count(9), 1);
    let again = ShmSemaphore::open(sem.location().0, sem.location().1).unwrap();
    assert!(again.try_acquire());
    assert_eq!(sem.value(), 1);
}

#[test]
fn the_parent_dropping_first_leaves_an_inherited_primitive_to_the_child() {
    let _serial = serial();
    let sem = ShmSemaphore::create(3, None).unwrap();
    let ev = ShmEvent::create().unwrap();
    let mine = [key(sem.location()), key(ev.location())];
    ev.set();
    let held = RefCell::new(Some((sem, ev)));
    let go = ShmEvent::create().unwrap();
    let child = fork_child(|| {
        let until = Some(Instant::now() + BOUND);
        assert!(go.wait_with(until, &mut tress::Uninterruptible).unwrap());
        let (sem, ev) = held.borrow_mut().take().unwrap();
        assert!(ev.is_set(), "the parent's drop freed the event");
        for _ in 0..3 {
            assert!(sem.try_acquire(), "the parent's drop freed the semaphore");
        }
        assert!(!sem.try_acquire());
    });
    // the parent lets go as the child starts, and allocates
    drop(held.borrow_mut().take());
    assert!(
        !any_reused(&mine),
        "the parent's drop freed what the child holds"
    );
    go.set();
    assert_eq!(reap(child), 0);
}

#[test]
fn concurrent_allocation_from_two_processes_never_shares_a_cell() {
    let _serial = serial();
    const EACH: u32 = 2500;
    // an arena both children inherit and allocate from at once
    let anchor = ShmSemaphore::create(0, None).unwrap();
    let start = ShmEvent::create().unwrap();
    let done = ShmSemaphore::create(0, None).unwrap();
    let mut children = Vec::new();
    for c in 0..2u32 {
        let (mut r, w) = pipe();
        let (start, done) = (&start, &done);
        let pid = fork_child(move || {
            let mut w = w;
            assert!(
                start
                    .wait_with(Some(Instant::now() + BOUND), &mut tress::Uninterruptible)
                    .unwrap()
            );
            let mine: Vec<_> = (0..EACH)
                .map(|k| ShmSemaphore::create(c * 1_000_000 + k, None).unwrap())
                .collect();
            done.release().unwrap();
            let end = Instant::now() + BOUND;
            while done.value() < 2 {
                assert!(Instant::now() < end, "the other child did not finish");
                thread::sleep(Duration::from_millis(1));
            }
            for (k, s) in mine.iter().enumerate() {
                assert_eq!(s.value(), c * 1_000_000 + k as u32, "a cell given twice");
            }
            let mut out = Vec::new();
            for s in &mine {
                let (dev, ino, cell) = key(s.location());
                for x in [dev, ino, u64::from(cell)] {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            w.write_all(&out).unwrap();
        });
        let mut buf = Vec::new();
        children.push((pid, move || {
            r.read_to_end(&mut buf).unwrap();
            buf
        }));
    }
    start.set();
    let mut seen = HashSet::new();
    seen.insert(key(anchor.location()));
    let mut shared_arena = 0;
    let (adev, aino, _) = key(anchor.location());
    for (pid, read) in children {
        let buf = read();
        assert_eq!(reap(pid), 0);
        assert_eq!(buf.len(), EACH as usize * 24);
        for k in buf.chunks_exact(24) {
            let x = |i: usize| u64::from_le_bytes(k[i * 8..i * 8 + 8].try_into().unwrap());
            let key = (x(0), x(1), x(2) as u32);
            assert!(seen.insert(key), "cell {key:?} given twice");
            if (key.0, key.1) == (adev, aino) {
                shared_arena += 1;
            }
        }
    }
    assert!(shared_arena > 0, "the children did not share an arena");
}
