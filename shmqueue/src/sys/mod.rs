//! Every system call the library makes, one module per kind of object:
//! named POSIX shm objects (`shm`), advice and locking for a mapping (`mm`),
//! sealed memfds (`memfd`), passing descriptors between processes
//! (`fdpass`), byte-range OFD locks (`ofd`), fork notification (`fork`), and
//! the futex and membarrier calls of the waiting protocol (`futex`; the
//! protocol is in `wait.rs`). The mapping itself belongs to memmap2
//! (`segment.rs`); clock reads are in `wait.rs` (`clock_gettime`, the one
//! call that is not about an object).
//!
//! The syscall layer is rustix: it has safe, typed wrappers for all of the
//! above (the shared futex and membarrier included, which nix lacks), so one
//! crate does the job. libc is used only where rustix has no wrapper: the
//! byte-range OFD lock (`F_OFD_SETLK`/`F_OFD_GETLK` with a `struct flock`;
//! rustix locks whole files only) and probing a descriptor number that may
//! not be open.

pub(crate) mod fdpass;
pub(crate) mod fork;
pub(crate) mod futex;
pub(crate) mod memfd;
pub(crate) mod mm;
pub(crate) mod ofd;
pub(crate) mod shm;

use crate::Error;

/// A system call's failure that has no more specific error.
pub(crate) fn io(op: &'static str, e: rustix::io::Errno) -> Error {
    Error::Io {
        op,
        source: std::io::Error::from(e),
    }
}
