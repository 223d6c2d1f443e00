//! `tress::ipc`: the shared-memory byte queue, in one process and across
//! forked ones, including participants killed with SIGKILL mid-read and
//! mid-write. Its own test binary: children are forked from it.
//!
//! Every wait is bounded: children are killed and reaped by the test, gets
//! have deadlines, and a child that does not finish in time fails the test.

#![cfg(target_os = "linux")]

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tress::GetError;
use tress::ipc::{ByteQueue, SendError};

const BOUND: Duration = Duration::from_secs(20);

fn soon() -> Option<Instant> {
    Some(Instant::now() + BOUND)
}

/// A message whose bytes say which it is and whether it is whole: the
/// sequence number, the length, and a pattern derived from both.
fn message(seq: u64, len: usize) -> Vec<u8> {
    let len = len.max(16);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&(len as u64).to_le_bytes());
    m.extend((16..len).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
    m
}

/// The sequence number of a whole message; panics on a torn one.
fn check(m: &[u8]) -> u64 {
    assert!(m.len() >= 16, "short message: {} bytes", m.len());
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    let len = u64::from_le_bytes(m[8..16].try_into().unwrap());
    assert_eq!(
        len as usize,
        m.len(),
        "message {seq}: length field disagrees"
    );
    for (i, &b) in m.iter().enumerate().skip(16) {
        assert_eq!(
            b,
            (seq as usize).wrapping_mul(31).wrapping_add(i) as u8,
            "message {seq} torn at byte {i}"
        );
    }
    seq
}

use common::fork_child;

/// Waits (bounded) for `pid` to exit; its exit status, or the signal that
/// killed it as a negative number.
fn reap(pid: libc::pid_t) -> i32 {
    common::reap_within(pid, BOUND)
}

fn kill(pid: libc::pid_t) {
    // SAFETY: killing our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[test]
fn messages_come_back_whole_and_in_order() {
    let q = ByteQueue::create(1 << 12, 0).unwrap();
    for round in 0..50u64 {
        // sizes that wrap the ring at every offset
        for i in 0..5u64 {
            let seq = round * 5 + i;
            q.put(&[&message(seq, 17 + (seq as usize * 37) % 700)])
                .unwrap();
        }
        for i in 0..5u64 {
            assert_eq!(q.get(check), round * 5 + i);
        }
    }
    assert!(q.is_empty());
    assert_eq!(q.try_get(|m| m.len()), Err(GetError::Empty));
}

#[test]
fn parts_are_one_message() {
    let q = ByteQueue::create(1 << 12, 0).unwrap();
    q.put(&[b"ab", b"", b"cde"]).unwrap();
    q.put(&[]).unwrap();
    assert_eq!(q.get(|m| m.to_vec()), b"abcde");
    assert_eq!(q.get(|m| m.len()), 0);
}

/// The memory the queue's file holds, in bytes (`st_blocks`).
fn allocated(q: &ByteQueue) -> u64 {
    use std::os::fd::{AsFd, AsRawFd};
    // SAFETY: an all-zero `stat` is a valid out-buffer for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid out-pointer.
    let r = unsafe { libc::fstat(q.segment().as_fd().as_raw_fd(), &mut st) };
    assert_eq!(r, 0);
    st.st_blocks as u64 * 512
}

/// The memory the queue's file holds beyond its spare extents (kept for
/// reuse, bounded: see `ByteQueue::spare_bytes`).
fn in_use(q: &ByteQueue) -> u64 {
    allocated(q) - q.spare_bytes() as u64
}

/// This process's open descriptors.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A pipe: (read end, write end).
fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe() just opened both descriptors for us.
    unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
            std::fs::File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

/// Waits (bounded) for one byte on `pipe`.
fn wait_byte(pipe: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, BOUND.as_millis() as i32) };
    assert_eq!(r, 1, "the child never signalled");
    let mut b = [0u8];
    std::io::Read::read_exact(&mut &*pipe, &mut b).unwrap();
}

/// Waits (bounded) until the queue's file holds `bytes` again.
fn settles_at(q: &ByteQueue, bytes: u64) {
    let end = Instant::now() + BOUND;
    while in_use(q) != bytes && Instant::now() < end {
        // a get that times out runs the reaper
        let _ = q.get_with(
            Some(Instant::now() + Duration::from_millis(30)),
            &mut tress::Uninterruptible,
            |m| m.len(),
        );
    }
    assert_eq!(in_use(q), bytes, "memory left in the queue's file");
}

#[test]
fn messages_of_any_size_go_through_and_their_memory_is_freed() {
    let q = ByteQueue::create(1 << 20, 0).unwrap();
    assert_eq!(q.max_message(), usize::MAX);
    // The ring's pages are reserved as it is first used.
    assert!((4096 + (64 << 10)..4096 + (64 << 10) + 8192).contains(&allocated(&q)));
    for seq in 0..20 {
        q.put(&[&message(seq, 50_000)]).unwrap();
    }
    let ring = allocated(&q);
    assert!((4096 + (1 << 20)..4096 + (1 << 20) + 8192).contains(&ring));
    for seq in 0..20 {
        assert_eq!(q.get(check), seq);
    }
    // in parts, larger than the ring, beside small ones, in order
    let big = message(1, 16 << 20);
    let (a, b) = big.split_at(5 << 20);
    q.put(&[b"", a, b"", b]).unwrap();
    q.put(&[&message(2, 100)]).unwrap();
    q.put(&[&message(3, (1 << 20) - 15)]).unwrap(); // just over the ring
    assert_eq!(q.len(), 3);
    assert!(allocated(&q) >= ring + (17 << 20));
    for seq in 1..=3 {
        assert_eq!(q.get(check), seq);
    }
    assert_eq!(in_use(&q), ring);
    // as large as an empty ring holds: in the ring
    q.put(&[&message(4, (1 << 20) - 16)]).unwrap();
    assert_eq!(in_use(&q), ring);
    assert_eq!(q.get(check), 4);
    // batches with large messages mixed in
    let msgs: Vec<Vec<u8>> = (0..6u64)
        .map(|i| message(10 + i, if i % 2 == 0 { 3 << 20 } else { 50 }))
        .collect();
    let batch: Vec<Vec<&[u8]>> = msgs.iter().map(|m| vec![m.as_slice()]).collect();
    let batch: Vec<&[&[u8]]> = batch.iter().map(|v| v.as_slice()).collect();
    assert_eq!(
        q.put_many_with(&batch, soon(), &mut tress::Uninterruptible),
        Ok(6)
    );
    let mut seen = Vec::new();
    let got = q.get_many_with(10, soon(), &mut tress::Uninterruptible, |m| {
        seen.push(check(m))
    });
    assert_eq!((got, seen), (Ok(6), (10..16).collect::<Vec<_>>()));
    assert_eq!(in_use(&q), ring);
    assert_eq!(q.unfinished_tasks(), 30);
    // a panicking reader frees the message too
    q.put(&[&message(20, 1 << 20)]).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        q.get(|_| panic!("reader fails"))
    }));
    assert!(r.is_err());
    assert!(q.is_empty());
    assert_eq!(in_use(&q), ring);
    // a count bound counts a large message as one
    let bounded = ByteQueue::create(1 << 16, 2).unwrap();
    bounded.put(&[&message(1, 1 << 20)]).unwrap();
    bounded.put(&[&message(2, 1 << 20)]).unwrap();
    assert_eq!(bounded.try_put(&[b"x"]), Err(SendError::Full));
    assert_eq!(bounded.get(check), 1);
    bounded.try_put(&[&message(3, 1 << 20)]).unwrap();
}

