//! The endpoint registry: claiming a role (attach, with its kernel-held
//! liveness token), the [`Attachment`] an endpoint holds while attached,
//! detaching, and reaping the entries of dead holders.

use std::ptr::NonNull;
use std::sync::Arc;

use crate::error::Role;
use crate::header::{EndpointEntry, Header, STATUS_ATTACHED, STATUS_DETACHED, STATUS_MASK};
use crate::liveness;
use crate::mapping::Ring;
use crate::sync::Ordering;
use crate::wait::Throttle;
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

/// A held liveness token (see `liveness.rs`); under loom, the entry's flag
/// in the heap, released by [`Attachment`]'s drop.
#[cfg(not(shmqueue_loom))]
type Token = liveness::Token;
#[cfg(shmqueue_loom)]
#[derive(Debug)]
struct Token;

impl Ring {
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
    /// attach). `peer` is the entry the endpoint watches
    /// ([`Attachment::peer`]); `None` for its own.
    pub(crate) fn attach_any(
        self: &Arc<Ring>,
        range: std::ops::Range<u32>,
        role: Role,
        peer: Option<u32>,
        accept: impl Fn(u32, &EndpointEntry) -> bool,
    ) -> Result<Attachment, Error> {
        let limit = range.len() as u32;
        for i in range {
            if let Some(a) = self.try_attach(i, peer.unwrap_or(i), role, |e| accept(i, e))? {
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
    pub(crate) ring: Arc<Ring>,
    /// `ring.header()`.
    pub(crate) header: NonNull<Header>,
    /// `ring.entry(peer_index)`.
    pub(crate) peer: NonNull<EndpointEntry>,
    /// `ring.entry(index)`: this endpoint's own entry, written on every
    /// MPMC claim.
    pub(crate) own: NonNull<EndpointEntry>,
    pub(crate) peer_index: u32,
    /// `ring.slots()`: `buffer_size` slots of `slot_stride` bytes.
    #[cfg(not(shmqueue_loom))]
    pub(crate) slots: NonNull<u8>,
    /// `ring.geom().buffer_size`.
    pub(crate) buffer_size: usize,
    /// `ring.geom().slot_stride` and `value_offset` (MPMC slot addressing).
    pub(crate) stride: usize,
    pub(crate) value_offset: usize,
    pub(crate) index: u32,
    pub(crate) state: u32,
    pub(crate) detached: bool,
    /// The fork generation this endpoint attached in (liveness.rs, "Fork"):
    /// in a forked child's copy it differs, and the copy acts for nobody.
    pub(crate) generation: u64,
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

    /// This endpoint's own registry entry.
    #[inline]
    pub(crate) fn own(&self) -> &EndpointEntry {
        // SAFETY: `own` is `ring.entry(index)`, which lives as long as the
        // mapping, which `self.ring` keeps alive for as long as `&self`.
        unsafe { self.own.as_ref() }
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
