//! The lossless many-producer/many-consumer work queue.
//!
//! Dmitry Vyukov's bounded MPMC queue over monotonic 64-bit positions: slot
//! `i` carries a sequence word in its own cache line, next to the value.
//! Sequences count half-steps (`header::mpmc_seq`): `free(p) = 2p`,
//! `published(p) = 2p + 1`, which keeps capacity 1 sound. A producer at
//! position `p` (slot `p % capacity`) may write when the sequence is
//! `free(p)`; it wins the position with a CAS on `head`, writes the value,
//! and publishes with `seq = published(p)` (Release). A consumer at position
//! `t` may read when the sequence is `published(t)`; it wins the position
//! with a CAS on `tail`, reads, and releases the slot for the next lap with
//! `seq = free(t + capacity)` (Release). Each item goes to exactly one consumer and
//! nothing is overwritten: a producer that finds the previous lap's item still
//! there reports Full and waits.
//!
//! ## Killed peers
//!
//! A producer killed between winning a position and publishing it leaves a
//! *hole* that would stall every consumer behind it; a consumer killed between
//! winning a position and releasing its slot would stall producers one lap
//! later. So before each CAS an endpoint writes the position it is about to
//! claim into its own registry entry (`claim`), and clears it after
//! publishing/releasing. A survivor that sees a slot stalled for longer than
//! [`STALL_PATIENCE`] looks for the entries claiming that position and asks
//! the kernel (OFD lock, see `liveness.rs`) whether their holders live:
//!
//! * if **any** claimant lives, it waits: a live but slow or SIGSTOPped
//!   producer is never skipped (a claimant that merely lost the CAS race may
//!   show the same position for a moment, and the winner always does);
//! * if **all** claimants are dead, it resolves the slot with one CAS on the
//!   sequence word, so exactly one survivor does it: a hole is marked
//!   `seq = published(t) | SKIP` (consumers take it and deliver nothing), a
//!   stalled release is completed with `seq = free(t + capacity)`.
//!
//! An entry whose last holder died with an unresolved claim is not reused
//! until the claim is resolved, so the evidence cannot be erased.

#[cfg(any(feature = "tokio", shmqueue_loom))]
mod asyncio;
#[cfg(feature = "tokio")]
pub use asyncio::{PopStream, PushSink};

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use crate::error::{Corruption, PopError, PushError, Role, TryPopError, TryPushError};
use crate::header::mpmc_seq::{self, SKIP};
use crate::header::{
    EndpointEntry, Expected, Geometry, QueueKind, CLAIM_ACTIVE, FLAG_PADDED_SLOTS,
};
use crate::mapping::Ring;
use crate::registry::{Attachment, REAP_INTERVAL};
use crate::segment::SegmentOptions;
use crate::sync::Ordering;
use crate::wait::{keep_trying, Deadline, Now, Throttle, DEFAULT_SPIN};
use crate::Error;
use mpmc_seq::MAX_POSITION;

/// Default limit of attached producers (and, separately, consumers).
pub const DEFAULT_MAX_ENDPOINTS: u32 = 64;
/// Default capacity of [`Builder`].
pub const DEFAULT_CAPACITY: usize = 1024;
/// How long a slot must stay stalled before its claimants' liveness is
/// checked. With sleeps of at most 100 ms, a dead peer's slot is recovered
/// within about 150 ms of a survivor needing it.
pub const STALL_PATIENCE: Duration = Duration::from_millis(20);

/// A handle to an MPMC work queue in a POSIX shared-memory segment.
///
/// Any number of processes may attach producers and consumers (up to the
/// limits set at creation, 64 each by default). Every item pushed is popped
/// by exactly one consumer.
///
/// ```
/// use shmqueue::Mpmc;
/// let name = format!("/doc-mpmc-{}", std::process::id());
/// let q = Mpmc::<u64>::create(&name, 4096)?;
/// let mut tx = q.producer()?;            // may be called again, here and elsewhere
/// let mut rx = Mpmc::<u64>::open(&name)?.consumer()?;
/// tx.try_push(1)?;
/// tx.push(2)?;
/// tx.push_timeout(3, std::time::Duration::from_millis(5))?;
/// assert_eq!(rx.try_pop()?, 1);
/// assert_eq!(rx.pop()?, 2);
/// assert_eq!(rx.pop_timeout(std::time::Duration::from_millis(5))?, 3);
/// shmqueue::unlink(&name)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Mpmc<T> {
    ring: Arc<Ring>,
    spin: u32,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Mpmc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mpmc")
            .field("name", &self.ring.name())
            .field("capacity", &self.ring.geom().capacity)
            .field("elem_size", &self.ring.geom().elem_size)
            .finish()
    }
}

