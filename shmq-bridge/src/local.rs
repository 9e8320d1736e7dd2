//! The local rings at either end of a bridge, whatever their element type.
//!
//! The bridge learns a ring's element size from its header at run time, so
//! typed rings (SPSC, MPMC, broadcast) go through the C API of
//! `shmqueue-ffi`, whose table of element types is the library's own
//! dispatch from a run-time size and alignment to a typed ring; the header
//! checks, liveness and error codes are the library's. Byte rings are
//! untyped in Rust already and use `shmqueue::ByteRing` directly.
//!
//! Every `unsafe` in the bridge is here: calls into the C API with buffers
//! this module owns. Elements are copied through an aligned scratch buffer
//! (`Vec<u128>`), so the SPSC batch calls take their slice path.

use std::ffi::{CStr, CString};
use std::time::Duration;

use shmqueue::{ByteRing, QueueKind};
use shmqueue_ffi::*;

use crate::error::BridgeError;
use crate::wire::{self, StreamInfo};

/// How a bridge creates the receiving ring when it does not exist.
#[derive(Clone, Debug, Default)]
pub struct Create {
    /// The kind to create; `None`: the kind of the stream's source ring.
    pub kind: Option<QueueKind>,
    /// Capacity (items; bytes for a byte ring); `None`: the source's.
    pub capacity: Option<u64>,
    /// For a broadcast ring: overwrite instead of lossless.
    pub overwrite: bool,
}

/// Where an out-bridge's broadcast subscriber starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum From {
    /// Everything still in the ring.
    #[default]
    Oldest,
    /// Only what is published after the bridge subscribes.
    Latest,
}

/// What one read from the local ring found.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// This many items were appended to the payload.
    Items(u32),
    /// Nothing arrived within the wait.
    Idle,
    /// The producer has gone and everything is read.
    Closed,
}

/// The message of the C API's last error on this thread, or the status's
/// description.
fn ffi_error(name: &str, what: &'static str, st: shmq_status) -> BridgeError {
    // SAFETY: both return NUL-terminated strings the bindings own, valid
    // until this thread's next call into them; copied at once.
    let msg = unsafe { CStr::from_ptr(shmq_last_error_message()) }.to_string_lossy();
    let msg = if msg.is_empty() {
        // SAFETY: as above; a static string for any status.
        unsafe { CStr::from_ptr(shmq_strerror(st as i32)) }
            .to_string_lossy()
            .into_owned()
    } else {
        msg.into_owned()
    };
    BridgeError::Ring {
        name: name.to_string(),
        what,
        status: st as i32,
        message: msg,
    }
}

fn ok(name: &str, what: &'static str, st: shmq_status) -> Result<(), BridgeError> {
    if st == shmq_status::SHMQ_OK {
        Ok(())
    } else {
        Err(ffi_error(name, what, st))
    }
}

fn c_name(name: &str) -> Result<CString, BridgeError> {
    CString::new(name).map_err(|_| BridgeError::Usage(format!("{name:?} contains a NUL byte")))
}

/// What the header of the ring `name` says, as a stream description.
pub fn describe(name: &str) -> Result<StreamInfo, BridgeError> {
    let info = shmqueue::inspect(name).map_err(|e| BridgeError::Local {
        name: name.to_string(),
        error: e,
    })?;
    let bad = |why: &str| BridgeError::Usage(format!("{name} cannot be bridged: {why}"));
    if !info.shmqueue {
        return Err(bad("not a shmqueue segment"));
    }
    let kind = info
        .queue_kind()
        .ok_or_else(|| bad("a kind of ring this build does not know"))?;
    let field = |v: Option<u64>, what: &str| v.ok_or_else(|| bad(&format!("no readable {what}")));
    let typed = kind != QueueKind::Bytes;
    let elem_size = if typed {
        field(info.elem_size, "element size")?
    } else {
        0
    };
    let elem_align = if typed {
        field(info.elem_align, "element alignment")?
    } else {
        0
    };
    Ok(StreamInfo {
        kind,
        elem_size: u32::try_from(elem_size).map_err(|_| bad("an element over 4 GiB"))?,
        elem_align: u32::try_from(elem_align).map_err(|_| bad("an alignment over 4 GiB"))?,
        schema: field(info.schema, "schema")?,
        capacity: field(info.capacity, "capacity")?,
        lossy: false,
    })
}

