//! Handing a descriptor to another process: `SCM_RIGHTS` over a Unix
//! socket (`sendmsg`/`recvmsg`), or inheritance across `exec` (`F_SETFD`
//! in the forked child). The public API and its docs are in `memfd.rs`.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::io::{Errno, FdFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::io;
use crate::Error;

/// Most descriptors one `SCM_RIGHTS` message can carry (the kernel's
/// `SCM_MAX_FD`); [`recv_fd`] makes room for all of them so that extras
/// arrive (and are closed) instead of truncating the control data.
const SCM_MAX_FD: usize = 253;

fn passing(detail: impl Into<String>) -> Error {
    Error::FdPassing {
        detail: detail.into(),
    }
}

const NOT_A_SOCKET: &str = "not a socket: pass one end of a Unix socket (e.g. UnixStream::pair())";

/// One byte of data carrying `fd` in one `SCM_RIGHTS` message.
pub(crate) fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<(), Error> {
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(passing("no room for the SCM_RIGHTS control message"));
    }
    let data = [IoSlice::new(b"F")];
    loop {
        match rustix::net::sendmsg(socket, &data, &mut cmsg, SendFlags::NOSIGNAL) {
            Ok(1) => return Ok(()),
            Ok(n) => return Err(passing(format!("sendmsg sent {n} bytes instead of 1"))),
            Err(Errno::INTR) => continue,
            Err(Errno::PIPE) | Err(Errno::CONNRESET) => {
                return Err(passing(
                    "the receiving end of the socket is closed; \
                     keep it open until the descriptor has been received",
                ))
            }
            Err(Errno::NOTSOCK) => return Err(passing(NOT_A_SOCKET)),
            Err(e) => return Err(io("sendmsg(SCM_RIGHTS)", e)),
        }
    }
}

/// Receive one byte and exactly one descriptor; see `memfd::recv_fd`.
pub(crate) fn recv_fd(socket: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    let mut byte = [0u8; 1];
    let (bytes, fds, truncated) = loop {
        match recv_with_fds(socket, &mut byte) {
            Ok(r) => break r,
            Err(Errno::INTR) => continue,
            Err(Errno::NOTSOCK) => return Err(passing(NOT_A_SOCKET)),
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

/// One `recvmsg` of up to one byte with `MSG_CMSG_CLOEXEC`: the byte count,
/// every descriptor that arrived (owned, so closed unless kept), and
/// whether the kernel truncated the control data (`MSG_CTRUNC`).
///
/// Even when it truncates, the kernel installs the descriptors that fit
/// (or, out of descriptors, those it managed to install) and lists them in
/// a well-formed `SCM_RIGHTS` message, so they are collected all the same,
/// to be closed. (rustix's drain clamps each message to the control data
/// written and rounds down to whole descriptors.)
fn recv_with_fds(
    socket: BorrowedFd<'_>,
    byte: &mut [u8; 1],
) -> Result<(usize, Vec<OwnedFd>, bool), Errno> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(byte)];
    let msg = rustix::net::recvmsg(socket, &mut iov, &mut cmsg, RecvFlags::CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(arrived) = m {
            fds.extend(arrived);
        }
    }
    Ok((msg.bytes, fds, msg.flags.contains(ReturnFlags::CTRUNC)))
}

/// See `memfd::inherit_fd`.
pub(crate) fn inherit_fd(cmd: &mut Command, fd: OwnedFd, var: &str) -> Result<(), Error> {
    // `Command` dup2s stdio onto 0..=2 in the child; keep clear of them.
    let fd = if fd.as_raw_fd() <= 2 {
        rustix::io::fcntl_dupfd_cloexec(&fd, 3).map_err(|e| io("fcntl(F_DUPFD_CLOEXEC)", e))?
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
        cmd.pre_exec(move || rustix::io::fcntl_setfd(&fd, FdFlags::empty()).map_err(Into::into));
    }
    Ok(())
}

/// See `memfd::take_inherited_fd`.
///
/// # Safety
///
/// As `memfd::take_inherited_fd`: `var` names a descriptor inherited for
/// this purpose, owned by nothing else in the process.
pub(crate) unsafe fn take_inherited_fd(var: &str) -> Result<OwnedFd, Error> {
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
    // libc, not rustix: rustix takes a BorrowedFd, which must already be
    // open, and whether `raw` is open is the question.
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
    rustix::io::fcntl_setfd(&fd, FdFlags::CLOEXEC)
        .map_err(|e| io("fcntl(F_SETFD, FD_CLOEXEC)", e))?;
    Ok(fd)
}
