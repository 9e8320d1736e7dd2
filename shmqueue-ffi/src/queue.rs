//! SPSC and MPMC rings of fixed-size elements.

use std::ffi::{c_char, c_void};
use std::sync::Mutex;

use crate::elem::{self, At, Params, Wait};
use crate::handles::{self, lock};
use crate::{c_str, guard, nanos, null, shmq_status, Fail};

/// Which ring a queue handle is.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmq_kind {
    /// One producer and one consumer at a time (`shmqueue::Spsc`).
    SHMQ_KIND_SPSC = 1,
    /// Any number of producers and consumers (`shmqueue::Mpmc`).
    SHMQ_KIND_MPMC = 2,
}

/// A mapped ring (SPSC or MPMC). Owned by the caller: release it with
/// `shmq_queue_free()`. Endpoints claimed from it stay valid after it is
/// freed (they keep the mapping). A zeroed value is never a valid handle.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_queue_t {
    /// Opaque id; 0 is never valid.
    pub id: u64,
}

/// A producer endpoint of a queue. Owned by the caller: release it with
/// `shmq_producer_free()`, which gives the role back. If the process dies
/// instead, peers see it as gone within the library's liveness checks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_producer_t {
    /// Opaque id; 0 is never valid.
    pub id: u64,
}

/// A consumer endpoint of a queue. Owned by the caller: release it with
/// `shmq_consumer_free()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_consumer_t {
    /// Opaque id; 0 is never valid.
    pub id: u64,
}

/// Creation parameters of `shmq_queue_create()`. Start from
/// `shmq_queue_config_default()` and change what you need, so that a field
/// added later gets its default.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_queue_config {
    /// A `shmq_kind` value: SPSC or MPMC. (An integer, so that a stray
    /// value is an error code rather than an invalid enum.)
    pub kind: i32,
    /// Bytes per element (`sizeof` of the C type).
    pub elem_size: usize,
    /// Alignment of the element (`_Alignof`/`alignof` of the C type). A
    /// Rust peer's `T` must have the same size and alignment.
    pub elem_align: usize,
    /// Items the ring holds (default 1024).
    pub capacity: usize,
    /// Schema tag; an opener must pass the same one (default 0).
    pub schema: u64,
    /// MPMC only: most producers attached at once (0: the library's
    /// default, 64).
    pub max_producers: u32,
    /// MPMC only: most consumers attached at once (0: default, 64).
    pub max_consumers: u32,
}

struct QueueObj(Box<dyn elem::Queue>);
struct ProducerObj(Mutex<Box<dyn elem::Producer>>, usize);
struct ConsumerObj(Mutex<Box<dyn elem::Consumer>>, usize);

const Q: &str = "queue";
const P: &str = "producer";
const C: &str = "consumer";

/// A configuration with the defaults for `kind` and an element of
/// `elem_size` bytes aligned to `elem_align`.
#[no_mangle]
pub extern "C" fn shmq_queue_config_default(
    kind: i32,
    elem_size: usize,
    elem_align: usize,
) -> shmq_queue_config {
    shmq_queue_config {
        kind,
        elem_size,
        elem_align,
        capacity: shmqueue::spsc::DEFAULT_CAPACITY,
        schema: 0,
        max_producers: 0,
        max_consumers: 0,
    }
}

/// Whether the bindings can carry elements of `elem_size` bytes aligned to
/// `elem_align`: sizes 1-8, 12, 16, 24, 32 and powers of two to 4096 at
/// alignment 1; 2, 4, 6, 8, 16 at 2; 4-24, 32, 64 in steps of 4 at 4;
/// 8-64 in steps of 8, 96, 128 and powers of two to 4096 at 8; 16, 32, 64,
/// 128 at 16. Wrap a larger or odd-sized struct in an array of one of
/// these, or use the byte ring.
#[no_mangle]
pub extern "C" fn shmq_elem_supported(elem_size: usize, elem_align: usize) -> bool {
    elem::supported(elem_size, elem_align)
}