#[test]
fn spare_extents_are_reused_and_bounded() {
    let q = ByteQueue::create(1 << 16, 0).unwrap();
    let ring = allocated(&q);
    // one size again and again: one extent, its pages kept between messages
    for i in 0..5 {
        q.put(&[&message(i, 16 << 20)]).unwrap();
        assert_eq!(q.get(check), i);
        assert_eq!(q.spare_bytes(), 16 << 20);
        assert_eq!(allocated(&q), ring + (16 << 20));
    }
    // a little smaller: the same extent, the pages past it given back
    q.put(&[&message(5, (15 << 20) + 5)]).unwrap();
    assert_eq!(
        (q.spare_bytes(), allocated(&q)),
        (0, ring + (15 << 20) + 4096)
    );
    let mut seen = Vec::new();
    q.get_message_with(None, &mut tress::Uninterruptible, |m| {
        assert!(m.is_out_of_band());
        let mut buf = vec![std::mem::MaybeUninit::new(0u8); m.len()];
        m.read_at(0, &mut buf).unwrap();
        // SAFETY: read_at initialised every byte.
        seen = buf
            .into_iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        assert!(
            m.read_at(m.len(), &mut [std::mem::MaybeUninit::new(0)])
                .is_err()
        );
    })
    .unwrap();
    assert_eq!(check(&seen), 5);
    assert_eq!(q.spare_bytes(), (15 << 20) + 4096);
    assert_eq!(allocated(&q), ring + (15 << 20) + 4096);
    // many sizes at once: at most 4 kept, the most recent, within the bound
    let sizes = [1usize, 2, 3, 4, 5, 6].map(|mib| (mib << 20) + 100);
    for (i, &len) in sizes.iter().enumerate() {
        q.put(&[&message(10 + i as u64, len)]).unwrap();
    }
    for i in 0..sizes.len() {
        assert_eq!(q.get(check), 10 + i as u64);
    }
    let kept: usize = sizes[2..].iter().map(|&n| n.div_ceil(4096) * 4096).sum();
    assert_eq!(q.spare_bytes(), kept);
    assert_eq!(allocated(&q), ring + kept as u64);
    let page = |n: usize| n.div_ceil(4096) * 4096;
    // larger than the bound (64 MiB here): kept alone, the others freed
    q.put(&[&message(20, 200 << 20)]).unwrap();
    assert_eq!(q.get(check), 20);
    assert_eq!(q.spare_bytes(), page(200 << 20));
    // within the bound again: the large one freed to make room
    q.put(&[&message(21, 30 << 20)]).unwrap();
    assert_eq!(q.get(check), 21);
    assert_eq!(q.spare_bytes(), page(30 << 20));
    q.put(&[&message(22, 10 << 20)]).unwrap();
    assert_eq!(q.get(check), 22);
    assert_eq!(q.spare_bytes(), page(30 << 20) + page(10 << 20));
    assert!(q.spare_bytes() <= 64 << 20);
    assert_eq!(in_use(&q), ring);
    q.trim();
    assert_eq!((q.spare_bytes(), allocated(&q)), (0, ring));
}

#[test]
fn a_queue_reopened_by_descriptor_maps_only_its_ring() {
    let q = ByteQueue::create(1 << 16, 0).unwrap();
    q.put(&[&message(1, 8 << 20)]).unwrap(); // the file is now longer
    let other = ByteQueue::open_fd(q.segment().try_clone_fd().unwrap()).unwrap();
    assert_eq!(other.segment().len(), q.segment().len());
    assert_eq!(other.get(check), 1);
    let old_style =
        ByteQueue::open(tress::ipc::Segment::from_fd(q.segment().try_clone_fd().unwrap()).unwrap())
            .unwrap();
    old_style.put(&[&message(2, 3 << 20)]).unwrap();
    assert_eq!(q.get(check), 2);
}

#[test]
fn many_large_messages_in_flight_between_processes() {
    let q = ByteQueue::create(1 << 20, 0).unwrap();
    // in a child of its own: the descriptor count of this process is not
    // disturbed by the other tests' threads there
    let outer = fork_child(|| {
        let ring = allocated(&q);
        let fds = open_fds();
        let writers: Vec<_> = (0..3u64)
            .map(|w| {
                let q = &q;
                fork_child(move || {
                    for i in 0..6u64 {
                        let len = (1 << 20) + ((w * 6 + i) as usize % 5) * (2 << 20) + 1234;
                        q.put(&[&message(w << 32 | i, len)]).unwrap();
                    }
                })
            })
            .collect();
        // every writer's messages wait at once (none is read before all
        // are put): 18 messages of 1-9 MiB through a 1 MiB ring
        for w in writers {
            assert_eq!(reap(w), 0);
        }
        assert_eq!(q.len(), 18);
        let mut next = [0u64; 3];
        for _ in 0..18 {
            let seq = q
                .get_with(soon(), &mut tress::Uninterruptible, check)
                .unwrap();
            let w = (seq >> 32) as usize;
            assert_eq!(
                seq & 0xffff_ffff,
                next[w],
                "writer {w}'s messages out of order"
            );
            next[w] += 1;
        }
        assert_eq!(next, [6, 6, 6]);
        assert_eq!(in_use(&q), ring);
        assert_eq!(open_fds(), fds, "a descriptor leaked");
    });
    assert_eq!(reap(outer), 0);
}

#[test]
fn a_writer_killed_mid_copy_of_a_large_message_leaks_nothing() {
    use std::os::fd::AsRawFd;
    let q = ByteQueue::create(1 << 16, 0).unwrap();
    let ring = allocated(&q);
    // a spare extent of the size: the killed writer reuses it
    q.put(&[&message(0, 100 << 20)]).unwrap();
    assert_eq!(q.get(check), 0);
    assert_eq!(q.spare_bytes(), 100 << 20);
    q.put(&[&message(1, 40)]).unwrap();
    let (r, w) = pipe();
    let child = fork_child(|| {
        tress::ipc::TEST_STALL_LARGE_PUT.store(w.as_raw_fd(), std::sync::atomic::Ordering::Relaxed);
        // more than one write: the child stops after the first 64 MiB
        let _ = q.put(&[&message(2, 100 << 20)]);
    });
    wait_byte(&r);
    assert!(
        allocated(&q) >= ring + (64 << 20),
        "the writer wrote nothing yet"
    );
    assert_eq!(q.spare_bytes(), 0, "the writer took the spare");
    kill(child);
    assert_eq!(reap(child), -libc::SIGKILL);
    q.put(&[&message(3, 40)]).unwrap();
    // the torn message is never delivered; the others are, in order
    assert_eq!(
        q.get_with(soon(), &mut tress::Uninterruptible, check),
        Ok(1)
    );
    assert_eq!(
        q.get_with(soon(), &mut tress::Uninterruptible, check),
        Ok(3)
    );
    settles_at(&q, ring);
    assert!(q.is_empty());
    assert_eq!(q.unfinished_tasks(), 3);
    q.put(&[&message(4, 20 << 20)]).unwrap();
    assert_eq!(q.get(check), 4);
    assert_eq!(in_use(&q), ring);
}

