//! Async forms of the SPSC endpoints (feature `tokio`; see `crate::aio`).

use std::future::poll_fn;
use std::task::{Context, Poll};

use bytemuck::Pod;

use crate::aio::AsyncWait;
use crate::error::{PopError, PushError, TryPopError};

use super::consumer::try_pop_impl;
use super::producer::{try_push_impl, PushFail};
use super::{Consumer, Producer};

impl<T: Pod> Consumer<T> {
    /// Pop, waiting asynchronously while the ring is empty: the task is
    /// woken by the producer's publish (sync or async, in any process),
    /// through this process's waiter thread; nothing polls.
    /// [`PopError::Disconnected`] once the ring is drained and the producer
    /// has dropped its endpoint or died (noticed within ~150 ms). Never
    /// [`PopError::Timeout`]: time out with the executor's timer
    /// (`tokio::time::timeout`).
    ///
    /// **Cancel safe.** An item leaves the ring only in the poll that
    /// returns it, so a future dropped before it completed (a `select!`
    /// that took another branch, a timeout) has taken nothing: the next pop
    /// gets the item.
    pub async fn pop_async(&mut self) -> Result<T, PopError> {
        let mut wait = AsyncWait::spinning(self.spin);
        poll_fn(|cx| self.poll_pop(&mut wait, cx)).await
    }

    // Always inlined, with the first attempt made here and the waiting out
    // of line (`AsyncWait::poll_missed`, which says why).
    #[inline(always)]
    pub(super) fn poll_pop(
        &mut self,
        wait: &mut AsyncWait,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, PopError>> {
        let att = &self.att;
        let local = &mut self.local;
        match try_pop_impl(att, local) {
            Ok(v) => {
                wait.finish();
                return Poll::Ready(Ok(v));
            }
            Err(TryPopError::Empty) => {}
            Err(e) => {
                wait.finish();
                return Poll::Ready(Err(pop_fail(e)));
            }
        }
        let event = &att.header().events.not_empty;
        wait.poll_missed(
            att.ring(),
            event,
            cx,
            &mut || match try_pop_impl(att, local) {
                Ok(v) => Some(Ok(v)),
                Err(TryPopError::Empty) => None,
                Err(e) => Some(Err(pop_fail(e))),
            },
        )
    }
}

/// A failed `try_pop` (not `Empty`) as the async pop's error.
fn pop_fail(e: TryPopError) -> PopError {
    match e {
        TryPopError::Corrupt(c) => PopError::Corrupt(c),
        TryPopError::Empty | TryPopError::Disconnected => PopError::Disconnected,
    }
}

impl<T: Pod> Producer<T> {
    /// Push, waiting asynchronously while the ring is full: the task is
    /// woken when the consumer frees a slot. Fails only if the consumer
    /// goes away (including its process dying) or the segment is corrupt,
    /// with the value in the error. Never [`PushError::Timeout`]: time out
    /// with the executor's timer.
    ///
    /// **Cancel safe.** The value is written and published in the one poll
    /// that returns `Ready(Ok(()))`; a future dropped before it completed
    /// has written nothing, and the caller still has the value (`T` is
    /// `Pod`, so `Copy`). A push is never half-published: either the
    /// future completed and the item is in the ring, or it is not.
    pub async fn push_async(&mut self, value: T) -> Result<(), PushError<T>> {
        let mut wait = AsyncWait::spinning(self.spin);
        poll_fn(|cx| self.poll_push(&mut wait, cx, value)).await
    }

    // Always inlined, with the first attempt made here and the waiting out
    // of line (`AsyncWait::poll_missed`, which says why).
    #[inline(always)]
    pub(super) fn poll_push(
        &mut self,
        wait: &mut AsyncWait,
        cx: &mut Context<'_>,
        value: T,
    ) -> Poll<Result<(), PushError<T>>> {
        let att = &self.att;
        let local = &mut self.local;
        match try_push_impl(att, local, &value) {
            Ok(()) => {
                wait.finish();
                return Poll::Ready(Ok(()));
            }
            Err(PushFail::Full) => {}
            Err(e) => {
                wait.finish();
                return Poll::Ready(Err(push_fail(e, value)));
            }
        }
        let event = &att.header().events.not_full;
        wait.poll_missed(
            att.ring(),
            event,
            cx,
            &mut || match try_push_impl(att, local, &value) {
                Ok(()) => Some(Ok(())),
                Err(PushFail::Full) => None,
                Err(e) => Some(Err(push_fail(e, value))),
            },
        )
    }
}

/// A failed push (not `Full`) as the async push's error, with the value.
fn push_fail<T>(e: PushFail, value: T) -> PushError<T> {
    match e {
        PushFail::Corrupt(c) => PushError::Corrupt(value, c),
        PushFail::Full | PushFail::Disconnected => PushError::Disconnected(value),
    }
}

crate::aio::pop_stream!(
    "spsc",
    "ring",
    "the ring is drained and the producer has gone"
);

crate::aio::push_sink!("spsc", "Spsc", "ring", "the consumer");