fn open_or_create(
    kind: i32,
    at: At,
    elem_size: usize,
    elem_align: usize,
    params: Params,
) -> Result<u64, Fail> {
    let params = Params {
        mpmc: match kind {
            1 => false,
            2 => true,
            k => {
                return Err(Fail::new(
                    shmq_status::SHMQ_ERR_INVALID_ARGUMENT,
                    format!("unknown queue kind {k}: pass SHMQ_KIND_SPSC or SHMQ_KIND_MPMC"),
                ))
            }
        },
        ..params
    };
    let q = elem::dispatch(elem_size, elem_align, &params, at).ok_or_else(|| {
        Fail::new(
            shmq_status::SHMQ_ERR_UNSUPPORTED_ELEMENT,
            format!(
                "elements of {elem_size} bytes aligned to {elem_align} are not supported \
                 by the C bindings (see shmq_elem_supported); use an array type of a \
                 supported size, or the byte ring"
            ),
        )
    })??;
    Ok(handles::insert(QueueObj(q)))
}

fn create(at: At, c: &shmq_queue_config) -> Result<u64, Fail> {
    let params = Params {
        mpmc: false,
        capacity: c.capacity,
        schema: c.schema,
        max_producers: c.max_producers,
        max_consumers: c.max_consumers,
    };
    open_or_create(c.kind, at, c.elem_size, c.elem_align, params)
}

fn open(at: At, kind: i32, elem_size: usize, elem_align: usize, schema: u64) -> Result<u64, Fail> {
    let params = Params {
        mpmc: false,
        capacity: 0,
        schema,
        max_producers: 0,
        max_consumers: 0,
    };
    open_or_create(kind, at, elem_size, elem_align, params)
}

/// Read a `shmq_queue_config` argument.
///
/// # Safety
/// `config` is NULL or valid for reads of a `shmq_queue_config`.
unsafe fn read_config(config: *const shmq_queue_config) -> Result<shmq_queue_config, Fail> {
    if config.is_null() {
        return Err(null("config"));
    }
    // SAFETY: non-null and readable by the contract; every field is a
    // plain integer, so any bytes are a valid value.
    Ok(unsafe { config.read_unaligned() })
}

/// Create the ring `name` (NUL-terminated, e.g. "/orders") from `config`.
/// On success `*out` is a new queue handle that the caller owns. Fails with
/// `SHMQ_ERR_ALREADY_EXISTS` if the name is taken; the segment stays until
/// `shmq_unlink()`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `config` and `out` are NULL or
/// valid for reads and writes respectively.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_create(
    name: *const c_char,
    config: *const shmq_queue_config,
    out: *mut shmq_queue_t,
) -> shmq_status {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let name = unsafe { c_str(name, "name") }?;
        // SAFETY: forwarded from this function's contract.
        let c = unsafe { read_config(config) }?;
        if out.is_null() {
            return Err(null("out"));
        }
        let id = create(At::Create(name), &c)?;
        // SAFETY: `out` is non-null and writable by the contract.
        unsafe { out.write(shmq_queue_t { id }) };
        Ok(())
    })
}

/// Open the existing ring `name` of `kind`. The segment's header must match:
/// element size (`SHMQ_ERR_ELEM_SIZE`), alignment (`SHMQ_ERR_ELEM_ALIGN`),
/// kind (`SHMQ_ERR_KIND`) and `schema` (`SHMQ_ERR_SCHEMA`). On success
/// `*out` is a new queue handle that the caller owns.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_open(
    name: *const c_char,
    kind: i32,
    elem_size: usize,
    elem_align: usize,
    schema: u64,
    out: *mut shmq_queue_t,
) -> shmq_status {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let name = unsafe { c_str(name, "name") }?;
        if out.is_null() {
            return Err(null("out"));
        }
        let id = open(At::Open(name), kind, elem_size, elem_align, schema)?;
        // SAFETY: `out` is non-null and writable by the contract.
        unsafe { out.write(shmq_queue_t { id }) };
        Ok(())
    })
}

