//! What the bridge puts on zenoh: data frames on the stream's key, control
//! messages on `<key>/ctl`. All integers little-endian; every message starts
//! with [`MAGIC`], whose last byte is the format version, so a peer of
//! another format (or something that is not a bridge) is refused, never
//! decoded as data.
//!
//! A data frame is a [`FrameHeader`] ([`HEADER_LEN`] bytes) and a payload:
//! for typed rings `count * elem_size` bytes of elements as the ring holds
//! them; for byte rings `count` messages, each a `u32` length and its bytes.
//! Every frame carries the whole stream description (kind, element size,
//! alignment, schema), so the receiver checks the first frame it sees
//! against its local ring and refuses a mismatch before it writes anything.

use shmqueue::QueueKind;

/// `SQB` and the format version.
pub const MAGIC: [u8; 4] = *b"SQB\x01";
/// Bytes of a data frame's header.
pub const HEADER_LEN: usize = 56;
/// Bytes of a control message before a refusal's reason.
pub const CTL_LEN: usize = 32;

const DATA: u8 = 1;
const END: u8 = 2;
const HELLO: u8 = 3;
const ACK: u8 = 4;
const REFUSE: u8 = 5;

const FLAG_LOSSY: u8 = 1;

/// What a stream carries: the source ring's geometry, which the receiving
/// side must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// The source ring's kind.
    pub kind: QueueKind,
    /// Bytes per element (0 for a byte ring).
    pub elem_size: u32,
    /// Alignment of the element (0 for a byte ring).
    pub elem_align: u32,
    /// The source ring's schema tag.
    pub schema: u64,
    /// The source ring's capacity (items; bytes for a byte ring), used when
    /// the receiving side creates its ring to match.
    pub capacity: u64,
    /// The sender runs lossy (no acknowledgements, nothing resent).
    pub lossy: bool,
}

impl StreamInfo {
    /// Whether items of this stream are elements (SPSC, MPMC, broadcast)
    /// rather than byte messages.
    pub fn typed(&self) -> bool {
        self.kind != QueueKind::Bytes
    }
}

/// A data frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Data, or the end of the stream (`count` 0, `first` the total).
    pub end: bool,
    /// The stream's description.
    pub info: StreamInfo,
    /// A random id chosen by the sending bridge when it starts: sequence
    /// numbers count within one stream.
    pub stream: u64,
    /// The sequence number of the first item in the frame (items for typed
    /// rings, messages for byte rings, counted from 0).
    pub first: u64,
    /// Items in the frame.
    pub count: u32,
    /// 0 for a frame sent as the stream goes; for a frame resent in answer
    /// to a [`Ctl::Hello`], the low 32 bits of that hello's incarnation, so
    /// the receiver that asked can tell its answer from frames already in
    /// flight when it asked.
    pub answer: u32,
}

/// Why a message could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its header, or its payload is cut short.
    Truncated,
    /// Not a bridge message, or a format version this build does not read.
    BadMagic([u8; 4]),
    /// A message type or queue kind this build does not know.
    Unknown(&'static str, u32),
    /// The payload's length does not match the header.
    BadLength {
        /// Bytes the header implies.
        expected: usize,
        /// Bytes there are.
        found: usize,
    },
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("a bridge message cut short"),
            WireError::BadMagic(m) => write!(
                f,
                "not a shmq-bridge message of this format (starts {m:02x?}; expected {MAGIC:02x?}): \
                 is another program, or another version of the bridge, publishing on this key?"
            ),
            WireError::Unknown(what, v) => write!(f, "unknown {what} {v} in a bridge message"),
            WireError::BadLength { expected, found } => write!(
                f,
                "a bridge frame's payload is {found} bytes where its header says {expected}"
            ),
        }
    }
}

impl std::error::Error for WireError {}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn check_magic(b: &[u8], min: usize) -> Result<(), WireError> {
    if b.len() < 4 {
        return Err(WireError::Truncated);
    }
    let m: [u8; 4] = b[..4].try_into().expect("4 bytes");
    if m != MAGIC {
        return Err(WireError::BadMagic(m));
    }
    if b.len() < min {
        return Err(WireError::Truncated);
    }
    Ok(())
}

