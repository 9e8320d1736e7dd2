//! The segment header: a versioned, self-describing, `#[repr(C)]` block at
//! offset 0 of every segment, and the geometry computed from it.
//!
//! Layout (every block starts on its own 128-byte line, because the
//! adjacent-line prefetcher on x86 pulls lines in pairs and 64-byte padding
//! still false-shares):
//!
//! | offset | block | written by |
//! |---|---|---|
//! | 0   | [`Identity`]: magic, version, kind, geometry, schema, init word | creator, once |
//! | 128 | `head` index line (SPSC `in`) | producer |
//! | 256 | `tail` index line (SPSC `out`) | consumer |
//! | 384 | [`Events`]: futex words, armed flags, attach and recovery counters | waiters, notifiers, endpoints |
//! | 512 | endpoint registry, [`EndpointEntry`] × `endpoints`, 128 bytes each | endpoints |
//! | `slots_offset` | the slot array, `buffer_size` × `slot_stride` bytes | producers write, consumers read |
//!
//! Every field is an atomic of fixed width, so a `&Header` over memory that
//! other processes write is sound, and a hostile peer can at worst make us
//! read wrong *values*, which are bounded before use.

use crate::error::Corruption;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::Error;

/// `b"SHMQUEUE"` read as a little-endian u64.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMQUEUE");
/// Bumped on any change to the layout below. Version 2: MPMC slot
/// sequences count half-steps (see [`mpmc_seq`]), so capacity 1 works.
/// Version 3: the broadcast kind, with [`Identity::max_lag_ns`],
/// [`Events::joins`] and [`EndpointEntry::mark`] (unused by the other kinds,
/// whose layout is otherwise unchanged).
pub(crate) const LAYOUT_VERSION: u32 = 3;
/// The false-sharing range (see the module docs).
pub(crate) const LINE: usize = 128;
/// Value of [`Identity::init`] once the creator has written everything else.
pub(crate) const INIT_READY: u32 = 0x5244_5921; // "!YDR" - any value a zeroed file cannot hold
/// Offset of the endpoint registry.
pub(crate) const REGISTRY_OFFSET: usize = 4 * LINE;
/// Largest element alignment supported (a page).
pub(crate) const MAX_ALIGN: usize = 4096;

/// What algorithm a segment's slots are laid out for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum QueueKind {
    /// Single producer, single consumer ring ([`crate::Spsc`]).
    Spsc = 1,
    /// Many producers, many consumers work queue ([`crate::Mpmc`]).
    Mpmc = 2,
    /// Single producer, single consumer ring of variable-size byte messages
    /// ([`crate::ByteRing`]); its capacity is in bytes.
    Bytes = 3,
    /// One publisher, many subscribers, each of which sees every item
    /// ([`crate::Broadcast`]).
    Broadcast = 4,
}

impl QueueKind {
    /// Every kind this build knows, in the order of their numbers.
    pub const ALL: &'static [QueueKind] = &[
        QueueKind::Spsc,
        QueueKind::Mpmc,
        QueueKind::Bytes,
        QueueKind::Broadcast,
    ];

    /// The kind stored in a header as `raw`, if this build knows it.
    ///
    /// ```
    /// use shmqueue::QueueKind;
    /// assert_eq!(QueueKind::from_raw(3), Some(QueueKind::Bytes));
    /// assert_eq!(QueueKind::from_raw(0), None);
    /// for &k in QueueKind::ALL {
    ///     assert_eq!(QueueKind::from_raw(k as u32), Some(k));
    /// }
    /// ```
    pub fn from_raw(raw: u32) -> Option<QueueKind> {
        QueueKind::ALL.iter().copied().find(|&k| k as u32 == raw)
    }

    /// Lower-case name, as `shmq ls` shows it: `"spsc"`, `"mpmc"`, `"bytes"`,
    /// `"broadcast"`.
    pub fn label(self) -> &'static str {
        match self {
            QueueKind::Spsc => "spsc",
            QueueKind::Mpmc => "mpmc",
            QueueKind::Bytes => "bytes",
            QueueKind::Broadcast => "broadcast",
        }
    }
}

