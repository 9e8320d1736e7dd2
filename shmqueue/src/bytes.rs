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
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Corruption, Role};
use crate::header::{
    Expected, Geometry, QueueKind, BYTE_RECORD_ALIGN, MAX_POSITION, STATUS_DETACHED, STATUS_MASK,
};
use crate::mapping::Ring;
use crate::registry::{Attachment, Fresh};
use crate::segment::SegmentOptions;
use crate::sync::Ordering;
use crate::wait::{keep_trying, Deadline, Throttle, DEFAULT_SPIN};
use crate::Error;

/// Registry entry of the producer role.
const PRODUCER: u32 = 0;
/// Registry entry of the consumer role.
const CONSUMER: u32 = 1;

/// Default capacity of [`Builder`], in bytes (1 MiB).
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// Default largest message either side accepts (16 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;
/// Bytes of the header in front of every record's payload.
pub const RECORD_HEADER_SIZE: usize = 8;

/// The rest of the data area, up to its end, is unused; continue at 0.
const FLAG_PAD: u32 = 1;
/// More fragments of this message follow.
const FLAG_MORE: u32 = 2;
/// This record continues a message (it is not its first record).
const FLAG_CONT: u32 = 4;
/// The message in progress is abandoned (with CONT, `len = 0`).
const FLAG_ABORT: u32 = 8;
/// A middle fragment.
const FLAGS_MIDDLE: u32 = FLAG_MORE | FLAG_CONT;
/// An abandoned message's end.
const FLAGS_ABORTED: u32 = FLAG_CONT | FLAG_ABORT;

/// A record's header, as it lies in the data area (little-endian fields).
/// Encoded and decoded as bytes ([`encode_header`], [`read_header`]) at
/// the offsets pinned below.
#[repr(C)]
#[allow(dead_code)] // the layout's description; never constructed
struct RecordHeader {
    len: u32,
    flags: u32,
}
/// Offset of `len` in a record header.
const LEN_AT: usize = 0;
/// Offset of `flags` in a record header.
const FLAGS_AT: usize = 4;

#[cfg(not(shmqueue_loom))]
mod layout_pins {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};
    use static_assertions::const_assert_eq;

    const_assert_eq!(size_of::<RecordHeader>(), RECORD_HEADER_SIZE);
    const_assert_eq!(align_of::<RecordHeader>(), 4);
    const_assert_eq!(offset_of!(RecordHeader, len), LEN_AT);
    const_assert_eq!(offset_of!(RecordHeader, flags), FLAGS_AT);
    const_assert_eq!(RECORD_HEADER_SIZE, BYTE_RECORD_ALIGN);
    const_assert_eq!(FLAG_PAD | FLAG_MORE | FLAG_CONT | FLAG_ABORT, 0xf);
}

/// Sizes derived from the validated capacity and this process's options.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Bytes in the data area.
    cap: usize,
    /// Largest payload of one record: `cap - 8` (and what a u32 holds).
    max_record: usize,
    /// Payload of one fragment of a message that `send` splits: about half
    /// the ring, so the producer fills one half while the consumer drains
    /// the other.
    chunk: usize,
    /// Largest message this endpoint sends or accepts.
    max_message: usize,
}

impl Limits {
    fn new(cap: usize, max_message: usize) -> Limits {
        let max_record = (cap - RECORD_HEADER_SIZE).min(u32::MAX as usize & !7);
        let chunk = ((cap / 2) & !7) - RECORD_HEADER_SIZE;
        Limits {
            cap,
            max_record,
            chunk: chunk.min(max_record),
            max_message,
        }
    }
}

/// Bytes a record with `len` payload bytes occupies (header, payload, padding).
/// `len <= max_record < cap`, so this cannot overflow.
#[inline]
fn record_size(len: usize) -> usize {
    RECORD_HEADER_SIZE + ((len + 7) & !7)
}

// --------------------------------------------------------------------------
// Raw access to the data area. Every function takes an offset its caller
// has bounds-checked against the validated capacity.
// --------------------------------------------------------------------------

/// Copy `src` into the data area at byte `at`.
///
/// # Safety
/// `at + src.len() <= capacity` of `att`'s byte ring, and the bytes are not
/// in `[tail, head)` of the ring (so no honest consumer reads them now).
#[inline]
unsafe fn copy_in(att: &Attachment, at: usize, src: &[u8]) {
    // SAFETY: the caller's contract is write_bytes' (the attachment is a
    // byte ring's: ByteRing only attaches to QueueKind::Bytes segments).
    unsafe { att.write_bytes(at, src) }
}

/// Copy `len` bytes of the data area from byte `at` to `dst`.
///
/// # Safety
/// `at + len <= capacity`, and the bytes are in `[tail, head)` as last
/// loaded with Acquire (published to this consumer); `dst` is valid for
/// `len` bytes of writes and is the caller's own (process-local) memory.
#[inline]
unsafe fn copy_out(att: &Attachment, at: usize, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract is read_bytes'.
    unsafe { att.read_bytes(at, dst, len) }
}

/// The 8 bytes of a record header.
fn encode_header(len: u32, flags: u32) -> [u8; RECORD_HEADER_SIZE] {
    let mut b = [0u8; RECORD_HEADER_SIZE];
    b[LEN_AT..LEN_AT + 4].copy_from_slice(&len.to_le_bytes());
    b[FLAGS_AT..FLAGS_AT + 4].copy_from_slice(&flags.to_le_bytes());
    b
}

/// Write a record header at byte `at`.
///
/// # Safety
/// `at + 8 <= capacity`; as [`copy_in`].
#[inline]
unsafe fn write_header(att: &Attachment, at: usize, len: u32, flags: u32) {
    // SAFETY: the caller's contract.
    unsafe { copy_in(att, at, &encode_header(len, flags)) }
}

/// Read the record header at byte `at` (untrusted: the caller validates it).
///
/// # Safety
/// `at + 8 <= capacity`, and the bytes are published to the caller.
#[inline]
unsafe fn read_header(att: &Attachment, at: usize) -> (usize, u32) {
    let mut b = [0u8; RECORD_HEADER_SIZE];
    // SAFETY: the caller's contract; `b` is ours.
    unsafe { copy_out(att, at, b.as_mut_ptr(), RECORD_HEADER_SIZE) };
    let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (word(LEN_AT) as usize, word(FLAGS_AT))
}

fn corrupt(what: &'static str, found: u64, limit: u64) -> Corruption {
    Corruption { what, found, limit }
}

// --------------------------------------------------------------------------
// Errors
// --------------------------------------------------------------------------

