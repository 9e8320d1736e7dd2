//! The textbook baseline: a bounded ring in shared memory guarded by a
//! `PTHREAD_PROCESS_SHARED` mutex and two condition variables (not empty,
//! not full). Two rings in one segment make a duplex.
//!
//! Layout of one ring (at `k * ring_bytes`): the [`Hdr`] (mutex, two
//! condvars, the `head`/`tail` counters), then `cap` slots of `size` bytes.
//! The counters and slots are touched only with the mutex held, through raw
//! pointers (never `&T`: the other process writes them).

use std::ptr::addr_of_mut;
use std::sync::Arc;

use super::payload::{get_bytes, set_bytes};
use super::peers::Duplex;
use super::sys::ShmRegion;
use crate::Res;

#[repr(C)]
struct Hdr {
    mutex: libc::pthread_mutex_t,
    not_empty: libc::pthread_cond_t,
    not_full: libc::pthread_cond_t,
    head: u64,
    tail: u64,
}

/// Bytes of a ring with `cap` slots of `size` bytes (slots 64-aligned).
fn ring_bytes(cap: usize, size: usize) -> usize {
    let hdr = std::mem::size_of::<Hdr>().next_multiple_of(128);
    (hdr + cap * size).next_multiple_of(4096)
}

/// Bytes of the two-ring segment.
pub fn segment_bytes(cap: usize, size: usize) -> usize {
    2 * ring_bytes(cap, size)
}

fn hdr(region: &ShmRegion, k: usize, cap: usize, size: usize) -> *mut Hdr {
    // SAFETY: ring k starts inside the segment (segment_bytes covers two).
    unsafe { region.base().add(k * ring_bytes(cap, size)).cast() }
}

fn check(r: libc::c_int, what: &str) -> Res {
    if r == 0 {
        Ok(())
    } else {
        Err(format!("{what}: {}", std::io::Error::from_raw_os_error(r)).into())
    }
}

/// Initialise both rings of a freshly created (zeroed) segment, once, before
/// any other process opens it.
pub fn init(region: &ShmRegion, cap: usize, size: usize) -> Res {
    for k in 0..2 {
        let h = hdr(region, k, cap, size);
        // SAFETY: attribute objects are plain data initialised by the
        // *_init calls before use and destroyed after; `h` points to this
        // ring's header in the mapping, which no other thread or process
        // uses yet; the mutex and condvars are initialised exactly once here
        // and destroyed once in `destroy`.
        unsafe {
            let mut ma: libc::pthread_mutexattr_t = std::mem::zeroed();
            check(libc::pthread_mutexattr_init(&mut ma), "mutexattr_init")?;
            check(
                libc::pthread_mutexattr_setpshared(&mut ma, libc::PTHREAD_PROCESS_SHARED),
                "mutexattr_setpshared",
            )?;
            check(
                libc::pthread_mutex_init(addr_of_mut!((*h).mutex), &ma),
                "mutex_init",
            )?;
            libc::pthread_mutexattr_destroy(&mut ma);
            let mut ca: libc::pthread_condattr_t = std::mem::zeroed();
            check(libc::pthread_condattr_init(&mut ca), "condattr_init")?;
            check(
                libc::pthread_condattr_setpshared(&mut ca, libc::PTHREAD_PROCESS_SHARED),
                "condattr_setpshared",
            )?;
            check(
                libc::pthread_cond_init(addr_of_mut!((*h).not_empty), &ca),
                "cond_init",
            )?;
            check(
                libc::pthread_cond_init(addr_of_mut!((*h).not_full), &ca),
                "cond_init",
            )?;
            libc::pthread_condattr_destroy(&mut ca);
            addr_of_mut!((*h).head).write(0);
            addr_of_mut!((*h).tail).write(0);
        }
    }
    Ok(())
}

