//! The writing end of an SPSC ring: single pushes, batches, and the index
//! arithmetic both ends share.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;

use crate::error::{BatchError, Corruption, PushAllError, PushError, TryPushError, WindowError};
use crate::header::{STATUS_DETACHED, STATUS_MASK};
use crate::registry::Attachment;
use crate::sync::Ordering;
use crate::wait::{keep_trying, Deadline, Throttle, TimedOut};

use super::consumer::{check_index, window_error};
use super::*;

/// The producer's private view of the ring.
///
/// Invariant (the `unsafe` slot writes rely on it): `in_ < buffer_size` and
/// `cached_out < buffer_size`, always. Both are set from indices that
/// `check_index` bounded (at attach, and on every reload of `out`), and
/// `in_` only moves by `next`/`advance`, which wrap below `buffer_size`.
pub(super) struct ProducerLocal {
    /// Our `in`: we are its only writer, so it is never re-read.
    pub(super) in_: usize,
    /// Last `out` seen; `out` only moves forward, so this under-estimates free space.
    pub(super) cached_out: usize,
    pub(super) reap: Throttle,
}

/// The writing end of an [`Spsc`] ring. `Send`: move it to the
/// thread that produces.
pub struct Producer<T> {
    pub(super) local: ProducerLocal,
    pub(super) spin: u32,
    pub(super) att: Attachment,
    pub(super) _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::Producer")
            .field("name", &self.att.ring().name())
            .field("in", &self.local.in_)
            .field("cached_out", &self.local.cached_out)
            .finish()
    }
}

// Always inlined into the public wrappers, which are `#[inline]`: the
// `Result` then stays in registers instead of going through the stack.
#[inline(always)]
pub(super) fn try_push_impl<T: Pod>(
    att: &Attachment,
    local: &mut ProducerLocal,
    value: &T,
) -> Result<(), PushFail> {
    let h = att.header();
    // One load of a line nobody writes in steady state.
    if att.peer().state.load(Ordering::Relaxed) & STATUS_MASK == STATUS_DETACHED {
        return Err(PushFail::Disconnected);
    }
    let next = next(local.in_, att.buffer_size());
    if next == local.cached_out {
        // Acquire: the consumer's reads of the slots it released happen
        // before we overwrite them.
        let out = match check_index(att, "out", h.tail.value.load(Ordering::Acquire)) {
            Ok(o) => o,
            Err(c) => return Err(PushFail::Corrupt(c)),
        };
        local.cached_out = out;
        if next == out {
            if att.peer_gone(&mut local.reap) {
                return Err(PushFail::Disconnected);
            }
            return Err(PushFail::Full);
        }
    }
    // SAFETY: in_ < buffer_size (invariant of ProducerLocal); the element
    // type matches the validated geometry (Spsc<T> checked size and
    // alignment); slot `in` is not visible to the consumer until the store
    // below and was released by it (next != out), so we own it.
    unsafe { att.write_slot(local.in_, *value) };
    // Release: the slot's bytes happen-before a consumer that Acquires `in`.
    // (Mutations for the loom suite: see loom-tests/README.md.)
    #[cfg(shmqueue_mutation = "wake_before_publish")]
    h.events.not_empty.notify();
    #[cfg(not(shmqueue_mutation = "relaxed_publish"))]
    h.head.value.store(next as u64, Ordering::Release);
    #[cfg(shmqueue_mutation = "relaxed_publish")]
    h.head.value.store(next as u64, Ordering::Relaxed);
    local.in_ = next;
    #[cfg(not(shmqueue_mutation = "wake_before_publish"))]
    h.events.not_empty.notify();
    Ok(())
}

/// Why [`try_push_impl`] did not push. It borrows the value and hands
/// nothing back, so a caller retrying on `Full` moves no `T` per retry (a
/// 64 KiB `T` copied back and forth on every spin made a blocking push of
/// one 4x slower than a spinning one); callers attach the value once, at
/// the end.
pub(super) enum PushFail {
    Full,
    Disconnected,
    Corrupt(Corruption),
}

/// Free slots between our `in` and a (possibly stale) `out`: one slot
/// always stays empty.
#[inline]
pub(super) fn free_slots(in_: usize, out: usize, b: usize) -> usize {
    if out > in_ {
        out - in_ - 1
    } else {
        out + b - in_ - 1
    }
}

/// Published slots between our `out` and a (possibly stale) `in`.
#[inline]
pub(super) fn used_slots(out: usize, in_: usize, b: usize) -> usize {
    if in_ >= out {
        in_ - out
    } else {
        in_ + b - out
    }
}

