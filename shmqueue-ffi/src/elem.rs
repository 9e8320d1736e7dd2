//! Fixed-size elements from C, on the library's typed rings (SPSC, MPMC
//! and broadcast).
//!
//! The library is generic over `T: Pod` and checks `size_of::<T>()` and
//! `align_of::<T>()` against the segment header at open. C gives a size and
//! an alignment at run time, so the bindings instantiate the rings for a
//! table of array types (`[u8; N]`, `[u16; N]`, `[u32; N]`, `[u64; N]`,
//! `[u128; N]`: every bit pattern valid, no padding) and pick the one whose
//! size and alignment are the pair asked for. A C element and a Rust `T` of
//! the same size and alignment then share a ring, and the header check is
//! the library's own, unchanged.
//!
//! Elements cross the boundary by copy: `ptr::read_unaligned` from the
//! caller's buffer into a `T`, and `ptr::write_unaligned` back out. Shared
//! memory is touched only by the library's own copy paths.

use std::os::fd::OwnedFd;
use std::time::Duration;

use bytemuck::Pod;
use shmqueue::{
    mpmc, spsc, BatchError, Mpmc, PopError, PushAllError, PushError, Spsc, TryPopError,
    TryPushError,
};

use crate::{shmq_status, Fail};

/// Where the ring is.
pub(crate) enum At<'a> {
    /// Create the named segment.
    Create(&'a str),
    /// Open the named segment.
    Open(&'a str),
    /// Create an unnamed, sealed memfd segment.
    CreateMemfd,
    /// Open a memfd segment from a descriptor (owned from here on).
    OpenFd(OwnedFd),
}

/// What a create or open asks for.
pub(crate) struct Params {
    pub mpmc: bool,
    pub capacity: usize,
    pub schema: u64,
    pub max_producers: u32,
    pub max_consumers: u32,
}

/// A ring of some element type, behind the C handle.
pub(crate) trait Queue: Send + Sync {
    fn producer(&self) -> Result<Box<dyn Producer>, Fail>;
    fn consumer(&self) -> Result<Box<dyn Consumer>, Fail>;
    fn capacity(&self) -> usize;
    fn len(&self) -> usize;
    fn elem_size(&self) -> usize;
    fn elem_align(&self) -> usize;
    fn dup_fd(&self) -> Result<OwnedFd, Fail>;
    /// The `shmq_kind` value.
    fn kind(&self) -> i32;
    /// MPMC only: the registry and recovery counters.
    fn mpmc_stats(&self) -> Option<mpmc::Stats>;
}

/// What differs between the two ring types beyond the shared methods.
trait Kind {
    const KIND: i32;
    fn mpmc_stats(&self) -> Option<mpmc::Stats>;
}

impl<T: Pod> Kind for Spsc<T> {
    const KIND: i32 = crate::queue::shmq_kind::SHMQ_KIND_SPSC as i32;
    fn mpmc_stats(&self) -> Option<mpmc::Stats> {
        None
    }
}

impl<T: Pod> Kind for Mpmc<T> {
    const KIND: i32 = crate::queue::shmq_kind::SHMQ_KIND_MPMC as i32;
    fn mpmc_stats(&self) -> Option<mpmc::Stats> {
        Some(self.stats())
    }
}

/// A producer endpoint. `src` points to `elem_size` readable bytes.
pub(crate) trait Producer: Send {
    /// # Safety
    /// `src` is valid for reads of `elem_size` bytes (any alignment).
    unsafe fn push(&mut self, src: *const u8, how: Wait) -> Result<(), Fail>;

    /// Push up to `n` elements of `size` bytes from `src`, in order: all of
    /// them unless `how` is `Never` (what fits) or the call fails. Returns
    /// how many went in, and the outcome.
    ///
    /// # Safety
    /// `src` is valid for reads of `n * size` bytes (any alignment), and
    /// `size` is the element size.
    unsafe fn push_many(
        &mut self,
        src: *const u8,
        n: usize,
        size: usize,
        how: Wait,
    ) -> (usize, Result<(), Fail>) {
        // SAFETY: forwarded from this method's contract.
        unsafe { push_each(self, src, n, size, how) }
    }
}

/// A consumer endpoint. `dst` points to `elem_size` writable bytes.
pub(crate) trait Consumer: Send {
    /// # Safety
    /// `dst` is valid for writes of `elem_size` bytes (any alignment).
    unsafe fn pop(&mut self, dst: *mut u8, how: Wait) -> Result<(), Fail>;

    /// Pop up to `n` elements into `dst`: the first waiting as `how` says,
    /// then what is there without waiting again (as `pop_slice_wait`).
    ///
    /// # Safety
    /// `dst` is valid for writes of `n * size` bytes (any alignment), and
    /// `size` is the element size.
    unsafe fn pop_many(
        &mut self,
        dst: *mut u8,
        n: usize,
        size: usize,
        how: Wait,
    ) -> (usize, Result<(), Fail>) {
        // SAFETY: forwarded from this method's contract.
        unsafe { pop_each(self, dst, n, size, how) }
    }
}

/// `push_many` one element at a time: each tried without waiting first, so
/// the clock is read only when the ring is full, and only an element that
/// finds no room waits (until the batch's deadline, not a fresh one).
///
/// # Safety
/// As [`Producer::push_many`].
unsafe fn push_each<P: Producer + ?Sized>(
    ep: &mut P,
    src: *const u8,
    n: usize,
    size: usize,
    how: Wait,
) -> (usize, Result<(), Fail>) {
    let deadline = match how {
        Wait::For(t) => Some(std::time::Instant::now() + t),
        _ => None,
    };
    let mut k = 0;
    while k < n {
        // SAFETY: `src` holds `n` elements of `size` bytes and `k < n`.
        let at = unsafe { src.add(k * size) };
        // SAFETY: `at` points to `size` readable bytes (above).
        match unsafe { ep.push(at, Wait::Never) } {
            Ok(()) => k += 1,
            Err(f) if f.status == shmq_status::SHMQ_FULL => {
                let wait = match (how, deadline) {
                    (Wait::Never, _) if k > 0 => return (k, Ok(())),
                    (Wait::Never, _) => return (k, Err(f)),
                    (_, Some(d)) => {
                        Wait::For(d.saturating_duration_since(std::time::Instant::now()))
                    }
                    (how, None) => how,
                };
                // SAFETY: as above.
                match unsafe { ep.push(at, wait) } {
                    Ok(()) => k += 1,
                    Err(f) => return (k, Err(f)),
                }
            }
            Err(f) => return (k, Err(f)),
        }
    }
    (k, Ok(()))
}

/// `pop_many` one element at a time.
///
/// # Safety
/// As [`Consumer::pop_many`].
unsafe fn pop_each<C: Consumer + ?Sized>(
    ep: &mut C,
    dst: *mut u8,
    n: usize,
    size: usize,
    how: Wait,
) -> (usize, Result<(), Fail>) {
    let mut k = 0;
    while k < n {
        let how = if k == 0 { how } else { Wait::Never };
        // SAFETY: `dst` has room for `n` elements of `size` bytes, `k < n`.
        let at = unsafe { dst.add(k * size) };
        // SAFETY: `at` points to `size` writable bytes (above).
        match unsafe { ep.pop(at, how) } {
            Ok(()) => k += 1,
            // What came before an empty ring or a gone producer is
            // delivered; the next call reports the disconnect.
            Err(_) if k > 0 => break,
            Err(f) => return (0, Err(f)),
        }
    }
    (k, Ok(()))
}

/// How long a call may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    Never,
    Forever,
    For(Duration),
}