impl FrameHeader {
    /// Append the header to `out` (which then takes the payload).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(if self.end { END } else { DATA });
        out.push(if self.info.lossy { FLAG_LOSSY } else { 0 });
        out.push(self.info.kind as u32 as u8);
        out.push(0);
        out.extend_from_slice(&self.info.elem_size.to_le_bytes());
        out.extend_from_slice(&self.info.elem_align.to_le_bytes());
        out.extend_from_slice(&self.info.schema.to_le_bytes());
        out.extend_from_slice(&self.info.capacity.to_le_bytes());
        out.extend_from_slice(&self.stream.to_le_bytes());
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.answer.to_le_bytes());
    }

    /// Read a frame: its header and its payload, checked against each other
    /// (a typed payload is exactly `count` elements; a byte payload is
    /// `count` whole messages and nothing after them).
    pub fn read(b: &[u8]) -> Result<(FrameHeader, &[u8]), WireError> {
        check_magic(b, HEADER_LEN)?;
        let end = match b[4] {
            DATA => false,
            END => true,
            t => return Err(WireError::Unknown("frame type", t.into())),
        };
        let kind =
            QueueKind::from_raw(b[6].into()).ok_or(WireError::Unknown("kind", b[6].into()))?;
        let h = FrameHeader {
            end,
            info: StreamInfo {
                kind,
                elem_size: u32_at(b, 8),
                elem_align: u32_at(b, 12),
                schema: u64_at(b, 16),
                capacity: u64_at(b, 24),
                lossy: b[5] & FLAG_LOSSY != 0,
            },
            stream: u64_at(b, 32),
            first: u64_at(b, 40),
            count: u32_at(b, 48),
            answer: u32_at(b, 52),
        };
        let payload = &b[HEADER_LEN..];
        if h.end || h.info.typed() {
            let expected = if h.end {
                0
            } else {
                (h.count as usize)
                    .checked_mul(h.info.elem_size as usize)
                    .ok_or(WireError::Truncated)?
            };
            if payload.len() != expected {
                return Err(WireError::BadLength {
                    expected,
                    found: payload.len(),
                });
            }
        } else {
            // Walk the messages once so a sink can trust every length.
            let mut it = Messages { rest: payload };
            for _ in 0..h.count {
                it.next().ok_or(WireError::Truncated)??;
            }
            if !it.rest.is_empty() {
                return Err(WireError::BadLength {
                    expected: payload.len() - it.rest.len(),
                    found: payload.len(),
                });
            }
        }
        Ok((h, payload))
    }
}

/// Append one byte message to a byte-ring frame's payload.
pub fn push_message(out: &mut Vec<u8>, msg: &[u8]) {
    let len = u32::try_from(msg.len()).expect("messages are under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(msg);
}

/// The messages of a byte-ring frame's payload, in order.
pub fn messages(payload: &[u8]) -> Messages<'_> {
    Messages { rest: payload }
}

/// Iterator over a byte-ring payload's messages (see [`messages`]).
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<&'a [u8], WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < 4 {
            self.rest = &[];
            return Some(Err(WireError::Truncated));
        }
        let len = u32_at(self.rest, 0) as usize;
        let body = &self.rest[4..];
        if body.len() < len {
            self.rest = &[];
            return Some(Err(WireError::Truncated));
        }
        let (msg, rest) = body.split_at(len);
        self.rest = rest;
        Some(Ok(msg))
    }
}

/// A message from the receiving bridge to the sending one, on `<key>/ctl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ctl {
    /// "I am here; send stream `stream` from `next`" (a receiver that has
    /// just started, or that saw a gap). `stream` 0: no stream yet, send
    /// everything not acknowledged. `incarnation` tells one receiver start
    /// from another, so a sender answers each once.
    Hello {
        /// The stream the receiver has state for (0: none).
        stream: u64,
        /// The next sequence number it needs.
        next: u64,
        /// A random id of this receiver start.
        incarnation: u64,
    },
    /// Everything before `next` of `stream` is in the receiver's local ring.
    Ack {
        /// The stream.
        stream: u64,
        /// The next sequence number the receiver needs.
        next: u64,
    },
    /// The receiver will not take this stream (its ring does not match).
    Refuse {
        /// The stream refused.
        stream: u64,
        /// Why, for the sender's error message.
        reason: String,
    },
}

