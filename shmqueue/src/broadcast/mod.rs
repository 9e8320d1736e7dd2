//! Broadcast: one publisher, many subscriber processes, and every
//! subscriber sees every item, in publish order.
//!
//! The slots are the MPMC layout (a sequence word, then the value, in one
//! line), used as a seqlock per slot (`header::bcast_seq`): the publisher of
//! position `p` marks the slot `writing(p)`, copies the value in with atomic
//! word stores and marks it `published(p)`; a subscriber at `p` copies the
//! value out with atomic word loads and keeps it only if the sequence read
//! `published(p)` both before and after the copy. A subscriber therefore
//! learns that an item is there from the item's own line: a hand-off moves
//! one cache line, and a torn item is never returned as valid, whatever the
//! publisher does meanwhile.
//!
//! Each subscriber holds a registry entry (entry 0 is the publisher's) with
//! a kernel-released liveness token, and stores its cursor (the next
//! position it reads) in the entry's `claim` word after every item.
//!
//! * **Lossless** (the default): the publisher never overwrites an item a
//!   live, registered subscriber has not read. It caches `limit`, the
//!   slowest cursor plus the capacity, and rescans the registry only when
//!   its position reaches it or a subscriber joined (`events.joins`). A
//!   full ring waits (spin, then futex); a dead subscriber (token free) is
//!   dropped from the gating set once the ring has been full for
//!   [`STALL_PATIENCE`]; a live one only if the creator set
//!   [`Builder::max_lag`] and it kept the ring full for that long (it is
//!   told on its next call, [`TryRecvError::Evicted`], and has rejoined).
//! * **Overwrite**: the publisher never waits; a lapped subscriber gets
//!   [`TryRecvError::Lagged`] with the exact number it missed and goes on
//!   from the oldest item still valid.
//!
//! Joining the gating set is a Dekker pair with the publisher (DESIGN.md,
//! "Broadcast"): the subscriber stores its cursor, bumps `joins`, issues the
//! heavy fence of the waiting protocol and reads the publisher's position;
//! the publisher reads `joins` before every publish, after the light fence
//! of its previous notification. Either the publisher sees the join before
//! it next overwrites anything, or the subscriber sees a position from
//! which it can start safely.
//!
//! Byte messages of any size go through [`messages`]: chunks of a typed
//! ring, reassembled and checked by each subscriber.
//!
//! ```
//! use shmqueue::broadcast::{Broadcast, Start};
//! let name = format!("/doc-bcast-{}", std::process::id());
//! let q = Broadcast::<u64>::builder().capacity(4096).lossless().create(&name)?;
//! let mut tx = q.publisher()?;                       // one at a time
//! let mut a = Broadcast::<u64>::open(&name)?.subscribe(Start::Latest)?;
//! let mut b = q.subscribe(Start::Latest)?;           // any number, any process
//! tx.publish(7)?;
//! tx.try_publish(8)?;
//! assert_eq!((a.recv()?, a.try_recv()?), (7, 8));
//! assert_eq!((b.recv()?, b.recv()?), (7, 8));
//! shmqueue::unlink(&name)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(any(feature = "tokio", shmqueue_loom))]
mod asyncio;
mod error;
pub mod messages;
mod publisher;
mod subscriber;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use crate::error::Corruption;
use crate::header::mpmc_seq::MAX_POSITION;
use crate::header::{
    Expected, Geometry, QueueKind, FLAG_OVERWRITE, FLAG_PADDED_SLOTS, STATUS_ATTACHED, STATUS_MASK,
};
use crate::mapping::Ring;
use crate::segment::SegmentOptions;
use crate::sync::Ordering;
use crate::wait::DEFAULT_SPIN;
use crate::Error;

#[cfg(feature = "tokio")]
pub use asyncio::RecvStream;
pub use error::{RecvError, TryRecvError};
pub use publisher::Publisher;
pub use subscriber::Subscriber;

/// Default limit of attached subscribers.
pub const DEFAULT_MAX_SUBSCRIBERS: u32 = 64;
/// Default capacity of [`Builder`].
pub const DEFAULT_CAPACITY: usize = 1024;
/// How long a lossless ring must stay full before the publisher asks the
/// kernel whether the subscribers holding it back are alive. With sleeps
/// of at most 100 ms, a dead subscriber stops gating within about 150 ms.
pub const STALL_PATIENCE: Duration = Duration::from_millis(20);

/// What the publisher does when the slowest subscriber is a whole ring
/// behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// It waits (backpressure): no live subscriber misses an item.
    Lossless,
    /// It overwrites: slow subscribers are lapped and told how many items
    /// they missed.
    Overwrite,
}

