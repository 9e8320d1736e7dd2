//! Async forms of the broadcast endpoints (feature `tokio`; see
//! `crate::aio`). They wait through the same waiter threads and the same
//! arm / re-check / register protocol as SPSC and MPMC, on the events the
//! sync calls sleep on: a subscriber on `not_empty` (bumped by every
//! publish and by the publisher's detach), the publisher on `not_full`
//! (bumped by every subscriber's read on a lossless ring, and by a
//! subscriber's join, rejoin and detach).

use std::future::poll_fn;
use std::task::{Context, Poll};

use bytemuck::Pod;

use crate::aio::AsyncWait;
use crate::error::PushError;

use super::publisher::publish_try;
use super::subscriber::recv_impl;
use super::{Publisher, RecvError, Subscriber};

impl<T: Pod> Subscriber<T> {
    /// Receive, waiting asynchronously while nothing new is published: the
    /// task is woken by the publisher's publish (sync or async, in any
    /// process) through this process's waiter thread; nothing polls.
    ///
    /// Reports what [`Subscriber::recv`] reports: [`RecvError::Lagged`]
    /// (overwrite ring) and [`RecvError::Evicted`] (lossless ring with a
    /// `max_lag`) with the exact count missed, after which the next call
    /// goes on from the oldest item still in the ring;
    /// [`RecvError::Disconnected`] once everything published has been read
    /// and the publisher has gone (dropped, or its process died: noticed
    /// within ~150 ms through the waiter thread's liveness tick). Never
    /// [`RecvError::Timeout`]: time out with the executor's timer
    /// (`tokio::time::timeout`).
    ///
    /// **Cancel safe.** The cursor moves only in the poll that returns an
    /// item (or a `Lagged`/`Evicted` report, which is not lost either: the
    /// cursor moves in the same poll that returns it), so a future dropped
    /// before it completed has taken nothing and the next receive gets the
    /// same item.
    pub async fn recv_async(&mut self) -> Result<T, RecvError> {
        let mut wait = AsyncWait::new();
        poll_fn(|cx| self.poll_recv(&mut wait, cx)).await
    }

    pub(super) fn poll_recv(
        &mut self,
        wait: &mut AsyncWait,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, RecvError>> {
        // An error `recv_slice` met after items it returned comes first,
        // as in the sync recv.
        if let Some(e) = self.local.pending.take() {
            if let Some(e) = RecvError::from_try(e) {
                return Poll::Ready(Err(e));
            }
        }
        let (att, shape, local) = (&self.att, &self.shape, &mut self.local);
        let event = &att.header().events.not_empty;
        wait.poll(att.ring(), event, cx, || {
            match recv_impl::<T>(att, shape, local) {
                Ok(v) => Some(Ok(v)),
                Err(e) => RecvError::from_try(e).map(Err),
            }
        })
    }
}

impl<T: Pod> Publisher<T> {
    /// Publish, waiting asynchronously while a lossless ring is full: the
    /// task is woken when the slowest subscriber reads (or joins, leaves or
    /// is evicted). An overwrite ring is never full, so on one this
    /// completes in its first poll. Never [`PushError::Timeout`] (use the
    /// executor's timer) and never [`PushError::Disconnected`] (an item
    /// published with no subscriber stays for one that starts at
    /// [`Start::Oldest`](super::Start::Oldest)).
    ///
    /// A subscriber that died (SIGKILL: it sends no wake-up) stops holding
    /// the ring full within about 150 ms, as in [`Publisher::publish`]:
    /// every 100 ms the waiter thread's liveness tick re-polls the future,
    /// whose re-try asks the kernel (throttled to
    /// [`STALL_PATIENCE`](super::STALL_PATIENCE)) whether the subscribers
    /// holding the ring are alive, and drops the dead ones from the gate.
    ///
    /// **Cancel safe.** The value is written and published in the one poll
    /// that returns `Ready(Ok(()))`; a future dropped before it completed
    /// has published nothing, and the caller still has the value (`T` is
    /// `Pod`, so `Copy`). Never half-published: subscribers validate every
    /// slot with its seqlock, and the slot is only written in that poll.
    pub async fn publish_async(&mut self, value: T) -> Result<(), PushError<T>> {
        let mut wait = AsyncWait::new();
        poll_fn(|cx| {
            let (att, shape, gate) = (&self.att, &self.shape, &mut self.gate);
            let event = &att.header().events.not_full;
            wait.poll(att.ring(), event, cx, || {
                publish_try(att, shape, gate, &value)
                    .map(|r| r.map_err(|c| PushError::Corrupt(value, c)))
            })
        })
        .await
    }
}

#[cfg(feature = "tokio")]
pub use stream::RecvStream;

#[cfg(feature = "tokio")]
mod stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytemuck::Pod;

    use crate::aio::AsyncWait;

    use super::{RecvError, Subscriber};