/// Options for creating or opening an [`Mpmc`] queue.
///
/// ```
/// use shmqueue::Mpmc;
/// let name = format!("/doc-mpmc-builder-{}", std::process::id());
/// let q = Mpmc::<u64>::builder()
///     .capacity(1000)
///     .max_producers(8)
///     .max_consumers(4)
///     .padded_slots(true)
///     .create(&name)?;
/// assert_eq!(q.capacity(), 1000);
/// shmqueue::unlink(&name)?;
/// # Ok::<(), shmqueue::Error>(())
/// ```
pub struct Builder<T> {
    capacity: usize,
    schema: u64,
    spin: u32,
    producers: u32,
    consumers: u32,
    padded: bool,
    seg: SegmentOptions,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("capacity", &self.capacity)
            .field("schema", &self.schema)
            .field("spin", &self.spin)
            .field("producers", &self.producers)
            .field("consumers", &self.consumers)
            .field("padded", &self.padded)
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
            producers: DEFAULT_MAX_ENDPOINTS,
            consumers: DEFAULT_MAX_ENDPOINTS,
            padded: false,
            seg: SegmentOptions::default(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Builder<T> {
    crate::options::shared_builder_options!();

    crate::options::memfd_builder_entry_points!(
        Mpmc<T>,
        expected = |b: &Self| b.expected(None),
        wrap = |b: &Self, ring: Ring| b.wrap(ring),
    );

    /// Items the queue can hold (create only; default 1024). Powers of two
    /// map positions to slots with a mask instead of a division.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }
    /// Most producers attached at once (create only; default 64, at most 1024).
    pub fn max_producers(mut self, n: u32) -> Self {
        self.producers = n;
        self
    }
    /// Most consumers attached at once (create only; default 64, at most 1024).
    pub fn max_consumers(mut self, n: u32) -> Self {
        self.consumers = n;
        self
    }
    /// Give every slot whole 128-byte lines (create only; default false).
    /// Neighbouring slots then never share a line, which helps when many
    /// endpoints hand off adjacent positions at once; compact slots (a power
    /// of two up to 128 bytes, never straddling a line) move less memory.
    pub fn padded_slots(mut self, yes: bool) -> Self {
        self.padded = yes;
        self
    }

    fn expected(&self, entries: Option<(u32, u32)>) -> Expected {
        Expected {
            kind: QueueKind::Mpmc,
            elem_size: core::mem::size_of::<T>(),
            elem_align: core::mem::align_of::<T>(),
            entries,
            schema: self.schema,
        }
    }

    fn geometry(&self) -> Result<Geometry, Error> {
        let flags = if self.padded { FLAG_PADDED_SLOTS } else { 0 };
        Geometry::compute(
            QueueKind::Mpmc,
            core::mem::size_of::<T>(),
            core::mem::align_of::<T>(),
            self.capacity,
            self.producers,
            self.consumers,
            self.schema,
            flags,
        )
    }

    fn wrap(&self, ring: Ring) -> Mpmc<T> {
        Mpmc {
            ring: Arc::new(ring),
            spin: self.spin,
            _t: PhantomData,
        }
    }

    /// Create a new segment named `name` ([`Error::AlreadyExists`] if taken).
    pub fn create(self, name: &str) -> Result<Mpmc<T>, Error> {
        let ring = Ring::create(name, self.geometry()?, &self.seg)?;
        Ok(self.wrap(ring))
    }

    /// Build the queue on the heap for loom model checking (only under
    /// `--cfg shmqueue_loom`).
    #[cfg(shmqueue_loom)]
    #[doc(hidden)]
    pub fn create_in_heap(self) -> Mpmc<T> {
        let ring = Ring::create_in_heap(self.geometry().expect("loom model geometry"));
        self.wrap(ring)
    }

    /// Open an existing segment named `name`, validating it against `T`,
    /// the schema tag and the MPMC kind.
    pub fn open(self, name: &str) -> Result<Mpmc<T>, Error> {
        let ring = Ring::open(name, &self.expected(None), &self.seg)?;
        Ok(self.wrap(ring))
    }
}

/// A snapshot of a queue's state, from [`Mpmc::stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Items the queue can hold.
    pub capacity: usize,
    /// Items in the queue (including holes not yet skipped).
    pub len: usize,
    /// Producer entries marked attached (dead ones count until reaped).
    pub producers: u32,
    /// Consumer entries marked attached (dead ones count until reaped).
    pub consumers: u32,
    /// Holes left by dead producers that consumers skipped.
    pub holes_skipped: u64,
    /// Slots held by dead consumers that producers released.
    pub slots_released: u64,
    /// Every registry entry marked attached, with its liveness.
    pub endpoints: Vec<EndpointStat>,
}

/// One attached endpoint in [`Stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStat {
    /// Producer or consumer.
    pub role: Role,
    /// Its registry entry.
    pub entry: u32,
    /// The pid it recorded when attaching.
    pub pid: u32,
    /// Whether its kernel liveness token is held (false: died, not yet reaped).
    pub alive: bool,
}

