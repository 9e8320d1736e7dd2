//! A read-only look at what the endpoints of a live MPMC queue hold, for
//! fault-injection tools (`shmq torture` stops a process and asks whether
//! it sits inside a claim before it kills it there).
//!
//! Unlike [`crate::inspect()`], this maps the segment (read-only, never
//! attaching, never writing) so that it can read the registry and the slot
//! sequence words with atomic loads in the order the algorithm needs. The
//! layout and the sequence encoding come from `header.rs`, the only place
//! that defines them, so a layout change cannot silently break a tool.
//!
//! ```
//! use shmqueue::probe::{ClaimProbe, MpmcProbe};
//! # let name = format!("/doc-probe-{}", std::process::id());
//! let q = shmqueue::Mpmc::<u64>::create(&name, 8)?;
//! let _tx = q.producer()?;
//! let probe = MpmcProbe::open(&name)?;
//! // An idle producer holds no claim.
//! assert_eq!(probe.claim_of(std::process::id(), shmqueue::Role::Producer), ClaimProbe::None);
//! # shmqueue::unlink(&name)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::Range;

use crate::error::Role;
use crate::header::{
    mpmc_seq, EndpointEntry, Header, QueueKind, CLAIM_ACTIVE, HEADER_SIZE, LAYOUT_VERSION, MAGIC,
    REGISTRY_OFFSET, STATUS_ATTACHED, STATUS_MASK,
};
use crate::sync::{AtomicU64, Ordering};
use crate::{validate_name, Error};

/// What an endpoint holds, as far as the segment tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimProbe {
    /// No claim (or no attached endpoint of that process and role).
    None,
    /// A claim written, but the position not (or no longer) its own: about
    /// to compare-and-swap, or it lost the race for it.
    Pending,
    /// It won the position and has not published it (a producer: a hole if
    /// it dies now), or took the item and has not released the slot (a
    /// consumer: a slot to release if it dies now).
    Won,
    /// Another entry claims the same position: either may be the winner.
    Ambiguous,
}

/// A read-only mapping of an MPMC segment and its geometry.
#[derive(Debug)]
pub struct MpmcProbe {
    map: memmap2::Mmap,
    capacity: u64,
    slots: usize,
    stride: usize,
    producers: Range<u32>,
    consumers: Range<u32>,
}

