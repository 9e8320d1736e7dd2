//! A single-producer/single-consumer ring of variable-size byte messages.
//!
//! The segment has the same header, registry, liveness tokens and events as
//! the typed rings ([`QueueKind::Bytes`]); its data area is `capacity` bytes
//! (a multiple of 8, at least 64) holding **records**:
//!
//! | offset in record | size | field |
//! |---|---|---|
//! | 0 | 4 | `len`: payload bytes (u32, little-endian) |
//! | 4 | 4 | `flags` (u32, little-endian): 1 = PAD, 2 = MORE, 4 = CONT, 8 = ABORT |
//! | 8 | `len` | payload |
//! | 8 + `len` | 0-7 | padding to a multiple of 8 (never read) |
//!
//! `head` (producer) and `tail` (consumer) are monotonic byte positions
//! (u64, multiples of 8) in the header's index lines; position `p` is byte
//! `p % capacity` of the data area. A record never straddles the end of the
//! data area: when the next record does not fit before the end, the producer
//! writes a PAD record (`flags = PAD`, `len = 0`) meaning "the rest up to
//! the end is unused" and continues at offset 0.
//!
//! A message is one record (`flags = 0`) or a run of fragments: the first
//! has MORE, the middle ones MORE|CONT, the last CONT. A record with
//! CONT|ABORT (and `len = 0`) ends a message as abandoned. Because a
//! continuation says so, a record without CONT that arrives while a message
//! is incomplete proves the previous message was abandoned (its producer
//! died or gave up): the consumer reports [`RecvError::Truncated`], never a
//! short message.
//!
//! Ordering is the SPSC ring's: the producer writes payload and header, then
//! stores `head` with Release; the consumer loads `head` with Acquire before
//! reading anything in `[tail, head)`, and stores `tail` with Release after
//! its last read of a record, which the producer loads with Acquire before
//! writing over it. See docs/DESIGN.md ("The byte ring").
//!
//! Payload lives in memory another process can write, so no `&[u8]` or
//! `&mut [u8]` over it is ever created by this module: records are copied
//! with raw-pointer copies, and the only slice views are `unsafe fn`s whose
//! contracts put the burden on the caller.

use std::fmt;
use std::sync::Arc;

use crate::error::{Corruption, Role};
use crate::header::{Expected, Geometry, QueueKind, MAX_POSITION};
use crate::mapping::Ring;
use crate::segment::SegmentOptions;
use crate::sync::Ordering;
use crate::wait::{Throttle, DEFAULT_SPIN};
use crate::Error;

#[cfg(any(feature = "tokio", shmqueue_loom))]
mod asyncio;
mod consumer;
mod error;
mod producer;
pub(crate) mod record;
#[cfg(test)]
mod tests;

#[cfg(feature = "tokio-io")]
pub use asyncio::{AsyncReader, AsyncWriter};
pub use consumer::{Consumer, MessageReader, RecordReader};
use consumer::{ConsumerLocal, Mode};
pub use error::{RecvError, SendError};
use producer::ProducerLocal;
pub use producer::{MessageWriter, Producer, RecordWriter};
pub use record::RECORD_HEADER_SIZE;
use record::*;

/// Registry entry of the producer role.
const PRODUCER: u32 = 0;
/// Registry entry of the consumer role.
const CONSUMER: u32 = 1;

/// Default capacity of [`Builder`], in bytes (1 MiB).
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// Default largest message either side accepts (16 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;
// --------------------------------------------------------------------------
// The ring handle and its builder
// --------------------------------------------------------------------------

/// A handle to a byte-message SPSC ring in a POSIX shared-memory segment.
///
/// Messages are byte strings of any length from 0 up to the maximum message
/// size (default 16 MiB, set per process with
/// [`Builder::max_message_size`]), including messages larger than the
/// ring, which [`Producer::send`] sends in fragments as the consumer
/// drains them.
///
/// ```
/// use shmqueue::ByteRing;
/// let name = format!("/doc-bytes-{}", std::process::id());
/// let q = ByteRing::create(&name, 4096)?;          // 4 KiB of records
/// let mut tx = q.producer()?;
/// let mut rx = ByteRing::open(&name)?.consumer()?;
/// tx.send(b"hello")?;
/// tx.try_send(b"")?;                               // empty messages exist
/// let mut buf = Vec::new();
/// rx.recv(&mut buf)?;
/// assert_eq!(buf, b"hello");
/// rx.try_recv(&mut buf)?;
/// assert!(buf.is_empty());
/// shmqueue::unlink(&name)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ByteRing {
    ring: Arc<Ring>,
    spin: u32,
    max_message: usize,
}

