//! Broadcast rings of fixed-size elements: one publisher, any number of
//! subscribers, each of which sees every item in publish order
//! (`shmqueue::broadcast`).
//!
//! The element types are the same table as the SPSC and MPMC rings
//! (`src/elem.rs`), so a C element and a Rust `T` of the same size and
//! alignment share a ring. A subscriber that was lapped (overwrite ring) or
//! evicted (lossless ring with a `max_lag`) gets its own status code and the
//! exact number of items it missed, as the library's typed error says.

use std::ffi::{c_char, c_void};
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Duration;

use bytemuck::Pod;
use shmqueue::broadcast::{self, Broadcast, Policy, RecvError, Start, TryRecvError};

use crate::elem::{self, At, Wait};
use crate::handles::{self, lock};
use crate::{c_str, guard, nanos, null, shmq_status, Fail};

/// What a broadcast publisher does when its slowest subscriber is a whole
/// ring behind (`shmq_broadcast_config.policy`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmq_policy {
    /// The publisher waits (backpressure): no live subscriber misses an
    /// item. The default.
    SHMQ_POLICY_LOSSLESS = 1,
    /// The publisher never waits; a subscriber it laps gets `SHMQ_LAGGED`
    /// with the number of items it missed.
    SHMQ_POLICY_OVERWRITE = 2,
}

/// Where a new subscriber starts (`shmq_subscribe()`'s `start`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmq_start {
    /// Only what is published after it joins.
    SHMQ_START_LATEST = 1,
    /// The oldest item still in the ring: of the last `capacity` items
    /// published, the `capacity - 1` no publish in flight can be
    /// overwriting.
    SHMQ_START_OLDEST = 2,
    /// The item with sequence number `seq` (items count from 0, one per
    /// publish), if it is still in the ring or is the next one; otherwise
    /// `SHMQ_ERR_START_GONE`, whose message names the range there is.
    SHMQ_START_AT = 3,
}

/// A mapped broadcast ring. Owned by the caller: `shmq_broadcast_free()`.
/// Its publisher and subscribers stay valid after it is freed (they keep
/// the mapping). A zeroed value is never a valid handle.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_broadcast_t {
    /// Opaque id; 0 is never valid.
    pub id: u64,
}

/// The publisher of a broadcast ring (one at a time, in any process).
/// Owned by the caller: `shmq_publisher_free()`, which gives the role back
/// (subscribers that have read everything then see `SHMQ_DISCONNECTED`).
/// If the process dies instead, a new publisher can take the role over.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_publisher_t {
    /// Opaque id; 0 is never valid.
    pub id: u64,
}

/// A subscriber of a broadcast ring. Owned by the caller:
/// `shmq_subscriber_free()`. If its process dies, a lossless publisher
/// stops waiting for it within a fraction of a second.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_subscriber_t {
    /// Opaque id; 0 is never valid.
    pub id: u64,
}

/// Creation parameters of `shmq_broadcast_create()`. Start from
/// `shmq_broadcast_config_default()` and change what you need, so that a
/// field added later gets its default.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_broadcast_config {
    /// Bytes per element (`sizeof` of the C type).
    pub elem_size: usize,
    /// Alignment of the element (`_Alignof`/`alignof` of the C type).
    pub elem_align: usize,
    /// Items the ring holds (default 1024).
    pub capacity: usize,
    /// Schema tag; an opener must pass the same one (default 0).
    pub schema: u64,
    /// A `shmq_policy` value (default `SHMQ_POLICY_LOSSLESS`). An integer,
    /// so that a stray value is an error code rather than an invalid enum.
    pub policy: i32,
    /// Most subscribers attached at once (0: the library's default, 64; at
    /// most 1024). One more is `SHMQ_ERR_REGISTRY_FULL`.
    pub max_subscribers: u32,
    /// Lossless rings: a live subscriber that keeps the ring full for
    /// longer than this many nanoseconds is evicted (its next receive is
    /// `SHMQ_EVICTED`). 0 (the default): never; a stopped subscriber holds
    /// the publisher for as long as it lives. Ignored by overwrite rings.
    pub max_lag_ns: u64,
}

