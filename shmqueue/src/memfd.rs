//! Unnamed, sealed queues (memfd) and handing their descriptor to other
//! processes.
//!
//! A named segment (`/dev/shm/NAME`) can be found and opened by any process
//! of the user, survives crashes, and can be truncated by a hostile or buggy
//! peer, after which every process mapping it gets `SIGBUS` on its next
//! access. A memfd queue has no name: it is created with
//! `memfd_create(MFD_CLOEXEC | MFD_ALLOW_SEALING)`, sized, and sealed with
//! `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` before anyone else can see it,
//! so its size can never change again (`ftruncate` fails with `EPERM` for
//! everyone, the creator included, and no seal can be added or removed). It
//! vanishes when the last descriptor and mapping go away, and reaches other
//! processes only by being handed on explicitly:
//!
//! * over a Unix socket with `SCM_RIGHTS`: [`send_fd`] / [`recv_fd`];
//! * by inheritance to a child: [`inherit_fd`] in the parent,
//!   [`take_inherited_fd`] in the child.
//!
//! The receiver passes the descriptor to the builder's `open_fd`, which
//! refuses anything that is not a memfd carrying all three seals
//! ([`Error::NotSealed`]).
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use shmqueue::{memfd, Spsc};
//!
//! let q = Spsc::<u64>::builder().capacity(16).create_memfd()?;
//! let (a, b) = UnixStream::pair().expect("socketpair");
//! memfd::send_fd(&a, q.dup_fd()?)?;
//! // ... in the receiving process:
//! let same = Spsc::<u64>::builder().open_fd(memfd::recv_fd(&b)?)?;
//! q.producer()?.push(7)?;
//! assert_eq!(same.consumer()?.pop()?, 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::unistd::ftruncate;

use crate::Error;

/// The name the kernel shows for our memfds (`/proc/PID/fd/N` →
/// `/memfd:shmqueue (deleted)`), and the segment name in errors.
pub(crate) const SEGMENT_NAME: &str = "memfd:shmqueue";

/// Seals a memfd must carry before `open_fd` maps it.
const REQUIRED_SEALS: [(SealFlag, &str); 3] = [
    (SealFlag::F_SEAL_SHRINK, "F_SEAL_SHRINK"),
    (SealFlag::F_SEAL_GROW, "F_SEAL_GROW"),
    (SealFlag::F_SEAL_SEAL, "F_SEAL_SEAL"),
];

/// Most descriptors one `SCM_RIGHTS` message can carry (the kernel's
/// `SCM_MAX_FD`); [`recv_fd`] makes room for all of them so that extras
/// arrive (and are closed) instead of truncating the control data.
const SCM_MAX_FD: usize = 253;

fn io(op: &'static str, e: Errno) -> Error {
    Error::Io {
        op,
        source: std::io::Error::from(e),
    }
}

fn passing(detail: impl Into<String>) -> Error {
    Error::FdPassing {
        detail: detail.into(),
    }
}