impl<T: Pod> Mpmc<T> {
    /// Create a queue holding up to `capacity` items, with default options.
    pub fn create(name: &str, capacity: usize) -> Result<Self, Error> {
        Self::builder().capacity(capacity).create(name)
    }

    /// Open an existing queue with default options.
    pub fn open(name: &str) -> Result<Self, Error> {
        Self::builder().open(name)
    }

    /// Options for [`Builder::create`] and [`Builder::open`].
    pub fn builder() -> Builder<T> {
        Builder::default()
    }

    crate::options::memfd_queue_methods!(Mpmc<T>);

    /// Take a free registry entry of `role` (resolving a dead holder's
    /// claim on the way, see [`take_over`]) with its claim word reset.
    fn attach(&self, role: Role) -> Result<(Attachment, Shape), Error> {
        let shape = Shape::new(&self.ring);
        let range = match role {
            Role::Producer => shape.producers.clone(),
            Role::Consumer => shape.consumers.clone(),
        };
        let att = self.ring.attach_any(range, role, None, |i, e| {
            take_over(&self.ring, &shape, i, e, role)
        })?;
        att.own().claim.store(0, Ordering::Relaxed);
        Ok((att, shape))
    }

    /// Attach a producer. Fails with [`Error::RegistryFull`] when the
    /// queue's producer limit is reached by live producers.
    pub fn producer(&self) -> Result<Producer<T>, Error> {
        let (att, shape) = self.attach(Role::Producer)?;
        Ok(Producer {
            att,
            shape,
            local: Local::default(),
            spin: self.spin,
            _t: PhantomData,
        })
    }

    /// Attach a consumer. Fails with [`Error::RegistryFull`] when the
    /// queue's consumer limit is reached by live consumers.
    pub fn consumer(&self) -> Result<Consumer<T>, Error> {
        let (att, shape) = self.attach(Role::Consumer)?;
        Ok(Consumer {
            att,
            shape,
            local: Local::default(),
            spin: self.spin,
            _t: PhantomData,
        })
    }

    /// Items the queue can hold.
    pub fn capacity(&self) -> usize {
        self.ring.geom().capacity
    }

    /// Items in the queue right now (a snapshot).
    pub fn len(&self) -> usize {
        len(&self.ring)
    }

    /// Whether the queue is empty right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.ring.name()
    }

    /// Attached endpoints and their liveness, length, and recovery counts.
    pub fn stats(&self) -> Stats {
        let ev = &self.ring.header().events;
        let g = self.ring.geom();
        let endpoints: Vec<EndpointStat> = (0..g.endpoints)
            .filter_map(|i| {
                let e = self.ring.entry(i);
                let s = e.state.load(Ordering::Acquire);
                (s & crate::header::STATUS_MASK == crate::header::STATUS_ATTACHED).then(|| {
                    EndpointStat {
                        role: if i < g.producer_entries {
                            Role::Producer
                        } else {
                            Role::Consumer
                        },
                        entry: i,
                        pid: e.pid.load(Ordering::Relaxed),
                        alive: self.ring.token_held(i).unwrap_or(true),
                    }
                })
            })
            .collect();
        let count = |r| {
            endpoints
                .iter()
                .filter(|e: &&EndpointStat| e.role == r)
                .count() as u32
        };
        Stats {
            capacity: g.capacity,
            len: self.len(),
            producers: count(Role::Producer),
            consumers: count(Role::Consumer),
            holes_skipped: ev.holes.load(Ordering::Relaxed),
            slots_released: ev.releases.load(Ordering::Relaxed),
            endpoints,
        }
    }
}

/// The parts of the geometry every operation needs, copied locally.
#[derive(Clone, Debug)]
struct Shape {
    cap: u64,
    /// `cap - 1` when the capacity is a power of two.
    mask: Option<u64>,
    producers: std::ops::Range<u32>,
    consumers: std::ops::Range<u32>,
}

impl Shape {
    fn new(ring: &Ring) -> Shape {
        let g = ring.geom();
        let cap = g.capacity as u64;
        Shape {
            cap,
            mask: cap.is_power_of_two().then(|| cap - 1),
            producers: 0..g.producer_entries,
            consumers: g.producer_entries..g.endpoints,
        }
    }

    #[inline]
    fn index(&self, pos: u64) -> usize {
        match self.mask {
            Some(m) => (pos & m) as usize,
            None => (pos % self.cap) as usize,
        }
    }
}