    /// A [`Subscriber`] as a [`futures_core::Stream`] of its items, from
    /// [`Subscriber::into_stream`].
    ///
    /// Items are `Ok(value)`, or the reports a subscriber goes on after:
    /// `Err(RecvError::Lagged { .. })` and `Err(RecvError::Evicted { .. })`
    /// (the stream continues with the oldest item still in the ring). The
    /// stream ends (`None`) once everything published has been read and
    /// the publisher has gone; a corrupt segment yields one
    /// `Err(RecvError::Corrupt(_))` and then ends. It never yields
    /// `Timeout` or `Disconnected`.
    ///
    /// **Cancel safe**, as [`Subscriber::recv_async`]: the cursor moves
    /// only in the `poll_next` that returns an item, so a `next()` future
    /// dropped before it completed has taken nothing.
    pub struct RecvStream<T> {
        rx: Subscriber<T>,
        wait: AsyncWait,
        done: bool,
    }

    impl<T> std::fmt::Debug for RecvStream<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("broadcast::RecvStream")
                .field("subscriber", &self.rx)
                .field("done", &self.done)
                .finish()
        }
    }

    impl<T: Pod> Subscriber<T> {
        /// This subscriber as a [`futures_core::Stream`] (feature `tokio`).
        pub fn into_stream(self) -> RecvStream<T> {
            RecvStream {
                rx: self,
                wait: AsyncWait::new(),
                done: false,
            }
        }
    }

    impl<T: Pod> RecvStream<T> {
        /// The subscriber, for its other methods.
        pub fn get_mut(&mut self) -> &mut Subscriber<T> {
            &mut self.rx
        }

        /// The subscriber back.
        pub fn into_inner(self) -> Subscriber<T> {
            self.rx
        }
    }

    impl<T: Pod> futures_core::Stream for RecvStream<T> {
        type Item = Result<T, RecvError>;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let this = self.get_mut();
            if this.done {
                return Poll::Ready(None);
            }
            match this.rx.poll_recv(&mut this.wait, cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(v)) => Poll::Ready(Some(Ok(v))),
                Poll::Ready(Err(e @ (RecvError::Lagged { .. } | RecvError::Evicted { .. }))) => {
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Ready(Err(e @ RecvError::Corrupt(_))) => {
                    this.done = true;
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Ready(Err(_)) => {
                    this.done = true;
                    Poll::Ready(None)
                }
            }
        }
    }

    impl<T: Pod> futures_core::FusedStream for RecvStream<T> {
        fn is_terminated(&self) -> bool {
            self.done
        }
    }
}

mod messages {
    use std::future::poll_fn;
    use std::task::Poll;

    use bytemuck::Zeroable;

    use crate::aio::AsyncWait;
    use crate::error::PushError;

    use super::super::messages::{
        Chunk, MessageError, MessagePublisher, MessageSubscriber, PublishError, CHUNK_DATA,
    };

    impl MessageSubscriber {
        /// Receive the next whole message, waiting asynchronously for it
        /// (feature `tokio`); reports what [`MessageSubscriber::recv`]
        /// does, never [`MessageError::Timeout`] (use the executor's
        /// timer).
        ///
        /// **Cancel safe.** Chunks read before the future was dropped stay
        /// in the subscriber's message in progress, and the next receive
        /// goes on from them: a dropped future loses no message.
        pub async fn recv_async(&mut self) -> Result<Vec<u8>, MessageError> {
            let mut wait = AsyncWait::new();
            poll_fn(|cx| loop {
                if let Some(r) = self.ready.take() {
                    return Poll::Ready(r);
                }
                let q = self.rx.position();
                let r = match self.rx.poll_recv(&mut wait, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r,
                };
                let step = match r {
                    Ok(c) => self.accept(q, &c),
                    Err(e) => Some(Err(self.lost(Some(e)))),
                };
                if let Some(r) = step {
                    return Poll::Ready(r);
                }
            })
            .await
        }
    }

    impl MessagePublisher {
        /// Publish `msg`, waiting asynchronously while a lossless ring is
        /// full (feature `tokio`): chunk by chunk, each with
        /// [`Publisher::publish_async`](super::Publisher::publish_async).
        /// Never [`PublishError::Timeout`] (use the executor's timer);
        /// [`PublishError::TooLarge`] as [`MessagePublisher::publish`].
        ///
        /// **Cancel safety.** A message of one chunk (up to
        /// [`CHUNK_DATA`] bytes) is published whole or not at all. A longer
        /// one dropped after some of its chunks went out is abandoned:
        /// subscribers drop the part they have and report
        /// [`MessageError::Abandoned`] when the next message starts, never
        /// a short message.
        pub async fn publish_async(&mut self, msg: &[u8]) -> Result<(), PublishError> {
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
            let mut parts = msg.chunks(CHUNK_DATA);
            for _ in 0..chunks {
                let part = parts.next().unwrap_or(&[]);
                let mut c = head;
                c.len = part.len() as u32;
                c.data[..part.len()].copy_from_slice(part);
                match self.tx.publish_async(c).await {
                    Ok(()) => {}
                    Err(PushError::Corrupt(_, corruption)) => {
                        return Err(PublishError::Corrupt(corruption))
                    }
                    // Neither Timeout nor Disconnected comes from
                    // publish_async; say what went out if one ever did.
                    Err(_) => {
                        let sent = (self.tx.position() - head.first) as usize * CHUNK_DATA;
                        return Err(PublishError::Timeout {
                            sent: sent.min(msg.len()),
                        });
                    }
                }
            }
            Ok(())
        }
    }
}