/// The largest byte position a byte ring may hold: 2^62. Below it a
/// position plus any capacity cannot overflow a u64. A position read from
/// the segment above it is `Corrupt`. A ring reaches it only after carrying
/// 2^62 bytes (at 10 GB/s, 14.6 years). MPMC positions have their own,
/// lower bound ([`mpmc_seq::MAX_POSITION`]).
pub(crate) const MAX_POSITION: u64 = 1 << 62;

/// Smallest byte-ring capacity (bytes).
pub(crate) const MIN_BYTE_CAPACITY: usize = 64;
/// Byte-ring records (and so the capacity) are multiples of this.
pub(crate) const BYTE_RECORD_ALIGN: usize = 8;

/// [`Identity::flags`] bit: MPMC and broadcast slots padded to whole
/// 128-byte lines.
pub(crate) const FLAG_PADDED_SLOTS: u32 = 1;
/// [`Identity::flags`] bit: a broadcast ring whose publisher overwrites
/// (never waits); without it the ring is lossless.
pub(crate) const FLAG_OVERWRITE: u32 = 2;

/// Line 0: what this segment is. Written once by the creator before `init`.
#[repr(C, align(128))]
pub(crate) struct Identity {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub kind: AtomicU32,
    pub elem_size: AtomicU64,
    pub elem_align: AtomicU64,
    pub capacity: AtomicU64,
    pub buffer_size: AtomicU64,
    pub schema: AtomicU64,
    pub total_size: AtomicU64,
    pub slots_offset: AtomicU64,
    pub slot_stride: AtomicU64,
    pub endpoints: AtomicU32,
    /// Written last, with Release: an opener that reads [`INIT_READY`] with
    /// Acquire sees every field above. Also a futex word the creator wakes.
    pub init: AtomicU32,
    pub creator_pid: AtomicU32,
    /// Layout options ([`FLAG_PADDED_SLOTS`]).
    pub flags: AtomicU32,
    /// Registry entries `[0, producer_entries)` are producers', the rest
    /// consumers' (SPSC: 1 and 1).
    pub producer_entries: AtomicU32,
    pub _pad: AtomicU32,
    /// Broadcast, lossless: how long (ns) a publisher waits on one
    /// subscriber that keeps the ring full before evicting it; 0: never.
    pub max_lag_ns: AtomicU64,
}

/// A line holding one index, owned (written) by one side.
#[repr(C, align(128))]
pub(crate) struct IndexLine {
    pub value: AtomicU64,
}

/// One direction of the waiting protocol (see `wait.rs`). The epoch is the
/// futex word; `armed` (non-zero: someone may sleep on the epoch) is a
/// separate word, so the futex word is only ever accessed as a whole `u32`.
#[repr(C)]
pub(crate) struct Event {
    pub epoch: AtomicU32,
    pub armed: AtomicU32,
}

/// Line 3: both events, and counters that change only on attach, detach
/// and recovery. In steady streaming nobody sleeps or attaches, so this line
/// is only read and stays shared in every cache.
#[repr(C, align(128))]
pub(crate) struct Events {
    /// Consumers sleep here; producers notify after publishing.
    pub not_empty: Event,
    /// Producers sleep here; consumers notify after releasing.
    pub not_full: Event,
    /// MPMC: producers attached (incremented on attach, decremented exactly
    /// once per attach, by whoever marks the entry DETACHED).
    pub producers: AtomicU32,
    /// MPMC: consumers attached (as `producers`).
    pub consumers: AtomicU32,
    /// MPMC: bit 0 once any producer attached, bit 1 once any consumer did;
    /// "disconnected" means "had one, has none".
    pub ever: AtomicU32,
    /// Broadcast: bumped by a subscriber that (re)joins the gating set, so
    /// the publisher rescans the cursors before it next overwrites a slot.
    pub joins: AtomicU32,
    /// MPMC: holes left by dead producers that consumers skipped.
    /// Broadcast: subscribers evicted for lagging.
    pub holes: AtomicU64,
    /// MPMC: slots taken by dead consumers that producers released.
    /// Broadcast: times a subscriber found itself lapped.
    pub releases: AtomicU64,
}

/// Endpoint status, in the low two bits of [`EndpointEntry::state`]; the
/// upper 30 bits are a generation bumped on every attach, so that a
/// compare-and-swap that marks a dead holder detached cannot clobber a new
/// holder's attach.
#[allow(dead_code)] // a zero-filled entry is vacant; named for the docs
pub(crate) const STATUS_VACANT: u32 = 0;
pub(crate) const STATUS_ATTACHED: u32 = 1;
pub(crate) const STATUS_DETACHED: u32 = 2;
pub(crate) const STATUS_MASK: u32 = 3;