impl Ctl {
    /// Encode.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (t, stream, next, inc, reason) = match self {
            Ctl::Hello {
                stream,
                next,
                incarnation,
            } => (HELLO, *stream, *next, *incarnation, ""),
            Ctl::Ack { stream, next } => (ACK, *stream, *next, 0, ""),
            Ctl::Refuse { stream, reason } => (REFUSE, *stream, 0, 0, reason.as_str()),
        };
        let mut out = Vec::with_capacity(CTL_LEN + reason.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[t, 0, 0, 0]);
        out.extend_from_slice(&stream.to_le_bytes());
        out.extend_from_slice(&next.to_le_bytes());
        out.extend_from_slice(&inc.to_le_bytes());
        out.extend_from_slice(reason.as_bytes());
        out
    }

    /// Decode.
    pub fn read(b: &[u8]) -> Result<Ctl, WireError> {
        check_magic(b, CTL_LEN)?;
        let (stream, next, incarnation) = (u64_at(b, 8), u64_at(b, 16), u64_at(b, 24));
        Ok(match b[4] {
            HELLO => Ctl::Hello {
                stream,
                next,
                incarnation,
            },
            ACK => Ctl::Ack { stream, next },
            REFUSE => Ctl::Refuse {
                stream,
                reason: String::from_utf8_lossy(&b[CTL_LEN..]).into_owned(),
            },
            t => return Err(WireError::Unknown("control message", t.into())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info(kind: QueueKind, elem_size: u32) -> StreamInfo {
        StreamInfo {
            kind,
            elem_size,
            elem_align: elem_size.min(8),
            schema: 0xfeed,
            capacity: 1024,
            lossy: false,
        }
    }

    proptest! {
        #[test]
        fn typed_frames_round_trip(
            first in any::<u64>(),
            stream in any::<u64>(),
            items in proptest::collection::vec(any::<u64>(), 0..64),
            lossy in any::<bool>(),
        ) {
            let h = FrameHeader {
                end: false,
                info: StreamInfo { lossy, ..info(QueueKind::Spsc, 8) },
                stream,
                first,
                count: items.len() as u32,
                answer: 0,
            };
            let mut b = Vec::new();
            h.write(&mut b);
            prop_assert_eq!(b.len(), HEADER_LEN);
            for v in &items {
                b.extend_from_slice(&v.to_le_bytes());
            }
            let (back, payload) = FrameHeader::read(&b).unwrap();
            prop_assert_eq!(back, h);
            prop_assert_eq!(payload.len(), items.len() * 8);
            // One byte more or less is refused, never read as items.
            prop_assert!(FrameHeader::read(&b[..b.len() - 1]).is_err() || items.is_empty());
            b.push(0);
            prop_assert!(FrameHeader::read(&b).is_err());
        }

        #[test]
        fn byte_frames_round_trip(msgs in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let h = FrameHeader {
                end: false,
                info: info(QueueKind::Bytes, 0),
                stream: 7,
                first: 3,
                count: msgs.len() as u32,
                answer: 9,
            };
            let mut b = Vec::new();
            h.write(&mut b);
            for m in &msgs {
                push_message(&mut b, m);
            }
            let (back, payload) = FrameHeader::read(&b).unwrap();
            prop_assert_eq!(back, h);
            let got: Vec<Vec<u8>> = messages(payload).map(|m| m.unwrap().to_vec()).collect();
            prop_assert_eq!(got, msgs.clone());
            if !msgs.is_empty() {
                prop_assert!(FrameHeader::read(&b[..b.len() - 1]).is_err());
            }
        }

        #[test]
        fn garbage_is_refused_not_decoded(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Anything at all: an error or a consistent frame, never a panic.
            if let Ok((h, payload)) = FrameHeader::read(&b) {
                if h.info.typed() && !h.end {
                    prop_assert_eq!(payload.len(), h.count as usize * h.info.elem_size as usize);
                }
            }
            let _ = Ctl::read(&b);
        }
    }

    #[test]
    fn control_messages_round_trip() {
        for c in [
            Ctl::Hello {
                stream: 1,
                next: 2,
                incarnation: 3,
            },
            Ctl::Ack {
                stream: u64::MAX,
                next: 9,
            },
            Ctl::Refuse {
                stream: 5,
                reason: "element size 8 here, 16 on the wire".into(),
            },
        ] {
            assert_eq!(Ctl::read(&c.to_bytes()), Ok(c));
        }
    }

    #[test]
    fn another_format_is_named() {
        let mut b = Ctl::Ack { stream: 1, next: 1 }.to_bytes();
        b[3] = 2;
        let e = Ctl::read(&b).unwrap_err();
        assert!(matches!(e, WireError::BadMagic(_)));
        assert!(e.to_string().contains("another version"), "{e}");
    }
}
