//! A validated, mapped segment: the header, the endpoint registry and the
//! slot array, plus the process-local copy of the geometry.
//!
//! This is the only module that turns the mapping's base pointer into
//! references and slot addresses; everything above it is safe code over
//! `&Header`, `&EndpointEntry` and the two slot-copy functions
//! ([`Attachment::write_slot`], [`Attachment::read_slot`]).
//!
//! Under `--cfg shmqueue_loom` the same `Ring` is backed by a heap-allocated header,
//! registry and slot cells (loom cannot model `mmap`), and liveness tokens
//! are loom atomics instead of OFD locks; everything above this module, the
//! ring algorithm and the waiting protocol, is the same code.

use std::ptr::NonNull;
use std::sync::Arc;

use bytemuck::Pod;

use crate::error::{Corruption, Role};
use crate::header::{
    EndpointEntry, Expected, Geometry, Header, INIT_READY, REGISTRY_OFFSET, STATUS_ATTACHED,
    STATUS_DETACHED, STATUS_MASK,
};
use crate::liveness;
use crate::segment::{Segment, SegmentOptions};
use crate::sync::Ordering;
use crate::wait::{futex_wait, futex_wake_all, Deadline, Throttle};
use crate::Error;

/// See liveness.rs, "Fork"; under loom there is no fork.
#[cfg(not(shmqueue_loom))]
use liveness::fork_generation;
#[cfg(shmqueue_loom)]
fn fork_generation() -> u64 {
    0
}

/// How often a polling endpoint asks the kernel whether its peer (SPSC,
/// byte ring) or a dead holder (MPMC) is gone.
pub(crate) const REAP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

pub(crate) struct Ring {
    #[cfg(not(shmqueue_loom))]
    seg: Segment,
    #[cfg(shmqueue_loom)]
    heap: heap::Heap,
    geom: Geometry,
}

/// The loom stand-in for a mapped segment.
#[cfg(shmqueue_loom)]
mod heap {
    use crate::header::{EndpointEntry, Header};

    pub(crate) struct Heap {
        pub header: Box<Header>,
        pub registry: Box<[EndpointEntry]>,
        /// Liveness tokens: true while an endpoint holds the entry (the OFD
        /// lock of the real thing; released on drop, as the kernel releases
        /// the lock on exit).
        pub tokens: Box<[loom::sync::atomic::AtomicBool]>,
        /// One loom cell per slot, so loom checks every slot access for races.
        pub slots: Box<[loom::cell::UnsafeCell<Vec<u8>>]>,
        /// MPMC slot sequence words (slot `i` starts at `i`).
        pub seqs: Box<[crate::sync::AtomicU64]>,
    }
}

/// A held liveness token (see `liveness.rs`); under loom, the entry's flag
/// in the heap, released by [`Attachment`]'s drop.
#[cfg(not(shmqueue_loom))]
type Token = liveness::Token;
#[cfg(shmqueue_loom)]
#[derive(Debug)]
struct Token;

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("name", &self.name())
            .field("geometry", &self.geom)
            .finish()
    }
}

// SAFETY: the mapping is plain shared memory; every access through `Ring`
// goes through atomics or through slot copies whose exclusivity the queue
// protocol (not the thread) guarantees, so moving or sharing the handle
// across threads is no different from sharing it across processes.
unsafe impl Send for Ring {}
// SAFETY: as above; `&Ring` only hands out `&` to atomics.
unsafe impl Sync for Ring {}

#[cfg(shmqueue_loom)]
fn no_shm_under_loom() -> Error {
    Error::InvalidArgument {
        detail:
            "shared-memory segments are not available under cfg(shmqueue_loom); use create_in_heap"
                .into(),
    }
}

impl Ring {
    /// Build the loom stand-in: header, registry and slots on the heap,
    /// initialised exactly as `create` initialises a segment.
    #[cfg(shmqueue_loom)]
    pub(crate) fn create_in_heap(geom: Geometry) -> Ring {
        let heap = heap::Heap {
            header: Box::new(Header::new_zeroed()),
            registry: (0..geom.endpoints)
                .map(|_| EndpointEntry::new_zeroed())
                .collect(),
            tokens: (0..geom.endpoints)
                .map(|_| loom::sync::atomic::AtomicBool::new(false))
                .collect(),
            slots: (0..geom.buffer_size)
                .map(|_| loom::cell::UnsafeCell::new(vec![0u8; geom.slot_stride]))
                .collect(),
            seqs: (0..geom.buffer_size)
                .map(|i| crate::sync::AtomicU64::new(crate::header::mpmc_seq::free(i as u64)))
                .collect(),
        };
        let ring = Ring { heap, geom };
        let id = &ring.header().identity;
        geom.write_identity(id, std::process::id());
        id.init.store(INIT_READY, Ordering::Release);
        ring
    }

    #[cfg(shmqueue_loom)]
    pub(crate) fn create(_: &str, _: Geometry, _: &SegmentOptions) -> Result<Ring, Error> {
        Err(no_shm_under_loom())
    }

    #[cfg(shmqueue_loom)]
    pub(crate) fn open(_: &str, _: &Expected, _: &SegmentOptions) -> Result<Ring, Error> {
        Err(no_shm_under_loom())
    }

    #[cfg(shmqueue_loom)]
    pub(crate) fn create_memfd(_: Geometry, _: &SegmentOptions) -> Result<Ring, Error> {
        Err(no_shm_under_loom())
    }

    #[cfg(shmqueue_loom)]
    pub(crate) fn open_fd(
        _: std::os::fd::OwnedFd,
        _: &Expected,
        _: &SegmentOptions,
    ) -> Result<Ring, Error> {
        Err(no_shm_under_loom())
    }