/// One registry entry: an endpoint role and who holds it. The kernel-held
/// liveness token for entry `i` is an OFD lock on byte `i` of the segment
/// file (see `liveness.rs`). Each entry has its own line: an MPMC endpoint
/// writes its claim on every operation.
#[repr(C, align(128))]
pub(crate) struct EndpointEntry {
    pub state: AtomicU32,
    pub pid: AtomicU32,
    /// MPMC: the position this endpoint is claiming or holds, with
    /// [`CLAIM_ACTIVE`] set; 0 when it holds none. Written before the claim
    /// is attempted, so a dead claimant can be identified without guessing.
    /// Broadcast subscribers: the next position this subscriber will read.
    pub claim: AtomicU64,
    /// Broadcast subscribers: non-zero once the publisher evicted this
    /// subscriber (the cursor it had, with bit 63 set); cleared by the
    /// subscriber when it rejoins.
    pub mark: AtomicU64,
}

/// Set in [`EndpointEntry::claim`] while the claim is live.
pub(crate) const CLAIM_ACTIVE: u64 = 1 << 63;

/// The MPMC slot sequence word: what a slot's first 8 bytes say about it.
///
/// Vyukov's queue writes `p` (free for position `p`) and `p + 1` (published
/// for `p`); with one slot, "published for `p`" and "free for `p + 1`"
/// (`p + capacity`) are the same value and a producer could overwrite an
/// unconsumed item (the loom model `one_producer_two_consumers_wrap` found
/// it). Crossbeam's ArrayQueue keeps them apart by counting laps in units of
/// `(cap + 1).next_power_of_two()`; here the sequence counts half-steps
/// instead: free for `p` is `2p`, published for `p` is `2p + 1`, so every
/// capacity from 1 up is sound and a position is still a plain item count.
/// Positions are at most [`mpmc_seq::MAX_POSITION`] (2^61), so even
/// `2 (p + capacity) + 1` stays below 2^63 and bit 63 is free for
/// [`mpmc_seq::SKIP`] and [`CLAIM_ACTIVE`].
///
/// This module is the one place that knows the encoding: the queue, the
/// segment initialisation and the inspection probes all go through it.
pub(crate) mod mpmc_seq {
    /// The largest MPMC position (head, tail, a claim) a segment may hold.
    /// A larger one read from the segment is `Corrupt`: before this bound, a
    /// peer storing head = 2^63 made every push Full and every pop Empty,
    /// since bit 63 is the SKIP and claim marker. A queue reaches it only
    /// after 2^61 items (at 10^8 items/s, 730 years).
    pub(crate) const MAX_POSITION: u64 = 1 << 61;

    /// Set on a published sequence whose producer died before writing the
    /// value (a hole): consumers take the position and deliver nothing.
    pub(crate) const SKIP: u64 = 1 << 63;

    /// The slot is free for a producer at position `pos`.
    #[inline(always)]
    pub(crate) const fn free(pos: u64) -> u64 {
        // Mutation for the loom suite: Vyukov's single-step sequences.
        #[cfg(shmqueue_mutation = "vyukov_seq")]
        return pos;
        #[cfg(not(shmqueue_mutation = "vyukov_seq"))]
        return pos << 1;
    }

    /// The slot holds the item of position `pos`, for a consumer at `pos`.
    #[inline(always)]
    pub(crate) const fn published(pos: u64) -> u64 {
        #[cfg(shmqueue_mutation = "vyukov_seq")]
        return pos + 1;
        #[cfg(not(shmqueue_mutation = "vyukov_seq"))]
        return (pos << 1) | 1;
    }
}

/// The broadcast slot sequence word: a seqlock over the slot's value.
///
/// 0 (a zero-filled slot) is "never written". The publisher of position
/// `p` stores [`writing(p)`](bcast_seq::writing) before it copies the value
/// in and [`published(p)`](bcast_seq::published) after; a subscriber at `p`
/// reads the value only when it sees `published(p)` both before and after
/// its copy, so an overwrite racing the copy is detected, never delivered.
/// A value above `published(p)` means the slot has moved on to a later lap
/// (the subscriber was lapped). Positions are below
/// [`mpmc_seq::MAX_POSITION`] (2^61), so every sequence fits in 63 bits.
pub(crate) mod bcast_seq {
    /// The publisher is copying in the value of position `pos`.
    #[inline(always)]
    pub(crate) const fn writing(pos: u64) -> u64 {
        (pos << 1) | 1
    }

