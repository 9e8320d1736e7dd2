//! Async endpoints (feature `tokio`): await a queue from any executor,
//! woken by the peer's publish, with no polling and no thread per waiter.
//!
//! The async forms are methods of the endpoints themselves:
//!
//! | endpoint | await | stream / sink |
//! |---|---|---|
//! | [`spsc::Consumer`](crate::spsc::Consumer) | [`pop_async`](crate::spsc::Consumer::pop_async) | [`into_stream`](crate::spsc::Consumer::into_stream) |
//! | [`spsc::Producer`](crate::spsc::Producer) | [`push_async`](crate::spsc::Producer::push_async) | [`into_sink`](crate::spsc::Producer::into_sink) (`futures_sink::Sink`) |
//! | [`mpmc::Consumer`](crate::mpmc::Consumer) | [`pop_async`](crate::mpmc::Consumer::pop_async) | [`into_stream`](crate::mpmc::Consumer::into_stream) |
//! | [`mpmc::Producer`](crate::mpmc::Producer) | [`push_async`](crate::mpmc::Producer::push_async) | [`into_sink`](crate::mpmc::Producer::into_sink) (`futures_sink::Sink`) |
//! | [`broadcast::Subscriber`](crate::broadcast::Subscriber) | [`recv_async`](crate::broadcast::Subscriber::recv_async) | [`into_stream`](crate::broadcast::Subscriber::into_stream) |
//! | [`broadcast::Publisher`](crate::broadcast::Publisher) | [`publish_async`](crate::broadcast::Publisher::publish_async) | |
//! | [`broadcast::messages::MessageSubscriber`](crate::broadcast::messages::MessageSubscriber) | [`recv_async`](crate::broadcast::messages::MessageSubscriber::recv_async) | |
//! | [`broadcast::messages::MessagePublisher`](crate::broadcast::messages::MessagePublisher) | [`publish_async`](crate::broadcast::messages::MessagePublisher::publish_async) | |
//! | [`bytes::Consumer`](crate::bytes::Consumer) | [`recv_async`](crate::bytes::Consumer::recv_async), [`recv_into_async`](crate::bytes::Consumer::recv_into_async) | `into_async_read` (`tokio::io::AsyncRead`, feature `tokio-io`) |
//! | [`bytes::Producer`](crate::bytes::Producer) | [`send_async`](crate::bytes::Producer::send_async) | `into_async_write` (`tokio::io::AsyncWrite`, feature `tokio-io`) |
//!
//! Timeouts are the executor's (`tokio::time::timeout`); every method is
//! cancel safe (see each one's docs), so a timed-out or `select!`-ed
//! future loses nothing.
//!
//! ```
//! # #[cfg(feature = "tokio")] {
//! use shmqueue::Spsc;
//! # let name = format!("/doc-aio-{}", std::process::id());
//! let q = Spsc::<u64>::create(&name, 16)?;
//! let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
//! // Any executor works; the waker is all the library needs.
//! let got = std::thread::scope(|s| {
//!     s.spawn(|| tx.push(7).unwrap());
//!     block_on(rx.pop_async())
//! });
//! assert_eq!(got, Ok(7));
//! # shmqueue::unlink(&name)?;
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     use std::task::{Context, Poll, Wake, Waker};
//! #     struct T(std::thread::Thread);
//! #     impl Wake for T { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
//! #     let w = Waker::from(std::sync::Arc::new(T(std::thread::current())));
//! #     let mut cx = Context::from_waker(&w);
//! #     let mut f = std::pin::pin!(f);
//! #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v } std::thread::park() }
//! # }
//! # }
//! # Ok::<(), shmqueue::Error>(())
//! ```
//!
//! # How a task is woken
//!
//! An awaiting endpoint follows the sync waiting protocol (docs/DESIGN.md,
//! "Waiting protocol") up to the point where a thread would call
//! `futex_wait`: it arms the event (`armed = 1`), issues the heavy fence
//! F1 and re-checks the ring. If the ring is still not ready, it hands
//! (epoch word, epoch value it armed at, `Waker`) to a waiter thread of
//! this process and returns `Pending`. A waiter thread sleeps on up to 127
//! such words at once with `futex_waitv` (Linux 5.16+), plus a private
//! doorbell word that a new registration rings; when the call returns it
//! compares every word with the value it was registered with and wakes the
//! tasks whose word moved. Notifiers are unchanged: a sync producer in a
//! process that never uses async bumps the epoch and wakes the futex as
//! always, and the kernel wakes the waiter thread.
//!
//! So nothing is lost: the Dekker pair of F1 and the notifier's light
//! fence F2 guarantees that a publication the re-check missed bumps the
//! epoch past the registered value, and the waiter thread compares values
//! (in the kernel, atomically with queueing, and again after every return),
//! not wake-ups; a bump that happens before the word is even listed makes
//! `futex_waitv` return at once. The hot path is untouched: with nobody
//! waiting, a push or pop is the same code as without this feature.
//!
//! Every registration is also woken every 100 ms (the liveness slice of a
//! blocked sync endpoint), so that its endpoint notices a peer that died
//! without notifying. Such a wake re-checks the ring (and, throttled, the
//! peer's liveness lock) and renews the registration without re-arming:
//! the epoch has not moved, so the first arm still covers every
//! publication since.
//!
//! Without `futex_waitv` (ENOSYS on Linux < 5.16, or EPERM from a seccomp
//! filter), a waiter thread says so once on stderr and compares its words
//! every 1 ms instead: correct, with up to 1 ms more latency and ~1000
//! wake-ups a second while anything is awaited.

