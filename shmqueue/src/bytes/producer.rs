//! The writing end of a byte ring: records, zero-copy reservations and
//! streamed messages.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::header::{STATUS_DETACHED, STATUS_MASK};
use crate::registry::Attachment;
use crate::sync::Ordering;
use crate::wait::{keep_trying, Deadline, Throttle};

use super::error::*;
use super::record::*;
use super::*;

// --------------------------------------------------------------------------
// Producer
// --------------------------------------------------------------------------

pub(super) struct ProducerLocal {
    /// Our `head`: we are its only writer, so it is never re-read.
    pub(super) head: u64,
    /// `head % cap`, kept incrementally (no division on the hot path).
    pub(super) off: usize,
    /// Last `tail` seen; it only moves forward, so this under-estimates room.
    pub(super) cached_tail: u64,
    pub(super) reap: Throttle,
}

/// Room for one record, from [`Producer::try_claim`]: its header goes
/// at `at` (= the producer's offset), its payload (up to `room` bytes) at
/// `at + 8`. Nothing is visible to the consumer until it is published.
#[derive(Clone, Copy, Debug)]
pub(super) struct Claim {
    pub(super) at: usize,
    pub(super) room: usize,
}

/// The writing end of a [`ByteRing`]. `Send`: move it to the thread that
/// produces.
pub struct Producer {
    pub(super) local: ProducerLocal,
    pub(super) lim: Limits,
    pub(super) spin: u32,
    pub(super) att: Attachment,
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
    pub(super) fn has_room(&mut self, need: usize) -> Result<bool, SendError> {
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
    pub(super) fn advance(&mut self, n: usize) {
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
    pub(super) fn try_claim(&mut self, len: usize) -> Result<Claim, SendError> {
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
    pub(super) fn publish(&mut self, c: Claim, len: usize, flags: u32) {
        debug_assert_eq!(c.at, self.local.off);
        debug_assert!(len <= c.room);
        // SAFETY: the claim's record lies inside the data area (try_claim
        // checked off + size <= cap, size >= 8) and is free.
        unsafe { write_header(&self.att, c.at, len as u32, flags) };
        self.advance(record_size(len));
    }

    /// Copy `src` into the payload of claim `c` at `offset`.
    #[inline]
    pub(super) fn fill(&mut self, c: Claim, offset: usize, src: &[u8]) {
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
    pub(super) fn claim_until(
        &mut self,
        len: usize,
        deadline: Option<Deadline>,
    ) -> Result<Claim, SendError> {
        match self.try_claim(len) {
            Err(SendError::Full) => {}
            r => return r,
        }
        self.claim_wait(len, deadline)
    }

    #[inline(never)]
    pub(super) fn claim_wait(
        &mut self,
        len: usize,
        deadline: Option<Deadline>,
    ) -> Result<Claim, SendError> {
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
    pub(super) fn abort_message(&mut self) {
        if let Ok(c) = self.try_claim(0) {
            self.publish(c, 0, FLAGS_ABORTED);
        }
    }

    pub(super) fn too_large(&self, len: usize) -> Result<(), SendError> {
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

    pub(super) fn send_until(
        &mut self,
        msg: &[u8],
        deadline: Option<Deadline>,
    ) -> Result<(), SendError> {
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

    pub(super) fn check_reserve(&self, len: usize) -> Result<(), SendError> {
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
    pub(super) p: &'a mut Producer,
    pub(super) claim: Claim,
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
    pub(super) p: &'a mut Producer,
    /// The fragment being filled, and how many bytes it holds.
    pub(super) cur: Option<Claim>,
    pub(super) filled: usize,
    /// At least one fragment has been published.
    pub(super) published: bool,
    pub(super) total: usize,
    pub(super) deadline: Option<Deadline>,
    pub(super) failed: Option<SendError>,
    pub(super) done: bool,
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
    pub(super) fn new(p: &'a mut Producer, deadline: Option<Deadline>) -> Self {
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

    pub(super) fn publish_cur(&mut self, more: bool) {
        if let Some(c) = self.cur.take() {
            let more = if more { FLAG_MORE } else { 0 };
            let cont = if self.published { FLAG_CONT } else { 0 };
            let flags = more | cont;
            self.p.publish(c, self.filled, flags);
            self.published = true;
            self.filled = 0;
        }
    }

    pub(super) fn end(&mut self) -> Result<(), SendError> {
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

    pub(super) fn abort_inner(&mut self) {
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