/// Create a ring in an unnamed memfd, sealed against resizing, from
/// `config`: nothing in /dev/shm, freed when the last process holding it
/// closes it. Hand it to a peer with `shmq_queue_dup_fd()` (over a Unix
/// socket with SCM_RIGHTS, or by inheritance); the peer opens it with
/// `shmq_queue_open_fd()`.
///
/// # Safety
/// `config` is NULL or readable; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_create_memfd(
    config: *const shmq_queue_config,
    out: *mut shmq_queue_t,
) -> shmq_status {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let c = unsafe { read_config(config) }?;
        if out.is_null() {
            return Err(null("out"));
        }
        let id = create(At::CreateMemfd, &c)?;
        // SAFETY: `out` is non-null and writable by the contract.
        unsafe { out.write(shmq_queue_t { id }) };
        Ok(())
    })
}

/// Open a memfd ring from the descriptor `fd`, with the same checks as
/// `shmq_queue_open()`, and the memfd's seals checked too. `fd` stays the
/// caller's: the library duplicates it and the caller may close its own
/// at once. A descriptor that is not open is `SHMQ_ERR_IO`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_open_fd(
    fd: i32,
    kind: i32,
    elem_size: usize,
    elem_align: usize,
    schema: u64,
    out: *mut shmq_queue_t,
) -> shmq_status {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        let fd = crate::dup_caller_fd(fd)?;
        let id = open(At::OpenFd(fd), kind, elem_size, elem_align, schema)?;
        // SAFETY: `out` is non-null and writable by the contract.
        unsafe { out.write(shmq_queue_t { id }) };
        Ok(())
    })
}

/// A new descriptor for the queue's segment, into `*fd`: owned by the
/// caller, who must `close()` it, and close-on-exec (clear `FD_CLOEXEC` to
/// pass it to an exec'd child). Named segments have a descriptor too.
///
/// # Safety
/// `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_dup_fd(queue: shmq_queue_t, fd: *mut i32) -> shmq_status {
    guard(|| {
        let q = handles::get::<QueueObj>(queue.id, Q)?;
        if fd.is_null() {
            return Err(null("fd"));
        }
        let owned = q.0.dup_fd()?;
        // SAFETY: non-null and writable by the contract.
        unsafe { fd.write(std::os::fd::IntoRawFd::into_raw_fd(owned)) };
        Ok(())
    })
}

/// Release a queue handle (unmapping the segment once its endpoints are
/// freed too). The segment itself stays until `shmq_unlink()`. Freeing a
/// handle twice is `SHMQ_ERR_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn shmq_queue_free(queue: shmq_queue_t) -> shmq_status {
    guard(|| handles::remove::<QueueObj>(queue.id, Q))
}

/// Items the ring holds, into `*out`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_capacity(queue: shmq_queue_t, out: *mut usize) -> shmq_status {
    guard(|| {
        let q = handles::get::<QueueObj>(queue.id, Q)?;
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(q.0.capacity()) };
        Ok(())
    })
}

/// Items in the ring right now (a snapshot), into `*out`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_len(queue: shmq_queue_t, out: *mut usize) -> shmq_status {
    guard(|| {
        let q = handles::get::<QueueObj>(queue.id, Q)?;
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(q.0.len()) };
        Ok(())
    })
}

/// A snapshot of a queue, from `shmq_queue_stats()`. Values are read
/// without stopping anyone, so they may be stale by the time they are used.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_queue_stats_t {
    /// A `shmq_kind` value.
    pub kind: i32,
    /// Bytes per element.
    pub elem_size: usize,
    /// Alignment of the element.
    pub elem_align: usize,
    /// Items the ring holds.
    pub capacity: usize,
    /// Items in the ring now (MPMC: including holes not yet skipped).
    pub len: usize,
    /// MPMC: producer entries recorded as attached (a dead producer counts
    /// until reaped). 0 for SPSC, whose endpoints `shmq_inspect()` reports.
    pub producers: u32,
    /// MPMC: consumer entries recorded as attached (as `producers`).
    pub consumers: u32,
    /// MPMC: attached producers whose process holds its liveness lock.
    pub producers_alive: u32,
    /// MPMC: attached consumers whose process holds its liveness lock.
    pub consumers_alive: u32,
    /// MPMC: holes left by dead producers that consumers skipped.
    pub holes_skipped: u64,
    /// MPMC: slots held by dead consumers that producers released.
    pub slots_released: u64,
}