    #[cfg(shmqueue_loom)]
    pub(crate) fn dup_fd(&self) -> Result<std::os::fd::OwnedFd, Error> {
        Err(no_shm_under_loom())
    }

    /// A new close-on-exec descriptor for the segment, to hand on.
    #[cfg(not(shmqueue_loom))]
    pub(crate) fn dup_fd(&self) -> Result<std::os::fd::OwnedFd, Error> {
        self.seg.dup_fd()
    }

    /// Create and initialise a segment for `geom`, publishing the header last.
    #[cfg(not(shmqueue_loom))]
    pub(crate) fn create(name: &str, geom: Geometry, opts: &SegmentOptions) -> Result<Ring, Error> {
        let seg = Segment::create(name, geom.total_size, opts)?;
        Ok(Ring::init(seg, geom))
    }

    /// Create a sealed memfd for `geom` and initialise it as `create` does.
    #[cfg(not(shmqueue_loom))]
    pub(crate) fn create_memfd(geom: Geometry, opts: &SegmentOptions) -> Result<Ring, Error> {
        let seg = Segment::create_memfd(geom.total_size, opts)?;
        Ok(Ring::init(seg, geom))
    }

    /// Write the initial state of a freshly sized segment, then publish it.
    #[cfg(not(shmqueue_loom))]
    fn init(seg: Segment, geom: Geometry) -> Ring {
        let ring = Ring { seg, geom };
        if geom.kind == crate::header::QueueKind::Mpmc {
            // Vyukov's initial state: slot i is free for position i.
            let base = ring.slots();
            for i in 0..geom.buffer_size {
                // SAFETY: as Attachment::seq: slot i's first 8 bytes, inside
                // the freshly sized mapping, 8-aligned.
                let seq = unsafe {
                    &*(base.as_ptr().add(i * geom.slot_stride) as *const crate::sync::AtomicU64)
                };
                seq.store(crate::header::mpmc_seq::free(i as u64), Ordering::Relaxed);
            }
        }
        let id = &ring.header().identity;
        geom.write_identity(id, std::process::id());
        // Everything above must be visible to an opener that sees READY.
        id.init.store(INIT_READY, Ordering::Release);
        futex_wake_all(&id.init);
        ring
    }

    /// Open, wait (bounded) for initialisation, validate, and copy the geometry.
    #[cfg(not(shmqueue_loom))]
    pub(crate) fn open(
        name: &str,
        expect: &Expected,
        opts: &SegmentOptions,
    ) -> Result<Ring, Error> {
        let (seg, deadline) = Segment::open(name, opts)?;
        Ring::validate(seg, expect, deadline)
    }

    /// Map a sealed memfd someone handed us and validate it as `open` does.
    /// Its creator published the header before handing the descriptor on,
    /// so there is nothing to wait for.
    #[cfg(not(shmqueue_loom))]
    pub(crate) fn open_fd(
        fd: std::os::fd::OwnedFd,
        expect: &Expected,
        opts: &SegmentOptions,
    ) -> Result<Ring, Error> {
        let seg = Segment::open_fd(fd, opts)?;
        Ring::validate(seg, expect, std::time::Instant::now())
    }

    /// Wait (until `deadline`) for initialisation, validate, and copy the
    /// geometry.
    #[cfg(not(shmqueue_loom))]
    fn validate(
        seg: Segment,
        expect: &Expected,
        deadline: std::time::Instant,
    ) -> Result<Ring, Error> {
        let name = seg.name().to_owned();
        let name = name.as_str();
        let deadline =
            Deadline::after(deadline.saturating_duration_since(std::time::Instant::now()));
        // SAFETY: Segment::open and Segment::open_fd map at least
        // HEADER_SIZE bytes.
        let header = unsafe { header_at(&seg) };
        let init = &header.identity.init;
        loop {
            let v = init.load(Ordering::Acquire);
            if v == INIT_READY {
                break;
            }
            if v != 0 {
                return Err(Error::Foreign {
                    name: name.into(),
                    detail: format!("init word {v:#x} is neither 0 nor READY"),
                });
            }
            if deadline.passed() {
                return Err(Error::NotReady { name: name.into() });
            }
            futex_wait(
                init,
                v,
                deadline.min(Deadline::after(std::time::Duration::from_millis(10))),
            );
        }
        // The creator sized the file before publishing; re-read its size now.
        let file_size = seg.file_size()?;
        if file_size as usize != seg.len() {
            return Err(Error::Corrupt(Corruption {
                what: "file size (changed while opening)",
                found: file_size,
                limit: seg.len() as u64,
            }));
        }
        // A hugetlbfs memfd is rounded up to whole huge pages: its size is
        // the geometry's rounded up to the granule, not the geometry's. The
        // granule comes from the kernel (fstatfs), not from the segment, and
        // Geometry::validate still checks the stored total against the
        // recomputed one.
        let granule = seg.size_granule()?;
        let sized_for = if granule > 1 {
            let stored = header.identity.total_size.load(Ordering::Relaxed);
            match stored.checked_next_multiple_of(granule) {
                Some(rounded) if rounded == file_size => stored,
                _ => file_size,
            }
        } else {
            file_size
        };
        let geom = Geometry::validate(&header.identity, expect, sized_for, name)?;
        Ok(Ring { seg, geom })
    }

    pub(crate) fn geom(&self) -> &Geometry {
        &self.geom
    }

