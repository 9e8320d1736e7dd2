//! Kernel-held liveness tokens: how a survivor tells a dead peer from a slow one.
//!
//! An endpoint that holds registry entry `i` holds a write lock on byte `i`
//! of the segment file, taken with `F_OFD_SETLK` on a descriptor of its own
//! (re-opened through `/proc/self/fd`, so every endpoint has its own open
//! file description even within one process). The kernel releases an OFD
//! lock when the last descriptor of that description closes, which happens
//! when the process exits for any reason, SIGKILL included. A peer asks with
//! `F_OFD_GETLK` whether anyone holds byte `i`.
//!
//! Why this and not a pid: `kill(pid, 0)` is fooled by pid reuse; the lock is
//! tied to the holder's open file, not its number. Why not a pidfd: a pidfd
//! must be obtained while the peer is still alive and passed around; the lock
//! needs nothing but the segment itself. Why OFD and not classic POSIX
//! (`F_SETLK`) locks: POSIX locks belong to the process, so two endpoints in
//! one process would not exclude each other, and closing *any* descriptor of
//! the file drops them all.
//!
//! The same works for memfd queues: `/proc/self/fd/N` of a memfd reopens
//! the same inode (mode 0777), so any process that was handed the
//! descriptor, of any uid, can take and test tokens (`tests/memfd.rs`).
//!
//! The descriptor is opened with `O_CLOEXEC`; a process that `fork`s without
//! `exec` shares its description with the child, and the token then lives
//! until both have exited.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;

use crate::Error;

fn io(op: &'static str, e: Errno) -> Error {
    Error::Io {
        op,
        source: std::io::Error::from(e),
    }
}

fn lock_range(kind: libc::c_int, index: u32) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: libc::off_t::from(index),
        l_len: 1,
        // OFD locks require l_pid = 0.
        l_pid: 0,
    }
}

/// A held liveness token; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct Token {
    _fd: OwnedFd,
}

/// Take the token for entry `index`, or `None` if a live endpoint holds it.
pub(crate) fn acquire(segment: BorrowedFd<'_>, index: u32) -> Result<Option<Token>, Error> {
    let path = format!("/proc/self/fd/{}", segment.as_raw_fd());
    let fd = open(
        path.as_str(),
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        io(
            "re-open segment through /proc/self/fd (is /proc mounted?)",
            e,
        )
    })?;
    let lock = lock_range(libc::F_WRLCK, index);
    match fcntl(fd.as_fd(), FcntlArg::F_OFD_SETLK(&lock)) {
        Ok(_) => Ok(Some(Token { _fd: fd })),
        Err(Errno::EAGAIN) | Err(Errno::EACCES) => Ok(None),
        Err(e) => Err(io("fcntl(F_OFD_SETLK)", e)),
    }
}

/// Whether some open file description (in any process) holds entry `index`.
pub(crate) fn is_held(segment: BorrowedFd<'_>, index: u32) -> Result<bool, Error> {
    let mut lock = lock_range(libc::F_WRLCK, index);
    fcntl(segment, FcntlArg::F_OFD_GETLK(&mut lock)).map_err(|e| io("fcntl(F_OFD_GETLK)", e))?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}