#[test]
fn a_large_put_short_of_memory_fails_cleanly() {
    // The file may not grow past 1 MiB beyond what it holds (RLIMIT_FSIZE,
    // in a child of its own): the write fails with EFBIG part-way, as it
    // would with ENOSPC or ENOMEM on a machine short of memory.
    let q = ByteQueue::create(1 << 16, 0).unwrap();
    let ring = allocated(&q);
    let child = fork_child(|| {
        // SAFETY: ignoring SIGXFSZ (so the write fails instead of killing
        // the process) and lowering this child's own file size limit.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = (q.segment().len() + (1 << 20)) as libc::rlim_t;
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rl), 0);
        }
        let err = q.put(&[&message(1, 8 << 20)]).unwrap_err();
        assert!(
            matches!(err, SendError::Memory { size, errno: Some(libc::EFBIG), .. } if size == 8 << 20),
            "{err:?}"
        );
        assert!(err.to_string().contains("8388608 bytes"), "{err}");
        // nothing was put, nothing is held, the queue works
        assert_eq!((q.len(), q.unfinished_tasks()), (0, 0));
        assert_eq!(in_use(&q), ring);
        q.put(&[&message(2, 100)]).unwrap();
        assert_eq!(q.get(check), 2);
        assert_eq!(
            q.put_many_with(
                &[&[&message(3, 10)], &[&message(4, 4 << 20)]],
                None,
                &mut tress::Uninterruptible
            )
            .map_err(|e| matches!(e, SendError::Memory { .. })),
            Err(true)
        );
        assert_eq!(q.get(check), 3); // the one before the failure was put
        assert!(q.is_empty());
        assert_eq!(in_use(&q), ring);
    });
    assert_eq!(reap(child), 0);
}

#[test]
fn a_reader_killed_mid_read_of_a_large_message_leaves_it_to_another() {
    let q = ByteQueue::create(1 << 16, 0).unwrap();
    let ring = allocated(&q);
    q.put(&[&message(1, 20 << 20)]).unwrap();
    let (r, w) = pipe();
    let child = fork_child(|| {
        q.get(|m| {
            check(m);
            std::io::Write::write_all(&mut &w, b"r").unwrap();
            loop {
                thread::sleep(Duration::from_secs(1));
            }
        });
    });
    wait_byte(&r);
    assert!(q.is_empty());
    kill(child);
    assert_eq!(reap(child), -libc::SIGKILL);
    // delivered again, whole, exactly once
    assert_eq!(
        q.get_with(soon(), &mut tress::Uninterruptible, check),
        Ok(1)
    );
    assert_eq!(in_use(&q), ring);
    assert_eq!(
        q.get_with(
            Some(Instant::now() + Duration::from_millis(100)),
            &mut tress::Uninterruptible,
            check
        ),
        Err(GetError::Empty)
    );
}

#[test]
fn a_reader_killed_freeing_a_large_message_does_not_revive_it() {
    use std::os::fd::AsRawFd;
    let q = ByteQueue::create(1 << 16, 0).unwrap();
    let ring = allocated(&q);
    q.put(&[&message(1, 20 << 20)]).unwrap();
    q.put(&[&message(2, 40)]).unwrap();
    let (r, w) = pipe();
    let child = fork_child(|| {
        tress::ipc::TEST_STALL_LARGE_GET.store(w.as_raw_fd(), std::sync::atomic::Ordering::Relaxed);
        q.get(check);
    });
    // consumed, its extent listed as a spare, its slot not yet freed (the
    // reader stops holding the lock: the next holder settles both)
    wait_byte(&r);
    assert_eq!(in_use(&q), ring);
    kill(child);
    assert_eq!(reap(child), -libc::SIGKILL);
    // not delivered again (its pages are gone): the next is the small one
    assert_eq!(
        q.get_with(soon(), &mut tress::Uninterruptible, check),
        Ok(2)
    );
    assert_eq!(
        q.get_with(
            Some(Instant::now() + Duration::from_millis(100)),
            &mut tress::Uninterruptible,
            check
        ),
        Err(GetError::Empty)
    );
    // the dead reader's slot was freed: the whole ring is usable again
    let mut n = 0u64;
    while q.try_put(&[&message(n, 1000)]).is_ok() {
        n += 1;
    }
    assert!(n >= 60, "only {n} messages fit after the recovery");
    assert_eq!(in_use(&q), ring);
}

#[test]
fn full_by_bytes_and_by_count_times_out() {
    let q = ByteQueue::create(256, 0).unwrap();
    let mut n = 0;
    while q.try_put(&[&[0u8; 40]]).is_ok() {
        n += 1;
    }
    assert_eq!(n, 256 / 64, "each 40-byte message takes 64 bytes of ring");
    let start = Instant::now();
    let r = q.put_with(
        &[&[0u8; 40]],
        Some(Instant::now() + Duration::from_millis(50)),
        &mut tress::Uninterruptible,
    );
    assert_eq!(r, Err(SendError::Full));
    assert!(start.elapsed() >= Duration::from_millis(50));

    let q = ByteQueue::create(1 << 16, 3).unwrap();
    for _ in 0..3 {
        q.try_put(&[b"x"]).unwrap();
    }
    assert_eq!(q.try_put(&[b"x"]), Err(SendError::Full));
    q.get(|_| ());
    q.try_put(&[b"x"]).unwrap();
}

#[test]
fn get_times_out_on_an_empty_queue() {
    let q = ByteQueue::create(1 << 12, 0).unwrap();
    let start = Instant::now();
    let r = q.get_with(
        Some(Instant::now() + Duration::from_millis(60)),
        &mut tress::Uninterruptible,
        |m| m.len(),
    );
    assert_eq!(r, Err(GetError::Empty));
    assert!(start.elapsed() >= Duration::from_millis(60));
}

#[test]
fn task_done_and_join() {
    let q = Arc::new(ByteQueue::create(1 << 12, 0).unwrap());
    assert!(q.task_done().is_err());
    for i in 0..10 {
        q.put(&[&message(i, 32)]).unwrap();
    }
    assert_eq!(q.unfinished_tasks(), 10);
    let worker = {
        let q = Arc::clone(&q);
        thread::spawn(move || {
            for _ in 0..10 {
                q.get(check);
                q.task_done().unwrap();
            }
        })
    };
    assert_eq!(q.join_with(soon(), &mut tress::Uninterruptible), Ok(true));
    worker.join().unwrap();
    assert_eq!(q.unfinished_tasks(), 0);
}

