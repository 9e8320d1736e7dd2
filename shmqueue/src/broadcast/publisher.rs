//! The publishing end of a broadcast ring.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::{load_head, Shape, STALL_PATIENCE};
use crate::error::{BatchError, Corruption, PushAllError, PushError, Role, TryPushError};
use crate::header::bcast_seq::{self, EVICTED};
use crate::header::mpmc_seq::MAX_POSITION;
use crate::header::{STATUS_ATTACHED, STATUS_DETACHED, STATUS_MASK};
use crate::mapping::Ring;
use crate::registry::Attachment;
use crate::sync::{fence, Ordering};
use crate::wait::{keep_trying, Deadline, Throttle};
use crate::Error;

/// The publisher of a [`Broadcast`](super::Broadcast) ring. One at a time;
/// `Send`.
pub struct Publisher<T> {
    pub(super) att: Attachment,
    pub(super) shape: Shape,
    pub(super) gate: Gate,
    spin: u32,
    _t: PhantomData<fn(T) -> T>,
}

/// The publisher's own state: its position and the cached gate.
#[derive(Debug)]
pub(super) struct Gate {
    /// The next position to write (the shared `head` is only ever written
    /// from here).
    pos: u64,
    /// Lossless: positions below this may be written without looking at
    /// the subscribers (the slowest cursor at the last scan, plus the
    /// capacity).
    limit: u64,
    /// `events.joins` at the last scan.
    joins: u32,
    /// The position the ring has been full at, since when (the liveness
    /// check's rate limit, and the start of a `max_lag`).
    stall: Option<(u64, Throttle, Instant)>,
}

impl<T> fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::Publisher")
            .field("name", &self.att.ring().name())
            .field("position", &self.gate.pos)
            .finish()
    }
}

/// A full lossless ring (the only reason a publish waits).
struct Full;

impl<T: Pod> Publisher<T> {
    pub(super) fn attach(ring: &Arc<Ring>, spin: u32) -> Result<Publisher<T>, Error> {
        let att = ring.attach(0, 0, Role::Producer)?;
        // A predecessor that died mid-publish left `head` at the position it
        // was writing; that slot still says `writing`, which subscribers
        // read as "not yet". Publishing resumes there and overwrites it.
        let pos = load_head(ring)?;
        Ok(Publisher {
            att,
            shape: Shape::new(ring),
            gate: Gate {
                pos,
                // Forces a scan before the first publish.
                limit: 0,
                joins: 0,
                stall: None,
            },
            spin,
            _t: PhantomData,
        })
    }

    /// Items the ring holds.
    pub fn capacity(&self) -> usize {
        self.shape.cap as usize
    }

    /// The position the next item gets (the number published so far).
    pub fn position(&self) -> u64 {
        self.gate.pos
    }

