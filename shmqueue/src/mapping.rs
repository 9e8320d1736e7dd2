//! A validated, mapped segment: the header, the endpoint registry and the
//! slot array, plus the process-local copy of the geometry (`Ring`).
//!
//! With `registry.rs` (roles) and `slots.rs` (payload), this is where the
//! mapping's base pointer turns into references and slot addresses;
//! everything above is safe code over `&Header`, `&EndpointEntry` and the
//! slot-copy functions.
//!
//! Under `--cfg shmqueue_loom` the same `Ring` is backed by a heap-allocated
//! header, registry and slot cells (loom cannot model `mmap`), and liveness
//! tokens are loom atomics instead of OFD locks; everything above this
//! module, the ring algorithm and the waiting protocol, is the same code.

use std::ptr::NonNull;

use crate::error::Corruption;
use crate::header::{EndpointEntry, Expected, Geometry, Header, INIT_READY, REGISTRY_OFFSET};
use crate::segment::{Segment, SegmentOptions};
use crate::sync::Ordering;
use crate::wait::{futex_wait, futex_wake_all, Deadline};
use crate::Error;

pub(crate) struct Ring {
    #[cfg(not(shmqueue_loom))]
    pub(crate) seg: Segment,
    #[cfg(shmqueue_loom)]
    pub(crate) heap: heap::Heap,
    pub(crate) geom: Geometry,
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
        /// MPMC and broadcast slot sequence words.
        pub seqs: Box<[crate::sync::AtomicU64]>,
        /// Broadcast slot values as atomic words (`words_per_slot` each):
        /// a subscriber's copy may race an overwrite by design (it is
        /// validated after), so the model copies with atomics, as the real
        /// code does.
        pub words: Box<[crate::sync::AtomicU64]>,
        pub words_per_slot: usize,
    }
}

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
                .map(|i| {
                    crate::sync::AtomicU64::new(match geom.kind {
                        crate::header::QueueKind::Mpmc => crate::header::mpmc_seq::free(i as u64),
                        _ => 0,
                    })
                })
                .collect(),
            words: if geom.kind == crate::header::QueueKind::Broadcast {
                (0..geom.buffer_size * geom.elem_size.div_ceil(8))
                    .map(|_| crate::sync::AtomicU64::new(0))
                    .collect()
            } else {
                Box::new([])
            },
            words_per_slot: geom.elem_size.div_ceil(8),
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

    /// MPMC and broadcast: the sequence word of slot `i`, for code that
    /// holds no attachment (panics if `i` is out of range: only a bug can
    /// cause it).
    pub(crate) fn mpmc_seq(&self, i: usize) -> &crate::sync::AtomicU64 {
        assert!(i < self.geom.buffer_size, "slot index out of range");
        debug_assert!(matches!(
            self.geom.kind,
            crate::header::QueueKind::Mpmc | crate::header::QueueKind::Broadcast
        ));
        #[cfg(shmqueue_loom)]
        return &self.heap.seqs[i];
        #[cfg(not(shmqueue_loom))]
        // SAFETY: as Attachment::seq.
        unsafe {
            &*(self.slots().as_ptr().add(i * self.geom.slot_stride)
                as *const crate::sync::AtomicU64)
        }
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
    pub(crate) fn slots(&self) -> NonNull<u8> {
        let p = self.seg.base().wrapping_add(self.geom.slots_offset);
        NonNull::new(p).expect("a mapping does not start at address 0")
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
