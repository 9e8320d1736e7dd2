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

use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;

use crate::sys::fdpass;
use crate::Error;

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
    fdpass::send_fd(socket.as_fd(), fd.as_fd())
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
    fdpass::recv_fd(socket.as_fd())
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
    fdpass::inherit_fd(cmd, fd, var)
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
    // SAFETY: the same contract, which our caller guarantees.
    unsafe { fdpass::take_inherited_fd(var) }
}
