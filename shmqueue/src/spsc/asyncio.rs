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
        let (att, local) = (&self.att, &mut self.local);
        if let Some(r) = pop_outcome(try_pop_impl(att, local)) {
            wait.finish();
            return Poll::Ready(r);
        }
        let event = &att.header().events.not_empty;
        wait.poll_missed(att.ring(), event, cx, &mut || {
            pop_outcome(try_pop_impl(att, local))
        })
    }
}

/// A `try_pop`'s outcome as the async pop's result; `None` while empty.
#[inline(always)]
fn pop_outcome<T>(r: Result<T, TryPopError>) -> Option<Result<T, PopError>> {
    match r {
        Ok(v) => Some(Ok(v)),
        Err(TryPopError::Empty) => None,
        Err(TryPopError::Corrupt(c)) => Some(Err(PopError::Corrupt(c))),
        Err(TryPopError::Disconnected) => Some(Err(PopError::Disconnected)),
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
        let (att, local) = (&self.att, &mut self.local);
        if let Some(r) = push_outcome(try_push_impl(att, local, &value), value) {
            wait.finish();
            return Poll::Ready(r);
        }
        let event = &att.header().events.not_full;
        wait.poll_missed(att.ring(), event, cx, &mut || {
            push_outcome(try_push_impl(att, local, &value), value)
        })
    }
}

/// A `try_push`'s outcome as the async push's result; `None` while full.
#[inline(always)]
fn push_outcome<T>(r: Result<(), PushFail>, value: T) -> Option<Result<(), PushError<T>>> {
    match r {
        Ok(()) => Some(Ok(())),
        Err(PushFail::Full) => None,
        Err(PushFail::Corrupt(c)) => Some(Err(PushError::Corrupt(value, c))),
        Err(PushFail::Disconnected) => Some(Err(PushError::Disconnected(value))),
    }
}

crate::aio::pop_stream!(
    "spsc",
    "ring",
    "the ring is drained and the producer has gone"
);

crate::aio::push_sink!("spsc", "Spsc", "ring", "the consumer");
