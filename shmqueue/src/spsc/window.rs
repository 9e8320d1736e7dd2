//! Zero-copy windows of an SPSC ring: the producer writes slots in place
//! and commits them, the consumer reads them in place and releases them.

use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;

use crate::registry::Attachment;

use super::consumer::*;
use super::producer::*;

// ---------------------------------------------------------------------------
// Zero-copy windows
//
// A window is a run of `len` slots starting at the endpoint's own index
// (`in` for the producer, `out` for the consumer), wrapping at most once.
// It borrows the endpoint mutably, so the endpoint's index cannot move and no
// other call can touch the slots while it lives. Why the peer cannot touch
// them either: docs/DESIGN.md, "Zero-copy windows".
//
// The payload is shared with another process, so no `&T`/`&[T]`/`&mut [T]`
// over it is ever formed: values go in and out by copy (`ptr::write`,
// `ptr::read`, `copy_nonoverlapping`), and callers who want to work in place
// get raw pointers.
// ---------------------------------------------------------------------------

/// The two contiguous runs of a window of `len` slots starting at slot
/// `start` (`start < b`, `len < b`): `(start, first)` and `(0, len - first)`.
#[inline]
pub(super) fn runs(start: usize, len: usize, b: usize) -> (usize, usize) {
    (len.min(b - start), len - len.min(b - start))
}

/// A window of free slots reserved by the [`Producer`], to fill in place
/// (from [`Producer::try_write_window`], [`Producer::write_window`],
/// [`Producer::write_window_timeout`]).
///
/// Window index `i` (`0 <= i < len()`) is the `i`-th item after everything
/// already pushed. [`WriteWindow::commit`]`(k)` publishes the first `k` with
/// one index store; dropping the window publishes nothing, and the next
/// window or push reuses the same slots. Committing a slot that was not
/// written publishes whatever bytes it held (a valid but stale `T`).
///
/// The slots live in memory shared with another process, so the window
/// hands out no references into them: write with [`WriteWindow::write`],
/// [`WriteWindow::fill_from_slice`], [`WriteWindow::fill_with`], or through
/// the raw pointers of [`WriteWindow::as_mut_ptr_parts`].
///
/// ```
/// # use shmqueue::Spsc;
/// # let name = format!("/doc-write-window-{}", std::process::id());
/// let q = Spsc::<u32>::create(&name, 8)?;
/// let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
/// let mut w = tx.write_window(5)?; // waits for at least one free slot
/// assert_eq!(w.len(), 5);
/// assert_eq!(w.fill_from_slice(&[7, 8]), 2);
/// w.write(2, 9);
/// w.commit(3);
/// let mut buf = [0u32; 8];
/// assert_eq!(rx.pop_slice(&mut buf)?, 3);
/// assert_eq!(&buf[..3], &[7, 8, 9]);
/// drop(tx.write_window(5)?); // reserved, never committed: nothing published
/// assert_eq!(rx.pop_slice(&mut buf)?, 0);
/// # shmqueue::unlink(&name)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a write window publishes nothing unless committed"]
pub struct WriteWindow<'a, T: Pod> {
    pub(super) producer: &'a mut Producer<T>,
    /// Slots in the first run (from the producer's `in`); the rest start at 0.
    pub(super) first: usize,
    pub(super) len: usize,
}

impl<T: Pod> fmt::Debug for WriteWindow<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteWindow")
            .field("start", &self.producer.local.in_)
            .field("len", &self.len)
            .finish()
    }
}

impl<'a, T: Pod> WriteWindow<'a, T> {
    /// `len` must not exceed the free slots the producer has seen.
    pub(super) fn new(producer: &'a mut Producer<T>, len: usize) -> Self {
        let b = producer.att.buffer_size();
        let (first, _) = runs(producer.local.in_, len, b);
        WriteWindow {
            producer,
            first,
            len,
        }
    }

    /// Slot of window index `i < len`.
    #[inline]
    pub(super) fn slot(&self, i: usize) -> usize {
        debug_assert!(i < self.len);
        advance(self.producer.local.in_, i, self.producer.att.buffer_size())
    }

    /// Slots reserved.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot was reserved (the ring was full, or `max` was 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Write `value` at window index `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[inline]
    pub fn write(&mut self, i: usize, value: T) {
        assert!(
            i < self.len,
            "write window index {i} out of range (len {})",
            self.len
        );
        let s = self.slot(i);
        // SAFETY: s < buffer_size (advance); T matches the validated
        // geometry (Spsc<T>); the slot is in this window, which the producer
        // owns until it commits (DESIGN.md, "Zero-copy windows").
        unsafe { self.producer.att.write_slot(s, value) }
    }