#[test]
fn threads_move_every_message_exactly_once() {
    const PER: u64 = 20_000;
    let q = Arc::new(ByteQueue::create(1 << 14, 0).unwrap());
    let producers: Vec<_> = (0..3u64)
        .map(|p| {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                for i in 0..PER {
                    let seq = p * PER + i;
                    q.put(&[&message(seq, 16 + (seq as usize % 300))]).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(seq) = q.get_with(soon(), &mut tress::Uninterruptible, check) {
                    if seq == u64::MAX {
                        break;
                    }
                    got.push(seq);
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    for _ in 0..3 {
        q.put(&[&message(u64::MAX, 16)]).unwrap();
    }
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..3 * PER).collect::<Vec<_>>());
}

#[test]
fn forked_processes_move_every_message_exactly_once() {
    const PRODUCERS: u64 = 2;
    const PER: u64 = 20_000;
    let q = ByteQueue::create(1 << 16, 0).unwrap();
    let done = ByteQueue::create(1 << 20, 0).unwrap();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            fork_child(|| {
                for i in 0..PER {
                    let seq = p * PER + i;
                    q.put(&[&message(seq, 16 + (seq as usize * 7) % 2000)])
                        .unwrap();
                }
            })
        })
        .collect();
    let consumer = fork_child(|| {
        // the child consumes half, reporting sequence numbers in batches
        let mut batch = Vec::new();
        for _ in 0..PRODUCERS * PER / 2 {
            let seq = q
                .get_with(soon(), &mut tress::Uninterruptible, check)
                .expect("consumer child: no message within the bound");
            batch.extend_from_slice(&seq.to_le_bytes());
            if batch.len() >= 8 * 1000 {
                done.put(&[&batch]).unwrap();
                batch.clear();
            }
        }
        done.put(&[&batch]).unwrap();
    });
    let mut all = Vec::new();
    for _ in 0..PRODUCERS * PER / 2 {
        all.push(
            q.get_with(soon(), &mut tress::Uninterruptible, check)
                .expect("no message within the bound"),
        );
    }
    for p in producers {
        assert_eq!(reap(p), 0);
    }
    assert_eq!(reap(consumer), 0);
    while let Ok(batch) = done.try_get(|m| m.to_vec()) {
        all.extend(
            batch
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
        );
    }
    all.sort_unstable();
    assert_eq!(all, (0..PRODUCERS * PER).collect::<Vec<_>>());
    assert!(q.is_empty());
}