/// What a create or open asks for (the element type picks the instance).
pub(crate) struct Params {
    capacity: usize,
    schema: u64,
    overwrite: bool,
    max_subscribers: u32,
    max_lag_ns: u64,
}

/// A broadcast ring of some element type, behind the C handle.
pub(crate) trait Ring: Send + Sync {
    fn publisher(&self) -> Result<Box<dyn Pub>, Fail>;
    fn subscribe(&self, start: Start) -> Result<Box<dyn Sub>, Fail>;
    fn stats(&self) -> broadcast::Stats;
    fn elem_size(&self) -> usize;
    fn elem_align(&self) -> usize;
    fn dup_fd(&self) -> Result<OwnedFd, Fail>;
}

/// A publisher endpoint.
pub(crate) trait Pub: Send {
    /// # Safety
    /// `src` is valid for reads of `elem_size` bytes (any alignment).
    unsafe fn publish(&mut self, src: *const u8, how: Wait) -> Result<(), Fail>;
    fn position(&self) -> u64;
}

/// A subscriber endpoint.
pub(crate) trait Sub: Send {
    /// Receive into `dst`; on `SHMQ_LAGGED`/`SHMQ_EVICTED`, `*missed` is
    /// the number of items lost (it is left alone otherwise).
    ///
    /// # Safety
    /// `dst` is valid for writes of `elem_size` bytes (any alignment).
    unsafe fn recv(&mut self, dst: *mut u8, how: Wait, missed: &mut u64) -> Result<(), Fail>;
    fn position(&self) -> u64;
    fn lag(&self) -> u64;
}

impl<T: Pod + Send + Sync> Ring for Broadcast<T> {
    fn publisher(&self) -> Result<Box<dyn Pub>, Fail> {
        Ok(Box::new(Broadcast::publisher(self)?))
    }
    fn subscribe(&self, start: Start) -> Result<Box<dyn Sub>, Fail> {
        Ok(Box::new(Broadcast::subscribe(self, start)?))
    }
    fn stats(&self) -> broadcast::Stats {
        Broadcast::stats(self)
    }
    fn elem_size(&self) -> usize {
        std::mem::size_of::<T>()
    }
    fn elem_align(&self) -> usize {
        std::mem::align_of::<T>()
    }
    fn dup_fd(&self) -> Result<OwnedFd, Fail> {
        Ok(Broadcast::dup_fd(self)?)
    }
}

impl<T: Pod + Send> Pub for broadcast::Publisher<T> {
    unsafe fn publish(&mut self, src: *const u8, how: Wait) -> Result<(), Fail> {
        // SAFETY: forwarded from this method's contract.
        let v: T = unsafe { elem::read_elem(src) };
        match how {
            Wait::Never => self.try_publish(v).map_err(elem::try_push_fail),
            Wait::Forever => broadcast::Publisher::publish(self, v).map_err(elem::push_fail),
            Wait::For(t) => self.publish_timeout(v, t).map_err(elem::push_fail),
        }
    }
    fn position(&self) -> u64 {
        broadcast::Publisher::position(self)
    }
}

/// The library's receive error as a status, and the items it says were
/// lost.
fn recv_fail(e: RecvError, missed: &mut u64) -> Fail {
    use shmq_status::*;
    match e {
        RecvError::Timeout => Fail::quiet(SHMQ_TIMEOUT),
        RecvError::Lagged { missed: n } => {
            *missed = n;
            Fail::new(SHMQ_LAGGED, e.to_string())
        }
        RecvError::Evicted { missed: n } => {
            *missed = n;
            Fail::new(SHMQ_EVICTED, e.to_string())
        }
        RecvError::Disconnected => Fail::new(SHMQ_DISCONNECTED, e.to_string()),
        RecvError::Corrupt(c) => c.into(),
        other => Fail::new(SHMQ_ERR_IO, other.to_string()),
    }
}

