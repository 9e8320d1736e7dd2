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

use crate::error::{BatchError, Corruption, PopError, PushError, Role, TryPopError, TryPushError};
use crate::header::{Expected, Geometry, QueueKind, STATUS_ATTACHED, STATUS_DETACHED, STATUS_MASK};
use crate::ring::{Attachment, Ring};
use crate::segment::SegmentOptions;
use crate::sync::Ordering;
use crate::wait::{keep_trying, Deadline, Throttle, DEFAULT_SPIN};
use crate::Error;

/// Registry entry of the producer role.
const PRODUCER: u32 = 0;
/// Registry entry of the consumer role.
const CONSUMER: u32 = 1;
/// How often a polling endpoint asks the kernel whether its peer still lives.
const REAP_INTERVAL: Duration = Duration::from_millis(50);

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
        Spsc,
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
    /// `--cfg loom`, where shared-memory segments do not exist).
    #[cfg(loom)]
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

    crate::options::memfd_queue_methods!(Spsc);

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

/// Has the peer (the registry entry the attachment watches) gone? DETACHED
/// is read from the header; an ATTACHED peer is checked against its kernel
/// liveness token at most every [`REAP_INTERVAL`] (a syscall), so spinning
/// pollers stay cheap.
#[inline]
fn peer_gone(att: &Attachment, reap: &mut Throttle) -> bool {
    let s = att.peer().state.load(Ordering::Acquire) & STATUS_MASK;
    if s != STATUS_ATTACHED {
        return s == STATUS_DETACHED;
    }
    reap_due(att, reap)
}

/// The clock half of [`peer_gone`]: if [`REAP_INTERVAL`] has passed, ask the
/// kernel whether the ATTACHED peer still holds its token. Out of line: it
/// runs only on empty/full polls, and inlined it would keep the whole push
/// and pop from being inlined.
#[inline(never)]
fn reap_due(att: &Attachment, reap: &mut Throttle) -> bool {
    if !reap.ready(REAP_INTERVAL) {
        return false;
    }
    // An I/O error asking the kernel is treated as "alive": waiting longer is
    // recoverable, declaring a live peer dead is not.
    matches!(att.reap_peer(), Ok(STATUS_DETACHED))
}

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
        f.debug_struct("Producer")
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
    value: T,
) -> Result<(), TryPushError<T>> {
    let h = att.header();
    // One load of a line nobody writes in steady state.
    if att.peer().state.load(Ordering::Relaxed) & STATUS_MASK == STATUS_DETACHED {
        return Err(TryPushError::Disconnected(value));
    }
    let next = next(local.in_, att.buffer_size());
    if next == local.cached_out {
        // Acquire: the consumer's reads of the slots it released happen
        // before we overwrite them.
        let out = match check_index(att, "out", h.tail.value.load(Ordering::Acquire)) {
            Ok(o) => o,
            Err(c) => return Err(TryPushError::Corrupt(value, c)),
        };
        local.cached_out = out;
        if next == out {
            if peer_gone(att, &mut local.reap) {
                return Err(TryPushError::Disconnected(value));
            }
            return Err(TryPushError::Full(value));
        }
    }
    // SAFETY: in_ < buffer_size (invariant of ProducerLocal); the element
    // type matches the validated geometry (Spsc<T> checked size and
    // alignment); slot `in` is not visible to the consumer until the store
    // below and was released by it (next != out), so we own it.
    unsafe { att.write_slot(local.in_, value) };
    // Release: the slot's bytes happen-before a consumer that Acquires `in`.
    // (Mutations for the loom suite: see loom-tests/README.md.)
    #[cfg(shmq_mutation = "wake_before_publish")]
    h.events.not_empty.notify();
    #[cfg(not(shmq_mutation = "relaxed_publish"))]
    h.head.value.store(next as u64, Ordering::Release);
    #[cfg(shmq_mutation = "relaxed_publish")]
    h.head.value.store(next as u64, Ordering::Relaxed);
    local.in_ = next;
    #[cfg(not(shmq_mutation = "wake_before_publish"))]
    h.events.not_empty.notify();
    Ok(())
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
        let att = &self.att;
        let local = &mut self.local;
        let h = att.header();
        let b = att.buffer_size();
        if att.peer().state.load(Ordering::Relaxed) & STATUS_MASK == STATUS_DETACHED {
            return Err(BatchError::Disconnected);
        }
        if items.is_empty() {
            return Ok(0);
        }
        let mut free = free_slots(local.in_, local.cached_out, b);
        if free < items.len() {
            // Acquire: as in try_push, the consumer is done with what it released.
            let out = check_index(att, "out", h.tail.value.load(Ordering::Acquire))
                .map_err(BatchError::Corrupt)?;
            local.cached_out = out;
            free = free_slots(local.in_, out, b);
            if free == 0 {
                return if peer_gone(att, &mut local.reap) {
                    Err(BatchError::Disconnected)
                } else {
                    Ok(0)
                };
            }
        }
        let n = free.min(items.len());
        // At most two runs: up to the end of the array, then from slot 0.
        let first = n.min(b - local.in_);
        // SAFETY: in_ < b, first <= b - in_ and n - first < b, so both runs
        // lie in the slot array. n <= free, so the n slots from in_ onwards
        // (wrapping) are free: released by the consumer (Acquire on `out`)
        // and invisible to it until the store below, as in try_push. T
        // matches the validated geometry.
        unsafe {
            att.write_slots(local.in_, &items[..first]);
            att.write_slots(0, &items[first..n]);
        }
        let mut next = local.in_ + n;
        if next >= b {
            next -= b;
        }
        // Release: every slot of the batch happens-before the consumer's Acquire.
        h.head.value.store(next as u64, Ordering::Release);
        local.in_ = next;
        h.events.not_empty.notify();
        Ok(n)
    }

    /// Push without blocking.
    ///
    /// Returns [`TryPushError::Full`] if the ring is full and
    /// [`TryPushError::Disconnected`] if the consumer has gone; the value
    /// comes back in the error.
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), TryPushError<T>> {
        try_push_impl(&self.att, &mut self.local, value)
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
        match try_push_impl(&self.att, &mut self.local, value) {
            Ok(()) => Ok(()),
            Err(TryPushError::Full(v)) => self.push_wait(v, deadline),
            Err(TryPushError::Disconnected(v)) => Err(PushError::Disconnected(v)),
            Err(TryPushError::Corrupt(v, c)) => Err(PushError::Corrupt(v, c)),
        }
    }

    #[inline(never)]
    fn push_wait(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        let att = &self.att;
        let local = &mut self.local;
        let event = &att.header().events.not_full;
        let r = keep_trying(event, self.spin, deadline, || {
            match try_push_impl(att, local, value) {
                Ok(()) => Some(Ok(())),
                Err(TryPushError::Full(_)) => None,
                Err(TryPushError::Disconnected(v)) => Some(Err(PushError::Disconnected(v))),
                Err(TryPushError::Corrupt(v, c)) => Some(Err(PushError::Corrupt(v, c))),
            }
        });
        r.unwrap_or(Err(PushError::Timeout(value)))
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
        self.att.detach();
        // Wake a consumer sleeping in pop() so it drains and sees Disconnected.
        self.att.header().events.not_empty.notify();
    }
}

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
        f.debug_struct("Consumer")
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

