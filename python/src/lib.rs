//! `shmqueue._native`: the Python extension behind the `shmqueue` package.
//!
//! It is a thin layer over the C API of `shmqueue-ffi`, so a Python process
//! is the same kind of peer as a C one: the same handle table (a closed or
//! stale handle is an error, never a crash), the same header checks at
//! open, the same liveness and error codes. The Python package
//! (`python/shmqueue/__init__.py`) turns element types (numpy dtypes or
//! `struct` formats) into sizes and buffers; this module moves bytes.
//!
//! * Every call that can wait releases the GIL. Typed rings wait in slices
//!   of [`SLICE`], checking for signals between them, so Ctrl-C interrupts a
//!   blocked `pop()`; a slice that ends leaves nothing half-done, since each
//!   element moves whole. Byte-ring calls wait in one piece: a timeout in
//!   the middle of a fragmented message would abandon it.
//! * Errors become the exception classes of `shmqueue._errors`, chosen by
//!   status code, with the Rust error's message.

use std::ffi::{c_void, CStr, CString};
use std::time::{Duration, Instant};

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use shmqueue_ffi::*;

/// The longest a typed-ring wait goes without checking for signals.
const SLICE: Duration = Duration::from_millis(50);

/// The exception for `st`, with `msg`, from `shmqueue._errors`.
fn error(py: Python<'_>, st: shmq_status, msg: String) -> PyErr {
    let made = py
        .import("shmqueue._errors")
        .and_then(|m| m.getattr("from_status"))
        .and_then(|f| f.call1((st as i32, msg)));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// The message for a status just returned on this thread.
fn message(st: shmq_status) -> String {
    use shmq_status::*;
    // Ordinary outcomes leave no message (the bindings skip the string on
    // hot paths); errors leave theirs in the thread-local buffer.
    let quiet = matches!(st, SHMQ_FULL | SHMQ_EMPTY | SHMQ_TIMEOUT);
    let msg = if quiet {
        String::new()
    } else {
        // SAFETY: the bindings return a NUL-terminated string they own,
        // valid until this thread's next call into them; copied at once.
        unsafe { CStr::from_ptr(shmq_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    };
    if msg.is_empty() {
        // SAFETY: a static NUL-terminated string for any status.
        unsafe { CStr::from_ptr(shmq_strerror(st as i32)) }
            .to_string_lossy()
            .into_owned()
    } else {
        msg
    }
}

fn check(py: Python<'_>, st: shmq_status) -> PyResult<()> {
    if st == shmq_status::SHMQ_OK {
        Ok(())
    } else {
        Err(error(py, st, message(st)))
    }
}

fn c_name(py: Python<'_>, name: &str) -> PyResult<CString> {
    CString::new(name).map_err(|_| {
        error(
            py,
            shmq_status::SHMQ_ERR_INVALID_NAME,
            format!("the name {name:?} contains a NUL byte"),
        )
    })
}

/// How long a call may wait: not at all, or until a deadline (`None`:
/// forever).
#[derive(Clone, Copy)]
enum Mode {
    Try,
    Until(Option<Instant>),
}

fn mode(block: bool, timeout: Option<f64>) -> PyResult<Mode> {
    if !block {
        return Ok(Mode::Try);
    }
    match timeout {
        None => Ok(Mode::Until(None)),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Mode::Until(Some(
            Instant::now() + Duration::from_secs_f64(t.min(1e9)),
        ))),
        Some(t) => Err(PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds, not {t}"
        ))),
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Run `call(slice)` with the GIL released, slice by slice, until it
/// returns something other than `SHMQ_TIMEOUT` or `deadline` passes,
/// checking for signals between slices.
fn sliced(
    py: Python<'_>,
    deadline: Option<Instant>,
    mut call: impl FnMut(Duration) -> shmq_status + Send,
) -> PyResult<shmq_status> {
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        };
        let st = py.detach(|| call(slice));
        if st != shmq_status::SHMQ_TIMEOUT || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(st);
        }
        py.check_signals()?;
    }
}

/// A buffer's bytes as (address, length), checked C-contiguous and, if
/// asked, writable.
fn region(py: Python<'_>, buf: &PyBuffer<u8>, writable: bool) -> PyResult<(usize, usize)> {
    if !buf.is_c_contiguous() {
        return Err(error(
            py,
            shmq_status::SHMQ_ERR_INVALID_ARGUMENT,
            "the buffer is not C-contiguous (use numpy.ascontiguousarray)".into(),
        ));
    }
    if writable && buf.readonly() {
        return Err(error(
            py,
            shmq_status::SHMQ_ERR_INVALID_ARGUMENT,
            "the output buffer is read-only".into(),
        ));
    }
    Ok((buf.buf_ptr() as usize, buf.len_bytes()))
}