    /// The slot holds the value of position `pos`.
    #[inline(always)]
    pub(crate) const fn published(pos: u64) -> u64 {
        (pos << 1) + 2
    }

    /// Set in [`EndpointEntry::mark`](super::EndpointEntry::mark) by the
    /// publisher that evicts a subscriber (with the cursor it had below).
    pub(crate) const EVICTED: u64 = 1 << 63;
}

/// The fixed part of the header; the registry and slots follow at offsets
/// recorded in [`Identity`].
#[repr(C)]
pub(crate) struct Header {
    pub identity: Identity,
    pub head: IndexLine,
    pub tail: IndexLine,
    pub events: Events,
}

/// Size of the fixed header.
pub(crate) const HEADER_SIZE: usize = core::mem::size_of::<Header>();

#[cfg(not(shmqueue_loom))]
mod layout_pins {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};
    use static_assertions::const_assert_eq;

    const_assert_eq!(size_of::<Identity>(), LINE);
    const_assert_eq!(offset_of!(Identity, magic), 0);
    const_assert_eq!(offset_of!(Identity, version), 8);
    const_assert_eq!(offset_of!(Identity, kind), 12);
    const_assert_eq!(offset_of!(Identity, elem_size), 16);
    const_assert_eq!(offset_of!(Identity, elem_align), 24);
    const_assert_eq!(offset_of!(Identity, capacity), 32);
    const_assert_eq!(offset_of!(Identity, buffer_size), 40);
    const_assert_eq!(offset_of!(Identity, schema), 48);
    const_assert_eq!(offset_of!(Identity, total_size), 56);
    const_assert_eq!(offset_of!(Identity, slots_offset), 64);
    const_assert_eq!(offset_of!(Identity, slot_stride), 72);
    const_assert_eq!(offset_of!(Identity, endpoints), 80);
    const_assert_eq!(offset_of!(Identity, init), 84);
    const_assert_eq!(offset_of!(Identity, creator_pid), 88);
    const_assert_eq!(offset_of!(Identity, flags), 92);
    const_assert_eq!(offset_of!(Identity, producer_entries), 96);
    const_assert_eq!(offset_of!(Identity, max_lag_ns), 104);
    const_assert_eq!(size_of::<IndexLine>(), LINE);
    const_assert_eq!(size_of::<Event>(), 8);
    const_assert_eq!(offset_of!(Event, epoch), 0);
    const_assert_eq!(offset_of!(Event, armed), 4);
    const_assert_eq!(size_of::<Events>(), LINE);
    const_assert_eq!(offset_of!(Events, not_empty), 0);
    const_assert_eq!(offset_of!(Events, not_full), 8);
    const_assert_eq!(offset_of!(Events, producers), 16);
    const_assert_eq!(offset_of!(Events, consumers), 20);
    const_assert_eq!(offset_of!(Events, ever), 24);
    const_assert_eq!(offset_of!(Events, joins), 28);
    const_assert_eq!(offset_of!(Events, holes), 32);
    const_assert_eq!(offset_of!(Events, releases), 40);
    const_assert_eq!(size_of::<EndpointEntry>(), LINE);
    const_assert_eq!(offset_of!(EndpointEntry, state), 0);
    const_assert_eq!(offset_of!(EndpointEntry, pid), 4);
    const_assert_eq!(offset_of!(EndpointEntry, claim), 8);
    const_assert_eq!(offset_of!(EndpointEntry, mark), 16);
    const_assert_eq!(offset_of!(Header, identity), 0);
    const_assert_eq!(offset_of!(Header, head), LINE);
    const_assert_eq!(offset_of!(Header, tail), 2 * LINE);
    const_assert_eq!(offset_of!(Header, events), 3 * LINE);
    const_assert_eq!(size_of::<Header>(), REGISTRY_OFFSET);
    const_assert_eq!(align_of::<Header>(), LINE);
    // The atomics must have the plain integers' layout for the segment to
    // mean the same to every process.
    const_assert_eq!(size_of::<AtomicU32>(), 4);
    const_assert_eq!(size_of::<AtomicU64>(), 8);
    // Byte ring: the data area starts 8-aligned, so every record header
    // (at a multiple of 8 from it) is an aligned pair of u32s.
    const_assert_eq!(QueueKind::Bytes as u32, 3);
    const_assert_eq!((REGISTRY_OFFSET + 2 * LINE) % BYTE_RECORD_ALIGN, 0);
    const_assert_eq!(MIN_BYTE_CAPACITY % BYTE_RECORD_ALIGN, 0);
}