/// Why a byte-ring send (or reservation) did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No room right now (non-blocking calls only).
    Full,
    /// The deadline passed while the ring stayed full.
    Timeout,
    /// The consumer has gone (dropped, or its process died).
    Disconnected,
    /// The message (or reservation) is longer than `max`: this endpoint's
    /// maximum message size, or, for [`Producer::try_send`] and
    /// reservations, the largest single record.
    TooLarge {
        /// The length asked for.
        len: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// The consumer's index in shared memory is corrupt.
    Corrupt(Corruption),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full => f.write_str(
                "byte ring is full; retry later, or use send()/send_timeout() to wait for space",
            ),
            SendError::Timeout => {
                f.write_str("timed out waiting for space; the consumer is alive but not keeping up")
            }
            SendError::Disconnected => {
                f.write_str("the consumer has gone; the message was not (completely) sent")
            }
            SendError::TooLarge { len, max } => write!(
                f,
                "message of {len} bytes exceeds the limit of {max} bytes; raise \
                 max_message_size on both sides, or use send() (which fragments) \
                 instead of a single record"
            ),
            SendError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a byte-ring receive returned no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing (complete) to receive right now (non-blocking calls only).
    Empty,
    /// The deadline passed first.
    Timeout,
    /// The ring is drained and the producer has gone.
    Disconnected,
    /// The message exceeds this consumer's maximum message size. It was
    /// discarded (the rest of it is skipped as it arrives); the ring stays
    /// consistent and the next call receives the next message.
    TooLarge {
        /// The message's length, or for a fragmented message the length
        /// reached when the limit was crossed (a lower bound).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message was abandoned part-way: its producer died, gave up (a
    /// timeout, or a [`MessageWriter`] aborted), or this consumer attached
    /// in the middle of it. The part received is discarded; the next call
    /// receives the next message. Never reported for a whole message.
    Truncated,
    /// [`Consumer::recv_into`]: the buffer is shorter than the message
    /// (`needed` bytes). The message is kept; call again with a larger
    /// buffer (or use [`Consumer::recv`]).
    BufferTooSmall {
        /// The message's length.
        needed: usize,
    },
    /// The zero-copy [`Consumer::try_read`] family reads only messages
    /// in one record; the next message is fragmented. It is left in place:
    /// receive it with [`Consumer::recv`] or
    /// [`Consumer::read_message`].
    Fragmented,
    /// A record header or index in shared memory is impossible; nothing was
    /// read outside the ring. Recreate the queue.
    Corrupt(Corruption),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => {
                f.write_str("no complete message yet; retry, or use recv()/recv_timeout() to wait")
            }
            RecvError::Timeout => {
                f.write_str("timed out waiting for a message; the producer is alive but quiet")
            }
            RecvError::Disconnected => f.write_str(
                "byte ring is drained and the producer has gone; nothing more will arrive \
                 until a producer attaches",
            ),
            RecvError::TooLarge { len, max } => write!(
                f,
                "message of at least {len} bytes exceeds this consumer's limit of {max} bytes; \
                 it was skipped (raise max_message_size to accept it)"
            ),
            RecvError::Truncated => f.write_str(
                "a message was abandoned part-way (its producer died or gave up); \
                 the partial message was discarded, the next one is intact",
            ),
            RecvError::BufferTooSmall { needed } => write!(
                f,
                "the message needs a buffer of {needed} bytes; it was kept, call again \
                 with a larger buffer"
            ),
            RecvError::Fragmented => f.write_str(
                "the next message is fragmented and cannot be read in place; \
                 use recv() or read_message()",
            ),
            RecvError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for RecvError {}

fn send_io(e: SendError) -> io::Error {
    let kind = match e {
        SendError::Timeout | SendError::Full => io::ErrorKind::TimedOut,
        SendError::Disconnected => io::ErrorKind::BrokenPipe,
        SendError::TooLarge { .. } => io::ErrorKind::InvalidInput,
        SendError::Corrupt(_) => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e)
}

fn recv_io(e: RecvError) -> io::Error {
    let kind = match e {
        RecvError::Timeout | RecvError::Empty => io::ErrorKind::TimedOut,
        RecvError::Truncated | RecvError::Disconnected => io::ErrorKind::UnexpectedEof,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e)
}

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

// --------------------------------------------------------------------------
// Producer
// --------------------------------------------------------------------------

struct ProducerLocal {
    /// Our `head`: we are its only writer, so it is never re-read.
    head: u64,
    /// `head % cap`, kept incrementally (no division on the hot path).
    off: usize,
    /// Last `tail` seen; it only moves forward, so this under-estimates room.
    cached_tail: u64,
    reap: Throttle,
}

/// Room for one record, from [`Producer::try_claim`]: its header goes
/// at `at` (= the producer's offset), its payload (up to `room` bytes) at
/// `at + 8`. Nothing is visible to the consumer until it is published.
#[derive(Clone, Copy, Debug)]
struct Claim {
    at: usize,
    room: usize,
}

/// The writing end of a [`ByteRing`]. `Send`: move it to the thread that
/// produces.
pub struct Producer {
    local: ProducerLocal,
    lim: Limits,
    spin: u32,
    att: Attachment,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("bytes::Producer")
            .field("name", &self.att.ring().name())
            .field("head", &self.local.head)
            .field("cached_tail", &self.local.cached_tail)
            .finish()
    }
}

impl Producer {
    /// Whether `need` bytes from our head are free, refreshing the cached
    /// tail once if the cache says no. `Disconnected` if there is no room
    /// and the consumer is gone.
    #[inline]
    fn has_room(&mut self, need: usize) -> Result<bool, SendError> {
        let cap = self.lim.cap as u64;
        let head = self.local.head;
        if cap - (head - self.local.cached_tail) >= need as u64 {
            return Ok(true);
        }
        // Acquire: the consumer's reads of what it released happen before
        // we overwrite it.
        let tail = self.att.header().tail.value.load(Ordering::Acquire);
        if tail % 8 != 0 || tail > head || head - tail > cap {
            return Err(SendError::Corrupt(corrupt(
                "byte ring tail",
                tail,
                head.saturating_add(1),
            )));
        }
        self.local.cached_tail = tail;
        if cap - (head - tail) >= need as u64 {
            return Ok(true);
        }
        if self.att.peer_gone(&mut self.local.reap) {
            return Err(SendError::Disconnected);
        }
        Ok(false)
    }

    /// Advance `head` by `n` bytes already written, publish it, wake the
    /// consumer.
    #[inline]
    fn advance(&mut self, n: usize) {
        self.local.head += n as u64;
        self.local.off += n;
        if self.local.off == self.lim.cap {
            self.local.off = 0;
        }
        let h = self.att.header();
        // Release: the record bytes happen-before a consumer that Acquires
        // `head`. (Mutation for the loom suite: see loom-tests/README.md.)
        #[cfg(not(shmqueue_mutation = "bytes_relaxed_publish"))]
        h.head.value.store(self.local.head, Ordering::Release);
        #[cfg(shmqueue_mutation = "bytes_relaxed_publish")]
        h.head.value.store(self.local.head, Ordering::Relaxed);
        h.events.not_empty.notify();
    }

    /// Room for a record of `len` payload bytes (`len <= max_record`), or
    /// `Full`. If the record would straddle the end, a PAD record is
    /// published first (as soon as the bytes to the end are free), so a
    /// record as large as the ring always fits once the consumer drains.
    #[inline]
    fn try_claim(&mut self, len: usize) -> Result<Claim, SendError> {
        debug_assert!(len <= self.lim.max_record);
        if self.att.peer().state.load(Ordering::Relaxed) & STATUS_MASK == STATUS_DETACHED {
            return Err(SendError::Disconnected);
        }
        let size = record_size(len);
        if self.local.off + size > self.lim.cap {
            let pad = self.lim.cap - self.local.off;
            if !self.has_room(pad)? {
                return Err(SendError::Full);
            }
            // SAFETY: off is a multiple of 8 below cap, so off + 8 <= cap;
            // the `pad` bytes from head are free (has_room), outside
            // [tail, head).
            unsafe { write_header(&self.att, self.local.off, 0, FLAG_PAD) };
            self.advance(pad);
        }
        if !self.has_room(size)? {
            return Err(SendError::Full);
        }
        Ok(Claim {
            at: self.local.off,
            room: len,
        })
    }

    /// Publish the claimed record with `len <= claim.room` payload bytes
    /// (already written) and `flags`.
    #[inline]
    fn publish(&mut self, c: Claim, len: usize, flags: u32) {
        debug_assert_eq!(c.at, self.local.off);
        debug_assert!(len <= c.room);
        // SAFETY: the claim's record lies inside the data area (try_claim
        // checked off + size <= cap, size >= 8) and is free.
        unsafe { write_header(&self.att, c.at, len as u32, flags) };
        self.advance(record_size(len));
    }

    /// Copy `src` into the payload of claim `c` at `offset`.
    #[inline]
    fn fill(&mut self, c: Claim, offset: usize, src: &[u8]) {
        assert!(
            offset <= c.room && src.len() <= c.room - offset,
            "write past the reserved length"
        );
        // SAFETY: at + 8 + room <= cap (try_claim) and the range is within
        // the room (checked above); the claimed bytes are free.
        unsafe { copy_in(&self.att, c.at + RECORD_HEADER_SIZE + offset, src) };
    }

    /// Wait for [`Self::try_claim`] to succeed: spin, then sleep on the
    /// `not_full` futex, until `deadline`.
    fn claim_until(&mut self, len: usize, deadline: Option<Deadline>) -> Result<Claim, SendError> {
        match self.try_claim(len) {
            Err(SendError::Full) => {}
            r => return r,
        }
        self.claim_wait(len, deadline)
    }

    #[inline(never)]
    fn claim_wait(&mut self, len: usize, deadline: Option<Deadline>) -> Result<Claim, SendError> {
        let ring = Arc::clone(self.att.ring());
        let event = &ring.header().events.not_full;
        keep_trying(event, self.spin, deadline, || match self.try_claim(len) {
            Err(SendError::Full) => None,
            r => Some(r),
        })
        .unwrap_or(Err(SendError::Timeout))
    }

    /// Best effort, after a fragmented message failed part-way: end it with
    /// an ABORT record if there is room now. Otherwise the consumer learns it
    /// when the next message starts (or the producer goes away).
    fn abort_message(&mut self) {
        if let Ok(c) = self.try_claim(0) {
            self.publish(c, 0, FLAGS_ABORTED);
        }
    }

    fn too_large(&self, len: usize) -> Result<(), SendError> {
        if len > self.lim.max_message {
            return Err(SendError::TooLarge {
                len,
                max: self.lim.max_message,
            });
        }
        Ok(())
    }

    /// Send `msg` as one record without blocking: [`SendError::Full`] if
    /// there is no room now. Messages longer than one record
    /// ([`ByteRing::max_record_payload`]) are refused with
    /// [`SendError::TooLarge`]: use [`Producer::send`] for those.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.too_large(msg.len())?;
        if msg.len() > self.lim.max_record {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.lim.max_record,
            });
        }
        let c = self.try_claim(msg.len())?;
        self.fill(c, 0, msg);
        self.publish(c, msg.len(), 0);
        Ok(())
    }

    /// Send `msg`, waiting for room: spin, then sleep on a futex. A message
    /// longer than about half the ring is sent in fragments, each published
    /// as soon as it is written, so messages of any size up to the maximum
    /// message size pass through a small ring. Fails if the consumer goes
    /// away ([`SendError::Disconnected`]) or the segment is corrupt.
    ///
    /// If it fails after some fragments were published, the message is ended
    /// as abandoned (an ABORT record, or, if even that does not fit, the
    /// start of the next message says so): the consumer reports
    /// [`RecvError::Truncated`], never a short message.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_until(msg, None)
    }

    /// Like [`Producer::send`], giving up after `timeout`
    /// ([`SendError::Timeout`]).
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_until(msg, Some(Deadline::after(timeout)))
    }

    fn send_until(&mut self, msg: &[u8], deadline: Option<Deadline>) -> Result<(), SendError> {
        self.too_large(msg.len())?;
        let chunk = self.lim.chunk;
        if msg.len() <= chunk {
            let c = self.claim_until(msg.len(), deadline)?;
            self.fill(c, 0, msg);
            self.publish(c, msg.len(), 0);
            return Ok(());
        }
        let n = msg.len().div_ceil(chunk);
        for (i, piece) in msg.chunks(chunk).enumerate() {
            let cont = if i > 0 { FLAG_CONT } else { 0 };
            let more = if i + 1 < n { FLAG_MORE } else { 0 };
            let flags = cont | more;
            let c = match self.claim_until(piece.len(), deadline) {
                Ok(c) => c,
                Err(e) => {
                    if i > 0 && e != SendError::Disconnected {
                        self.abort_message();
                    }
                    return Err(e);
                }
            };
            self.fill(c, 0, piece);
            self.publish(c, piece.len(), flags);
        }
        Ok(())
    }

    fn check_reserve(&self, len: usize) -> Result<(), SendError> {
        self.too_large(len)?;
        if len > self.lim.max_record {
            return Err(SendError::TooLarge {
                len,
                max: self.lim.max_record,
            });
        }
        Ok(())
    }

    /// Reserve a record of `len` payload bytes in the ring without blocking,
    /// to be written in place and published with [`RecordWriter::commit`].
    /// Dropping the writer without committing publishes nothing.
    ///
    /// ```
    /// use shmqueue::ByteRing;
    /// # let name = format!("/doc-bytes-reserve-{}", std::process::id());
    /// let q = ByteRing::create(&name, 4096)?;
    /// let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
    /// let mut w = tx.try_reserve(11)?;
    /// w.write_at(0, b"hello");
    /// w.write_at(5, b" world");
    /// w.commit();
    /// tx.try_reserve(3)?.discard();             // not committed: nothing sent
    /// let r = rx.try_read()?;                   // read in place
    /// assert_eq!(r.to_vec(), b"hello world");
    /// r.release();
    /// assert!(rx.try_read().is_err());
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_reserve(&mut self, len: usize) -> Result<RecordWriter<'_>, SendError> {
        self.check_reserve(len)?;
        let claim = self.try_claim(len)?;
        Ok(RecordWriter { p: self, claim })
    }

    /// Like [`Producer::try_reserve`], waiting for room.
    pub fn reserve(&mut self, len: usize) -> Result<RecordWriter<'_>, SendError> {
        self.check_reserve(len)?;
        let claim = self.claim_until(len, None)?;
        Ok(RecordWriter { p: self, claim })
    }

    /// Like [`Producer::reserve`], giving up after `timeout`.
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<RecordWriter<'_>, SendError> {
        self.check_reserve(len)?;
        let claim = self.claim_until(len, Some(Deadline::after(timeout)))?;
        Ok(RecordWriter { p: self, claim })
    }

    /// Start a message of any length, written with [`std::io::Write`];
    /// [`MessageWriter::finish`] (or dropping the writer) ends it. Writes
    /// block while the ring is full.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use shmqueue::ByteRing;
    /// # let name = format!("/doc-bytes-stream-{}", std::process::id());
    /// let q = ByteRing::create(&name, 4096)?;
    /// let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
    /// let mut w = tx.write_message();
    /// write!(w, "{}+{}", 1, 2)?;
    /// w.write_all(b"=3")?;
    /// w.finish()?;
    /// let mut s = String::new();
    /// rx.read_message()?.read_to_string(&mut s)?;
    /// assert_eq!(s, "1+2=3");
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_message(&mut self) -> MessageWriter<'_> {
        MessageWriter::new(self, None)
    }

    /// Like [`Producer::write_message`]; every wait of this message
    /// gives up at `timeout` from now.
    pub fn write_message_timeout(&mut self, timeout: Duration) -> MessageWriter<'_> {
        MessageWriter::new(self, Some(Deadline::after(timeout)))
    }

    /// Bytes of the data area.
    pub fn capacity(&self) -> usize {
        self.lim.cap
    }

    /// The largest payload of one record (see [`ByteRing::max_record_payload`]).
    pub fn max_record_payload(&self) -> usize {
        self.lim.max_record
    }

    /// This endpoint's maximum message size.
    pub fn max_message_size(&self) -> usize {
        self.lim.max_message
    }

    /// Bytes in the ring right now (a snapshot).
    pub fn len(&self) -> usize {
        used(self.att.ring()).unwrap_or(0) as usize
    }

    /// Whether the ring is empty right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if !self.att.owned_here() {
            return; // a forked child's copy (liveness.rs, "Fork")
        }
        self.att.detach();
        // Wake a consumer sleeping in recv() so it drains and sees Disconnected.
        self.att.header().events.not_empty.notify();
    }
}

