//! Byte messages of any size through a broadcast ring.
//!
//! A message is cut into [`Chunk`]s, one per slot of a `Broadcast<Chunk>`:
//! each chunk carries up to [`CHUNK_DATA`] bytes and a header naming the
//! position of its message's first chunk and the message's total length. A
//! subscriber reassembles consecutive positions, so everything the typed
//! ring guarantees holds per chunk (a seqlock-validated copy, exact lap and
//! eviction counts, kernel-released liveness), and a message is only ever
//! made of chunks it read at consecutive positions of one lap.
//!
//! Why chunks of the typed ring rather than a second, variable-record byte
//! ring (DESIGN.md, "Broadcast", has the longer argument): a lapped reader of
//! a byte ring cannot trust any length it reads, so it would have to
//! re-validate record by record what the typed slots already validate; a
//! chunk is one line (120 bytes and its sequence word: a 128-byte slot),
//! so small messages cost one hand-off, as typed items do.
//!
//! * **Lossless**: messages of any size (up to the subscriber's
//!   [`max_message_size`](MessageSubscriber::max_message_size), default
//!   16 MiB) stream through a ring of any capacity.
//! * **Overwrite**: a message must fit in the ring (`capacity` chunks) to be
//!   receivable; a larger one is refused by the publisher. A subscriber
//!   lapped mid-message drops what it had of it and says how many bytes
//!   ([`MessageError::Lagged`]).
//!
//! ```
//! use shmqueue::broadcast::{messages, Start};
//! let name = format!("/doc-bcast-msg-{}", std::process::id());
//! let q = messages::builder().capacity(64).create(&name)?;
//! let mut tx = q.message_publisher()?;
//! let mut rx = messages::open(&name)?.message_subscriber(Start::Latest)?;
//! tx.publish(b"hello")?;
//! tx.publish(&vec![7u8; 1000])?; // 11 chunks
//! assert_eq!(rx.recv()?, b"hello");
//! assert_eq!(rx.recv()?.len(), 1000);
//! shmqueue::unlink(&name)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};

use super::{Broadcast, Builder, Policy, Publisher, RecvError, Start, Subscriber, TryRecvError};
use crate::bytes::DEFAULT_MAX_MESSAGE_SIZE;
use crate::error::{Corruption, PushAllError};
use crate::Error;

/// Message bytes one chunk carries.
pub const CHUNK_DATA: usize = 96;

/// The schema tag of a message ring ([`Builder::schema`]): a typed
/// `Broadcast` of something else that happens to have a chunk's size cannot
/// open it by mistake.
pub const MESSAGE_SCHEMA: u64 = u64::from_le_bytes(*b"shmqmsg1");

/// Chunks published per batch (one wake-up for each).
const BATCH: usize = 32;

/// One slot's worth of a message. Its fields are private: only
/// [`MessagePublisher`] writes chunks, and [`MessageSubscriber`] checks
/// every field of every chunk it reads, as words another process wrote.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub struct Chunk {
    /// The position of the message's first chunk.
    pub(super) first: u64,
    /// The message's length in bytes.
    pub(super) total: u64,
    /// Bytes of `data` that belong to the message.
    pub(super) len: u32,
    pub(super) _pad: u32,
    pub(super) data: [u8; CHUNK_DATA],
}

static_assertions::const_assert_eq!(core::mem::size_of::<Chunk>(), 120);
static_assertions::const_assert_eq!(core::mem::align_of::<Chunk>(), 8);

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("first", &self.first)
            .field("total", &self.total)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// A builder for a message ring: [`Broadcast::<Chunk>::builder`] with the
/// [`MESSAGE_SCHEMA`] tag. Its capacity counts chunks.
pub fn builder() -> Builder<Chunk> {
    Broadcast::<Chunk>::builder().schema(MESSAGE_SCHEMA)
}

/// Open an existing message ring.
pub fn open(name: &str) -> Result<Broadcast<Chunk>, Error> {
    builder().open(name)
}

impl Broadcast<Chunk> {
    /// Attach as the ring's publisher of messages ([`Error::RoleTaken`] if
    /// another publisher is attached).
    pub fn message_publisher(&self) -> Result<MessagePublisher, Error> {
        Ok(MessagePublisher {
            tx: self.publisher()?,
            overwrite: self.policy() == Policy::Overwrite,
        })
    }

    /// Subscribe to messages from `start` (a position in chunks; a start in
    /// the middle of a message skips to the next whole one).
    pub fn message_subscriber(&self, start: Start) -> Result<MessageSubscriber, Error> {
        Ok(MessageSubscriber {
            rx: self.subscribe(start)?,
            max: DEFAULT_MAX_MESSAGE_SIZE,
            partial: None,
            skipping: false,
            ready: None,
        })
    }
}

