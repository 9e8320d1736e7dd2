//! The sync shim: the one place that decides where atomics, fences and slot
//! cells come from.
//!
//! Every algorithm in this crate (the SPSC ring, the waiting protocol) is
//! written once against these names. Normally they are `std`'s atomics and raw
//! pointer copies into the shared mapping; under `--cfg shmqueue_loom` they are loom's
//! instrumented atomics and `UnsafeCell`s over a heap-allocated header, so the
//! code loom model-checks is the code users run.

#[cfg(not(shmqueue_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(shmqueue_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// The async waiter's registry lock (`aio/reactor.rs`): loom's under loom,
/// so the models explore every interleaving of registration and waking.
#[cfg(all(feature = "tokio", not(shmqueue_loom)))]
pub(crate) use std::sync::Mutex;

#[cfg(shmqueue_loom)]
pub(crate) use loom::sync::Mutex;

/// Give the CPU away: on a 2-core machine a spinning endpoint that shares its
/// core with the peer it waits for must let that peer run.
#[cfg(shmqueue_loom)]
#[inline]
pub(crate) fn yield_now() {
    loom::thread::yield_now();
}

// Under loom the futex is modelled by one mutex and condition variable:
// FUTEX_WAIT's compare-and-sleep is atomic with respect to FUTEX_WAKE because
// both take the mutex, exactly the guarantee the kernel gives. Deadlines are
// ignored, so a lost wake-up shows up as a deadlock that loom reports.
#[cfg(shmqueue_loom)]
loom::lazy_static! {
    static ref FUTEX: (loom::sync::Mutex<()>, loom::sync::Condvar) =
        (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
}

/// The loom model of `wait::futex_wait` (never reports a timeout).
#[cfg(shmqueue_loom)]
pub(crate) fn futex_wait_model(
    word: &AtomicU32,
    expected: u32,
    _until: crate::wait::Deadline,
) -> bool {
    let guard = FUTEX.0.lock().unwrap();
    if word.load(Ordering::SeqCst) == expected {
        drop(FUTEX.1.wait(guard).unwrap());
    }
    false
}

/// The loom model of `wait::futex_wake_all`.
#[cfg(shmqueue_loom)]
pub(crate) fn futex_wake_all_model(_word: &AtomicU32) {
    let _guard = FUTEX.0.lock().unwrap();
    FUTEX.1.notify_all();
}

/// The loom model of `futex_waitv` (the async waiter thread's sleep): one
/// compare of every word and the sleep, atomic with respect to
/// [`futex_wake_all_model`] because both hold the model's mutex, as the
/// kernel makes the compare-and-queue of every word atomic with a wake.
/// Never times out, so a lost wake-up is a deadlock that loom reports.
#[cfg(shmqueue_loom)]
pub(crate) fn futex_waitv_model<'a>(words: impl IntoIterator<Item = (&'a AtomicU32, u32)>) {
    let guard = FUTEX.0.lock().unwrap();
    if words
        .into_iter()
        .all(|(w, expected)| w.load(Ordering::SeqCst) == expected)
    {
        drop(FUTEX.1.wait(guard).unwrap());
    }
}