    pub(crate) fn name(&self) -> &str {
        #[cfg(not(shmqueue_loom))]
        return self.seg.name();
        #[cfg(shmqueue_loom)]
        "(loom heap)"
    }

    #[cfg(shmqueue_loom)]
    pub(crate) fn header(&self) -> &Header {
        &self.heap.header
    }

    #[cfg(shmqueue_loom)]
    pub(crate) fn entry(&self, i: u32) -> &EndpointEntry {
        &self.heap.registry[i as usize]
    }

    /// MPMC: the sequence word of slot `i`, for code that holds no
    /// attachment (panics if `i` is out of range: only a bug can cause it).
    pub(crate) fn mpmc_seq(&self, i: usize) -> &crate::sync::AtomicU64 {
        assert!(i < self.geom.buffer_size, "slot index out of range");
        debug_assert_eq!(self.geom.kind, crate::header::QueueKind::Mpmc);
        #[cfg(shmqueue_loom)]
        return &self.heap.seqs[i];
        #[cfg(not(shmqueue_loom))]
        // SAFETY: as Attachment::seq.
        unsafe {
            &*(self.slots().as_ptr().add(i * self.geom.slot_stride)
                as *const crate::sync::AtomicU64)
        }
    }

    /// Take the liveness token of entry `index`; `None` if a live endpoint
    /// holds it.
    fn take_token(&self, index: u32) -> Result<Option<Token>, Error> {
        #[cfg(not(shmqueue_loom))]
        return liveness::acquire(self.seg.fd(), index);
        #[cfg(shmqueue_loom)]
        Ok(self.heap.tokens[index as usize]
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Token))
    }

    /// Whether some endpoint holds the token of entry `index`.
    pub(crate) fn token_held(&self, index: u32) -> Result<bool, Error> {
        #[cfg(not(shmqueue_loom))]
        return liveness::is_held(self.seg.fd(), index);
        #[cfg(shmqueue_loom)]
        Ok(self.heap.tokens[index as usize].load(Ordering::Acquire))
    }

    #[cfg(not(shmqueue_loom))]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: every Ring's segment maps at least HEADER_SIZE bytes
        // (Segment::create sizes it from the geometry, Segment::open checks).
        unsafe { header_at(&self.seg) }
    }

    #[cfg(not(shmqueue_loom))]
    /// Registry entry `i`. Panics if `i` is not below the validated endpoint
    /// count, which only a bug in this crate can cause.
    pub(crate) fn entry(&self, i: u32) -> &EndpointEntry {
        assert!(i < self.geom.endpoints, "registry index out of range");
        let offset = REGISTRY_OFFSET + i as usize * core::mem::size_of::<EndpointEntry>();
        // SAFETY: the geometry puts `endpoints` entries at REGISTRY_OFFSET,
        // below slots_offset <= the mapping's length (validated against the
        // file size); offsets are multiples of 128 from a page-aligned base;
        // EndpointEntry is all atomics, valid for any bytes.
        unsafe { &*(self.seg.base().add(offset) as *const EndpointEntry) }
    }

    #[cfg(not(shmqueue_loom))]
    /// Start of the slot array. In bounds: `slots_offset <= total_size`,
    /// the mapping's length (checked arithmetic, validated against the file).
    fn slots(&self) -> NonNull<u8> {
        let p = self.seg.base().wrapping_add(self.geom.slots_offset);
        NonNull::new(p).expect("a mapping does not start at address 0")
    }

    /// Claim registry entry `index` for `role`: take its liveness token, then
    /// mark it attached with a new generation. `peer` is the registry entry
    /// the endpoint watches on its hot path ([`Attachment::peer`]).
    pub(crate) fn attach(
        self: &Arc<Ring>,
        index: u32,
        peer: u32,
        role: Role,
    ) -> Result<Attachment, Error> {
        match self.try_attach(index, peer, role, |_| true)? {
            Some(a) => Ok(a),
            None => Err(Error::RoleTaken {
                role,
                holder_pid: self.entry(index).pid.load(Ordering::Relaxed),
            }),
        }
    }

    /// Claim the first free registry entry in `range` that `accept` agrees
    /// to reuse (it sees the index and entry with our token held, before we
    /// attach).
    pub(crate) fn attach_any(
        self: &Arc<Ring>,
        range: std::ops::Range<u32>,
        role: Role,
        accept: impl Fn(u32, &EndpointEntry) -> bool,
    ) -> Result<Attachment, Error> {
        let limit = range.len() as u32;
        for i in range {
            if let Some(a) = self.try_attach(i, i, role, |e| accept(i, e))? {
                return Ok(a);
            }
        }
        Err(Error::RegistryFull { role, limit })
    }

    /// The attached-endpoint counter of `role` (see [`crate::header::Events`]).
    pub(crate) fn attached(&self, role: Role) -> &crate::sync::AtomicU32 {
        let ev = &self.header().events;
        match role {
            Role::Producer => &ev.producers,
            Role::Consumer => &ev.consumers,
        }
    }

    fn role_of(&self, index: u32) -> Role {
        if index < self.geom.producer_entries {
            Role::Producer
        } else {
            Role::Consumer
        }
    }

    fn try_attach(
        self: &Arc<Ring>,
        index: u32,
        peer: u32,
        role: Role,
        accept: impl FnOnce(&EndpointEntry) -> bool,
    ) -> Result<Option<Attachment>, Error> {
        crate::wait::init_fences();
        #[cfg(not(shmqueue_loom))]
        liveness::watch_forks();
        let entry = self.entry(index);
        // Resolved before the role is claimed: these panic only on a bug.
        let header = NonNull::from(self.header());
        let peer_index = peer;
        let peer = NonNull::from(self.entry(peer_index));
        #[cfg(not(shmqueue_loom))]
        let slots = self.slots();
        let Some(token) = self.take_token(index)? else {
            return Ok(None);
        };
        if !accept(entry) {
            #[cfg(shmqueue_loom)]
            self.heap.tokens[index as usize].store(false, Ordering::Release);
            drop(token);
            return Ok(None);
        }
        // We hold the token, so nobody else attaches; a survivor may still
        // CAS a dead predecessor's state to DETACHED, hence the loop.
        let mut cur = entry.state.load(Ordering::Relaxed);
        let state = loop {
            let next = (cur & !STATUS_MASK).wrapping_add(STATUS_MASK + 1) | STATUS_ATTACHED;
            match entry
                .state
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break next,
                Err(actual) => cur = actual,
            }
        };
        entry.pid.store(std::process::id(), Ordering::Relaxed);
        // Taking over an entry still marked ATTACHED (its holder died and
        // was not reaped yet) inherits that holder's count.
        if cur & STATUS_MASK != STATUS_ATTACHED {
            self.attached(role).fetch_add(1, Ordering::AcqRel);
        }
        let ever = match role {
            Role::Producer => 1,
            Role::Consumer => 2,
        };
        self.header().events.ever.fetch_or(ever, Ordering::Release);
        Ok(Some(Attachment {
            ring: Arc::clone(self),
            header,
            peer,
            own: NonNull::from(entry),
            peer_index,
            #[cfg(not(shmqueue_loom))]
            slots,
            buffer_size: self.geom.buffer_size,
            stride: self.geom.slot_stride,
            value_offset: self.geom.value_offset,
            index,
            state,
            detached: false,
            generation: fork_generation(),
            _token: token,
        }))
    }

    /// Status of entry `index`, with a dead holder detected and recorded:
    /// an ATTACHED entry whose liveness token nobody holds belonged to a
    /// process that died without detaching; mark it DETACHED (once, by CAS on
    /// the generation it had, so a new holder's attach is never undone).
    pub(crate) fn reap(&self, index: u32) -> Result<u32, Error> {
        let entry = self.entry(index);
        let s = entry.state.load(Ordering::Acquire);
        if s & STATUS_MASK != STATUS_ATTACHED {
            return Ok(s & STATUS_MASK);
        }
        if self.token_held(index)? {
            return Ok(STATUS_ATTACHED);
        }
        let dead = (s & !STATUS_MASK) | STATUS_DETACHED;
        match entry
            .state
            .compare_exchange(s, dead, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // Exactly one decrement per attach: whoever wins this CAS
                // (or the holder's own detach) does it.
                self.attached(self.role_of(index))
                    .fetch_sub(1, Ordering::AcqRel);
                Ok(STATUS_DETACHED)
            }
            // Someone attached (or reaped) in between: report what is there now.
            Err(now) => Ok(now & STATUS_MASK),
        }
    }
}

