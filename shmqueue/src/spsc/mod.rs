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

use bytemuck::Pod;

use crate::error::{Corruption, Role};
use crate::header::{Expected, Geometry, QueueKind};
use crate::mapping::Ring;
use crate::segment::SegmentOptions;
use crate::sync::Ordering;
use crate::wait::{Throttle, DEFAULT_SPIN};
use crate::Error;

#[cfg(any(feature = "tokio", shmqueue_loom))]
mod asyncio;
mod consumer;
mod producer;
mod window;

#[cfg(feature = "tokio")]
pub use asyncio::{PopStream, PushSink};
pub use consumer::Consumer;
use consumer::ConsumerLocal;
pub use producer::Producer;
use producer::ProducerLocal;
pub use window::{ReadWindow, ReadWindowIter, WriteWindow};

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