pub(crate) mod reactor;

use std::sync::Arc;
use std::task::{Context, Poll};

use crate::header::Event;
use crate::mapping::Ring;
use crate::sync::Ordering;
use reactor::Registration;

/// The state of one awaiting future (or stream) between polls: the epoch
/// it armed the event at, and its registration with a waiter thread.
/// Dropping it withdraws the registration.
#[derive(Default)]
pub(crate) struct AsyncWait {
    /// The epoch of this future's last arm (`Event::prepare`), unless its
    /// heavy fence could not be issued (then every wait re-arms).
    armed: Option<u32>,
    reg: Option<Registration>,
    /// Retries (single pauses, at most [`MAX_SPIN`]) of a fresh wait
    /// before it arms: the endpoint's `spin` setting.
    spin: u32,
}

/// The most an async wait busy-waits before it arms: the single-pause part
/// of a sync spin ([`crate::wait`]'s flat retries), never its yields, which
/// would hold up every other task of the runtime thread.
pub(crate) const MAX_SPIN: u32 = 256;

impl AsyncWait {
    pub(crate) fn new() -> AsyncWait {
        AsyncWait::default()
    }

    /// A wait that retries up to `spin` times (capped at [`MAX_SPIN`],
    /// single pauses) before it arms, as a sync wait spins before it sleeps:
    /// a consumer that catches up with a busy producer then finds the next
    /// item without a membarrier, a registration and a wake-up per catch-up.
    pub(crate) fn spinning(spin: u32) -> AsyncWait {
        AsyncWait {
            spin: spin.min(MAX_SPIN),
            ..AsyncWait::default()
        }
    }

    /// One poll of a wait on `event` (of `ring`) for `attempt` to give a
    /// result. `attempt` must re-read the shared state on every call: after
    /// the arm it is the protocol's re-check.
    pub(crate) fn poll<R>(
        &mut self,
        ring: &Arc<Ring>,
        event: &Event,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut() -> Option<R>,
    ) -> Poll<R> {
        if let Some(r) = attempt() {
            self.finish();
            return Poll::Ready(r);
        }
        self.poll_missed(ring, event, cx, &mut attempt)
    }

