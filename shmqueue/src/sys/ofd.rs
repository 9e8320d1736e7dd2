//! Byte-range open-file-description locks (`F_OFD_SETLK`, `F_OFD_GETLK`),
//! the kernel-held liveness tokens of `liveness.rs`.
//!
//! rustix's `fcntl_lock` locks whole files only, so the range lock goes
//! through libc, in the one unsafe function [`fcntl_flock`].

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// The kind of lock to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Shared (`F_RDLCK`).
    Read,
    /// Exclusive (`F_WRLCK`).
    Write,
}

/// A request for `len` bytes from `start` (`len` 0: to the end of any
/// possible file).
fn request(kind: libc::c_int, start: u64, len: u64) -> Result<libc::flock, Errno> {
    let start = libc::off_t::try_from(start).map_err(|_| Errno::INVAL)?;
    let len = libc::off_t::try_from(len).map_err(|_| Errno::INVAL)?;
    Ok(libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start,
        l_len: len,
        // OFD locks require l_pid = 0.
        l_pid: 0,
    })
}

/// `fcntl(fd, cmd, lock)` for `cmd` one of `F_OFD_SETLK`/`F_OFD_GETLK`.
fn fcntl_flock(fd: BorrowedFd<'_>, cmd: libc::c_int, lock: &mut libc::flock) -> Result<(), Errno> {
    debug_assert!(cmd == libc::F_OFD_SETLK || cmd == libc::F_OFD_GETLK);
    // SAFETY: `fd` is open for the duration of the call (borrowed), and
    // both commands take a pointer to one `struct flock`, which `lock` is:
    // valid, aligned and exclusively ours for the call; SETLK only reads it,
    // GETLK overwrites it with another valid `struct flock`.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, lock as *mut libc::flock) };
    if r == -1 {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
    } else {
        Ok(())
    }
}

/// Take a `kind` lock on `len` bytes from `start` for `fd`'s open file
/// description (`F_OFD_SETLK`, never blocks). `Ok(false)`: another
/// description holds a conflicting lock.
pub(crate) fn try_lock(
    fd: BorrowedFd<'_>,
    kind: Lock,
    start: u64,
    len: u64,
) -> Result<bool, Errno> {
    let kind = match kind {
        Lock::Read => libc::F_RDLCK,
        Lock::Write => libc::F_WRLCK,
    };
    let mut lock = request(kind, start, len)?;
    match fcntl_flock(fd, libc::F_OFD_SETLK, &mut lock) {
        Ok(()) => Ok(true),
        Err(Errno::AGAIN) | Err(Errno::ACCESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether an open file description other than `fd`'s holds any lock (read
/// or write) on a byte of `len` bytes from `start` (`F_OFD_GETLK`).
pub(crate) fn is_locked(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<bool, Errno> {
    // Asking about a write lock reports read and write locks alike; GETLK
    // needs no write access to the descriptor.
    let mut lock = request(libc::F_WRLCK, start, len)?;
    fcntl_flock(fd, libc::F_OFD_GETLK, &mut lock)?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// A new open file description of the same file as `fd`, read-write and
/// close-on-exec, through `/proc/self/fd` (a `dup` would share `fd`'s
/// description, and with it its locks).
pub(crate) fn reopen(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn memfd() -> OwnedFd {
        rustix::fs::memfd_create("ofd-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap()
    }

    #[test]
    fn range_locks_conflict_only_where_they_overlap() {
        let a = memfd();
        let b = reopen(a.as_fd()).unwrap();
        // Byte 5, far past the end of the empty file: allowed.
        assert!(try_lock(a.as_fd(), Lock::Write, 5, 1).unwrap());
        // Own locks are never reported; another description sees them.
        assert!(!is_locked(a.as_fd(), 5, 1).unwrap());
        assert!(is_locked(b.as_fd(), 5, 1).unwrap());
        assert!(is_locked(b.as_fd(), 0, 0).unwrap());
        // Only the byte is taken: its neighbours are free for `b`.
        assert!(!is_locked(b.as_fd(), 4, 1).unwrap());
        assert!(!is_locked(b.as_fd(), 6, 1).unwrap());
        assert!(try_lock(b.as_fd(), Lock::Write, 6, 1).unwrap());
        assert!(!try_lock(b.as_fd(), Lock::Write, 5, 1).unwrap());
        assert!(!try_lock(b.as_fd(), Lock::Read, 0, 0).unwrap());
    }

    #[test]
    fn read_locks_share_and_exclude_writers() {
        let a = memfd();
        let b = reopen(a.as_fd()).unwrap();
        let c = reopen(a.as_fd()).unwrap();
        let byte = 1u64 << 32;
        assert!(try_lock(a.as_fd(), Lock::Read, byte, 1).unwrap());
        assert!(try_lock(b.as_fd(), Lock::Read, byte, 1).unwrap());
        assert!(!try_lock(c.as_fd(), Lock::Write, byte, 1).unwrap());
        assert!(is_locked(c.as_fd(), byte, 1).unwrap());
        // Closing a description releases its lock (what liveness relies on).
        drop(a);
        drop(b);
        assert!(!is_locked(c.as_fd(), byte, 1).unwrap());
        assert!(try_lock(c.as_fd(), Lock::Write, 0, 0).unwrap());
    }
}
