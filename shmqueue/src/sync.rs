//! The sync shim: the one place that decides where atomics, fences and slot
//! cells come from.
//!
//! Every algorithm in this crate (the SPSC ring, the waiting protocol) is
//! written once against these names. Normally they are `std`'s atomics and raw
//! pointer copies into the shared mapping; under `--cfg shmqueue_loom` they are loom's
//! instrumented atomics and `UnsafeCell`s over a heap-allocated header, so the
//! code loom model-checks is the code users run.

#[cfg(not(shmqueue_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(shmqueue_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Give the CPU away: on a 2-core machine a spinning endpoint that shares its
/// core with the peer it waits for must let that peer run.
#[cfg(shmqueue_loom)]
#[inline]
pub(crate) fn yield_now() {
    loom::thread::yield_now();
}