#[test]
fn a_reader_killed_mid_read_gives_its_message_to_another() {
    let q = ByteQueue::create(1 << 16, 0).unwrap();
    let signal = ByteQueue::create(1 << 12, 0).unwrap();
    q.put(&[&message(7, 5000)]).unwrap();
    q.put(&[&message(8, 100)]).unwrap();
    let child = fork_child(|| {
        q.get(|m| {
            check(m);
            signal.put(&[b"reading"]).unwrap();
            thread::sleep(BOUND * 2); // killed here
        });
    });
    signal
        .get_with(soon(), &mut tress::Uninterruptible, |_| ())
        .expect("the child never started reading");
    // message 7 is claimed by the child: the next get sees message 8
    assert_eq!(
        q.get_with(soon(), &mut tress::Uninterruptible, check),
        Ok(8)
    );
    kill(child);
    assert_eq!(reap(child), -libc::SIGKILL);
    // the dead reader's message is delivered again, whole
    let start = Instant::now();
    assert_eq!(
        q.get_with(soon(), &mut tress::Uninterruptible, check),
        Ok(7)
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // and the ring's space is reclaimed: it fills and drains completely
    let mut n = 0u64;
    while q.try_put(&[&message(100 + n, 1000)]).is_ok() {
        n += 1;
    }
    assert!(n >= 50, "only {n} messages fit after the recovery");
    for i in 0..n {
        assert_eq!(q.get(check), 100 + i);
    }
}

#[test]
fn writers_killed_mid_stream_leave_no_torn_messages() {
    // Big messages take long enough to copy that some kills land mid-write.
    let q = ByteQueue::create(16 << 20, 0).unwrap();
    let mut delivered = 0u64;
    for round in 0..6u64 {
        let child = fork_child(|| {
            let mut seq = round << 32;
            loop {
                q.put(&[&message(seq, 1 << 20)]).unwrap();
                seq += 1;
            }
        });
        // once the writer is going, kill it at a varying point
        let end = Instant::now() + BOUND;
        while q.is_empty() && Instant::now() < end {
            thread::sleep(Duration::from_micros(200));
        }
        assert!(!q.is_empty(), "the writer never put a message");
        thread::sleep(Duration::from_micros(500 + round * 1700));
        kill(child);
        assert_eq!(reap(child), -libc::SIGKILL);
        // every message that comes out is whole and in order per writer
        let mut last = None;
        while let Ok(seq) = q.get_with(
            Some(Instant::now() + Duration::from_millis(200)),
            &mut tress::Uninterruptible,
            check,
        ) {
            assert_eq!(seq >> 32, round);
            if let Some(l) = last {
                assert_eq!(seq, l + 1, "a whole message went missing");
            }
            last = Some(seq);
            delivered += 1;
        }
    }
    assert!(delivered > 0);
    // the queue still works end to end, with its full capacity
    let mut n = 0u64;
    while q.try_put(&[&message(n, 1 << 20)]).is_ok() {
        n += 1;
    }
    assert!(n >= 14, "only {n} MiB fit after the recovery");
    for i in 0..n {
        assert_eq!(q.get(check), i);
    }
}

#[test]
fn a_segment_crosses_to_another_process_by_descriptor() {
    // What Python's spawn start method does: a new mapping of the same
    // memory from a descriptor, here in the same process.
    let q = ByteQueue::create(1 << 12, 0).unwrap();
    let other =
        ByteQueue::open(tress::ipc::Segment::from_fd(q.segment().try_clone_fd().unwrap()).unwrap())
            .unwrap();
    q.put(&[b"over"]).unwrap();
    assert_eq!(other.get(|m| m.to_vec()), b"over");
    let not_a_queue = tress::ipc::Segment::create(8192, "other").unwrap();
    assert!(ByteQueue::open(not_a_queue).is_err());
}

#[test]
fn nothing_is_left_in_dev_shm() {
    let before: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let q = ByteQueue::create(1 << 20, 0).unwrap();
    let child = fork_child(|| {
        q.put(&[b"x"]).unwrap();
        thread::sleep(BOUND * 2);
    });
    q.get_with(soon(), &mut tress::Uninterruptible, |_| ())
        .unwrap();
    kill(child);
    reap(child);
    drop(q);
    let after: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let new: Vec<_> = after.iter().filter(|n| !before.contains(n)).collect();
    assert!(new.is_empty(), "left in /dev/shm: {new:?}");
}

#[test]
fn a_shared_lock_excludes_across_processes() {
    use tress::ipc::{ShmEvent, ShmSemaphore};
    const ROUNDS: u64 = 5_000;
    let lock = ShmSemaphore::create(1, Some(1)).unwrap();
    let start = ShmEvent::create().unwrap();
    // A counter in shared memory that only the lock protects: a read and a
    // write apart, so lost updates show if exclusion fails.
    let counter = tress::ipc::Segment::create(4096, "counter").unwrap();
    let cell = counter.as_ptr() as *mut u64;
    let bump = || {
        for _ in 0..ROUNDS {
            lock.acquire();
            // SAFETY: the segment holds at least 8 aligned bytes; the lock
            // makes this process the only one touching them.
            unsafe {
                let v = std::ptr::read_volatile(cell);
                std::hint::spin_loop();
                std::ptr::write_volatile(cell, v + 1);
            }
            lock.release().unwrap();
        }
    };
    let children: Vec<_> = (0..2)
        .map(|_| {
            fork_child(|| {
                assert!(
                    start
                        .wait_with(soon(), &mut tress::Uninterruptible)
                        .unwrap()
                );
                bump();
            })
        })
        .collect();
    start.set();
    bump();
    for c in children {
        assert_eq!(reap(c), 0);
    }
    // SAFETY: every writer has exited.
    assert_eq!(unsafe { std::ptr::read_volatile(cell) }, 3 * ROUNDS);
    assert_eq!(lock.value(), 1);
}

#[test]
fn rlock_is_reentrant_per_thread_and_excludes_others() {
    use tress::ipc::ShmRLock;
    let lock = Arc::new(ShmRLock::create().unwrap());
    assert!(lock.try_acquire(1));
    assert!(lock.try_acquire(1));
    let other = {
        let lock = Arc::clone(&lock);
        thread::spawn(move || {
            let got = lock.try_acquire(2);
            let waited = lock
                .acquire_with(2, soon(), &mut tress::Uninterruptible)
                .unwrap();
            lock.release(2).unwrap();
            (got, waited)
        })
    };
    thread::sleep(Duration::from_millis(20));
    lock.release(1).unwrap();
    assert!(lock.is_owned(1));
    lock.release(1).unwrap();
    assert_eq!(other.join().unwrap(), (false, true));
    assert!(lock.release(1).is_err());
}

#[test]
fn semaphore_timeouts_and_bounds() {
    use tress::ipc::ShmSemaphore;
    let s = ShmSemaphore::create(2, None).unwrap();
    assert!(s.try_acquire() && s.try_acquire());
    let start = Instant::now();
    let got = s
        .acquire_with(
            Some(Instant::now() + Duration::from_millis(40)),
            &mut tress::Uninterruptible,
        )
        .unwrap();
    assert!(!got && start.elapsed() >= Duration::from_millis(40));
    s.release().unwrap();
    assert_eq!(s.value(), 1);
    assert!(ShmSemaphore::create(3, Some(2)).is_err());
    let b = ShmSemaphore::create(1, Some(1)).unwrap();
    assert!(b.release().is_err());
    assert_eq!(b.max(), Some(1));
}

/// A model check: long random sequences of puts (random sizes, so the ring
/// wraps at every offset and pads its end), non-blocking gets and
/// task_done against a `VecDeque`: every get returns the model's oldest
/// message, a put is refused only when the model says the bytes or the
/// count are taken, and a drained ring takes a message of the largest size.
#[test]
fn random_operations_match_a_model() {
    use std::collections::VecDeque;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (capacity, max_messages) in [(1024usize, 0usize), (4096, 7), (1 << 16, 0)] {
        let q = ByteQueue::create(capacity, max_messages).unwrap();
        let cap = q.capacity() as u64;
        let file = allocated(&q);
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut undone = 0usize;
        let slot = |len: usize| 16 + (len as u64).div_ceil(16) * 16;
        // the ring's slots as the queue keeps them: (size, true for a message
        // not yet taken; false for padding or a taken message not reclaimed)
        let mut ring: VecDeque<(u64, bool)> = VecDeque::new();
        let (mut head, mut tail) = (0u64, 0u64);
        for step in 0..20_000u64 {
            if rand() % 5 < 3 {
                // now and then larger than the ring
                let len = if rand() % 10 == 0 {
                    (cap + rand() % cap) as usize
                } else {
                    (rand() % (cap / 3)) as usize
                };
                let msg = message(step, len.max(16));
                // larger than the ring: a reference out of band
                let oob = slot(msg.len()) > cap;
                let need = slot(if oob { 16 } else { msg.len() });
                if head == tail && tail % cap != 0 {
                    tail += cap - tail % cap; // an empty ring starts over
                    head = tail;
                }
                let off = tail % cap;
                let pad = if off + need > cap { cap - off } else { 0 };
                let fits = tail - head + pad + need <= cap
                    && (max_messages == 0 || model.len() < max_messages);
                match q.try_put(&[&msg]) {
                    Ok(()) => {
                        assert!(fits, "step {step}: a put the model says cannot fit went in");
                        if pad > 0 {
                            ring.push_back((pad, false));
                        }
                        ring.push_back((need, true));
                        tail += pad + need;
                        model.push_back(msg);
                        undone += 1;
                    }
                    Err(SendError::Full) => {
                        assert!(!fits, "step {step}: a put that fits was refused")
                    }
                    Err(e) => panic!("step {step}: {e}"),
                }
            } else {
                match q.try_get(|m| m.to_vec()) {
                    Ok(m) => {
                        let expected = model.pop_front().expect("a get from an empty model");
                        assert_eq!(check(&m), check(&expected), "step {step}");
                        // the oldest message is taken; the head moves over
                        // every slot from the front that holds none
                        let taken = ring.iter_mut().find(|(_, live)| *live).unwrap();
                        taken.1 = false;
                        while let Some(&(size, false)) = ring.front() {
                            ring.pop_front();
                            head += size;
                        }
                    }
                    Err(GetError::Empty) => assert!(model.is_empty(), "step {step}"),
                    Err(e) => panic!("step {step}: {e}"),
                }
            }
            if undone > 0 && rand() % 4 == 0 {
                q.task_done().unwrap();
                undone -= 1;
            }
            assert_eq!(q.len(), model.len());
            assert_eq!(q.unfinished_tasks(), undone);
        }
        while let Ok(m) = q.try_get(|m| m.to_vec()) {
            assert_eq!(check(&m), check(&model.pop_front().unwrap()));
        }
        assert!(model.is_empty());
        // every extent consumed: kept as a spare (bounded) or freed
        assert_eq!(in_use(&q), file);
        assert!(q.spare_bytes() <= 64 << 20);
        let largest = vec![1u8; q.capacity() * 3];
        q.try_put(&[&largest])
            .expect("a drained ring takes a message larger than itself");
        assert_eq!(q.get(|m| m.len()), largest.len());
    }
}

/// The child half of `a_spawned_process_reattaches_by_descriptor`: a no-op
/// unless run by it (with the descriptors of the data and the reply queue
/// in `TRESS_IPC_TEST_FDS`).
#[test]
fn spawned_child_entry() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let Ok(fds) = std::env::var("TRESS_IPC_TEST_FDS") else {
        return;
    };
    let open = |fd: &str| {
        let fd: i32 = fd.parse().unwrap();
        // SAFETY: the parent left this descriptor open for us (not CLOEXEC).
        let seg = tress::ipc::Segment::from_fd(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
        ByteQueue::open(seg).unwrap()
    };
    let (data, reply) = fds.split_once(',').unwrap();
    let (q, reply) = (open(data), open(reply));
    let mut sum = 0u64;
    for _ in 0..1000 {
        sum += q
            .get_with(soon(), &mut tress::Uninterruptible, check)
            .expect("spawned child: no message");
    }
    reply.put(&[&sum.to_le_bytes()]).unwrap();
}

/// Spawn-self: a new process (this test binary, exec'd) maps the queues
/// from inherited descriptors, as Python's spawn start method does.
#[test]
fn a_spawned_process_reattaches_by_descriptor() {
    use std::os::fd::{AsFd, AsRawFd};
    let q = ByteQueue::create(1 << 16, 0).unwrap();
    let reply = ByteQueue::create(4096, 0).unwrap();
    let fds: Vec<_> = [&q, &reply]
        .iter()
        .map(|x| x.segment().try_clone_fd().unwrap())
        .collect();
    for fd in &fds {
        // SAFETY: clearing FD_CLOEXEC on a descriptor we own, so the exec'd
        // child inherits it.
        unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_SETFD, 0) };
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "spawned_child_entry", "--test-threads=1"])
        .env(
            "TRESS_IPC_TEST_FDS",
            format!("{},{}", fds[0].as_raw_fd(), fds[1].as_raw_fd()),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(fds);
    for i in 0..1000u64 {
        q.put(&[&message(i, 16 + (i as usize % 100))]).unwrap();
    }
    let sum = reply
        .get_with(soon(), &mut tress::Uninterruptible, |m| {
            u64::from_le_bytes(m.try_into().unwrap())
        })
        .unwrap();
    assert_eq!(sum, 999 * 1000 / 2);
    let end = Instant::now() + BOUND;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        if Instant::now() > end {
            child.kill().unwrap();
            panic!("spawned child did not finish");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn condition_notify_n_wakes_n_across_processes() {
    use tress::ipc::{ShmCondition, ShmEvent, ShmSemaphore};
    let lock = ShmSemaphore::create(1, Some(1)).unwrap();
    let cond = ShmCondition::create().unwrap();
    let woken = ShmSemaphore::create(0, None).unwrap();
    let ready = ShmSemaphore::create(0, None).unwrap();
    let go = ShmEvent::create().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            fork_child(|| {
                lock.acquire();
                ready.release().unwrap();
                let notified = cond
                    .wait_with(
                        || lock.release().unwrap(),
                        || lock.acquire(),
                        soon(),
                        &mut tress::Uninterruptible,
                    )
                    .unwrap();
                assert!(notified, "child timed out instead of being notified");
                lock.release().unwrap();
                woken.release().unwrap();
                assert!(go.wait_with(soon(), &mut tress::Uninterruptible).unwrap());
            })
        })
        .collect();
    for _ in 0..3 {
        assert!(
            ready
                .acquire_with(soon(), &mut tress::Uninterruptible)
                .unwrap()
        );
    }
    // every child is inside wait once the parent can take the lock
    lock.acquire();
    cond.notify(2);
    lock.release().unwrap();
    for _ in 0..2 {
        assert!(
            woken
                .acquire_with(soon(), &mut tress::Uninterruptible)
                .unwrap()
        );
    }
    // exactly two: the third stays asleep until notified
    let extra = woken
        .acquire_with(
            Some(Instant::now() + Duration::from_millis(100)),
            &mut tress::Uninterruptible,
        )
        .unwrap();
    assert!(!extra, "notify(2) woke three waiters");
    lock.acquire();
    cond.notify_all();
    lock.release().unwrap();
    assert!(
        woken
            .acquire_with(soon(), &mut tress::Uninterruptible)
            .unwrap()
    );
    go.set();
    for c in children {
        assert_eq!(reap(c), 0);
    }
}

