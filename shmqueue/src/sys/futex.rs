//! The waiting protocol's system calls: shared futexes (keyed by inode and
//! offset, so waiters and wakers in different processes meet) and the
//! global expedited membarrier. The protocol itself is in `wait.rs`.

use std::sync::atomic::AtomicU32;

use rustix::thread::{futex, membarrier, MembarrierCommand};
use rustix::time::Timespec;

/// How a futex wait ended.
pub(crate) enum Woken {
    /// A wake, a value change, a signal or a spurious return.
    Maybe,
    /// The absolute deadline passed.
    TimedOut,
    /// The call failed (ENOSYS under a sandbox, EFAULT): the caller must
    /// not spin on it.
    Failed,
}

/// `FUTEX_WAIT_BITSET` without `FUTEX_PRIVATE_FLAG`, absolute
/// `CLOCK_MONOTONIC` deadline: sleep while `*word == expected`.
pub(crate) fn wait(word: &AtomicU32, expected: u32, until: &Timespec) -> Woken {
    let all = core::num::NonZeroU32::MAX;
    match futex::wait_bitset(word, futex::Flags::empty(), expected, Some(until), all) {
        Ok(()) => Woken::Maybe,
        Err(e) if e == rustix::io::Errno::TIMEDOUT => Woken::TimedOut,
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => Woken::Maybe,
        Err(_) => Woken::Failed,
    }
}

/// `FUTEX_WAKE` every waiter on `word`, in any process.
pub(crate) fn wake_all(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

/// `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`: let other processes' global
/// expedited barriers reach this one. False if the kernel refuses.
pub(crate) fn register_for_barriers() -> bool {
    membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok()
}

/// `MEMBARRIER_CMD_GLOBAL_EXPEDITED`: every running thread of every
/// registered process executes a full memory barrier before this returns.
/// False if it could not be issued.
pub(crate) fn barrier_everywhere() -> bool {
    membarrier(MembarrierCommand::GlobalExpedited).is_ok()
}