/// Where a new subscriber starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Only what is published after it joins.
    Latest,
    /// The oldest item still in the ring: of the last `capacity` items
    /// published, the `capacity - 1` that no publish in flight can be
    /// overwriting.
    Oldest,
    /// The item with this sequence number (positions count from 0, one per
    /// item published), if it is still in the ring or is the next one;
    /// otherwise [`Error::StartGone`] says what is.
    At(u64),
}

/// A handle to a broadcast ring in a POSIX shared-memory segment.
///
/// Any number of processes may subscribe (up to the limit set at creation,
/// 64 by default); one publisher at a time. See the [module docs](self).
pub struct Broadcast<T> {
    ring: Arc<Ring>,
    spin: u32,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Broadcast<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broadcast")
            .field("name", &self.ring.name())
            .field("capacity", &self.ring.geom().capacity)
            .field("elem_size", &self.ring.geom().elem_size)
            .field("policy", &policy_of(self.ring.geom()))
            .finish()
    }
}

/// Options for creating or opening a [`Broadcast`] ring.
///
/// ```
/// use std::time::Duration;
/// use shmqueue::broadcast::{Broadcast, Policy};
/// let name = format!("/doc-bcast-builder-{}", std::process::id());
/// let q = Broadcast::<u64>::builder()
///     .capacity(1000)
///     .max_subscribers(8)
///     .lossless()
///     .max_lag(Duration::from_millis(200))
///     .create(&name)?;
/// assert_eq!((q.capacity(), q.policy()), (1000, Policy::Lossless));
/// let o = Broadcast::<u64>::builder().overwrite().create_memfd()?;
/// assert_eq!(o.policy(), Policy::Overwrite);
/// shmqueue::unlink(&name)?;
/// # Ok::<(), shmqueue::Error>(())
/// ```
pub struct Builder<T> {
    capacity: usize,
    schema: u64,
    spin: u32,
    subscribers: u32,
    padded: bool,
    policy: Policy,
    max_lag: Option<Duration>,
    seg: SegmentOptions,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("capacity", &self.capacity)
            .field("schema", &self.schema)
            .field("spin", &self.spin)
            .field("subscribers", &self.subscribers)
            .field("padded", &self.padded)
            .field("policy", &self.policy)
            .field("max_lag", &self.max_lag)
            .field("segment", &self.seg)
            .finish()
    }
}