/// # Safety
/// `seg` maps at least `HEADER_SIZE` bytes.
#[cfg(not(shmqueue_loom))]
unsafe fn header_at(seg: &Segment) -> &Header {
    debug_assert!(seg.len() >= crate::header::HEADER_SIZE);
    // SAFETY: the base is page-aligned (>= align_of::<Header>() = 128), the
    // caller guarantees the length, and Header is made only of atomics, which
    // are valid for any bytes (including a zero-filled, half-built header)
    // and have interior mutability, so `&Header` over memory other processes
    // write is sound.
    unsafe { &*(seg.base() as *const Header) }
}

/// What [`Attachment::refresh_or_gone`] found of the producer's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fresh<P> {
    /// It moved past ours: this much is published.
    Moved(P),
    /// Unchanged, and the producer is alive.
    Idle(P),
    /// Unchanged, the producer has gone, and nothing it published is left.
    Gone,
}

/// A held registry entry: the liveness token plus the attached state word.
/// Dropping it marks the entry DETACHED, then releases the token.
///
/// It also carries the addresses the endpoint touches on every call (the
/// header, the slot array, the peer's registry entry), resolved once at
/// attach, so the hot path does not re-derive them through
/// `Arc<Ring>` → `Segment` → mapping and the registry's bounds check on every
/// push and pop. They point into the mapping that `ring` keeps alive.
#[derive(Debug)]
pub(crate) struct Attachment {
    ring: Arc<Ring>,
    /// `ring.header()`.
    header: NonNull<Header>,
    /// `ring.entry(peer_index)`.
    peer: NonNull<EndpointEntry>,
    /// `ring.entry(index)`: this endpoint's own entry, written on every
    /// MPMC claim.
    own: NonNull<EndpointEntry>,
    peer_index: u32,
    /// `ring.slots()`: `buffer_size` slots of `slot_stride` bytes.
    #[cfg(not(shmqueue_loom))]
    slots: NonNull<u8>,
    /// `ring.geom().buffer_size`.
    buffer_size: usize,
    /// `ring.geom().slot_stride` and `value_offset` (MPMC slot addressing).
    stride: usize,
    value_offset: usize,
    index: u32,
    state: u32,
    detached: bool,
    /// The fork generation this endpoint attached in (liveness.rs, "Fork"):
    /// in a forked child's copy it differs, and the copy acts for nobody.
    generation: u64,
    _token: Token,
}