fn try_recv_fail(e: TryRecvError, missed: &mut u64) -> Fail {
    match e {
        TryRecvError::Empty => Fail::quiet(shmq_status::SHMQ_EMPTY),
        TryRecvError::Lagged { missed: n } => recv_fail(RecvError::Lagged { missed: n }, missed),
        TryRecvError::Evicted { missed: n } => recv_fail(RecvError::Evicted { missed: n }, missed),
        TryRecvError::Disconnected => recv_fail(RecvError::Disconnected, missed),
        TryRecvError::Corrupt(c) => c.into(),
        other => Fail::new(shmq_status::SHMQ_ERR_IO, other.to_string()),
    }
}

impl<T: Pod + Send> Sub for broadcast::Subscriber<T> {
    unsafe fn recv(&mut self, dst: *mut u8, how: Wait, missed: &mut u64) -> Result<(), Fail> {
        let v: T = match how {
            Wait::Never => self.try_recv().map_err(|e| try_recv_fail(e, missed))?,
            Wait::Forever => broadcast::Subscriber::recv(self).map_err(|e| recv_fail(e, missed))?,
            Wait::For(t) => self.recv_timeout(t).map_err(|e| recv_fail(e, missed))?,
        };
        // SAFETY: forwarded from this method's contract.
        unsafe { elem::write_elem(dst, v) };
        Ok(())
    }
    fn position(&self) -> u64 {
        broadcast::Subscriber::position(self)
    }
    fn lag(&self) -> u64 {
        broadcast::Subscriber::lag(self)
    }
}

/// Create or open a `Broadcast<T>` (called through `elem::dispatch_broadcast`).
pub(crate) fn make<T: Pod + Send + Sync>(p: &Params, at: At) -> Result<Box<dyn Ring>, Fail> {
    let mut b = Broadcast::<T>::builder().schema(p.schema);
    if matches!(at, At::Create(_) | At::CreateMemfd) {
        b = b.capacity(p.capacity);
        if p.max_subscribers != 0 {
            b = b.max_subscribers(p.max_subscribers);
        }
        b = if p.overwrite {
            b.overwrite()
        } else {
            b.lossless()
        };
        if p.max_lag_ns != 0 && !p.overwrite {
            b = b.max_lag(Duration::from_nanos(p.max_lag_ns));
        }
    }
    Ok(Box::new(match at {
        At::Create(name) => b.create(name)?,
        At::Open(name) => b.open(name)?,
        At::CreateMemfd => b.create_memfd()?,
        At::OpenFd(fd) => b.open_fd(fd)?,
    }))
}

struct RingObj(Box<dyn Ring>);
struct PublisherObj(Mutex<Box<dyn Pub>>);
struct SubscriberObj(Mutex<SubState>);

struct SubState {
    ep: Box<dyn Sub>,
    /// Items lost to laps and evictions since it subscribed.
    missed: u64,
}

const B: &str = "broadcast";
const P: &str = "publisher";
const S: &str = "subscriber";

/// A configuration with the defaults (lossless, capacity 1024, 64
/// subscribers, no `max_lag`) for an element of `elem_size` bytes aligned
/// to `elem_align`.
#[no_mangle]
pub extern "C" fn shmq_broadcast_config_default(
    elem_size: usize,
    elem_align: usize,
) -> shmq_broadcast_config {
    shmq_broadcast_config {
        elem_size,
        elem_align,
        capacity: broadcast::DEFAULT_CAPACITY,
        schema: 0,
        policy: shmq_policy::SHMQ_POLICY_LOSSLESS as i32,
        max_subscribers: 0,
        max_lag_ns: 0,
    }
}

fn unsupported(elem_size: usize, elem_align: usize) -> Fail {
    Fail::new(
        shmq_status::SHMQ_ERR_UNSUPPORTED_ELEMENT,
        format!(
            "elements of {elem_size} bytes aligned to {elem_align} are not supported by the \
             bindings (see shmq_elem_supported)"
        ),
    )
}

fn open_or_create(at: At, elem_size: usize, elem_align: usize, p: Params) -> Result<u64, Fail> {
    let r = elem::dispatch_broadcast(elem_size, elem_align, &p, at)
        .ok_or_else(|| unsupported(elem_size, elem_align))??;
    Ok(handles::insert(RingObj(r)))
}

