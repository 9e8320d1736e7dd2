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

/// How a [`wait_many`] ended.
#[cfg(all(feature = "tokio", not(shmqueue_loom)))]
pub(crate) enum WokenMany {
    /// A wake, a value change, a signal or a spurious return: re-check all.
    Maybe,
    /// The absolute deadline passed.
    TimedOut,
    /// The kernel has no `futex_waitv` (ENOSYS: Linux < 5.16), or a seccomp
    /// filter refuses it (EPERM): the caller must not try again.
    Unsupported,
    /// Any other failure (EFAULT, EINVAL): the caller must not spin on it.
    Failed,
}

/// `futex_waitv` (Linux 5.16+): sleep until any of `words` (address,
/// expected value, process-private?) differs from its expected value or is
/// woken, or until the absolute `CLOCK_MONOTONIC` time `until`. At most 128
/// words (the kernel's `FUTEX_WAITV_MAX`).
///
/// The addresses are only handed to the kernel, which reads each word once
/// (atomically with queueing the waiter, as `FUTEX_WAIT` does) and never
/// writes them; a stale one makes the call fail with EFAULT, never touches
/// memory of ours. Shared words are keyed by (inode, offset) like every
/// futex of the waiting protocol, so wakes from other processes meet them.
#[cfg(all(feature = "tokio", not(shmqueue_loom)))]
pub(crate) fn wait_many(
    words: &[(core::ptr::NonNull<AtomicU32>, u32, bool)],
    until: Option<&Timespec>,
) -> WokenMany {
    use rustix::io::Errno;
    use rustix::thread::futex::{Wait, WaitFlags, WaitPtr, WaitvFlags};
    let mut waits = [Wait::new(); 128];
    let n = words.len().min(waits.len());
    for (w, &(addr, expected, private)) in waits.iter_mut().zip(&words[..n]) {
        w.val = u64::from(expected);
        w.uaddr = WaitPtr::new(addr.as_ptr().cast());
        w.flags = if private {
            WaitFlags::SIZE_U32 | WaitFlags::PRIVATE
        } else {
            WaitFlags::SIZE_U32
        };
    }
    match futex::waitv(
        &waits[..n],
        WaitvFlags::empty(),
        until,
        rustix::time::ClockId::Monotonic,
    ) {
        Ok(_) => WokenMany::Maybe,
        Err(Errno::TIMEDOUT) => WokenMany::TimedOut,
        Err(Errno::AGAIN) | Err(Errno::INTR) => WokenMany::Maybe,
        Err(Errno::NOSYS) | Err(Errno::PERM) => WokenMany::Unsupported,
        Err(_) => WokenMany::Failed,
    }
}

/// `FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG` on a word of this process's own
/// memory (the async waiter's doorbell), until `until` (forever if `None`).
#[cfg(all(feature = "tokio", not(shmqueue_loom)))]
pub(crate) fn wait_private(word: &AtomicU32, expected: u32, until: Option<&Timespec>) -> Woken {
    let all = core::num::NonZeroU32::MAX;
    match futex::wait_bitset(word, futex::Flags::PRIVATE, expected, until, all) {
        Ok(()) => Woken::Maybe,
        Err(e) if e == rustix::io::Errno::TIMEDOUT => Woken::TimedOut,
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => Woken::Maybe,
        Err(_) => Woken::Failed,
    }
}

/// `FUTEX_WAKE | FUTEX_PRIVATE_FLAG` of one waiter on a word of this
/// process's own memory (the async waiter's doorbell).
#[cfg(all(feature = "tokio", not(shmqueue_loom)))]
pub(crate) fn wake_private(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::PRIVATE, 1);
}