impl MpmcProbe {
    /// Map `name` read-only. Fails with [`Error::Incompatible`] for another
    /// kind or layout version and [`Error::Foreign`] for a file that is not
    /// a shmqueue segment or whose geometry does not fit its size.
    pub fn open(name: &str) -> Result<MpmcProbe, Error> {
        validate_name(name)?;
        let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
        let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { name: name.into() },
            _ => Error::Io {
                op: "open (read-only)",
                source: e,
            },
        })?;
        // SAFETY: a read-only shared mapping; this module only ever reads it
        // through atomic loads (see `word` and `header`), so a writer in
        // another process races nothing here. A peer that truncates the file
        // can make a later load fault (SIGBUS), as for any named segment.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Io {
            op: "mmap (read-only)",
            source,
        })?;
        let foreign = |detail: String| Error::Foreign {
            name: name.into(),
            detail,
        };
        if map.len() < HEADER_SIZE {
            return Err(foreign(format!("{} bytes: no header", map.len())));
        }
        let mut p = MpmcProbe {
            map,
            capacity: 0,
            slots: 0,
            stride: 0,
            producers: 0..0,
            consumers: 0..0,
        };
        let id = &p.header().identity;
        let r = Ordering::Acquire;
        if id.magic.load(r) != MAGIC {
            return Err(foreign("not a shmqueue segment".into()));
        }
        let (version, kind) = (id.version.load(r), id.kind.load(r));
        if version != LAYOUT_VERSION {
            return Err(Error::Incompatible {
                field: "layout version",
                expected: LAYOUT_VERSION.into(),
                found: version.into(),
            });
        }
        if QueueKind::from_raw(kind) != Some(QueueKind::Mpmc) {
            return Err(Error::Incompatible {
                field: "queue kind",
                expected: QueueKind::Mpmc as u64,
                found: kind.into(),
            });
        }
        let (capacity, slots, stride) = (
            id.capacity.load(r),
            id.slots_offset.load(r),
            id.slot_stride.load(r),
        );
        let (entries, producers) = (id.endpoints.load(r), id.producer_entries.load(r));
        let len = p.map.len() as u64;
        let registry_end = REGISTRY_OFFSET as u64
            + core::mem::size_of::<EndpointEntry>() as u64 * u64::from(entries);
        let fits = capacity > 0
            && stride % 8 == 0
            && stride >= 8
            && slots % 8 == 0
            && registry_end <= slots
            && producers <= entries
            && capacity
                .checked_mul(stride)
                .and_then(|n| n.checked_add(slots))
                .is_some_and(|end| end <= len);
        if !fits {
            return Err(foreign("its geometry does not fit the file".into()));
        }
        p.capacity = capacity;
        p.slots = slots as usize;
        p.stride = stride as usize;
        p.producers = 0..producers;
        p.consumers = producers..entries;
        Ok(p)
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_SIZE bytes (checked in
        // `open`) and page-aligned; `Header` is `repr(C)` of atomics only,
        // valid for any bytes, and read only with atomic loads, which are
        // sound on read-only memory for atomics no wider than the native
        // width (here at most 8 bytes).
        unsafe { &*self.map.as_ptr().cast::<Header>() }
    }

    fn entry(&self, i: u32) -> &EndpointEntry {
        let off = REGISTRY_OFFSET + core::mem::size_of::<EndpointEntry>() * i as usize;
        // SAFETY: i < entries, and the registry lies inside the mapping
        // below the slots (checked in `open`); 128-aligned entries of atomics.
        unsafe { &*self.map.as_ptr().add(off).cast::<EndpointEntry>() }
    }

    fn seq(&self, pos: u64) -> u64 {
        let off = self.slots + self.stride * (pos % self.capacity) as usize;
        // SAFETY: the slot index is below `capacity` and every slot lies
        // inside the mapping (checked in `open`); the offset is 8-aligned.
        unsafe { &*self.map.as_ptr().add(off).cast::<AtomicU64>() }.load(Ordering::Acquire)
    }

    /// What the attached endpoint of `role` in process `pid` holds now.
    pub fn claim_of(&self, pid: u32, role: Role) -> ClaimProbe {
        let range = match role {
            Role::Producer => self.producers.clone(),
            Role::Consumer => self.consumers.clone(),
        };
        let Some(me) = range.clone().find(|&i| {
            let e = self.entry(i);
            e.state.load(Ordering::Acquire) & STATUS_MASK == STATUS_ATTACHED
                && e.pid.load(Ordering::Acquire) == pid
        }) else {
            return ClaimProbe::None;
        };
        let claim = self.entry(me).claim.load(Ordering::Acquire);
        if claim & CLAIM_ACTIVE == 0 {
            return ClaimProbe::None;
        }
        let pos = claim & !CLAIM_ACTIVE;
        if pos > mpmc_seq::MAX_POSITION {
            return ClaimProbe::None;
        }
        // Order matters: the index first (it synchronises with the winning
        // CAS, so the winner's claim is visible), then the other claims,
        // then the slot. A winner that has since published has also cleared
        // its claim, after its publication.
        let h = self.header();
        let index = match role {
            Role::Producer => h.head.value.load(Ordering::Acquire),
            Role::Consumer => h.tail.value.load(Ordering::Acquire),
        };
        if pos >= index {
            return ClaimProbe::Pending;
        }
        if range
            .filter(|&i| i != me)
            .any(|i| self.entry(i).claim.load(Ordering::Acquire) == claim)
        {
            return ClaimProbe::Ambiguous;
        }
        let seq = self.seq(pos);
        let held = match role {
            // Won, not yet published: still free for `pos`.
            Role::Producer => seq == mpmc_seq::free(pos),
            // Taken, not yet released: still published for `pos`.
            Role::Consumer => seq & !mpmc_seq::SKIP == mpmc_seq::published(pos),
        };
        if held {
            ClaimProbe::Won
        } else {
            ClaimProbe::Pending
        }
    }
}
