//! Async forms of the byte-ring endpoints (feature `tokio`; see
//! `crate::aio`): the same waiter threads and the same arm / re-check /
//! register protocol as the typed rings, on the events the sync calls
//! sleep on (`not_empty` for the consumer, `not_full` for the producer).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::aio::AsyncWait;

use super::consumer::Sink;
use super::error::{RecvError, SendError};
use super::record::{FLAG_CONT, FLAG_MORE};
use super::{Consumer, Producer};

impl Consumer {
    /// Receive a whole message into `buf` (replacing its contents), waiting
    /// asynchronously for it: the task is woken by the producer's publish
    /// (sync or async, in any process) through this process's waiter
    /// thread; nothing polls. Messages sent in fragments are reassembled,
    /// as by [`Consumer::recv`], and it reports what `recv` reports
    /// ([`RecvError::Disconnected`] once the ring is drained and the
    /// producer has gone, noticed within ~150 ms of a SIGKILL;
    /// [`RecvError::Truncated`], [`RecvError::TooLarge`],
    /// [`RecvError::Corrupt`]). Never [`RecvError::Timeout`]: time out with
    /// the executor's timer (`tokio::time::timeout`).
    ///
    /// **Cancel safe.** `buf` is written, and the message's last record
    /// released, only in the poll that returns `Ready`. The fragments of a
    /// large message that arrived before the future was dropped are kept
    /// inside the consumer (they had to leave the ring so the producer
    /// could send the rest), and the next receive of any kind goes on from
    /// them: a dropped future loses no message and no part of one, and
    /// leaves `buf` as it was.
    pub async fn recv_async(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        let mut wait = AsyncWait::new();
        poll_fn(|cx| self.poll_step(&mut wait, cx, &mut Sink::Vec(&mut *buf)))
            .await
            .map(|_| ())
    }

    /// Like [`Consumer::recv_async`], into a slice; returns the message's
    /// length. If `buf` is too short: [`RecvError::BufferTooSmall`] with
    /// the length needed, and the message is kept for the next call, as
    /// [`Consumer::recv_into`] does. **Cancel safe**, as `recv_async`.
    pub async fn recv_into_async(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let mut wait = AsyncWait::new();
        poll_fn(|cx| self.poll_step(&mut wait, cx, &mut Sink::Slice(&mut *buf))).await
    }

    fn poll_step(
        &mut self,
        wait: &mut AsyncWait,
        cx: &mut Context<'_>,
        sink: &mut Sink<'_>,
    ) -> Poll<Result<usize, RecvError>> {
        // The common case first, without touching the ring's refcount.
        if let Some(r) = self.step(sink).transpose() {
            wait.finish();
            return Poll::Ready(r);
        }
        // The wait needs the ring (and its event) while `step` needs all
        // of `self`: hold the ring through a clone of its `Arc`.
        let ring = Arc::clone(self.att.ring());
        let event = &ring.header().events.not_empty;
        wait.poll(&ring, event, cx, || self.step(sink).transpose())
    }
}

/// The state of one `send_async`: the fragments published so far. Dropped
/// before the message is whole (the future was cancelled), it ends the
/// message as abandoned, so the consumer never takes its first fragments
/// for a whole message.
struct Sending<'a> {
    p: &'a mut Producer,
    msg: &'a [u8],
    /// Fragments (records) the message is sent in, and how many are out.
    parts: usize,
    sent: usize,
    done: bool,
}