    /// Publish without waiting: [`TryPushError::Full`] when a lossless ring's
    /// slowest live subscriber is a whole ring behind. An overwrite ring is
    /// never full.
    #[inline]
    pub fn try_publish(&mut self, value: T) -> Result<(), TryPushError<T>> {
        match publish_one(&self.att, &self.shape, &mut self.gate, &value) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Full)) => Err(TryPushError::Full(value)),
            Err(c) => Err(TryPushError::Corrupt(value, c)),
        }
    }

    /// Publish, waiting while a lossless ring is full (spin, then futex).
    /// [`PushError::Disconnected`] never happens: with no subscriber the
    /// item stays in the ring for one that starts at [`Start::Oldest`](super::Start::Oldest).
    #[inline]
    pub fn publish(&mut self, value: T) -> Result<(), PushError<T>> {
        self.publish_until(value, None)
    }

    /// Like [`Publisher::publish`], giving up after `timeout`.
    pub fn publish_timeout(&mut self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        self.publish_until(value, Some(Deadline::after(timeout)))
    }

    #[inline]
    fn publish_until(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        let (att, shape, gate) = (&self.att, &self.shape, &mut self.gate);
        match publish_one(att, shape, gate, &value) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(Full)) => {}
            Err(c) => return Err(PushError::Corrupt(value, c)),
        }
        let r = keep_trying(&att.header().events.not_full, self.spin, deadline, || {
            publish_try(att, shape, gate, &value)
        });
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(c)) => Err(PushError::Corrupt(value, c)),
            Err(_) => Err(PushError::Timeout(value)),
        }
    }

    /// Publish as many of `items` as fit without waiting, in order; the
    /// number published (0 when a lossless ring is full). Subscribers are
    /// woken once, after the last.
    pub fn publish_slice(&mut self, items: &[T]) -> Result<usize, BatchError> {
        let mut n = 0;
        for v in items {
            match write_one(&self.att, &self.shape, &mut self.gate, v) {
                Ok(Ok(())) => n += 1,
                Ok(Err(Full)) => break,
                Err(c) => {
                    self.wake_subscribers(n);
                    return if n == 0 {
                        Err(BatchError::Corrupt(c))
                    } else {
                        Ok(n)
                    };
                }
            }
        }
        self.wake_subscribers(n);
        Ok(n)
    }

    /// Publish every item of `items`, in order, waiting while the ring is
    /// full.
    pub fn publish_all(&mut self, items: &[T]) -> Result<(), PushAllError> {
        self.publish_all_until(items, None)
    }

    /// Like [`Publisher::publish_all`], giving up after `timeout`; the error
    /// says how many were published.
    pub fn publish_all_timeout(
        &mut self,
        items: &[T],
        timeout: Duration,
    ) -> Result<(), PushAllError> {
        self.publish_all_until(items, Some(Deadline::after(timeout)))
    }

    fn publish_all_until(
        &mut self,
        items: &[T],
        deadline: Option<Deadline>,
    ) -> Result<(), PushAllError> {
        let mut done = 0;
        while done < items.len() {
            let n = self.publish_slice(&items[done..]).map_err(|e| match e {
                BatchError::Corrupt(corruption) => PushAllError::Corrupt {
                    pushed: done,
                    corruption,
                },
                _ => PushAllError::Disconnected { pushed: done },
            })?;
            done += n;
            if n == 0 {
                // Full: wait for the one item, then batch on.
                let r = match deadline {
                    Some(d) if d.passed() => return Err(PushAllError::Timeout { pushed: done }),
                    Some(_) | None => self.publish_until(items[done], deadline),
                };
                match r {
                    Ok(()) => done += 1,
                    Err(PushError::Timeout(_)) => {
                        return Err(PushAllError::Timeout { pushed: done })
                    }
                    Err(PushError::Corrupt(_, corruption)) => {
                        return Err(PushAllError::Corrupt {
                            pushed: done,
                            corruption,
                        })
                    }
                    Err(_) => return Err(PushAllError::Disconnected { pushed: done }),
                }
            }
        }
        Ok(())
    }

    #[inline]
    fn wake_subscribers(&self, n: usize) {
        if n > 0 {
            self.att.header().events.not_empty.notify();
        }
    }
}

/// One item, then wake sleeping subscribers.
#[inline(always)]
fn publish_one<T: Pod>(
    att: &Attachment,
    shape: &Shape,
    gate: &mut Gate,
    value: &T,
) -> Result<Result<(), Full>, Corruption> {
    let r = write_one(att, shape, gate, value)?;
    if r.is_ok() {
        att.header().events.not_empty.notify();
    }
    Ok(r)
}

/// One attempt of a waiting publish: `None` while the lossless ring is
/// full (each call re-scans as `publish_one` does, so a wait that keeps
/// re-trying also drops dead subscribers from the gate), else the outcome.
#[inline]
pub(super) fn publish_try<T: Pod>(
    att: &Attachment,
    shape: &Shape,
    gate: &mut Gate,
    value: &T,
) -> Option<Result<(), Corruption>> {
    match publish_one(att, shape, gate, value) {
        Ok(Ok(())) => Some(Ok(())),
        Ok(Err(Full)) => None,
        Err(c) => Some(Err(c)),
    }
}

/// Write one item into the ring if the gate allows, without waking anyone.
#[inline(always)]
fn write_one<T: Pod>(
    att: &Attachment,
    shape: &Shape,
    gate: &mut Gate,
    value: &T,
) -> Result<Result<(), Full>, Corruption> {
    let pos = gate.pos;
    let h = att.header();
    // The join check: this load follows the light fence of the previous
    // publish's notification (or the scan's fence), the publisher's half of
    // the Dekker pair with a joining subscriber (module docs).
    #[cfg(not(any(
        shmqueue_mutation = "bcast_no_gate",
        shmqueue_mutation = "bcast_no_join_check"
    )))]
    let gated = !shape.overwrite
        && (pos >= gate.limit || h.events.joins.load(Ordering::Acquire) != gate.joins);
    // Mutation for the loom suite: rescan only when the cached limit is
    // reached, not when a subscriber joined.
    #[cfg(shmqueue_mutation = "bcast_no_join_check")]
    let gated = !shape.overwrite && pos >= gate.limit;
    // Mutation for the loom suite: a lossless ring that never looks at its
    // subscribers.
    #[cfg(shmqueue_mutation = "bcast_no_gate")]
    let gated = false;
    if gated && !gate.regate(att, shape, pos) {
        return Ok(Err(Full));
    }
    if pos >= MAX_POSITION {
        return Err(Corruption {
            what: "broadcast position",
            found: pos,
            limit: MAX_POSITION,
        });
    }
    let i = shape.index(pos);
    let seq = att.seq(i);
    seq.store(bcast_seq::writing(pos), Ordering::Relaxed);
    // Orders the `writing` mark before the value's words: a subscriber whose
    // copy read any of them (and fences Acquire after) sees the mark on its
    // re-check.
    fence(Ordering::Release);
    // SAFETY: the kind is broadcast (validated); i < capacity
    // (Shape::index); T matches the geometry; we are the one publisher.
    unsafe { att.store_racy_value(i, *value) };
    // Release: the value happens-before a subscriber that Acquires
    // `published(pos)`.
    seq.store(bcast_seq::published(pos), Ordering::Release);
    gate.pos = pos + 1;
    h.head.value.store(pos + 1, Ordering::Release);
    Ok(Ok(()))
}