/// A snapshot of the queue's state into `*out`: geometry and fill for both
/// kinds, and for MPMC the attached endpoints, their liveness and the
/// dead-peer recovery counters. Works for memfd rings too.
///
/// # Safety
/// `out` is NULL or valid for writes of a `shmq_queue_stats_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_stats(
    queue: shmq_queue_t,
    out: *mut shmq_queue_stats_t,
) -> shmq_status {
    guard(|| {
        let q = handles::get::<QueueObj>(queue.id, Q)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let q = &q.0;
        let mut st = shmq_queue_stats_t {
            kind: q.kind(),
            elem_size: q.elem_size(),
            elem_align: q.elem_align(),
            capacity: q.capacity(),
            len: q.len(),
            ..Default::default()
        };
        if let Some(m) = q.mpmc_stats() {
            let alive = |r| {
                m.endpoints
                    .iter()
                    .filter(|e| e.role == r && e.alive)
                    .count() as u32
            };
            st.len = m.len;
            st.producers = m.producers;
            st.consumers = m.consumers;
            st.producers_alive = alive(shmqueue::Role::Producer);
            st.consumers_alive = alive(shmqueue::Role::Consumer);
            st.holes_skipped = m.holes_skipped;
            st.slots_released = m.slots_released;
        }
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(st) };
        Ok(())
    })
}

/// Claim a producer endpoint. SPSC: `SHMQ_ERR_ROLE_TAKEN` while another
/// live producer exists (in any process); MPMC: `SHMQ_ERR_REGISTRY_FULL`
/// when all `max_producers` entries are live. On success `*out` is a new
/// handle the caller owns (free with `shmq_producer_free()`).
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_producer(
    queue: shmq_queue_t,
    out: *mut shmq_producer_t,
) -> shmq_status {
    guard(|| {
        let q = handles::get::<QueueObj>(queue.id, Q)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let p = q.0.producer()?;
        let id = handles::insert(ProducerObj(Mutex::new(p), q.0.elem_size()));
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(shmq_producer_t { id }) };
        Ok(())
    })
}

/// Claim a consumer endpoint (see `shmq_producer()`); a new SPSC consumer
/// resumes exactly where the last one stopped.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_consumer(
    queue: shmq_queue_t,
    out: *mut shmq_consumer_t,
) -> shmq_status {
    guard(|| {
        let q = handles::get::<QueueObj>(queue.id, Q)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let c = q.0.consumer()?;
        let id = handles::insert(ConsumerObj(Mutex::new(c), q.0.elem_size()));
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(shmq_consumer_t { id }) };
        Ok(())
    })
}

/// Release a producer: the role is given back and consumers see it gone.
#[no_mangle]
pub extern "C" fn shmq_producer_free(producer: shmq_producer_t) -> shmq_status {
    guard(|| handles::remove::<ProducerObj>(producer.id, P))
}

/// Release a consumer.
#[no_mangle]
pub extern "C" fn shmq_consumer_free(consumer: shmq_consumer_t) -> shmq_status {
    guard(|| handles::remove::<ConsumerObj>(consumer.id, C))
}

fn push(producer: shmq_producer_t, elem: *const c_void, how: Wait) -> shmq_status {
    guard(|| {
        let p = handles::get::<ProducerObj>(producer.id, P)?;
        if elem.is_null() {
            return Err(null("elem"));
        }
        let mut ep = lock(&p.0);
        // SAFETY: the public functions' contract: `elem` points to
        // `elem_size` readable bytes.
        unsafe { ep.push(elem.cast(), how) }
    })
}

fn pop(consumer: shmq_consumer_t, elem: *mut c_void, how: Wait) -> shmq_status {
    guard(|| {
        let c = handles::get::<ConsumerObj>(consumer.id, C)?;
        if elem.is_null() {
            return Err(null("elem"));
        }
        let mut ep = lock(&c.0);
        // SAFETY: the public functions' contract: `elem` points to
        // `elem_size` writable bytes.
        unsafe { ep.pop(elem.cast(), how) }
    })
}