fn create(at: At, c: &shmq_broadcast_config) -> Result<u64, Fail> {
    let overwrite = match c.policy {
        1 => false,
        2 => true,
        k => {
            return Err(Fail::new(
                shmq_status::SHMQ_ERR_INVALID_ARGUMENT,
                format!(
                    "unknown broadcast policy {k}: pass SHMQ_POLICY_LOSSLESS or \
                     SHMQ_POLICY_OVERWRITE"
                ),
            ))
        }
    };
    let p = Params {
        capacity: c.capacity,
        schema: c.schema,
        overwrite,
        max_subscribers: c.max_subscribers,
        max_lag_ns: c.max_lag_ns,
    };
    open_or_create(at, c.elem_size, c.elem_align, p)
}

fn open(at: At, elem_size: usize, elem_align: usize, schema: u64) -> Result<u64, Fail> {
    let p = Params {
        capacity: 0,
        schema,
        overwrite: false,
        max_subscribers: 0,
        max_lag_ns: 0,
    };
    open_or_create(at, elem_size, elem_align, p)
}

/// Read a `shmq_broadcast_config` argument.
///
/// # Safety
/// `config` is NULL or valid for reads of a `shmq_broadcast_config`.
unsafe fn read_config(config: *const shmq_broadcast_config) -> Result<shmq_broadcast_config, Fail> {
    if config.is_null() {
        return Err(null("config"));
    }
    // SAFETY: non-null and readable by the contract; every field is a
    // plain integer, so any bytes are a valid value.
    Ok(unsafe { config.read_unaligned() })
}

/// Write `v` to the caller's `out`.
///
/// # Safety
/// `out` is non-null and valid for writes of a `T`.
unsafe fn put<T>(out: *mut T, v: T) {
    // SAFETY: by this function's contract.
    unsafe { out.write(v) }
}

/// Create the broadcast ring `name` (NUL-terminated, e.g. "/ticks") from
/// `config`. On success `*out` is a new handle the caller owns. Fails with
/// `SHMQ_ERR_ALREADY_EXISTS` if the name is taken; the segment stays until
/// `shmq_unlink()`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `config` and `out` are NULL or
/// valid for reads and writes respectively.
#[no_mangle]
pub unsafe extern "C" fn shmq_broadcast_create(
    name: *const c_char,
    config: *const shmq_broadcast_config,
    out: *mut shmq_broadcast_t,
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
        unsafe { put(out, shmq_broadcast_t { id }) };
        Ok(())
    })
}

/// Open the existing broadcast ring `name`. The segment's header must
/// match: element size (`SHMQ_ERR_ELEM_SIZE`), alignment
/// (`SHMQ_ERR_ELEM_ALIGN`), kind (`SHMQ_ERR_KIND`: not a broadcast ring)
/// and `schema` (`SHMQ_ERR_SCHEMA`). The policy, capacity and limits are
/// the creator's. On success `*out` is a new handle the caller owns.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_broadcast_open(
    name: *const c_char,
    elem_size: usize,
    elem_align: usize,
    schema: u64,
    out: *mut shmq_broadcast_t,
) -> shmq_status {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let name = unsafe { c_str(name, "name") }?;
        if out.is_null() {
            return Err(null("out"));
        }
        let id = open(At::Open(name), elem_size, elem_align, schema)?;
        // SAFETY: `out` is non-null and writable by the contract.
        unsafe { put(out, shmq_broadcast_t { id }) };
        Ok(())
    })
}

/// Create a broadcast ring in an unnamed memfd, sealed against resizing:
/// nothing in /dev/shm, freed when the last process holding it closes it.
/// Hand it to peers with `shmq_broadcast_dup_fd()`; they open it with
/// `shmq_broadcast_open_fd()`.
///
/// # Safety
/// `config` is NULL or readable; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_broadcast_create_memfd(
    config: *const shmq_broadcast_config,
    out: *mut shmq_broadcast_t,
) -> shmq_status {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let c = unsafe { read_config(config) }?;
        if out.is_null() {
            return Err(null("out"));
        }
        let id = create(At::CreateMemfd, &c)?;
        // SAFETY: `out` is non-null and writable by the contract.
        unsafe { put(out, shmq_broadcast_t { id }) };
        Ok(())
    })
}