/// May a new endpoint take over registry entry `index`? We hold its token,
/// which proves its previous holder is dead. If that holder died with an
/// unresolved claim, resolve it here exactly as a survivor of the other role
/// would (a hole becomes SKIP, a stalled release completes), so the entry
/// never stays blocked waiting for a peer that may not come. If another
/// claimant of the same position lives, it may be the real winner: refuse
/// the entry for now (that claimant updates or clears its claim at once).
fn take_over(ring: &Ring, shape: &Shape, index: u32, e: &EndpointEntry, role: Role) -> bool {
    let claim = e.claim.load(Ordering::Acquire);
    if claim & CLAIM_ACTIVE == 0 {
        return true;
    }
    let pos = claim & !CLAIM_ACTIVE;
    if pos > MAX_POSITION {
        // Not a claim this crate writes: nothing to resolve, and nothing to
        // compute from it.
        let _ = e
            .claim
            .compare_exchange(claim, 0, Ordering::AcqRel, Ordering::Relaxed);
        return true;
    }
    let h = ring.header();
    let ev = &h.events;
    let seq_word = ring_seq(ring, shape.index(pos));
    let seq = seq_word.load(Ordering::Acquire);
    let (range, unresolved, resolved, counter, event) = match role {
        // Won (head moved past it) but never published.
        Role::Producer => (
            shape.producers.clone(),
            seq == mpmc_seq::free(pos) && before(pos, h.head.value.load(Ordering::Acquire)),
            mpmc_seq::published(pos) | SKIP,
            &ev.holes,
            &ev.not_empty,
        ),
        // Taken (tail moved past it) but never released.
        Role::Consumer => (
            shape.consumers.clone(),
            seq & !SKIP == mpmc_seq::published(pos)
                && before(pos, h.tail.value.load(Ordering::Acquire)),
            mpmc_seq::free(pos + shape.cap),
            &ev.releases,
            &ev.not_full,
        ),
    };
    if unresolved {
        if live_claimant(ring, range, pos, Some(index)) == Some(true) {
            return false;
        }
        if seq_word
            .compare_exchange(seq, resolved, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            counter.fetch_add(1, Ordering::Relaxed);
            event.notify();
        }
    }
    let _ = e
        .claim
        .compare_exchange(claim, 0, Ordering::AcqRel, Ordering::Relaxed);
    true
}

fn ring_seq(ring: &Ring, i: usize) -> &crate::sync::AtomicU64 {
    ring.mpmc_seq(i)
}

/// `a < b` on positions that may wrap.
#[inline]
fn before(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) < 0
}

#[derive(Default)]
struct Local {
    /// Rate limit of the disconnect reaping.
    reap: Throttle,
    /// The stalled position being watched, and since when.
    stall: Option<(u64, Throttle)>,
    /// loom models: "die" right after the next won position.
    #[cfg(shmqueue_loom)]
    die_after_claim: bool,
    #[cfg(shmqueue_loom)]
    died: bool,
}

impl Local {
    /// True when `pos` has been seen stalled for at least [`STALL_PATIENCE`]
    /// (and then again every [`STALL_PATIENCE`]).
    fn stalled_long(&mut self, pos: u64, now: &mut Now) -> bool {
        match &mut self.stall {
            Some((p, t)) if *p == pos => t.ready_at(now, STALL_PATIENCE),
            _ => {
                let mut t = Throttle::default();
                t.ready_at(now, STALL_PATIENCE); // starts the clock
                self.stall = Some((pos, t));
                cfg!(shmqueue_loom)
            }
        }
    }
}

/// Have all endpoints of `role` gone (after at least one attached)?
///
/// Decided by the registry itself: every entry of the role is reaped (a
/// dead ATTACHED holder becomes DETACHED) and none may remain ATTACHED. The
/// attached counter is only a hint of when to look: it is updated apart from
/// the entries, so a process killed between the two can leave it off by one
/// (found by the kill-injection tests). When it reads 0 we scan every time,
/// so a real disconnect is reported consistently; otherwise at most every
/// [`REAP_INTERVAL`], which is how dead holders are found.
fn all_gone(
    att: &Attachment,
    shape: &Shape,
    role: Role,
    reap: &mut Throttle,
    now: &mut Now,
) -> bool {
    let ring = att.ring();
    let bit = match role {
        Role::Producer => 1,
        Role::Consumer => 2,
    };
    if att.header().events.ever.load(Ordering::Acquire) & bit == 0 {
        return false;
    }
    if ring.attached(role).load(Ordering::Acquire) != 0 && !reap.ready_at(now, REAP_INTERVAL) {
        return false;
    }
    let range = match role {
        Role::Producer => shape.producers.clone(),
        Role::Consumer => shape.consumers.clone(),
    };
    // An entry still ATTACHED (alive), or an error asking, means not gone.
    range
        .into_iter()
        .all(|i| matches!(ring.reap(i), Ok(s) if s != crate::header::STATUS_ATTACHED))
}