// SAFETY: the pointers are addresses in the mapping owned by `ring`
// (`Arc<Ring>`, itself `Send + Sync`); the accessors hand out only `&` to
// atomics, and the slot copies are `unsafe` with a contract (exclusive
// ownership of the slot, by the queue protocol) that does not depend on the
// calling thread. So the attachment may move to, or be shared with, another
// thread exactly as `Arc<Ring>` may.
unsafe impl Send for Attachment {}
// SAFETY: as above.
unsafe impl Sync for Attachment {}

/// Copies of at least this many bytes are checked for 4 KiB aliasing.
#[cfg(not(shmqueue_loom))]
const ALIAS_CHECK_MIN: usize = 2048;
/// Chunk size of an aliased copy: below glibc's `rep movsb` threshold, so
/// each piece takes its vector loop.
#[cfg(not(shmqueue_loom))]
const ALIAS_CHUNK: usize = 1024;

/// `copy_nonoverlapping` of `len` bytes that avoids the 4 KiB-aliasing
/// trap of `rep movsb`.
///
/// glibc's `memcpy` copies a few KiB and more with `rep movsb` on CPUs with
/// fast short `rep movsb` (FSRM), and there that instruction is ~25x slower
/// when `(dst - src) mod 4096` is small but not 0 (measured on the project's
/// EPYC guest: 64 KiB in 20-26 µs instead of 1.2 µs; a vector loop is
/// unaffected). Whether a copy between a caller's buffer and a ring slot
/// falls there depends on where the allocator put the buffer and, for the
/// byte ring, on the record's position, so it is not the caller's to
/// avoid. Such copies are cut into pieces that take glibc's vector loop.
///
/// # Safety
/// As [`core::ptr::copy_nonoverlapping`] for `len` bytes.
#[cfg(not(shmqueue_loom))]
#[inline]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    let distance = (dst as usize).wrapping_sub(src as usize) & 4095;
    if len < ALIAS_CHECK_MIN || distance == 0 || distance >= 64 {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    let mut done = 0;
    while done < len {
        let n = ALIAS_CHUNK.min(len - done);
        // SAFETY: `done + n <= len`, inside both ranges of the contract.
        unsafe { core::ptr::copy_nonoverlapping(src.add(done), dst.add(done), n) };
        done += n;
    }
}