/// Open a memfd broadcast ring from the descriptor `fd`, with the checks
/// of `shmq_broadcast_open()` and the memfd's seals. `fd` stays the
/// caller's: the library duplicates it. A descriptor that is not open is
/// `SHMQ_ERR_IO`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_broadcast_open_fd(
    fd: i32,
    elem_size: usize,
    elem_align: usize,
    schema: u64,
    out: *mut shmq_broadcast_t,
) -> shmq_status {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        let fd = crate::dup_caller_fd(fd)?;
        let id = open(At::OpenFd(fd), elem_size, elem_align, schema)?;
        // SAFETY: `out` is non-null and writable by the contract.
        unsafe { put(out, shmq_broadcast_t { id }) };
        Ok(())
    })
}

/// A new descriptor for the ring's segment, into `*fd`: owned by the
/// caller, who must `close()` it, and close-on-exec.
///
/// # Safety
/// `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_broadcast_dup_fd(
    bcast: shmq_broadcast_t,
    fd: *mut i32,
) -> shmq_status {
    guard(|| {
        let r = handles::get::<RingObj>(bcast.id, B)?;
        if fd.is_null() {
            return Err(null("fd"));
        }
        let owned = r.0.dup_fd()?;
        // SAFETY: non-null and writable by the contract.
        unsafe { put(fd, std::os::fd::IntoRawFd::into_raw_fd(owned)) };
        Ok(())
    })
}

/// Release a broadcast handle (unmapping the segment once its endpoints
/// are freed too). The segment itself stays until `shmq_unlink()`.
#[no_mangle]
pub extern "C" fn shmq_broadcast_free(bcast: shmq_broadcast_t) -> shmq_status {
    guard(|| handles::remove::<RingObj>(bcast.id, B))
}

/// Claim the publisher role: `SHMQ_ERR_ROLE_TAKEN` while a live publisher
/// holds it (in any process); a dead one's role is taken over, and
/// publishing resumes at its position. On success `*out` is a new handle
/// the caller owns (`shmq_publisher_free()`).
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_publisher(
    bcast: shmq_broadcast_t,
    out: *mut shmq_publisher_t,
) -> shmq_status {
    guard(|| {
        let r = handles::get::<RingObj>(bcast.id, B)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let p = r.0.publisher()?;
        let id = handles::insert(PublisherObj(Mutex::new(p)));
        // SAFETY: non-null and writable by the contract.
        unsafe { put(out, shmq_publisher_t { id }) };
        Ok(())
    })
}

/// Attach a subscriber starting at `start` (a `shmq_start` value; `seq` is
/// the sequence number for `SHMQ_START_AT` and ignored otherwise).
/// `SHMQ_ERR_REGISTRY_FULL` when `max_subscribers` live subscribers are
/// attached; `SHMQ_ERR_START_GONE` when item `seq` is no longer in the ring
/// (or not published yet, beyond the next one). On success `*out` is a new
/// handle the caller owns (`shmq_subscriber_free()`).
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_subscribe(
    bcast: shmq_broadcast_t,
    start: i32,
    seq: u64,
    out: *mut shmq_subscriber_t,
) -> shmq_status {
    guard(|| {
        let r = handles::get::<RingObj>(bcast.id, B)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let start = match start {
            1 => Start::Latest,
            2 => Start::Oldest,
            3 => Start::At(seq),
            k => {
                return Err(Fail::new(
                    shmq_status::SHMQ_ERR_INVALID_ARGUMENT,
                    format!(
                        "unknown start {k}: pass SHMQ_START_LATEST, SHMQ_START_OLDEST or \
                         SHMQ_START_AT"
                    ),
                ))
            }
        };
        let ep = r.0.subscribe(start)?;
        let id = handles::insert(SubscriberObj(Mutex::new(SubState { ep, missed: 0 })));
        // SAFETY: non-null and writable by the contract.
        unsafe { put(out, shmq_subscriber_t { id }) };
        Ok(())
    })
}

