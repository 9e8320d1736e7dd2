//! What a byte-ring send or receive can fail with.

use std::fmt;
use std::io;

use crate::error::Corruption;

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
    /// maximum message size, or, for [`Producer::try_send`](super::Producer::try_send) and
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
    /// timeout, or a [`MessageWriter`](super::MessageWriter) aborted), or this consumer attached
    /// in the middle of it. The part received is discarded; the next call
    /// receives the next message. Never reported for a whole message.
    Truncated,
    /// [`Consumer::recv_into`](super::Consumer::recv_into): the buffer is shorter than the message
    /// (`needed` bytes). The message is kept; call again with a larger
    /// buffer (or use [`Consumer::recv`](super::Consumer::recv)).
    BufferTooSmall {
        /// The message's length.
        needed: usize,
    },
    /// The zero-copy [`Consumer::try_read`](super::Consumer::try_read) family reads only messages
    /// in one record; the next message is fragmented. It is left in place:
    /// receive it with [`Consumer::recv`](super::Consumer::recv) or
    /// [`Consumer::read_message`](super::Consumer::read_message).
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

pub(super) fn send_io(e: SendError) -> io::Error {
    let kind = match e {
        SendError::Timeout | SendError::Full => io::ErrorKind::TimedOut,
        SendError::Disconnected => io::ErrorKind::BrokenPipe,
        SendError::TooLarge { .. } => io::ErrorKind::InvalidInput,
        SendError::Corrupt(_) => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e)
}

pub(super) fn recv_io(e: RecvError) -> io::Error {
    let kind = match e {
        RecvError::Timeout | RecvError::Empty => io::ErrorKind::TimedOut,
        RecvError::Truncated | RecvError::Disconnected => io::ErrorKind::UnexpectedEof,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e)
}