impl<T: Pod> Default for Builder<T> {
    fn default() -> Self {
        Builder {
            capacity: DEFAULT_CAPACITY,
            schema: 0,
            spin: DEFAULT_SPIN,
            subscribers: DEFAULT_MAX_SUBSCRIBERS,
            padded: false,
            policy: Policy::Lossless,
            max_lag: None,
            seg: SegmentOptions::default(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Builder<T> {
    crate::options::shared_builder_options!();

    crate::options::memfd_builder_entry_points!(
        Broadcast<T>,
        tx = "let mut tx = q.publisher()?;",
        rx = "let mut rx = peer.subscribe(shmqueue::broadcast::Start::Latest)?;",
        roundtrip = "tx.publish(1)?;\nassert_eq!(rx.recv()?, 1);",
        expected = |b: &Self| b.expected(),
        wrap = |b: &Self, ring: Ring| b.wrap(ring),
    );

    /// Items the ring holds (create only; default 1024). Powers of two map
    /// positions to slots with a mask instead of a division.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Most subscribers attached at once (create only; default 64, at most
    /// 1024). One more is [`Error::RegistryFull`].
    pub fn max_subscribers(mut self, n: u32) -> Self {
        self.subscribers = n;
        self
    }

    /// Give every slot whole 128-byte lines (create only; default false),
    /// as [`crate::mpmc::Builder::padded_slots`].
    pub fn padded_slots(mut self, yes: bool) -> Self {
        self.padded = yes;
        self
    }

    /// The publisher waits for the slowest live subscriber (create only;
    /// the default).
    pub fn lossless(mut self) -> Self {
        self.policy = Policy::Lossless;
        self
    }

    /// The publisher never waits and overwrites what slow subscribers have
    /// not read (create only).
    pub fn overwrite(mut self) -> Self {
        self.policy = Policy::Overwrite;
        self
    }

    /// Lossless rings (create only; default: none): a live subscriber that
    /// keeps the ring full for longer than `lag` is evicted: the publisher
    /// stops waiting for it, and its next call returns
    /// [`TryRecvError::Evicted`] with the number of items it missed, after
    /// which it reads on from the oldest item still in the ring. Without
    /// it, a stopped subscriber holds the publisher for as long as it
    /// lives. Ignored by overwrite rings. At most about 584 years.
    pub fn max_lag(mut self, lag: Duration) -> Self {
        self.max_lag = Some(lag);
        self
    }

    fn expected(&self) -> Expected {
        Expected {
            kind: QueueKind::Broadcast,
            elem_size: core::mem::size_of::<T>(),
            elem_align: core::mem::align_of::<T>(),
            entries: None,
            schema: self.schema,
        }
    }

    fn geometry(&self) -> Result<Geometry, Error> {
        let mut flags = if self.padded { FLAG_PADDED_SLOTS } else { 0 };
        if self.policy == Policy::Overwrite {
            flags |= FLAG_OVERWRITE;
        }
        let mut g = Geometry::compute(
            QueueKind::Broadcast,
            core::mem::size_of::<T>(),
            core::mem::align_of::<T>(),
            self.capacity,
            1,
            self.subscribers,
            self.schema,
            flags,
        )?;
        if self.policy == Policy::Lossless {
            if let Some(lag) = self.max_lag {
                g.max_lag_ns = u64::try_from(lag.as_nanos())
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| Error::InvalidArgument {
                        detail: format!(
                            "max_lag must be between 1 ns and {} ns (got {lag:?})",
                            u64::MAX
                        ),
                    })?;
            }
        }
        Ok(g)
    }

    fn wrap(&self, ring: Ring) -> Broadcast<T> {
        Broadcast {
            ring: Arc::new(ring),
            spin: self.spin,
            _t: PhantomData,
        }
    }

    /// Create a new segment named `name` ([`Error::AlreadyExists`] if taken).
    pub fn create(self, name: &str) -> Result<Broadcast<T>, Error> {
        let ring = Ring::create(name, self.geometry()?, &self.seg)?;
        Ok(self.wrap(ring))
    }

    /// Build the ring on the heap for loom model checking (only under
    /// `--cfg shmqueue_loom`).
    #[cfg(shmqueue_loom)]
    #[doc(hidden)]
    pub fn create_in_heap(self) -> Broadcast<T> {
        let ring = Ring::create_in_heap(self.geometry().expect("loom model geometry"));
        self.wrap(ring)
    }

    /// Open an existing segment named `name`, validating it against `T`,
    /// the schema tag and the broadcast kind. The policy, capacity and
    /// subscriber limit are the creator's.
    pub fn open(self, name: &str) -> Result<Broadcast<T>, Error> {
        let ring = Ring::open(name, &self.expected(), &self.seg)?;
        Ok(self.wrap(ring))
    }
}

/// A snapshot of a broadcast ring, from [`Broadcast::stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Items the ring holds.
    pub capacity: usize,
    /// Lossless or overwrite.
    pub policy: Policy,
    /// The eviction lag of a lossless ring, if set.
    pub max_lag: Option<Duration>,
    /// The next position the publisher writes (items published so far).
    pub published: u64,
    /// The publisher's pid and liveness, if one is attached.
    pub publisher: Option<(u32, bool)>,
    /// Every subscriber marked attached.
    pub subscribers: Vec<SubscriberStat>,
    /// Subscribers evicted for lagging past `max_lag`.
    pub evictions: u64,
    /// Times a subscriber found itself lapped (overwrite) or evicted.
    pub laps: u64,
}

/// One attached subscriber in [`Stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberStat {
    /// Its registry entry.
    pub entry: u32,
    /// The pid it recorded when attaching.
    pub pid: u32,
    /// Whether its kernel liveness token is held (false: died, not yet reaped).
    pub alive: bool,
    /// The next position it reads.
    pub cursor: u64,
    /// Items published that it has not read (`published - cursor`).
    pub lag: u64,
    /// Evicted by the publisher, and not yet told.
    pub evicted: bool,
}

impl<T: Pod> Broadcast<T> {
    /// Create a lossless ring of `capacity` items with default options.
    pub fn create(name: &str, capacity: usize) -> Result<Self, Error> {
        Self::builder().capacity(capacity).create(name)
    }

    /// Open an existing ring with default options.
    pub fn open(name: &str) -> Result<Self, Error> {
        Self::builder().open(name)
    }

    /// Options for [`Builder::create`] and [`Builder::open`].
    pub fn builder() -> Builder<T> {
        Builder::default()
    }

    crate::options::memfd_queue_methods!(Broadcast<T>);

    /// Attach the publisher. Fails with [`Error::RoleTaken`] while a live
    /// publisher (in any process) holds the role; a dead one's role is
    /// taken over, and publishing resumes at its position.
    pub fn publisher(&self) -> Result<Publisher<T>, Error> {
        Publisher::attach(&self.ring, self.spin)
    }