    /// Copy `items` into the window from index 0; returns how many were
    /// copied: `min(items.len(), len())`.
    pub fn fill_from_slice(&mut self, items: &[T]) -> usize {
        let n = items.len().min(self.len);
        let (start, b) = (self.producer.local.in_, self.producer.att.buffer_size());
        let (first, _) = runs(start, n, b);
        // SAFETY: start < b and first <= b - start, n - first <= len - first
        // < b: both runs are in the slot array and in this window, which the
        // producer owns; T matches the geometry.
        unsafe {
            self.producer.att.write_slots(start, &items[..first]);
            self.producer.att.write_slots(0, &items[first..n]);
        }
        n
    }

    /// Write `f(i)` at every window index `i`, in order.
    pub fn fill_with(&mut self, mut f: impl FnMut(usize) -> T) {
        let start = self.producer.local.in_;
        let (first, len) = (self.first, self.len);
        let att = &self.producer.att;
        // SAFETY: start + first <= buffer_size and len - first < buffer_size:
        // the two runs of this window, which the producer owns; T matches
        // the geometry.
        unsafe {
            att.fill_slots(start, first, &mut f);
            att.fill_slots(0, len - first, |k| f(first + k));
        }
    }

    /// The window as two raw runs `[(ptr, len), (ptr, len)]`, in order (the
    /// second is empty unless the window wraps), for writing in place, e.g.
    /// with `read(2)` into `ptr as *mut u8`.
    ///
    /// The pointers are valid for writes of their lengths, aligned for `T`,
    /// until the window is committed or dropped. Write through them with
    /// `ptr::write`, `copy_nonoverlapping` or a system call; do not turn
    /// them into references: the memory is shared with another process.
    ///
    /// ```
    /// # use shmqueue::Spsc;
    /// # let name = format!("/doc-as-mut-ptr-parts-{}", std::process::id());
    /// let q = Spsc::<[u8; 16]>::create(&name, 8)?;
    /// let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
    /// let mut w = tx.try_write_window(3)?;
    /// let mut n = 0;
    /// for (ptr, len) in w.as_mut_ptr_parts() {
    ///     for i in 0..len {
    ///         // SAFETY: i < len: inside the window's run, valid until commit.
    ///         unsafe { ptr.add(i).write([n; 16]) };
    ///         n += 1;
    ///     }
    /// }
    /// w.commit_all();
    /// assert_eq!(rx.try_pop()?, [0; 16]);
    /// assert_eq!(rx.try_pop()?, [1; 16]);
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(shmqueue_loom))]
    pub fn as_mut_ptr_parts(&mut self) -> [(*mut T, usize); 2] {
        let start = self.producer.local.in_;
        let att = &self.producer.att;
        // SAFETY: start < buffer_size and 0 < buffer_size; T matches the
        // geometry. Taking the addresses touches no payload.
        let (a, b) = unsafe { (att.slot_ptr::<T>(start), att.slot_ptr::<T>(0)) };
        [(a, self.first), (b, self.len - self.first)]
    }

    /// Publish the first `k` reserved slots with one Release store of `in`
    /// (and a wake-up if the consumer sleeps). The rest of the window is
    /// dropped unpublished.
    ///
    /// # Panics
    /// If `k > len()`.
    pub fn commit(self, k: usize) {
        assert!(
            k <= self.len,
            "commit({k}) of a {}-slot write window",
            self.len
        );
        // Release (in publish_in): every write into the window happens-before
        // a consumer that Acquires the new `in`.
        publish_in(&self.producer.att, &mut self.producer.local, k);
    }

    /// Publish the whole window.
    pub fn commit_all(self) {
        let n = self.len;
        self.commit(n);
    }
}

/// A window over published items for the [`Consumer`] to read in place
/// (from [`Consumer::try_read_window`], [`Consumer::read_window`],
/// [`Consumer::read_window_timeout`]).
///
/// Window index `i` (`0 <= i < len()`) is the `i`-th unread item.
/// [`ReadWindow::release`]`(k)` hands the first `k` slots back to the
/// producer with one index store; dropping the window releases nothing, so
/// the next pop or window sees the same items again.
///
/// Items are copied out ([`ReadWindow::get`], [`ReadWindow::copy_to_slice`],
/// [`ReadWindow::iter`]) or read through the raw pointers of
/// [`ReadWindow::as_ptr_parts`]; no references into the shared slots are
/// handed out.
#[must_use = "a read window releases nothing unless released"]
pub struct ReadWindow<'a, T: Pod> {
    pub(super) consumer: &'a mut Consumer<T>,
    /// Slots in the first run (from the consumer's `out`); the rest start at 0.
    pub(super) first: usize,
    pub(super) len: usize,
}

impl<T: Pod> fmt::Debug for ReadWindow<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadWindow")
            .field("start", &self.consumer.local.out)
            .field("len", &self.len)
            .finish()
    }
}

impl<'a, T: Pod> ReadWindow<'a, T> {
    /// `len` must not exceed the items the consumer has seen published.
    pub(super) fn new(consumer: &'a mut Consumer<T>, len: usize) -> Self {
        let b = consumer.att.buffer_size();
        let (first, _) = runs(consumer.local.out, len, b);
        ReadWindow {
            consumer,
            first,
            len,
        }
    }