/// `memfd_create`, `ftruncate(size)`, reserve every page (`fallocate`), then
/// seal it against resizing and further sealing. The header is written
/// through the mapping afterwards; nobody else holds the descriptor until
/// the caller hands on a duplicate.
///
/// With `huge` the memfd is a hugetlbfs file (`MFD_HUGETLB`, default huge
/// page size), and its size is rounded up to whole huge pages, which
/// hugetlbfs requires; the size actually used is returned.
pub(crate) fn create_sealed(size: usize, huge: bool) -> Result<(OwnedFd, usize), Error> {
    let mut flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    if huge {
        flags |= MFdFlags::MFD_HUGETLB;
    }
    let fd = match memfd_create(c"shmqueue", flags) {
        Ok(fd) => fd,
        // No hugetlbfs in this kernel, or no sealing for it (Linux < 4.16).
        Err(Errno::EINVAL) | Err(Errno::ENOENT) | Err(Errno::ENODEV) if huge => {
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
        let st = nix::sys::stat::fstat(&fd).map_err(|e| io("fstat", e))?;
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
    let len = i64::try_from(size).map_err(|_| Error::InvalidArgument {
        detail: format!("segment size {size} does not fit in off_t"),
    })?;
    ftruncate(&fd, len).map_err(|e| io("ftruncate", e))?;
    if huge {
        match crate::segment::reserve(fd.as_fd(), size, SEGMENT_NAME, || None) {
            Err(Error::NoSpace { needed, .. }) => {
                return Err(Error::HugePagesUnavailable {
                    detail: huge_shortage(needed),
                })
            }
            r => r?,
        }
    } else {
        crate::segment::reserve(fd.as_fd(), size, SEGMENT_NAME, memory_available)?;
    }
    let seals = REQUIRED_SEALS
        .iter()
        .fold(SealFlag::empty(), |acc, (s, _)| acc | *s);
    fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| io("fcntl(F_ADD_SEALS)", e))?;
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
    let found = match fcntl(fd, FcntlArg::F_GET_SEALS) {
        Ok(bits) => bits,
        // Pipes, sockets, files on disk filesystems: no seals at all.
        Err(Errno::EINVAL) => {
            return Err(Error::NotSealed {
                seals: None,
                missing: "every seal".into(),
            })
        }
        Err(e) => return Err(io("fcntl(F_GET_SEALS)", e)),
    };
    let have = SealFlag::from_bits_retain(found);
    let missing: Vec<&str> = REQUIRED_SEALS
        .iter()
        .filter(|(s, _)| !have.contains(*s))
        .map(|(_, n)| *n)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotSealed {
            seals: Some(found as u32),
            missing: missing.join(", "),
        })
    }
}

/// Send `fd` over the Unix socket `socket` (one byte of data carrying one
/// `SCM_RIGHTS` descriptor). The receiver gets its own descriptor for the
/// same open file; this process keeps `fd`.
///
/// On a stream socket that also carries other data, the receiver must call
/// [`recv_fd`] exactly when this byte is next.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use shmqueue::{memfd, Mpmc};
///
/// let q = Mpmc::<u32>::builder().create_memfd()?;
/// let (a, b) = UnixStream::pair().expect("socketpair");
/// memfd::send_fd(&a, q.dup_fd()?)?;
/// let received = memfd::recv_fd(&b)?;
/// let same = Mpmc::<u32>::builder().open_fd(received)?;
/// assert_eq!(same.capacity(), q.capacity());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send_fd(socket: impl AsFd, fd: impl AsFd) -> Result<(), Error> {
    let fds = [fd.as_fd().as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let data = [IoSlice::new(b"F")];
    loop {
        match sendmsg::<()>(
            socket.as_fd().as_raw_fd(),
            &data,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(1) => return Ok(()),
            Ok(n) => return Err(passing(format!("sendmsg sent {n} bytes instead of 1"))),
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE) | Err(Errno::ECONNRESET) => {
                return Err(passing(
                    "the receiving end of the socket is closed; \
                     keep it open until the descriptor has been received",
                ))
            }
            Err(Errno::ENOTSOCK) => {
                return Err(passing(
                    "not a socket: pass one end of a Unix socket (e.g. UnixStream::pair())",
                ))
            }
            Err(e) => return Err(io("sendmsg(SCM_RIGHTS)", e)),
        }
    }
}

/// Receive one descriptor sent with [`send_fd`] (or any sender that sends
/// one byte with one `SCM_RIGHTS` descriptor). Blocks until a message
/// arrives, unless `socket` is non-blocking.
///
/// The message must carry exactly one descriptor: if it carries none, or
/// several, every descriptor that arrived is closed and the call fails
/// with [`Error::FdPassing`]. Received descriptors are close-on-exec.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use shmqueue::{memfd, Error};
///
/// let (a, b) = UnixStream::pair().expect("socketpair");
/// drop(a); // the peer goes away without sending anything
/// assert!(matches!(memfd::recv_fd(&b), Err(Error::FdPassing { .. })));
/// ```
pub fn recv_fd(socket: impl AsFd) -> Result<OwnedFd, Error> {
    let mut byte = [0u8; 1];
    let (bytes, fds, truncated) = loop {
        match recv_with_fds(socket.as_fd(), &mut byte) {
            Ok(r) => break r,
            Err(Errno::EINTR) => continue,
            Err(Errno::ENOTSOCK) => {
                return Err(passing(
                    "not a socket: pass one end of a Unix socket (e.g. UnixStream::pair())",
                ))
            }
            Err(e) => return Err(io("recvmsg(SCM_RIGHTS)", e)),
        }
    };
    if truncated {
        // `fds` (whatever did arrive) is closed on return.
        return Err(passing(format!(
            "the control data was truncated ({} descriptors arrived; more than 253 \
             descriptors, other control messages, or this process is out of \
             descriptors); all were closed. Send exactly one descriptor per message",
            fds.len()
        )));
    }
    let mut fds = fds.into_iter();
    match (fds.next(), fds.len()) {
        (Some(fd), 0) => Ok(fd),
        (None, _) if bytes == 0 => Err(passing(
            "the peer closed the socket without sending a descriptor",
        )),
        (None, _) => Err(passing(
            "the message carried no descriptor; the sender must attach exactly one \
             with SCM_RIGHTS (memfd::send_fd)",
        )),
        (Some(_), extra) => Err(passing(format!(
            "the message carried {} descriptors instead of one; all were closed. \
             Send exactly one descriptor per message",
            extra + 1
        ))),
    }
}