/// Free slots right now, for a caller that wants `want` of them: the
/// cached `out` is refreshed (Acquire) only if it shows fewer. `Ok(0)` when
/// the ring is full and the consumer lives.
#[inline]
pub(super) fn free_now(
    att: &Attachment,
    local: &mut ProducerLocal,
    want: usize,
) -> Result<usize, BatchError> {
    // One load of a line nobody writes in steady state.
    if att.peer().state.load(Ordering::Relaxed) & STATUS_MASK == STATUS_DETACHED {
        return Err(BatchError::Disconnected);
    }
    let b = att.buffer_size();
    let mut free = free_slots(local.in_, local.cached_out, b);
    if free < want {
        // Acquire: as in try_push, the consumer is done with what it released.
        let out = check_index(att, "out", att.header().tail.value.load(Ordering::Acquire))
            .map_err(BatchError::Corrupt)?;
        local.cached_out = out;
        free = free_slots(local.in_, out, b);
        if free == 0 && att.peer_gone(&mut local.reap) {
            return Err(BatchError::Disconnected);
        }
    }
    Ok(free)
}

/// `i + n` wrapped into `[0, b)`, for `i < b` and `n <= b`.
#[inline]
pub(super) fn advance(i: usize, n: usize, b: usize) -> usize {
    let next = i + n;
    if next >= b {
        next - b
    } else {
        next
    }
}

/// Publish `n` more written slots (`n <= free`): one Release store of `in`,
/// one notification. Every slot write before it happens-before a consumer
/// that Acquires the new `in`.
#[inline]
pub(super) fn publish_in(att: &Attachment, local: &mut ProducerLocal, n: usize) {
    if n == 0 {
        return;
    }
    let next = advance(local.in_, n, att.buffer_size());
    let h = att.header();
    // (The loom suite's relaxed_publish mutation covers this store too.)
    #[cfg(not(shmqueue_mutation = "relaxed_publish"))]
    h.head.value.store(next as u64, Ordering::Release);
    #[cfg(shmqueue_mutation = "relaxed_publish")]
    h.head.value.store(next as u64, Ordering::Relaxed);
    local.in_ = next;
    h.events.not_empty.notify();
}

/// [`Producer::push_slice`], on the producer's parts (so the blocking
/// callers can hand it to [`keep_trying`]).
#[inline]
pub(super) fn push_slice_impl<T: Pod>(
    att: &Attachment,
    local: &mut ProducerLocal,
    items: &[T],
) -> Result<usize, BatchError> {
    let free = free_now(att, local, items.len())?;
    let n = free.min(items.len());
    if n == 0 {
        return Ok(0);
    }
    let b = att.buffer_size();
    // At most two runs: up to the end of the array, then from slot 0.
    let first = n.min(b - local.in_);
    // SAFETY: in_ < b, first <= b - in_ and n - first < b, so both runs
    // lie in the slot array. n <= free, so the n slots from in_ onwards
    // (wrapping) are free: released by the consumer (Acquire on `out`)
    // and invisible to it until publish_in's store, as in try_push. T
    // matches the validated geometry.
    unsafe {
        att.write_slots(local.in_, &items[..first]);
        att.write_slots(0, &items[first..n]);
    }
    // Release: every slot of the batch happens-before the consumer's Acquire.
    publish_in(att, local, n);
    Ok(n)
}

impl<T: Pod> Producer<T> {
    /// Push as many of `items` as fit, in order, with one publication of
    /// `in` (and one notification) for the whole batch; never blocks.
    /// Returns how many were pushed: `Ok(0)` when the ring is full.
    ///
    /// ```
    /// # use shmqueue::Spsc;
    /// # let name = format!("/doc-push-slice-{}", std::process::id());
    /// let q = Spsc::<u64>::create(&name, 4)?;
    /// let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
    /// assert_eq!(tx.push_slice(&[1, 2, 3, 4, 5, 6])?, 4);
    /// let mut buf = [0u64; 8];
    /// assert_eq!(rx.pop_slice(&mut buf)?, 4);
    /// assert_eq!(&buf[..4], &[1, 2, 3, 4]);
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_slice(&mut self, items: &[T]) -> Result<usize, BatchError> {
        push_slice_impl(&self.att, &mut self.local, items)
    }