    /// Items in the window.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window is empty (nothing was published yet, or `max` was 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy of the item at window index `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[inline]
    pub fn get(&self, i: usize) -> T {
        assert!(
            i < self.len,
            "read window index {i} out of range (len {})",
            self.len
        );
        let s = advance(self.consumer.local.out, i, self.consumer.att.buffer_size());
        // SAFETY: s < buffer_size (advance); T matches the geometry; the slot
        // is in this window: published to us and not reused by the producer
        // until we release it (DESIGN.md, "Zero-copy windows").
        unsafe { self.consumer.att.read_slot(s) }
    }

    /// Copy the window's items from index 0 into `out`; returns how many:
    /// `min(out.len(), len())`.
    pub fn copy_to_slice(&self, out: &mut [T]) -> usize {
        let n = out.len().min(self.len);
        let (start, b) = (self.consumer.local.out, self.consumer.att.buffer_size());
        let (first, _) = runs(start, n, b);
        // SAFETY: both runs are in the slot array and in this window (as in
        // fill_from_slice); T matches the geometry.
        unsafe {
            self.consumer.att.read_slots(start, &mut out[..first]);
            self.consumer.att.read_slots(0, &mut out[first..n]);
        }
        n
    }

    /// The items, in order, by copy.
    pub fn iter(&self) -> ReadWindowIter<'_, T> {
        let start = self.consumer.local.out;
        ReadWindowIter {
            att: &self.consumer.att,
            slot: start,
            run_end: start + self.first,
            second: self.len - self.first,
            _t: PhantomData,
        }
    }

    /// The window as two raw runs `[(ptr, len), (ptr, len)]`, in order (the
    /// second is empty unless the window wraps), for reading in place, e.g.
    /// with `write(2)`.
    ///
    /// The pointers are valid for reads of their lengths, aligned for `T`,
    /// until the window is released or dropped. Read through them with
    /// `ptr::read`, `copy_nonoverlapping` or a system call; do not turn them
    /// into references: the memory is shared with another process.
    #[cfg(not(shmqueue_loom))]
    pub fn as_ptr_parts(&self) -> [(*const T, usize); 2] {
        let start = self.consumer.local.out;
        let att = &self.consumer.att;
        // SAFETY: start < buffer_size and 0 < buffer_size; T matches the
        // geometry. Taking the addresses touches no payload.
        let (a, b) = unsafe { (att.slot_ptr::<T>(start), att.slot_ptr::<T>(0)) };
        [
            (a.cast_const(), self.first),
            (b.cast_const(), self.len - self.first),
        ]
    }

    /// Hand the first `k` items' slots back to the producer with one Release
    /// store of `out` (and a wake-up if the producer sleeps). The rest stay
    /// in the ring, unread.
    ///
    /// # Panics
    /// If `k > len()`.
    pub fn release(self, k: usize) {
        assert!(
            k <= self.len,
            "release({k}) of a {}-item read window",
            self.len
        );
        // Release (in publish_out): our reads of the window happen-before the
        // producer reuses the slots.
        publish_out(&self.consumer.att, &mut self.consumer.local, k);
    }

    /// Release the whole window.
    pub fn release_all(self) {
        let n = self.len;
        self.release(n);
    }
}

impl<'w, T: Pod> IntoIterator for &'w ReadWindow<'_, T> {
    type Item = T;
    type IntoIter = ReadWindowIter<'w, T>;

    /// [`ReadWindow::iter`]: `for v in &window`.
    fn into_iter(self) -> ReadWindowIter<'w, T> {
        self.iter()
    }
}

/// Iterator over copies of a [`ReadWindow`]'s items.
pub struct ReadWindowIter<'w, T: Pod> {
    pub(super) att: &'w Attachment,
    /// Next slot to read, in `[.., run_end)`.
    pub(super) slot: usize,
    /// End of the current run (`<= buffer_size`).
    pub(super) run_end: usize,
    /// Length of the second run, from slot 0; 0 once it has begun.
    pub(super) second: usize,
    pub(super) _t: PhantomData<fn() -> T>,
}

impl<T: Pod> fmt::Debug for ReadWindowIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadWindowIter")
            .field("remaining", &self.len())
            .finish()
    }
}

impl<T: Pod> Iterator for ReadWindowIter<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.slot == self.run_end {
            if self.second == 0 {
                return None;
            }
            (self.slot, self.run_end, self.second) = (0, self.second, 0);
        }
        // SAFETY: slot < run_end, inside one of the two runs of a live read
        // window (the iterator borrows it): published to us, not reused by
        // the producer until we release it; T matches the geometry.
        let v = unsafe { self.att.read_slot(self.slot) };
        self.slot += 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.run_end - self.slot + self.second;
        (n, Some(n))
    }
}

impl<T: Pod> ExactSizeIterator for ReadWindowIter<'_, T> {}