/// Control buffer with room for [`SCM_MAX_FD`] descriptors.
// SAFETY: CMSG_SPACE only computes a length.
const CMSG_BUF_LEN: usize =
    unsafe { libc::CMSG_SPACE((SCM_MAX_FD * core::mem::size_of::<RawFd>()) as libc::c_uint) }
        as usize;

/// `cmsghdr`-aligned storage for the control data.
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_BUF_LEN]);

/// One `recvmsg` of up to one byte with `MSG_CMSG_CLOEXEC`: the byte count,
/// every descriptor that arrived (owned, so closed unless kept), and
/// whether the kernel truncated the control data (`MSG_CTRUNC`).
///
/// Written against libc rather than nix: nix refuses to parse control data
/// marked truncated, but the kernel still installs the descriptors that fit
/// (or, out of descriptors, those it managed to install) and lists them in
/// a well-formed `SCM_RIGHTS` message, so they must be collected to be
/// closed.
fn recv_with_fds(
    socket: BorrowedFd<'_>,
    byte: &mut [u8; 1],
) -> Result<(usize, Vec<OwnedFd>, bool), Errno> {
    let mut buf = CmsgBuf([0; CMSG_BUF_LEN]);
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid (empty) value.
    let mut mhdr: libc::msghdr = unsafe { core::mem::zeroed() };
    mhdr.msg_iov = &mut iov;
    mhdr.msg_iovlen = 1;
    mhdr.msg_control = buf.0.as_mut_ptr().cast();
    mhdr.msg_controllen = CMSG_BUF_LEN as _;
    // SAFETY: `mhdr` points to one iovec over `byte` and to `buf`, both
    // live and writable for the whole call, with their true lengths.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut mhdr, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(Errno::last());
    }
    let end = mhdr.msg_control as usize + (mhdr.msg_controllen as usize).min(CMSG_BUF_LEN);
    let mut fds = Vec::new();
    // SAFETY: the kernel set msg_controllen to the control bytes it wrote
    // into `buf`; CMSG_FIRSTHDR returns null unless a whole header fits.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&mhdr) };
    while !c.is_null() {
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR only return headers that lie
        // inside the first msg_controllen bytes of `buf`, which is aligned
        // for cmsghdr (align 8, headers at CMSG_ALIGN offsets).
        let h = unsafe { &*c };
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: pure address computation on a header inside `buf`.
            let data = unsafe { libc::CMSG_DATA(c) };
            // SAFETY: CMSG_LEN only computes a length.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            // Never past the control data the kernel wrote.
            let len = (h.cmsg_len as usize)
                .saturating_sub(header)
                .min(end.saturating_sub(data as usize));
            for i in 0..len / core::mem::size_of::<RawFd>() {
                // SAFETY: in bounds (clamped to `end` above); the data is
                // only 4-aligned in general, hence read_unaligned.
                let raw = unsafe { data.cast::<RawFd>().add(i).read_unaligned() };
                // SAFETY: the kernel installed `raw` in our descriptor table
                // for this recvmsg call; no other code knows the number
                // yet, so taking ownership (and closing it on drop) is sound.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: `c` is a header inside the control data of `mhdr`;
        // CMSG_NXTHDR checks the next one against msg_controllen.
        c = unsafe { libc::CMSG_NXTHDR(&mhdr, c) };
    }
    Ok((n as usize, fds, mhdr.msg_flags & libc::MSG_CTRUNC != 0))
}

