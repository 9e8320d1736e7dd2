//! The single-producer/single-consumer ring.
//!
//! The textbook bounded buffer: `BUFFER_SIZE = capacity + 1` slots, a write
//! index `in` owned by the producer and a read index `out` owned by the
//! consumer, both in `[0, BUFFER_SIZE)` and advanced by compare-and-reset
//! (`i + 1`, or 0 at the end: no division). Empty when `in == out`, full when
//! `next(in) == out`, so one slot is always free and the indices alone tell
//! full from empty.
//!
//! Each side keeps its own index in process-local memory (it is the only
//! writer) and a cached copy of the other side's, refreshed only when the
//! cache says full (producer) or empty (consumer): one cache-line transfer
//! per batch, not per item.
//!
//! Ordering: the producer writes the slot, then stores `in` with Release; the
//! consumer loads `in` with Acquire before reading the slot. The consumer
//! reads the slot, then stores `out` with Release; the producer loads `out`
//! with Acquire before overwriting a slot. Nothing else needs ordering; see
//! docs/DESIGN.md for the full argument and the waiting protocol.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use crate::error::{
    BatchError, Corruption, PopError, PushAllError, PushError, Role, TryPopError, TryPushError,
    WindowError,
};
use crate::header::{Expected, Geometry, QueueKind, STATUS_DETACHED, STATUS_MASK};
use crate::mapping::Ring;
use crate::registry::{Attachment, Fresh};
use crate::segment::SegmentOptions;
use crate::sync::Ordering;
use crate::wait::{keep_trying, Deadline, Throttle, TimedOut, DEFAULT_SPIN};
use crate::Error;

/// Registry entry of the producer role.
const PRODUCER: u32 = 0;
/// Registry entry of the consumer role.
const CONSUMER: u32 = 1;

/// Default capacity of [`Builder`].
pub const DEFAULT_CAPACITY: usize = 1024;

/// A handle to an SPSC ring in a POSIX shared-memory segment.
///
/// The handle maps the segment; endpoints ([`Producer`], [`Consumer`]) are
/// claimed from it, at most one of each at a time across all processes.
///
/// ```
/// use shmqueue::Spsc;
/// let name = format!("/doc-spsc-{}", std::process::id());
/// let q = Spsc::<u64>::create(&name, 4)?;
/// let mut tx = q.producer()?;
/// let mut rx = Spsc::<u64>::open(&name)?.consumer()?;
/// tx.try_push(1)?;
/// tx.push(2)?;
/// assert_eq!(rx.try_pop()?, 1);
/// assert_eq!(rx.pop()?, 2);
/// shmqueue::unlink(&name)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Spsc<T> {
    ring: Arc<Ring>,
    spin: u32,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Spsc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spsc")
            .field("name", &self.ring.name())
            .field("capacity", &self.ring.geom().capacity)
            .field("elem_size", &self.ring.geom().elem_size)
            .finish()
    }
}

/// Options for creating or opening an [`Spsc`] ring.
///
/// ```
/// use std::time::Duration;
/// use shmqueue::Spsc;
/// let name = format!("/doc-builder-{}", std::process::id());
/// let q = Spsc::<[u8; 64]>::builder()
///     .capacity(256)
///     .schema(0x0bde_0001)      // openers must pass the same tag
///     .mode(0o600)
///     .spin(64)
///     .create(&name)?;
/// let same = Spsc::<[u8; 64]>::builder()
///     .schema(0x0bde_0001)
///     .init_timeout(Duration::from_millis(500))
///     .open(&name)?;
/// assert_eq!(same.capacity(), 256);
/// shmqueue::unlink(&name)?;
/// # Ok::<(), shmqueue::Error>(())
/// ```
pub struct Builder<T> {
    capacity: usize,
    schema: u64,
    spin: u32,
    seg: SegmentOptions,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("capacity", &self.capacity)
            .field("schema", &self.schema)
            .field("spin", &self.spin)
            .field("segment", &self.seg)
            .finish()
    }
}