/// The shape of a segment, computed with checked arithmetic from a handful of
/// parameters, and copied into process-local memory once. Nothing here is
/// re-read from the segment after validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub kind: QueueKind,
    pub elem_size: usize,
    pub elem_align: usize,
    pub capacity: usize,
    /// Slots in the ring: `capacity + 1` for the SPSC ring (one always empty).
    pub buffer_size: usize,
    pub endpoints: u32,
    /// Registry entries reserved for producers (the rest are consumers').
    pub producer_entries: u32,
    pub slots_offset: usize,
    pub slot_stride: usize,
    /// Offset of the value within a slot (MPMC: after the sequence word).
    pub value_offset: usize,
    pub total_size: usize,
    pub schema: u64,
    pub flags: u32,
    /// Broadcast: [`Identity::max_lag_ns`] (0 for every other kind).
    pub max_lag_ns: u64,
}

fn too_big(what: &str) -> Error {
    Error::InvalidArgument {
        detail: format!("{what} overflows the address space; use a smaller capacity"),
    }
}

impl Geometry {
    /// Compute the geometry for a new segment, or for checking an existing one.
    // One parameter per header field it derives from; a struct would only
    // restate the header.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compute(
        kind: QueueKind,
        elem_size: usize,
        elem_align: usize,
        capacity: usize,
        producer_entries: u32,
        consumer_entries: u32,
        schema: u64,
        flags: u32,
    ) -> Result<Geometry, Error> {
        if !(1..=MAX_ENDPOINTS).contains(&producer_entries)
            || !(1..=MAX_ENDPOINTS).contains(&consumer_entries)
        {
            return Err(Error::InvalidArgument {
                detail: format!(
                    "endpoint limits must be 1..={MAX_ENDPOINTS} each \
                     (got {producer_entries} producers, {consumer_entries} consumers)"
                ),
            });
        }
        let endpoints = producer_entries + consumer_entries;
        if capacity == 0 {
            return Err(Error::InvalidArgument {
                detail: "capacity must be at least 1".into(),
            });
        }
        if !elem_align.is_power_of_two() || elem_align > MAX_ALIGN {
            return Err(Error::InvalidArgument {
                detail: format!(
                    "element alignment {elem_align} is not a power of two <= {MAX_ALIGN}"
                ),
            });
        }
        if elem_size % elem_align != 0 {
            return Err(Error::InvalidArgument {
                detail: format!(
                    "element size {elem_size} is not a multiple of its alignment {elem_align}"
                ),
            });
        }
        let (buffer_size, value_offset, slot_stride) = match kind {
            QueueKind::Spsc => (
                capacity
                    .checked_add(1)
                    .ok_or_else(|| too_big("capacity + 1"))?,
                0,
                elem_size,
            ),
            QueueKind::Mpmc | QueueKind::Broadcast => {
                // Any capacity >= 1: the sequence encoding keeps "published
                // for p" and "free for p + capacity" apart (see mpmc_seq).
                // A slot is its sequence word, then the value: one hand-off
                // moves one line. Compact slots are a power of two up to a
                // line, so none straddles two; padded ones own whole lines.
                let value_offset = 8usize.max(elem_align);
                let raw = value_offset
                    .checked_add(elem_size)
                    .ok_or_else(|| too_big("slot"))?;
                let stride = if flags & FLAG_PADDED_SLOTS != 0 || raw > LINE {
                    raw.checked_next_multiple_of(LINE.max(elem_align))
                } else {
                    Some(raw.next_power_of_two())
                }
                .ok_or_else(|| too_big("slot"))?;
                (capacity, value_offset, stride)
            }
            // A byte ring is `capacity` bytes of 8-byte-aligned records; the
            // "slots" are its bytes (see bytes.rs).
            QueueKind::Bytes => {
                if capacity < MIN_BYTE_CAPACITY || capacity % BYTE_RECORD_ALIGN != 0 {
                    return Err(Error::InvalidArgument {
                        detail: format!(
                            "a byte ring's capacity must be a multiple of {BYTE_RECORD_ALIGN} \
                             bytes, at least {MIN_BYTE_CAPACITY} (got {capacity})"
                        ),
                    });
                }
                (capacity, 0, 1)
            }
        };
        let registry_bytes = (endpoints as usize)
            .checked_mul(core::mem::size_of::<EndpointEntry>())
            .ok_or_else(|| too_big("registry"))?;
        let slots_align = elem_align.max(LINE);
        let slots_offset = REGISTRY_OFFSET
            .checked_add(registry_bytes)
            .and_then(|v| v.checked_next_multiple_of(slots_align))
            .ok_or_else(|| too_big("slot offset"))?;
        let total_size = buffer_size
            .checked_mul(slot_stride)
            .and_then(|b| b.checked_add(slots_offset))
            .filter(|&t| t <= isize::MAX as usize && (t as u64) < i64::MAX as u64)
            .ok_or_else(|| too_big("segment size"))?;
        Ok(Geometry {
            kind,
            elem_size,
            elem_align,
            capacity,
            buffer_size,
            endpoints,
            producer_entries,
            slots_offset,
            slot_stride,
            value_offset,
            total_size,
            schema,
            flags,
            max_lag_ns: 0,
        })
    }

    /// Write the identity block. The caller publishes it with [`Identity::init`].
    pub(crate) fn write_identity(&self, id: &Identity, creator_pid: u32) {
        let r = Ordering::Relaxed;
        id.magic.store(MAGIC, r);
        id.version.store(LAYOUT_VERSION, r);
        id.kind.store(self.kind as u32, r);
        id.elem_size.store(self.elem_size as u64, r);
        id.elem_align.store(self.elem_align as u64, r);
        id.capacity.store(self.capacity as u64, r);
        id.buffer_size.store(self.buffer_size as u64, r);
        id.schema.store(self.schema, r);
        id.total_size.store(self.total_size as u64, r);
        id.slots_offset.store(self.slots_offset as u64, r);
        id.slot_stride.store(self.slot_stride as u64, r);
        id.endpoints.store(self.endpoints, r);
        id.creator_pid.store(creator_pid, r);
        id.flags.store(self.flags, r);
        id.producer_entries.store(self.producer_entries, r);
        id.max_lag_ns.store(self.max_lag_ns, r);
    }

    /// Read and validate an identity block that has been published (the
    /// caller has seen [`INIT_READY`] with Acquire). `expect` carries what the
    /// opener's type requires; the capacity is taken from the segment, and
    /// the geometry recomputed from it must match every stored derived value
    /// and `file_size`.
    pub(crate) fn validate(
        id: &Identity,
        expect: &Expected,
        file_size: u64,
        name: &str,
    ) -> Result<Geometry, Error> {
        let r = Ordering::Relaxed;
        let magic = id.magic.load(r);
        if magic != MAGIC {
            return Err(Error::Foreign {
                name: name.into(),
                detail: format!("bad magic {magic:#018x}"),
            });
        }
        let incompatible = |field, expected: u64, found: u64| {
            if expected == found {
                Ok(())
            } else {
                Err(Error::Incompatible {
                    field,
                    expected,
                    found,
                })
            }
        };
        incompatible(
            "layout version",
            LAYOUT_VERSION.into(),
            id.version.load(r).into(),
        )?;
        incompatible("queue kind", expect.kind as u64, id.kind.load(r).into())?;
        incompatible(
            "element size",
            expect.elem_size as u64,
            id.elem_size.load(r),
        )?;
        incompatible(
            "element alignment",
            expect.elem_align as u64,
            id.elem_align.load(r),
        )?;
        incompatible("schema tag", expect.schema, id.schema.load(r))?;

        let corrupt =
            |what, found: u64, limit: u64| Error::Corrupt(Corruption { what, found, limit });
        let capacity = id.capacity.load(r);
        let capacity = usize::try_from(capacity)
            .map_err(|_| corrupt("capacity", capacity, usize::MAX as u64))?;
        let endpoints = id.endpoints.load(r);
        let producer_entries = id.producer_entries.load(r);
        if let Some((p, c)) = expect.entries {
            if (producer_entries, endpoints) != (p, p + c) {
                return Err(corrupt("endpoint count", endpoints.into(), (p + c).into()));
            }
        }
        if producer_entries == 0 || producer_entries >= endpoints {
            return Err(corrupt(
                "producer entries",
                producer_entries.into(),
                endpoints.into(),
            ));
        }
        let flags = id.flags.load(r);
        let known = known_flags(expect.kind);
        if flags & !known != 0 {
            return Err(corrupt("layout flags", flags.into(), known.into()));
        }
        let g = Geometry::compute(
            expect.kind,
            expect.elem_size,
            expect.elem_align,
            capacity,
            producer_entries,
            endpoints - producer_entries,
            expect.schema,
            flags,
        )
        .map_err(|_| corrupt("capacity", capacity as u64, isize::MAX as u64))?;
        let check = |what, found: u64, want: usize| {
            if found == want as u64 {
                Ok(())
            } else {
                Err(corrupt(what, found, want as u64))
            }
        };
        check("buffer size", id.buffer_size.load(r), g.buffer_size)?;
        check("total size", id.total_size.load(r), g.total_size)?;
        check("slots offset", id.slots_offset.load(r), g.slots_offset)?;
        check("slot stride", id.slot_stride.load(r), g.slot_stride)?;
        check("file size", file_size, g.total_size)?;
        let mut g = g;
        g.max_lag_ns = id.max_lag_ns.load(r);
        if g.kind != QueueKind::Broadcast && g.max_lag_ns != 0 {
            return Err(corrupt("max lag", g.max_lag_ns, 1));
        }
        Ok(g)
    }

    /// Check an index read from shared memory before it is used to address a
    /// slot: `Corrupt` instead of an access outside the ring.
    #[inline]
    pub(crate) fn check_index(&self, what: &'static str, v: u64) -> Result<usize, Corruption> {
        if v < self.buffer_size as u64 {
            Ok(v as usize)
        } else {
            Err(Corruption {
                what,
                found: v,
                limit: self.buffer_size as u64,
            })
        }
    }
}

