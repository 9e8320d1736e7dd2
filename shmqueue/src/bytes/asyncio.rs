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