/// Push the element at `elem` (`elem_size` bytes, copied) without waiting:
/// `SHMQ_FULL` if there is no room, `SHMQ_DISCONNECTED` if the consumer
/// side has gone.
///
/// # Safety
/// `elem` is NULL or valid for reads of the queue's `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmq_try_push(
    producer: shmq_producer_t,
    elem: *const c_void,
) -> shmq_status {
    push(producer, elem, Wait::Never)
}

/// Push, waiting as long as it takes for room (spinning briefly, then
/// sleeping on a futex). Returns `SHMQ_DISCONNECTED` if the consumer dies.
///
/// # Safety
/// As `shmq_try_push()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_push(producer: shmq_producer_t, elem: *const c_void) -> shmq_status {
    push(producer, elem, Wait::Forever)
}

/// Push, waiting at most `timeout_ns` nanoseconds (`SHMQ_TIMEOUT`).
///
/// # Safety
/// As `shmq_try_push()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_push_timeout(
    producer: shmq_producer_t,
    elem: *const c_void,
    timeout_ns: u64,
) -> shmq_status {
    push(producer, elem, Wait::For(nanos(timeout_ns)))
}

/// Pop the oldest element into `elem` (`elem_size` bytes) without waiting:
/// `SHMQ_EMPTY` if there is none, `SHMQ_DISCONNECTED` if the ring is drained
/// and the producer side has gone.
///
/// # Safety
/// `elem` is NULL or valid for writes of the queue's `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmq_try_pop(consumer: shmq_consumer_t, elem: *mut c_void) -> shmq_status {
    pop(consumer, elem, Wait::Never)
}

/// Pop, waiting as long as it takes; `SHMQ_DISCONNECTED` once the ring is
/// drained and the producer has gone (closed, or its process killed).
///
/// # Safety
/// As `shmq_try_pop()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_pop(consumer: shmq_consumer_t, elem: *mut c_void) -> shmq_status {
    pop(consumer, elem, Wait::Forever)
}

/// Pop, waiting at most `timeout_ns` nanoseconds (`SHMQ_TIMEOUT`).
///
/// # Safety
/// As `shmq_try_pop()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_pop_timeout(
    consumer: shmq_consumer_t,
    elem: *mut c_void,
    timeout_ns: u64,
) -> shmq_status {
    pop(consumer, elem, Wait::For(nanos(timeout_ns)))
}

/// The element size of a producer's queue, into `*out`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_producer_elem_size(
    producer: shmq_producer_t,
    out: *mut usize,
) -> shmq_status {
    guard(|| {
        let p = handles::get::<ProducerObj>(producer.id, P)?;
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(p.1) };
        Ok(())
    })
}

/// The element size of a consumer's queue, into `*out`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_consumer_elem_size(
    consumer: shmq_consumer_t,
    out: *mut usize,
) -> shmq_status {
    guard(|| {
        let c = handles::get::<ConsumerObj>(consumer.id, C)?;
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(c.1) };
        Ok(())
    })
}

/// The `*_many` calls: up to `n` elements under one handle lookup and one
/// endpoint lock (`elem::Producer::push_many`: the SPSC ring's slice calls,
/// one index publication per batch; an element at a time for MPMC).
/// `*done` is how many moved, whatever the status.
fn push_many(
    producer: shmq_producer_t,
    elems: *const c_void,
    n: usize,
    done: *mut usize,
    how: Wait,
) -> shmq_status {
    guard(|| {
        let p = handles::get::<ProducerObj>(producer.id, P)?;
        if done.is_null() {
            return Err(null("pushed"));
        }
        // SAFETY: non-null and writable by the contract; written first so
        // that every return below leaves a count.
        unsafe { done.write(0) };
        if n == 0 {
            return Ok(());
        }
        if elems.is_null() {
            return Err(null("elems"));
        }
        let mut ep = lock(&p.0);
        // SAFETY: `elems` holds `n` elements of the queue's `elem_size`
        // (`p.1`) bytes by the contract.
        let (k, r) = unsafe { ep.push_many(elems.cast(), n, p.1, how) };
        // SAFETY: as above.
        unsafe { done.write(k) };
        r
    })
}