/// Do the entries of `range` that claim `pos` all belong to dead holders (and
/// is there at least one)? A live claimant, or an error asking, means wait.
fn claimants_dead(att: &Attachment, range: std::ops::Range<u32>, pos: u64) -> bool {
    live_claimant(att.ring(), range, pos, None) == Some(false)
}

/// Among the entries of `range` (but `except`) that claim `pos`: `None` if
/// there is none, `Some(true)` if any holder lives (or asking failed),
/// `Some(false)` if all are dead.
fn live_claimant(
    ring: &Ring,
    range: std::ops::Range<u32>,
    pos: u64,
    except: Option<u32>,
) -> Option<bool> {
    let want = pos | CLAIM_ACTIVE;
    let mut found = None;
    for i in range.filter(|&i| Some(i) != except) {
        if ring.entry(i).claim.load(Ordering::Acquire) == want {
            if ring.token_held(i).unwrap_or(true) {
                return Some(true);
            }
            found = Some(false);
        }
    }
    found
}

fn clear_claims(att: &Attachment, range: std::ops::Range<u32>, pos: u64) {
    let want = pos | CLAIM_ACTIVE;
    for i in range {
        let _ = att.ring().entry(i).claim.compare_exchange(
            want,
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

/// Items between `tail` and `head`, clamped to `0..=capacity` (a snapshot:
/// the two words are read one after the other, and a peer may have written
/// anything into them).
fn len(ring: &Ring) -> usize {
    let h = ring.header();
    let head = h.head.value.load(Ordering::Acquire);
    let tail = h.tail.value.load(Ordering::Acquire);
    let cap = ring.geom().capacity;
    (head.wrapping_sub(tail) as i64).clamp(0, cap as i64) as usize
}

/// `capacity`, `len` and `is_empty` of an endpoint, as on the queue handle.
macro_rules! endpoint_sizes {
    ($what:literal) => {
        /// Items the queue can hold.
        ///
        /// ```
        /// # let name = format!("/doc-mpmc-sizes-{}", std::process::id());
        /// let q = shmqueue::Mpmc::<u64>::create(&name, 4)?;
        #[doc = concat!("let e = q.", $what, "()?;")]
        /// assert_eq!((e.capacity(), e.len(), e.is_empty()), (4, 0, true));
        /// # shmqueue::unlink(&name)?;
        /// # Ok::<(), shmqueue::Error>(())
        /// ```
        pub fn capacity(&self) -> usize {
            self.att.ring().geom().capacity
        }

        /// Items in the queue right now (a snapshot, as [`Mpmc::len`]).
        pub fn len(&self) -> usize {
            len(self.att.ring())
        }

        /// Whether the queue is empty right now.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    };
}

fn corrupt(what: &'static str, found: u64, limit: u64) -> Corruption {
    Corruption { what, found, limit }
}

/// A producer endpoint of an [`Mpmc`] queue. `Send`; attach one per thread.
pub struct Producer<T> {
    att: Attachment,
    shape: Shape,
    local: Local,
    spin: u32,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpmc::Producer")
            .field("name", &self.att.ring().name())
            .finish()
    }
}

enum PushOutcome {
    #[cfg(shmqueue_loom)]
    Died,
    Pushed,
    Full,
    Disconnected,
    Corrupt(Corruption),
}

#[inline(always)]
fn push_impl<T: Pod>(att: &Attachment, shape: &Shape, local: &mut Local, value: &T) -> PushOutcome {
    let h = att.header();
    let ev = &h.events;
    let me = att.own();
    // One clock read for every throttle of this attempt (wait::Now).
    let mut now = Now::default();
    // Consumers existed and the counter says none is left: confirm from the
    // registry (the counter is a hint, see all_gone).
    if ev.ever.load(Ordering::Relaxed) & 2 != 0
        && ev.consumers.load(Ordering::Relaxed) == 0
        && all_gone(att, shape, Role::Consumer, &mut local.reap, &mut now)
    {
        return PushOutcome::Disconnected;
    }
    let mut pos = h.head.value.load(Ordering::Relaxed);
    loop {
        if pos > MAX_POSITION {
            me.claim.store(0, Ordering::Relaxed);
            return PushOutcome::Corrupt(corrupt("MPMC head", pos, MAX_POSITION));
        }
        let i = shape.index(pos);
        let seq = att.seq(i).load(Ordering::Acquire);
        if seq == mpmc_seq::free(pos) {
            // Evidence first: if we die after winning, survivors find us.
            me.claim.store(pos | CLAIM_ACTIVE, Ordering::Relaxed);
            // Release on success orders the claim before the new head.
            match h.head.value.compare_exchange_weak(
                pos,
                pos.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    #[cfg(feature = "test-hooks")]
                    test_hooks::after_claim(Role::Producer);
                    #[cfg(shmqueue_loom)]
                    if local.die_after_claim {
                        local.died = true;
                        return PushOutcome::Died;
                    }
                    // SAFETY: i < capacity (Shape::index); T matches the
                    // validated geometry; winning `pos` while seq == pos gives
                    // us the slot until we publish it.
                    unsafe { att.write_value(i, *value) };
                    // Release: the value happens-before a consumer that
                    // Acquires seq == published(pos).
                    att.seq(i)
                        .store(mpmc_seq::published(pos), Ordering::Release);
                    me.claim.store(0, Ordering::Release);
                    ev.not_empty.notify();
                    return PushOutcome::Pushed;
                }
                Err(now) => pos = now,
            }
        } else if before(seq & !SKIP, mpmc_seq::free(pos)) {
            // The slot still holds the item of position pos - capacity.
            me.claim.store(0, Ordering::Relaxed);
            let old = pos.wrapping_sub(shape.cap);
            // Only a slot stalled for a while is worth asking whether a
            // consumer has taken `old` (tail moved past it): reading `tail`,
            // the consumers' line, on every full poll takes it from them.
            if pos >= shape.cap
                && (seq & !SKIP) == mpmc_seq::published(old)
                && local.stalled_long(pos, &mut now)
                && before(old, h.tail.value.load(Ordering::Acquire))
            {
                // A consumer won `old` but has not released it for a while.
                if claimants_dead(att, shape.consumers.clone(), old)
                    && att
                        .seq(i)
                        .compare_exchange(
                            seq,
                            mpmc_seq::free(pos),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                {
                    ev.releases.fetch_add(1, Ordering::Relaxed);
                    clear_claims(att, shape.consumers.clone(), old);
                    // Other producers asleep on this full slot can go on.
                    ev.not_full.notify();
                    continue;
                }
            }
            if all_gone(att, shape, Role::Consumer, &mut local.reap, &mut now) {
                return PushOutcome::Disconnected;
            }
            return PushOutcome::Full;
        } else {
            // Another producer won `pos`; move on. A head that does not move
            // past a slot already written for a later lap is corrupt.
            let now = h.head.value.load(Ordering::Relaxed);
            if now == pos {
                me.claim.store(0, Ordering::Relaxed);
                return PushOutcome::Corrupt(corrupt("slot sequence", seq, pos));
            }
            pos = now;
        }
    }
}

impl<T: Pod> Producer<T> {
    endpoint_sizes!("producer");

    /// Push without blocking: [`TryPushError::Full`] if there is no free
    /// slot, [`TryPushError::Disconnected`] if every consumer has gone.
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), TryPushError<T>> {
        match push_impl(&self.att, &self.shape, &mut self.local, &value) {
            #[cfg(shmqueue_loom)]
            PushOutcome::Died => Err(TryPushError::Disconnected(value)),
            PushOutcome::Pushed => Ok(()),
            PushOutcome::Full => Err(TryPushError::Full(value)),
            PushOutcome::Disconnected => Err(TryPushError::Disconnected(value)),
            PushOutcome::Corrupt(c) => Err(TryPushError::Corrupt(value, c)),
        }
    }

    /// Push, waiting while the queue is full (spin, then futex).
    #[inline(always)]
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        self.push_until(value, None)
    }

    /// Like [`Producer::push`], giving up after `timeout`.
    pub fn push_timeout(&mut self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        self.push_until(value, Some(Deadline::after(timeout)))
    }

    // The first attempt inline, the waiting out of line (push_wait), as in
    // the SPSC ring's `push_until`, and for the same measured reason.
    #[inline(always)]
    fn push_until(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        match push_impl(&self.att, &self.shape, &mut self.local, &value) {
            #[cfg(shmqueue_loom)]
            PushOutcome::Died => Err(PushError::Disconnected(value)),
            PushOutcome::Pushed => Ok(()),
            PushOutcome::Full => self.push_wait(value, deadline),
            PushOutcome::Disconnected => Err(PushError::Disconnected(value)),
            PushOutcome::Corrupt(c) => Err(PushError::Corrupt(value, c)),
        }
    }

    #[inline(never)]
    fn push_wait(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        // The value is borrowed per attempt, not copied: with a large `T`
        // a copy per retry would be the whole spin budget.
        let (att, shape, local) = (&self.att, &self.shape, &mut self.local);
        keep_trying(
            &att.header().events.not_full,
            self.spin,
            deadline,
            || match push_impl(att, shape, local, &value) {
                #[cfg(shmqueue_loom)]
                PushOutcome::Died => Some(Err(PushError::Disconnected(value))),
                PushOutcome::Pushed => Some(Ok(())),
                PushOutcome::Full => None,
                PushOutcome::Disconnected => Some(Err(PushError::Disconnected(value))),
                PushOutcome::Corrupt(c) => Some(Err(PushError::Corrupt(value, c))),
            },
        )
        .unwrap_or(Err(PushError::Timeout(value)))
    }
}

impl<T: Pod> Producer<T> {
    /// loom models only: make the next push win its position and then "die"
    /// (return without publishing); dropping the producer afterwards does
    /// what the kernel does for a killed process: releases the liveness
    /// token, and nothing else.
    #[cfg(shmqueue_loom)]
    #[doc(hidden)]
    pub fn die_after_next_claim(&mut self) {
        self.local.die_after_claim = true;
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        if !self.att.owned_here() {
            return; // a forked child's copy (liveness.rs, "Fork")
        }
        #[cfg(shmqueue_loom)]
        if self.local.died {
            self.att.kill();
            return;
        }
        self.att.own().claim.store(0, Ordering::Release);
        self.att.detach();
        // Consumers sleeping on an empty queue re-check: maybe disconnected now.
        self.att.header().events.not_empty.notify();
    }
}

/// A consumer endpoint of an [`Mpmc`] queue. `Send`; attach one per thread.
pub struct Consumer<T> {
    att: Attachment,
    shape: Shape,
    local: Local,
    spin: u32,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpmc::Consumer")
            .field("name", &self.att.ring().name())
            .finish()
    }
}