impl fmt::Debug for ByteRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteRing")
            .field("name", &self.ring.name())
            .field("capacity", &self.ring.geom().capacity)
            .field("max_message_size", &self.max_message)
            .finish()
    }
}

/// Options for creating or opening a [`ByteRing`].
///
/// ```
/// use shmqueue::ByteRing;
/// let name = format!("/doc-bytes-builder-{}", std::process::id());
/// let q = ByteRing::builder()
///     .capacity(64 * 1024)            // bytes; a multiple of 8, >= 64
///     .max_message_size(1 << 20)      // refuse to send or accept more
///     .schema(7)
///     .create(&name)?;
/// let same = ByteRing::builder().schema(7).open(&name)?;
/// assert_eq!(same.capacity(), 64 * 1024);
/// shmqueue::unlink(&name)?;
/// # Ok::<(), shmqueue::Error>(())
/// ```
pub struct Builder {
    capacity: usize,
    max_message: usize,
    schema: u64,
    spin: u32,
    seg: SegmentOptions,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("capacity", &self.capacity)
            .field("max_message_size", &self.max_message)
            .field("schema", &self.schema)
            .field("spin", &self.spin)
            .field("segment", &self.seg)
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            capacity: DEFAULT_CAPACITY,
            max_message: DEFAULT_MAX_MESSAGE_SIZE,
            schema: 0,
            spin: DEFAULT_SPIN,
            seg: SegmentOptions::default(),
        }
    }
}

impl Builder {
    /// Bytes of the data area (create only; default 1 MiB). Must be a
    /// multiple of 8 and at least 64: records are 8-byte aligned. One record
    /// holds at most `capacity - 8` payload bytes; longer messages are sent
    /// in fragments.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Largest message this process sends or accepts (default 16 MiB). A
    /// producer refuses longer messages ([`SendError::TooLarge`]); a
    /// consumer discards them ([`RecvError::TooLarge`]) and never allocates
    /// more than this for one message. Each side sets its own.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    crate::options::shared_builder_options!();

    crate::options::memfd_builder_entry_points!(
        ByteRing,
        expected = |b: &Self| b.expected(),
        wrap = |b: &Self, ring: Ring| b.wrap(ring),
    );

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

    fn wrap(&self, ring: Ring) -> ByteRing {
        ByteRing {
            ring: Arc::new(ring),
            spin: self.spin,
            max_message: self.max_message,
        }
    }

    fn expected(&self) -> Expected {
        Expected {
            kind: QueueKind::Bytes,
            elem_size: 1,
            elem_align: 1,
            entries: Some((1, 1)),
            schema: self.schema,
        }
    }

    /// Create a new segment named `name`; fails with
    /// [`Error::AlreadyExists`] if the name is taken.
    pub fn create(self, name: &str) -> Result<ByteRing, Error> {
        let ring = Ring::create(name, self.geometry()?, &self.seg)?;
        Ok(self.wrap(ring))
    }

    /// Build the ring on the heap for loom model checking (only under
    /// `--cfg shmqueue_loom`, where shared-memory segments do not exist).
    #[cfg(shmqueue_loom)]
    #[doc(hidden)]
    pub fn create_in_heap(self) -> ByteRing {
        let geom = Geometry::compute(QueueKind::Bytes, 1, 1, self.capacity, 1, 1, self.schema, 0)
            .expect("loom model geometry");
        ByteRing {
            ring: Arc::new(Ring::create_in_heap(geom)),
            spin: self.spin,
            max_message: self.max_message,
        }
    }

    /// Open an existing byte ring named `name`, validating its header (queue
    /// kind, schema tag, geometry).
    pub fn open(self, name: &str) -> Result<ByteRing, Error> {
        let ring = Ring::open(name, &self.expected(), &self.seg)?;
        Ok(self.wrap(ring))
    }
}

/// Bytes in use between validated `tail` and `head`.
fn used(ring: &Ring) -> Result<u64, Corruption> {
    let h = ring.header();
    let head = h.head.value.load(Ordering::Acquire);
    let tail = h.tail.value.load(Ordering::Acquire);
    let cap = ring.geom().capacity as u64;
    match head.checked_sub(tail) {
        Some(n) if n <= cap => Ok(n),
        _ => Err(corrupt(
            "byte ring head",
            head,
            tail.saturating_add(cap + 1),
        )),
    }
}

