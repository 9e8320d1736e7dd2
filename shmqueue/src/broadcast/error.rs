//! What a subscriber's receive can report besides an item.

use std::fmt;

use crate::error::Corruption;

/// Why a non-blocking receive ([`Subscriber::try_recv`](super::Subscriber::try_recv))
/// returned no item.
///
/// ```
/// use shmqueue::broadcast::TryRecvError;
/// let e = TryRecvError::Lagged { missed: 3 };
/// assert_eq!(e.missed(), Some(3));
/// assert!(TryRecvError::Empty.is_empty());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryRecvError {
    /// Nothing new has been published yet.
    Empty,
    /// Overwrite ring: the publisher lapped this subscriber; exactly
    /// `missed` items were overwritten before it read them. It has already
    /// moved on to the oldest item still in the ring: the next call
    /// returns that.
    Lagged {
        /// Items this subscriber will never see.
        missed: u64,
    },
    /// Lossless ring with a `max_lag`: this subscriber kept the publisher
    /// waiting for longer than that and was cut loose; `missed` items were
    /// published past it meanwhile. It has already rejoined at the oldest
    /// item still in the ring and gates the publisher again.
    Evicted {
        /// Items this subscriber will never see.
        missed: u64,
    },
    /// Nothing is left to read and the publisher has gone (dropped, or its
    /// process died). A new publisher may attach later; then receiving
    /// works again.
    Disconnected,
    /// A word in shared memory holds a value this crate never writes.
    Corrupt(Corruption),
}

impl TryRecvError {
    /// True for [`TryRecvError::Empty`].
    pub fn is_empty(&self) -> bool {
        matches!(self, TryRecvError::Empty)
    }

    /// The items missed, for [`TryRecvError::Lagged`] and [`TryRecvError::Evicted`].
    pub fn missed(&self) -> Option<u64> {
        match *self {
            TryRecvError::Lagged { missed } | TryRecvError::Evicted { missed } => Some(missed),
            _ => None,
        }
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str(
                "nothing new has been published; retry later, or use recv()/recv_timeout() to wait",
            ),
            TryRecvError::Lagged { missed } => write!(
                f,
                "the publisher overwrote {missed} items before this subscriber read them; \
                 it goes on from the oldest item still in the ring (read faster, or create \
                 the ring larger or lossless)"
            ),
            TryRecvError::Evicted { missed } => write!(
                f,
                "this subscriber kept the publisher waiting past the ring's max_lag and was \
                 evicted; {missed} items were published past it; it has rejoined at the oldest \
                 item still in the ring (read faster, or create the ring without max_lag)"
            ),
            TryRecvError::Disconnected => f.write_str(
                "nothing is left to read and the publisher has gone; more arrives only if a \
                 new publisher attaches",
            ),
            TryRecvError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for TryRecvError {}

/// Why a blocking receive ([`Subscriber::recv`](super::Subscriber::recv),
/// [`Subscriber::recv_timeout`](super::Subscriber::recv_timeout)) returned no
/// item. The variants are [`TryRecvError`]'s, with `Timeout` for `Empty`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// The deadline passed with nothing published.
    Timeout,
    /// As [`TryRecvError::Lagged`].
    Lagged {
        /// Items this subscriber will never see.
        missed: u64,
    },
    /// As [`TryRecvError::Evicted`].
    Evicted {
        /// Items this subscriber will never see.
        missed: u64,
    },
    /// As [`TryRecvError::Disconnected`].
    Disconnected,
    /// As [`TryRecvError::Corrupt`].
    Corrupt(Corruption),
}

impl RecvError {
    /// The items missed, for [`RecvError::Lagged`] and [`RecvError::Evicted`].
    ///
    /// ```
    /// use shmqueue::broadcast::RecvError;
    /// assert_eq!(RecvError::Evicted { missed: 9 }.missed(), Some(9));
    /// assert_eq!(RecvError::Timeout.missed(), None);
    /// ```
    pub fn missed(&self) -> Option<u64> {
        match *self {
            RecvError::Lagged { missed } | RecvError::Evicted { missed } => Some(missed),
            _ => None,
        }
    }

    /// The blocking form of a try error; `None` for `Empty` (keep waiting).
    pub(crate) fn from_try(e: TryRecvError) -> Option<RecvError> {
        Some(match e {
            TryRecvError::Empty => return None,
            TryRecvError::Lagged { missed } => RecvError::Lagged { missed },
            TryRecvError::Evicted { missed } => RecvError::Evicted { missed },
            TryRecvError::Disconnected => RecvError::Disconnected,
            TryRecvError::Corrupt(c) => RecvError::Corrupt(c),
        })
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Timeout => {
                f.write_str("timed out waiting for an item; the publisher published nothing new")
            }
            RecvError::Lagged { missed } => TryRecvError::Lagged { missed: *missed }.fmt(f),
            RecvError::Evicted { missed } => TryRecvError::Evicted { missed: *missed }.fmt(f),
            RecvError::Disconnected => TryRecvError::Disconnected.fmt(f),
            RecvError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for RecvError {}
