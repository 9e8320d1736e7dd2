//! The receiving end of a broadcast ring.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use super::{load_head, RecvError, Shape, Start, TryRecvError};
use crate::error::{Corruption, Role};
use crate::header::bcast_seq;
use crate::header::mpmc_seq::MAX_POSITION;
use crate::mapping::Ring;
use crate::registry::Attachment;
use crate::sync::{fence, Ordering};
use crate::wait::{heavy_fence, keep_trying, Deadline, Throttle};
use crate::Error;

/// A subscriber of a [`Broadcast`](super::Broadcast) ring: it receives
/// every item published after its start, in order. `Send`.
pub struct Subscriber<T> {
    pub(super) att: Attachment,
    pub(super) shape: Shape,
    pub(super) local: Local,
    spin: u32,
    _t: PhantomData<fn(T) -> T>,
}

#[derive(Debug, Default)]
pub(super) struct Local {
    /// The next position to read (published in our entry's `claim` word
    /// after every item).
    cursor: u64,
    /// Rate limit of asking the kernel whether the publisher lives.
    reap: Throttle,
    /// An error `recv_slice` met after it had items to return: reported by
    /// the next call.
    pub(super) pending: Option<TryRecvError>,
    /// loom models: dropped as if its process was killed.
    #[cfg(shmqueue_loom)]
    killed: bool,
}

impl<T> fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::Subscriber")
            .field("name", &self.att.ring().name())
            .field("position", &self.local.cursor)
            .finish()
    }
}

/// Join the gating set of a lossless ring: the subscriber's half of the
/// Dekker pair with the publisher's join check (module docs). Our cursor is
/// already stored (in our entry, at or below where we will start); after
/// this, every publish that did not see the join is one whose position we
/// read here, so what it overwrote is older than `oldest(head)`.
fn join(ring: &Ring) -> Result<u64, Corruption> {
    ring.header().events.joins.fetch_add(1, Ordering::Release);
    // If the barrier cannot be issued, the publisher may miss the join for
    // one more publish; the seqlock still turns that into a reported
    // eviction, never a torn item.
    let _ = heavy_fence();
    load_head(ring)
}

impl<T: Pod> Subscriber<T> {
    pub(super) fn attach(
        ring: &Arc<Ring>,
        start: Start,
        spin: u32,
    ) -> Result<Subscriber<T>, Error> {
        let shape = Shape::new(ring);
        let head = load_head(ring)?;
        // Stored before the entry is marked attached, so a scan that sees
        // us attached never sees a previous holder's cursor. At or below
        // where we will start: it may hold the publisher back briefly,
        // never let it overwrite what we will read.
        let tentative = match start {
            Start::Latest => head,
            Start::Oldest => head.saturating_sub(shape.cap),
            Start::At(n) => n.clamp(head.saturating_sub(shape.cap), head),
        };
        let att = ring.attach_any(
            shape.subscribers.clone(),
            Role::Consumer,
            Some(0),
            |_, e| {
                e.claim.store(tentative, Ordering::Relaxed);
                e.mark.store(0, Ordering::Relaxed);
                true
            },
        )?;
        let next = if shape.overwrite {
            load_head(ring)?
        } else {
            join(ring)?
        };
        let oldest = shape.oldest(next);
        let cursor = match start {
            Start::Latest => next,
            Start::Oldest => oldest,
            Start::At(n) if (oldest..=next).contains(&n) => n,
            Start::At(requested) => {
                return Err(Error::StartGone {
                    requested,
                    oldest,
                    next,
                })
            }
        };
        att.own().claim.store(cursor, Ordering::Release);
        if !shape.overwrite {
            // The publisher may be waiting on our tentative cursor.
            att.header().events.not_full.notify();
        }
        Ok(Subscriber {
            att,
            shape,
            local: Local {
                cursor,
                ..Local::default()
            },
            spin,
            _t: PhantomData,
        })
    }

    /// Items the ring holds.
    pub fn capacity(&self) -> usize {
        self.shape.cap as usize
    }

    /// The position of the next item this subscriber reads.
    pub fn position(&self) -> u64 {
        self.local.cursor
    }

    /// Items published that this subscriber has not read yet (a snapshot).
    pub fn lag(&self) -> u64 {
        load_head(self.att.ring())
            .unwrap_or(0)
            .saturating_sub(self.local.cursor)
    }

    /// Receive without waiting.
    #[inline]
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        if let Some(e) = self.local.pending.take() {
            return Err(e);
        }
        recv_impl(&self.att, &self.shape, &mut self.local)
    }

    /// Receive, waiting while nothing new is published (spin, then futex).
    #[inline]
    pub fn recv(&mut self) -> Result<T, RecvError> {
        self.recv_until(None)
    }

    /// Like [`Subscriber::recv`], giving up after `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvError> {
        self.recv_until(Some(Deadline::after(timeout)))
    }

    #[inline]
    fn recv_until(&mut self, deadline: Option<Deadline>) -> Result<T, RecvError> {
        if let Some(e) = self.local.pending.take() {
            return Err(RecvError::from_try(e).unwrap_or(RecvError::Timeout));
        }
        let attempt = |att: &Attachment, shape: &Shape, local: &mut Local| match recv_impl::<T>(
            att, shape, local,
        ) {
            Ok(v) => Some(Ok(v)),
            Err(e) => RecvError::from_try(e).map(Err),
        };
        let (att, shape, local) = (&self.att, &self.shape, &mut self.local);
        if let Some(r) = attempt(att, shape, local) {
            return r;
        }
        keep_trying(&att.header().events.not_empty, self.spin, deadline, || {
            attempt(att, shape, local)
        })
        .unwrap_or(Err(RecvError::Timeout))
    }

    /// Receive up to `out.len()` items without waiting; the number received
    /// (0 when nothing is new). An error met after some items is returned
    /// by the next call, so none is lost.
    pub fn recv_slice(&mut self, out: &mut [T]) -> Result<usize, TryRecvError> {
        if let Some(e) = self.local.pending.take() {
            return Err(e);
        }
        let mut n = 0;
        while n < out.len() {
            match recv_impl::<T>(&self.att, &self.shape, &mut self.local) {
                Ok(v) => {
                    out[n] = v;
                    n += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(e) if n == 0 => return Err(e),
                Err(e) => {
                    self.local.pending = Some(e);
                    break;
                }
            }
        }
        Ok(n)
    }
}