#[test]
fn barrier_lets_parties_through_together_across_processes() {
    use tress::ipc::{ShmBarrier, ShmBarrierError};
    const ROUNDS: u32 = 20;
    let b = ShmBarrier::create(3).unwrap();
    // each round's indexes, reported by every party
    let seen = ByteQueue::create(1 << 16, 0).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            fork_child(|| {
                for round in 0..ROUNDS {
                    let i = b.wait_with(soon(), &mut tress::Uninterruptible).unwrap();
                    seen.put(&[&round.to_le_bytes(), &i.to_le_bytes()]).unwrap();
                }
            })
        })
        .collect();
    let mut mine = Vec::new();
    for round in 0..ROUNDS {
        let i = b.wait_with(soon(), &mut tress::Uninterruptible).unwrap();
        mine.push((round, i));
    }
    for c in children {
        assert_eq!(reap(c), 0);
    }
    let mut all: Vec<(u32, u32)> = mine;
    while let Ok(pair) = seen.try_get(|m| {
        (
            u32::from_le_bytes(m[..4].try_into().unwrap()),
            u32::from_le_bytes(m[4..].try_into().unwrap()),
        )
    }) {
        all.push(pair);
    }
    all.sort_unstable();
    let expected: Vec<(u32, u32)> = (0..ROUNDS)
        .flat_map(|r| (0..3).map(move |i| (r, i)))
        .collect();
    assert_eq!(all, expected, "every round hands out each index once");
    assert_eq!(b.n_waiting(), 0);

    // a wait that times out breaks the barrier for everyone, until reset
    let r = b.wait_with(
        Some(Instant::now() + Duration::from_millis(30)),
        &mut tress::Uninterruptible,
    );
    assert_eq!(r, Err(ShmBarrierError::Broken));
    assert!(b.is_broken());
    assert_eq!(
        b.wait_with(soon(), &mut tress::Uninterruptible),
        Err(ShmBarrierError::Broken)
    );
    b.reset();
    assert!(!b.is_broken());
    let one = ShmBarrier::create(1).unwrap();
    assert_eq!(one.wait_with(None, &mut tress::Uninterruptible), Ok(0));
}

#[test]
fn batches_put_and_get_many() {
    let q = ByteQueue::create(4096, 5).unwrap();
    let msgs: Vec<Vec<u8>> = (0..8).map(|i| message(i, 20)).collect();
    let batch: Vec<Vec<&[u8]>> = msgs.iter().map(|m| vec![m.as_slice()]).collect();
    let batch: Vec<&[&[u8]]> = batch.iter().map(|v| v.as_slice()).collect();
    // bounded at 5 messages: 5 go in, then Full ends the batch
    let put = q
        .put_many_with(&batch, Some(Instant::now()), &mut tress::Uninterruptible)
        .unwrap();
    assert_eq!(put, 5);
    let mut seen = Vec::new();
    let got = q
        .get_many_with(3, soon(), &mut tress::Uninterruptible, |m| {
            seen.push(check(m))
        })
        .unwrap();
    assert_eq!((got, seen.clone()), (3, vec![0, 1, 2]));
    let got = q
        .get_many_with(10, soon(), &mut tress::Uninterruptible, |m| {
            seen.push(check(m))
        })
        .unwrap();
    assert_eq!((got, seen), (2, vec![0, 1, 2, 3, 4]));
    // a message larger than the ring goes in the batch too
    let huge = message(10, 5000);
    let small = message(9, 16);
    let parts: [&[&[u8]]; 2] = [&[small.as_slice()], &[huge.as_slice()]];
    assert_eq!(
        q.put_many_with(&parts, None, &mut tress::Uninterruptible),
        Ok(2)
    );
    let mut seen = Vec::new();
    let got = q.get_many_with(4, soon(), &mut tress::Uninterruptible, |m| {
        seen.push(check(m))
    });
    assert_eq!((got, seen), (Ok(2), vec![9, 10]));
    assert!(q.is_empty());
    assert_eq!(
        q.get_many_with(4, Some(Instant::now()), &mut tress::Uninterruptible, |_| ()),
        Err(GetError::Empty)
    );
}