/// The [`Identity::flags`] bits a segment of `kind` may carry.
pub(crate) fn known_flags(kind: QueueKind) -> u32 {
    match kind {
        QueueKind::Spsc | QueueKind::Bytes => 0,
        QueueKind::Mpmc => FLAG_PADDED_SLOTS,
        QueueKind::Broadcast => FLAG_PADDED_SLOTS | FLAG_OVERWRITE,
    }
}

/// What an opener's element type and options require of a segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Expected {
    pub kind: QueueKind,
    pub elem_size: usize,
    pub elem_align: usize,
    /// Producer and consumer registry entries, if fixed by the kind (SPSC);
    /// `None` accepts what the creator chose (MPMC).
    pub entries: Option<(u32, u32)>,
    pub schema: u64,
}

/// Most registry entries of one role.
pub(crate) const MAX_ENDPOINTS: u32 = 1024;

/// Under loom the header lives on the heap, built from loom's atomics; a
/// zero-filled segment is the `Default` of every field.
#[cfg(shmqueue_loom)]
impl Header {
    pub(crate) fn new_zeroed() -> Header {
        let u32_ = || AtomicU32::new(0);
        let u64_ = || AtomicU64::new(0);
        Header {
            identity: Identity {
                magic: u64_(),
                version: u32_(),
                kind: u32_(),
                elem_size: u64_(),
                elem_align: u64_(),
                capacity: u64_(),
                buffer_size: u64_(),
                schema: u64_(),
                total_size: u64_(),
                slots_offset: u64_(),
                slot_stride: u64_(),
                endpoints: u32_(),
                init: u32_(),
                creator_pid: u32_(),
                flags: u32_(),
                producer_entries: u32_(),
                _pad: u32_(),
                max_lag_ns: u64_(),
            },
            head: IndexLine { value: u64_() },
            tail: IndexLine { value: u64_() },
            events: Events {
                not_empty: Event {
                    epoch: u32_(),
                    armed: u32_(),
                },
                not_full: Event {
                    epoch: u32_(),
                    armed: u32_(),
                },
                producers: u32_(),
                consumers: u32_(),
                ever: u32_(),
                joins: u32_(),
                holes: u64_(),
                releases: u64_(),
            },
        }
    }
}

