//! The reading end of an SPSC ring: single pops and batches.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;

use crate::error::{BatchError, Corruption, PopError, TryPopError, WindowError};
use crate::registry::{Attachment, Fresh};
use crate::sync::Ordering;
use crate::wait::{keep_trying, Deadline, Throttle, TimedOut};

use super::producer::*;
use super::*;

/// The consumer's private view of the ring.
///
/// Invariant (the `unsafe` slot reads rely on it): `out < buffer_size` and
/// `cached_in < buffer_size`, always, for the same reasons as
/// [`ProducerLocal`]'s: set from bounded indices (`check_index`, `load_in`),
/// moved only by wrapping arithmetic below `buffer_size`.
pub(super) struct ConsumerLocal {
    /// Our `out`: we are its only writer.
    pub(super) out: usize,
    /// Last `in` seen; `in` only moves forward, so this under-estimates items.
    pub(super) cached_in: usize,
    pub(super) reap: Throttle,
}

/// The reading end of an [`Spsc`] ring. `Send`: move it to the thread that
/// consumes (every operation takes `&mut self`).
pub struct Consumer<T> {
    pub(super) local: ConsumerLocal,
    pub(super) spin: u32,
    pub(super) att: Attachment,
    pub(super) _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::Consumer")
            .field("name", &self.att.ring().name())
            .field("out", &self.local.out)
            .field("cached_in", &self.local.cached_in)
            .finish()
    }
}

/// [`Geometry::check_index`](crate::header::Geometry::check_index) against
/// the attachment's copy of the buffer size, with the error built out of line.
#[inline]
pub(super) fn check_index(
    att: &Attachment,
    what: &'static str,
    v: u64,
) -> Result<usize, Corruption> {
    if v < att.buffer_size() as u64 {
        Ok(v as usize)
    } else {
        Err(index_corrupt(att, what, v))
    }
}

#[cold]
#[inline(never)]
pub(super) fn index_corrupt(att: &Attachment, what: &'static str, v: u64) -> Corruption {
    Corruption {
        what,
        found: v,
        limit: att.buffer_size() as u64,
    }
}

#[inline]
pub(super) fn load_in(att: &Attachment) -> Result<usize, TryPopError> {
    // Acquire: the producer's slot writes happen-before our reads.
    let v = att.header().head.value.load(Ordering::Acquire);
    check_index(att, "in", v).map_err(TryPopError::Corrupt)
}

/// Whether an item is published at our `out`, refreshing the cached `in`
/// only when the cache shows none. `Err(Disconnected)` once the producer has
/// gone and everything it pushed has been taken.
#[inline(always)]
pub(super) fn poll_published(
    att: &Attachment,
    local: &mut ConsumerLocal,
) -> Result<bool, TryPopError> {
    if local.out != local.cached_in {
        return Ok(true);
    }
    match att.refresh_or_gone(&mut local.reap, local.out, || load_in(att))? {
        Fresh::Moved(in_) => {
            local.cached_in = in_;
            Ok(true)
        }
        Fresh::Idle(in_) => {
            local.cached_in = in_;
            Ok(false)
        }
        Fresh::Gone => Err(TryPopError::Disconnected),
    }
}

// Always inlined into the public wrappers, which are `#[inline]`: the
// `Result` then stays in registers instead of going through the stack, and
// the slot is read straight into the caller's return value. Out of line,
// every pop that converts the `Result` (`pop`, `pop_wait`) copied a large
// `T` once more, from this function's return slot into its own.
#[inline(always)]
pub(super) fn try_pop_impl<T: Pod>(
    att: &Attachment,
    local: &mut ConsumerLocal,
) -> Result<T, TryPopError> {
    if !poll_published(att, local)? {
        return Err(TryPopError::Empty);
    }
    // SAFETY: out < buffer_size (invariant of ConsumerLocal); the element type
    // matches the geometry; out != in as last loaded with Acquire, so the
    // producer published this slot and will not touch it until we store
    // `out` past it.
    let value = unsafe { att.read_slot::<T>(local.out) };
    let next = next(local.out, att.buffer_size());
    let h = att.header();
    // Release: our read of the slot happens-before the producer reusing it.
    h.tail.value.store(next as u64, Ordering::Release);
    local.out = next;
    h.events.not_full.notify();
    Ok(value)
}

