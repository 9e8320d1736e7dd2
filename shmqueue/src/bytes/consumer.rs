//! The reading end of a byte ring: validated records, in-place reads,
//! reassembly of fragmented messages and streaming.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::registry::{Attachment, Fresh};
use crate::sync::Ordering;
use crate::wait::{keep_trying, Deadline, Throttle};

use super::error::*;
use super::record::*;
use super::*;

// --------------------------------------------------------------------------
// Consumer
// --------------------------------------------------------------------------

pub(super) struct ConsumerLocal {
    /// Our `tail`: we are its only writer.
    pub(super) tail: u64,
    /// `tail % cap`.
    pub(super) off: usize,
    /// Last validated `head`; `tail <= cached_head <= tail + cap`.
    pub(super) cached_head: u64,
    pub(super) reap: Throttle,
}

/// A validated record at the consumer's tail: payload at `at` (`len`
/// bytes), `size` bytes in all.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rec {
    pub(super) at: usize,
    pub(super) len: usize,
    pub(super) flags: u32,
    pub(super) size: usize,
}

impl Rec {
    pub(super) fn more(&self) -> bool {
        self.flags & FLAG_MORE != 0
    }
    pub(super) fn cont(&self) -> bool {
        self.flags & FLAG_CONT != 0
    }
    pub(super) fn abort(&self) -> bool {
        self.flags & FLAG_ABORT != 0
    }
}

pub(super) enum Next {
    Rec(Rec),
    /// Nothing published beyond our tail.
    Empty,
    /// Nothing published, and the producer has gone.
    Gone,
}

/// Where the consumer is in the message stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
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
pub(super) enum Sink<'b> {
    Vec(&'b mut Vec<u8>),
    Slice(&'b mut [u8]),
}

/// The reading end of a [`ByteRing`]. `Send`: move it to the thread that
/// consumes.
pub struct Consumer {
    pub(super) local: ConsumerLocal,
    pub(super) lim: Limits,
    pub(super) spin: u32,
    pub(super) mode: Mode,
    /// Reassembly buffer of a fragmented message (never longer than the
    /// maximum message size).
    pub(super) partial: Vec<u8>,
    pub(super) att: Attachment,
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
pub(super) fn load_head(att: &Attachment, tail: u64, cap: usize) -> Result<u64, RecvError> {
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
    pub(super) fn release(&mut self, size: usize) {
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
    pub(super) fn next_record(&mut self) -> Result<Next, RecvError> {
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
    pub(super) fn copy_payload(&self, rec: Rec, from: usize, dst: &mut [u8]) {
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
    pub(super) fn append_to(&self, rec: Rec, v: &mut Vec<u8>) {
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
    pub(super) fn next_message_start(&mut self) -> Result<Option<Rec>, RecvError> {
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
    pub(super) fn refuse(&mut self, rec: Rec, len: usize) -> RecvError {
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
    pub(super) fn abandon(&mut self) -> RecvError {
        self.partial.clear();
        self.mode = Mode::Idle;
        RecvError::Truncated
    }

    /// One non-blocking step towards a whole message: `Some(len)` once one
    /// has been delivered to `sink`, `None` if the ring ran dry first (a
    /// partly assembled message stays in `partial`).
    pub(super) fn step(&mut self, sink: &mut Sink<'_>) -> Result<Option<usize>, RecvError> {
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

    pub(super) fn assemble(&mut self, sink: &mut Sink<'_>) -> Result<Option<usize>, RecvError> {
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
    pub(super) fn deliver_partial(&mut self, sink: &mut Sink<'_>) -> Result<usize, RecvError> {
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
    pub(super) fn deliver_record(
        &mut self,
        rec: Rec,
        sink: &mut Sink<'_>,
    ) -> Result<usize, RecvError> {
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
    pub(super) fn wait_for<R>(
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
    pub(super) fn try_read_rec(&mut self) -> Result<Option<Rec>, RecvError> {
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

    pub(super) fn start_reader(
        &mut self,
        deadline: Option<Deadline>,
    ) -> Result<MessageReader<'_>, RecvError> {
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
    pub(super) c: &'a mut Consumer,
    pub(super) rec: Rec,
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
    pub(super) c: &'a mut Consumer,
    /// Bytes already taken out of the ring (a message assembled by an
    /// earlier call), read first.
    pub(super) pre: Vec<u8>,
    pub(super) pre_pos: usize,
    /// The record being read (not yet released) and the position in it.
    pub(super) cur: Option<Rec>,
    pub(super) pos: usize,
    /// More fragments follow `cur`.
    pub(super) more: bool,
    pub(super) total: usize,
    pub(super) deadline: Option<Deadline>,
    pub(super) failed: Option<RecvError>,
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
    pub(super) fn next_fragment(&mut self) -> Result<(), RecvError> {
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
