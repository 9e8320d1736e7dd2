//! Async forms of the MPMC endpoints (feature `tokio`; see `crate::aio`).

use std::future::poll_fn;
use std::task::{Context, Poll};

use bytemuck::Pod;

use crate::aio::AsyncWait;
use crate::error::{PopError, PushError, TryPopError};

#[cfg(shmqueue_loom)]
use super::PushOutcome::Died;
use super::PushOutcome::{self, Corrupt, Disconnected, Full, Pushed};
use super::{pop_impl, push_impl, Consumer, Producer};

impl<T: Pod> Consumer<T> {
    /// Pop, waiting asynchronously while the queue is empty: the task is
    /// woken by a producer's publish (sync or async, in any process),
    /// through this process's waiter thread; nothing polls.
    /// [`PopError::Disconnected`] once the queue is drained and every
    /// producer has gone. Never
    /// [`PopError::Timeout`]: time out with the executor's timer
    /// (`tokio::time::timeout`).
    ///
    /// **Cancel safe.** An item leaves the queue only in the poll that
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
        let (att, shape, local) = (&self.att, &self.shape, &mut self.local);
        match pop_impl(att, shape, local) {
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
            &mut || match pop_impl(att, shape, local) {
                Ok(v) => Some(Ok(v)),
                Err(TryPopError::Empty) => None,
                Err(e) => Some(Err(pop_fail(e))),
            },
        )
    }
}

/// A failed pop (not `Empty`) as the async pop's error.
fn pop_fail(e: TryPopError) -> PopError {
    match e {
        TryPopError::Corrupt(c) => PopError::Corrupt(c),
        TryPopError::Empty | TryPopError::Disconnected => PopError::Disconnected,
    }
}

impl<T: Pod> Producer<T> {
    /// Push, waiting asynchronously while the queue is full: the task is
    /// woken when a consumer frees a slot. Fails only if every consumer
    /// goes away (including their processes dying) or the segment is corrupt,
    /// with the value in the error. Never [`PushError::Timeout`]: time out
    /// with the executor's timer.
    ///
    /// **Cancel safe.** The value is written and published in the one poll
    /// that returns `Ready(Ok(()))`; a future dropped before it completed
    /// has written nothing, and the caller still has the value (`T` is
    /// `Pod`, so `Copy`). A push is never half-published: either the
    /// future completed and the item is in the queue, or it is not.
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
        let (att, shape, local) = (&self.att, &self.shape, &mut self.local);
        if let Some(r) = push_outcome(push_impl(att, shape, local, &value), value) {
            wait.finish();
            return Poll::Ready(r);
        }
        let event = &att.header().events.not_full;
        wait.poll_missed(att.ring(), event, cx, &mut || {
            push_outcome(push_impl(att, shape, local, &value), value)
        })
    }
}

/// A push's outcome as the async push's result; `None` while full.
#[inline(always)]
fn push_outcome<T>(o: PushOutcome, value: T) -> Option<Result<(), PushError<T>>> {
    match o {
        #[cfg(shmqueue_loom)]
        Died => Some(Err(PushError::Disconnected(value))),
        Pushed => Some(Ok(())),
        Full => None,
        Disconnected => Some(Err(PushError::Disconnected(value))),
        Corrupt(c) => Some(Err(PushError::Corrupt(value, c))),
    }
}

crate::aio::pop_stream!(
    "mpmc",
    "queue",
    "the queue is drained and every producer has gone"
);

crate::aio::push_sink!("mpmc", "Mpmc", "queue", "every consumer");