/// Why a message was not (wholly) published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The deadline passed while the lossless ring was full; `sent` bytes
    /// of the message went out. A partly sent message is reported to its
    /// subscribers as [`MessageError::Abandoned`] when the next one starts.
    Timeout {
        /// Bytes of the message already published.
        sent: usize,
    },
    /// An overwrite ring cannot carry a message of more chunks than it
    /// has slots: every subscriber would be lapped inside it.
    TooLarge {
        /// The message's length.
        len: usize,
        /// The most this ring can carry (`capacity × CHUNK_DATA`).
        max: usize,
    },
    /// A word in shared memory holds a value this crate never writes.
    Corrupt(Corruption),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Timeout { sent } => write!(
                f,
                "timed out with the ring full after {sent} bytes of the message; subscribers \
                 drop the part they got (wait longer, or find the slow subscriber)"
            ),
            PublishError::TooLarge { len, max } => write!(
                f,
                "a {len}-byte message does not fit in this overwrite ring (at most {max} bytes); \
                 create the ring larger, or lossless"
            ),
            PublishError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for PublishError {}

/// Why a subscriber returned no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// Nothing new (`try_recv`); a message may be partly received.
    Empty,
    /// The deadline passed before a whole message arrived (`recv_timeout`);
    /// what arrived of it is kept for the next call.
    Timeout,
    /// Overwrite ring: the publisher lapped this subscriber; `missed_chunks`
    /// chunks were overwritten unread, and the `dropped` bytes it held of a
    /// message in progress are discarded. It goes on with the next whole
    /// message.
    Lagged {
        /// Chunks this subscriber will never see.
        missed_chunks: u64,
        /// Bytes of a partly received message that were discarded.
        dropped: usize,
    },
    /// Lossless ring with a `max_lag`: this subscriber was evicted
    /// (see [`TryRecvError::Evicted`]); as `Lagged` otherwise.
    Evicted {
        /// Chunks this subscriber will never see.
        missed_chunks: u64,
        /// Bytes of a partly received message that were discarded.
        dropped: usize,
    },
    /// The message in progress was never finished: its publisher timed out,
    /// or died and a new one started afresh. `received` of its `len` bytes
    /// had arrived; they are discarded.
    Abandoned {
        /// Bytes that had arrived.
        received: usize,
        /// The message's length.
        len: u64,
    },
    /// A message longer than [`MessageSubscriber::max_message_size`] was
    /// skipped whole (nothing of it is allocated).
    TooLarge {
        /// The message's length.
        len: u64,
        /// This subscriber's limit.
        max: usize,
    },
    /// Nothing is left to read and the publisher has gone.
    Disconnected,
    /// A chunk or a shared word holds a value the publisher never writes;
    /// the message in progress is discarded and the subscriber goes on with
    /// the next one.
    Corrupt(Corruption),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Empty => f.write_str(
                "no whole message yet; retry later, or use recv()/recv_timeout() to wait",
            ),
            MessageError::Timeout => f.write_str("timed out waiting for a whole message"),
            MessageError::Lagged {
                missed_chunks,
                dropped,
            } => write!(
                f,
                "the publisher overwrote {missed_chunks} chunks before this subscriber read \
                 them ({dropped} bytes of a message in progress dropped); it goes on with the \
                 next whole message (read faster, or create the ring larger or lossless)"
            ),
            MessageError::Evicted {
                missed_chunks,
                dropped,
            } => write!(
                f,
                "this subscriber kept the publisher waiting past max_lag and was evicted: \
                 {missed_chunks} chunks missed, {dropped} bytes of a message in progress \
                 dropped; it goes on with the next whole message"
            ),
            MessageError::Abandoned { received, len } => write!(
                f,
                "the publisher abandoned a {len}-byte message after {received} bytes (it timed \
                 out or died); the part received is discarded"
            ),
            MessageError::TooLarge { len, max } => write!(
                f,
                "skipped a {len}-byte message, over this subscriber's limit of {max} bytes \
                 (raise max_message_size)"
            ),
            MessageError::Disconnected => f.write_str(
                "nothing is left to read and the publisher has gone; more arrives only if a \
                 new publisher attaches",
            ),
            MessageError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for MessageError {}

/// Publishes byte messages into a message ring; from
/// [`Broadcast::message_publisher`].
#[derive(Debug)]
pub struct MessagePublisher {
    pub(super) tx: Publisher<Chunk>,
    pub(super) overwrite: bool,
}

