//! Shared-memory segments: anonymous memory files (`memfd_create`), reserved
//! at creation and mapped shared.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// A region of memory shared between processes: an anonymous memory file
/// (Linux's `memfd_create`) mapped `MAP_SHARED`.
///
/// - **Private**: the file has no name anywhere in the file system; a
///   process reaches it only through a descriptor it inherited (`fork`) or
///   was handed (`SCM_RIGHTS`, which Python's `multiprocessing` does when
///   it starts a spawn or forkserver child).
/// - **Nothing to clean up**: nothing is ever created in `/dev/shm`, so
///   nothing can be left there, whatever happens to the participants; the
///   kernel frees the memory when the last descriptor and mapping are gone
///   (also when every participant is killed with `SIGKILL`).
/// - **Reserved at creation**: the pages are allocated (`fallocate`) before
///   the segment is returned, so a machine short of memory fails
///   [`create`](Self::create) with an error naming the size, never with a
///   `SIGBUS` on first touch later.
///
/// # Examples
///
/// ```
/// use tress::ipc::Segment;
///
/// let seg = Segment::create(4096, "example").unwrap();
/// assert_eq!(seg.len(), 4096);
/// // SAFETY: the segment is 4096 bytes long and nobody else maps it.
/// unsafe { seg.as_ptr().write(7) };
/// let again = Segment::from_fd(seg.try_clone_fd().unwrap()).unwrap();
/// // SAFETY: as above; both mappings show the same memory.
/// assert_eq!(unsafe { again.as_ptr().read() }, 7);
/// ```
#[derive(Debug)]
pub struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory owned by this value; the raw
// pointer is only an address, and what is stored there is synchronized by
// the structures built on the segment (atomics), not by `Segment`.
unsafe impl Send for Segment {}
// SAFETY: as for `Send`: `Segment` itself hands out only the address.
unsafe impl Sync for Segment {}

/// Allocates the pages of bytes `off..off + len` of the file behind `fd`.
fn fallocate(fd: libc::c_int, off: usize, len: usize) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(off), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: a plain call on a descriptor the caller holds; the kernel
    // checks the range.
    if unsafe { libc::fallocate(fd, 0, off, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn reserve_error(len: usize, label: &str, err: io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        format!(
            "cannot reserve {len} bytes of shared memory for {label} \
             (an anonymous memory file, memfd_create): {err}"
        ),
    )
}

impl Segment {
    /// A new zero-filled segment of `len` bytes (at least 1), its pages
    /// reserved now. `label` names it in error messages and in
    /// `/proc/<pid>/fd` (as `memfd:tress-<label>`).
    pub fn create(len: usize, label: &str) -> io::Result<Segment> {
        Self::create_reserving(len, len, label)
    }

    /// A new zero-filled segment of `len` bytes whose first `reserved`
    /// bytes only have their pages reserved now; the owner reserves the
    /// rest as it comes to use it ([`reserve`](Self::reserve)) and must
    /// touch nothing it has not reserved (a page not reserved may be
    /// missing when it is first touched: `SIGBUS`).
    pub fn create_reserving(len: usize, reserved: usize, label: &str) -> io::Result<Segment> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a shared-memory segment needs at least one byte",
            ));
        }
        let name = std::ffi::CString::new(format!("tress-{label}"))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "label contains NUL"))?;
        // SAFETY: `name` is a valid NUL-terminated string for the call.
        let raw = unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(reserve_error(len, label, io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a descriptor memfd_create just opened for us.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let file = File::from(fd);
        file.set_len(len as u64)
            .map_err(|e| reserve_error(len, label, e))?;
        fallocate(file.as_raw_fd(), 0, reserved.min(len))
            .map_err(|e| reserve_error(reserved.min(len), label, e))?;
        // Sealed against shrinking (a participant that truncated the file
        // would kill every other one with SIGBUS at its next access), and
        // against further seals; it may still grow (a queue's large
        // messages go past its ring). Its owner alone may open it again
        // through /proc (memfd_create makes it 0777).
        // SAFETY: plain calls on a descriptor we own.
        let sealed = unsafe {
            libc::fcntl(
                file.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL,
            ) == 0
                && libc::fchmod(file.as_raw_fd(), 0o600) == 0
        };
        if !sealed {
            return Err(reserve_error(len, label, io::Error::last_os_error()));
        }
        Self::map(OwnedFd::from(file), len)
    }

    /// Reserves the pages of bytes `off..off + len` of the segment (see
    /// [`create_reserving`](Self::create_reserving)): an error, not a
    /// later `SIGBUS`, if the machine is short of memory.
    pub fn reserve(&self, off: usize, len: usize) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        fallocate(self.fd.as_raw_fd(), off, len)
            .map_err(|e| reserve_error(len, "a queue's ring", e))
    }

    /// Maps the segment behind `fd` (a descriptor of a segment made by
    /// [`create`](Self::create), inherited or received), its whole length.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Segment> {
        let file = File::from(fd);
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "segment too large"))?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a tress shared-memory segment (empty file)",
            ));
        }
        Self::map(OwnedFd::from(file), len)
    }

    /// Maps the first `len` bytes of the segment behind `fd` (a file that
    /// may have grown past what its user needs mapped, as a
    /// [`ByteQueue`](super::ByteQueue)'s does).
    pub fn from_fd_len(fd: OwnedFd, len: usize) -> io::Result<Segment> {
        let file = File::from(fd);
        let size = file.metadata()?.len();
        if len == 0 || (size as u128) < len as u128 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a tress shared-memory segment ({size} bytes, {len} expected)"),
            ));
        }
        Self::map(OwnedFd::from(file), len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Segment> {
        // SAFETY: mapping a descriptor we own with a length it has; the
        // kernel picks the address. MAP_SHARED makes writes visible to every
        // process that maps the same file.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Segment { ptr, len, fd })
    }

    /// The first byte of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a segment has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A new descriptor of the segment, to hand to another process.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`; nothing
        // borrowed from it outlives `self` (borrows are tied to `&self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