fn disconnected(what: &str) -> Fail {
    Fail::new(
        shmq_status::SHMQ_DISCONNECTED,
        format!("the {what} has gone (closed, or its process died)"),
    )
}

pub(crate) fn try_push_fail<T>(e: TryPushError<T>) -> Fail {
    match e {
        TryPushError::Full(_) => Fail::quiet(shmq_status::SHMQ_FULL),
        TryPushError::Disconnected(_) => disconnected("consumer"),
        TryPushError::Corrupt(_, c) => c.into(),
        _ => Fail::new(
            shmq_status::SHMQ_ERR_IO,
            "an error this version of the bindings does not know",
        ),
    }
}

pub(crate) fn push_fail<T>(e: PushError<T>) -> Fail {
    match e {
        PushError::Timeout(_) => Fail::quiet(shmq_status::SHMQ_TIMEOUT),
        PushError::Disconnected(_) => disconnected("consumer"),
        PushError::Corrupt(_, c) => c.into(),
        _ => Fail::new(
            shmq_status::SHMQ_ERR_IO,
            "an error this version of the bindings does not know",
        ),
    }
}

fn try_pop_fail(e: TryPopError) -> Fail {
    match e {
        TryPopError::Empty => Fail::quiet(shmq_status::SHMQ_EMPTY),
        TryPopError::Disconnected => disconnected("producer"),
        TryPopError::Corrupt(c) => c.into(),
        _ => Fail::new(
            shmq_status::SHMQ_ERR_IO,
            "an error this version of the bindings does not know",
        ),
    }
}

