//! The record format of the byte ring: headers, flags, sizes, and raw
//! access to the data area at offsets the callers have bounds-checked.

use crate::error::Corruption;
use crate::header::BYTE_RECORD_ALIGN;
use crate::registry::Attachment;

/// Bytes of the header in front of every record's payload.
pub const RECORD_HEADER_SIZE: usize = 8;

/// The rest of the data area, up to its end, is unused; continue at 0.
pub(crate) const FLAG_PAD: u32 = 1;
/// More fragments of this message follow.
pub(crate) const FLAG_MORE: u32 = 2;
/// This record continues a message (it is not its first record).
pub(crate) const FLAG_CONT: u32 = 4;
/// The message in progress is abandoned (with CONT, `len = 0`).
pub(crate) const FLAG_ABORT: u32 = 8;
/// A middle fragment.
pub(super) const FLAGS_MIDDLE: u32 = FLAG_MORE | FLAG_CONT;
/// An abandoned message's end.
pub(super) const FLAGS_ABORTED: u32 = FLAG_CONT | FLAG_ABORT;

/// A record's header, as it lies in the data area (little-endian fields).
/// Encoded and decoded as bytes ([`encode_header`], [`read_header`]) at
/// the offsets pinned below.
#[repr(C)]
#[allow(dead_code)] // the layout's description; never constructed
pub(super) struct RecordHeader {
    pub(super) len: u32,
    pub(super) flags: u32,
}
/// Offset of `len` in a record header.
pub(crate) const LEN_AT: usize = 0;
/// Offset of `flags` in a record header.
pub(crate) const FLAGS_AT: usize = 4;

#[cfg(not(shmqueue_loom))]
pub(super) mod layout_pins {
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
pub(super) struct Limits {
    /// Bytes in the data area.
    pub(super) cap: usize,
    /// Largest payload of one record: `cap - 8` (and what a u32 holds).
    pub(super) max_record: usize,
    /// Payload of one fragment of a message that `send` splits: about half
    /// the ring, so the producer fills one half while the consumer drains
    /// the other.
    pub(super) chunk: usize,
    /// Largest message this endpoint sends or accepts.
    pub(super) max_message: usize,
}

impl Limits {
    pub(super) fn new(cap: usize, max_message: usize) -> Limits {
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
pub(super) fn record_size(len: usize) -> usize {
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
pub(super) unsafe fn copy_in(att: &Attachment, at: usize, src: &[u8]) {
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
pub(super) unsafe fn copy_out(att: &Attachment, at: usize, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract is read_bytes'.
    unsafe { att.read_bytes(at, dst, len) }
}

/// The 8 bytes of a record header.
pub(super) fn encode_header(len: u32, flags: u32) -> [u8; RECORD_HEADER_SIZE] {
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
pub(super) unsafe fn write_header(att: &Attachment, at: usize, len: u32, flags: u32) {
    // SAFETY: the caller's contract.
    unsafe { copy_in(att, at, &encode_header(len, flags)) }
}

/// Read the record header at byte `at` (untrusted: the caller validates it).
///
/// # Safety
/// `at + 8 <= capacity`, and the bytes are published to the caller.
#[inline]
pub(super) unsafe fn read_header(att: &Attachment, at: usize) -> (usize, u32) {
    let mut b = [0u8; RECORD_HEADER_SIZE];
    // SAFETY: the caller's contract; `b` is ours.
    unsafe { copy_out(att, at, b.as_mut_ptr(), RECORD_HEADER_SIZE) };
    let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (word(LEN_AT) as usize, word(FLAGS_AT))
}

pub(super) fn corrupt(what: &'static str, found: u64, limit: u64) -> Corruption {
    Corruption { what, found, limit }
}