impl Attachment {
    pub(crate) fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// The ring's header (as [`Ring::header`], without the indirections).
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `header` is `ring.header()`, which lives as long as the
        // mapping, which `self.ring` keeps alive for as long as `&self`.
        unsafe { self.header.as_ref() }
    }

    /// The peer's registry entry (as `ring.entry(peer)` for the `peer`
    /// passed to [`Ring::attach`]).
    #[inline]
    pub(crate) fn peer(&self) -> &EndpointEntry {
        // SAFETY: `peer` is `ring.entry(peer)`, which lives as long as the
        // mapping, which `self.ring` keeps alive for as long as `&self`.
        unsafe { self.peer.as_ref() }
    }

    /// [`Ring::reap`] the peer: its status, with a dead holder detected.
    pub(crate) fn reap_peer(&self) -> Result<u32, Error> {
        self.ring.reap(self.peer_index)
    }

    /// Single-peer rings (SPSC, byte ring): has the peer gone? DETACHED is
    /// read from the header; an ATTACHED peer is checked against its kernel
    /// liveness token at most every [`REAP_INTERVAL`] (a syscall), so
    /// spinning pollers stay cheap.
    #[inline]
    pub(crate) fn peer_gone(&self, reap: &mut Throttle) -> bool {
        let s = self.peer().state.load(Ordering::Acquire) & STATUS_MASK;
        if s != STATUS_ATTACHED {
            return s == STATUS_DETACHED;
        }
        self.reap_due(reap)
    }

    /// Drain, then disconnect: the one rule every single-peer reader (SPSC
    /// consumer, byte-ring consumer) follows when its cached view of the
    /// producer's position shows nothing to read.
    ///
    /// `load` reads the producer's published position (Acquire). If it moved
    /// past `ours`, there is something to read: `Fresh::Moved`. Otherwise,
    /// while the producer is alive, `Fresh::Idle`. Once it has gone, one more
    /// `load`: its DETACHED store (Release) came after its last publication
    /// and `peer_gone` read it with Acquire, so that load sees everything it
    /// ever published; only if that still shows nothing is the ring drained
    /// for good (`Fresh::Gone`). Written once so the three readers cannot
    /// drift apart on this ordering argument.
    #[inline]
    pub(crate) fn refresh_or_gone<P: PartialEq + Copy, E>(
        &self,
        reap: &mut Throttle,
        ours: P,
        mut load: impl FnMut() -> Result<P, E>,
    ) -> Result<Fresh<P>, E> {
        let theirs = load()?;
        if theirs != ours {
            return Ok(Fresh::Moved(theirs));
        }
        if !self.peer_gone(reap) {
            return Ok(Fresh::Idle(theirs));
        }
        let last = load()?;
        Ok(if last != ours {
            Fresh::Moved(last)
        } else {
            Fresh::Gone
        })
    }

    /// The clock half of [`Attachment::peer_gone`]: if [`REAP_INTERVAL`] has
    /// passed, ask the kernel whether the ATTACHED peer still holds its
    /// token. Out of line: it runs only on empty/full polls, and inlined it
    /// would keep the whole push and pop from being inlined.
    #[inline(never)]
    fn reap_due(&self, reap: &mut Throttle) -> bool {
        if !reap.ready(REAP_INTERVAL) {
            return false;
        }
        // An I/O error asking the kernel is treated as "alive": waiting
        // longer is recoverable, declaring a live peer dead is not.
        matches!(self.reap_peer(), Ok(STATUS_DETACHED))
    }

    /// Slots in the ring (the validated geometry's `buffer_size`).
    #[inline]
    pub(crate) fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// Byte ring: the start of the data area (`buffer_size` bytes, 128-aligned
    /// in the mapping), for the raw pointers the zero-copy API hands out
    /// (`byte_ring.rs`); copies go through [`Attachment::write_bytes`] and
    /// [`Attachment::read_bytes`].
    #[cfg(not(shmqueue_loom))]
    #[inline]
    pub(crate) fn data_ptr(&self) -> NonNull<u8> {
        debug_assert_eq!(self.ring.geom.kind, crate::header::QueueKind::Bytes);
        self.slots
    }

    /// Byte ring: copy `src` into the data area from byte `at`.
    ///
    /// # Safety
    /// The ring's kind is Bytes (one-byte slots); `at + src.len() <=
    /// buffer_size`; and the queue protocol gives the caller those bytes (no
    /// endpoint of this queue reads or writes them concurrently).
    #[inline]
    pub(crate) unsafe fn write_bytes(&self, at: usize, src: &[u8]) {
        debug_assert!(at + src.len() <= self.buffer_size);
        #[cfg(shmqueue_loom)]
        for (k, &b) in src.iter().enumerate() {
            self.ring.heap.slots[at + k].with_mut(|p| {
                // SAFETY: loom's cell hands out its Vec of slot_stride = 1
                // byte; exclusive access is the caller's contract, which loom
                // checks.
                unsafe { (&mut *p)[0] = b }
            });
        }
        #[cfg(not(shmqueue_loom))]
        // SAFETY: the range is inside the slot array (contract; one-byte
        // slots, so byte offsets are slot indices), which lies in the mapping
        // (checked geometry); `src` is the caller's own memory, so the two
        // cannot overlap; a raw copy, never a `&mut [u8]` over shared memory.
        unsafe {
            copy_bytes(src.as_ptr(), self.slots.as_ptr().add(at), src.len())
        }
    }

    /// Byte ring: copy `len` bytes of the data area from byte `at` to `dst`.
    ///
    /// # Safety
    /// As [`Attachment::write_bytes`], with the bytes published to the
    /// caller; `dst` is valid for `len` bytes of writes and is process-local
    /// memory (not in the mapping).
    #[inline]
    pub(crate) unsafe fn read_bytes(&self, at: usize, dst: *mut u8, len: usize) {
        debug_assert!(at + len <= self.buffer_size);
        #[cfg(shmqueue_loom)]
        for k in 0..len {
            self.ring.heap.slots[at + k].with(|p| {
                // SAFETY: as in write_bytes; `dst + k` is in the caller's
                // buffer (contract).
                unsafe { dst.add(k).write((&*p)[0]) }
            });
        }
        #[cfg(not(shmqueue_loom))]
        // SAFETY: as write_bytes, in the other direction; any bytes are
        // valid u8s.
        unsafe {
            copy_bytes(self.slots.as_ptr().add(at), dst, len)
        }
    }

    /// This endpoint's own registry entry.
    #[inline]
    pub(crate) fn own(&self) -> &EndpointEntry {
        // SAFETY: `own` is `ring.entry(index)`, which lives as long as the
        // mapping, which `self.ring` keeps alive for as long as `&self`.
        unsafe { self.own.as_ref() }
    }

    /// MPMC: the sequence word of slot `i` (`i < buffer_size`, checked).
    #[inline]
    pub(crate) fn seq(&self, i: usize) -> &crate::sync::AtomicU64 {
        assert!(i < self.buffer_size, "slot index out of range");
        debug_assert_eq!(self.ring.geom.kind, crate::header::QueueKind::Mpmc);
        #[cfg(shmqueue_loom)]
        return &self.ring.heap.seqs[i];
        #[cfg(not(shmqueue_loom))]
        // SAFETY: only mpmc.rs calls this, on rings whose validated kind is
        // MPMC, whose geometry starts every slot with an 8-byte sequence word
        // (slot stride >= 8 and a multiple of 8: exactly 8 for a zero-sized
        // `T`, as in `Mpmc<()>`). Slot i starts i * stride
        // bytes into the slot array, which holds buffer_size slots inside the
        // mapping (checked geometry); the array start is 128-aligned; the
        // word is an atomic, valid for any bytes.
        unsafe {
            &*(self.slots.as_ptr().add(i * self.stride) as *const crate::sync::AtomicU64)
        }
    }

    /// MPMC: copy `value` into slot `i`'s value.
    ///
    /// # Safety
    /// `i < buffer_size`; `T` has the geometry's element size and alignment;
    /// the caller owns the slot by the sequence protocol (it won the position
    /// and has not yet published it).
    #[inline]
    pub(crate) unsafe fn write_value<T: Pod>(&self, i: usize, value: T) {
        debug_assert!(i < self.buffer_size);
        #[cfg(shmqueue_loom)]
        return self.ring.heap.slots[i].with_mut(|p| {
            // SAFETY: loom's cell hands out its Vec; stride >= size_of::<T>().
            unsafe { (*p).as_mut_ptr().cast::<T>().write_unaligned(value) }
        });
        #[cfg(not(shmqueue_loom))]
        // SAFETY: in bounds by the contract and the checked geometry
        // (value_offset + size <= stride); aligned because the array start,
        // the stride and value_offset are multiples of the alignment; a
        // copy through a raw pointer, never a `&mut T` over shared memory.
        unsafe {
            crate::copy::store_value(
                self.slots
                    .as_ptr()
                    .add(i * self.stride + self.value_offset)
                    .cast::<T>(),
                value,
            )
        }
    }

    /// MPMC: copy slot `i`'s value out.
    ///
    /// # Safety
    /// As [`Attachment::write_value`], with the slot published to the caller.
    #[inline]
    pub(crate) unsafe fn read_value<T: Pod>(&self, i: usize) -> T {
        debug_assert!(i < self.buffer_size);
        #[cfg(shmqueue_loom)]
        return self.ring.heap.slots[i].with(|p| {
            // SAFETY: as in write_value; any bytes are a valid `T: Pod`.
            unsafe { (*p).as_ptr().cast::<T>().read_unaligned() }
        });
        #[cfg(not(shmqueue_loom))]
        // SAFETY: as in write_value; any bytes are a valid `T: Pod`.
        unsafe {
            crate::copy::load_value(
                self.slots
                    .as_ptr()
                    .add(i * self.stride + self.value_offset)
                    .cast::<T>(),
            )
        }
    }

    /// Address of slot `i` as a `T`.
    ///
    /// # Safety
    /// `i < buffer_size`, and `size_of::<T>()`/`align_of::<T>()` equal the
    /// geometry's element size/alignment.
    #[cfg(not(shmqueue_loom))]
    #[inline]
    unsafe fn slot<T: Pod>(&self, i: usize) -> *mut T {
        debug_assert!(i < self.buffer_size);
        debug_assert_eq!(core::mem::size_of::<T>(), self.ring.geom.slot_stride);
        debug_assert_eq!(core::mem::align_of::<T>(), self.ring.geom.elem_align);
        // SAFETY: the slot stride is the element size, so slot `i` starts
        // `i` elements past `slots`; i < buffer_size and the array's
        // buffer_size * slot_stride bytes lie inside the mapping (checked
        // arithmetic in Geometry::compute, validated against the file size).
        unsafe { self.slots.as_ptr().cast::<T>().add(i) }
    }

    /// Address of slot `i` as a `T`, for the SPSC windows that hand raw
    /// pointers to their callers (never references: the memory is shared
    /// with another process).
    ///
    /// # Safety
    /// `i < buffer_size`, and `size_of::<T>()`/`align_of::<T>()` equal the
    /// geometry's element size/alignment. Using the pointer is subject to
    /// [`Attachment::write_slot`]'s (or [`Attachment::read_slot`]'s)
    /// ownership contract for as long as it is used.
    #[cfg(not(shmqueue_loom))]
    #[inline]
    pub(crate) unsafe fn slot_ptr<T: Pod>(&self, i: usize) -> *mut T {
        // SAFETY: the caller's contract is `slot`'s.
        unsafe { self.slot::<T>(i) }
    }

    /// Copy `value` into slot `i`.
    ///
    /// # Safety
    /// `i < buffer_size`; `size_of::<T>()`/`align_of::<T>()` equal the
    /// geometry's element size/alignment; and the queue protocol gives the
    /// caller exclusive ownership of the slot (no endpoint of this queue reads
    /// or writes it concurrently).
    #[inline]
    pub(crate) unsafe fn write_slot<T: Pod>(&self, i: usize, value: T) {
        #[cfg(shmqueue_loom)]
        return self.ring.heap.slots[i].with_mut(|p| {
            // SAFETY: loom's cell hands out its Vec; stride = size_of::<T>()
            // bytes, written unaligned (a Vec<u8> is only byte-aligned).
            unsafe { (*p).as_mut_ptr().cast::<T>().write_unaligned(value) }
        });
        #[cfg(not(shmqueue_loom))]
        // SAFETY: in bounds by the contract; aligned because slots_offset
        // and slot_stride are multiples of the alignment and the base is
        // page-aligned; a copy through a raw pointer, never a `&mut T` over
        // shared memory.
        unsafe {
            crate::copy::store_value(self.slot::<T>(i), value)
        }
    }

    /// Copy slot `i` out.
    ///
    /// # Safety
    /// As for [`Attachment::write_slot`], with the slot published to the
    /// caller.
    #[inline]
    pub(crate) unsafe fn read_slot<T: Pod>(&self, i: usize) -> T {
        #[cfg(shmqueue_loom)]
        return self.ring.heap.slots[i].with(|p| {
            // SAFETY: as in write_slot; any bytes are a valid `T: Pod`.
            unsafe { (*p).as_ptr().cast::<T>().read_unaligned() }
        });
        #[cfg(not(shmqueue_loom))]
        // SAFETY: in bounds and aligned as above; `T: Pod` is valid for any
        // bytes, so even a hostile peer's bytes make a valid `T`.
        unsafe {
            crate::copy::load_value(self.slot::<T>(i))
        }
    }

    /// Copy `items` into the consecutive slots `i..i + items.len()`.
    ///
    /// # Safety
    /// `i + items.len() <= buffer_size`, and as [`Attachment::write_slot`]
    /// for every slot in the range.
    #[inline]
    pub(crate) unsafe fn write_slots<T: Pod>(&self, i: usize, items: &[T]) {
        debug_assert!(i + items.len() <= self.buffer_size);
        #[cfg(shmqueue_loom)]
        for (k, v) in items.iter().enumerate() {
            // SAFETY: the caller's contract, slot by slot.
            unsafe { self.write_slot(i + k, *v) };
        }
        #[cfg(not(shmqueue_loom))]
        // SAFETY: the range is inside the slot array (contract), aligned as
        // in write_slot; the source is the caller's own slice, so the two
        // cannot overlap; a raw copy, never a `&mut [T]` over shared memory.
        unsafe {
            copy_bytes(
                items.as_ptr().cast(),
                self.slot::<T>(i).cast(),
                core::mem::size_of_val(items),
            )
        }
    }

    /// Write `f(k)` into slot `i + k` for every `k` in `0..n`, in order.
    ///
    /// The slot address is computed once: writes through a `*mut T` could
    /// alias `self`'s fields as far as the compiler knows, so going through
    /// [`Attachment::write_slot`] per item would reload the base each time
    /// and keep the loop from being vectorised.
    ///
    /// # Safety
    /// `i + n <= buffer_size`, and as [`Attachment::write_slot`] for every
    /// slot in the range.
    #[inline]
    pub(crate) unsafe fn fill_slots<T: Pod>(
        &self,
        i: usize,
        n: usize,
        mut f: impl FnMut(usize) -> T,
    ) {
        debug_assert!(i + n <= self.buffer_size);
        #[cfg(shmqueue_loom)]
        for k in 0..n {
            // SAFETY: the caller's contract, slot by slot.
            unsafe { self.write_slot(i + k, f(k)) };
        }
        #[cfg(not(shmqueue_loom))]
        {
            if n == 0 {
                return;
            }
            // SAFETY: i < buffer_size (n > 0 and the contract); T matches
            // the geometry.
            let base = unsafe { self.slot::<T>(i) };
            for k in 0..n {
                // SAFETY: i + k < buffer_size: inside the slot array, aligned
                // as in write_slot, owned by the caller; a raw write, never a
                // `&mut T` over shared memory.
                unsafe { base.add(k).write(f(k)) };
            }
        }
    }

    /// Copy the consecutive slots `i..i + out.len()` into `out`.
    ///
    /// # Safety
    /// `i + out.len() <= buffer_size`, and as [`Attachment::read_slot`] for
    /// every slot in the range.
    #[inline]
    pub(crate) unsafe fn read_slots<T: Pod>(&self, i: usize, out: &mut [T]) {
        debug_assert!(i + out.len() <= self.buffer_size);
        #[cfg(shmqueue_loom)]
        for (k, v) in out.iter_mut().enumerate() {
            // SAFETY: the caller's contract, slot by slot.
            *v = unsafe { self.read_slot(i + k) };
        }
        #[cfg(not(shmqueue_loom))]
        // SAFETY: as write_slots, in the other direction; any bytes are a
        // valid `T: Pod`.
        unsafe {
            copy_bytes(
                self.slot::<T>(i).cast_const().cast(),
                out.as_mut_ptr().cast(),
                core::mem::size_of_val(out),
            )
        }
    }

    /// loom models: behave as if the holder's process was killed: no detach
    /// on drop, only the token release the kernel would do.
    #[cfg(shmqueue_loom)]
    pub(crate) fn kill(&mut self) {
        self.detached = true;
    }

    /// Whether this endpoint attached in this process, not in a parent that
    /// `fork`ed us (liveness.rs, "Fork"). Drops that write to the segment
    /// check it first: a forked child's copy must act for nobody.
    #[inline]
    pub(crate) fn owned_here(&self) -> bool {
        self.generation == fork_generation()
    }

    /// Mark the entry DETACHED (idempotent). The token is still held until
    /// drop, so the caller can wake its peer in between. A forked child's
    /// copy marks nothing: the role is its parent's.
    pub(crate) fn detach(&mut self) {
        if std::mem::replace(&mut self.detached, true) || !self.owned_here() {
            return;
        }
        let entry = self.ring.entry(self.index);
        // Release: everything this endpoint published happens-before a peer
        // that reads DETACHED with Acquire. A failed CAS means a hostile
        // writer changed the word; leave it, the token drop still frees us.
        let detached = (self.state & !STATUS_MASK) | STATUS_DETACHED;
        if entry
            .state
            .compare_exchange(self.state, detached, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            let role = self.ring.role_of(self.index);
            self.ring.attached(role).fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.detach();
        // The real token is an OFD lock released when `_token` closes; the
        // loom stand-in is a flag released here, after the detach.
        #[cfg(shmqueue_loom)]
        self.ring.heap.tokens[self.index as usize].store(false, Ordering::Release);
    }
}