/// A record reserved in the ring, written in place, published by
/// [`RecordWriter::commit`]. Dropping it without committing publishes
/// nothing (and the producer can reserve again at once).
///
/// The bytes lie in shared memory, so there is no safe `&mut [u8]` to them:
/// write with [`RecordWriter::write_at`] / [`RecordWriter::copy_from_slice`],
/// through [`RecordWriter::as_mut_ptr`], or with the `unsafe`
/// [`RecordWriter::as_mut_slice`].
pub struct RecordWriter<'a> {
    p: &'a mut Producer,
    claim: Claim,
}

impl fmt::Debug for RecordWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordWriter")
            .field("len", &self.claim.room)
            .finish()
    }
}

impl RecordWriter<'_> {
    /// The reserved payload length.
    pub fn len(&self) -> usize {
        self.claim.room
    }

    /// Whether the reservation has no payload bytes.
    pub fn is_empty(&self) -> bool {
        self.claim.room == 0
    }

    /// Copy `src` into the payload at `offset`. Panics if it does not fit in
    /// [`RecordWriter::len`] bytes.
    pub fn write_at(&mut self, offset: usize, src: &[u8]) {
        self.p.fill(self.claim, offset, src);
    }

    /// Copy `src` over the whole payload. Panics unless
    /// `src.len() == self.len()`.
    pub fn copy_from_slice(&mut self, src: &[u8]) {
        assert_eq!(
            src.len(),
            self.claim.room,
            "source length != reserved length"
        );
        self.p.fill(self.claim, 0, src);
    }

    /// The payload's first byte: [`RecordWriter::len`] writable bytes, valid
    /// until the writer is committed or dropped. Any process that maps the
    /// segment can write them too (only a hostile or buggy one would), so
    /// write through raw pointers (`ptr::write`, `copy_nonoverlapping`) and
    /// do not keep references to them.
    #[cfg(not(shmqueue_loom))]
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: the claim's payload starts inside the data area
        // (at + 8 <= cap); only the address is computed here.
        unsafe {
            self.p
                .att
                .data_ptr()
                .as_ptr()
                .add(self.claim.at + RECORD_HEADER_SIZE)
        }
    }

    /// The payload as a mutable slice.
    ///
    /// # Safety
    /// The bytes lie in a shared-memory segment. The ring protocol gives
    /// them to this writer alone, but nothing stops another process that maps
    /// the segment from writing them. The caller must guarantee that, for as
    /// long as the slice lives, no other process writes these bytes (every
    /// process that can open the segment follows the protocol). Otherwise the
    /// slice aliases memory mutated behind it, which is undefined behaviour.
    #[cfg(not(shmqueue_loom))]
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.claim.room;
        let p = self.as_mut_ptr();
        // SAFETY: `len` bytes from `p` are inside the data area, claimed by
        // this producer and invisible to the consumer until commit; `&mut
        // self` prevents a second slice; exclusivity against other processes
        // is the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(p, len) }
    }

    /// Publish nothing (as dropping the writer does); the space is reserved
    /// again by the next call.
    pub fn discard(self) {}

    /// Publish the record with its full reserved length.
    pub fn commit(self) {
        let n = self.claim.room;
        self.commit_len(n);
    }

    /// Publish the record with only its first `len` payload bytes
    /// (`len <= self.len()`, else panics).
    pub fn commit_len(self, len: usize) {
        assert!(len <= self.claim.room, "commit_len beyond the reservation");
        self.p.publish(self.claim, len, 0);
    }
}