/// Destroy both rings' mutexes and condvars: the creator calls it once every
/// other user has gone (peers joined or exited).
pub fn destroy(region: &ShmRegion, cap: usize, size: usize) {
    for k in 0..2 {
        let h = hdr(region, k, cap, size);
        // SAFETY: initialised by `init`; no thread or process uses them any
        // more (the owner drops last, after the peers).
        unsafe {
            libc::pthread_cond_destroy(addr_of_mut!((*h).not_empty));
            libc::pthread_cond_destroy(addr_of_mut!((*h).not_full));
            libc::pthread_mutex_destroy(addr_of_mut!((*h).mutex));
        }
    }
}

/// Keeps the creator's mapping and destroys the primitives when dropped.
pub struct Owner {
    pub region: Arc<ShmRegion>,
    pub cap: usize,
    pub size: usize,
}

impl Drop for Owner {
    fn drop(&mut self) {
        destroy(&self.region, self.cap, self.size);
    }
}

/// One side of the duplex: pushes into ring `tx`, pops from ring `rx`.
pub struct PthreadDuplex {
    pub region: Arc<ShmRegion>,
    pub tx: usize,
    pub rx: usize,
    pub cap: usize,
    pub buf: Vec<u8>,
}

impl PthreadDuplex {
    fn slot(&self, k: usize, i: u64) -> *mut u8 {
        let size = self.buf.len();
        let off = k * ring_bytes(self.cap, size)
            + std::mem::size_of::<Hdr>().next_multiple_of(128)
            + (i % self.cap as u64) as usize * size;
        // SAFETY: i % cap < cap: the slot lies in ring k, in the segment.
        unsafe { self.region.base().add(off) }
    }
}

impl Duplex for PthreadDuplex {
    fn send(&mut self, v: u64) -> Res {
        set_bytes(&mut self.buf, v);
        let size = self.buf.len();
        let h = hdr(&self.region, self.tx, self.cap, size);
        // SAFETY: the mutex and condvars were initialised (pshared) by the
        // creator and live as long as the region; head/tail and the slots
        // are read and written only with the mutex held; the slot is in
        // range (see `slot`) and not read by a consumer until head moves.
        unsafe {
            check(libc::pthread_mutex_lock(addr_of_mut!((*h).mutex)), "lock")?;
            loop {
                let head = addr_of_mut!((*h).head).read();
                let tail = addr_of_mut!((*h).tail).read();
                if head - tail < self.cap as u64 {
                    std::ptr::copy_nonoverlapping(
                        self.buf.as_ptr(),
                        self.slot(self.tx, head),
                        size,
                    );
                    addr_of_mut!((*h).head).write(head + 1);
                    break;
                }
                libc::pthread_cond_wait(addr_of_mut!((*h).not_full), addr_of_mut!((*h).mutex));
            }
            libc::pthread_cond_signal(addr_of_mut!((*h).not_empty));
            libc::pthread_mutex_unlock(addr_of_mut!((*h).mutex));
        }
        Ok(())
    }

    fn recv(&mut self) -> Res<u64> {
        let size = self.buf.len();
        let h = hdr(&self.region, self.rx, self.cap, size);
        // SAFETY: as in `send`: everything under the initialised pshared
        // mutex; the slot at `tail` was published by a producer (head >
        // tail) and is not reused until tail moves past it.
        unsafe {
            check(libc::pthread_mutex_lock(addr_of_mut!((*h).mutex)), "lock")?;
            loop {
                let head = addr_of_mut!((*h).head).read();
                let tail = addr_of_mut!((*h).tail).read();
                if head != tail {
                    std::ptr::copy_nonoverlapping(
                        self.slot(self.rx, tail),
                        self.buf.as_mut_ptr(),
                        size,
                    );
                    addr_of_mut!((*h).tail).write(tail + 1);
                    break;
                }
                libc::pthread_cond_wait(addr_of_mut!((*h).not_empty), addr_of_mut!((*h).mutex));
            }
            libc::pthread_cond_signal(addr_of_mut!((*h).not_full));
            libc::pthread_mutex_unlock(addr_of_mut!((*h).mutex));
        }
        Ok(get_bytes(&self.buf))
    }
}