fn pop_fail(e: PopError) -> Fail {
    match e {
        PopError::Timeout => Fail::quiet(shmq_status::SHMQ_TIMEOUT),
        PopError::Disconnected => disconnected("producer"),
        PopError::Corrupt(c) => c.into(),
        _ => Fail::new(
            shmq_status::SHMQ_ERR_IO,
            "an error this version of the bindings does not know",
        ),
    }
}

fn batch_fail(e: BatchError, peer: &str) -> Fail {
    match e {
        BatchError::Disconnected => disconnected(peer),
        BatchError::Corrupt(c) => c.into(),
        #[allow(unreachable_patterns)]
        _ => Fail::new(
            shmq_status::SHMQ_ERR_IO,
            "an error this version of the bindings does not know",
        ),
    }
}

fn push_all_fail(e: PushAllError) -> Fail {
    match e {
        PushAllError::Timeout { .. } => Fail::quiet(shmq_status::SHMQ_TIMEOUT),
        PushAllError::Disconnected { .. } => disconnected("consumer"),
        PushAllError::Corrupt { corruption, .. } => corruption.into(),
        #[allow(unreachable_patterns)]
        _ => Fail::new(
            shmq_status::SHMQ_ERR_IO,
            "an error this version of the bindings does not know",
        ),
    }
}

/// Read a `T` from the caller's buffer.
///
/// # Safety
/// `src` is valid for reads of `size_of::<T>()` bytes.
pub(crate) unsafe fn read_elem<T: Pod>(src: *const u8) -> T {
    // SAFETY: readable by the caller's contract; `read_unaligned` needs no
    // alignment, and any bytes are a valid `T` (Pod). This is the caller's
    // private memory, not the shared segment.
    unsafe { src.cast::<T>().read_unaligned() }
}

/// Write a `T` to the caller's buffer.
///
/// # Safety
/// `dst` is valid for writes of `size_of::<T>()` bytes.
pub(crate) unsafe fn write_elem<T: Pod>(dst: *mut u8, v: T) {
    // SAFETY: writable by the caller's contract; no alignment needed.
    unsafe { dst.cast::<T>().write_unaligned(v) }
}