impl Gate {
    /// The slow path of a lossless publish: rescan the subscribers' cursors
    /// (because the cached limit was reached or someone joined), and if the
    /// ring is really full, find out whether the subscribers holding it back
    /// are dead, or lagging past `max_lag`. True if `pos` may be written now.
    #[cold]
    #[inline(never)]
    fn regate(&mut self, att: &Attachment, shape: &Shape, pos: u64) -> bool {
        let ring = att.ring();
        self.scan(ring, shape, pos);
        if pos < self.limit {
            self.stall = None;
            return true;
        }
        let (since, ask) = match &mut self.stall {
            Some((p, t, since)) if *p == pos => (*since, t.ready(STALL_PATIENCE)),
            _ => {
                let mut t = Throttle::default();
                t.ready(STALL_PATIENCE); // starts the clock
                let now = Instant::now();
                self.stall = Some((pos, t, now));
                // Under loom there is no clock: look at once.
                (now, cfg!(shmqueue_loom))
            }
        };
        if !ask {
            return false;
        }
        #[cfg(not(shmqueue_mutation = "bcast_evict_live"))]
        let evict = shape.max_lag.is_some_and(|lag| since.elapsed() >= lag);
        // Mutation for the loom suite: cut loose whoever holds the ring full,
        // alive or not.
        #[cfg(shmqueue_mutation = "bcast_evict_live")]
        let evict = {
            let _ = since;
            true
        };
        let mut changed = false;
        for i in shape.subscribers.clone() {
            let Some(cursor) = gating_cursor(ring, i, pos) else {
                continue;
            };
            if cursor.saturating_add(shape.cap) > pos {
                continue; // not what holds the ring full
            }
            // A dead holder: mark it detached, and it gates no more.
            if matches!(ring.reap(i), Ok(STATUS_DETACHED)) {
                changed = true;
            } else if evict
                && ring
                    .entry(i)
                    .mark
                    .compare_exchange(0, cursor | EVICTED, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            {
                att.header().events.holes.fetch_add(1, Ordering::Relaxed);
                changed = true;
            }
        }
        if changed {
            self.scan(ring, shape, pos);
        }
        pos < self.limit
    }

    /// Recompute `limit` from the gating subscribers' cursors.
    fn scan(&mut self, ring: &Ring, shape: &Shape, pos: u64) {
        // Pairs with the subscriber's heavy fence (module docs); the scan is
        // rare, so a real fence costs nothing measurable.
        fence(Ordering::SeqCst);
        self.joins = ring.header().events.joins.load(Ordering::Acquire);
        let min = shape
            .subscribers
            .clone()
            .filter_map(|i| gating_cursor(ring, i, pos))
            .min();
        // With nobody gating, still look again after a ring's worth: a
        // subscriber joining meanwhile must be seen before its items are
        // overwritten (see `Subscriber::attach`).
        self.limit = min.unwrap_or(pos).saturating_add(shape.cap);
    }
}

/// The cursor of subscriber entry `i` if it gates the publisher at `pos`
/// (attached, not evicted), clamped to `pos`: a cursor ahead of the
/// publisher can only be a hostile write, and must not let it overwrite
/// anything another subscriber needs (it cannot: the minimum decides).
fn gating_cursor(ring: &Ring, i: u32, pos: u64) -> Option<u64> {
    let e = ring.entry(i);
    if e.state.load(Ordering::Acquire) & STATUS_MASK != STATUS_ATTACHED {
        return None;
    }
    if e.mark.load(Ordering::Acquire) != 0 {
        return None;
    }
    Some(e.claim.load(Ordering::Acquire).min(pos))
}

impl<T> Drop for Publisher<T> {
    fn drop(&mut self) {
        if !self.att.owned_here() {
            return; // a forked child's copy (liveness.rs, "Fork")
        }
        self.att.detach();
        // Subscribers asleep on an empty ring re-check: disconnected now.
        self.att.header().events.not_empty.notify();
    }
}