#[test]
fn a_task_table_row_outlives_its_killed_worker() {
    use tress::ipc::TaskTable;

    let table = TaskTable::create(3).unwrap();
    assert_eq!(table.len(), 3);
    assert!((0..3).all(|w| table.running(w).is_none()));
    table.begin(0, 7);
    let (task, ran) = table.running(0).unwrap();
    assert_eq!(task, 7);
    assert!(ran < BOUND);
    table.end(0);
    assert_eq!(table.take(0), None);

    // a forked worker records its task and is killed running it: the
    // parent finds the task, once
    let q = ByteQueue::create(1 << 12, 0).unwrap();
    let child = fork_child(|| {
        table.begin(2, 41);
        q.put(&[b"running"]).unwrap();
        loop {
            thread::sleep(Duration::from_secs(1));
        }
    });
    assert_eq!(
        q.get_with(soon(), &mut tress::Uninterruptible, |m| m.to_vec())
            .unwrap(),
        b"running"
    );
    kill(child);
    assert_eq!(reap(child), -libc::SIGKILL);
    assert_eq!(table.take(2), Some(41));
    assert_eq!(table.take(2), None);

    // reopened by descriptor, as a spawned worker does
    let fd = table.segment().try_clone_fd().unwrap();
    let other = TaskTable::open(tress::ipc::Segment::from_fd(fd).unwrap()).unwrap();
    other.begin(1, 5);
    assert_eq!(table.running(1).map(|(t, _)| t), Some(5));
}