#[inline(always)]
pub(super) fn recv_impl<T: Pod>(
    att: &Attachment,
    shape: &Shape,
    local: &mut Local,
) -> Result<T, TryRecvError> {
    let me = att.own();
    if !shape.overwrite && me.mark.load(Ordering::Relaxed) != 0 {
        return Err(rejoin(att, shape, local));
    }
    let c = local.cursor;
    let i = shape.index(c);
    let seq = att.seq(i);
    let s1 = seq.load(Ordering::Acquire);
    if s1 == bcast_seq::published(c) {
        // SAFETY: the kind is broadcast (validated); i < capacity
        // (Shape::index); T matches the geometry. The copy may race an
        // overwrite: it is validated below before it is used.
        let v = unsafe { att.load_racy_value::<T>(i) };
        // Orders the copy before the re-check: if any word we copied came
        // from a later write, that write's `writing` mark is visible now.
        fence(Ordering::Acquire);
        #[cfg(not(shmqueue_mutation = "bcast_no_recheck"))]
        let intact = seq.load(Ordering::Relaxed) == s1;
        // Mutation for the loom suite: trust the copy without re-checking.
        #[cfg(shmqueue_mutation = "bcast_no_recheck")]
        let intact = true;
        if intact {
            local.cursor = c + 1;
            // Release: our copy happens-before a publisher that reads this
            // cursor and then overwrites the slot.
            me.claim.store(c + 1, Ordering::Release);
            if !shape.overwrite {
                att.header().events.not_full.notify();
            }
            return Ok(v);
        }
        return Err(lapped(att, shape, local));
    }
    if s1 < bcast_seq::published(c) {
        // Not published yet (the slot holds an older lap, is being written,
        // or was never written). Disconnected once the publisher has gone:
        // its DETACHED store (Release) came after its last publication, so
        // a re-read after seeing it shows everything it published.
        if att.peer_gone(&mut local.reap) {
            if seq.load(Ordering::Acquire) >= bcast_seq::published(c) {
                return Err(TryRecvError::Empty); // read it on the next call
            }
            return Err(TryRecvError::Disconnected);
        }
        return Err(TryRecvError::Empty);
    }
    Err(lapped(att, shape, local))
}

/// The slot of our cursor has moved on to a later lap: jump to the oldest
/// position still valid and say how many we missed.
#[cold]
#[inline(never)]
fn lapped(att: &Attachment, shape: &Shape, local: &mut Local) -> TryRecvError {
    if !shape.overwrite {
        // A lossless ring overwrote us: we were evicted (the mark may not
        // be visible yet), or the publisher missed our join.
        return rejoin(att, shape, local);
    }
    let c = local.cursor;
    let next = match load_head(att.ring()) {
        Ok(h) => h,
        Err(e) => return TryRecvError::Corrupt(e),
    };
    // The publisher stored `head = p` before it started writing `p`, but
    // our view of `head` may lag the slot's: we know at least `c` is gone.
    let new = shape.oldest(next).max(c + 1);
    if new > MAX_POSITION {
        return TryRecvError::Corrupt(Corruption {
            what: "broadcast position",
            found: new,
            limit: MAX_POSITION,
        });
    }
    local.cursor = new;
    att.own().claim.store(new, Ordering::Release);
    att.header().events.releases.fetch_add(1, Ordering::Relaxed);
    TryRecvError::Lagged { missed: new - c }
}

/// Lossless: we were evicted (or overwritten): rejoin the gating set at the
/// oldest position still safe, and report what we missed.
#[cold]
#[inline(never)]
fn rejoin(att: &Attachment, shape: &Shape, local: &mut Local) -> TryRecvError {
    let me = att.own();
    let c = local.cursor;
    me.claim.store(c, Ordering::Relaxed);
    me.mark.store(0, Ordering::Relaxed);
    let next = match join(att.ring()) {
        Ok(h) => h,
        Err(e) => return TryRecvError::Corrupt(e),
    };
    let new = shape.oldest(next).max(c);
    local.cursor = new;
    me.claim.store(new, Ordering::Release);
    att.header().events.releases.fetch_add(1, Ordering::Relaxed);
    att.header().events.not_full.notify();
    TryRecvError::Evicted { missed: new - c }
}

impl<T: Pod> Subscriber<T> {
    /// loom models only: drop this subscriber as the kernel would when its
    /// process is killed: the liveness token is released, nothing else (the
    /// entry stays attached, its cursor where it was, nobody is woken).
    #[cfg(shmqueue_loom)]
    #[doc(hidden)]
    pub fn kill(mut self) {
        self.local.killed = true;
    }
}

impl<T> Drop for Subscriber<T> {
    fn drop(&mut self) {
        if !self.att.owned_here() {
            return; // a forked child's copy (liveness.rs, "Fork")
        }
        #[cfg(shmqueue_loom)]
        if self.local.killed {
            self.att.kill();
            return;
        }
        self.att.detach();
        // A publisher waiting on us re-scans.
        self.att.header().events.not_full.notify();
    }
}