// Always inlined into the public wrappers, which are `#[inline]`: the
// `Result` then stays in registers instead of going through the stack.
#[inline(always)]
fn try_pop_impl<T: Pod>(att: &Attachment, local: &mut ConsumerLocal) -> Result<T, TryPopError> {
    if local.out == local.cached_in {
        local.cached_in = load_in(att)?;
        if local.cached_in == local.out {
            if !peer_gone(att, &mut local.reap) {
                return Err(TryPopError::Empty);
            }
            // The producer left. Its DETACHED store (Release) came after its
            // last publication, and we read it with Acquire: one more look
            // at `in` sees everything it ever pushed.
            local.cached_in = load_in(att)?;
            if local.cached_in == local.out {
                return Err(TryPopError::Disconnected);
            }
        }
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

impl<T: Pod> Consumer<T> {
    /// Pop up to `out.len()` items into `out`, in order, with one
    /// publication of `out` (and one notification) for the whole batch;
    /// never blocks. Returns how many were popped: `Ok(0)` when the ring is
    /// empty, [`BatchError::Disconnected`] once it is drained and the
    /// producer has gone.
    pub fn pop_slice(&mut self, out: &mut [T]) -> Result<usize, BatchError> {
        let att = &self.att;
        let local = &mut self.local;
        let b = att.buffer_size();
        if out.is_empty() {
            return Ok(0);
        }
        let corrupt = |e| match e {
            TryPopError::Corrupt(c) => BatchError::Corrupt(c),
            _ => BatchError::Disconnected,
        };
        let mut used = used_slots(local.out, local.cached_in, b);
        if used < out.len() {
            local.cached_in = load_in(att).map_err(corrupt)?;
            used = used_slots(local.out, local.cached_in, b);
            if used == 0 {
                if !peer_gone(att, &mut local.reap) {
                    return Ok(0);
                }
                // As in try_pop: one more look after reading DETACHED.
                local.cached_in = load_in(att).map_err(corrupt)?;
                used = used_slots(local.out, local.cached_in, b);
                if used == 0 {
                    return Err(BatchError::Disconnected);
                }
            }
        }
        let n = used.min(out.len());
        let first = n.min(b - local.out);
        // SAFETY: out < b; the runs out..out+first <= b and 0..n-first are
        // slots the producer published (n <= used, from `in` loaded with
        // Acquire) and will not touch until we store `out` past them; T
        // matches the geometry.
        unsafe {
            att.read_slots(local.out, &mut out[..first]);
            att.read_slots(0, &mut out[first..n]);
        }
        let mut next = local.out + n;
        if next >= b {
            next -= b;
        }
        let h = att.header();
        // Release: our reads of the batch happen-before the producer reuses it.
        h.tail.value.store(next as u64, Ordering::Release);
        local.out = next;
        h.events.not_full.notify();
        Ok(n)
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

    #[inline(never)]
    fn pop_wait(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
        let att = &self.att;
        let local = &mut self.local;
        let event = &att.header().events.not_empty;
        let r = keep_trying(event, self.spin, deadline, || {
            match try_pop_impl(att, local) {
                Ok(v) => Some(Ok(v)),
                Err(TryPopError::Empty) => None,
                Err(TryPopError::Disconnected) => Some(Err(PopError::Disconnected)),
                Err(TryPopError::Corrupt(c)) => Some(Err(PopError::Corrupt(c))),
            }
        });
        r.unwrap_or(Err(PopError::Timeout))
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
        self.att.detach();
        // Wake a producer sleeping in push() so it sees Disconnected.
        self.att.header().events.not_full.notify();
    }
}
