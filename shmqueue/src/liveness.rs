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
//!
//! ## Fork
//!
//! A forked child holds bitwise copies of its parent's endpoints. Whatever
//! it does with them, dropping them must not act for the parent: a child's
//! drop used to mark the parent's live role DETACHED, and its consumer then
//! saw `Disconnected` while its producer kept publishing. So every endpoint
//! records the [`fork_generation`] it attached in, and its drop (and the
//! drops of its guards: message writers, in-place readers) writes nothing to
//! the segment in another generation: the child just closes its copies.
//! The generation is a process-global counter that a `pthread_atfork` child
//! handler bumps, so the check on a drop path is one relaxed load, not a
//! `getpid` system call.
//!
//! ## Byte assignment
//!
//! | bytes | lock | held by |
//! |---|---|---|
//! | `i` for `i < endpoints` (at most `2 × 1024`) | write | the endpoint holding registry entry `i` |
//! | [`HANDLE_BYTE`] = 2^32 | read (shared) | every handle: each mapping of the segment through shmqueue (`Spsc`, `Mpmc`, …), from just after `shm_open` until it is dropped |
//! | the whole file, `[0, ∞)` | write | `shmqueue::inspect::remove`, for the instant between checking the header and unlinking |
//!
//! The handle byte lies beyond every possible registry index (a `u32`), so
//! the two kinds of token never overlap; locks past the end of the file are
//! allowed and cost nothing. A handle's read lock sits on the segment's own
//! descriptor (the one that maps it), so it lasts exactly as long as the
//! handle, and the kernel drops it when the process dies. "Nobody holds any
//! lock on the file" therefore means "no process has this segment open
//! through shmqueue": the segment is *stale* (see `inspect.rs`).
//!
//! A creator takes its handle lock right after `shm_open` and before it
//! sizes the file or writes the header; an opener right after `shm_open`.
//! So a header with a valid magic number was written by someone who held a
//! handle lock at the time, and a prober that reads the magic *before* it
//! probes the locks never calls a segment in its creator's init window stale.
//! A remover holds the whole-file write lock while it re-reads the header and
//! unlinks; an opener that arrives then waits for it (bounded) and finds the
//! file unlinked (`st_nlink == 0`), which it reports as `NotFound`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

use crate::sys::ofd::{self, Lock};
use crate::Error;

fn io(op: &'static str, e: Errno) -> Error {
    Error::Io {
        op,
        source: std::io::Error::from(e),
    }
}

static FORK_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn forked_child() {
    // In the child, right after fork: async-signal-safe (one atomic add).
    FORK_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// This process's fork generation: 0 in a process that no `fork()` created
/// since the first endpoint attached, one more in each forked child (see
/// the module docs, "Fork").
#[inline]
pub(crate) fn fork_generation() -> u64 {
    FORK_GENERATION.load(std::sync::atomic::Ordering::Relaxed)
}

/// Register the fork handler once per process; called before an endpoint
/// records its generation, so no fork after an attach goes unseen.
pub(crate) fn watch_forks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The handler only bumps an atomic: async-signal-safe. On failure
        // (ENOMEM) the generation never moves and drops behave as before:
        // reported, not fatal.
        if let Err(r) = crate::sys::fork::on_fork_in_child(forked_child) {
            eprintln!(
                "shmqueue: pthread_atfork failed ({r}); endpoints dropped in a forked \
                 child may detach their parent's roles"
            );
        }
    });
}

/// The byte whose shared OFD lock every handle holds (see the module docs):
/// one past the largest registry index a `u32` can name.
pub(crate) const HANDLE_BYTE: u64 = 1 << 32;

/// A held liveness token; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct Token {
    _fd: OwnedFd,
}

/// Take the token for entry `index`, or `None` if a live endpoint holds it.
pub(crate) fn acquire(segment: BorrowedFd<'_>, index: u32) -> Result<Option<Token>, Error> {
    let fd = ofd::reopen(segment).map_err(|e| {
        io(
            "re-open segment through /proc/self/fd (is /proc mounted?)",
            e,
        )
    })?;
    match ofd::try_lock(fd.as_fd(), Lock::Write, u64::from(index), 1) {
        Ok(true) => Ok(Some(Token { _fd: fd })),
        Ok(false) => Ok(None),
        Err(e) => Err(io("fcntl(F_OFD_SETLK)", e)),
    }
}

/// Whether some open file description (in any process) holds entry `index`.
pub(crate) fn is_held(segment: BorrowedFd<'_>, index: u32) -> Result<bool, Error> {
    ofd::is_locked(segment, u64::from(index), 1).map_err(|e| io("fcntl(F_OFD_GETLK)", e))
}

/// Take the handle's shared lock on [`HANDLE_BYTE`] with the segment's own
/// descriptor (so it lives as long as the mapping's descriptor). A remover
/// holds a whole-file write lock for an instant; retry until `deadline`.
/// `Ok(false)`: still refused at the deadline.
pub(crate) fn hold_handle(
    segment: BorrowedFd<'_>,
    deadline: std::time::Instant,
) -> Result<bool, Error> {
    loop {
        match ofd::try_lock(segment, Lock::Read, HANDLE_BYTE, 1) {
            Ok(true) => return Ok(true),
            Ok(false) | Err(Errno::INTR) => {}
            Err(e) => return Err(io("fcntl(F_OFD_SETLK) on the handle byte", e)),
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        // Bounded poll: a remover holds its lock only while it unlinks.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Whether any open file description other than `fd`'s holds a handle lock.
pub(crate) fn handle_held(fd: BorrowedFd<'_>) -> Result<bool, Error> {
    probe(fd, HANDLE_BYTE, 1)
}

/// Whether any open file description other than `fd`'s holds any lock on
/// any byte of the file: a handle, an endpoint token, or a remover.
pub(crate) fn any_lock_held(fd: BorrowedFd<'_>) -> Result<bool, Error> {
    probe(fd, 0, 0)
}

fn probe(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<bool, Error> {
    ofd::is_locked(fd, start, len).map_err(|e| io("fcntl(F_OFD_GETLK)", e))
}

/// Take a write lock on the whole file with `fd` (opened read-write), or
/// `Ok(false)` if anyone else holds any lock on it. Held until `fd`'s
/// description closes. The remover's proof that nobody uses the segment.
pub(crate) fn lock_whole_file(fd: BorrowedFd<'_>) -> Result<bool, Error> {
    match ofd::try_lock(fd, Lock::Write, 0, 0) {
        Ok(taken) => Ok(taken),
        Err(e) => Err(io("fcntl(F_OFD_SETLK) on the whole segment", e)),
    }
}