    /// Push every item of `items`, in order, waiting (spin, then futex) while
    /// the ring is full. Each time there is room it moves as many items as
    /// fit with one publication of `in`. An empty slice returns at once.
    ///
    /// Fails only if the consumer goes away or the segment is corrupt; the
    /// error says how many items (a prefix of `items`) went in.
    ///
    /// ```
    /// # use shmqueue::Spsc;
    /// # let name = format!("/doc-push-all-{}", std::process::id());
    /// let q = Spsc::<u64>::create(&name, 4)?;
    /// let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
    /// let t = std::thread::spawn(move || {
    ///     let mut buf = [0u64; 3];
    ///     let mut got = Vec::new();
    ///     while got.len() < 10 {
    ///         let n = rx.pop_slice_wait(&mut buf).unwrap();
    ///         got.extend_from_slice(&buf[..n]);
    ///     }
    ///     got
    /// });
    /// let items: Vec<u64> = (0..10).collect();
    /// tx.push_all(&items)?; // more than the ring holds: waits for the consumer
    /// assert_eq!(t.join().unwrap(), items);
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_all(&mut self, items: &[T]) -> Result<(), PushAllError> {
        self.push_all_until(items, None)
    }

    /// Like [`Producer::push_all`], giving up after `timeout` (one deadline
    /// for the whole slice) with [`PushAllError::Timeout`], which says how
    /// many items went in.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmqueue::{PushAllError, Spsc};
    /// # let name = format!("/doc-push-all-timeout-{}", std::process::id());
    /// let q = Spsc::<u64>::create(&name, 4)?;
    /// let (mut tx, _rx) = (q.producer()?, q.consumer()?);
    /// let r = tx.push_all_timeout(&[1, 2, 3, 4, 5, 6], Duration::from_millis(10));
    /// assert_eq!(r, Err(PushAllError::Timeout { pushed: 4 }));
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_all_timeout(&mut self, items: &[T], timeout: Duration) -> Result<(), PushAllError> {
        self.push_all_until(items, Some(Deadline::after(timeout)))
    }

    pub(super) fn push_all_until(
        &mut self,
        items: &[T],
        deadline: Option<Deadline>,
    ) -> Result<(), PushAllError> {
        let att = &self.att;
        let local = &mut self.local;
        let event = &att.header().events.not_full;
        let fail = |pushed, e| match e {
            BatchError::Disconnected => PushAllError::Disconnected { pushed },
            BatchError::Corrupt(corruption) => PushAllError::Corrupt { pushed, corruption },
        };
        let mut pushed = 0;
        while pushed < items.len() {
            let rest = &items[pushed..];
            let n = match push_slice_impl(att, local, rest) {
                Ok(0) => {
                    let r = keep_trying(event, self.spin, deadline, || {
                        match push_slice_impl(att, local, rest) {
                            Ok(0) => None,
                            r => Some(r),
                        }
                    });
                    match r {
                        Ok(r) => r.map_err(|e| fail(pushed, e))?,
                        Err(TimedOut) => return Err(PushAllError::Timeout { pushed }),
                    }
                }
                Ok(n) => n,
                Err(e) => return Err(fail(pushed, e)),
            };
            pushed += n;
        }
        Ok(())
    }