pub(super) fn window_error(e: BatchError) -> WindowError {
    match e {
        BatchError::Disconnected => WindowError::Disconnected,
        BatchError::Corrupt(c) => WindowError::Corrupt(c),
    }
}

pub(super) fn pop_error(e: BatchError) -> PopError {
    match e {
        BatchError::Disconnected => PopError::Disconnected,
        BatchError::Corrupt(c) => PopError::Corrupt(c),
    }
}

/// Published items right now, for a caller that wants `want` of them: the
/// cached `in` is refreshed (Acquire) only if it shows fewer. `Ok(0)` when
/// the ring is empty and the producer lives; `Disconnected` once it is
/// drained and the producer has gone.
#[inline]
pub(super) fn available_now(
    att: &Attachment,
    local: &mut ConsumerLocal,
    want: usize,
) -> Result<usize, BatchError> {
    let corrupt = |e| match e {
        TryPopError::Corrupt(c) => BatchError::Corrupt(c),
        _ => BatchError::Disconnected,
    };
    let b = att.buffer_size();
    let mut used = used_slots(local.out, local.cached_in, b);
    if used < want {
        local.cached_in = load_in(att).map_err(corrupt)?;
        used = used_slots(local.out, local.cached_in, b);
        if used == 0 {
            match att
                .refresh_or_gone(&mut local.reap, local.out, || load_in(att).map_err(corrupt))?
            {
                Fresh::Moved(in_) | Fresh::Idle(in_) => local.cached_in = in_,
                Fresh::Gone => return Err(BatchError::Disconnected),
            }
            used = used_slots(local.out, local.cached_in, b);
        }
    }
    Ok(used)
}

/// Release `n` more read slots (`n <= available`): one Release store of
/// `out`, one notification. Every read of those slots happens-before a
/// producer that Acquires the new `out` and reuses them.
#[inline]
pub(super) fn publish_out(att: &Attachment, local: &mut ConsumerLocal, n: usize) {
    if n == 0 {
        return;
    }
    let next = advance(local.out, n, att.buffer_size());
    let h = att.header();
    h.tail.value.store(next as u64, Ordering::Release);
    local.out = next;
    h.events.not_full.notify();
}

/// [`Consumer::pop_slice`] on the consumer's parts.
#[inline]
pub(super) fn pop_slice_impl<T: Pod>(
    att: &Attachment,
    local: &mut ConsumerLocal,
    out: &mut [T],
) -> Result<usize, BatchError> {
    if out.is_empty() {
        return Ok(0);
    }
    let used = available_now(att, local, out.len())?;
    let n = used.min(out.len());
    if n == 0 {
        return Ok(0);
    }
    let b = att.buffer_size();
    let first = n.min(b - local.out);
    // SAFETY: out < b; the runs out..out+first <= b and 0..n-first are
    // slots the producer published (n <= used, from `in` loaded with
    // Acquire) and will not touch until we store `out` past them; T
    // matches the geometry.
    unsafe {
        att.read_slots(local.out, &mut out[..first]);
        att.read_slots(0, &mut out[first..n]);
    }
    // Release: our reads of the batch happen-before the producer reuses it.
    publish_out(att, local, n);
    Ok(n)
}

impl<T: Pod> Consumer<T> {
    /// Pop up to `out.len()` items into `out`, in order, with one
    /// publication of `out` (and one notification) for the whole batch;
    /// never blocks. Returns how many were popped: `Ok(0)` when the ring is
    /// empty, [`BatchError::Disconnected`] once it is drained and the
    /// producer has gone.
    pub fn pop_slice(&mut self, out: &mut [T]) -> Result<usize, BatchError> {
        pop_slice_impl(&self.att, &mut self.local, out)
    }