/// A tail read from the segment: a multiple of 8, at most [`MAX_POSITION`]
/// (so that our own arithmetic on it, `tail + capacity`, cannot overflow).
fn check_tail(tail: u64) -> Result<(), Corruption> {
    if tail % 8 != 0 {
        return Err(corrupt("byte ring tail (not a multiple of 8)", tail, 0));
    }
    if tail > MAX_POSITION {
        return Err(corrupt("byte ring tail (beyond 2^62)", tail, MAX_POSITION));
    }
    Ok(())
}

/// Check positions read from the segment: multiples of 8, `tail <= head`,
/// at most `cap` apart, tail at most [`MAX_POSITION`].
fn check_positions(head: u64, tail: u64, cap: usize) -> Result<(), Corruption> {
    check_tail(tail)?;
    if head % 8 != 0 || head < tail || head - tail > cap as u64 {
        return Err(corrupt(
            "byte ring head",
            head,
            tail.saturating_add(cap as u64 + 1),
        ));
    }
    Ok(())
}

impl ByteRing {
    /// Create a byte ring with `capacity_bytes` of data area (a multiple of
    /// 8, at least 64) and default options.
    pub fn create(name: &str, capacity_bytes: usize) -> Result<Self, Error> {
        Self::builder().capacity(capacity_bytes).create(name)
    }

    /// Open an existing byte ring with default options.
    pub fn open(name: &str) -> Result<Self, Error> {
        Self::builder().open(name)
    }

    /// Options for [`Builder::create`] and [`Builder::open`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn limits(&self) -> Limits {
        Limits::new(self.ring.geom().capacity, self.max_message)
    }

    /// Claim the producer role ([`Error::RoleTaken`] while another live
    /// producer holds it). A new producer continues where the last stopped;
    /// if that one died in the middle of a fragmented message, the consumer
    /// gets [`RecvError::Truncated`] for it.
    pub fn producer(&self) -> Result<Producer, Error> {
        let att = self.ring.attach(PRODUCER, CONSUMER, Role::Producer)?;
        let lim = self.limits();
        let h = self.ring.header();
        let head = h.head.value.load(Ordering::Acquire);
        let tail = h.tail.value.load(Ordering::Acquire);
        check_positions(head, tail, lim.cap)?;
        Ok(Producer {
            local: ProducerLocal {
                head,
                off: (head % lim.cap as u64) as usize,
                cached_tail: tail,
                reap: Throttle::default(),
            },
            lim,
            spin: self.spin,
            att,
        })
    }

    /// Claim the consumer role ([`Error::RoleTaken`] while another live
    /// consumer holds it). A new consumer resumes at the last released
    /// record; if its predecessor stopped inside a fragmented message, the
    /// rest of that message is reported as [`RecvError::Truncated`].
    pub fn consumer(&self) -> Result<Consumer, Error> {
        let att = self.ring.attach(CONSUMER, PRODUCER, Role::Consumer)?;
        let lim = self.limits();
        let tail = self.ring.header().tail.value.load(Ordering::Acquire);
        check_tail(tail)?;
        Ok(Consumer {
            local: ConsumerLocal {
                tail,
                off: (tail % lim.cap as u64) as usize,
                cached_head: tail,
                reap: Throttle::default(),
            },
            lim,
            spin: self.spin,
            mode: Mode::Idle,
            partial: Vec::new(),
            att,
        })
    }

    crate::options::memfd_queue_methods!(ByteRing);

    /// Bytes of the data area.
    pub fn capacity(&self) -> usize {
        self.ring.geom().capacity
    }

    /// The largest payload of one record (`capacity - 8`): the most
    /// [`Producer::reserve`] and [`Producer::try_send`] take.
    pub fn max_record_payload(&self) -> usize {
        self.limits().max_record
    }

    /// This process's maximum message size.
    pub fn max_message_size(&self) -> usize {
        self.max_message
    }

    /// Bytes in the ring right now, record headers and padding included (a
    /// snapshot; 0 if the indices are corrupt).
    pub fn len(&self) -> usize {
        used(&self.ring).unwrap_or(0) as usize
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