impl Sending<'_> {
    /// Publish every fragment that has room now; `None` when the next one
    /// does not fit yet.
    fn attempt(&mut self) -> Option<Result<(), SendError>> {
        let chunk = self.p.lim.chunk;
        while self.sent < self.parts {
            let i = self.sent;
            let from = i * chunk;
            let piece = &self.msg[from..self.msg.len().min(from + chunk)];
            match self.p.try_claim(piece.len()) {
                Ok(c) => {
                    self.p.fill(c, 0, piece);
                    let cont = if i > 0 { FLAG_CONT } else { 0 };
                    let more = if i + 1 < self.parts { FLAG_MORE } else { 0 };
                    self.p.publish(c, piece.len(), cont | more);
                    self.sent += 1;
                }
                Err(SendError::Full) => return None,
                Err(e) => {
                    // As the sync send: a failure after some fragments ends
                    // the message as abandoned (a gone consumer reads
                    // nothing more anyway).
                    if i > 0 && e != SendError::Disconnected {
                        self.p.abort_message();
                    }
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.done = true;
        Some(Ok(()))
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if self.done || self.sent == 0 || !self.p.att.owned_here() {
            return;
        }
        // Cancelled part-way through a fragmented message. An ABORT record
        // if there is room now (no waiting: this is a drop); otherwise the
        // next message's first record, which has no CONT flag, or the
        // producer's detach tells the consumer. Either way it reports
        // `Truncated` and never delivers the fragments as a message.
        self.p.abort_message();
    }
}

impl Producer {
    /// Send `msg`, waiting asynchronously for room: the task is woken when
    /// the consumer releases space. As [`Producer::send`], a message longer
    /// than about half the ring is sent in fragments, each published as
    /// soon as there is room for it, so messages of any size up to the
    /// maximum message size pass through a small ring. Fails if the
    /// consumer goes away ([`SendError::Disconnected`], within ~150 ms of
    /// its process dying) or the segment is corrupt. Never
    /// [`SendError::Timeout`]: time out with the executor's timer.
    ///
    /// **Cancel safety.** A message sent as one record (up to about half
    /// the ring, as with `send`) is claimed, written and published in the one poll that returns
    /// `Ready(Ok(()))`: a future dropped before that has published nothing.
    /// A message sent in fragments cannot be all-or-nothing, since the
    /// ring cannot hold it: a future dropped after its first fragments
    /// went out ends the message as **abandoned**. It publishes an ABORT
    /// record if there is room at the drop (it never waits), and otherwise
    /// the start of the next message (or this producer's drop) says so. The
    /// consumer then reports [`RecvError::Truncated`] for that message and
    /// delivers the next one intact: no half message is ever received as a
    /// message, and a retry must send the whole message again.
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.too_large(msg.len())?;
        let parts = msg.len().div_ceil(self.lim.chunk).max(1);
        let mut s = Sending {
            p: self,
            msg,
            parts,
            sent: 0,
            done: false,
        };
        let mut wait = AsyncWait::new();
        poll_fn(|cx| {
            if let Some(r) = s.attempt() {
                wait.finish();
                return Poll::Ready(r);
            }
            // As in `Consumer::poll_step`: the ring through its own `Arc`.
            let ring = Arc::clone(s.p.att.ring());
            let event = &ring.header().events.not_full;
            wait.poll(&ring, event, cx, || s.attempt())
        })
        .await
    }
}

#[cfg(feature = "tokio-io")]
pub use pipe::{AsyncReader, AsyncWriter};

/// `tokio::io::AsyncRead` / `AsyncWrite` views of the endpoints (feature
/// `tokio-io`): the byte ring as a pipe.
#[cfg(feature = "tokio-io")]
mod pipe {
    use std::fmt;
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    use crate::aio::AsyncWait;

    use super::super::consumer::{Mode, Next, Rec};
    use super::super::error::{recv_io, send_io, RecvError, SendError};
    use super::{Consumer, Producer};

    /// A [`Consumer`] as a [`tokio::io::AsyncRead`], from
    /// [`Consumer::into_async_read`]: the bytes of every message, in order,
    /// with no boundaries between them (a pipe). Records are copied
    /// straight from the ring into the caller's buffer and released as
    /// they are read, so nothing is assembled in memory and a message of
    /// any size streams through.
    ///
    /// A read returns 0 (end of file) once the ring is drained and the
    /// producer has gone. A message abandoned part-way (its producer was
    /// killed, or a `send_async` was dropped) fails one read with
    /// `UnexpectedEof` wrapping [`RecvError::Truncated`]: the bytes of it
    /// already read were real, and what follows is the next message. A
    /// corrupt segment fails reads with `InvalidData`. Nothing is
    /// assembled, so the consumer's maximum message size does not apply.
    ///
    /// **Cancel safe.** Bytes leave the ring only in the `poll_read` that
    /// returns them in the buffer, so a read future dropped before it
    /// completed has taken nothing.
    pub struct AsyncReader {
        c: Consumer,
        /// Bytes already taken out of the ring by an earlier `recv` (a
        /// message, or the start of one), read first.
        pre: Vec<u8>,
        pre_pos: usize,
        /// The record being read (not yet released), and how far.
        cur: Option<(Rec, usize)>,
        /// The last record read had MORE: the next must be a continuation.
        in_message: bool,
        /// Passing over continuations of a message we never saw start.
        skipping: bool,
        wait: AsyncWait,
    }

    impl fmt::Debug for AsyncReader {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("bytes::AsyncReader")
                .field("consumer", &self.c)
                .field("in_message", &self.in_message)
                .finish_non_exhaustive()
        }
    }

    impl Consumer {
        /// This consumer as a [`tokio::io::AsyncRead`] pipe (feature
        /// `tokio-io`). A message it had partly or wholly received is read
        /// first.
        pub fn into_async_read(mut self) -> AsyncReader {
            let (pre, in_message, skipping) = match self.mode {
                Mode::Ready => (std::mem::take(&mut self.partial), false, false),
                Mode::Assembling => (std::mem::take(&mut self.partial), true, false),
                Mode::Skipping => (Vec::new(), false, true),
                Mode::Idle => (Vec::new(), false, false),
            };
            self.mode = Mode::Idle;
            AsyncReader {
                c: self,
                pre,
                pre_pos: 0,
                cur: None,
                in_message,
                skipping,
                wait: AsyncWait::new(),
            }
        }
    }

    impl AsyncReader {
        /// The consumer back. A record partly read is released (the rest
        /// of its bytes are skipped), as is anything read ahead.
        pub fn into_inner(mut self) -> Consumer {
            if let Some((rec, _)) = self.cur.take() {
                self.c.release(rec.size);
            }
            if self.in_message {
                self.c.mode = Mode::Skipping;
            }
            let mut c = self.c;
            c.partial.clear();
            c
        }

        /// One non-blocking read into `buf` (which has room): `None` if the
        /// ring has nothing for us yet.
        fn attempt(&mut self, buf: &mut ReadBuf<'_>) -> Option<io::Result<()>> {
            loop {
                if self.pre_pos < self.pre.len() {
                    let n = (self.pre.len() - self.pre_pos).min(buf.remaining());
                    buf.put_slice(&self.pre[self.pre_pos..self.pre_pos + n]);
                    self.pre_pos += n;
                    if self.pre_pos == self.pre.len() {
                        self.pre = Vec::new();
                        self.pre_pos = 0;
                    }
                    return Some(Ok(()));
                }
                if let Some((rec, pos)) = self.cur {
                    let n = (rec.len - pos).min(buf.remaining());
                    self.c.copy_payload(rec, pos, buf.initialize_unfilled_to(n));
                    buf.advance(n);
                    if pos + n == rec.len {
                        self.cur = None;
                        self.c.release(rec.size);
                    } else {
                        self.cur = Some((rec, pos + n));
                    }
                    return Some(Ok(()));
                }
                let rec = match self.c.next_record() {
                    Err(e) => return Some(Err(recv_io(e))),
                    Ok(Next::Empty) => return None,
                    Ok(Next::Gone) if self.in_message => {
                        self.in_message = false;
                        return Some(Err(recv_io(RecvError::Truncated)));
                    }
                    // End of file: nothing buffered is left unread.
                    Ok(Next::Gone) => return Some(Ok(())),
                    Ok(Next::Rec(r)) => r,
                };
                if self.skipping && rec.cont() {
                    self.c.release(rec.size);
                    self.skipping = rec.more();
                    continue;
                }
                self.skipping = false;
                if rec.cont() && !self.in_message {
                    // The rest of a message whose start we never saw (this
                    // consumer attached in its middle): pass over it.
                    self.c.release(rec.size);
                    self.skipping = rec.more();
                    if rec.abort() {
                        continue;
                    }
                    return Some(Err(recv_io(RecvError::Truncated)));
                }
                if !rec.cont() && self.in_message {
                    // A new message began: the one in progress was
                    // abandoned. The new record stays for the next read.
                    self.in_message = false;
                    return Some(Err(recv_io(RecvError::Truncated)));
                }
                if rec.abort() {
                    self.c.release(rec.size);
                    self.in_message = false;
                    return Some(Err(recv_io(RecvError::Truncated)));
                }
                self.in_message = rec.more();
                if rec.len == 0 {
                    self.c.release(rec.size);
                    continue;
                }
                self.cur = Some((rec, 0));
            }
        }
    }

    impl AsyncRead for AsyncReader {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if let Some(r) = this.attempt(buf) {
                this.wait.finish();
                return Poll::Ready(r);
            }
            let ring = Arc::clone(this.c.att.ring());
            let event = &ring.header().events.not_empty;
            let mut wait = std::mem::take(&mut this.wait);
            let r = wait.poll(&ring, event, cx, || this.attempt(buf));
            this.wait = wait;
            r
        }
    }

    /// A [`Producer`] as a [`tokio::io::AsyncWrite`], from
    /// [`Producer::into_async_write`]: every `poll_write` that completes
    /// sends what it took as one message of one record (at most about half
    /// the ring), so an [`AsyncReader`] (or `recv`) on the other side gets
    /// the bytes in order. `flush` has nothing to do (each write is
    /// published when it returns); `shutdown` drops the producer, so the
    /// reader sees end of file once it has read everything.
    ///
    /// **Cancel safe.** A `poll_write` claims, writes and publishes its
    /// record in the one poll that returns `Ready(Ok(n))`; one that returns
    /// `Pending` has written nothing.
    pub struct AsyncWriter {
        p: Option<Producer>,
        wait: AsyncWait,
    }

    impl fmt::Debug for AsyncWriter {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("bytes::AsyncWriter")
                .field("producer", &self.p)
                .finish_non_exhaustive()
        }
    }

    impl Producer {
        /// This producer as a [`tokio::io::AsyncWrite`] pipe (feature
        /// `tokio-io`).
        pub fn into_async_write(self) -> AsyncWriter {
            AsyncWriter {
                p: Some(self),
                wait: AsyncWait::new(),
            }
        }
    }

    impl AsyncWriter {
        /// The producer back; `None` after `shutdown`.
        pub fn into_inner(self) -> Option<Producer> {
            self.p
        }
    }

    /// One non-blocking write of up to a fragment of `buf` as one record.
    fn write_attempt(p: &mut Producer, buf: &[u8]) -> Option<io::Result<usize>> {
        let n = buf.len().min(p.lim.chunk).min(p.lim.max_message);
        if n == 0 {
            return Some(Err(send_io(SendError::TooLarge {
                len: buf.len(),
                max: 0,
            })));
        }
        match p.try_claim(n) {
            Ok(c) => {
                p.fill(c, 0, &buf[..n]);
                p.publish(c, n, 0);
                Some(Ok(n))
            }
            Err(SendError::Full) => None,
            Err(e) => Some(Err(send_io(e))),
        }
    }

    impl AsyncWrite for AsyncWriter {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let Some(p) = this.p.as_mut() else {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the byte ring writer was shut down",
                )));
            };
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            if let Some(r) = write_attempt(p, buf) {
                this.wait.finish();
                return Poll::Ready(r);
            }
            let ring = Arc::clone(p.att.ring());
            let event = &ring.header().events.not_full;
            this.wait.poll(&ring, event, cx, || write_attempt(p, buf))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            // Detach (the producer's drop wakes the consumer), so the
            // reader drains and then reads end of file.
            self.get_mut().p = None;
            Poll::Ready(Ok(()))
        }
    }
}