impl MessagePublisher {
    /// Publish `msg`, waiting while a lossless ring is full.
    pub fn publish(&mut self, msg: &[u8]) -> Result<(), PublishError> {
        self.publish_until(msg, None)
    }

    /// Like [`MessagePublisher::publish`], giving up after `timeout`.
    pub fn publish_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), PublishError> {
        self.publish_until(msg, Some(Instant::now() + timeout))
    }

    /// The typed publisher underneath (its position counts chunks).
    pub fn publisher(&self) -> &Publisher<Chunk> {
        &self.tx
    }

    fn publish_until(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), PublishError> {
        let chunks = msg.len().div_ceil(CHUNK_DATA).max(1);
        if self.overwrite && chunks > self.tx.capacity() {
            return Err(PublishError::TooLarge {
                len: msg.len(),
                max: self.tx.capacity() * CHUNK_DATA,
            });
        }
        let head = Chunk {
            first: self.tx.position(),
            total: msg.len() as u64,
            ..Chunk::zeroed()
        };
        let mut batch = [head; BATCH];
        let mut parts = msg.chunks(CHUNK_DATA);
        let mut sent = 0;
        let mut left = chunks;
        while left > 0 {
            let n = left.min(BATCH);
            for c in &mut batch[..n] {
                let part = parts.next().unwrap_or(&[]);
                c.len = part.len() as u32;
                c.data[..part.len()].copy_from_slice(part);
            }
            let r = match deadline {
                None => self.tx.publish_all(&batch[..n]),
                Some(d) => self
                    .tx
                    .publish_all_timeout(&batch[..n], d.saturating_duration_since(Instant::now())),
            };
            match r {
                Ok(()) => {}
                Err(PushAllError::Corrupt { corruption, .. }) => {
                    return Err(PublishError::Corrupt(corruption))
                }
                // Timeout; Disconnected is not something a broadcast
                // publisher reports.
                Err(e) => {
                    let pushed = match e {
                        PushAllError::Timeout { pushed }
                        | PushAllError::Disconnected { pushed } => pushed,
                        _ => 0,
                    };
                    return Err(PublishError::Timeout {
                        sent: (sent + pushed * CHUNK_DATA).min(msg.len()),
                    });
                }
            }
            sent += n * CHUNK_DATA;
            left -= n;
        }
        Ok(())
    }
}

/// The message a subscriber is assembling.
struct Partial {
    first: u64,
    total: u64,
    buf: Vec<u8>,
}

/// Receives byte messages from a message ring; from
/// [`Broadcast::message_subscriber`].
pub struct MessageSubscriber {
    pub(super) rx: Subscriber<Chunk>,
    max: usize,
    partial: Option<Partial>,
    /// Inside a message that is not wanted (too large, or begun before
    /// this subscriber joined or after a lap): its chunks are passed over
    /// until the next first chunk.
    skipping: bool,
    /// What the chunk that revealed an abandoned message gave (a whole
    /// message or an error), returned by the next call.
    pub(super) ready: Option<Result<Vec<u8>, MessageError>>,
}

impl fmt::Debug for MessageSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageSubscriber")
            .field("subscriber", &self.rx)
            .field("max", &self.max)
            .field(
                "partial",
                &self
                    .partial
                    .as_ref()
                    .map(|p| (p.first, p.total, p.buf.len())),
            )
            .finish_non_exhaustive()
    }
}

impl MessageSubscriber {
    /// The largest message this subscriber accepts (default 16 MiB); longer
    /// ones are skipped with [`MessageError::TooLarge`]. It bounds what a
    /// corrupt length can make it allocate.
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// The typed subscriber underneath (position and lag count chunks).
    pub fn subscriber(&self) -> &Subscriber<Chunk> {
        &self.rx
    }

    /// Receive the next whole message without waiting.
    pub fn try_recv(&mut self) -> Result<Vec<u8>, MessageError> {
        loop {
            if let Some(r) = self.ready.take() {
                return r;
            }
            let q = self.rx.position();
            let r = self.rx.try_recv();
            let step = match r {
                Ok(c) => self.accept(q, &c),
                Err(TryRecvError::Empty) => return Err(MessageError::Empty),
                Err(e) => Some(Err(self.lost(RecvError::from_try(e)))),
            };
            if let Some(r) = step {
                return r;
            }
        }
    }

    /// Receive the next whole message, waiting for it.
    pub fn recv(&mut self) -> Result<Vec<u8>, MessageError> {
        self.recv_until(None)
    }