#[cfg(all(test, not(shmqueue_loom)))]
mod tests {
    use super::copy_bytes;

    /// The chunked path (aliased distances) and the plain one copy the same
    /// bytes, whatever the distance and length.
    #[test]
    fn copy_bytes_is_a_copy_at_every_aliasing_distance() {
        let src: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut dst = vec![0u8; 20_000];
        for len in [0, 1, 2047, 2048, 2049, 4096, 10_000] {
            for distance in (0..80).chain(4090..4100) {
                // Place the destination `distance` bytes (mod 4096) after the
                // source's position within its page.
                let s_off = 5;
                let want = (src.as_ptr() as usize + s_off + distance) & 4095;
                let d_off = (want + 4096 - (dst.as_ptr() as usize & 4095)) & 4095;
                dst.fill(0);
                // SAFETY: s_off + len and d_off + len are within the buffers
                // (5 + 10_000 and 4095 + 10_000 < 20_000), which are distinct.
                unsafe { copy_bytes(src.as_ptr().add(s_off), dst.as_mut_ptr().add(d_off), len) };
                assert_eq!(
                    &dst[d_off..d_off + len],
                    &src[s_off..s_off + len],
                    "len {len}, distance {distance}"
                );
                assert!(
                    dst[..d_off].iter().all(|&b| b == 0),
                    "wrote before the range"
                );
                assert!(
                    dst[d_off + len..].iter().all(|&b| b == 0),
                    "wrote past the range"
                );
            }
        }
    }
}
