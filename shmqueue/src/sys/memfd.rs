//! Sealed memfds: created, sized, reserved and sealed against resizing
//! before anyone else can see them (`memfd_create`, `ftruncate`,
//! `fallocate`, `F_ADD_SEALS`), and the seal check a receiver makes
//! (`F_GET_SEALS`). Why, and how they are passed on: `memfd.rs`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;

use super::io;
use crate::Error;

/// The name the kernel shows for our memfds (`/proc/PID/fd/N` →
/// `/memfd:shmqueue (deleted)`), and the segment name in errors.
pub(crate) const SEGMENT_NAME: &str = "memfd:shmqueue";

/// Seals a memfd must carry before `open_fd` maps it.
const REQUIRED_SEALS: [(SealFlags, &str); 3] = [
    (SealFlags::SHRINK, "F_SEAL_SHRINK"),
    (SealFlags::GROW, "F_SEAL_GROW"),
    (SealFlags::SEAL, "F_SEAL_SEAL"),
];

/// `memfd_create`, `ftruncate(size)`, reserve every page (`fallocate`), then
/// seal it against resizing and further sealing. The header is written
/// through the mapping afterwards; nobody else holds the descriptor until
/// the caller hands on a duplicate.
///
/// With `huge` the memfd is a hugetlbfs file (`MFD_HUGETLB`, default huge
/// page size), and its size is rounded up to whole huge pages, which
/// hugetlbfs requires; the size actually used is returned.
pub(crate) fn create_sealed(size: usize, huge: bool) -> Result<(OwnedFd, usize), Error> {
    let mut flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    if huge {
        flags |= MemfdFlags::HUGETLB;
    }
    let fd = match rustix::fs::memfd_create(c"shmqueue", flags) {
        Ok(fd) => fd,
        // No hugetlbfs in this kernel, or no sealing for it (Linux < 4.16).
        Err(Errno::INVAL) | Err(Errno::NOENT) | Err(Errno::NODEV) if huge => {
            return Err(Error::HugePagesUnavailable {
                detail: "memfd_create(MFD_HUGETLB | MFD_ALLOW_SEALING) is refused: the kernel \
                         has no hugetlbfs, or cannot seal it (needs Linux >= 4.16 with \
                         CONFIG_HUGETLBFS)"
                    .into(),
            })
        }
        Err(e) => return Err(io("memfd_create (needs Linux >= 3.17)", e)),
    };
    let size = if huge {
        // hugetlbfs reports its page size as the block size.
        let st = super::shm::fstat(fd.as_fd())?;
        let page = (st.st_blksize as usize).max(1);
        size.checked_next_multiple_of(page)
            .ok_or_else(|| Error::InvalidArgument {
                detail: format!(
                    "segment size {size} rounded up to {page}-byte huge pages overflows"
                ),
            })?
    } else {
        size
    };
    super::shm::set_len(fd.as_fd(), size)?;
    if huge {
        match super::shm::reserve(fd.as_fd(), size, SEGMENT_NAME, || None) {
            Err(Error::NoSpace { needed, .. }) => {
                return Err(Error::HugePagesUnavailable {
                    detail: huge_shortage(needed),
                })
            }
            r => r?,
        }
    } else {
        super::shm::reserve(fd.as_fd(), size, SEGMENT_NAME, memory_available)?;
    }
    let seals = REQUIRED_SEALS
        .iter()
        .fold(SealFlags::empty(), |acc, (s, _)| acc | *s);
    rustix::fs::fcntl_add_seals(&fd, seals).map_err(|e| io("fcntl(F_ADD_SEALS)", e))?;
    Ok((fd, size))
}

/// A field of `/proc/meminfo`, in its own unit (kB, or a page count).
fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Why `needed` bytes of hugetlb pages could not be reserved.
fn huge_shortage(needed: u64) -> String {
    let page_kb = meminfo("Hugepagesize").unwrap_or(2048).max(1);
    let pages = needed.div_ceil(page_kb * 1024);
    match (meminfo("HugePages_Total"), meminfo("HugePages_Free")) {
        (Some(0), _) => format!(
            "{pages} huge pages of {page_kb} kB are needed and none are configured \
             (/proc/sys/vm/nr_hugepages is 0); reserve some as root \
             (echo {pages} > /proc/sys/vm/nr_hugepages, or hugepages={pages} on the kernel \
             command line)"
        ),
        (total, free) => format!(
            "{pages} huge pages of {page_kb} kB are needed but only {} of {} are free; \
             raise /proc/sys/vm/nr_hugepages (as root) or free some",
            free.map_or_else(|| "unknown".into(), |f| f.to_string()),
            total.map_or_else(|| "unknown".into(), |t| t.to_string()),
        ),
    }
}

/// What a memfd can still be given: a memfd lives on the kernel's internal
/// tmpfs, which has no size limit, so memory decides: the memory cgroup's
/// remaining limit if this process has one (v2, else v1), else
/// `MemAvailable`.
fn memory_available() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let read = |f: String| -> Option<u64> { std::fs::read_to_string(f).ok()?.trim().parse().ok() };
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        // "max" (no limit) does not parse: fall through to the next source.
        let left = if controllers.is_empty() {
            let dir = format!("/sys/fs/cgroup{path}");
            read(format!("{dir}/memory.max")).zip(read(format!("{dir}/memory.current")))
        } else if controllers.split(',').any(|c| c == "memory") {
            let dir = format!("/sys/fs/cgroup/memory{path}");
            read(format!("{dir}/memory.limit_in_bytes"))
                .zip(read(format!("{dir}/memory.usage_in_bytes")))
        } else {
            None
        };
        if let Some((max, current)) = left {
            let free = meminfo("MemAvailable").and_then(|kb| kb.checked_mul(1024));
            // A v1 "no limit" is a huge number: the host's memory is then
            // what bounds it.
            return Some(max.saturating_sub(current).min(free.unwrap_or(u64::MAX)));
        }
    }
    meminfo("MemAvailable").and_then(|kb| kb.checked_mul(1024))
}

/// Refuse a descriptor that is not a memfd carrying every required seal.
pub(crate) fn check_seals(fd: BorrowedFd<'_>) -> Result<(), Error> {
    let have = match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) => seals,
        // Pipes, sockets, files on disk filesystems: no seals at all.
        Err(Errno::INVAL) => {
            return Err(Error::NotSealed {
                seals: None,
                missing: "every seal".into(),
            })
        }
        Err(e) => return Err(io("fcntl(F_GET_SEALS)", e)),
    };
    let missing: Vec<&str> = REQUIRED_SEALS
        .iter()
        .filter(|(s, _)| !have.contains(*s))
        .map(|(_, n)| *n)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotSealed {
            seals: Some(have.bits()),
            missing: missing.join(", "),
        })
    }
}