/// Arrange for the child that `cmd` spawns to inherit `fd`, and tell it the
/// descriptor's number in the environment variable `var`. In the child,
/// [`take_inherited_fd`] reads it back.
///
/// The descriptor stays close-on-exec in this process: only the child that
/// `cmd` forks clears the flag on its own copy, just before `exec`, so
/// children that other threads spawn at the same time do not inherit it.
/// The parent's copy is owned by `cmd`: it is closed when `cmd` is dropped
/// (do so after spawning if the parent does not need it).
///
/// ```
/// use std::process::Command;
/// use shmqueue::{memfd, Spsc};
///
/// let q = Spsc::<u64>::builder().create_memfd()?;
/// let mut cmd = Command::new("/bin/sh");
/// // The child sees the descriptor open at the number in $SHMQ_FD.
/// cmd.args(["-c", r#"test -e "/proc/$$/fd/$SHMQ_FD""#]);
/// memfd::inherit_fd(&mut cmd, q.dup_fd()?, "SHMQ_FD")?;
/// assert!(cmd.status()?.success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inherit_fd(cmd: &mut Command, fd: OwnedFd, var: &str) -> Result<(), Error> {
    // `Command` dup2s stdio onto 0..=2 in the child; keep clear of them.
    let fd = if fd.as_raw_fd() <= 2 {
        rustix::io::fcntl_dupfd_cloexec(&fd, 3).map_err(|e| Error::Io {
            op: "fcntl(F_DUPFD_CLOEXEC)",
            source: e.into(),
        })?
    } else {
        fd
    };
    cmd.env(var, fd.as_raw_fd().to_string());
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed. It makes one fcntl(F_SETFD) system
    // call through rustix (no allocation, no locks) on a descriptor the
    // closure owns (so it is open for as long as `cmd` exists), and converts
    // the errno into an io::Error without allocating.
    unsafe {
        cmd.pre_exec(move || {
            rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty()).map_err(Into::into)
        });
    }
    Ok(())
}

/// In a child started with [`inherit_fd`]: take ownership of the descriptor
/// whose number the environment variable `var` holds. It is made
/// close-on-exec again, so it does not leak into this process's own
/// children.
///
/// # Safety
///
/// The variable must name a descriptor this process inherited for this
/// purpose, which nothing else in the process owns or will close; call this
/// at most once per variable. (The descriptor is checked to be open and not
/// stdin/stdout/stderr, but a forged variable naming another open
/// descriptor cannot be detected.)
///
/// ```no_run
/// use shmqueue::{memfd, Spsc};
/// // SAFETY: our parent passed the queue with memfd::inherit_fd(.., "SHMQ_FD").
/// let fd = unsafe { memfd::take_inherited_fd("SHMQ_FD")? };
/// let q = Spsc::<u64>::builder().open_fd(fd)?;
/// let mut rx = q.consumer()?;
/// # Ok::<(), shmqueue::Error>(())
/// ```
pub unsafe fn take_inherited_fd(var: &str) -> Result<OwnedFd, Error> {
    let value = std::env::var(var).map_err(|_| {
        passing(format!(
            "environment variable {var} is not set (or not UTF-8); start this process \
             with memfd::inherit_fd(&mut cmd, fd, {var:?})"
        ))
    })?;
    let raw: RawFd = value
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 2)
        .ok_or_else(|| {
            passing(format!(
                "{var}={value:?} is not a descriptor number above 2; it must be what \
                 memfd::inherit_fd put there"
            ))
        })?;
    // SAFETY: fcntl(F_GETFD) on any integer only queries this process's
    // descriptor table; it touches no memory of ours.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } == -1 {
        return Err(passing(format!(
            "{var}={raw} but descriptor {raw} is not open ({}); pass it with \
             memfd::inherit_fd, which clears close-on-exec in the child only",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `raw` is open (checked above), and the caller guarantees it
    // was inherited for us and that nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).map_err(|e| Error::Io {
        op: "fcntl(F_SETFD, FD_CLOEXEC)",
        source: e.into(),
    })?;
    Ok(fd)
}