    /// Attach a subscriber that starts at `start`. Fails with
    /// [`Error::RegistryFull`] when the subscriber limit is reached by live
    /// subscribers, and with [`Error::StartGone`] for a [`Start::At`]
    /// outside the ring.
    pub fn subscribe(&self, start: Start) -> Result<Subscriber<T>, Error> {
        Subscriber::attach(&self.ring, start, self.spin)
    }

    /// Items the ring holds.
    pub fn capacity(&self) -> usize {
        self.ring.geom().capacity
    }

    /// Lossless or overwrite, as the creator chose.
    pub fn policy(&self) -> Policy {
        policy_of(self.ring.geom())
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.ring.name()
    }

    /// The publisher, every subscriber with its liveness, cursor and lag,
    /// and the eviction and lap counts.
    ///
    /// ```
    /// use shmqueue::broadcast::{Broadcast, Start};
    /// let q = Broadcast::<u64>::builder().capacity(8).create_memfd()?;
    /// let mut tx = q.publisher()?;
    /// let rx = q.subscribe(Start::Latest)?;
    /// tx.publish(1)?;
    /// let s = q.stats();
    /// assert_eq!((s.published, s.subscribers.len(), s.subscribers[0].lag), (1, 1, 1));
    /// # drop(rx);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        stats(&self.ring)
    }
}

pub(crate) fn policy_of(g: &Geometry) -> Policy {
    if g.flags & FLAG_OVERWRITE != 0 {
        Policy::Overwrite
    } else {
        Policy::Lossless
    }
}

pub(crate) fn stats(ring: &Ring) -> Stats {
    let g = ring.geom();
    let h = ring.header();
    let published = h.head.value.load(Ordering::Acquire);
    let attached = |i: u32| {
        let e = ring.entry(i);
        (e.state.load(Ordering::Acquire) & STATUS_MASK == STATUS_ATTACHED).then_some(e)
    };
    let publisher = attached(0).map(|e| {
        (
            e.pid.load(Ordering::Relaxed),
            ring.token_held(0).unwrap_or(true),
        )
    });
    let subscribers = (1..g.endpoints)
        .filter_map(|i| {
            let e = attached(i)?;
            let cursor = e.claim.load(Ordering::Acquire);
            Some(SubscriberStat {
                entry: i,
                pid: e.pid.load(Ordering::Relaxed),
                alive: ring.token_held(i).unwrap_or(true),
                cursor,
                lag: published.saturating_sub(cursor),
                evicted: e.mark.load(Ordering::Relaxed) != 0,
            })
        })
        .collect();
    let ev = &h.events;
    Stats {
        capacity: g.capacity,
        policy: policy_of(g),
        max_lag: (g.max_lag_ns != 0).then(|| Duration::from_nanos(g.max_lag_ns)),
        published,
        publisher,
        subscribers,
        evictions: ev.holes.load(Ordering::Relaxed),
        laps: ev.releases.load(Ordering::Relaxed),
    }
}

/// The parts of the geometry every operation needs, copied locally.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    cap: u64,
    /// `cap - 1` when the capacity is a power of two.
    mask: Option<u64>,
    subscribers: std::ops::Range<u32>,
    overwrite: bool,
    max_lag: Option<Duration>,
}

impl Shape {
    fn new(ring: &Ring) -> Shape {
        let g = ring.geom();
        let cap = g.capacity as u64;
        Shape {
            cap,
            mask: cap.is_power_of_two().then(|| cap - 1),
            subscribers: 1..g.endpoints,
            overwrite: g.flags & FLAG_OVERWRITE != 0,
            max_lag: (g.max_lag_ns != 0).then(|| Duration::from_nanos(g.max_lag_ns)),
        }
    }

    #[inline]
    fn index(&self, pos: u64) -> usize {
        match self.mask {
            Some(m) => (pos & m) as usize,
            None => (pos % self.cap) as usize,
        }
    }

    /// The oldest position a subscriber may start at when the publisher's
    /// position is `next`: the publish in flight (of `next`) may be
    /// overwriting `next - cap`.
    fn oldest(&self, next: u64) -> u64 {
        next.saturating_sub(self.cap - 1)
    }
}

/// The publisher's position, bounded: above [`MAX_POSITION`] it is corrupt.
fn load_head(ring: &Ring) -> Result<u64, Corruption> {
    let h = ring.header().head.value.load(Ordering::Acquire);
    if h > MAX_POSITION {
        return Err(Corruption {
            what: "broadcast position",
            found: h,
            limit: MAX_POSITION,
        });
    }
    Ok(h)
}