/// A message of any length written through [`std::io::Write`], from
/// [`Producer::write_message`].
///
/// Bytes are written straight into reserved ring space, one fragment at a
/// time (up to half the ring, less when the ring is busy and the write is
/// small); a full fragment is published when the next
/// write needs room, [`Write::flush`](std::io::Write::flush) publishes the
/// current one early. [`MessageWriter::finish`] publishes the last one. The
/// consumer sees the message only as a whole, or, with
/// [`Consumer::read_message`], streams it as it arrives.
///
/// Dropped without `finish`, the message is ended as if finished (waiting
/// for room if needed) — unless the thread is panicking or a write failed,
/// in which case it is aborted: the consumer gets [`RecvError::Truncated`].
/// A message beyond the maximum message size fails the write that crosses
/// it with `InvalidInput` and is aborted.
pub struct MessageWriter<'a> {
    p: &'a mut Producer,
    /// The fragment being filled, and how many bytes it holds.
    cur: Option<Claim>,
    filled: usize,
    /// At least one fragment has been published.
    published: bool,
    total: usize,
    deadline: Option<Deadline>,
    failed: Option<SendError>,
    done: bool,
}

impl fmt::Debug for MessageWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageWriter")
            .field("written", &self.total)
            .field("published", &self.published)
            .finish()
    }
}

impl<'a> MessageWriter<'a> {
    fn new(p: &'a mut Producer, deadline: Option<Deadline>) -> Self {
        MessageWriter {
            p,
            cur: None,
            filled: 0,
            published: false,
            total: 0,
            deadline,
            failed: None,
            done: false,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.total
    }

    fn publish_cur(&mut self, more: bool) {
        if let Some(c) = self.cur.take() {
            let more = if more { FLAG_MORE } else { 0 };
            let cont = if self.published { FLAG_CONT } else { 0 };
            let flags = more | cont;
            self.p.publish(c, self.filled, flags);
            self.published = true;
            self.filled = 0;
        }
    }

    fn end(&mut self) -> Result<(), SendError> {
        if let Some(e) = self.failed {
            self.abort_inner();
            return Err(e);
        }
        if self.done {
            return Ok(());
        }
        if self.cur.is_none() {
            match self.p.claim_until(0, self.deadline) {
                Ok(c) => {
                    self.cur = Some(c);
                    self.filled = 0;
                }
                Err(e) => {
                    self.abort_inner();
                    return Err(e);
                }
            }
        }
        self.publish_cur(false);
        self.done = true;
        Ok(())
    }

    fn abort_inner(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        // An unpublished reservation is simply forgotten.
        self.cur = None;
        if self.published {
            self.p.abort_message();
        }
    }

    /// End the message: publish its last fragment (waiting for room if
    /// needed, until the writer's deadline).
    pub fn finish(mut self) -> Result<(), SendError> {
        self.end()
    }

    /// Abandon the message. Nothing was visible yet: nothing is sent.
    /// Fragments were published: an ABORT record tells the consumer
    /// ([`RecvError::Truncated`]) if there is room now; otherwise the
    /// consumer learns it when the next message starts.
    pub fn abort(mut self) {
        self.abort_inner();
    }
}

impl io::Write for MessageWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = self.failed {
            return Err(send_io(e));
        }
        if self.done {
            return Err(io::Error::other("message already finished"));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let max = self.p.lim.max_message;
        if buf.len() > max - self.total {
            let e = SendError::TooLarge {
                len: self.total + buf.len(),
                max,
            };
            self.failed = Some(e);
            return Err(send_io(e));
        }
        loop {
            if let Some(c) = self.cur {
                let room = c.room - self.filled;
                if room > 0 {
                    let n = room.min(buf.len());
                    self.p.fill(c, self.filled, &buf[..n]);
                    self.filled += n;
                    self.total += n;
                    return Ok(n);
                }
                // Full, and more is coming: out it goes.
                self.publish_cur(true);
            }
            // A whole fragment if there is room for one now; otherwise wait
            // only for what this write needs (a small message must not wait
            // for half the ring to drain).
            let chunk = self.p.lim.chunk;
            let claim = match self.p.try_claim(chunk) {
                Err(SendError::Full) => self.p.claim_until(buf.len().min(chunk), self.deadline),
                r => r,
            };
            match claim {
                Ok(c) => {
                    self.cur = Some(c);
                    self.filled = 0;
                }
                Err(e) => {
                    if e != SendError::Timeout {
                        self.failed = Some(e);
                    }
                    return Err(send_io(e));
                }
            }
        }
    }

    /// Publish what has been written so far (as a fragment with more to
    /// come), so a streaming consumer can read it.
    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.failed {
            return Err(send_io(e));
        }
        if self.filled > 0 {
            self.publish_cur(true);
        }
        Ok(())
    }
}