#[test]
fn a_segment_cannot_be_shrunk_by_a_participant() {
    // A participant that truncated the memory file would kill every other
    // one with SIGBUS: the size is sealed (it may still grow).
    let q = ByteQueue::create(1 << 16, 0).unwrap();
    q.put(&[b"before"]).unwrap();
    let fd = q.segment().try_clone_fd().unwrap();
    let file = std::fs::File::from(fd);
    let err = file.set_len(0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    q.put(&[&message(1, 3 << 16)]).unwrap(); // grows past the ring: allowed
    assert_eq!(q.get(|m| m.to_vec()), b"before");
    assert_eq!(q.get(check), 1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_bounded_queue_has_room_again_before_the_reader_sees_its_message() {
    // The bound counts messages not yet claimed: the reader's own code may
    // put into the queue it reads, full as it was.
    let q = ByteQueue::create(1 << 12, 1).unwrap();
    q.try_put(&[b"first"]).unwrap();
    assert_eq!(q.try_put(&[b"x"]), Err(SendError::Full));
    assert_eq!(q.len(), 1);
    let put_back = q.get(|m| {
        assert_eq!(m, b"first");
        q.try_put(&[b"back"])
    });
    assert_eq!(put_back, Ok(()));
    assert_eq!(q.len(), 1);
    assert_eq!(q.get(|m| m.to_vec()), b"back");
    assert_eq!(q.len(), 0);
}

#[test]
fn an_admitted_message_counts_until_placed_or_taken_back() {
    let q = ByteQueue::create(1 << 12, 2).unwrap();
    q.admit_with(None, &mut tress::Uninterruptible).unwrap();
    q.admit_with(None, &mut tress::Uninterruptible).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.unfinished_tasks(), 2);
    assert_eq!(
        q.try_put(&[b"x"]),
        Err(SendError::Full),
        "the bound counts admissions"
    );
    q.place_with(&[b"a"], None, &mut tress::Uninterruptible)
        .unwrap();
    q.unadmit();
    assert_eq!((q.len(), q.unfinished_tasks()), (1, 1));
    assert_eq!(q.get(|m| m.to_vec()), b"a");
    assert_eq!(q.len(), 0);
    q.task_done().unwrap();
    assert!(
        q.join_with(Some(Instant::now()), &mut tress::Uninterruptible)
            .unwrap()
    );
}

#[test]
fn a_feeder_never_waits_for_room_and_keeps_the_order() {
    use tress::ipc::{Fed, Feeder};
    let q = Arc::new(ByteQueue::create(1 << 12, 0).unwrap());
    let f = Feeder::new(Arc::clone(&q));
    let mut fed = Vec::new();
    let start = Instant::now();
    // 2,000 messages of 100 bytes: fifty times what the ring holds.
    for seq in 0..2000 {
        fed.push(
            f.put(&[&message(seq, 100)], soon(), &mut tress::Uninterruptible)
                .unwrap(),
        );
    }
    assert!(start.elapsed() < BOUND, "a put waited for room");
    assert_eq!(fed[0], Fed::Placed);
    assert!(fed.contains(&Fed::Started));
    assert!(f.kept() > 1000, "the ring holds only ~36 of them");
    assert_eq!(q.len(), 2000);
    // A reader in another process takes them all, in order.
    let reader = fork_child({
        let q = Arc::clone(&q);
        move || {
            for seq in 0..2000 {
                let got = q
                    .get_with(soon(), &mut tress::Uninterruptible, check)
                    .unwrap();
                assert_eq!(got, seq);
            }
        }
    });
    assert!(f.flush(soon(), &mut tress::Uninterruptible).unwrap());
    assert_eq!(f.kept(), 0);
    assert_eq!(reap(reader), 0);
    assert_eq!(q.len(), 0);
    // Drained, the next put goes straight into the ring again.
    assert_eq!(
        f.put(&[b"again"], soon(), &mut tress::Uninterruptible),
        Ok(Fed::Placed)
    );
}

#[test]
fn a_feeder_waits_only_for_the_bound_in_messages() {
    use tress::ipc::Feeder;
    let q = Arc::new(ByteQueue::create(1 << 12, 3).unwrap());
    let f = Feeder::new(Arc::clone(&q));
    for seq in 0..3 {
        f.put(&[&message(seq, 2000)], soon(), &mut tress::Uninterruptible)
            .unwrap();
    }
    // Three 2 KB messages: one in the 4 KiB ring, two kept; the bound is reached.
    let r = f.put(
        &[&message(3, 10)],
        Some(Instant::now() + Duration::from_millis(30)),
        &mut tress::Uninterruptible,
    );
    assert_eq!(r, Err(SendError::Full));
    for seq in 0..3 {
        assert_eq!(
            q.get_with(soon(), &mut tress::Uninterruptible, check),
            Ok(seq)
        );
    }
    assert!(f.flush(soon(), &mut tress::Uninterruptible).unwrap());
}

#[test]
fn a_forked_child_does_not_place_what_its_parent_kept() {
    use tress::ipc::Feeder;
    let q = Arc::new(ByteQueue::create(1 << 12, 0).unwrap());
    let f = Feeder::new(Arc::clone(&q));
    for seq in 0..200 {
        f.put(&[&message(seq, 100)], soon(), &mut tress::Uninterruptible)
            .unwrap();
    }
    assert!(f.kept() > 0);
    let child = fork_child(|| {
        // The child's copy starts empty and its puts go behind nothing.
        assert_eq!(f.kept(), 0);
        assert!(
            f.flush(Some(Instant::now()), &mut tress::Uninterruptible)
                .unwrap()
        );
        f.put(
            &[&message(1_000_000, 100)],
            soon(),
            &mut tress::Uninterruptible,
        )
        .unwrap();
        assert!(f.flush(soon(), &mut tress::Uninterruptible).unwrap());
    });
    let mut seen = Vec::new();
    while seen.len() < 201 {
        seen.push(
            q.get_with(soon(), &mut tress::Uninterruptible, check)
                .unwrap(),
        );
    }
    assert_eq!(reap(child), 0);
    let parent: Vec<u64> = seen.iter().copied().filter(|&s| s < 1_000_000).collect();
    assert_eq!(
        parent,
        (0..200).collect::<Vec<_>>(),
        "each of the parent's once, in order"
    );
    assert_eq!(seen.len(), 201);
}

/// An interrupt that abandons the wait once `after` has passed (looked at
/// every 10 ms), as Ctrl-C does for Python's bindings.
struct GiveUpAfter(Instant);

impl tress::Interrupt for GiveUpAfter {
    type Error = &'static str;
    fn slice(&self) -> Option<Duration> {
        Some(Duration::from_millis(10))
    }
    fn check(&mut self) -> Result<(), &'static str> {
        if Instant::now() >= self.0 {
            Err("interrupted")
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_participant_stopped_holding_the_lock_does_not_stop_timeouts() {
    let q = Arc::new(ByteQueue::create(1 << 12, 0).unwrap());
    q.try_put(&[b"before"]).unwrap();
    let child = fork_child({
        let q = Arc::clone(&q);
        move || {
            q.test_hold_lock();
            // SAFETY: stopping this (child) process; the parent kills it.
            unsafe { libc::raise(libc::SIGSTOP) };
        }
    });
    let mut status = 0;
    // SAFETY: waiting for our own child to stop.
    let r = unsafe { libc::waitpid(child, &mut status, libc::WUNTRACED) };
    assert!(
        r == child && libc::WIFSTOPPED(status),
        "the child did not stop"
    );
    let start = Instant::now();
    let got = q.get_with(
        Some(Instant::now() + Duration::from_millis(100)),
        &mut tress::Uninterruptible,
        |m| m.to_vec(),
    );
    assert_eq!(got, Err(GetError::Empty));
    let put = q.put_with(
        &[b"x"],
        Some(Instant::now() + Duration::from_millis(100)),
        &mut tress::Uninterruptible,
    );
    assert_eq!(put, Err(SendError::Full));
    assert_eq!(q.len(), 1, "the failed put took its admission back");
    let got = q.get_with(
        None,
        &mut GiveUpAfter(Instant::now() + Duration::from_millis(100)),
        |m| m.to_vec(),
    );
    assert_eq!(got, Err(GetError::Failed("interrupted")));
    let put = q.put_with(
        &[b"x"],
        None,
        &mut GiveUpAfter(Instant::now() + Duration::from_millis(100)),
    );
    assert_eq!(put, Err(SendError::Failed("interrupted")));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // Killed, the holder's lock is taken over and the queue goes on.
    kill(child);
    assert_eq!(reap(child), -libc::SIGKILL);
    assert_eq!(
        q.get_with(soon(), &mut tress::Uninterruptible, |m| m.to_vec()),
        Ok(b"before".to_vec())
    );
    q.put_with(&[b"after"], soon(), &mut tress::Uninterruptible)
        .unwrap();
    assert_eq!(q.try_get(|m| m.to_vec()), Ok(b"after".to_vec()));
    assert_eq!(q.len(), 0);
}

#[test]
fn a_ring_reserves_its_memory_as_it_is_first_used() {
    let q = ByteQueue::create(8 << 20, 0).unwrap();
    let at_start = allocated(&q);
    assert!(
        at_start <= 4096 + (64 << 10) + 8192,
        "{at_start} bytes at creation"
    );
    // A queue that is often empty uses its first pages only, however much
    // goes through it.
    for seq in 0..10_000 {
        q.put(&[&message(seq, 1000)]).unwrap();
        assert_eq!(q.get(check), seq);
    }
    assert_eq!(allocated(&q), at_start);
    // Filled, it grows by doubling to what it holds, and no more.
    for seq in 0..3000 {
        q.put(&[&message(seq, 1000)]).unwrap();
    }
    let filled = allocated(&q);
    assert!(
        (3000 * 1024..2 * 3000 * 1024 + 8192).contains(&filled),
        "{filled}"
    );
    for seq in 0..3000 {
        assert_eq!(q.get(check), seq);
    }
}

/// The slot header at the start of a fresh queue's ring (16 bytes: state,
/// pid, length), as a peer with the memory file mapped can write it.
fn first_slot_len(q: &ByteQueue) -> &std::sync::atomic::AtomicU64 {
    // SAFETY: the ring starts 4096 bytes into the segment; a fresh queue's
    // first message sits at its start; its length field is 8 bytes in,
    // 8-aligned, and an atomic over shared memory.
    unsafe { &*(q.segment().as_ptr().add(4096 + 8) as *const std::sync::atomic::AtomicU64) }
}

#[test]
fn a_corrupt_length_from_a_peer_is_an_error_not_a_wild_read() {
    use std::sync::atomic::Ordering;
    let q = ByteQueue::create(1 << 12, 0).unwrap();
    for bad in [1 << 40, 4090, (1 << 63) | 12345] {
        q.put(&[b"hello"]).unwrap();
        // A peer scribbles over the slot's length (and, with bit 63, turns
        // it into a reference to nowhere).
        first_slot_len(&q).store(bad, Ordering::Relaxed);
        let got = q
            .get_message_with(soon(), &mut tress::Uninterruptible, |m| {
                m.with_bytes(|b| b.to_vec())
            })
            .unwrap();
        let err = got.expect_err("a corrupt message read");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        // The slot is freed; the queue goes on.
        assert!(q.is_empty());
        q.put(&[b"after"]).unwrap();
        assert_eq!(q.get(|m| m.to_vec()), b"after");
    }
}

#[test]
fn a_corrupt_head_or_tail_is_an_error_and_walks_end() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let q = ByteQueue::create(1 << 12, 0).unwrap();
    q.put(&[b"x"]).unwrap();
    // SAFETY: the header's `tail` is its fifth 8-byte field (magic,
    // capacity, bound, head, tail), an atomic in shared memory.
    let tail = unsafe { &*(q.segment().as_ptr().add(32) as *const AtomicU64) };
    let was = tail.load(Ordering::Relaxed);
    tail.store(u64::MAX - 7, Ordering::Relaxed);
    match q.try_put(&[b"y"]) {
        Err(SendError::Memory { reason, .. }) => assert!(reason.contains("corrupt"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(q.len(), 1, "the failed put took its admission back");
    // Walks of an impossible span see an empty ring; nothing loops or
    // reads past the ring.
    assert!(q.try_get(|m| m.to_vec()).is_err());
    tail.store(was, Ordering::Relaxed);
    assert_eq!(q.get(|m| m.to_vec()), b"x");
}