    /// Like [`MessageSubscriber::recv`], giving up after `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, MessageError> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>, MessageError> {
        loop {
            if let Some(r) = self.ready.take() {
                return r;
            }
            let q = self.rx.position();
            let r = match deadline {
                None => self.rx.recv(),
                Some(d) => self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now())),
            };
            let step = match r {
                Ok(c) => self.accept(q, &c),
                Err(RecvError::Timeout) => return Err(MessageError::Timeout),
                Err(e) => Some(Err(self.lost(Some(e)))),
            };
            if let Some(r) = step {
                return r;
            }
        }
    }

    /// The typed ring reported something other than an item: what it means
    /// for the message in progress.
    pub(super) fn lost(&mut self, e: Option<RecvError>) -> MessageError {
        let partial = self.partial.take();
        let dropped = partial.as_ref().map(|p| p.buf.len());
        self.skipping = true;
        match e {
            Some(RecvError::Lagged { missed }) => MessageError::Lagged {
                missed_chunks: missed,
                dropped: dropped.unwrap_or(0),
            },
            Some(RecvError::Evicted { missed }) => MessageError::Evicted {
                missed_chunks: missed,
                dropped: dropped.unwrap_or(0),
            },
            Some(RecvError::Corrupt(c)) => MessageError::Corrupt(c),
            // The publisher went away mid-message: say so once, then
            // Disconnected on the next call.
            Some(RecvError::Disconnected) => match partial {
                None => MessageError::Disconnected,
                Some(p) => MessageError::Abandoned {
                    received: p.buf.len(),
                    len: p.total,
                },
            },
            Some(RecvError::Timeout) | None => MessageError::Empty,
        }
    }

    /// Take the chunk read at position `q`: a whole message, an error, or
    /// `None` to read on.
    pub(super) fn accept(&mut self, q: u64, c: &Chunk) -> Option<Result<Vec<u8>, MessageError>> {
        let len = c.len as usize;
        let bad = |what, found: u64, limit: u64| {
            Some(Err(MessageError::Corrupt(Corruption {
                what,
                found,
                limit,
            })))
        };
        if len > CHUNK_DATA {
            self.partial = None;
            self.skipping = true;
            return bad("message chunk length", len as u64, CHUNK_DATA as u64 + 1);
        }
        if c.first > q {
            self.partial = None;
            self.skipping = true;
            return bad("message chunk start", c.first, q + 1);
        }
        if c.first == q {
            // A first chunk: whatever was in progress was abandoned.
            let abandoned = self.partial.take().map(|p| MessageError::Abandoned {
                received: p.buf.len(),
                len: p.total,
            });
            self.skipping = false;
            let r = self.begin(q, c);
            return match abandoned {
                None => r,
                Some(a) => {
                    self.ready = r;
                    Some(Err(a))
                }
            };
        }
        if self.skipping {
            return None;
        }
        let Some(p) = self.partial.as_mut() else {
            // Began before this subscriber joined.
            self.skipping = true;
            return None;
        };
        let offset = (q - p.first).saturating_mul(CHUNK_DATA as u64);
        let fits = (p.buf.len() + len) as u64 <= p.total;
        if c.first != p.first || c.total != p.total || offset != p.buf.len() as u64 || !fits {
            let found = c.first;
            self.partial = None;
            self.skipping = true;
            return bad("message chunk header", found, q);
        }
        p.buf.extend_from_slice(&c.data[..len]);
        self.finish(len)
    }

    /// A first chunk at `q`.
    fn begin(&mut self, q: u64, c: &Chunk) -> Option<Result<Vec<u8>, MessageError>> {
        let len = c.len as usize;
        if c.total > self.max as u64 {
            self.skipping = true;
            return Some(Err(MessageError::TooLarge {
                len: c.total,
                max: self.max,
            }));
        }
        if len as u64 > c.total {
            self.skipping = true;
            return Some(Err(MessageError::Corrupt(Corruption {
                what: "message chunk length",
                found: len as u64,
                limit: c.total + 1,
            })));
        }
        let mut buf = Vec::with_capacity(c.total as usize);
        buf.extend_from_slice(&c.data[..len]);
        self.partial = Some(Partial {
            first: q,
            total: c.total,
            buf,
        });
        self.finish(len)
    }

    /// After appending a chunk of `len` bytes: the message if it is whole,
    /// an error if a chunk short of the end was not full.
    fn finish(&mut self, len: usize) -> Option<Result<Vec<u8>, MessageError>> {
        let p = self.partial.as_ref()?;
        if p.buf.len() as u64 == p.total {
            return self.partial.take().map(|p| Ok(p.buf));
        }
        if len != CHUNK_DATA {
            let found = len as u64;
            self.partial = None;
            self.skipping = true;
            return Some(Err(MessageError::Corrupt(Corruption {
                what: "message chunk length",
                found,
                limit: CHUNK_DATA as u64,
            })));
        }
        None
    }
}