/// A scratch buffer aligned for any element the C API supports (16).
struct Scratch(Vec<u128>);

impl Scratch {
    fn new() -> Scratch {
        Scratch(Vec::new())
    }

    /// At least `bytes` bytes, aligned to 16.
    fn get(&mut self, bytes: usize) -> &mut [u8] {
        let words = bytes.div_ceil(16);
        if self.0.len() < words {
            self.0.resize(words, 0);
        }
        &mut bytemuck::cast_slice_mut::<u128, u8>(&mut self.0)[..bytes]
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A typed ring's handle and one endpoint, freed on drop.
struct Handle {
    free: fn(u64) -> shmq_status,
    id: u64,
}

impl Drop for Handle {
    fn drop(&mut self) {
        (self.free)(self.id);
    }
}

fn free_queue(id: u64) -> shmq_status {
    shmq_queue_free(shmq_queue_t { id })
}
fn free_consumer(id: u64) -> shmq_status {
    shmq_consumer_free(shmq_consumer_t { id })
}
fn free_producer(id: u64) -> shmq_status {
    shmq_producer_free(shmq_producer_t { id })
}
fn free_bcast(id: u64) -> shmq_status {
    shmq_broadcast_free(shmq_broadcast_t { id })
}
fn free_subscriber(id: u64) -> shmq_status {
    shmq_subscriber_free(shmq_subscriber_t { id })
}
fn free_publisher(id: u64) -> shmq_status {
    shmq_publisher_free(shmq_publisher_t { id })
}

fn c_kind(kind: QueueKind) -> i32 {
    match kind {
        QueueKind::Mpmc => shmq_kind::SHMQ_KIND_MPMC as i32,
        _ => shmq_kind::SHMQ_KIND_SPSC as i32,
    }
}

fn open_queue(name: &str, s: &StreamInfo) -> Result<Handle, BridgeError> {
    let c = c_name(name)?;
    let mut q = shmq_queue_t::default();
    // SAFETY: `c` is NUL-terminated and `q` writable, both live for the call.
    let st = unsafe {
        shmq_queue_open(
            c.as_ptr(),
            c_kind(s.kind),
            s.elem_size as usize,
            s.elem_align as usize,
            s.schema,
            &mut q,
        )
    };
    ok(name, "open", st)?;
    Ok(Handle {
        free: free_queue,
        id: q.id,
    })
}

fn open_bcast(name: &str, s: &StreamInfo) -> Result<Handle, BridgeError> {
    let c = c_name(name)?;
    let mut b = shmq_broadcast_t::default();
    // SAFETY: `c` is NUL-terminated and `b` writable, both live for the call.
    let st = unsafe {
        shmq_broadcast_open(
            c.as_ptr(),
            s.elem_size as usize,
            s.elem_align as usize,
            s.schema,
            &mut b,
        )
    };
    ok(name, "open", st)?;
    Ok(Handle {
        free: free_bcast,
        id: b.id,
    })
}

fn bytes_error(name: &str, e: shmqueue::Error) -> BridgeError {
    BridgeError::Local {
        name: name.to_string(),
        error: e,
    }
}

/// The source ring of an out-bridge.
pub struct Reader {
    name: String,
    info: StreamInfo,
    kind: ReaderKind,
    /// Broadcast: items the bridge's subscriber missed (lapped or evicted).
    missed: u64,
}

enum ReaderKind {
    Typed {
        _q: Handle,
        c: Handle,
        scratch: Scratch,
    },
    Bytes {
        c: shmqueue::bytes::Consumer,
        msg: Vec<u8>,
    },
    Broadcast {
        _b: Handle,
        s: Handle,
        scratch: Scratch,
    },
}

impl Reader {
    /// Attach as the consumer (a subscriber, for broadcast) of `name`.
    /// `max_message` bounds one byte-ring message.
    pub fn open(name: &str, from: From, max_message: usize) -> Result<Reader, BridgeError> {
        let info = describe(name)?;
        let kind = match info.kind {
            QueueKind::Bytes => {
                let ring = ByteRing::builder()
                    .max_message_size(max_message)
                    .schema(info.schema)
                    .open(name)
                    .map_err(|e| bytes_error(name, e))?;
                ReaderKind::Bytes {
                    c: ring.consumer().map_err(|e| bytes_error(name, e))?,
                    msg: Vec::new(),
                }
            }
            QueueKind::Broadcast => {
                let b = open_bcast(name, &info)?;
                let start = match from {
                    From::Oldest => shmq_start::SHMQ_START_OLDEST,
                    From::Latest => shmq_start::SHMQ_START_LATEST,
                };
                let mut s = shmq_subscriber_t::default();
                // SAFETY: `s` is writable for the call.
                let st = unsafe {
                    shmq_subscribe(shmq_broadcast_t { id: b.id }, start as i32, 0, &mut s)
                };
                ok(name, "subscribe", st)?;
                ReaderKind::Broadcast {
                    _b: b,
                    s: Handle {
                        free: free_subscriber,
                        id: s.id,
                    },
                    scratch: Scratch::new(),
                }
            }
            _ => {
                let q = open_queue(name, &info)?;
                let mut c = shmq_consumer_t::default();
                // SAFETY: `c` is writable for the call.
                let st = unsafe { shmq_consumer(shmq_queue_t { id: q.id }, &mut c) };
                ok(name, "attach a consumer", st)?;
                ReaderKind::Typed {
                    _q: q,
                    c: Handle {
                        free: free_consumer,
                        id: c.id,
                    },
                    scratch: Scratch::new(),
                }
            }
        };
        Ok(Reader {
            name: name.to_string(),
            info,
            kind,
            missed: 0,
        })
    }

    /// The ring's description.
    pub fn info(&self) -> StreamInfo {
        self.info
    }

    /// Broadcast: items this bridge's subscriber missed so far.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// Append up to `max_bytes` of items to `payload` (at least one item, or
    /// one whole byte message of any size), waiting up to `wait` for the
    /// first; then take what is there without waiting.
    pub fn read(
        &mut self,
        payload: &mut Vec<u8>,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Got, BridgeError> {
        let size = self.info.elem_size as usize;
        let name = &self.name;
        match &mut self.kind {
            ReaderKind::Typed { c, scratch, .. } => {
                let n = (max_bytes / size).max(1);
                let align = self.info.elem_align as usize;
                // Pop straight into the payload's spare room when it is
                // aligned for the element (the usual case: the frame's
                // allocation is 16-aligned and its header 56 bytes), so
                // the items are copied once, from the ring into the frame;
                // otherwise through the aligned scratch buffer.
                payload.reserve(n * size);
                let at = payload.len();
                let spare = payload.spare_capacity_mut();
                let direct = (spare.as_ptr() as usize) % align == 0;
                let dst: *mut u8 = if direct {
                    spare.as_mut_ptr().cast()
                } else {
                    scratch.get(n * size).as_mut_ptr()
                };
                let mut popped = 0usize;
                // SAFETY: `dst` is writable for `n * size` bytes (the
                // reserved spare room, or the scratch buffer), and `popped`
                // is writable; both live for the call. The bindings only
                // write to it (the SPSC path zeroes it first, the element
                // path writes each element popped), so it may be
                // uninitialised.
                let st = unsafe {
                    shmq_pop_many_timeout(
                        shmq_consumer_t { id: c.id },
                        dst.cast(),
                        n,
                        &mut popped,
                        ns(wait),
                    )
                };
                match st {
                    shmq_status::SHMQ_OK => {
                        if direct {
                            // SAFETY: the call initialised the first
                            // `popped * size <= n * size` bytes of the
                            // reserved spare room.
                            unsafe { payload.set_len(at + popped * size) };
                        } else {
                            payload.extend_from_slice(&scratch.get(n * size)[..popped * size]);
                        }
                        Ok(Got::Items(popped as u32))
                    }
                    shmq_status::SHMQ_TIMEOUT | shmq_status::SHMQ_EMPTY => Ok(Got::Idle),
                    shmq_status::SHMQ_DISCONNECTED => Ok(Got::Closed),
                    st => Err(ffi_error(name, "pop", st)),
                }
            }
            ReaderKind::Bytes { c, msg } => {
                let mut n = 0u32;
                loop {
                    let r = if n == 0 {
                        c.recv_timeout(msg, wait)
                    } else {
                        c.try_recv(msg)
                    };
                    match r {
                        Ok(()) => {
                            wire::push_message(payload, msg);
                            n += 1;
                            if payload.len() >= max_bytes {
                                return Ok(Got::Items(n));
                            }
                        }
                        Err(_) if n > 0 => return Ok(Got::Items(n)),
                        Err(shmqueue::RecvError::Timeout | shmqueue::RecvError::Empty) => {
                            return Ok(Got::Idle)
                        }
                        Err(shmqueue::RecvError::Disconnected) => return Ok(Got::Closed),
                        Err(e) => {
                            return Err(BridgeError::LocalIo {
                                name: name.clone(),
                                error: e.to_string(),
                            })
                        }
                    }
                }
            }
            ReaderKind::Broadcast { s, scratch, .. } => {
                let n = (max_bytes / size).max(1);
                let buf = scratch.get(n * size);
                let sub = shmq_subscriber_t { id: s.id };
                let mut k = 0usize;
                while k < n {
                    let mut missed = 0u64;
                    let at = buf[k * size..].as_mut_ptr().cast();
                    let st = if k == 0 {
                        // SAFETY: `at` has room for one element of `size`
                        // bytes; `missed` is writable.
                        unsafe { shmq_recv_timeout(sub, at, ns(wait), &mut missed) }
                    } else {
                        // SAFETY: as above.
                        unsafe { shmq_try_recv(sub, at, &mut missed) }
                    };
                    match st {
                        shmq_status::SHMQ_OK => k += 1,
                        // Items the local subscriber will never see: counted
                        // and reported, and the stream goes on from the
                        // oldest item still in the ring.
                        shmq_status::SHMQ_LAGGED | shmq_status::SHMQ_EVICTED => {
                            self.missed += missed
                        }
                        _ if k > 0 => break,
                        shmq_status::SHMQ_TIMEOUT | shmq_status::SHMQ_EMPTY => {
                            return Ok(Got::Idle)
                        }
                        shmq_status::SHMQ_DISCONNECTED => return Ok(Got::Closed),
                        st => return Err(ffi_error(name, "receive", st)),
                    }
                }
                payload.extend_from_slice(&buf[..k * size]);
                Ok(Got::Items(k as u32))
            }
        }
    }
}

/// The receiving ring of an in-bridge.
pub struct Writer {
    name: String,
    kind: WriterKind,
    size: usize,
}

enum WriterKind {
    Typed {
        _q: Handle,
        p: Handle,
        scratch: Scratch,
    },
    Bytes {
        p: shmqueue::bytes::Producer,
    },
    Broadcast {
        _b: Handle,
        p: Handle,
        scratch: Scratch,
    },
}

/// Whether a stream of `remote` items may go into a ring described by
/// `local`: the same element size, alignment and schema, typed into typed
/// (SPSC, MPMC and broadcast carry the same items), bytes into bytes.
pub fn check_match(name: &str, local: &StreamInfo, remote: &StreamInfo) -> Result<(), BridgeError> {
    let mismatch = |what: &'static str, l: String, r: String| BridgeError::Mismatch {
        name: name.to_string(),
        what,
        local: l,
        remote: r,
    };
    if local.typed() != remote.typed() {
        return Err(mismatch(
            "kind",
            format!("{:?}", local.kind),
            format!("{:?}", remote.kind),
        ));
    }
    if local.elem_size != remote.elem_size {
        return Err(mismatch(
            "element size",
            local.elem_size.to_string(),
            remote.elem_size.to_string(),
        ));
    }
    if local.elem_align != remote.elem_align {
        return Err(mismatch(
            "element alignment",
            local.elem_align.to_string(),
            remote.elem_align.to_string(),
        ));
    }
    if local.schema != remote.schema {
        return Err(mismatch(
            "schema",
            format!("{:#x}", local.schema),
            format!("{:#x}", remote.schema),
        ));
    }
    Ok(())
}

fn create_ring(name: &str, remote: &StreamInfo, how: &Create) -> Result<(), BridgeError> {
    let kind = how.kind.unwrap_or(remote.kind);
    let capacity = how.capacity.unwrap_or(remote.capacity);
    let capacity = usize::try_from(capacity)
        .map_err(|_| BridgeError::Usage(format!("capacity {capacity} is too large")))?;
    let s = StreamInfo { kind, ..*remote };
    match kind {
        QueueKind::Bytes => {
            ByteRing::builder()
                .capacity(capacity)
                .schema(s.schema)
                .create(name)
                .map_err(|e| bytes_error(name, e))?;
        }
        QueueKind::Broadcast => {
            let c = c_name(name)?;
            let mut cfg =
                shmq_broadcast_config_default(s.elem_size as usize, s.elem_align as usize);
            cfg.capacity = capacity;
            cfg.schema = s.schema;
            cfg.policy = if how.overwrite {
                shmq_policy::SHMQ_POLICY_OVERWRITE as i32
            } else {
                shmq_policy::SHMQ_POLICY_LOSSLESS as i32
            };
            let mut b = shmq_broadcast_t::default();
            // SAFETY: `c` is NUL-terminated, `cfg` readable, `b` writable.
            let st = unsafe { shmq_broadcast_create(c.as_ptr(), &cfg, &mut b) };
            ok(name, "create", st)?;
            free_bcast(b.id);
        }
        _ => {
            let c = c_name(name)?;
            let mut cfg = shmq_queue_config_default(
                c_kind(kind),
                s.elem_size as usize,
                s.elem_align as usize,
            );
            cfg.capacity = capacity;
            cfg.schema = s.schema;
            let mut q = shmq_queue_t::default();
            // SAFETY: `c` is NUL-terminated, `cfg` readable, `q` writable.
            let st = unsafe { shmq_queue_create(c.as_ptr(), &cfg, &mut q) };
            ok(name, "create", st)?;
            free_queue(q.id);
        }
    }
    Ok(())
}

/// The receiving ring's consumer has gone (left, or its process died): the
/// items not yet pushed stay with the bridge, which looks again in a
/// moment. A consumer attaching does not signal the producer side, so this
/// polls; the bridge meanwhile reads nothing more from zenoh, which holds
/// the sender back as a full ring would.
fn wait_for_consumer() {
    std::thread::sleep(Duration::from_millis(20));
}

impl Writer {
    /// Attach as the producer (the publisher, for broadcast) of `name`,
    /// after checking that it can take `remote`'s items; create it first if
    /// it does not exist and `create` says how.
    pub fn open(
        name: &str,
        remote: &StreamInfo,
        create: Option<&Create>,
        max_message: usize,
    ) -> Result<Writer, BridgeError> {
        let local = match describe(name) {
            Ok(l) => l,
            Err(BridgeError::Local {
                error: shmqueue::Error::NotFound { .. },
                ..
            }) if create.is_some() => {
                create_ring(name, remote, create.expect("checked"))?;
                describe(name)?
            }
            Err(e) => return Err(e),
        };
        check_match(name, &local, remote)?;
        let kind = match local.kind {
            QueueKind::Bytes => {
                let ring = ByteRing::builder()
                    .max_message_size(max_message)
                    .schema(local.schema)
                    .open(name)
                    .map_err(|e| bytes_error(name, e))?;
                WriterKind::Bytes {
                    p: ring.producer().map_err(|e| bytes_error(name, e))?,
                }
            }
            QueueKind::Broadcast => {
                let b = open_bcast(name, &local)?;
                let mut p = shmq_publisher_t::default();
                // SAFETY: `p` is writable for the call.
                let st = unsafe { shmq_publisher(shmq_broadcast_t { id: b.id }, &mut p) };
                ok(name, "attach the publisher", st)?;
                WriterKind::Broadcast {
                    _b: b,
                    p: Handle {
                        free: free_publisher,
                        id: p.id,
                    },
                    scratch: Scratch::new(),
                }
            }
            _ => {
                let q = open_queue(name, &local)?;
                let mut p = shmq_producer_t::default();
                // SAFETY: `p` is writable for the call.
                let st = unsafe { shmq_producer(shmq_queue_t { id: q.id }, &mut p) };
                ok(name, "attach a producer", st)?;
                WriterKind::Typed {
                    _q: q,
                    p: Handle {
                        free: free_producer,
                        id: p.id,
                    },
                    scratch: Scratch::new(),
                }
            }
        };
        Ok(Writer {
            name: name.to_string(),
            kind,
            size: local.elem_size as usize,
        })
    }

    /// Push the items of a frame's checked `payload`, skipping the first
    /// `skip` (already delivered), waiting for room as long as it takes,
    /// and for a consumer while the ring has none.
    pub fn write(&mut self, payload: &[u8], count: u32, skip: u32) -> Result<(), BridgeError> {
        let name = &self.name;
        let size = self.size;
        let skip = skip as usize;
        let n = count as usize - skip;
        match &mut self.kind {
            WriterKind::Typed { p, scratch, .. } => {
                let buf = scratch.get(n * size);
                buf.copy_from_slice(&payload[skip * size..]);
                let mut done = 0usize;
                loop {
                    let mut pushed = 0usize;
                    // SAFETY: `buf[done * size..]` holds `n - done` elements
                    // of `size` bytes, and `pushed` is writable; both live
                    // for the call.
                    let st = unsafe {
                        shmq_push_many(
                            shmq_producer_t { id: p.id },
                            buf[done * size..].as_ptr().cast(),
                            n - done,
                            &mut pushed,
                        )
                    };
                    done += pushed;
                    match st {
                        shmq_status::SHMQ_DISCONNECTED => wait_for_consumer(),
                        st => return ok(name, "push", st),
                    }
                }
            }
            WriterKind::Bytes { p } => {
                for m in wire::messages(payload).skip(skip) {
                    let m = m.map_err(BridgeError::Wire)?;
                    loop {
                        match p.send(m) {
                            Ok(()) => break,
                            Err(shmqueue::SendError::Disconnected) => wait_for_consumer(),
                            Err(e) => {
                                return Err(BridgeError::LocalIo {
                                    name: name.clone(),
                                    error: e.to_string(),
                                })
                            }
                        }
                    }
                }
                Ok(())
            }
            WriterKind::Broadcast { p, scratch, .. } => {
                let buf = scratch.get(n * size);
                buf.copy_from_slice(&payload[skip * size..]);
                let publ = shmq_publisher_t { id: p.id };
                for k in 0..n {
                    // SAFETY: element `k` of `buf` is `size` readable bytes.
                    let st = unsafe { shmq_publish(publ, buf[k * size..].as_ptr().cast()) };
                    ok(name, "publish", st)?;
                }
                Ok(())
            }
        }
    }
}