#[inline(always)]
fn pop_impl<T: Pod>(att: &Attachment, shape: &Shape, local: &mut Local) -> Result<T, TryPopError> {
    let h = att.header();
    let ev = &h.events;
    let me = att.own();
    let mut pos = h.tail.value.load(Ordering::Relaxed);
    loop {
        if pos > MAX_POSITION {
            me.claim.store(0, Ordering::Relaxed);
            return Err(TryPopError::Corrupt(corrupt(
                "MPMC tail",
                pos,
                MAX_POSITION,
            )));
        }
        let i = shape.index(pos);
        let seq = att.seq(i).load(Ordering::Acquire);
        if seq & !SKIP == mpmc_seq::published(pos) {
            me.claim.store(pos | CLAIM_ACTIVE, Ordering::Relaxed);
            match h.tail.value.compare_exchange_weak(
                pos,
                pos.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    #[cfg(feature = "test-hooks")]
                    test_hooks::after_claim(Role::Consumer);
                    // Only the winner of `pos` touches the slot until it
                    // releases it, so `seq` is still what we loaded.
                    let value = if seq & SKIP == 0 {
                        // SAFETY: i < capacity; T matches the geometry; the
                        // producer published the slot (seq == published(pos)
                        // read with Acquire) and we own it until the store
                        // below.
                        Some(unsafe { att.read_value::<T>(i) })
                    } else {
                        None
                    };
                    // Release: our read happens-before the next lap's write.
                    att.seq(i)
                        .store(mpmc_seq::free(pos + shape.cap), Ordering::Release);
                    me.claim.store(0, Ordering::Release);
                    ev.not_full.notify();
                    match value {
                        Some(v) => return Ok(v),
                        // A skipped hole: nothing to deliver, take the next.
                        None => pos = pos.wrapping_add(1),
                    }
                }
                Err(now) => pos = now,
            }
        } else if before(seq & !SKIP, mpmc_seq::published(pos)) {
            // Not published for this lap yet: empty, or won by a producer
            // and in flight. Either way Empty, unless the slot has stalled
            // or every producer has gone: only then is `head` read. It is
            // the producers' line; reading it on every empty poll would take
            // it from them, and their next CAS would have to fetch it back.
            me.claim.store(0, Ordering::Relaxed);
            // One clock read for both throttles (wait::Now): two made every
            // empty poll, the spinning consumer's loop, ~2 ns longer.
            let mut now = Now::default();
            let stalled = seq == mpmc_seq::free(pos) && local.stalled_long(pos, &mut now);
            let gone = !stalled && all_gone(att, shape, Role::Producer, &mut local.reap, &mut now);
            if !stalled && !gone {
                return Err(TryPopError::Empty);
            }
            let head = h.head.value.load(Ordering::Acquire);
            if !before(pos, head) {
                // Empty. Disconnected only if no producer can come back with
                // more, and nothing was published meanwhile.
                if (gone || all_gone(att, shape, Role::Producer, &mut local.reap, &mut now))
                    && att.seq(i).load(Ordering::Acquire) == seq
                    && !before(pos, h.head.value.load(Ordering::Acquire))
                {
                    return Err(TryPopError::Disconnected);
                }
                return Err(TryPopError::Empty);
            }
            // Won by a producer, not yet published: in flight, or a hole.
            #[cfg(not(shmqueue_mutation = "skip_live_claimant"))]
            let dead = |att, pos| claimants_dead(att, shape.producers.clone(), pos);
            // Mutation for the loom suite: skip without asking the kernel.
            #[cfg(shmqueue_mutation = "skip_live_claimant")]
            let dead = |_: &Attachment, _: u64| true;
            if stalled
                && dead(att, pos)
                && att
                    .seq(i)
                    .compare_exchange(
                        mpmc_seq::free(pos),
                        mpmc_seq::published(pos) | SKIP,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
            {
                ev.holes.fetch_add(1, Ordering::Relaxed);
                clear_claims(att, shape.producers.clone(), pos);
                // Other consumers asleep behind the hole can go on.
                ev.not_empty.notify();
                continue;
            }
            return Err(TryPopError::Empty);
        } else {
            let now = h.tail.value.load(Ordering::Relaxed);
            if now == pos {
                me.claim.store(0, Ordering::Relaxed);
                return Err(TryPopError::Corrupt(corrupt("slot sequence", seq, pos)));
            }
            pos = now;
        }
    }
}