/// `(address, elements)` of a buffer of whole elements of `size` bytes.
fn elements(
    py: Python<'_>,
    buf: &PyBuffer<u8>,
    size: usize,
    writable: bool,
) -> PyResult<(usize, usize)> {
    let (addr, len) = region(py, buf, writable)?;
    if size == 0 || len % size != 0 {
        return Err(error(
            py,
            shmq_status::SHMQ_ERR_INVALID_ARGUMENT,
            format!("a buffer of {len} bytes is not a whole number of {size}-byte elements"),
        ));
    }
    Ok((addr, len / size))
}

// ---- typed rings (SPSC, MPMC) ----

#[allow(clippy::too_many_arguments)]
fn config(
    kind: i32,
    elem_size: usize,
    elem_align: usize,
    capacity: usize,
    schema: u64,
    max_producers: u32,
    max_consumers: u32,
) -> shmq_queue_config {
    let mut c = shmq_queue_config_default(kind, elem_size, elem_align);
    c.capacity = capacity;
    c.schema = schema;
    c.max_producers = max_producers;
    c.max_consumers = max_consumers;
    c
}

/// Create the named ring; its handle id.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn queue_create(
    py: Python<'_>,
    name: &str,
    kind: i32,
    elem_size: usize,
    elem_align: usize,
    capacity: usize,
    schema: u64,
    max_producers: u32,
    max_consumers: u32,
) -> PyResult<u64> {
    let name = c_name(py, name)?;
    let cfg = config(
        kind,
        elem_size,
        elem_align,
        capacity,
        schema,
        max_producers,
        max_consumers,
    );
    let mut q = shmq_queue_t::default();
    // SAFETY: `name` is NUL-terminated; `cfg` and `q` are live locals.
    check(py, unsafe {
        shmq_queue_create(name.as_ptr(), &cfg, &mut q)
    })?;
    Ok(q.id)
}

/// Open the named ring, checking kind, element size and alignment, schema.
#[pyfunction]
fn queue_open(
    py: Python<'_>,
    name: &str,
    kind: i32,
    elem_size: usize,
    elem_align: usize,
    schema: u64,
) -> PyResult<u64> {
    let name = c_name(py, name)?;
    let mut q = shmq_queue_t::default();
    // SAFETY: `name` is NUL-terminated; `q` is a live local.
    let st = unsafe { shmq_queue_open(name.as_ptr(), kind, elem_size, elem_align, schema, &mut q) };
    check(py, st)?;
    Ok(q.id)
}

/// Create a ring in a sealed memfd.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn queue_create_memfd(
    py: Python<'_>,
    kind: i32,
    elem_size: usize,
    elem_align: usize,
    capacity: usize,
    schema: u64,
    max_producers: u32,
    max_consumers: u32,
) -> PyResult<u64> {
    let cfg = config(
        kind,
        elem_size,
        elem_align,
        capacity,
        schema,
        max_producers,
        max_consumers,
    );
    let mut q = shmq_queue_t::default();
    // SAFETY: `cfg` and `q` are live locals.
    check(py, unsafe { shmq_queue_create_memfd(&cfg, &mut q) })?;
    Ok(q.id)
}

/// Open a memfd ring from a descriptor (which stays the caller's).
#[pyfunction]
fn queue_open_fd(
    py: Python<'_>,
    fd: i32,
    kind: i32,
    elem_size: usize,
    elem_align: usize,
    schema: u64,
) -> PyResult<u64> {
    let mut q = shmq_queue_t::default();
    // SAFETY: `q` is a live local; a bad `fd` is an error code.
    let st = unsafe { shmq_queue_open_fd(fd, kind, elem_size, elem_align, schema, &mut q) };
    check(py, st)?;
    Ok(q.id)
}

/// A new descriptor for the ring's segment, owned by the caller.
#[pyfunction]
fn queue_dup_fd(py: Python<'_>, queue: u64) -> PyResult<i32> {
    let mut fd = -1;
    // SAFETY: `fd` is a live local.
    check(py, unsafe {
        shmq_queue_dup_fd(shmq_queue_t { id: queue }, &mut fd)
    })?;
    Ok(fd)
}

#[pyfunction]
fn queue_free(py: Python<'_>, queue: u64) -> PyResult<()> {
    check(py, shmq_queue_free(shmq_queue_t { id: queue }))
}