impl Drop for MessageWriter<'_> {
    fn drop(&mut self) {
        if self.done || !self.p.att.owned_here() {
            return;
        }
        if std::thread::panicking() || self.failed.is_some() {
            self.abort_inner();
        } else {
            let _ = self.end();
        }
    }
}

// --------------------------------------------------------------------------
// Consumer
// --------------------------------------------------------------------------

struct ConsumerLocal {
    /// Our `tail`: we are its only writer.
    tail: u64,
    /// `tail % cap`.
    off: usize,
    /// Last validated `head`; `tail <= cached_head <= tail + cap`.
    cached_head: u64,
    reap: Throttle,
}

/// A validated record at the consumer's tail: payload at `at` (`len`
/// bytes), `size` bytes in all.
#[derive(Clone, Copy, Debug)]
struct Rec {
    at: usize,
    len: usize,
    flags: u32,
    size: usize,
}

impl Rec {
    fn more(&self) -> bool {
        self.flags & FLAG_MORE != 0
    }
    fn cont(&self) -> bool {
        self.flags & FLAG_CONT != 0
    }
    fn abort(&self) -> bool {
        self.flags & FLAG_ABORT != 0
    }
}

enum Next {
    Rec(Rec),
    /// Nothing published beyond our tail.
    Empty,
    /// Nothing published, and the producer has gone.
    Gone,
}

/// Where the consumer is in the message stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Between messages.
    Idle,
    /// Fragments of a message are in `partial`; more are expected.
    Assembling,
    /// Discarding the rest of a message (too large, or a torn one).
    Skipping,
    /// A whole message is in `partial` (a `recv_into` buffer was too small).
    Ready,
}

