//! Blocking without losing wake-ups: bounded spinning, then a shared futex.
//!
//! The protocol is an event count (folly's `EventCount`), one per direction
//! ([`Event`] in the header):
//!
//! ```text
//! waiter                                   notifier
//! e = epoch.load(Acquire)                  publish (index store, Release)
//! armed.store(1)                           light fence               -- F2
//! heavy fence                    -- F1     if armed.load() != 0
//! re-check the queue; if ready: return        && armed.swap(0) != 0 {
//! futex_wait(epoch, e, deadline)               epoch += 1 (Release)
//!                                              futex_wake(epoch, all)
//!                                          }
//! ```
//!
//! F1 and F2 form a Dekker pair: either the notifier's swap reads the
//! waiter's `armed = 1` and wakes, or the waiter's re-check sees the
//! publication and does not sleep (the swap reads the latest value in
//! `armed`'s modification order, so the fence rule applies to it as to a
//! load). The swap makes one notifier responsible for each round of sleepers:
//! without it, every push between a wake and the woken consumer running would
//! see "someone waits" and make its own wake syscall (measured: 400 000 futex
//! calls in one 10^7-item run). A waiter that finds the queue ready without
//! sleeping leaves `armed` set; that costs one spare wake, never a lost one.
//! If the waiter read an epoch that a notifier had already bumped, that
//! bump's Release made the publication visible to the re-check. The kernel
//! compares `epoch` with `e` atomically with going to sleep, so a bump between
//! the re-check and the wait makes the wait return at once.
//!
//! ## Asymmetric fences
//!
//! A SeqCst fence on every push and pop costs a full store-buffer drain per
//! item (measured: 5x slower streaming than rtrb). Notifications happen on
//! every item; sleeps are rare. So the cost is moved to the sleeper, as
//! folly's `asymmetric_thread_fence_{light,heavy}` and liburcu do:
//!
//! * F2 (light) is only a compiler fence, in every process that registered
//!   with `membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)`;
//! * F1 (heavy) is a SeqCst fence plus `membarrier(GLOBAL_EXPEDITED)`,
//!   which makes every running thread of every registered process execute a
//!   full memory barrier before it returns. That barrier lands somewhere in
//!   the notifier's program order; wherever it lands, either the notifier's
//!   index store is visible to the waiter's re-check, or the waiter's
//!   increment is visible to the notifier's load, which is the Dekker
//!   guarantee.
//!
//! A process that cannot register uses a real SeqCst fence for F2. A waiter
//! whose membarrier call fails cannot rely on light notifiers, so it sleeps
//! in 1 ms slices instead: latency, never a lost wake-up. Setting
//! `SHMQUEUE_FENCE=symmetric` in the environment makes this process's
//! notifiers use SeqCst fences (for comparison); its waiters still issue
//! the membarrier. **Every mix of processes is correct**: a waiter always
//! issues F1 in full (SeqCst fence plus membarrier), because it cannot know
//! how a notifier in another process fences, and either kind of notifier
//! (a compiler fence in a registered process, a SeqCst fence otherwise)
//! pairs with that. A waiter that skipped the membarrier because it was
//! itself symmetric lost 438 of 200 000 wake-ups from a default notifier
//! (`tests/fence_modes.rs`), each then found by the 100 ms slice. Under loom both fences are SeqCst fences:
//! loom checks the protocol, the membarrier substitution is argued here.
//!
//! The notifier's fast path is a compiler fence and one load of a line nobody
//! writes while nobody sleeps: no syscall, no contended write, no barrier.
//! Every sleep has a finite deadline (at most [`LIVENESS_SLICE`]), so a
//! corrupted waiter count costs latency, never a hang, and a blocked
//! endpoint notices a dead peer.
//!
//! Futexes are waited on *without* `FUTEX_PRIVATE_FLAG`: the kernel keys them
//! by (inode, offset), so waiters and wakers in different processes meet.

use std::time::Duration;