    /// The rest of [`AsyncWait::poll`], after a first attempt (the
    /// caller's) that found nothing: spin, arm, re-check, register.
    ///
    /// The per-item paths (SPSC and MPMC pops, pushes, `Stream`s) make the
    /// first attempt themselves, inline, and call this only when it missed
    /// (after [`AsyncWait::finish`] when it hit), so that an item stays in
    /// registers: returned through memory from an out-of-line closure, it
    /// was written with two narrow stores and read back with one wide load,
    /// which cannot be store-forwarded, so the load waited for every earlier
    /// store to reach the cache, the consumer index store included, whose
    /// line the producer is reading. Profiled (perf, `benches/aio.rs`
    /// `async Stream`): that one load was 40% of the consumer's time. The
    /// same trap as `wait::keep_trying`'s.
    #[inline(never)]
    pub(crate) fn poll_missed<R>(
        &mut self,
        ring: &Arc<Ring>,
        event: &Event,
        cx: &mut Context<'_>,
        attempt: &mut impl FnMut() -> Option<R>,
    ) -> Poll<R> {
        let (epoch, short) = match self.armed {
            // Woken by a liveness tick (or spuriously) and nothing moved:
            // the arm at `e` still stands. Every publication the re-check
            // after it missed bumps the epoch past `e` (that is what the
            // Dekker pair guarantees), so waiting for `e` to change again
            // needs no new arm and no new fence: no membarrier per tick.
            // (And no spin: nothing has moved.)
            Some(e) if event.epoch.load(Ordering::Acquire) == e => (e, false),
            _ => {
                // A fresh wait: a few retries first (more attempts before
                // the arm change nothing in the protocol, which starts at
                // the arm).
                for _ in 0..self.spin {
                    #[cfg(not(shmqueue_loom))]
                    std::hint::spin_loop();
                    #[cfg(shmqueue_loom)]
                    crate::sync::yield_now();
                    if let Some(r) = attempt() {
                        self.finish();
                        return Poll::Ready(r);
                    }
                }
                let ticket = event.prepare();
                // The re-check after F1. (Mutation for the loom suite: skip
                // it, and a publication between the first attempt and the
                // arm is never seen: loom-tests/README.md.)
                #[cfg(not(shmqueue_mutation = "async_no_recheck"))]
                if let Some(r) = attempt() {
                    event.cancel();
                    self.finish();
                    return Poll::Ready(r);
                }
                self.armed = (!ticket.short).then_some(ticket.epoch);
                (ticket.epoch, ticket.short)
            }
        };
        reactor::register(&mut self.reg, ring, &event.epoch, epoch, short, cx.waker());
        Poll::Pending
    }

    /// The wait is over: withdraw from the waiter thread (if it still lists
    /// us) and forget the arm, so the next wait starts afresh. Inline, with
    /// the withdrawal out of line: a wait that never slept has nothing to
    /// withdraw.
    #[inline(always)]
    pub(crate) fn finish(&mut self) {
        self.armed = None;
        if self.reg.is_some() {
            self.withdraw();
        }
    }

    #[cold]
    #[inline(never)]
    fn withdraw(&mut self) {
        self.reg = None;
    }
}

/// How many async waiter threads this process has started, and how many
/// waits are registered with them right now (for tests: a wait is
/// registered once its future has returned `Pending`, until it is woken
/// by its word moving or dropped).
#[cfg(not(shmqueue_loom))]
#[doc(hidden)]
pub fn census() -> (usize, usize) {
    reactor::census()
}

/// loom models only: run this execution's async waiter thread (call it in
/// a `loom::thread`) until [`model_stop_waiter`].
#[cfg(shmqueue_loom)]
#[doc(hidden)]
pub fn model_run_waiter() {
    reactor::model_run();
}

/// loom models only: make [`model_run_waiter`] return.
#[cfg(shmqueue_loom)]
#[doc(hidden)]
pub fn model_stop_waiter() {
    reactor::model_stop();
}

/// The consumer `Stream` of a queue kind, written once: SPSC and MPMC
/// differ only in their `Consumer::poll_pop`, which the expansion calls
/// (it resolves `Consumer` at the invoking module's `super`).
/// `pop_stream!("spsc", "the ring", "the ring is drained and the producer has gone")`.
macro_rules! pop_stream {
    ($kind:literal, $what:literal, $ends:literal) => {
        #[cfg(feature = "tokio")]
        pub use stream::PopStream;

        #[cfg(feature = "tokio")]
        mod stream {
            use std::pin::Pin;
            use std::task::{Context, Poll};

            use bytemuck::Pod;

            use crate::aio::AsyncWait;
            use crate::error::{Corruption, PopError};

            use super::Consumer;

            #[doc = concat!(
                "A [`Consumer`] as a [`futures_core::Stream`] of its items, from\n",
                "[`Consumer::into_stream`]. The stream ends (`None`) once ", $ends, ";\n",
                "a corrupt segment yields one `Err` and then ends.\n\n",
                "**Cancel safe**, as [`Consumer::pop_async`]: an item leaves the ", $what, "\n",
                "only in the `poll_next` that returns it, so a `next()` future\n",
                "dropped before it completed has taken nothing."
            )]
            pub struct PopStream<T> {
                rx: Consumer<T>,
                wait: AsyncWait,
                done: bool,
            }

            impl<T> std::fmt::Debug for PopStream<T> {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.debug_struct(concat!($kind, "::PopStream"))
                        .field("consumer", &self.rx)
                        .field("done", &self.done)
                        .finish()
                }
            }

            impl<T: Pod> Consumer<T> {
                /// This consumer as a [`futures_core::Stream`] (feature `tokio`).
                pub fn into_stream(self) -> PopStream<T> {
                    PopStream {
                        wait: AsyncWait::spinning(self.spin),
                        rx: self,
                        done: false,
                    }
                }
            }

            impl<T: Pod> PopStream<T> {
                /// The consumer, for its other methods.
                pub fn get_mut(&mut self) -> &mut Consumer<T> {
                    &mut self.rx
                }

                /// The consumer back.
                pub fn into_inner(self) -> Consumer<T> {
                    self.rx
                }
            }

            impl<T: Pod> futures_core::Stream for PopStream<T> {
                type Item = Result<T, Corruption>;

                #[inline]
                fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                    let this = self.get_mut();
                    if this.done {
                        return Poll::Ready(None);
                    }
                    match this.rx.poll_pop(&mut this.wait, cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Ok(v)) => Poll::Ready(Some(Ok(v))),
                        Poll::Ready(Err(PopError::Corrupt(c))) => {
                            this.done = true;
                            Poll::Ready(Some(Err(c)))
                        }
                        Poll::Ready(Err(_)) => {
                            this.done = true;
                            Poll::Ready(None)
                        }
                    }
                }
            }

            impl<T: Pod> futures_core::FusedStream for PopStream<T> {
                fn is_terminated(&self) -> bool {
                    self.done
                }
            }
        }
    };
}
pub(crate) use pop_stream;

