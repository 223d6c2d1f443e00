//! Criterion benches for `tress::ipc::ByteQueue` between two processes,
//! against a pipe and a Unix stream socket between the same two processes,
//! and against `memcpy` for large messages.
//!
//! A child process is forked once per implementation and message size; it
//! sends `iters` messages of the size when told to (a command on a pipe),
//! and the parent's clock runs from the command to the last message
//! received, so criterion's time per iteration is the time per message,
//! end to end. The byte streams (pipe, socket) carry the same messages with
//! a length prefix, read whole. `memcpy` copies the message once within
//! one process: the floor for any transport of it.
//!
//! ```text
//! cargo bench -p tress --bench ipc                  # ~1 minute
//! cargo bench -p tress --bench ipc -- --quick       # quicker, noisier
//! ```

#![cfg(target_os = "linux")]

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tress::ipc::ByteQueue;

const SIZES: [usize; 3] = [64, 64 << 10, 1 << 20];

/// A pipe as two files.
fn pipe() -> (std::fs::File, std::fs::File) {
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

/// A forked child that, for each `u64` count read from its command pipe,
/// calls `send` that many times; ends when the pipe closes.
struct Child {
    pid: libc::pid_t,
    commands: std::fs::File,
}

impl Child {
    fn spawn(mut send: impl FnMut()) -> Child {
        let (mut read, write) = pipe();
        // SAFETY: the bench is single-threaded when it forks; the child only
        // runs `send` and plain reads, and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            drop(write);
            let mut buf = [0u8; 8];
            while read.read_exact(&mut buf).is_ok() {
                for _ in 0..u64::from_le_bytes(buf) {
                    send();
                }
            }
            // SAFETY: ends the child without running the parent's handlers.
            unsafe { libc::_exit(0) };
        }
        drop(read);
        Child {
            pid,
            commands: write,
        }
    }

    fn produce(&mut self, n: u64) {
        self.commands.write_all(&n.to_le_bytes()).unwrap();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Reads one length-prefixed message into `buf`.
fn read_message(stream: &mut impl Read, buf: &mut Vec<u8>) {
    let mut len = [0u8; 8];
    stream.read_exact(&mut len).unwrap();
    buf.resize(u64::from_le_bytes(len) as usize, 0);
    stream.read_exact(buf).unwrap();
}

fn write_message(stream: &mut impl Write, msg: &[u8]) {
    stream.write_all(&(msg.len() as u64).to_le_bytes()).unwrap();
    stream.write_all(msg).unwrap();
}

fn ipc(c: &mut Criterion) {
    for size in SIZES {
        let mut group = c.benchmark_group(format!("ipc/{size}B"));
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 64 << 10 {
            group.sample_size(20);
        }
        let msg = vec![7u8; size];

        let q = ByteQueue::create((64 << 20).max(4 * size), 0).unwrap();
        {
            let mut child = Child::spawn(|| q.put(&[&msg]).unwrap());
            let mut buf = Vec::with_capacity(size);
            group.bench_function("tress ByteQueue", |b| {
                b.iter_custom(|n| {
                    let start = Instant::now();
                    child.produce(n);
                    for _ in 0..n {
                        q.get(|m| {
                            buf.clear();
                            buf.extend_from_slice(m);
                        });
                    }
                    black_box(&buf);
                    start.elapsed()
                })
            });
        }

        {
            let (mut rx, mut tx) = pipe();
            let mut child = Child::spawn(|| write_message(&mut tx, &msg));
            drop(tx);
            let mut buf = Vec::with_capacity(size);
            group.bench_function("pipe", |b| {
                b.iter_custom(|n| {
                    let start = Instant::now();
                    child.produce(n);
                    for _ in 0..n {
                        read_message(&mut rx, &mut buf);
                    }
                    black_box(&buf);
                    start.elapsed()
                })
            });
        }

        {
            let (mut rx, mut tx) = UnixStream::pair().unwrap();
            let mut child = Child::spawn(|| write_message(&mut tx, &msg));
            let mut buf = Vec::with_capacity(size);
            group.bench_function("unix socket", |b| {
                b.iter_custom(|n| {
                    let start = Instant::now();
                    child.produce(n);
                    for _ in 0..n {
                        read_message(&mut rx, &mut buf);
                    }
                    black_box(&buf);
                    start.elapsed()
                })
            });
        }

        if size >= 64 << 10 {
            let mut dst = vec![0u8; size];
            group.bench_function("memcpy", |b| {
                b.iter(|| {
                    dst.copy_from_slice(black_box(&msg));
                    black_box(&dst);
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = ipc
}
criterion_main!(benches);
