//! The byte ring: variable-size messages, any length up to the endpoint's
//! maximum message size (larger than the ring too).

use std::ffi::{c_char, c_void};
use std::sync::Mutex;

use shmqueue::bytes::{Consumer, Producer};
use shmqueue::{ByteRing, RecvError, SendError};

use crate::elem::Wait;
use crate::handles::{self, lock};
use crate::{c_str, guard, nanos, null, shmq_status, Fail};

/// A mapped byte ring. Owned by the caller: `shmq_bytes_free()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_bytes_t {
    /// Opaque id; 0 is never valid.
    pub id: u64,
}

/// The sending endpoint of a byte ring (one at a time). Owned by the
/// caller: `shmq_bytes_producer_free()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_bytes_producer_t {
    /// Opaque id; 0 is never valid.
    pub id: u64,
}

/// The receiving endpoint of a byte ring (one at a time). Owned by the
/// caller: `shmq_bytes_consumer_free()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_bytes_consumer_t {
    /// Opaque id; 0 is never valid.
    pub id: u64,
}

struct RingObj(ByteRing);
struct ProducerObj(Mutex<Producer>);
struct ConsumerObj(Mutex<Consumer>);

const R: &str = "byte ring";
const P: &str = "byte-ring producer";
const C: &str = "byte-ring consumer";

fn send_fail(e: SendError) -> Fail {
    match e {
        SendError::Full => Fail::quiet(shmq_status::SHMQ_FULL),
        SendError::Timeout => Fail::quiet(shmq_status::SHMQ_TIMEOUT),
        SendError::Disconnected => Fail::new(shmq_status::SHMQ_DISCONNECTED, e.to_string()),
        SendError::TooLarge { .. } => Fail::new(shmq_status::SHMQ_ERR_TOO_LARGE, e.to_string()),
        SendError::Corrupt(c) => c.into(),
        other => Fail::new(shmq_status::SHMQ_ERR_IO, other.to_string()),
    }
}

/// Create the byte ring `name` with `capacity_bytes` of ring and, if
/// `max_message_size` is not 0, that limit on messages (default 64 MiB).
/// On success `*out` is a new handle the caller owns.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_create(
    name: *const c_char,
    capacity_bytes: usize,
    max_message_size: usize,
    schema: u64,
    out: *mut shmq_bytes_t,
) -> shmq_status {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let name = unsafe { c_str(name, "name") }?;
        if out.is_null() {
            return Err(null("out"));
        }
        let mut b = ByteRing::builder().capacity(capacity_bytes).schema(schema);
        if max_message_size != 0 {
            b = b.max_message_size(max_message_size);
        }
        let id = handles::insert(RingObj(b.create(name)?));
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(shmq_bytes_t { id }) };
        Ok(())
    })
}

/// Open the byte ring `name`, checking its kind and `schema`; a non-zero
/// `max_message_size` limits what this process sends and accepts.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_open(
    name: *const c_char,
    max_message_size: usize,
    schema: u64,
    out: *mut shmq_bytes_t,
) -> shmq_status {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let name = unsafe { c_str(name, "name") }?;
        if out.is_null() {
            return Err(null("out"));
        }
        let mut b = ByteRing::builder().schema(schema);
        if max_message_size != 0 {
            b = b.max_message_size(max_message_size);
        }
        let id = handles::insert(RingObj(b.open(name)?));
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(shmq_bytes_t { id }) };
        Ok(())
    })
}

/// Create a byte ring in an unnamed, sealed memfd (see
/// `shmq_queue_create_memfd()`); `max_message_size` and `schema` as in
/// `shmq_bytes_create()`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_create_memfd(
    capacity_bytes: usize,
    max_message_size: usize,
    schema: u64,
    out: *mut shmq_bytes_t,
) -> shmq_status {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        let mut b = ByteRing::builder().capacity(capacity_bytes).schema(schema);
        if max_message_size != 0 {
            b = b.max_message_size(max_message_size);
        }
        let id = handles::insert(RingObj(b.create_memfd()?));
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(shmq_bytes_t { id }) };
        Ok(())
    })
}

/// Open a memfd byte ring from `fd`, which stays the caller's (see
/// `shmq_queue_open_fd()`).
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_open_fd(
    fd: i32,
    max_message_size: usize,
    schema: u64,
    out: *mut shmq_bytes_t,
) -> shmq_status {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        let mut b = ByteRing::builder().schema(schema);
        if max_message_size != 0 {
            b = b.max_message_size(max_message_size);
        }
        let fd = crate::dup_caller_fd(fd)?;
        let id = handles::insert(RingObj(b.open_fd(fd)?));
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(shmq_bytes_t { id }) };
        Ok(())
    })
}

