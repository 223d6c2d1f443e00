//! Readiness of file descriptors: `epoll(7)`, level-triggered (as asyncio's
//! `add_reader`/`add_writer`: a callback runs every iteration while its
//! descriptor stays ready), plus an `eventfd(2)` that wakes a blocked poll
//! from another thread.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// What a registration waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interest {
    /// Readable (or the peer hung up, or an error: a read then says which).
    pub read: bool,
    /// Writable (or an error).
    pub write: bool,
}

impl Interest {
    /// Readable.
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
    /// Writable.
    pub const WRITE: Interest = Interest {
        read: false,
        write: true,
    };
    /// Both.
    pub const BOTH: Interest = Interest {
        read: true,
        write: true,
    };

    fn bits(self) -> u32 {
        let mut e = 0;
        if self.read {
            e |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if self.write {
            e |= libc::EPOLLOUT as u32;
        }
        e
    }
}

/// One ready descriptor, by the token it was registered with. An error or
/// a hang-up reports both directions (as `selectors`' epoll does): the
/// caller keeps the ones it registered for, and the next read or write
/// says what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The registration's token.
    pub token: u64,
    /// Readable, hung up or in error (a read says which).
    pub readable: bool,
    /// Writable, or in error (a write says which).
    pub writable: bool,
}

/// Room for the events of one poll.
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Events {
    /// Room for `capacity` events per poll (more ready descriptors are
    /// reported by the next poll: level-triggered, nothing is lost).
    pub fn with_capacity(capacity: usize) -> Events {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            len: 0,
        }
    }

    /// The events of the last poll.
    pub fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
        self.buf[..self.len].iter().map(|e| {
            let bits = e.events;
            let err = bits & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            Ready {
                token: e.u64,
                readable: err || bits & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0,
                writable: err || bits & libc::EPOLLOUT as u32 != 0,
            }
        })
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last poll reported none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An epoll instance.
#[derive(Debug)]
pub struct Poller {
    epoll: OwnedFd,
}

impl Poller {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Poller> {
        // SAFETY: plain system call; a non-negative result is a new
        // descriptor that nothing else owns.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Poller {
            // SAFETY: `fd` was just created and is owned by nothing else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, interest: Interest, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest.bits(),
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the call's duration; a
        // bad `fd` is an error (EBADF), not undefined behaviour.
        cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Watches `fd` for `interest`, reported with `token`. `EEXIST` if it
    /// is watched already.
    pub fn register(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest, token)
    }

    /// Changes what `fd` is watched for (an empty interest keeps it
    /// registered but reports nothing).
    pub fn modify(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest, token)
    }

    /// Stops watching `fd`.
    pub fn deregister(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, Interest::default(), 0)
    }

    /// Waits for readiness up to `timeout` (`None`: until something is
    /// ready). A signal delivered meanwhile ends the wait with no events
    /// (not an error): the caller looks at its signals and polls again.
    /// A timeout is rounded up to the next millisecond, so a poll never
    /// returns before a timer it waits for is due.
    pub fn poll(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        wait(self.epoll.as_fd(), events, timeout)
    }
}

/// [`Poller::poll`] on an epoll descriptor made elsewhere (e.g. the one a
/// Python `selectors.EpollSelector` registers its descriptors with; the
/// tokens are then what its owner stored, Python's `select.epoll` the
/// descriptor itself in the low 32 bits).
pub fn wait(
    epoll: BorrowedFd<'_>,
    events: &mut Events,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            ms.min(i32::MAX as u128) as libc::c_int
        }
    };
    // SAFETY: the buffer holds `buf.len()` epoll_events, writable for the
    // call's duration; a descriptor that is not an epoll instance is an
    // error (EINVAL), not undefined behaviour.
    let n = unsafe {
        libc::epoll_wait(
            epoll.as_raw_fd(),
            events.buf.as_mut_ptr(),
            events.buf.len() as libc::c_int,
            ms,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        events.len = 0;
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    events.len = n as usize;
    Ok(events.len)
}

impl AsRawFd for Poller {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}

/// An `eventfd(2)`: written by any thread to wake a poll, drained by the
/// loop.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain system call creating a new descriptor.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        Ok(Waker {
            // SAFETY: `fd` was just created and is owned by nothing else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes the eventfd readable (its counter saturating is no error: it
    /// is readable then anyway).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to a descriptor this owns.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Reads the counter back to zero; whether it was set.
    pub fn drain(&self) -> bool {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from a descriptor this owns.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut count as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        n == std::mem::size_of::<u64>() as isize && count > 0
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
