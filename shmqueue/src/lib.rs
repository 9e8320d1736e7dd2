//! # shmqueue
//!
//! Lock-free ring buffers in POSIX shared memory, for moving data between
//! processes on one Linux host.
//!
//! * [`Spsc`]: the textbook bounded circular buffer (`in`/`out` indices,
//!   `capacity + 1` slots), cache-padded, with cached peer indices.
//! * [`Mpmc`]: a lossless work queue for any number of producer and consumer
//!   processes; every item goes to exactly one consumer, and a producer or
//!   consumer killed mid-operation cannot wedge the others.
//! * [`ByteRing`]: an SPSC ring of variable-size byte messages (any length,
//!   larger than the ring too), with in-place reservation and reading and
//!   `std::io` streaming.
//! * [`Broadcast`]: one publisher, any number of subscriber processes, each
//!   of which sees every item; lossless (the publisher waits for the
//!   slowest live subscriber) or overwrite (it never waits, and a lapped
//!   subscriber is told exactly how many items it missed).
//! * Blocking calls spin a bounded number of times, then sleep on a shared
//!   futex in the segment: an idle endpoint uses no CPU, a busy one makes no
//!   system call.
//! * The segment carries a versioned, self-validating header; wrong element
//!   types, foreign or corrupt segments and dead peers produce typed errors,
//!   never a panic, a hang or an access outside the mapping.
//! * A peer killed with SIGKILL is detected through a kernel-held lock
//!   (an OFD lock on the segment), which pid reuse cannot fool.
//! * Segments are private to their creator's uid by default, or shared with a
//!   named group (`group(gid)`); or, with `create_memfd`, unnamed and sealed
//!   against resizing, handed to peers by descriptor (see [`memfd`]).
//!
//! ```
//! use shmqueue::Spsc;
//! # let name = format!("/doc-lib-{}", std::process::id());
//! // Process A
//! let q = Spsc::<u64>::create(&name, 1024)?;
//! let mut tx = q.producer()?;
//! tx.push(42)?;
//! // Process B (here the same process, for the example)
//! let mut rx = Spsc::<u64>::open(&name)?.consumer()?;
//! assert_eq!(rx.pop()?, 42);
//! shmqueue::unlink(&name)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Element types must be [`bytemuck::Pod`]: a peer process can write any
//! bytes into a slot, and only a type that is valid for every bit pattern and
//! holds no pointers can be read back safely. `Copy` is not enough: `bool`,
//! `char`, `&T` and enums are `Copy` but have invalid bit patterns or
//! addresses that mean nothing in another process.
//!
//! [`inspect()`], [`list()`] and [`inspect::remove`] describe and clean up
//! segments (including stale ones, that no process has open) without
//! attaching to them; the `shmq` tool's `ls`, `stat` and `rm` are built on
//! them.
//!
//! See `docs/DESIGN.md` for the memory layout, the ordering argument, the
//! waiting protocol and the failure model.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]
// Under loom the shared-memory half (segment, OFD locks) is not used.
#![cfg_attr(shmqueue_loom, allow(dead_code, unused_imports))]

#[cfg(any(feature = "tokio", shmqueue_loom))]
pub mod aio;
pub mod broadcast;
pub mod bytes;
#[doc(hidden)]
pub mod copy;
mod error;
mod header;
pub mod inspect;
#[cfg(all(test, not(shmqueue_loom)))]
mod layout_contract;
mod liveness;
mod mapping;
pub mod memfd;
pub mod mpmc;
mod name;
mod options;
#[cfg(not(shmqueue_loom))]
pub mod probe;
mod registry;
mod segment;
mod slots;
pub mod spsc;
mod sync;
mod sys;
mod wait;

pub use broadcast::Broadcast;
pub use bytes::{ByteRing, RecvError, SendError};
pub use error::{
    BatchError, Corruption, Error, PopError, PushError, Result, Role, TryPopError, TryPushError,
};
pub use error::{PushAllError, WindowError};
pub use header::QueueKind;
pub use inspect::{inspect, list, SegmentInfo};
pub use mpmc::Mpmc;
pub use name::{validate_name, MAX_NAME_LEN};
pub use segment::unlink;
pub use spsc::Spsc;
#[doc(hidden)]
pub use wait::slice_wakeups;
pub use wait::DEFAULT_SPIN;

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The deliberate loom mutation compiled into this build, if any (see
/// `build.rs`). Always `None` outside model-checking builds: CI builds the
/// library with `SHMQ_MUTATION` set and asserts this.
#[doc(hidden)]
pub fn compiled_mutation() -> Option<&'static str> {
    const NAMES: &[(bool, &str)] = &[
        (
            cfg!(shmqueue_mutation = "relaxed_publish"),
            "relaxed_publish",
        ),
        (
            cfg!(shmqueue_mutation = "no_waiter_fence"),
            "no_waiter_fence",
        ),
        (
            cfg!(shmqueue_mutation = "wake_before_publish"),
            "wake_before_publish",
        ),
        (
            cfg!(shmqueue_mutation = "skip_live_claimant"),
            "skip_live_claimant",
        ),
        (
            cfg!(shmqueue_mutation = "bytes_relaxed_publish"),
            "bytes_relaxed_publish",
        ),
        (cfg!(shmqueue_mutation = "bcast_no_gate"), "bcast_no_gate"),
        (
            cfg!(shmqueue_mutation = "async_no_recheck"),
            "async_no_recheck",
        ),
        (
            cfg!(shmqueue_mutation = "bcast_no_recheck"),
            "bcast_no_recheck",
        ),
    ];
    NAMES.iter().find(|(on, _)| *on).map(|(_, n)| *n)
}

/// Whether the fault-injection hooks (feature `test-hooks`) are compiled in.
/// The benchmarks refuse to run with them: they must time what users run.
#[doc(hidden)]
pub fn test_hooks_compiled() -> bool {
    cfg!(feature = "test-hooks")
}

#[cfg(all(test, not(shmqueue_loom)))]
mod build_hygiene {
    /// `SHMQ_MUTATION=relaxed_publish cargo test --lib build_hygiene` (as CI
    /// runs it) must still build the real algorithm: mutations are for loom.
    #[test]
    fn no_mutation_outside_model_checking() {
        assert_eq!(super::compiled_mutation(), None);
    }
}