/// Release the publisher: the role is given back, and subscribers that
/// have read everything see `SHMQ_DISCONNECTED` (until a new one attaches).
#[no_mangle]
pub extern "C" fn shmq_publisher_free(publisher: shmq_publisher_t) -> shmq_status {
    guard(|| handles::remove::<PublisherObj>(publisher.id, P))
}

/// Release a subscriber: a lossless publisher stops waiting for it.
#[no_mangle]
pub extern "C" fn shmq_subscriber_free(subscriber: shmq_subscriber_t) -> shmq_status {
    guard(|| handles::remove::<SubscriberObj>(subscriber.id, S))
}

fn publish(publisher: shmq_publisher_t, elem: *const c_void, how: Wait) -> shmq_status {
    guard(|| {
        let p = handles::get::<PublisherObj>(publisher.id, P)?;
        if elem.is_null() {
            return Err(null("elem"));
        }
        let mut ep = lock(&p.0);
        // SAFETY: the public functions' contract: `elem` points to
        // `elem_size` readable bytes.
        unsafe { ep.publish(elem.cast(), how) }
    })
}

/// Publish the element at `elem` (`elem_size` bytes, copied) without
/// waiting: `SHMQ_FULL` when a lossless ring's slowest live subscriber is a
/// whole ring behind. An overwrite ring is never full.
///
/// # Safety
/// `elem` is NULL or valid for reads of the ring's `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmq_try_publish(
    publisher: shmq_publisher_t,
    elem: *const c_void,
) -> shmq_status {
    publish(publisher, elem, Wait::Never)
}

/// Publish, waiting while a lossless ring is full (spin, then futex). A dead
/// subscriber stops holding it back within a fraction of a second; a live
/// one only if the ring has a `max_lag`. With no subscriber at all, nothing
/// waits: the item stays for one that starts at `SHMQ_START_OLDEST`.
///
/// # Safety
/// As `shmq_try_publish()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_publish(
    publisher: shmq_publisher_t,
    elem: *const c_void,
) -> shmq_status {
    publish(publisher, elem, Wait::Forever)
}

/// Publish, waiting at most `timeout_ns` nanoseconds (`SHMQ_TIMEOUT`).
///
/// # Safety
/// As `shmq_try_publish()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_publish_timeout(
    publisher: shmq_publisher_t,
    elem: *const c_void,
    timeout_ns: u64,
) -> shmq_status {
    publish(publisher, elem, Wait::For(nanos(timeout_ns)))
}

fn recv(
    subscriber: shmq_subscriber_t,
    elem: *mut c_void,
    missed: *mut u64,
    how: Wait,
) -> shmq_status {
    guard(|| {
        let s = handles::get::<SubscriberObj>(subscriber.id, S)?;
        if elem.is_null() {
            return Err(null("elem"));
        }
        let mut st = lock(&s.0);
        let mut lost = 0;
        // SAFETY: the public functions' contract: `elem` points to
        // `elem_size` writable bytes.
        let r = unsafe { st.ep.recv(elem.cast(), how, &mut lost) };
        st.missed = st.missed.saturating_add(lost);
        if !missed.is_null() {
            // SAFETY: non-null, and writable by the public functions'
            // contract.
            unsafe { put(missed, lost) };
        }
        r
    })
}

/// Receive the next item into `elem` (`elem_size` bytes) without waiting.
/// `SHMQ_EMPTY`: nothing new. `SHMQ_LAGGED` (overwrite ring): the publisher
/// overwrote items before this subscriber read them; `SHMQ_EVICTED`
/// (lossless ring with a `max_lag`): it kept the publisher waiting too
/// long and was cut loose, and has rejoined. In both, `*missed` is the
/// exact number of items it will never see, nothing is written to `elem`,
/// and the next call returns the oldest item still in the ring.
/// `SHMQ_DISCONNECTED`: everything is read and the publisher has gone (not
/// final: a new publisher may attach). `missed` may be NULL; if not, it is
/// written on every return (0 unless lagged or evicted).
///
/// # Safety
/// `elem` is NULL or valid for writes of the ring's `elem_size` bytes;
/// `missed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_try_recv(
    subscriber: shmq_subscriber_t,
    elem: *mut c_void,
    missed: *mut u64,
) -> shmq_status {
    recv(subscriber, elem, missed, Wait::Never)
}