    /// Wait (spin, then futex) until at least one item is available, then
    /// pop as many as are there, up to `out.len()`, with one publication of
    /// `out`. Returns how many (at least 1; 0 only for an empty `out`).
    /// [`PopError::Disconnected`] once the ring is drained and the producer
    /// has gone.
    pub fn pop_slice_wait(&mut self, out: &mut [T]) -> Result<usize, PopError> {
        self.pop_slice_until(out, None)
    }

    /// Like [`Consumer::pop_slice_wait`], giving up after `timeout` with
    /// [`PopError::Timeout`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmqueue::{PopError, Spsc};
    /// # let name = format!("/doc-pop-slice-timeout-{}", std::process::id());
    /// let q = Spsc::<u64>::create(&name, 8)?;
    /// let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
    /// let mut buf = [0u64; 4];
    /// let t = Duration::from_millis(10);
    /// assert_eq!(rx.pop_slice_timeout(&mut buf, t), Err(PopError::Timeout));
    /// tx.push_slice(&[5, 6])?;
    /// assert_eq!(rx.pop_slice_timeout(&mut buf, t), Ok(2));
    /// assert_eq!(&buf[..2], &[5, 6]);
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_slice_timeout(
        &mut self,
        out: &mut [T],
        timeout: Duration,
    ) -> Result<usize, PopError> {
        self.pop_slice_until(out, Some(Deadline::after(timeout)))
    }

    pub(super) fn pop_slice_until(
        &mut self,
        out: &mut [T],
        deadline: Option<Deadline>,
    ) -> Result<usize, PopError> {
        let att = &self.att;
        let local = &mut self.local;
        match pop_slice_impl(att, local, out) {
            Ok(0) if !out.is_empty() => {}
            r => return r.map_err(pop_error),
        }
        let event = &att.header().events.not_empty;
        let r = keep_trying(event, self.spin, deadline, || {
            match pop_slice_impl(att, local, out) {
                Ok(0) => None,
                r => Some(r),
            }
        });
        r.map_err(|TimedOut| PopError::Timeout)?.map_err(pop_error)
    }