/// Where a received message goes.
enum Sink<'b> {
    Vec(&'b mut Vec<u8>),
    Slice(&'b mut [u8]),
}

/// The reading end of a [`ByteRing`]. `Send`: move it to the thread that
/// consumes.
pub struct Consumer {
    local: ConsumerLocal,
    lim: Limits,
    spin: u32,
    mode: Mode,
    /// Reassembly buffer of a fragmented message (never longer than the
    /// maximum message size).
    partial: Vec<u8>,
    att: Attachment,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("bytes::Consumer")
            .field("name", &self.att.ring().name())
            .field("tail", &self.local.tail)
            .field("cached_head", &self.local.cached_head)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Load and validate the producer's `head` against our `tail` and the
/// capacity `cap`.
#[inline]
fn load_head(att: &Attachment, tail: u64, cap: usize) -> Result<u64, RecvError> {
    // Acquire: the producer's record writes happen-before our reads.
    let head = att.header().head.value.load(Ordering::Acquire);
    if head % 8 != 0 || head < tail || head - tail > cap as u64 {
        return Err(RecvError::Corrupt(corrupt(
            "byte ring head",
            head,
            tail.saturating_add(cap as u64 + 1),
        )));
    }
    Ok(head)
}

impl Consumer {
    /// Give the first `size` bytes at our tail back to the producer.
    #[inline]
    fn release(&mut self, size: usize) {
        self.local.tail += size as u64;
        self.local.off += size;
        if self.local.off == self.lim.cap {
            self.local.off = 0;
        }
        let h = self.att.header();
        // Release: our reads of the record happen-before the producer
        // overwrites it.
        h.tail.value.store(self.local.tail, Ordering::Release);
        h.events.not_full.notify();
    }

    /// The record at our tail, validated, not consumed; PAD records are
    /// skipped (and released) on the way. Every field read from the segment
    /// is checked before use: flags known, length within one record, record
    /// within `[tail, head)` and not straddling the end.
    fn next_record(&mut self) -> Result<Next, RecvError> {
        loop {
            if self.local.cached_head == self.local.tail {
                let (att, tail, cap) = (&self.att, self.local.tail, self.lim.cap);
                let load = || load_head(att, tail, cap);
                match att.refresh_or_gone(&mut self.local.reap, tail, load)? {
                    Fresh::Moved(head) => self.local.cached_head = head,
                    Fresh::Idle(_) => return Ok(Next::Empty),
                    Fresh::Gone => return Ok(Next::Gone),
                }
            }
            // Positions are multiples of 8, so at least a header is published.
            let avail = (self.local.cached_head - self.local.tail) as usize;
            let off = self.local.off;
            // SAFETY: off is a multiple of 8 below cap (so off + 8 <= cap),
            // and [off, off + 8) is published (avail >= 8).
            let (len, flags) = unsafe { read_header(&self.att, off) };
            if flags == FLAG_PAD {
                let skip = self.lim.cap - off;
                if len != 0 || skip > avail {
                    return Err(RecvError::Corrupt(corrupt(
                        "byte ring pad record",
                        (len as u64).max(skip as u64),
                        avail as u64 + 1,
                    )));
                }
                self.release(skip);
                continue;
            }
            let known = matches!(
                flags,
                0 | FLAG_MORE | FLAG_CONT | FLAGS_MIDDLE | FLAGS_ABORTED
            );
            if !known || (flags & FLAG_ABORT != 0 && len != 0) {
                return Err(RecvError::Corrupt(corrupt(
                    "byte ring record flags",
                    flags.into(),
                    16,
                )));
            }
            if len > self.lim.max_record {
                return Err(RecvError::Corrupt(corrupt(
                    "byte ring record length",
                    len as u64,
                    self.lim.max_record as u64 + 1,
                )));
            }
            let size = record_size(len);
            if size > avail || off + size > self.lim.cap {
                return Err(RecvError::Corrupt(corrupt(
                    "byte ring record end",
                    (off + size) as u64,
                    (off + avail.min(self.lim.cap - off)) as u64 + 1,
                )));
            }
            return Ok(Next::Rec(Rec {
                at: off + RECORD_HEADER_SIZE,
                len,
                flags,
                size,
            }));
        }
    }

    /// Copy `rec`'s payload from `from` into `dst` (`from + dst.len() <=
    /// rec.len`).
    #[inline]
    fn copy_payload(&self, rec: Rec, from: usize, dst: &mut [u8]) {
        assert!(
            from <= rec.len && dst.len() <= rec.len - from,
            "copy beyond the record"
        );
        // SAFETY: next_record checked at - 8 + size <= cap and size <= avail,
        // so the payload (and the range checked above) is inside the data
        // area and in [tail, head); `dst` is the caller's slice.
        unsafe { copy_out(&self.att, rec.at + from, dst.as_mut_ptr(), dst.len()) };
    }

    /// Append `rec`'s payload to `v` (reserving exactly; the caller bounded
    /// the total by the maximum message size).
    fn append_to(&self, rec: Rec, v: &mut Vec<u8>) {
        v.reserve(rec.len);
        let old = v.len();
        // SAFETY: the payload is inside the data area and published, as in
        // copy_payload; after `reserve`, v's allocation has room for rec.len
        // more bytes after `old` (no reference to the uninitialised part is
        // formed), and copy_out initialises all of them before set_len.
        unsafe {
            copy_out(&self.att, rec.at, v.as_mut_ptr().add(old), rec.len);
            v.set_len(old + rec.len);
        }
    }

    /// Skip what is not the start of a message (continuations of a message
    /// being skipped or whose start we never saw, ABORT records) and return
    /// the first record of the next message, unconsumed. Mode is Idle or
    /// Skipping on entry, Idle when a record is returned.
    fn next_message_start(&mut self) -> Result<Option<Rec>, RecvError> {
        debug_assert!(matches!(self.mode, Mode::Idle | Mode::Skipping));
        loop {
            let rec = match self.next_record()? {
                Next::Rec(r) => r,
                Next::Empty => return Ok(None),
                Next::Gone => {
                    self.mode = Mode::Idle;
                    return Err(RecvError::Disconnected);
                }
            };
            if !rec.cont() {
                self.mode = Mode::Idle;
                return Ok(Some(rec));
            }
            self.release(rec.size);
            if self.mode == Mode::Skipping {
                if !rec.more() {
                    self.mode = Mode::Idle;
                }
                continue;
            }
            // A continuation whose start we never saw: this consumer attached
            // in the middle of a message. Discard the rest of it, once.
            if rec.more() {
                self.mode = Mode::Skipping;
            }
            if !rec.abort() {
                return Err(RecvError::Truncated);
            }
        }
    }

    /// A first record that exceeds the maximum message size: consume it,
    /// skip the rest of its message.
    fn refuse(&mut self, rec: Rec, len: usize) -> RecvError {
        self.release(rec.size);
        self.partial.clear();
        self.mode = if rec.more() {
            Mode::Skipping
        } else {
            Mode::Idle
        };
        RecvError::TooLarge {
            len,
            max: self.lim.max_message,
        }
    }

    /// Abandon the message being assembled.
    fn abandon(&mut self) -> RecvError {
        self.partial.clear();
        self.mode = Mode::Idle;
        RecvError::Truncated
    }

    /// One non-blocking step towards a whole message: `Some(len)` once one
    /// has been delivered to `sink`, `None` if the ring ran dry first (a
    /// partly assembled message stays in `partial`).
    fn step(&mut self, sink: &mut Sink<'_>) -> Result<Option<usize>, RecvError> {
        match self.mode {
            Mode::Ready => return self.deliver_partial(sink).map(Some),
            Mode::Assembling => return self.assemble(sink),
            Mode::Idle | Mode::Skipping => {}
        }
        let Some(rec) = self.next_message_start()? else {
            return Ok(None);
        };
        if rec.len > self.lim.max_message {
            return Err(self.refuse(rec, rec.len));
        }
        if !rec.more() {
            return self.deliver_record(rec, sink).map(Some);
        }
        self.partial.clear();
        let mut partial = std::mem::take(&mut self.partial);
        self.append_to(rec, &mut partial);
        self.partial = partial;
        self.release(rec.size);
        self.mode = Mode::Assembling;
        self.assemble(sink)
    }

    fn assemble(&mut self, sink: &mut Sink<'_>) -> Result<Option<usize>, RecvError> {
        loop {
            let rec = match self.next_record()? {
                Next::Rec(r) => r,
                Next::Empty => return Ok(None),
                // The producer died (or left) in the middle of the message.
                Next::Gone => return Err(self.abandon()),
            };
            if !rec.cont() {
                // A new message began: the one we hold was abandoned. The
                // new record stays for the next call.
                return Err(self.abandon());
            }
            if rec.abort() {
                self.release(rec.size);
                return Err(self.abandon());
            }
            let total = self.partial.len() + rec.len;
            if total > self.lim.max_message {
                return Err(self.refuse(rec, total));
            }
            let mut partial = std::mem::take(&mut self.partial);
            self.append_to(rec, &mut partial);
            self.partial = partial;
            self.release(rec.size);
            if !rec.more() {
                self.mode = Mode::Ready;
                return self.deliver_partial(sink).map(Some);
            }
        }
    }

    /// Hand the whole message in `partial` to `sink` (mode Ready).
    fn deliver_partial(&mut self, sink: &mut Sink<'_>) -> Result<usize, RecvError> {
        let n = self.partial.len();
        match sink {
            Sink::Vec(v) => {
                std::mem::swap(*v, &mut self.partial);
                self.partial.clear();
            }
            Sink::Slice(s) => {
                if n > s.len() {
                    return Err(RecvError::BufferTooSmall { needed: n });
                }
                s[..n].copy_from_slice(&self.partial);
                self.partial.clear();
            }
        }
        self.mode = Mode::Idle;
        Ok(n)
    }

    /// Copy a one-record message to `sink` and release it; a too-small
    /// slice leaves it in the ring.
    fn deliver_record(&mut self, rec: Rec, sink: &mut Sink<'_>) -> Result<usize, RecvError> {
        match sink {
            Sink::Vec(v) => {
                v.clear();
                self.append_to(rec, v);
            }
            Sink::Slice(s) => {
                if rec.len > s.len() {
                    return Err(RecvError::BufferTooSmall { needed: rec.len });
                }
                self.copy_payload(rec, 0, &mut s[..rec.len]);
            }
        }
        self.release(rec.size);
        Ok(rec.len)
    }

    /// Retry `f` (a non-blocking step that re-reads the ring) until it
    /// yields, spinning then sleeping on the `not_empty` futex, until
    /// `deadline`.
    fn wait_for<R>(
        &mut self,
        deadline: Option<Deadline>,
        mut f: impl FnMut(&mut Self) -> Result<Option<R>, RecvError>,
    ) -> Result<R, RecvError> {
        if let Some(r) = f(self)? {
            return Ok(r);
        }
        let ring = Arc::clone(self.att.ring());
        let event = &ring.header().events.not_empty;
        keep_trying(event, self.spin, deadline, || f(self).transpose())
            .unwrap_or(Err(RecvError::Timeout))
    }

    /// Receive a whole message into `buf` (replacing its contents) without
    /// blocking. [`RecvError::Empty`] if no complete message is there yet;
    /// fragments that have arrived are kept internally, so a message larger
    /// than the ring is received by calling again as it drains.
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        match self.step(&mut Sink::Vec(buf))? {
            Some(_) => Ok(()),
            None => Err(RecvError::Empty),
        }
    }

    /// Receive a whole message into `buf` (replacing its contents), waiting
    /// for it: spin, then sleep on a futex. Messages sent in fragments are
    /// reassembled (up to the maximum message size).
    ///
    /// Errors: [`RecvError::Disconnected`] once the ring is drained and the
    /// producer has gone; [`RecvError::Truncated`] for a message abandoned
    /// part-way (producer killed mid-message); [`RecvError::TooLarge`]
    /// (skipped); [`RecvError::Corrupt`]. After `Truncated` or `TooLarge`
    /// the next call continues with the next message.
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        self.wait_for(None, |c| c.step(&mut Sink::Vec(&mut *buf)))
            .map(|_| ())
    }

    /// Like [`Consumer::recv`], giving up after `timeout`
    /// ([`RecvError::Timeout`]; fragments received so far are kept for the
    /// next call).
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<(), RecvError> {
        let d = Deadline::after(timeout);
        self.wait_for(Some(d), |c| c.step(&mut Sink::Vec(&mut *buf)))
            .map(|_| ())
    }

    /// Receive a whole message into `buf`, waiting for it; returns its
    /// length. If `buf` is too short: [`RecvError::BufferTooSmall`] with
    /// the length needed, and the message is kept for the next call.
    ///
    /// ```
    /// use shmqueue::{ByteRing, RecvError};
    /// # let name = format!("/doc-bytes-into-{}", std::process::id());
    /// let q = ByteRing::create(&name, 4096)?;
    /// let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
    /// tx.send(b"twelve bytes")?;
    /// let mut small = [0u8; 4];
    /// assert_eq!(rx.recv_into(&mut small), Err(RecvError::BufferTooSmall { needed: 12 }));
    /// let mut big = [0u8; 64];
    /// let n = rx.recv_into(&mut big)?;
    /// assert_eq!(&big[..n], b"twelve bytes");
    /// # shmqueue::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.wait_for(None, |c| c.step(&mut Sink::Slice(&mut *buf)))
    }

    /// Like [`Consumer::recv_into`], without blocking
    /// ([`RecvError::Empty`] if no complete message is there yet).
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        match self.step(&mut Sink::Slice(buf))? {
            Some(n) => Ok(n),
            None => Err(RecvError::Empty),
        }
    }

    /// Like [`Consumer::recv_into`], giving up after `timeout`.
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        let d = Deadline::after(timeout);
        self.wait_for(Some(d), |c| c.step(&mut Sink::Slice(&mut *buf)))
    }

    /// The next message, if it is in one record, without blocking.
    fn try_read_rec(&mut self) -> Result<Option<Rec>, RecvError> {
        if matches!(self.mode, Mode::Ready | Mode::Assembling) {
            return Err(RecvError::Fragmented);
        }
        let Some(rec) = self.next_message_start()? else {
            return Ok(None);
        };
        if rec.len > self.lim.max_message {
            return Err(self.refuse(rec, rec.len));
        }
        if rec.more() {
            return Err(RecvError::Fragmented);
        }
        Ok(Some(rec))
    }

    /// Read the next message in place, without copying or blocking. It
    /// stays in the ring until the [`RecordReader`] is released or dropped.
    /// Only messages in one record (as sent by `try_send`, `reserve`, or
    /// `send` of up to half the ring) can be read in place; for a
    /// fragmented one this returns [`RecvError::Fragmented`] and leaves it
    /// for [`Consumer::recv`] or [`Consumer::read_message`].
    pub fn try_read(&mut self) -> Result<RecordReader<'_>, RecvError> {
        match self.try_read_rec()? {
            Some(rec) => Ok(RecordReader { c: self, rec }),
            None => Err(RecvError::Empty),
        }
    }

    /// Like [`Consumer::try_read`], waiting for a message.
    pub fn read(&mut self) -> Result<RecordReader<'_>, RecvError> {
        let rec = self.wait_for(None, |c| c.try_read_rec())?;
        Ok(RecordReader { c: self, rec })
    }

    /// Like [`Consumer::read`], giving up after `timeout`.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<RecordReader<'_>, RecvError> {
        let rec = self.wait_for(Some(Deadline::after(timeout)), |c| c.try_read_rec())?;
        Ok(RecordReader { c: self, rec })
    }

    /// Wait for the next message and read it with [`std::io::Read`], as it
    /// arrives, without holding it whole in memory: fragments are released
    /// to the producer as they are read. The reader returns `Ok(0)` at the
    /// end of the message. If the message is abandoned part-way (producer
    /// killed), a read fails with `UnexpectedEof` wrapping
    /// [`RecvError::Truncated`]: a cut-off message never reads as complete.
    /// Dropping the reader early skips the rest of the message.
    ///
    /// Errors before the first byte (as for [`Consumer::recv`]) are
    /// returned here.
    pub fn read_message(&mut self) -> Result<MessageReader<'_>, RecvError> {
        self.start_reader(None)
    }

    /// Like [`Consumer::read_message`]; waiting for the message and
    /// every read of it give up at `timeout` from now.
    pub fn read_message_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<MessageReader<'_>, RecvError> {
        self.start_reader(Some(Deadline::after(timeout)))
    }

    fn start_reader(&mut self, deadline: Option<Deadline>) -> Result<MessageReader<'_>, RecvError> {
        let mut r = MessageReader {
            pre: Vec::new(),
            pre_pos: 0,
            cur: None,
            pos: 0,
            more: false,
            total: 0,
            deadline,
            failed: None,
            c: self,
        };
        match r.c.mode {
            // A message held whole, or its first fragments: read those first.
            Mode::Ready | Mode::Assembling => {
                r.more = r.c.mode == Mode::Assembling;
                r.pre = std::mem::take(&mut r.c.partial);
                r.total = r.pre.len();
                r.c.mode = Mode::Idle;
            }
            Mode::Idle | Mode::Skipping => {
                let rec = r.c.wait_for(deadline, |c| c.next_message_start())?;
                if rec.len > r.c.lim.max_message {
                    return Err(r.c.refuse(rec, rec.len));
                }
                r.more = rec.more();
                r.total = rec.len;
                r.cur = Some(rec);
            }
        }
        Ok(r)
    }

    /// Bytes of the data area.
    pub fn capacity(&self) -> usize {
        self.lim.cap
    }

    /// This endpoint's maximum message size.
    pub fn max_message_size(&self) -> usize {
        self.lim.max_message
    }

    /// Bytes in the ring right now (a snapshot).
    pub fn len(&self) -> usize {
        used(self.att.ring()).unwrap_or(0) as usize
    }

    /// Whether the ring is empty right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if !self.att.owned_here() {
            return; // a forked child's copy (liveness.rs, "Fork")
        }
        self.att.detach();
        // Wake a producer sleeping in send() so it sees Disconnected.
        self.att.header().events.not_full.notify();
    }
}