impl<T: Pod> Default for Builder<T> {
    fn default() -> Self {
        Builder {
            capacity: DEFAULT_CAPACITY,
            schema: 0,
            spin: DEFAULT_SPIN,
            seg: SegmentOptions::default(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Builder<T> {
    /// Items the ring can hold (create only; default 1024). The segment has
    /// `capacity + 1` slots.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    crate::options::shared_builder_options!();

    crate::options::memfd_builder_entry_points!(
        Spsc<T>,
        expected = |b: &Self| b.expected(),
        wrap = |b: &Self, ring: Ring| Spsc {
            ring: Arc::new(ring),
            spin: b.spin,
            _t: PhantomData,
        },
    );

    fn expected(&self) -> Expected {
        Expected {
            kind: QueueKind::Spsc,
            elem_size: core::mem::size_of::<T>(),
            elem_align: core::mem::align_of::<T>(),
            entries: Some((1, 1)),
            schema: self.schema,
        }
    }

    fn geometry(&self) -> Result<Geometry, Error> {
        let e = self.expected();
        Geometry::compute(
            e.kind,
            e.elem_size,
            e.elem_align,
            self.capacity,
            1,
            1,
            e.schema,
            0,
        )
    }

    /// Create a new segment named `name`; fails with
    /// [`Error::AlreadyExists`] if the name is taken.
    pub fn create(self, name: &str) -> Result<Spsc<T>, Error> {
        let ring = Ring::create(name, self.geometry()?, &self.seg)?;
        Ok(Spsc {
            ring: Arc::new(ring),
            spin: self.spin,
            _t: PhantomData,
        })
    }

    /// Build the ring on the heap for loom model checking (only under
    /// `--cfg shmqueue_loom`, where shared-memory segments do not exist).
    #[cfg(shmqueue_loom)]
    #[doc(hidden)]
    pub fn create_in_heap(self) -> Spsc<T> {
        let geom = self.geometry().expect("loom model geometry");
        Spsc {
            ring: Arc::new(Ring::create_in_heap(geom)),
            spin: self.spin,
            _t: PhantomData,
        }
    }

    /// Open an existing segment named `name`, validating its header against
    /// `T` and the schema tag.
    pub fn open(self, name: &str) -> Result<Spsc<T>, Error> {
        let ring = Ring::open(name, &self.expected(), &self.seg)?;
        Ok(Spsc {
            ring: Arc::new(ring),
            spin: self.spin,
            _t: PhantomData,
        })
    }
}

impl<T: Pod> Spsc<T> {
    /// Create a ring holding up to `capacity` items of `T`, with default
    /// options (mode 0600, schema tag 0).
    pub fn create(name: &str, capacity: usize) -> Result<Self, Error> {
        Self::builder().capacity(capacity).create(name)
    }

    /// Open an existing ring with default options.
    pub fn open(name: &str) -> Result<Self, Error> {
        Self::builder().open(name)
    }

    /// Options for [`Builder::create`] and [`Builder::open`].
    pub fn builder() -> Builder<T> {
        Builder::default()
    }

    crate::options::memfd_queue_methods!(Spsc<T>);

    /// Claim the producer role. Fails with [`Error::RoleTaken`] while another
    /// live producer holds it (in any process); succeeds again once it is
    /// dropped or its process has died, and carries on where it stopped.
    pub fn producer(&self) -> Result<Producer<T>, Error> {
        let att = self.ring.attach(PRODUCER, CONSUMER, Role::Producer)?;
        let g = self.ring.geom();
        let h = self.ring.header();
        let in_ = g.check_index("in", h.head.value.load(Ordering::Acquire))?;
        let out = g.check_index("out", h.tail.value.load(Ordering::Acquire))?;
        Ok(Producer {
            local: ProducerLocal {
                in_,
                cached_out: out,
                reap: Throttle::default(),
            },
            spin: self.spin,
            att,
            _t: PhantomData,
        })
    }

    /// Claim the consumer role. Fails with [`Error::RoleTaken`] while another
    /// live consumer holds it; a new consumer resumes exactly where the last
    /// one stopped.
    pub fn consumer(&self) -> Result<Consumer<T>, Error> {
        let att = self.ring.attach(CONSUMER, PRODUCER, Role::Consumer)?;
        let g = self.ring.geom();
        let out = g.check_index("out", self.ring.header().tail.value.load(Ordering::Acquire))?;
        Ok(Consumer {
            local: ConsumerLocal {
                out,
                // "Empty" is always a safe guess: the first pop refreshes it.
                cached_in: out,
                reap: Throttle::default(),
            },
            spin: self.spin,
            att,
            _t: PhantomData,
        })
    }

    /// Items the ring can hold.
    pub fn capacity(&self) -> usize {
        self.ring.geom().capacity
    }

    /// Items in the ring right now (a snapshot; 0 if the indices are corrupt).
    pub fn len(&self) -> usize {
        len(&self.ring).unwrap_or(0)
    }

    /// Whether the ring is empty right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.ring.name()
    }
}

fn len(ring: &Ring) -> Result<usize, Corruption> {
    let g = ring.geom();
    let h = ring.header();
    let in_ = g.check_index("in", h.head.value.load(Ordering::Acquire))?;
    let out = g.check_index("out", h.tail.value.load(Ordering::Acquire))?;
    Ok(if in_ >= out {
        in_ - out
    } else {
        in_ + g.buffer_size - out
    })
}

#[inline]
fn next(i: usize, buffer_size: usize) -> usize {
    let n = i + 1;
    if n == buffer_size {
        0
    } else {
        n
    }
}

/// The producer's private view of the ring.
///
/// Invariant (the `unsafe` slot writes rely on it): `in_ < buffer_size` and
/// `cached_out < buffer_size`, always. Both are set from indices that
/// `check_index` bounded (at attach, and on every reload of `out`), and
/// `in_` only moves by `next`/`advance`, which wrap below `buffer_size`.
struct ProducerLocal {
    /// Our `in`: we are its only writer, so it is never re-read.
    in_: usize,
    /// Last `out` seen; `out` only moves forward, so this under-estimates free space.
    cached_out: usize,
    reap: Throttle,
}

/// The writing end of an [`Spsc`] ring. `Send`: move it to the
/// thread that produces.
pub struct Producer<T> {
    local: ProducerLocal,
    spin: u32,
    att: Attachment,
    _t: PhantomData<fn(T) -> T>,
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
fn try_push_impl<T: Pod>(
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
enum PushFail {
    Full,
    Disconnected,
    Corrupt(Corruption),
}

/// Free slots between our `in` and a (possibly stale) `out`: one slot
/// always stays empty.
#[inline]
fn free_slots(in_: usize, out: usize, b: usize) -> usize {
    if out > in_ {
        out - in_ - 1
    } else {
        out + b - in_ - 1
    }
}

/// Published slots between our `out` and a (possibly stale) `in`.
#[inline]
fn used_slots(out: usize, in_: usize, b: usize) -> usize {
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
fn free_now(att: &Attachment, local: &mut ProducerLocal, want: usize) -> Result<usize, BatchError> {
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
fn advance(i: usize, n: usize, b: usize) -> usize {
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
fn publish_in(att: &Attachment, local: &mut ProducerLocal, n: usize) {
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
fn push_slice_impl<T: Pod>(
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

    fn push_all_until(
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

    fn write_window_until(
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
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        self.push_until(value, None)
    }

    /// Like [`Producer::push`], giving up after `timeout`.
    pub fn push_timeout(&mut self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        self.push_until(value, Some(Deadline::after(timeout)))
    }

    #[inline]
    fn push_until(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        // The first attempt inline (see `keep_trying`), the waiting out of line.
        match try_push_impl(&self.att, &mut self.local, &value) {
            Ok(()) => Ok(()),
            Err(PushFail::Full) => self.push_wait(value, deadline),
            Err(PushFail::Disconnected) => Err(PushError::Disconnected(value)),
            Err(PushFail::Corrupt(c)) => Err(PushError::Corrupt(value, c)),
        }
    }

    #[inline(never)]
    fn push_wait(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
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

/// The consumer's private view of the ring.
///
/// Invariant (the `unsafe` slot reads rely on it): `out < buffer_size` and
/// `cached_in < buffer_size`, always, for the same reasons as
/// [`ProducerLocal`]'s: set from bounded indices (`check_index`, `load_in`),
/// moved only by wrapping arithmetic below `buffer_size`.
struct ConsumerLocal {
    /// Our `out`: we are its only writer.
    out: usize,
    /// Last `in` seen; `in` only moves forward, so this under-estimates items.
    cached_in: usize,
    reap: Throttle,
}

/// The reading end of an [`Spsc`] ring. `Send`: move it to the thread that
/// consumes (every operation takes `&mut self`).
pub struct Consumer<T> {
    local: ConsumerLocal,
    spin: u32,
    att: Attachment,
    _t: PhantomData<fn(T) -> T>,
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
fn check_index(att: &Attachment, what: &'static str, v: u64) -> Result<usize, Corruption> {
    if v < att.buffer_size() as u64 {
        Ok(v as usize)
    } else {
        Err(index_corrupt(att, what, v))
    }
}

#[cold]
#[inline(never)]
fn index_corrupt(att: &Attachment, what: &'static str, v: u64) -> Corruption {
    Corruption {
        what,
        found: v,
        limit: att.buffer_size() as u64,
    }
}

#[inline]
fn load_in(att: &Attachment) -> Result<usize, TryPopError> {
    // Acquire: the producer's slot writes happen-before our reads.
    let v = att.header().head.value.load(Ordering::Acquire);
    check_index(att, "in", v).map_err(TryPopError::Corrupt)
}

/// Whether an item is published at our `out`, refreshing the cached `in`
/// only when the cache shows none. `Err(Disconnected)` once the producer has
/// gone and everything it pushed has been taken.
#[inline(always)]
fn poll_published(att: &Attachment, local: &mut ConsumerLocal) -> Result<bool, TryPopError> {
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
fn try_pop_impl<T: Pod>(att: &Attachment, local: &mut ConsumerLocal) -> Result<T, TryPopError> {
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

fn window_error(e: BatchError) -> WindowError {
    match e {
        BatchError::Disconnected => WindowError::Disconnected,
        BatchError::Corrupt(c) => WindowError::Corrupt(c),
    }
}

fn pop_error(e: BatchError) -> PopError {
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
fn available_now(
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
fn publish_out(att: &Attachment, local: &mut ConsumerLocal, n: usize) {
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
fn pop_slice_impl<T: Pod>(
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

    fn pop_slice_until(
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

    fn read_window_until(
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
    #[inline]
    pub fn pop(&mut self) -> Result<T, PopError> {
        self.pop_until(None)
    }

    /// Like [`Consumer::pop`], giving up after `timeout`.
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, PopError> {
        self.pop_until(Some(Deadline::after(timeout)))
    }

    #[inline]
    fn pop_until(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
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
    fn pop_wait(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
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
fn runs(start: usize, len: usize, b: usize) -> (usize, usize) {
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
    producer: &'a mut Producer<T>,
    /// Slots in the first run (from the producer's `in`); the rest start at 0.
    first: usize,
    len: usize,
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
    fn new(producer: &'a mut Producer<T>, len: usize) -> Self {
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
    fn slot(&self, i: usize) -> usize {
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
    consumer: &'a mut Consumer<T>,
    /// Slots in the first run (from the consumer's `out`); the rest start at 0.
    first: usize,
    len: usize,
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
    fn new(consumer: &'a mut Consumer<T>, len: usize) -> Self {
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
    att: &'w Attachment,
    /// Next slot to read, in `[.., run_end)`.
    slot: usize,
    /// End of the current run (`<= buffer_size`).
    run_end: usize,
    /// Length of the second run, from slot 0; 0 once it has begun.
    second: usize,
    _t: PhantomData<fn() -> T>,
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