/// A snapshot of the ring as a dict.
#[pyfunction]
fn queue_stats(py: Python<'_>, queue: u64) -> PyResult<Bound<'_, PyDict>> {
    let mut s = shmq_queue_stats_t::default();
    // SAFETY: `s` is a live local of the type the call writes.
    check(py, unsafe {
        shmq_queue_stats(shmq_queue_t { id: queue }, &mut s)
    })?;
    let d = PyDict::new(py);
    d.set_item("kind", if s.kind == 2 { "mpmc" } else { "spsc" })?;
    d.set_item("elem_size", s.elem_size)?;
    d.set_item("elem_align", s.elem_align)?;
    d.set_item("capacity", s.capacity)?;
    d.set_item("len", s.len)?;
    d.set_item("producers", s.producers)?;
    d.set_item("consumers", s.consumers)?;
    d.set_item("producers_alive", s.producers_alive)?;
    d.set_item("consumers_alive", s.consumers_alive)?;
    d.set_item("holes_skipped", s.holes_skipped)?;
    d.set_item("slots_released", s.slots_released)?;
    Ok(d)
}

#[pyfunction]
fn producer(py: Python<'_>, queue: u64) -> PyResult<u64> {
    let mut p = shmq_producer_t::default();
    // SAFETY: `p` is a live local.
    check(py, unsafe {
        shmq_producer(shmq_queue_t { id: queue }, &mut p)
    })?;
    Ok(p.id)
}

#[pyfunction]
fn consumer(py: Python<'_>, queue: u64) -> PyResult<u64> {
    let mut c = shmq_consumer_t::default();
    // SAFETY: `c` is a live local.
    check(py, unsafe {
        shmq_consumer(shmq_queue_t { id: queue }, &mut c)
    })?;
    Ok(c.id)
}

#[pyfunction]
fn producer_free(py: Python<'_>, producer: u64) -> PyResult<()> {
    check(py, shmq_producer_free(shmq_producer_t { id: producer }))
}

#[pyfunction]
fn consumer_free(py: Python<'_>, consumer: u64) -> PyResult<()> {
    check(py, shmq_consumer_free(shmq_consumer_t { id: consumer }))
}

fn producer_elem_size(py: Python<'_>, p: shmq_producer_t) -> PyResult<usize> {
    let mut size = 0;
    // SAFETY: `size` is a live local.
    check(py, unsafe { shmq_producer_elem_size(p, &mut size) })?;
    Ok(size)
}

fn consumer_elem_size(py: Python<'_>, c: shmq_consumer_t) -> PyResult<usize> {
    let mut size = 0;
    // SAFETY: `size` is a live local.
    check(py, unsafe { shmq_consumer_elem_size(c, &mut size) })?;
    Ok(size)
}

/// Push the whole elements in `data`, in order. Without `block`, what fits
/// now; with it, all of them, or what went in before `timeout` seconds
/// passed. Returns the count pushed. Raises `Disconnected` if the consumer
/// side has gone before any was pushed (a short count says it went later).
#[pyfunction]
#[pyo3(signature = (producer, data, block, timeout=None))]
fn push_many(
    py: Python<'_>,
    producer: u64,
    data: PyBuffer<u8>,
    block: bool,
    timeout: Option<f64>,
) -> PyResult<usize> {
    let p = shmq_producer_t { id: producer };
    let size = producer_elem_size(py, p)?;
    let (addr, n) = elements(py, &data, size, false)?;
    let mut done = 0usize;
    let st = match mode(block, timeout)? {
        // SAFETY: `data` is held (so its memory stays exported and in
        // place) for the call and spans `n` elements of `size` bytes.
        Mode::Try => unsafe { shmq_try_push_many(p, addr as *const c_void, n, &mut done) },
        Mode::Until(deadline) => sliced(py, deadline, |slice| {
            let mut k = 0;
            // SAFETY: as above: `done <= n`, so the rest of the buffer
            // starts `done` elements in and spans `n - done`. Another Python
            // thread may touch the buffer meanwhile (the GIL is released),
            // as with any extension that releases it; the bindings only
            // read it.
            let st = unsafe {
                shmq_push_many_timeout(
                    p,
                    (addr + done * size) as *const c_void,
                    n - done,
                    &mut k,
                    ns(slice),
                )
            };
            done += k;
            st
        })?,
    };
    use shmq_status::*;
    match st {
        SHMQ_OK | SHMQ_FULL | SHMQ_TIMEOUT => Ok(done),
        _ if done > 0 => Ok(done),
        _ => check(py, st).map(|()| done),
    }
}

/// Pop whole elements into `out` (writable), in order: without `block`
/// what is there now; with it, waiting for the first (up to `timeout`
/// seconds), then what is there. Returns the count (0: empty, or the
/// deadline passed). Raises `Disconnected` once the ring is drained and
/// the producer side has gone.
#[pyfunction]
#[pyo3(signature = (consumer, out, block, timeout=None))]
fn pop_many(
    py: Python<'_>,
    consumer: u64,
    out: PyBuffer<u8>,
    block: bool,
    timeout: Option<f64>,
) -> PyResult<usize> {
    let c = shmq_consumer_t { id: consumer };
    let size = consumer_elem_size(py, c)?;
    let (addr, n) = elements(py, &out, size, true)?;
    let mut done = 0usize;
    let st = match mode(block, timeout)? {
        // SAFETY: `out` is held, writable (checked) and spans `n` elements.
        Mode::Try => unsafe { shmq_try_pop_many(c, addr as *mut c_void, n, &mut done) },
        Mode::Until(deadline) => sliced(py, deadline, |slice| {
            // SAFETY: as above. Nothing has been popped before a slice that
            // timed out, so each slice writes from the start.
            unsafe { shmq_pop_many_timeout(c, addr as *mut c_void, n, &mut done, ns(slice)) }
        })?,
    };
    use shmq_status::*;
    match st {
        SHMQ_OK | SHMQ_EMPTY | SHMQ_TIMEOUT => Ok(done),
        _ => check(py, st).map(|()| done),
    }
}

// ---- byte rings ----

#[pyfunction]
fn bytes_create(
    py: Python<'_>,
    name: &str,
    capacity: usize,
    max_message_size: usize,
    schema: u64,
) -> PyResult<u64> {
    let name = c_name(py, name)?;
    let mut r = shmq_bytes_t::default();
    // SAFETY: `name` is NUL-terminated; `r` is a live local.
    let st =
        unsafe { shmq_bytes_create(name.as_ptr(), capacity, max_message_size, schema, &mut r) };
    check(py, st)?;
    Ok(r.id)
}

#[pyfunction]
fn bytes_open(py: Python<'_>, name: &str, max_message_size: usize, schema: u64) -> PyResult<u64> {
    let name = c_name(py, name)?;
    let mut r = shmq_bytes_t::default();
    // SAFETY: `name` is NUL-terminated; `r` is a live local.
    let st = unsafe { shmq_bytes_open(name.as_ptr(), max_message_size, schema, &mut r) };
    check(py, st)?;
    Ok(r.id)
}

#[pyfunction]
fn bytes_create_memfd(
    py: Python<'_>,
    capacity: usize,
    max_message_size: usize,
    schema: u64,
) -> PyResult<u64> {
    let mut r = shmq_bytes_t::default();
    // SAFETY: `r` is a live local.
    let st = unsafe { shmq_bytes_create_memfd(capacity, max_message_size, schema, &mut r) };
    check(py, st)?;
    Ok(r.id)
}

#[pyfunction]
fn bytes_open_fd(py: Python<'_>, fd: i32, max_message_size: usize, schema: u64) -> PyResult<u64> {
    let mut r = shmq_bytes_t::default();
    // SAFETY: `r` is a live local; a bad `fd` is an error code.
    let st = unsafe { shmq_bytes_open_fd(fd, max_message_size, schema, &mut r) };
    check(py, st)?;
    Ok(r.id)
}

#[pyfunction]
fn bytes_dup_fd(py: Python<'_>, ring: u64) -> PyResult<i32> {
    let mut fd = -1;
    // SAFETY: `fd` is a live local.
    check(py, unsafe {
        shmq_bytes_dup_fd(shmq_bytes_t { id: ring }, &mut fd)
    })?;
    Ok(fd)
}

#[pyfunction]
fn bytes_free(py: Python<'_>, ring: u64) -> PyResult<()> {
    check(py, shmq_bytes_free(shmq_bytes_t { id: ring }))
}

#[pyfunction]
fn bytes_stats(py: Python<'_>, ring: u64) -> PyResult<Bound<'_, PyDict>> {
    let mut s = shmq_bytes_stats_t::default();
    // SAFETY: `s` is a live local of the type the call writes.
    check(py, unsafe {
        shmq_bytes_stats(shmq_bytes_t { id: ring }, &mut s)
    })?;
    let d = PyDict::new(py);
    d.set_item("capacity", s.capacity)?;
    d.set_item("len", s.len)?;
    d.set_item("max_record_payload", s.max_record_payload)?;
    d.set_item("max_message_size", s.max_message_size)?;
    Ok(d)
}

#[pyfunction]
fn bytes_producer(py: Python<'_>, ring: u64) -> PyResult<u64> {
    let mut p = shmq_bytes_producer_t::default();
    // SAFETY: `p` is a live local.
    check(py, unsafe {
        shmq_bytes_producer(shmq_bytes_t { id: ring }, &mut p)
    })?;
    Ok(p.id)
}

#[pyfunction]
fn bytes_consumer(py: Python<'_>, ring: u64) -> PyResult<u64> {
    let mut c = shmq_bytes_consumer_t::default();
    // SAFETY: `c` is a live local.
    check(py, unsafe {
        shmq_bytes_consumer(shmq_bytes_t { id: ring }, &mut c)
    })?;
    Ok(c.id)
}

#[pyfunction]
fn bytes_producer_free(py: Python<'_>, producer: u64) -> PyResult<()> {
    check(
        py,
        shmq_bytes_producer_free(shmq_bytes_producer_t { id: producer }),
    )
}

#[pyfunction]
fn bytes_consumer_free(py: Python<'_>, consumer: u64) -> PyResult<()> {
    check(
        py,
        shmq_bytes_consumer_free(shmq_bytes_consumer_t { id: consumer }),
    )
}

/// Send the bytes of `data` as one message. Returns False if `block` is
/// false and there is no room now; raises `Timeout` past `timeout`.
#[pyfunction]
#[pyo3(signature = (producer, data, block, timeout=None))]
fn bytes_send(
    py: Python<'_>,
    producer: u64,
    data: PyBuffer<u8>,
    block: bool,
    timeout: Option<f64>,
) -> PyResult<bool> {
    let p = shmq_bytes_producer_t { id: producer };
    let (addr, len) = region(py, &data, false)?;
    let st = match mode(block, timeout)? {
        // SAFETY: `data` is held and spans `len` bytes.
        Mode::Try => unsafe { shmq_bytes_try_send(p, addr as *const c_void, len) },
        // One wait, not slices: a slice ending inside a fragmented message
        // would abandon it (see the module docs).
        Mode::Until(deadline) => py.detach(|| match deadline {
            // SAFETY: as above; the GIL is released, and the bindings only
            // read the buffer.
            None => unsafe { shmq_bytes_send(p, addr as *const c_void, len) },
            // SAFETY: as above.
            Some(d) => unsafe {
                shmq_bytes_send_timeout(
                    p,
                    addr as *const c_void,
                    len,
                    ns(d.saturating_duration_since(Instant::now())),
                )
            },
        }),
    };
    if st == shmq_status::SHMQ_FULL {
        return Ok(false);
    }
    check(py, st).map(|()| true)
}

/// Receive one message into `out` (writable) at `addr`, `cap` bytes: the
/// status and the length (or the length needed).
fn recv_raw(
    py: Python<'_>,
    c: shmq_bytes_consumer_t,
    addr: usize,
    cap: usize,
    m: Mode,
) -> (shmq_status, usize) {
    let mut len = 0usize;
    let st = match m {
        // SAFETY: `addr` spans `cap` writable bytes (the caller's buffer,
        // held by the caller).
        Mode::Try => unsafe { shmq_bytes_try_recv(c, addr as *mut c_void, cap, &mut len) },
        Mode::Until(deadline) => py.detach(|| match deadline {
            // SAFETY: as above.
            None => unsafe { shmq_bytes_recv(c, addr as *mut c_void, cap, &mut len) },
            // SAFETY: as above.
            Some(d) => unsafe {
                shmq_bytes_recv_timeout(
                    c,
                    addr as *mut c_void,
                    cap,
                    &mut len,
                    ns(d.saturating_duration_since(Instant::now())),
                )
            },
        }),
    };
    (st, len)
}

/// Receive one message as `bytes`; `None` if `block` is false and none is
/// there. Raises `Timeout` past `timeout`, `Disconnected` once drained and
/// the producer has gone.
#[pyfunction]
#[pyo3(signature = (consumer, block, timeout=None))]
fn bytes_recv(
    py: Python<'_>,
    consumer: u64,
    block: bool,
    timeout: Option<f64>,
) -> PyResult<Option<Py<PyBytes>>> {
    let c = shmq_bytes_consumer_t { id: consumer };
    let m = mode(block, timeout)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (st, len) = recv_raw(py, c, buf.as_mut_ptr() as usize, buf.len(), m);
        match st {
            shmq_status::SHMQ_EMPTY => return Ok(None),
            // The message stays queued; `len` is what it needs.
            shmq_status::SHMQ_ERR_BUFFER_TOO_SMALL if len > buf.len() => buf.resize(len, 0),
            _ => {
                check(py, st)?;
                return Ok(Some(PyBytes::new(py, &buf[..len]).unbind()));
            }
        }
    }
}

/// Receive one message into the writable buffer `out`: its length, or
/// `None` if `block` is false and none is there. Raises `BufferTooSmall`
/// (the message stays queued) if it does not fit.
#[pyfunction]
#[pyo3(signature = (consumer, out, block, timeout=None))]
fn bytes_recv_into(
    py: Python<'_>,
    consumer: u64,
    out: PyBuffer<u8>,
    block: bool,
    timeout: Option<f64>,
) -> PyResult<Option<usize>> {
    let c = shmq_bytes_consumer_t { id: consumer };
    let (addr, cap) = region(py, &out, true)?;
    let (st, len) = recv_raw(py, c, addr, cap, mode(block, timeout)?);
    match st {
        shmq_status::SHMQ_EMPTY => Ok(None),
        shmq_status::SHMQ_ERR_BUFFER_TOO_SMALL => Err(error(
            py,
            st,
            format!("the next message is {len} bytes; the buffer holds {cap} (it stays queued)"),
        )),
        _ => check(py, st).map(|()| Some(len)),
    }
}

// ---- broadcast rings ----

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn bcast_create(
    py: Python<'_>,
    name: Option<&str>,
    elem_size: usize,
    elem_align: usize,
    capacity: usize,
    schema: u64,
    policy: i32,
    max_subscribers: u32,
    max_lag_ns: u64,
) -> PyResult<u64> {
    let mut cfg = shmq_broadcast_config_default(elem_size, elem_align);
    cfg.capacity = capacity;
    cfg.schema = schema;
    cfg.policy = policy;
    cfg.max_subscribers = max_subscribers;
    cfg.max_lag_ns = max_lag_ns;
    let mut b = shmq_broadcast_t::default();
    let st = match name {
        Some(name) => {
            let name = c_name(py, name)?;
            // SAFETY: `name` is NUL-terminated; `cfg` and `b` are live locals.
            unsafe { shmq_broadcast_create(name.as_ptr(), &cfg, &mut b) }
        }
        // SAFETY: `cfg` and `b` are live locals.
        None => unsafe { shmq_broadcast_create_memfd(&cfg, &mut b) },
    };
    check(py, st)?;
    Ok(b.id)
}

#[pyfunction]
fn bcast_open(
    py: Python<'_>,
    name: &str,
    elem_size: usize,
    elem_align: usize,
    schema: u64,
) -> PyResult<u64> {
    let name = c_name(py, name)?;
    let mut b = shmq_broadcast_t::default();
    // SAFETY: `name` is NUL-terminated; `b` is a live local.
    let st = unsafe { shmq_broadcast_open(name.as_ptr(), elem_size, elem_align, schema, &mut b) };
    check(py, st)?;
    Ok(b.id)
}

#[pyfunction]
fn bcast_open_fd(
    py: Python<'_>,
    fd: i32,
    elem_size: usize,
    elem_align: usize,
    schema: u64,
) -> PyResult<u64> {
    let mut b = shmq_broadcast_t::default();
    // SAFETY: `b` is a live local; a bad `fd` is an error code.
    let st = unsafe { shmq_broadcast_open_fd(fd, elem_size, elem_align, schema, &mut b) };
    check(py, st)?;
    Ok(b.id)
}

#[pyfunction]
fn bcast_dup_fd(py: Python<'_>, bcast: u64) -> PyResult<i32> {
    let mut fd = -1;
    // SAFETY: `fd` is a live local.
    check(py, unsafe {
        shmq_broadcast_dup_fd(shmq_broadcast_t { id: bcast }, &mut fd)
    })?;
    Ok(fd)
}

#[pyfunction]
fn bcast_free(py: Python<'_>, bcast: u64) -> PyResult<()> {
    check(py, shmq_broadcast_free(shmq_broadcast_t { id: bcast }))
}

#[pyfunction]
fn bcast_stats(py: Python<'_>, bcast: u64) -> PyResult<Bound<'_, PyDict>> {
    let mut s = shmq_broadcast_stats_t::default();
    // SAFETY: `s` is a live local of the type the call writes.
    check(py, unsafe {
        shmq_broadcast_stats(shmq_broadcast_t { id: bcast }, &mut s)
    })?;
    let d = PyDict::new(py);
    d.set_item("elem_size", s.elem_size)?;
    d.set_item("elem_align", s.elem_align)?;
    d.set_item("capacity", s.capacity)?;
    d.set_item(
        "policy",
        if s.policy == 2 {
            "overwrite"
        } else {
            "lossless"
        },
    )?;
    d.set_item("max_lag_ns", s.max_lag_ns)?;
    d.set_item("published", s.published)?;
    d.set_item("publisher_attached", s.publisher_attached)?;
    d.set_item("publisher_alive", s.publisher_alive)?;
    d.set_item("publisher_pid", s.publisher_pid)?;
    d.set_item("subscribers", s.subscribers)?;
    d.set_item("subscribers_alive", s.subscribers_alive)?;
    d.set_item("subscribers_evicted", s.subscribers_evicted)?;
    d.set_item("max_subscriber_lag", s.max_subscriber_lag)?;
    d.set_item("evictions", s.evictions)?;
    d.set_item("laps", s.laps)?;
    Ok(d)
}

#[pyfunction]
fn publisher(py: Python<'_>, bcast: u64) -> PyResult<u64> {
    let mut p = shmq_publisher_t::default();
    // SAFETY: `p` is a live local.
    check(py, unsafe {
        shmq_publisher(shmq_broadcast_t { id: bcast }, &mut p)
    })?;
    Ok(p.id)
}

#[pyfunction]
fn subscribe(py: Python<'_>, bcast: u64, start: i32, seq: u64) -> PyResult<u64> {
    let mut s = shmq_subscriber_t::default();
    // SAFETY: `s` is a live local.
    check(py, unsafe {
        shmq_subscribe(shmq_broadcast_t { id: bcast }, start, seq, &mut s)
    })?;
    Ok(s.id)
}

#[pyfunction]
fn publisher_free(py: Python<'_>, publisher: u64) -> PyResult<()> {
    check(py, shmq_publisher_free(shmq_publisher_t { id: publisher }))
}

#[pyfunction]
fn subscriber_free(py: Python<'_>, subscriber: u64) -> PyResult<()> {
    check(
        py,
        shmq_subscriber_free(shmq_subscriber_t { id: subscriber }),
    )
}

#[pyfunction]
fn publisher_position(py: Python<'_>, publisher: u64) -> PyResult<u64> {
    let mut pos = 0;
    // SAFETY: `pos` is a live local.
    check(py, unsafe {
        shmq_publisher_position(shmq_publisher_t { id: publisher }, &mut pos)
    })?;
    Ok(pos)
}

#[pyfunction]
fn subscriber_info(py: Python<'_>, subscriber: u64) -> PyResult<Bound<'_, PyDict>> {
    let mut i = shmq_subscriber_info_t::default();
    // SAFETY: `i` is a live local of the type the call writes.
    check(py, unsafe {
        shmq_subscriber_info(shmq_subscriber_t { id: subscriber }, &mut i)
    })?;
    let d = PyDict::new(py);
    d.set_item("position", i.position)?;
    d.set_item("lag", i.lag)?;
    d.set_item("missed", i.missed)?;
    Ok(d)
}

/// Publish the one element in `data` (`elem_size` bytes: the size the
/// Python layer's element type had when the header check at open accepted
/// it). Returns False if `block` is false and a lossless ring is full;
/// raises `Timeout` past `timeout`.
#[pyfunction]
#[pyo3(signature = (publisher, data, elem_size, block, timeout=None))]
fn publish(
    py: Python<'_>,
    publisher: u64,
    data: PyBuffer<u8>,
    elem_size: usize,
    block: bool,
    timeout: Option<f64>,
) -> PyResult<bool> {
    let p = shmq_publisher_t { id: publisher };
    let (addr, len) = region(py, &data, false)?;
    one_element(py, len, elem_size)?;
    let st = match mode(block, timeout)? {
        // SAFETY: `data` is held and spans one element (checked above).
        Mode::Try => unsafe { shmq_try_publish(p, addr as *const c_void) },
        Mode::Until(deadline) => sliced(py, deadline, |slice| {
            // SAFETY: as above; the GIL is released and the bindings only
            // read the buffer. A slice that ends has published nothing.
            unsafe { shmq_publish_timeout(p, addr as *const c_void, ns(slice)) }
        })?,
    };
    match st {
        shmq_status::SHMQ_FULL => Ok(false),
        _ => check(py, st).map(|()| true),
    }
}

/// The bindings read or write exactly one element at the pointer: refuse
/// any other length rather than let them run past the buffer.
fn one_element(py: Python<'_>, len: usize, elem_size: usize) -> PyResult<()> {
    if len == elem_size && len != 0 {
        return Ok(());
    }
    Err(error(
        py,
        shmq_status::SHMQ_ERR_INVALID_ARGUMENT,
        format!("a buffer of {len} bytes is not one {elem_size}-byte element"),
    ))
}

/// Receive one element into `out` (writable, one element): True if it
/// arrived, False if `block` is false and nothing is there or the deadline
/// passed. Raises `Lagged`/`Evicted` (with `.missed`) and `Disconnected`.
#[pyfunction]
#[pyo3(signature = (subscriber, out, elem_size, block, timeout=None))]
fn recv(
    py: Python<'_>,
    subscriber: u64,
    out: PyBuffer<u8>,
    elem_size: usize,
    block: bool,
    timeout: Option<f64>,
) -> PyResult<bool> {
    let s = shmq_subscriber_t { id: subscriber };
    let (addr, len) = region(py, &out, true)?;
    one_element(py, len, elem_size)?;
    let mut missed = 0u64;
    let st = match mode(block, timeout)? {
        // SAFETY: `out` is held, writable, and one element long (checked
        // above).
        Mode::Try => unsafe { shmq_try_recv(s, addr as *mut c_void, &mut missed) },
        Mode::Until(deadline) => sliced(py, deadline, |slice| {
            // SAFETY: as above.
            unsafe { shmq_recv_timeout(s, addr as *mut c_void, ns(slice), &mut missed) }
        })?,
    };
    use shmq_status::*;
    match st {
        SHMQ_OK => Ok(true),
        SHMQ_EMPTY | SHMQ_TIMEOUT => Ok(false),
        SHMQ_LAGGED | SHMQ_EVICTED => {
            let e = error(py, st, message(st));
            e.value(py).setattr("missed", missed)?;
            Err(e)
        }
        _ => check(py, st).map(|()| false),
    }
}

// ---- anywhere ----

/// Remove the named segment.
#[pyfunction]
fn unlink(py: Python<'_>, name: &str) -> PyResult<()> {
    let name = c_name(py, name)?;
    // SAFETY: NUL-terminated.
    check(py, unsafe { shmq_unlink(name.as_ptr()) })
}

/// Describe the named segment without attaching, as a dict.
#[pyfunction]
fn inspect<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let cname = c_name(py, name)?;
    let mut s = shmq_segment_info::default();
    // SAFETY: NUL-terminated name; `s` is a live local of the written type.
    check(py, unsafe { shmq_inspect(cname.as_ptr(), &mut s) })?;
    let d = PyDict::new(py);
    d.set_item("is_shmqueue", s.is_shmqueue)?;
    d.set_item("healthy", s.healthy)?;
    d.set_item("in_use", s.in_use)?;
    d.set_item("stale", s.stale)?;
    d.set_item("layout_version", s.layout_version)?;
    let kind = match s.kind {
        1 => "spsc",
        2 => "mpmc",
        3 => "bytes",
        4 => "broadcast",
        _ => "unknown",
    };
    d.set_item("kind", kind)?;
    d.set_item("creator_pid", s.creator_pid)?;
    d.set_item("elem_size", s.elem_size)?;
    d.set_item("elem_align", s.elem_align)?;
    d.set_item("capacity", s.capacity)?;
    d.set_item("schema", s.schema)?;
    d.set_item("fill", s.fill)?;
    d.set_item("producers_alive", s.producers_alive)?;
    d.set_item("consumers_alive", s.consumers_alive)?;
    d.set_item("endpoints_dead", s.endpoints_dead)?;
    Ok(d)
}

/// Whether the bindings carry elements of this size and alignment.
#[pyfunction]
fn elem_supported(size: usize, align: usize) -> bool {
    shmq_elem_supported(size, align)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("KIND_SPSC", shmq_kind::SHMQ_KIND_SPSC as i32)?;
    m.add("KIND_MPMC", shmq_kind::SHMQ_KIND_MPMC as i32)?;
    m.add_function(wrap_pyfunction!(queue_create, m)?)?;
    m.add_function(wrap_pyfunction!(queue_open, m)?)?;
    m.add_function(wrap_pyfunction!(queue_create_memfd, m)?)?;
    m.add_function(wrap_pyfunction!(queue_open_fd, m)?)?;
    m.add_function(wrap_pyfunction!(queue_dup_fd, m)?)?;
    m.add_function(wrap_pyfunction!(queue_free, m)?)?;
    m.add_function(wrap_pyfunction!(queue_stats, m)?)?;
    m.add_function(wrap_pyfunction!(producer, m)?)?;
    m.add_function(wrap_pyfunction!(consumer, m)?)?;
    m.add_function(wrap_pyfunction!(producer_free, m)?)?;
    m.add_function(wrap_pyfunction!(consumer_free, m)?)?;
    m.add_function(wrap_pyfunction!(push_many, m)?)?;
    m.add_function(wrap_pyfunction!(pop_many, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_create, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_open, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_create_memfd, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_open_fd, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_dup_fd, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_free, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_stats, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_producer, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_consumer, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_producer_free, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_consumer_free, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_send, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_recv, m)?)?;
    m.add_function(wrap_pyfunction!(bytes_recv_into, m)?)?;
    for f in [
        wrap_pyfunction!(bcast_create, m)?,
        wrap_pyfunction!(bcast_open, m)?,
        wrap_pyfunction!(bcast_open_fd, m)?,
        wrap_pyfunction!(bcast_dup_fd, m)?,
        wrap_pyfunction!(bcast_free, m)?,
        wrap_pyfunction!(bcast_stats, m)?,
        wrap_pyfunction!(publisher, m)?,
        wrap_pyfunction!(subscribe, m)?,
        wrap_pyfunction!(publisher_free, m)?,
        wrap_pyfunction!(subscriber_free, m)?,
        wrap_pyfunction!(publisher_position, m)?,
        wrap_pyfunction!(subscriber_info, m)?,
        wrap_pyfunction!(publish, m)?,
        wrap_pyfunction!(recv, m)?,
    ] {
        m.add_function(f)?;
    }
    m.add_function(wrap_pyfunction!(unlink, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(elem_supported, m)?)?;
    Ok(())
}