    /// Open a window over up to `max` published items, to read in place,
    /// without blocking (empty if there is nothing yet). Nothing is released
    /// to the producer until [`ReadWindow::release`]; dropping the window
    /// releases nothing. [`BatchError::Disconnected`] once the ring is
    /// drained and the producer has gone.
    ///
    /// ```
    /// # use shmqueue::Spsc;
    /// # let name = format!("/doc-try-read-window-{}", std::process::id());
    /// let q = Spsc::<u64>::create(&name, 4)?;
    /// let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
    /// tx.push_slice(&[1, 2, 3])?;
    /// let r = rx.try_read_window(8)?;
    /// assert_eq!(r.len(), 3);
    /// assert_eq!(r.get(1), 2);
    /// assert_eq!(r.iter().sum::<u64>(), 6);
    /// r.release(2); // the producer may reuse two slots; 3 stays
    /// assert_eq!(rx.try_pop()?, 3);
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_read_window(&mut self, max: usize) -> Result<ReadWindow<'_, T>, BatchError> {
        let used = if max == 0 {
            0
        } else {
            available_now(&self.att, &mut self.local, max)?
        };
        Ok(ReadWindow::new(self, used.min(max)))
    }

    /// Open a window over up to `max` items, waiting (spin, then futex) until
    /// at least one is published; the window then covers every published
    /// item up to `max`. `max == 0` gives an empty window at once. See
    /// [`Consumer::try_read_window`].
    ///
    /// ```
    /// # use shmqueue::{Spsc, WindowError};
    /// # let name = format!("/doc-read-window-{}", std::process::id());
    /// let q = Spsc::<u64>::create(&name, 8)?;
    /// let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
    /// let t = std::thread::spawn(move || tx.push_all(&[1, 2, 3])); // then drops tx
    /// let mut sum = 0;
    /// loop {
    ///     match rx.read_window(2) {
    ///         Ok(r) => {
    ///             sum += r.iter().sum::<u64>();
    ///             r.release_all();
    ///         }
    ///         Err(WindowError::Disconnected) => break, // drained, producer gone
    ///         Err(e) => return Err(e.into()),
    ///     }
    /// }
    /// assert_eq!(sum, 6);
    /// t.join().unwrap()?;
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_window(&mut self, max: usize) -> Result<ReadWindow<'_, T>, WindowError> {
        self.read_window_until(max, None)
    }

    /// Like [`Consumer::read_window`], giving up after `timeout` with
    /// [`WindowError::Timeout`].
    pub fn read_window_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<ReadWindow<'_, T>, WindowError> {
        self.read_window_until(max, Some(Deadline::after(timeout)))
    }

    pub(super) fn read_window_until(
        &mut self,
        max: usize,
        deadline: Option<Deadline>,
    ) -> Result<ReadWindow<'_, T>, WindowError> {
        if max == 0 {
            return Ok(ReadWindow::new(self, 0));
        }
        let att = &self.att;
        let local = &mut self.local;
        let used = match available_now(att, local, max).map_err(window_error)? {
            0 => {
                let event = &att.header().events.not_empty;
                let r = keep_trying(event, self.spin, deadline, || {
                    match available_now(att, local, max) {
                        Ok(0) => None,
                        r => Some(r),
                    }
                });
                r.map_err(|TimedOut| WindowError::Timeout)?
                    .map_err(window_error)?
            }
            n => n,
        };
        Ok(ReadWindow::new(self, used.min(max)))
    }

    /// Pop without blocking: [`TryPopError::Empty`] if there is nothing yet,
    /// [`TryPopError::Disconnected`] once the ring is drained and the
    /// producer has gone.
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, TryPopError> {
        try_pop_impl(&self.att, &mut self.local)
    }

    /// Pop, waiting while the ring is empty: spin, then sleep on a futex.
    /// Returns [`PopError::Disconnected`] once the ring is drained and the
    /// producer has dropped its endpoint or died (noticed within ~100 ms).
    // Always inlined, as `try_pop` is (see `Producer::push_until`).
    #[inline(always)]
    pub fn pop(&mut self) -> Result<T, PopError> {
        self.pop_until(None)
    }

    /// Like [`Consumer::pop`], giving up after `timeout`.
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, PopError> {
        self.pop_until(Some(Deadline::after(timeout)))
    }

    // Always inlined, for the reason given at `Producer::push_until`.
    #[inline(always)]
    pub(super) fn pop_until(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
        // The first attempt inline (see `keep_trying`), the waiting out of line.
        match try_pop_impl(&self.att, &mut self.local) {
            Ok(v) => Ok(v),
            Err(TryPopError::Empty) => self.pop_wait(deadline),
            Err(TryPopError::Disconnected) => Err(PopError::Disconnected),
            Err(TryPopError::Corrupt(c)) => Err(PopError::Corrupt(c)),
        }
    }

    /// Wait until an item is published, then take it: the wait itself moves
    /// no `T` (returned through `keep_trying`, a large `T` was copied three
    /// more times per blocking pop).
    #[inline(never)]
    pub(super) fn pop_wait(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
        let att = &self.att;
        let local = &mut self.local;
        let event = &att.header().events.not_empty;
        let r = keep_trying(event, self.spin, deadline, || {
            match poll_published(att, local) {
                Ok(true) => Some(Ok(())),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
        });
        match r {
            Err(TimedOut) => Err(PopError::Timeout),
            Ok(Err(TryPopError::Empty)) => Err(PopError::Timeout),
            Ok(Err(TryPopError::Disconnected)) => Err(PopError::Disconnected),
            Ok(Err(TryPopError::Corrupt(c))) => Err(PopError::Corrupt(c)),
            // Published: this attempt reads it without another index load.
            Ok(Ok(())) => match try_pop_impl(att, local) {
                Ok(v) => Ok(v),
                Err(TryPopError::Corrupt(c)) => Err(PopError::Corrupt(c)),
                Err(TryPopError::Disconnected | TryPopError::Empty) => Err(PopError::Disconnected),
            },
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

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        if !self.att.owned_here() {
            return; // a forked child's copy (liveness.rs, "Fork")
        }
        self.att.detach();
        // Wake a producer sleeping in push() so it sees Disconnected.
        self.att.header().events.not_full.notify();
    }
}