use rustix::time::{ClockId, Timespec};

use crate::header::Event;
#[cfg(shmqueue_loom)]
use crate::sync::fence;
use crate::sync::{AtomicU32, Ordering};

/// Longest single sleep. A blocked endpoint wakes at least this often to check
/// whether its peer died (the kernel gives no wake-up for that).
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(100);

/// Default number of retries before a blocking call sleeps: 256 after a
/// single pause each (~10 µs), then 64 after a `sched_yield` each (~40 µs
/// more when nothing else wants the CPU), about the cost of the futex
/// wake-up that sleeping would make the peer pay.
pub const DEFAULT_SPIN: u32 = 320;

/// An absolute `CLOCK_MONOTONIC` time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadline(Timespec);

impl Deadline {
    pub(crate) fn now() -> Deadline {
        Deadline(rustix::time::clock_gettime(ClockId::Monotonic))
    }

    /// `d` from now, saturating far in the future.
    pub(crate) fn after(d: Duration) -> Deadline {
        Deadline::now().plus(d)
    }

    pub(crate) fn plus(self, d: Duration) -> Deadline {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let mut sec = self.0.tv_sec.saturating_add(secs);
        let mut nsec = self.0.tv_nsec + i64::from(d.subsec_nanos());
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec = sec.saturating_add(1);
        }
        Deadline(Timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        })
    }

    /// The absolute `CLOCK_MONOTONIC` time, for a futex call.
    #[cfg(all(feature = "tokio", not(shmqueue_loom)))]
    pub(crate) fn timespec(&self) -> &Timespec {
        &self.0
    }

    fn key(self) -> (i64, i64) {
        (self.0.tv_sec, self.0.tv_nsec)
    }

    pub(crate) fn passed(self) -> bool {
        // Under loom every execution must be reproducible: no clocks decide
        // anything, and models use untimed waits.
        #[cfg(shmqueue_loom)]
        return false;
        #[cfg(not(shmqueue_loom))]
        return Deadline::now().key() >= self.key();
    }

    pub(crate) fn min(self, other: Deadline) -> Deadline {
        if self.key() <= other.key() {
            self
        } else {
            other
        }
    }
}

/// Lets something happen at most about once per interval, timed by
/// `CLOCK_MONOTONIC_COARSE`.
///
/// For rate-limiting the liveness syscall of a polling endpoint, which reads
/// the clock on every empty poll: the coarse clock is read from the vDSO
/// without `rdtsc` (measured: ~7 ns against ~25 ns for `Instant::now()` on a
/// KVM guest), and its resolution (one tick, 1-10 ms) is far below the
/// intervals it is used for. Reading it on every call, rather than every
/// n-th call, keeps the bound in time whatever the caller's polling rate.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    /// Nanoseconds on the coarse clock when [`Throttle::ready`] last said
    /// yes; `None` before the first time.
    last: Option<u64>,
}

impl Throttle {
    /// True, and the interval restarts, if `interval` has passed since the
    /// last true (or this is the first call).
    #[inline]
    pub(crate) fn ready(&mut self, interval: Duration) -> bool {
        self.ready_at(&mut Now::default(), interval)
    }

