//! Signals delivered to a loop through a wake-up descriptor.
//!
//! A signal handler may do almost nothing; writing one byte to a
//! non-blocking pipe is one of the things it may do. The loop watches the
//! pipe's read end with its poller, so a signal wakes it from a blocking
//! poll, and reads the signal numbers back in order. Python's interpreter
//! has such a handler already (`signal.set_wakeup_fd`, which asyncio uses):
//! a loop embedded in Python hands it [`SignalPipe::write_fd`]. A Rust
//! program asks this module for the handler: [`SignalPipe::catch`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// The write end the handler installed by [`SignalPipe::catch`] writes to
/// (-1: none).
static TARGET: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signo: libc::c_int) {
    let fd = TARGET.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signo as u8;
        // SAFETY: write(2) and errno access are async-signal-safe; errno is
        // restored so the interrupted code sees its own. A full pipe drops
        // the byte (the loop is woken already).
        unsafe {
            let errno = *libc::__errno_location();
            let _ = libc::write(fd, (&byte as *const u8).cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// A non-blocking pipe that carries signal numbers, one byte each.
#[derive(Debug)]
pub struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl SignalPipe {
    /// A new pipe (both ends non-blocking and close-on-exec).
    pub fn new() -> io::Result<SignalPipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by
        // nothing else.
        Ok(unsafe {
            SignalPipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }

    /// The end a handler writes to (Python: `signal.set_wakeup_fd(fd)`).
    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// Appends the signal numbers received since the last call to `out`,
    /// oldest first.
    pub fn read_into(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: reads at most `buf.len()` bytes into `buf`.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
    }

    /// Installs a handler for `signo` that writes it to this pipe (the
    /// process's only such pipe: a later `catch` on another pipe redirects
    /// every caught signal there). The handler restarts interrupted system
    /// calls where the kernel can.
    pub fn catch(&self, signo: libc::c_int) -> io::Result<()> {
        TARGET.store(self.write.as_raw_fd(), Ordering::SeqCst);
        // SAFETY: a zeroed sigaction is valid; the handler only does
        // async-signal-safe work (see `on_signal`).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(signo, &sa, std::ptr::null_mut()) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Puts `signo`'s default disposition back.
    pub fn restore(signo: libc::c_int) -> io::Result<()> {
        // SAFETY: SIG_DFL is a valid disposition for any catchable signal;
        // an invalid one is an error (EINVAL).
        if unsafe { libc::signal(signo, libc::SIG_DFL) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        let _ = TARGET.compare_exchange(
            self.write.as_raw_fd(),
            -1,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

impl AsRawFd for SignalPipe {
    fn as_raw_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}