/// A new close-on-exec descriptor for the ring's segment, owned by the
/// caller (see `shmq_queue_dup_fd()`).
///
/// # Safety
/// `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_dup_fd(ring: shmq_bytes_t, fd: *mut i32) -> shmq_status {
    guard(|| {
        let r = handles::get::<RingObj>(ring.id, R)?;
        if fd.is_null() {
            return Err(null("fd"));
        }
        let owned = r.0.dup_fd()?;
        // SAFETY: non-null and writable by the contract.
        unsafe { fd.write(std::os::fd::IntoRawFd::into_raw_fd(owned)) };
        Ok(())
    })
}

/// Bytes of ring, into `*out`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_capacity(ring: shmq_bytes_t, out: *mut usize) -> shmq_status {
    guard(|| {
        let r = handles::get::<RingObj>(ring.id, R)?;
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(r.0.capacity()) };
        Ok(())
    })
}

/// A snapshot of a byte ring, from `shmq_bytes_stats()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_bytes_stats_t {
    /// Bytes of ring (the data area).
    pub capacity: usize,
    /// Bytes in the ring now, record headers and padding included.
    pub len: usize,
    /// The largest payload of one record: the most a `shmq_bytes_try_send()`
    /// can take. Blocking and timed sends split larger messages.
    pub max_record_payload: usize,
    /// This handle's limit on one message.
    pub max_message_size: usize,
}

/// A snapshot of the ring's state into `*out`.
///
/// # Safety
/// `out` is NULL or valid for writes of a `shmq_bytes_stats_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_stats(
    ring: shmq_bytes_t,
    out: *mut shmq_bytes_stats_t,
) -> shmq_status {
    guard(|| {
        let r = handles::get::<RingObj>(ring.id, R)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let st = shmq_bytes_stats_t {
            capacity: r.0.capacity(),
            len: r.0.len(),
            max_record_payload: r.0.max_record_payload(),
            max_message_size: r.0.max_message_size(),
        };
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(st) };
        Ok(())
    })
}

/// Release a byte-ring handle (its endpoints stay valid).
#[no_mangle]
pub extern "C" fn shmq_bytes_free(ring: shmq_bytes_t) -> shmq_status {
    guard(|| handles::remove::<RingObj>(ring.id, R))
}

/// Claim the producer role (`SHMQ_ERR_ROLE_TAKEN` while another lives).
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_producer(
    ring: shmq_bytes_t,
    out: *mut shmq_bytes_producer_t,
) -> shmq_status {
    guard(|| {
        let r = handles::get::<RingObj>(ring.id, R)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let id = handles::insert(ProducerObj(Mutex::new(r.0.producer()?)));
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(shmq_bytes_producer_t { id }) };
        Ok(())
    })
}

/// Claim the consumer role (`SHMQ_ERR_ROLE_TAKEN` while another lives).
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_consumer(
    ring: shmq_bytes_t,
    out: *mut shmq_bytes_consumer_t,
) -> shmq_status {
    guard(|| {
        let r = handles::get::<RingObj>(ring.id, R)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let id = handles::insert(ConsumerObj(Mutex::new(r.0.consumer()?)));
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(shmq_bytes_consumer_t { id }) };
        Ok(())
    })
}

/// Release the producer (the consumer sees it gone once drained).
#[no_mangle]
pub extern "C" fn shmq_bytes_producer_free(producer: shmq_bytes_producer_t) -> shmq_status {
    guard(|| handles::remove::<ProducerObj>(producer.id, P))
}

/// Release the consumer.
#[no_mangle]
pub extern "C" fn shmq_bytes_consumer_free(consumer: shmq_bytes_consumer_t) -> shmq_status {
    guard(|| handles::remove::<ConsumerObj>(consumer.id, C))
}

fn send(p: shmq_bytes_producer_t, msg: *const c_void, len: usize, how: Wait) -> shmq_status {
    guard(|| {
        let p = handles::get::<ProducerObj>(p.id, P)?;
        if msg.is_null() && len != 0 {
            return Err(null("msg"));
        }
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: the public functions' contract: `msg` points to `len`
            // readable bytes of the caller's own memory, unchanged during
            // the call (not the shared segment).
            unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) }
        };
        let mut ep = lock(&p.0);
        match how {
            Wait::Never => ep.try_send(bytes),
            Wait::Forever => ep.send(bytes),
            Wait::For(t) => ep.send_timeout(bytes, t),
        }
        .map_err(send_fail)
    })
}