/// Receive, waiting as long as it takes for an item (spin, then futex);
/// otherwise as `shmq_try_recv()`.
///
/// # Safety
/// As `shmq_try_recv()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_recv(
    subscriber: shmq_subscriber_t,
    elem: *mut c_void,
    missed: *mut u64,
) -> shmq_status {
    recv(subscriber, elem, missed, Wait::Forever)
}

/// Receive, waiting at most `timeout_ns` nanoseconds (`SHMQ_TIMEOUT`).
///
/// # Safety
/// As `shmq_try_recv()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_recv_timeout(
    subscriber: shmq_subscriber_t,
    elem: *mut c_void,
    timeout_ns: u64,
    missed: *mut u64,
) -> shmq_status {
    recv(subscriber, elem, missed, Wait::For(nanos(timeout_ns)))
}

/// Where a subscriber stands, from `shmq_subscriber_info()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_subscriber_info_t {
    /// The sequence number of the next item it reads.
    pub position: u64,
    /// Items published that it has not read yet (a snapshot).
    pub lag: u64,
    /// Items it lost to laps and evictions since it subscribed: the sum of
    /// every `*missed` its receives reported.
    pub missed: u64,
}

/// A subscriber's position, lag and total of missed items, into `*out`.
///
/// # Safety
/// `out` is NULL or valid for writes of a `shmq_subscriber_info_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_subscriber_info(
    subscriber: shmq_subscriber_t,
    out: *mut shmq_subscriber_info_t,
) -> shmq_status {
    guard(|| {
        let s = handles::get::<SubscriberObj>(subscriber.id, S)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let st = lock(&s.0);
        let info = shmq_subscriber_info_t {
            position: st.ep.position(),
            lag: st.ep.lag(),
            missed: st.missed,
        };
        // SAFETY: non-null and writable by the contract.
        unsafe { put(out, info) };
        Ok(())
    })
}

/// The sequence number the publisher's next item gets (the number of items
/// published so far), into `*out`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_publisher_position(
    publisher: shmq_publisher_t,
    out: *mut u64,
) -> shmq_status {
    guard(|| {
        let p = handles::get::<PublisherObj>(publisher.id, P)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let pos = lock(&p.0).position();
        // SAFETY: non-null and writable by the contract.
        unsafe { put(out, pos) };
        Ok(())
    })
}

/// A snapshot of a broadcast ring, from `shmq_broadcast_stats()`. Values
/// are read without stopping anyone, so they may be stale when used.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_broadcast_stats_t {
    /// Bytes per element.
    pub elem_size: usize,
    /// Alignment of the element.
    pub elem_align: usize,
    /// Items the ring holds.
    pub capacity: usize,
    /// A `shmq_policy` value.
    pub policy: i32,
    /// The eviction lag of a lossless ring in nanoseconds; 0 if none.
    pub max_lag_ns: u64,
    /// Items published so far (the next item's sequence number).
    pub published: u64,
    /// A publisher is recorded as attached (alive, or dead and not yet
    /// replaced).
    pub publisher_attached: bool,
    /// The attached publisher's process holds its liveness lock.
    pub publisher_alive: bool,
    /// The attached publisher's pid (0 if none).
    pub publisher_pid: u32,
    /// Subscriber entries recorded as attached (a dead one counts until a
    /// lossless publisher it held back drops it).
    pub subscribers: u32,
    /// Attached subscribers whose process holds its liveness lock.
    pub subscribers_alive: u32,
    /// Attached subscribers evicted and not yet told.
    pub subscribers_evicted: u32,
    /// The largest lag (items not yet read) of an attached subscriber.
    pub max_subscriber_lag: u64,
    /// Subscribers evicted for lagging past `max_lag`, ever.
    pub evictions: u64,
    /// Times a subscriber found itself lapped (overwrite) or evicted.
    pub laps: u64,
}