    /// Reserve up to `max` slots for writing in place, without blocking: a
    /// [`WriteWindow`] over the ring's own slots (empty if the ring is
    /// full). Nothing is visible to the consumer until
    /// [`WriteWindow::commit`]; dropping the window publishes nothing.
    ///
    /// ```
    /// # use shmqueue::Spsc;
    /// # let name = format!("/doc-try-write-window-{}", std::process::id());
    /// let q = Spsc::<u64>::create(&name, 4)?;
    /// let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
    /// let mut w = tx.try_write_window(8)?;
    /// assert_eq!(w.len(), 4); // what is free
    /// w.fill_with(|i| 10 * i as u64);
    /// w.commit(3); // publish the first three, one index store
    /// assert_eq!(rx.try_pop()?, 0);
    /// assert_eq!(rx.try_pop()?, 10);
    /// assert_eq!(rx.try_pop()?, 20);
    /// assert!(rx.try_pop().is_err());
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_write_window(&mut self, max: usize) -> Result<WriteWindow<'_, T>, BatchError> {
        let free = free_now(&self.att, &mut self.local, max)?;
        Ok(WriteWindow::new(self, free.min(max)))
    }

    /// Reserve up to `max` slots for writing in place, waiting (spin, then
    /// futex) until at least one is free; the window then covers every
    /// free slot up to `max`. `max == 0` gives an empty window at once.
    /// See [`Producer::try_write_window`].
    pub fn write_window(&mut self, max: usize) -> Result<WriteWindow<'_, T>, WindowError> {
        self.write_window_until(max, None)
    }

    /// Like [`Producer::write_window`], giving up after `timeout` with
    /// [`WindowError::Timeout`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmqueue::{Spsc, WindowError};
    /// # let name = format!("/doc-write-window-timeout-{}", std::process::id());
    /// let q = Spsc::<u64>::create(&name, 2)?;
    /// let (mut tx, _rx) = (q.producer()?, q.consumer()?);
    /// tx.push_slice(&[1, 2])?;
    /// let t = Duration::from_millis(10);
    /// assert_eq!(tx.write_window_timeout(1, t).unwrap_err(), WindowError::Timeout);
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_window_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<WriteWindow<'_, T>, WindowError> {
        self.write_window_until(max, Some(Deadline::after(timeout)))
    }

    pub(super) fn write_window_until(
        &mut self,
        max: usize,
        deadline: Option<Deadline>,
    ) -> Result<WriteWindow<'_, T>, WindowError> {
        let att = &self.att;
        let local = &mut self.local;
        let want = max.max(1);
        let free = match free_now(att, local, want).map_err(window_error)? {
            0 if max > 0 => {
                let event = &att.header().events.not_full;
                let r = keep_trying(event, self.spin, deadline, || {
                    match free_now(att, local, want) {
                        Ok(0) => None,
                        r => Some(r),
                    }
                });
                r.map_err(|TimedOut| WindowError::Timeout)?
                    .map_err(window_error)?
            }
            f => f,
        };
        Ok(WriteWindow::new(self, free.min(max)))
    }

    /// Push without blocking.
    ///
    /// Returns [`TryPushError::Full`] if the ring is full and
    /// [`TryPushError::Disconnected`] if the consumer has gone; the value
    /// comes back in the error.
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), TryPushError<T>> {
        try_push_impl(&self.att, &mut self.local, &value).map_err(|f| match f {
            PushFail::Full => TryPushError::Full(value),
            PushFail::Disconnected => TryPushError::Disconnected(value),
            PushFail::Corrupt(c) => TryPushError::Corrupt(value, c),
        })
    }

    /// Push, waiting while the ring is full: spin, then sleep on a futex.
    /// Fails only if the consumer goes away (including its process dying,
    /// noticed within about 100 ms) or the segment is corrupt.
    // Always inlined, as `try_push` is (see `push_until`).
    #[inline(always)]
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        self.push_until(value, None)
    }

    /// Like [`Producer::push`], giving up after `timeout`.
    pub fn push_timeout(&mut self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        self.push_until(value, Some(Deadline::after(timeout)))
    }

    // `#[inline(always)]`, not `#[inline]`: with only the hint, rustc kept
    // this out of line in the caller's crate (its cold tails - the
    // corruption error, the wake - made it look big), so every `push` was a
    // call, the `Result` came back through memory and the caller's loop was
    // not the try_push loop any more. Measured (benches/spsc, interleaved):
    // the blocking stream went from 0.47-0.54x to 0.91-1.25x its own
    // try_push/try_pop stream, the blocking round trip from 1.06-1.33x to
    // 0.62-0.96x the spinning one. The waiting stays out of line (push_wait).
    #[inline(always)]
    pub(super) fn push_until(
        &mut self,
        value: T,
        deadline: Option<Deadline>,
    ) -> Result<(), PushError<T>> {
        // The first attempt inline (see `keep_trying`), the waiting out of line.
        match try_push_impl(&self.att, &mut self.local, &value) {
            Ok(()) => Ok(()),
            Err(PushFail::Full) => self.push_wait(value, deadline),
            Err(PushFail::Disconnected) => Err(PushError::Disconnected(value)),
            Err(PushFail::Corrupt(c)) => Err(PushError::Corrupt(value, c)),
        }
    }

    #[inline(never)]
    pub(super) fn push_wait(
        &mut self,
        value: T,
        deadline: Option<Deadline>,
    ) -> Result<(), PushError<T>> {
        let att = &self.att;
        let local = &mut self.local;
        let event = &att.header().events.not_full;
        let r = keep_trying(event, self.spin, deadline, || {
            match try_push_impl(att, local, &value) {
                Ok(()) => Some(Ok(())),
                Err(PushFail::Full) => None,
                Err(f) => Some(Err(f)),
            }
        });
        match r {
            Ok(Ok(())) => Ok(()),
            Err(TimedOut) => Err(PushError::Timeout(value)),
            Ok(Err(PushFail::Corrupt(c))) => Err(PushError::Corrupt(value, c)),
            Ok(Err(PushFail::Disconnected | PushFail::Full)) => Err(PushError::Disconnected(value)),
        }
    }

    /// Items the ring can hold.
    pub fn capacity(&self) -> usize {
        self.att.ring().geom().capacity
    }

    /// Items in the ring right now (a snapshot).
    pub fn len(&self) -> usize {
        len(self.att.ring()).unwrap_or(0)
    }

    /// Whether the ring is empty right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        if !self.att.owned_here() {
            return; // a forked child's copy (liveness.rs, "Fork")
        }
        self.att.detach();
        // Wake a consumer sleeping in pop() so it drains and sees Disconnected.
        self.att.header().events.not_empty.notify();
    }
}