/// Send the `len` bytes at `msg` (copied) as one message, without waiting:
/// `SHMQ_FULL` if there is no room now (a non-blocking send takes one
/// record, so at most the ring's largest record), `SHMQ_ERR_TOO_LARGE`
/// past the limit, `SHMQ_DISCONNECTED` if the consumer has gone.
///
/// # Safety
/// `msg` is valid for reads of `len` bytes (it may be NULL if `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_try_send(
    producer: shmq_bytes_producer_t,
    msg: *const c_void,
    len: usize,
) -> shmq_status {
    send(producer, msg, len, Wait::Never)
}

/// Send one message, waiting for room as long as it takes; a message
/// larger than the ring is streamed through it in fragments.
///
/// # Safety
/// As `shmq_bytes_try_send()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_send(
    producer: shmq_bytes_producer_t,
    msg: *const c_void,
    len: usize,
) -> shmq_status {
    send(producer, msg, len, Wait::Forever)
}

/// Send one message, waiting at most `timeout_ns` nanoseconds.
///
/// # Safety
/// As `shmq_bytes_try_send()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_send_timeout(
    producer: shmq_bytes_producer_t,
    msg: *const c_void,
    len: usize,
    timeout_ns: u64,
) -> shmq_status {
    send(producer, msg, len, Wait::For(nanos(timeout_ns)))
}

fn recv(
    c: shmq_bytes_consumer_t,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    how: Wait,
) -> shmq_status {
    guard(|| {
        let c = handles::get::<ConsumerObj>(c.id, C)?;
        if buf.is_null() && cap != 0 {
            return Err(null("buf"));
        }
        if len.is_null() {
            return Err(null("len"));
        }
        let out: &mut [u8] = if cap == 0 {
            &mut []
        } else {
            // SAFETY: the public functions' contract: `buf` is the caller's
            // own memory, writable for `cap` bytes and not aliased during
            // the call. (The library copies into it from shared memory
            // through raw pointers.)
            unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) }
        };
        let mut ep = lock(&c.0);
        let r = match how {
            Wait::Never => ep.try_recv_into(out),
            Wait::Forever => ep.recv_into(out),
            Wait::For(t) => ep.recv_into_timeout(out, t),
        };
        let (n, res) = match r {
            Ok(n) => (n, Ok(())),
            Err(RecvError::BufferTooSmall { needed }) => (
                needed,
                Err(Fail::new(
                    shmq_status::SHMQ_ERR_BUFFER_TOO_SMALL,
                    format!("the next message needs {needed} bytes, the buffer holds {cap}"),
                )),
            ),
            Err(RecvError::Empty) => (0, Err(Fail::quiet(shmq_status::SHMQ_EMPTY))),
            Err(RecvError::Timeout) => (0, Err(Fail::quiet(shmq_status::SHMQ_TIMEOUT))),
            Err(e @ RecvError::Disconnected) => (
                0,
                Err(Fail::new(shmq_status::SHMQ_DISCONNECTED, e.to_string())),
            ),
            Err(e @ RecvError::TooLarge { .. }) => (
                0,
                Err(Fail::new(shmq_status::SHMQ_ERR_TOO_LARGE, e.to_string())),
            ),
            Err(RecvError::Corrupt(c)) => (0, Err(c.into())),
            Err(e) => (0, Err(Fail::new(shmq_status::SHMQ_ERR_IO, e.to_string()))),
        };
        // SAFETY: non-null (checked) and writable by the contract.
        unsafe { len.write(n) };
        res
    })
}

/// Receive the next message into `buf` (`cap` bytes) without waiting; on
/// `SHMQ_OK` `*len` is its length. `SHMQ_EMPTY` if no complete message is
/// there; `SHMQ_ERR_BUFFER_TOO_SMALL` leaves the message queued and sets
/// `*len` to the size it needs; `SHMQ_DISCONNECTED` once drained and the
/// producer has gone.
///
/// # Safety
/// `buf` is valid for writes of `cap` bytes (NULL if `cap` is 0); `len` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_try_recv(
    consumer: shmq_bytes_consumer_t,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> shmq_status {
    recv(consumer, buf, cap, len, Wait::Never)
}

/// Receive the next message, waiting as long as it takes.
///
/// # Safety
/// As `shmq_bytes_try_recv()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_recv(
    consumer: shmq_bytes_consumer_t,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> shmq_status {
    recv(consumer, buf, cap, len, Wait::Forever)
}

/// Receive the next message, waiting at most `timeout_ns` nanoseconds.
///
/// # Safety
/// As `shmq_bytes_try_recv()`.
#[no_mangle]
pub unsafe extern "C" fn shmq_bytes_recv_timeout(
    consumer: shmq_bytes_consumer_t,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    timeout_ns: u64,
) -> shmq_status {
    recv(consumer, buf, cap, len, Wait::For(nanos(timeout_ns)))
}