/// One attached subscriber, from `shmq_broadcast_subscribers()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_subscriber_stat_t {
    /// Its registry entry (1 and up; 0 is the publisher's).
    pub entry: u32,
    /// The pid it recorded when attaching.
    pub pid: u32,
    /// Its kernel liveness token is held (false: died, not yet dropped).
    pub alive: bool,
    /// Evicted by the publisher, and not yet told.
    pub evicted: bool,
    /// The sequence number of the next item it reads.
    pub cursor: u64,
    /// Items published that it has not read.
    pub lag: u64,
}

fn policy_code(p: Policy) -> i32 {
    match p {
        Policy::Overwrite => shmq_policy::SHMQ_POLICY_OVERWRITE as i32,
        Policy::Lossless => shmq_policy::SHMQ_POLICY_LOSSLESS as i32,
    }
}

/// A snapshot of the ring into `*out`: geometry and policy, items
/// published, the publisher and the subscribers with their liveness, and
/// the eviction and lap counts.
///
/// # Safety
/// `out` is NULL or valid for writes of a `shmq_broadcast_stats_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_broadcast_stats(
    bcast: shmq_broadcast_t,
    out: *mut shmq_broadcast_stats_t,
) -> shmq_status {
    guard(|| {
        let r = handles::get::<RingObj>(bcast.id, B)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let s = r.0.stats();
        let count = |f: fn(&broadcast::SubscriberStat) -> bool| {
            s.subscribers.iter().filter(|x| f(x)).count() as u32
        };
        let st = shmq_broadcast_stats_t {
            elem_size: r.0.elem_size(),
            elem_align: r.0.elem_align(),
            capacity: s.capacity,
            policy: policy_code(s.policy),
            max_lag_ns: s
                .max_lag
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            published: s.published,
            publisher_attached: s.publisher.is_some(),
            publisher_alive: s.publisher.is_some_and(|(_, alive)| alive),
            publisher_pid: s.publisher.map_or(0, |(pid, _)| pid),
            subscribers: s.subscribers.len() as u32,
            subscribers_alive: count(|x| x.alive),
            subscribers_evicted: count(|x| x.evicted),
            max_subscriber_lag: s.subscribers.iter().map(|x| x.lag).max().unwrap_or(0),
            evictions: s.evictions,
            laps: s.laps,
        };
        // SAFETY: non-null and writable by the contract.
        unsafe { put(out, st) };
        Ok(())
    })
}

/// The attached subscribers, one `shmq_subscriber_stat_t` each: the first
/// `cap` of them into `out[0..cap]`, and how many there are into `*count`
/// (call with `cap` 0 and `out` NULL to size the array; the number may
/// change between calls).
///
/// # Safety
/// `out` is valid for writes of `cap` elements (it may be NULL when `cap`
/// is 0); `count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_broadcast_subscribers(
    bcast: shmq_broadcast_t,
    out: *mut shmq_subscriber_stat_t,
    cap: usize,
    count: *mut usize,
) -> shmq_status {
    guard(|| {
        let r = handles::get::<RingObj>(bcast.id, B)?;
        if count.is_null() {
            return Err(null("count"));
        }
        if out.is_null() && cap != 0 {
            return Err(null("out"));
        }
        let s = r.0.stats();
        for (i, x) in s.subscribers.iter().take(cap).enumerate() {
            let v = shmq_subscriber_stat_t {
                entry: x.entry,
                pid: x.pid,
                alive: x.alive,
                evicted: x.evicted,
                cursor: x.cursor,
                lag: x.lag,
            };
            // SAFETY: `out` is non-null here (cap > 0) and valid for `cap`
            // writes by the contract; i < cap.
            unsafe { put(out.add(i), v) };
        }
        // SAFETY: non-null and writable by the contract.
        unsafe { put(count, s.subscribers.len()) };
        Ok(())
    })
}