/// The producer `Sink` of a queue kind, written once: SPSC and MPMC differ
/// only in their `Producer::poll_push` and `try_push`, which the expansion
/// calls (it resolves `Producer` at the invoking module's `super`).
/// `push_sink!("spsc", "Spsc", "ring", "the consumer")`.
macro_rules! push_sink {
    ($kind:literal, $queue:literal, $what:literal, $peer:literal) => {
        #[cfg(feature = "tokio")]
        pub use sink::PushSink;

        #[cfg(feature = "tokio")]
        mod sink {
            use std::pin::Pin;
            use std::task::{Context, Poll};

            use bytemuck::Pod;

            use crate::aio::AsyncWait;
            use crate::error::{PushError, TryPushError};

            use super::Producer;

            #[doc = concat!(
                "A [`Producer`] as a [`futures_sink::Sink`] of its items, from\n",
                "[`Producer::into_sink`] (feature `tokio`), for `SinkExt::send`,\n",
                "`send_all` and `feed`. Items enter the ", $what, " in the order they\n",
                "were sent, each whole or not at all.\n\n",
                "The sink holds at most **one** item of its own: `start_send` pushes\n",
                "the item at once if there is room, and otherwise keeps it until\n",
                "`poll_ready`, `poll_flush` or `poll_close` can push it (waiting\n",
                "asynchronously, woken by ", $peer, " freeing a slot, as\n",
                "[`Producer::push_async`]). So an item is in the ", $what, " once\n",
                "`poll_flush` has returned `Ready(Ok)` after it (what\n",
                "`SinkExt::send(..).await` waits for), and every error carries the\n",
                "item it could not push ([`PushError::Disconnected`] once ", $peer, "\n",
                "has gone, [`PushError::Corrupt`]; never `Timeout`).\n\n",
                "**Cancel safety**, per method:\n\n",
                "* `poll_ready`, `poll_flush`, `poll_close`: a `Pending` return\n",
                "  changes nothing. The kept item (if any) is still kept, to be\n",
                "  pushed by the next of these calls; so a `send(..)` or `flush()`\n",
                "  future dropped before it completed loses nothing while the sink\n",
                "  lives, and nothing is sent twice.\n",
                "* `start_send` never waits.\n",
                "* Dropping the sink drops the kept item, unpushed: it was never in\n",
                "  the ", $what, ", so nothing is half-published. Flush first to be sure\n",
                "  of it, or take it back with [`PushSink::into_inner`].\n",
                "* `poll_close` pushes the kept item and then detaches the producer\n",
                "  (its drop), so ", $peer, " drains and then sees `Disconnected`;\n",
                "  a `start_send` after it fails with `Disconnected(item)`.\n\n",
                "```\n",
                "# #[cfg(feature = \"tokio\")] {\n",
                "use futures::{SinkExt, StreamExt};\n",
                "# let name = format!(\"/doc-", $kind, "-sink-{}\", std::process::id());\n",
                "let q = shmqueue::", $queue, "::<u64>::create(&name, 16)?;\n",
                "let (tx, rx) = (q.producer()?, q.consumer()?);\n",
                "let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;\n",
                "let got: Vec<u64> = rt.block_on(async {\n",
                "    let mut sink = tx.into_sink();\n",
                "    let mut items = futures::stream::iter((0..100u64).map(Ok));\n",
                "    let send = async {\n",
                "        sink.send_all(&mut items).await?;\n",
                "        sink.close().await // detach: the stream ends after item 99\n",
                "    };\n",
                "    let recv = rx.into_stream().map(|r| r.unwrap()).collect::<Vec<_>>();\n",
                "    let (sent, got) = futures::join!(send, recv);\n",
                "    sent.map(|()| got)\n",
                "})?;\n",
                "assert_eq!(got, (0..100).collect::<Vec<_>>());\n",
                "# shmqueue::unlink(&name)?;\n",
                "# }\n",
                "# Ok::<(), Box<dyn std::error::Error>>(())\n",
                "```"
            )]
            pub struct PushSink<T> {
                /// `None` after `poll_close`.
                tx: Option<Producer<T>>,
                wait: AsyncWait,
                /// The item `start_send` accepted while the ring was full.
                kept: Option<T>,
            }

            // Nothing is pinned: every field is moved freely (`T: Pod` is
            // plain data), as `Producer` is.
            impl<T> Unpin for PushSink<T> {}

            impl<T> std::fmt::Debug for PushSink<T> {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.debug_struct(concat!($kind, "::PushSink"))
                        .field("producer", &self.tx)
                        .field("kept", &self.kept.is_some())
                        .finish()
                }
            }

            impl<T: Pod> Producer<T> {
                /// This producer as a [`futures_sink::Sink`] (feature `tokio`);
                /// see [`PushSink`] for what each method guarantees.
                pub fn into_sink(self) -> PushSink<T> {
                    PushSink {
                        wait: AsyncWait::spinning(self.spin),
                        tx: Some(self),
                        kept: None,
                    }
                }
            }

            impl<T: Pod> PushSink<T> {
                /// The producer back (`None` after `poll_close`), and the item
                /// `start_send` accepted that is not in the ring yet, if any.
                pub fn into_inner(mut self) -> (Option<Producer<T>>, Option<T>) {
                    (self.tx.take(), self.kept.take())
                }

                /// Push the kept item, if any: `Ready(Ok)` once there is none.
                fn poll_kept(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PushError<T>>> {
                    let Some(value) = self.kept else {
                        return Poll::Ready(Ok(()));
                    };
                    let Some(tx) = self.tx.as_mut() else {
                        unreachable!("kept is emptied before the producer goes");
                    };
                    let r = std::task::ready!(tx.poll_push(&mut self.wait, cx, value));
                    // Pushed, or handed back in the error: not kept either way.
                    self.kept = None;
                    Poll::Ready(r)
                }
            }

            impl<T: Pod> futures_sink::Sink<T> for PushSink<T> {
                type Error = PushError<T>;

                fn poll_ready(
                    self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                ) -> Poll<Result<(), PushError<T>>> {
                    self.get_mut().poll_kept(cx)
                }

                #[inline]
                fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), PushError<T>> {
                    let this = self.get_mut();
                    assert!(
                        this.kept.is_none(),
                        "start_send without a poll_ready that returned Ready(Ok)"
                    );
                    let Some(tx) = this.tx.as_mut() else {
                        return Err(PushError::Disconnected(item)); // closed
                    };
                    match tx.try_push(item) {
                        Ok(()) => Ok(()),
                        Err(TryPushError::Full(item)) => {
                            this.kept = Some(item);
                            Ok(())
                        }
                        Err(TryPushError::Disconnected(item)) => {
                            Err(PushError::Disconnected(item))
                        }
                        Err(TryPushError::Corrupt(item, c)) => Err(PushError::Corrupt(item, c)),
                    }
                }

                fn poll_flush(
                    self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                ) -> Poll<Result<(), PushError<T>>> {
                    // Every item but the kept one was published by its
                    // `start_send`.
                    self.get_mut().poll_kept(cx)
                }

                fn poll_close(
                    self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                ) -> Poll<Result<(), PushError<T>>> {
                    let this = self.get_mut();
                    let r = std::task::ready!(this.poll_kept(cx));
                    // Detach (the producer's drop notifies), so the consumer
                    // drains and then sees Disconnected.
                    this.tx = None;
                    this.wait.finish();
                    Poll::Ready(r)
                }
            }
        }
    };
}
pub(crate) use push_sink;