/// A one-record message read in place, from [`Consumer::try_read`].
/// Released to the producer (its space reused) when dropped or
/// [`RecordReader::release`]d.
///
/// The bytes lie in shared memory that the producer's process could write
/// (only if it broke the protocol), so there is no safe `&[u8]` to them:
/// copy them out ([`RecordReader::copy_to_slice`], [`RecordReader::read_at`],
/// [`RecordReader::to_vec`]), read through [`RecordReader::as_ptr`], or use
/// the `unsafe` [`RecordReader::as_slice`].
pub struct RecordReader<'a> {
    c: &'a mut Consumer,
    rec: Rec,
}

impl fmt::Debug for RecordReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordReader")
            .field("len", &self.rec.len)
            .finish()
    }
}

impl RecordReader<'_> {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.rec.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.rec.len == 0
    }

    /// Copy the message into `dst`. Panics unless `dst.len() == self.len()`.
    pub fn copy_to_slice(&self, dst: &mut [u8]) {
        assert_eq!(
            dst.len(),
            self.rec.len,
            "destination length != message length"
        );
        self.c.copy_payload(self.rec, 0, dst);
    }

    /// Copy up to `dst.len()` bytes from `offset` into `dst`; returns how
    /// many (0 at or past the end).
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> usize {
        let n = self.rec.len.saturating_sub(offset).min(dst.len());
        if n > 0 {
            self.c.copy_payload(self.rec, offset, &mut dst[..n]);
        }
        n
    }

    /// The message, copied into a new `Vec`.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.c.append_to(self.rec, &mut v);
        v
    }

    /// The message's first byte: [`RecordReader::len`] readable bytes, valid
    /// until the reader is released or dropped. Read through raw pointers
    /// (`ptr::read`, `copy_nonoverlapping`) and do not keep references: a
    /// process that breaks the protocol could write them meanwhile.
    #[cfg(not(shmqueue_loom))]
    pub fn as_ptr(&self) -> *const u8 {
        // SAFETY: the payload starts inside the data area (next_record
        // checked the record's bounds); only the address is computed.
        unsafe { self.c.att.data_ptr().as_ptr().add(self.rec.at) }
    }

    /// The message as a slice, without copying.
    ///
    /// # Safety
    /// The bytes lie in a shared-memory segment. The ring protocol keeps the
    /// producer away from them until this reader is released, but nothing
    /// stops a process that maps the segment from writing them. The caller
    /// must guarantee that, for as long as the slice lives, no process
    /// writes these bytes (every process that can open the segment follows
    /// the protocol); otherwise the slice changes behind a shared
    /// reference, which is undefined behaviour.
    #[cfg(not(shmqueue_loom))]
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: rec.len bytes from as_ptr() are inside the data area and
        // published to us; the slice borrows `self`, so it cannot outlive the
        // release; immutability against other processes is the caller's
        // contract.
        unsafe { core::slice::from_raw_parts(self.as_ptr(), self.rec.len) }
    }

    /// Give the record's space back to the producer (as dropping does).
    pub fn release(self) {}
}

impl Drop for RecordReader<'_> {
    fn drop(&mut self) {
        if !self.c.att.owned_here() {
            return; // a forked child's copy (liveness.rs, "Fork")
        }
        self.c.release(self.rec.size);
    }
}

/// One message read with [`std::io::Read`] as it arrives, from
/// [`Consumer::read_message`]. `read` returns `Ok(0)` at the end of
/// the message; a message abandoned part-way fails with `UnexpectedEof`
/// ([`RecvError::Truncated`] inside), one beyond the maximum message size
/// with `InvalidData` ([`RecvError::TooLarge`]).
pub struct MessageReader<'a> {
    c: &'a mut Consumer,
    /// Bytes already taken out of the ring (a message assembled by an
    /// earlier call), read first.
    pre: Vec<u8>,
    pre_pos: usize,
    /// The record being read (not yet released) and the position in it.
    cur: Option<Rec>,
    pos: usize,
    /// More fragments follow `cur`.
    more: bool,
    total: usize,
    deadline: Option<Deadline>,
    failed: Option<RecvError>,
}