impl<T: Pod> Consumer<T> {
    endpoint_sizes!("consumer");

    /// Pop without blocking: [`TryPopError::Empty`] if nothing is ready,
    /// [`TryPopError::Disconnected`] once the queue is drained and every
    /// producer has gone.
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, TryPopError> {
        pop_impl(&self.att, &self.shape, &mut self.local)
    }

    /// Pop, waiting while the queue is empty (spin, then futex).
    #[inline(always)]
    pub fn pop(&mut self) -> Result<T, PopError> {
        self.pop_until(None)
    }

    /// Like [`Consumer::pop`], giving up after `timeout`.
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, PopError> {
        self.pop_until(Some(Deadline::after(timeout)))
    }

    // The first attempt inline, the waiting out of line (pop_wait), as in
    // the SPSC ring's `push_until`, and for the same measured reason.
    #[inline(always)]
    fn pop_until(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
        match pop_impl(&self.att, &self.shape, &mut self.local) {
            Ok(v) => Ok(v),
            Err(TryPopError::Empty) => self.pop_wait(deadline),
            Err(TryPopError::Disconnected) => Err(PopError::Disconnected),
            Err(TryPopError::Corrupt(c)) => Err(PopError::Corrupt(c)),
        }
    }

    #[inline(never)]
    fn pop_wait(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
        let (att, shape, local) = (&self.att, &self.shape, &mut self.local);
        keep_trying(
            &att.header().events.not_empty,
            self.spin,
            deadline,
            || match pop_impl(att, shape, local) {
                Ok(v) => Some(Ok(v)),
                Err(TryPopError::Empty) => None,
                Err(TryPopError::Disconnected) => Some(Err(PopError::Disconnected)),
                Err(TryPopError::Corrupt(c)) => Some(Err(PopError::Corrupt(c))),
            },
        )
        .unwrap_or(Err(PopError::Timeout))
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        if !self.att.owned_here() {
            return; // a forked child's copy (liveness.rs, "Fork")
        }
        self.att.own().claim.store(0, Ordering::Release);
        self.att.detach();
        // Producers sleeping on a full queue re-check: maybe disconnected now.
        self.att.header().events.not_full.notify();
    }
}