fn pop_many(
    consumer: shmq_consumer_t,
    out: *mut c_void,
    n: usize,
    done: *mut usize,
    how: Wait,
) -> shmq_status {
    guard(|| {
        let c = handles::get::<ConsumerObj>(consumer.id, C)?;
        if done.is_null() {
            return Err(null("popped"));
        }
        // SAFETY: non-null and writable by the contract.
        unsafe { done.write(0) };
        if n == 0 {
            return Ok(());
        }
        if out.is_null() {
            return Err(null("out"));
        }
        let mut ep = lock(&c.0);
        // SAFETY: `out` has room for `n` elements of `elem_size` (`c.1`)
        // bytes by the contract.
        let (k, r) = unsafe { ep.pop_many(out.cast(), n, c.1, how) };
        // SAFETY: as above.
        unsafe { done.write(k) };
        r
    })
}

/// Push up to `n` elements from the array at `elems` (`n * elem_size`
/// bytes, any alignment) without waiting, under one call: `*pushed` is
/// how many went in, in order, before the ring was full. `SHMQ_OK` if at
/// least one did (or `n` is 0), `SHMQ_FULL` if none fitted.
///
/// # Safety
/// `elems` is NULL or valid for reads of `n * elem_size` bytes; `pushed`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_try_push_many(
    producer: shmq_producer_t,
    elems: *const c_void,
    n: usize,
    pushed: *mut usize,
) -> shmq_status {
    push_many(producer, elems, n, pushed, Wait::Never)
}

/// Push all `n` elements, waiting for room as long as it takes. On
/// `SHMQ_DISCONNECTED` (or an error) `*pushed` says how many went in first.
///
/// # Safety
/// As `shmq_try_push_many()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_push_many(
    producer: shmq_producer_t,
    elems: *const c_void,
    n: usize,
    pushed: *mut usize,
) -> shmq_status {
    push_many(producer, elems, n, pushed, Wait::Forever)
}

/// Push all `n` elements, waiting at most `timeout_ns` nanoseconds in all:
/// `SHMQ_TIMEOUT` with `*pushed` the number that went in.
///
/// # Safety
/// As `shmq_try_push_many()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_push_many_timeout(
    producer: shmq_producer_t,
    elems: *const c_void,
    n: usize,
    pushed: *mut usize,
    timeout_ns: u64,
) -> shmq_status {
    push_many(producer, elems, n, pushed, Wait::For(nanos(timeout_ns)))
}

/// Pop up to `n` elements into the array at `out` without waiting:
/// `*popped` is how many, in order. `SHMQ_OK` if at least one (or `n` is
/// 0), `SHMQ_EMPTY` if none, `SHMQ_DISCONNECTED` if none and the producer
/// side has gone.
///
/// # Safety
/// `out` is NULL or valid for writes of `n * elem_size` bytes; `popped`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_try_pop_many(
    consumer: shmq_consumer_t,
    out: *mut c_void,
    n: usize,
    popped: *mut usize,
) -> shmq_status {
    pop_many(consumer, out, n, popped, Wait::Never)
}

/// Pop up to `n` elements, waiting as long as it takes for the first, then
/// taking what is there without waiting again.
///
/// # Safety
/// As `shmq_try_pop_many()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_pop_many(
    consumer: shmq_consumer_t,
    out: *mut c_void,
    n: usize,
    popped: *mut usize,
) -> shmq_status {
    pop_many(consumer, out, n, popped, Wait::Forever)
}

/// As `shmq_pop_many()`, waiting at most `timeout_ns` nanoseconds for the
/// first element (`SHMQ_TIMEOUT`).
///
/// # Safety
/// As `shmq_try_pop_many()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_pop_many_timeout(
    consumer: shmq_consumer_t,
    out: *mut c_void,
    n: usize,
    popped: *mut usize,
    timeout_ns: u64,
) -> shmq_status {
    pop_many(consumer, out, n, popped, Wait::For(nanos(timeout_ns)))
}