macro_rules! endpoints {
    ($q:ident, $p:ty, $c:ty $(, $slices:ident)?) => {
        impl<T: Pod + Send + Sync> Queue for $q<T> {
            fn producer(&self) -> Result<Box<dyn Producer>, Fail> {
                Ok(Box::new($q::producer(self)?))
            }
            fn consumer(&self) -> Result<Box<dyn Consumer>, Fail> {
                Ok(Box::new($q::consumer(self)?))
            }
            fn capacity(&self) -> usize {
                $q::capacity(self)
            }
            fn len(&self) -> usize {
                $q::len(self)
            }
            fn elem_size(&self) -> usize {
                std::mem::size_of::<T>()
            }
            fn elem_align(&self) -> usize {
                std::mem::align_of::<T>()
            }
            fn dup_fd(&self) -> Result<OwnedFd, Fail> {
                Ok($q::dup_fd(self)?)
            }
            fn kind(&self) -> i32 {
                <$q<T> as Kind>::KIND
            }
            fn mpmc_stats(&self) -> Option<mpmc::Stats> {
                Kind::mpmc_stats(self)
            }
        }

        impl<T: Pod + Send> Producer for $p {
            unsafe fn push(&mut self, src: *const u8, how: Wait) -> Result<(), Fail> {
                // SAFETY: forwarded from this method's contract.
                let v: T = unsafe { read_elem(src) };
                match how {
                    Wait::Never => self.try_push(v).map_err(try_push_fail),
                    Wait::Forever => <$p>::push(self, v).map_err(push_fail),
                    Wait::For(t) => self.push_timeout(v, t).map_err(push_fail),
                }
            }
            $(spsc_slices!($slices, push);)?
        }

        impl<T: Pod + Send> Consumer for $c {
            unsafe fn pop(&mut self, dst: *mut u8, how: Wait) -> Result<(), Fail> {
                let v: T = match how {
                    Wait::Never => self.try_pop().map_err(try_pop_fail)?,
                    Wait::Forever => <$c>::pop(self).map_err(pop_fail)?,
                    Wait::For(t) => self.pop_timeout(t).map_err(pop_fail)?,
                };
                // SAFETY: forwarded from this method's contract.
                unsafe { write_elem(dst, v) };
                Ok(())
            }
            $(spsc_slices!($slices, pop);)?
        }
    };
}

/// The SPSC ring's batch calls behind `push_many`/`pop_many`: one
/// publication of the index per batch instead of one per element, so a
/// batch moves as one hand-off (the per-element loop measured 27-45 M
/// items/s from Python; see docs/BENCHMARKS.md, "Python").
macro_rules! spsc_slices {
    (slices, push) => {
        unsafe fn push_many(
            &mut self,
            src: *const u8,
            n: usize,
            size: usize,
            how: Wait,
        ) -> (usize, Result<(), Fail>) {
            if n == 0 || src as usize % std::mem::align_of::<T>() != 0 {
                // SAFETY: forwarded from this method's contract.
                return unsafe { push_each(self, src, n, size, how) };
            }
            // SAFETY: `src` is aligned for `T` (checked) and readable for
            // `n` elements by the contract; every bit pattern is a valid
            // `T` (Pod). It is the caller's own memory, not the segment.
            let items = unsafe { std::slice::from_raw_parts(src.cast::<T>(), n) };
            let all = match how {
                Wait::Never => {
                    return match self.push_slice(items) {
                        Ok(0) => (0, Err(Fail::quiet(shmq_status::SHMQ_FULL))),
                        Ok(k) => (k, Ok(())),
                        Err(e) => (0, Err(batch_fail(e, "consumer"))),
                    }
                }
                Wait::Forever => self.push_all(items),
                Wait::For(t) => self.push_all_timeout(items, t),
            };
            match all {
                Ok(()) => (n, Ok(())),
                Err(e) => (e.pushed(), Err(push_all_fail(e))),
            }
        }
    };
    (slices, pop) => {
        unsafe fn pop_many(
            &mut self,
            dst: *mut u8,
            n: usize,
            size: usize,
            how: Wait,
        ) -> (usize, Result<(), Fail>) {
            if n == 0 || dst as usize % std::mem::align_of::<T>() != 0 {
                // SAFETY: forwarded from this method's contract.
                return unsafe { pop_each(self, dst, n, size, how) };
            }
            // No pop returns more than the ring holds: a huge `out` costs
            // no more than a ring's worth of zeroing below.
            let n = n.min(self.capacity());
            // The caller's buffer may be uninitialised (malloc, np.empty):
            // zero it first, so the slice below is over initialised `T`s.
            // SAFETY: writable for `n * size` bytes by the contract.
            unsafe { std::ptr::write_bytes(dst, 0, n * size) };
            // SAFETY: aligned for `T` (checked), writable and now
            // initialised for `n` elements; the caller's own memory, not
            // the segment, and nothing else uses it during the call.
            let out = unsafe { std::slice::from_raw_parts_mut(dst.cast::<T>(), n) };
            let r = match how {
                Wait::Never => {
                    return match self.pop_slice(out) {
                        Ok(0) => (0, Err(Fail::quiet(shmq_status::SHMQ_EMPTY))),
                        Ok(k) => (k, Ok(())),
                        Err(e) => (0, Err(batch_fail(e, "producer"))),
                    }
                }
                Wait::Forever => self.pop_slice_wait(out),
                Wait::For(t) => self.pop_slice_timeout(out, t),
            };
            match r {
                Ok(k) => (k, Ok(())),
                Err(e) => (0, Err(pop_fail(e))),
            }
        }
    };
}