/// Fault injection for tests (feature `test-hooks`): freeze this process's
/// endpoints of one role right after they win their `n`-th position, before
/// they publish (producers) or release (consumers) it, so that a test can
/// SIGKILL the process at exactly that point.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod test_hooks {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use crate::error::Role;

    static PRODUCER_CLAIMS: AtomicU64 = AtomicU64::new(0);
    static CONSUMER_CLAIMS: AtomicU64 = AtomicU64::new(0);
    static FROZEN: AtomicBool = AtomicBool::new(false);

    /// Freeze the `n`-th claim (1-based) of `role` in this process; 0 disarms.
    pub fn freeze_after_claims(role: Role, n: u64) {
        match role {
            Role::Producer => PRODUCER_CLAIMS.store(n, Ordering::SeqCst),
            Role::Consumer => CONSUMER_CLAIMS.store(n, Ordering::SeqCst),
        }
    }

    /// Whether an endpoint of this process is frozen inside a claim.
    pub fn frozen() -> bool {
        FROZEN.load(Ordering::SeqCst)
    }

    pub(crate) fn after_claim(role: Role) {
        let c = match role {
            Role::Producer => &PRODUCER_CLAIMS,
            Role::Consumer => &CONSUMER_CLAIMS,
        };
        if c.load(Ordering::Relaxed) == 0 {
            return;
        }
        if c.fetch_sub(1, Ordering::SeqCst) == 1 {
            FROZEN.store(true, Ordering::SeqCst);
            loop {
                // Frozen until killed; the test's deadline bounds this.
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }
}