    /// As [`Throttle::ready`], with the clock read through `now`, so that
    /// the throttles one attempt consults share a single clock read.
    #[inline]
    pub(crate) fn ready_at(&mut self, now: &mut Now, interval: Duration) -> bool {
        // Under loom: always (deterministic; the check itself is modelled).
        if cfg!(shmqueue_loom) {
            return true;
        }
        let now = now.get();
        if self
            .last
            .is_some_and(|last| now.wrapping_sub(last) < interval.as_nanos() as u64)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// One read of `CLOCK_MONOTONIC_COARSE`, taken the first time it is asked
/// for and reused after that: an empty MPMC poll consults two throttles (the
/// stall watch and the reaping), and reading the clock for each made every
/// empty poll two vDSO calls long, which delays the poll that sees the item.
#[derive(Debug, Default)]
pub(crate) struct Now(Option<u64>);

impl Now {
    #[inline]
    pub(crate) fn get(&mut self) -> u64 {
        *self.0.get_or_insert_with(|| {
            let t = rustix::time::clock_gettime(ClockId::MonotonicCoarse);
            // The monotonic clock starts near boot: no overflow for centuries.
            (t.tv_sec as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(t.tv_nsec as u64)
        })
    }
}

/// Retries that pause once each before [`Spinner`] turns to `sched_yield`.
///
/// A waiting endpoint's peer is usually a cache-line transfer or two away
/// (tens to a few hundred ns), but it may also be copying a large value
/// (64 KiB: several µs). Sleeping costs a futex wake-up on the other side,
/// 20-60 µs on a virtualised host, so it pays to keep watching for about
/// that long first. Single pauses (~28 ns on the EPYC guest we measure on)
/// notice the peer's store within one pause of its arrival; the exponential
/// backoff this replaced (up to 64 pauses between looks, then yields from
/// the 12th retry) overshot it by up to ~2 µs and slept after ~7 µs, which
/// made a blocking 64 KiB round trip 8x slower than a spinning one
/// (82 µs against 10 µs, two pinned threads).
#[cfg_attr(shmqueue_loom, allow(dead_code))] // under loom a retry is a yield
const FLAT_RETRIES: u32 = 256;

/// Bounded busy-waiting: `budget` retries, the first [`FLAT_RETRIES`] after a
/// single pause (~10 µs in all), the rest after a `sched_yield` each, so a
/// spinner that shares a core with the peer it waits for lets that peer run.
pub(crate) struct Spinner {
    budget: u32,
    done: u32,
}

impl Spinner {
    pub(crate) fn new(budget: u32) -> Self {
        Spinner { budget, done: 0 }
    }

    /// Wait a little; false once the budget is spent.
    pub(crate) fn spin(&mut self) -> bool {
        if self.done >= self.budget {
            return false;
        }
        self.done += 1;
        #[cfg(not(shmqueue_loom))]
        if self.done <= FLAT_RETRIES {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        #[cfg(shmqueue_loom)]
        crate::sync::yield_now();
        true
    }
}

/// Why a blocking call returned without a result.
pub(crate) struct TimedOut;

/// Wait for `attempt` to yield a result, after the caller's own first
/// attempt failed: spin up to `spin` times, then sleep on `event`, until
/// `deadline` (forever if `None`).
///
/// `attempt` must re-read the shared state each time it is called: after
/// [`Event::prepare`] it is the re-check of the protocol above.
///
/// The first attempt is the caller's, made inline, so that the common case
/// (it succeeds) never passes its result through memory: returned through
/// the stack from an out-of-line call, a result written with narrower
/// stores and read back with wider loads cannot be store-forwarded, and the
/// load then waits for every earlier store to reach the cache - including
/// the slot and index stores that are waiting for the peer to hand over
/// their lines (measured on a 2-vCPU EPYC guest: blocking streams 2-3.5x
/// slower, depending on how the compiler happened to lay the result out).
#[inline(never)]
pub(crate) fn keep_trying<R>(
    event: &Event,
    spin: u32,
    deadline: Option<Deadline>,
    mut attempt: impl FnMut() -> Option<R>,
) -> Result<R, TimedOut> {
    let mut spinner = Spinner::new(spin);
    loop {
        if spinner.spin() {
            if let Some(r) = attempt() {
                return Ok(r);
            }
            // The deadline bounds the spinning too: the budget is the
            // caller's (`spin(n)`, any u32), and every retry past the first
            // few yields, so a large one would overrun any timeout.
            if deadline.is_some_and(|d| d.passed()) {
                return Err(TimedOut);
            }
            continue;
        }
        let ticket = event.prepare();
        if let Some(r) = attempt() {
            event.cancel();
            return Ok(r);
        }
        let slice = Deadline::after(LIVENESS_SLICE);
        let until = match deadline {
            Some(d) if d.passed() => {
                event.cancel();
                return Err(TimedOut);
            }
            Some(d) => d.min(slice),
            None => slice,
        };
        let epoch = ticket.epoch;
        let timed_out = event.sleep(ticket, until);
        if let Some(r) = attempt() {
            // The slice ran out, yet the result was there and no notifier
            // had bumped the epoch: the wake-up was lost (or a peer died
            // without notifying). Counted, so tests can require zero.
            if timed_out && event.epoch.load(Ordering::Relaxed) == epoch {
                note_slice_wakeup();
            }
            return Ok(r);
        }
    }
}

/// Sleeps of this process that the deadline ended although what they waited
/// for had already happened and no wake-up was on its way (see
/// [`slice_wakeups`]).
#[cfg(not(shmqueue_loom))]
static SLICE_WAKEUPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cold]
fn note_slice_wakeup() {
    #[cfg(not(shmqueue_loom))]
    SLICE_WAKEUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many blocking waits in this process were ended by their time slice
/// (the ≤ 100 ms liveness slice, a 1 ms fallback slice, or the caller's
/// deadline) rather than by a wake-up, although the result they waited for
/// was already there and no notifier had bumped the epoch.
///
/// Each one is a lost wake-up turned into latency, or a peer that died
/// without notifying (found by the slice by design). A test that kills no
/// peer can require this to stay zero.
///
/// ```
/// let before = shmqueue::slice_wakeups();
/// assert!(shmqueue::slice_wakeups() >= before);
/// ```
#[doc(hidden)]
pub fn slice_wakeups() -> u64 {
    #[cfg(not(shmqueue_loom))]
    return SLICE_WAKEUPS.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(shmqueue_loom)]
    return 0;
}

/// A ticket to sleep on, from [`Event::prepare`].
pub(crate) struct Ticket {
    pub(crate) epoch: u32,
    /// The heavy fence could not be issued: light notifiers may be missed,
    /// so sleep only briefly.
    pub(crate) short: bool,
}

impl Event {
    /// Register as a waiter; returns the epoch to sleep on. The caller must
    /// re-check the queue, then call [`Event::cancel`] or [`Event::sleep`].
    pub(crate) fn prepare(&self) -> Ticket {
        let epoch = self.epoch.load(Ordering::Acquire);
        self.armed.store(1, Ordering::Relaxed);
        // F1: orders the registration before the re-check (see module docs).
        #[cfg(not(shmqueue_mutation = "no_waiter_fence"))]
        let short = !heavy_fence();
        #[cfg(shmqueue_mutation = "no_waiter_fence")]
        let short = false;
        Ticket { epoch, short }
    }

    /// Withdraw without sleeping. `armed` stays set: other waiters of the
    /// same event may rely on it, and a spare wake is harmless.
    pub(crate) fn cancel(&self) {}

    /// Sleep until the epoch moves past `ticket`, a wake, or `until`; true
    /// if `until` ended it. Spurious returns are fine: callers loop.
    pub(crate) fn sleep(&self, ticket: Ticket, until: Deadline) -> bool {
        let until = if ticket.short {
            until.min(Deadline::after(Duration::from_millis(1)))
        } else {
            until
        };
        futex_wait(&self.epoch, ticket.epoch, until)
    }

    /// Wake every sleeper, if there is any. Call after publishing.
    #[inline]
    pub(crate) fn notify(&self) {
        // F2: orders the publication before reading `armed`.
        light_fence();
        if self.armed.load(Ordering::Relaxed) != 0 {
            self.wake();
        }
    }

    /// The rare half of [`Event::notify`], out of line so that the common
    /// half (a fence and a load) stays small enough to inline into every
    /// push and pop.
    #[cold]
    #[inline(never)]
    fn wake(&self) {
        if self.armed.swap(0, Ordering::Relaxed) != 0 {
            self.epoch.fetch_add(1, Ordering::Release);
            futex_wake_all(&self.epoch);
        }
    }
}

#[cfg(not(shmqueue_loom))]
mod fences {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Once;

    use crate::sys::futex::{barrier_everywhere, register_for_barriers};

    const SYMMETRIC: u8 = 1;
    const ASYMMETRIC: u8 = 2;
    /// Symmetric because SHMQUEUE_FENCE=symmetric: this process's notifiers
    /// use SeqCst fences (it does not register), its waiters still issue
    /// the membarrier, since a notifier in another process may be light.
    const FORCED_SYMMETRIC: u8 = 3;
    /// This process's fence mode; 0 until [`init`] ran.
    static MODE: AtomicU8 = AtomicU8::new(0);
    static INIT: Once = Once::new();

    /// Decide the mode once per process: register for global expedited
    /// membarriers, unless told not to or the kernel refuses.
    pub(crate) fn init() {
        INIT.call_once(|| {
            let forced = std::env::var_os("SHMQUEUE_FENCE").is_some_and(|v| v == "symmetric");
            let mode = if forced {
                FORCED_SYMMETRIC
            } else if register_for_barriers() {
                ASYMMETRIC
            } else {
                SYMMETRIC
            };
            MODE.store(mode, Ordering::Release);
        });
    }

    #[inline]
    pub(crate) fn light() {
        // Until init() ran (no endpoint exists yet) be conservative.
        if MODE.load(Ordering::Relaxed) == ASYMMETRIC {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
        } else {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
    }

    /// Returns false if the barrier on other processes could not be issued.
    ///
    /// Whatever this process's own mode: a waiter cannot know how the
    /// notifiers in other processes fence, and a light one (a compiler
    /// fence) is only half of a Dekker pair with this membarrier. A waiter
    /// that skipped it because *it* was symmetric lost wake-ups from a
    /// default notifier (`tests/fence_modes.rs`: 438 of 200 000 before).
    /// Issuing `GLOBAL_EXPEDITED` needs no registration of our own.
    pub(crate) fn heavy() -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        barrier_everywhere()
    }
}

/// Prepare this process's fences; called before any endpoint exists.
pub(crate) fn init_fences() {
    #[cfg(not(shmqueue_loom))]
    fences::init();
}

#[inline]
fn light_fence() {
    #[cfg(not(shmqueue_loom))]
    fences::light();
    #[cfg(shmqueue_loom)]
    fence(Ordering::SeqCst);
}

/// F1 of the module docs (a SeqCst fence, plus a membarrier on every
/// registered process); false if the membarrier could not be issued. Also
/// the subscriber's half of the broadcast join (broadcast/mod.rs).
pub(crate) fn heavy_fence() -> bool {
    #[cfg(not(shmqueue_loom))]
    return fences::heavy();
    #[cfg(shmqueue_loom)]
    {
        fence(Ordering::SeqCst);
        true
    }
}

/// Sleep on the shared futex `word` while it holds `expected`, until a
/// wake, a value change, `until`, a signal or spuriously; callers re-check.
/// True if the deadline ended it.
#[cfg(not(shmqueue_loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, until: Deadline) -> bool {
    use crate::sys::futex::{wait, Woken};
    match wait(word, expected, &until.0) {
        Woken::Maybe => false,
        Woken::TimedOut => true,
        // A failing futex would turn every blocking call into a busy loop;
        // degrade to a short sleep instead.
        Woken::Failed => {
            std::thread::sleep(Duration::from_millis(1));
            false
        }
    }
}

/// Wake every waiter on `word`, in any process.
#[cfg(not(shmqueue_loom))]
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    crate::sys::futex::wake_all(word);
}

#[cfg(shmqueue_loom)]
pub(crate) use crate::sync::{
    futex_wait_model as futex_wait, futex_wake_all_model as futex_wake_all,
};