endpoints!(Spsc, spsc::Producer<T>, spsc::Consumer<T>, slices);
endpoints!(Mpmc, mpmc::Producer<T>, mpmc::Consumer<T>);

fn make<T: Pod + Send + Sync>(p: &Params, at: At) -> Result<Box<dyn Queue>, Fail> {
    Ok(if p.mpmc {
        let mut b = Mpmc::<T>::builder().schema(p.schema);
        if matches!(at, At::Create(_) | At::CreateMemfd) {
            b = b.capacity(p.capacity);
            if p.max_producers != 0 {
                b = b.max_producers(p.max_producers);
            }
            if p.max_consumers != 0 {
                b = b.max_consumers(p.max_consumers);
            }
        }
        Box::new(match at {
            At::Create(name) => b.create(name)?,
            At::Open(name) => b.open(name)?,
            At::CreateMemfd => b.create_memfd()?,
            At::OpenFd(fd) => b.open_fd(fd)?,
        })
    } else {
        let b = Spsc::<T>::builder().schema(p.schema).capacity(p.capacity);
        Box::new(match at {
            At::Create(name) => b.create(name)?,
            At::Open(name) => b.open(name)?,
            At::CreateMemfd => b.create_memfd()?,
            At::OpenFd(fd) => b.open_fd(fd)?,
        })
    })
}

/// The supported (alignment, size) pairs, and the instantiation for each.
macro_rules! table {
    ($($prim:ty : $al:literal => [$($n:literal),*];)*) => {
        /// Whether `(size, align)` is in the table.
        pub(crate) fn supported(size: usize, align: usize) -> bool {
            false $($( || (align == $al && size == $n * $al) )*)*
        }

        /// Create or open the ring for elements of `size` bytes aligned to
        /// `align`; `None` if the pair is not in the table.
        pub(crate) fn dispatch(
            size: usize,
            align: usize,
            p: &Params,
            at: At,
        ) -> Option<Result<Box<dyn Queue>, Fail>> {
            match (align, size) {
                $($( ($al, s) if s == $n * $al => Some(make::<[$prim; $n]>(p, at)), )*)*
                _ => None,
            }
        }

        /// Create or open the broadcast ring for elements of `size` bytes
        /// aligned to `align`, as `dispatch`.
        pub(crate) fn dispatch_broadcast(
            size: usize,
            align: usize,
            p: &crate::broadcast::Params,
            at: At,
        ) -> Option<Result<Box<dyn crate::broadcast::Ring>, Fail>> {
            match (align, size) {
                $($( ($al, s) if s == $n * $al => {
                    Some(crate::broadcast::make::<[$prim; $n]>(p, at))
                } )*)*
                _ => None,
            }
        }
    };
}

table! {
    u8: 1 => [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 64, 128, 256, 512, 1024, 2048, 4096];
    u16: 2 => [1, 2, 3, 4, 8];
    u32: 4 => [1, 2, 3, 4, 5, 6, 8, 16];
    u64: 8 => [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 32, 64, 128, 256, 512];
    u128: 16 => [1, 2, 4, 8];
}

#[cfg(test)]
mod tests {
    use super::supported;

    #[test]
    fn table_matches_rust_layouts() {
        assert!(supported(8, 8));
        assert!(supported(24, 8));
        assert!(supported(4096, 8));
        assert!(supported(12, 4));
        assert!(supported(3, 1));
        assert!(!supported(8, 3));
        assert!(!supported(9, 8));
        assert!(!supported(0, 1));
        assert_eq!(std::mem::align_of::<u128>(), 16, "the u128 row assumes 16");
    }
}