#[cfg(shmqueue_loom)]
impl EndpointEntry {
    pub(crate) fn new_zeroed() -> EndpointEntry {
        EndpointEntry {
            state: AtomicU32::new(0),
            pid: AtomicU32::new(0),
            claim: AtomicU64::new(0),
            mark: AtomicU64::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spsc_geometry_is_capacity_plus_one_slots_after_registry() {
        let g = Geometry::compute(QueueKind::Spsc, 8, 8, 1024, 1, 1, 0, 0).unwrap();
        assert_eq!(g.buffer_size, 1025);
        assert_eq!(g.slots_offset, 768);
        assert_eq!(g.total_size, 768 + 1025 * 8);
    }

    #[test]
    fn mpmc_slots_never_straddle_a_line() {
        let g = Geometry::compute(QueueKind::Mpmc, 8, 8, 1000, 64, 64, 0, 0).unwrap();
        assert_eq!(
            (g.buffer_size, g.value_offset, g.slot_stride),
            (1000, 8, 16)
        );
        assert_eq!(g.slots_offset, 512 + 128 * 128);
        let g = Geometry::compute(QueueKind::Mpmc, 40, 8, 4, 1, 1, 0, 0).unwrap();
        assert_eq!(g.slot_stride, 64);
        let g = Geometry::compute(QueueKind::Mpmc, 8, 8, 4, 1, 1, 0, FLAG_PADDED_SLOTS).unwrap();
        assert_eq!(g.slot_stride, 128);
        let g = Geometry::compute(QueueKind::Mpmc, 200, 8, 4, 1, 1, 0, 0).unwrap();
        assert_eq!(g.slot_stride, 256);
        let g = Geometry::compute(QueueKind::Mpmc, 256, 256, 4, 1, 1, 0, 0).unwrap();
        assert_eq!((g.value_offset, g.slot_stride), (256, 512));
        // Capacity 1 is a queue like any other (layout version 2).
        let g = Geometry::compute(QueueKind::Mpmc, 8, 8, 1, 1, 1, 0, 0).unwrap();
        assert_eq!((g.buffer_size, g.slot_stride), (1, 16));
    }

    /// The sequence encoding keeps "published for p" apart from "free for
    /// p + capacity" at every capacity, 1 included (the collision that made
    /// Vyukov's p / p + 1 encoding refuse capacity 1).
    #[test]
    fn mpmc_sequences_never_collide() {
        use super::mpmc_seq::{free, published, MAX_POSITION, SKIP};
        for cap in [1u64, 2, 3, 7, 1024] {
            for p in (0..50).chain(MAX_POSITION - 50..=MAX_POSITION) {
                assert_ne!(published(p), free(p + cap), "cap {cap}, p {p}");
                assert!(free(p) < published(p) && published(p) < free(p + cap));
                assert_eq!(free(p + cap) & SKIP, 0, "bit 63 stays free");
            }
        }
    }

    #[test]
    fn geometry_rejects_zero_capacity_and_overflow() {
        assert!(Geometry::compute(QueueKind::Spsc, 8, 8, 0, 1, 1, 0, 0).is_err());
        assert!(Geometry::compute(QueueKind::Spsc, 8, 8, usize::MAX, 1, 1, 0, 0).is_err());
        assert!(Geometry::compute(QueueKind::Spsc, 1 << 40, 8, 1 << 40, 1, 1, 0, 0).is_err());
    }

    #[test]
    fn byte_ring_geometry_is_capacity_bytes_after_registry() {
        let g = Geometry::compute(QueueKind::Bytes, 1, 1, 4096, 1, 1, 0, 0).unwrap();
        assert_eq!(
            (g.buffer_size, g.slot_stride, g.slots_offset),
            (4096, 1, 768)
        );
        assert_eq!(g.total_size, 768 + 4096);
        assert!(Geometry::compute(QueueKind::Bytes, 1, 1, 4100, 1, 1, 0, 0).is_err());
        assert!(Geometry::compute(QueueKind::Bytes, 1, 1, 56, 1, 1, 0, 0).is_err());
    }

    #[test]
    fn large_alignment_moves_the_slot_array() {
        let g = Geometry::compute(QueueKind::Spsc, 4096, 4096, 3, 1, 1, 0, 0).unwrap();
        assert_eq!(g.slots_offset, 4096);
    }
}
