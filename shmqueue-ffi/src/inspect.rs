//! Read-only inspection of a named segment of any kind (`shmq stat`'s
//! library half): no endpoint is attached and nothing is written.

use std::ffi::c_char;

use shmqueue::inspect::EndpointStatus;
use shmqueue::Role;

use crate::{c_str, guard, null, shmq_status};

/// What `shmq_inspect()` found under a name. Header values are untrusted
/// and reported as read; a field that could not be read is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_segment_info {
    /// A shmqueue segment at all: a readable regular file, large enough for
    /// a header, with the right magic number.
    pub is_shmqueue: bool,
    /// Every header check passed (`shmq stat NAME` names a failed one).
    pub healthy: bool,
    /// Some process has it open through shmqueue.
    pub in_use: bool,
    /// A shmqueue segment nobody has open: safe to `shmq_unlink()`.
    pub stale: bool,
    /// Layout version.
    pub layout_version: u32,
    /// Raw queue kind: 1 SPSC, 2 MPMC, 3 byte ring, 4 broadcast.
    pub kind: u32,
    /// Pid of the creator (informational).
    pub creator_pid: u32,
    /// Element size in bytes.
    pub elem_size: u64,
    /// Element alignment in bytes.
    pub elem_align: u64,
    /// Capacity in items (byte ring: bytes).
    pub capacity: u64,
    /// Schema tag.
    pub schema: u64,
    /// Items in the ring now (byte ring: bytes, as `capacity`).
    pub fill: u64,
    /// Producer entries whose process holds its liveness lock.
    pub producers_alive: u32,
    /// Consumer (or subscriber) entries whose process holds its lock.
    pub consumers_alive: u32,
    /// Entries recorded as attached whose process has died (not yet
    /// reaped by a peer).
    pub endpoints_dead: u32,
}

/// Describe the segment `name` without attaching to it, into `*out`:
/// `SHMQ_OK` whenever the name exists, even if it is not a shmqueue segment
/// or fails a check (see `is_shmqueue`, `healthy`); `SHMQ_ERR_NOT_FOUND` if
/// it does not. Works for every ring kind, broadcast included.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or valid for
/// writes of a `shmq_segment_info`.
#[no_mangle]
pub unsafe extern "C" fn shmq_inspect(
    name: *const c_char,
    out: *mut shmq_segment_info,
) -> shmq_status {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let name = unsafe { c_str(name, "name") }?;
        if out.is_null() {
            return Err(null("out"));
        }
        let i = shmqueue::inspect(name)?;
        let alive = |r| {
            i.endpoints
                .iter()
                .filter(|e| e.role == r && e.alive)
                .count() as u32
        };
        let info = shmq_segment_info {
            is_shmqueue: i.shmqueue,
            healthy: i.shmqueue && i.first_failure().is_none(),
            in_use: i.in_use,
            stale: i.stale,
            layout_version: i.version.unwrap_or(0),
            kind: i.kind.unwrap_or(0),
            creator_pid: i.creator_pid.unwrap_or(0),
            elem_size: i.elem_size.unwrap_or(0),
            elem_align: i.elem_align.unwrap_or(0),
            capacity: i.capacity.unwrap_or(0),
            schema: i.schema.unwrap_or(0),
            fill: i.fill.unwrap_or(0),
            producers_alive: alive(Role::Producer),
            consumers_alive: alive(Role::Consumer),
            endpoints_dead: i
                .endpoints
                .iter()
                .filter(|e| e.status == EndpointStatus::Attached && !e.alive)
                .count() as u32,
        };
        // SAFETY: non-null and writable by the contract.
        unsafe { out.write(info) };
        Ok(())
    })
}