impl fmt::Debug for MessageReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageReader")
            .field("received", &self.total)
            .field("more", &self.more)
            .finish()
    }
}

impl MessageReader<'_> {
    /// Whether every byte of the message has been read.
    pub fn is_finished(&self) -> bool {
        self.failed.is_none()
            && !self.more
            && self.pre_pos == self.pre.len()
            && self.cur.map_or(true, |r| self.pos == r.len)
    }

    /// Wait for the next fragment and make it current.
    fn next_fragment(&mut self) -> Result<(), RecvError> {
        let rec = self.c.wait_for(self.deadline, |c| match c.next_record()? {
            Next::Rec(r) => Ok(Some(r)),
            Next::Empty => Ok(None),
            Next::Gone => Err(RecvError::Truncated),
        })?;
        if !rec.cont() {
            // A new message began: ours was abandoned. Leave it in place.
            return Err(RecvError::Truncated);
        }
        if rec.abort() {
            self.c.release(rec.size);
            return Err(RecvError::Truncated);
        }
        let total = self.total + rec.len;
        if total > self.c.lim.max_message {
            return Err(self.c.refuse(rec, total));
        }
        self.total = total;
        self.more = rec.more();
        self.cur = Some(rec);
        self.pos = 0;
        Ok(())
    }
}

impl io::Read for MessageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.failed {
            return Err(recv_io(e));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pre_pos < self.pre.len() {
                let n = (self.pre.len() - self.pre_pos).min(buf.len());
                buf[..n].copy_from_slice(&self.pre[self.pre_pos..self.pre_pos + n]);
                self.pre_pos += n;
                return Ok(n);
            }
            if let Some(rec) = self.cur {
                let n = (rec.len - self.pos).min(buf.len());
                if n > 0 {
                    self.c.copy_payload(rec, self.pos, &mut buf[..n]);
                    self.pos += n;
                }
                if self.pos == rec.len {
                    self.cur = None;
                    self.c.release(rec.size);
                }
                if n > 0 {
                    return Ok(n);
                }
            }
            if !self.more {
                return Ok(0);
            }
            if let Err(e) = self.next_fragment() {
                if e != RecvError::Timeout {
                    // The message is over (abandoned or refused); what is left
                    // of it, if anything, the consumer skips.
                    self.failed = Some(e);
                    self.more = false;
                }
                return Err(recv_io(e));
            }
        }
    }
}

impl Drop for MessageReader<'_> {
    fn drop(&mut self) {
        if !self.c.att.owned_here() {
            return; // a forked child's copy (liveness.rs, "Fork")
        }
        if let Some(rec) = self.cur.take() {
            self.c.release(rec.size);
        }
        if self.more {
            // Dropped before the end: the rest of the message is skipped.
            self.c.mode = Mode::Skipping;
        }
        // Give the reassembly buffer back, emptied, to keep its allocation.
        let mut pre = std::mem::take(&mut self.pre);
        pre.clear();
        if self.c.partial.capacity() < pre.capacity() {
            self.c.partial = pre;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_of_small_and_large_rings() {
        let l = Limits::new(64, usize::MAX);
        assert_eq!((l.max_record, l.chunk), (56, 24));
        let l = Limits::new(1 << 20, 1000);
        assert_eq!((l.max_record, l.chunk), ((1 << 20) - 8, (1 << 19) - 8));
        assert_eq!(record_size(0), 8);
        assert_eq!(record_size(1), 16);
        assert_eq!(record_size(8), 16);
        assert_eq!(record_size(9), 24);
    }

    /// A segment unlinked on drop, unique per test.
    struct Name(String);
    impl Name {
        fn new(tag: &str) -> Name {
            Name(format!("/shmq-unit-bytes-{}-{tag}", std::process::id()))
        }
    }
    impl Drop for Name {
        fn drop(&mut self) {
            let _ = crate::unlink(&self.0);
        }
    }

    fn pair(name: &Name, cap: usize) -> (Producer, Consumer) {
        let q = ByteRing::create(&name.0, cap).unwrap();
        (q.producer().unwrap(), q.consumer().unwrap())
    }

    #[test]
    fn a_fragmented_message_too_big_for_the_slice_is_kept_and_streams() {
        use std::io::Read;
        let n = Name::new("ready");
        let (mut tx, mut rx) = pair(&n, 128);
        let msg: Vec<u8> = (0..100).collect(); // > 56: two fragments, 112 bytes
        tx.send(&msg).unwrap();
        let mut small = [0u8; 10];
        assert_eq!(
            rx.recv_into(&mut small),
            Err(RecvError::BufferTooSmall { needed: 100 })
        );
        assert_eq!(rx.mode, Mode::Ready);
        assert_eq!(rx.try_read().map(|_| ()), Err(RecvError::Fragmented));
        // The kept message streams out of the reassembly buffer.
        let mut v = Vec::new();
        rx.read_message().unwrap().read_to_end(&mut v).unwrap();
        assert_eq!(v, msg);
        assert_eq!(rx.mode, Mode::Idle);
    }

    #[test]
    fn a_streaming_read_continues_a_partly_assembled_message() {
        use std::io::{Read, Write};
        let n = Name::new("assembling");
        let (mut tx, mut rx) = pair(&n, 64);
        let mut w = tx.write_message();
        w.write_all(&[1; 20]).unwrap();
        w.flush().unwrap();
        let mut buf = Vec::new();
        assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Empty));
        assert_eq!(rx.mode, Mode::Assembling);
        w.write_all(&[2; 20]).unwrap();
        w.finish().unwrap();
        let mut v = Vec::new();
        rx.read_message().unwrap().read_to_end(&mut v).unwrap();
        assert_eq!(v, [[1u8; 20], [2; 20]].concat());
    }

    #[test]
    fn a_reader_dropped_early_skips_the_rest_of_its_message() {
        use std::io::{Read, Write};
        let n = Name::new("dropreader");
        let (mut tx, mut rx) = pair(&n, 64);
        // Two fragments (24 + 10 bytes; 56 of the 64 bytes), all published.
        let mut w = tx.write_message();
        w.write_all(&[9; 34]).unwrap();
        w.finish().unwrap();
        let mut r = rx.read_message().unwrap();
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        assert!(!r.is_finished());
        drop(r);
        assert_eq!(rx.mode, Mode::Skipping);
        tx.send(b"next").unwrap(); // wraps with a PAD
        let mut buf = Vec::new();
        rx.try_recv(&mut buf).unwrap();
        assert_eq!(buf, b"next");
        assert!(rx.is_empty());
    }

    #[test]
    fn a_panic_inside_a_message_writer_aborts_the_message() {
        use std::io::Write;
        let n = Name::new("panicwriter");
        let (mut tx, mut rx) = pair(&n, 256);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut w = tx.write_message();
            w.write_all(&[1; 200]).unwrap(); // > one fragment: the first is out
            panic!("writer dies");
        }));
        assert!(r.is_err());
        let mut buf = Vec::new();
        assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Truncated));
        tx.send(b"ok").unwrap();
        rx.try_recv(&mut buf).unwrap();
        assert_eq!(buf, b"ok");
    }

    #[test]
    fn positions_are_checked() {
        assert!(check_positions(0, 0, 64).is_ok());
        assert!(check_positions(64, 0, 64).is_ok());
        assert!(check_positions(72, 0, 64).is_err());
        assert!(check_positions(4, 0, 64).is_err());
        assert!(check_positions(0, 8, 64).is_err());
        assert!(check_positions(8, 4, 64).is_err());
        let edge = MAX_POSITION;
        assert!(check_positions(edge + 8, edge, 64).is_ok());
        assert!(check_positions(edge + 8, edge + 8, 64).is_err());
        assert!(check_positions(u64::MAX - 7, u64::MAX - 7, 64).is_err());
    }
}
