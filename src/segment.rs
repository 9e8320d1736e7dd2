//! A POSIX shared-memory object and its mapping:
//! `shm_open` → `fchmod` → `ftruncate` → `mmap(MAP_SHARED)` … `munmap` on
//! drop, `shm_unlink` only when asked.
//!
//! This module owns the mapping's lifetime; `ring.rs` interprets its bytes.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::{fchmod, fstat, FileStat, Mode, SFlag};
use nix::unistd::{ftruncate, geteuid};

use crate::header::HEADER_SIZE;
use crate::name::validate_name;
use crate::Error;

/// Options that govern how a segment is created or which segments `open`
/// accepts. Shared by every queue kind's builder.
#[derive(Clone, Debug)]
pub(crate) struct SegmentOptions {
    /// Permission bits for a new segment, applied exactly (umask ignored).
    pub mode: u32,
    /// Accept a mode that grants access to "others".
    pub allow_world: bool,
    /// `open`: accept a segment owned by another uid.
    pub allow_foreign_owner: bool,
    /// `open`: accept a segment writable by group or others.
    pub allow_shared_write: bool,
    /// `open`: how long to wait for a creator to finish initialising.
    pub init_timeout: Duration,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            mode: 0o600,
            allow_world: false,
            allow_foreign_owner: false,
            allow_shared_write: false,
            init_timeout: Duration::from_secs(2),
        }
    }
}

fn io(op: &'static str, e: Errno) -> Error {
    Error::Io {
        op,
        source: std::io::Error::from(e),
    }
}

/// A mapped shared-memory object.
pub(crate) struct Segment {
    map: MmapRaw,
    fd: OwnedFd,
    name: String,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("len", &self.map.len())
            .finish()
    }
}

fn c_name(name: &str) -> Result<CString, Error> {
    validate_name(name)?;
    // validate_name rejected interior NULs.
    CString::new(name).map_err(|_| Error::InvalidName {
        name: name.into(),
        rule: "must not contain a NUL byte",
    })
}

fn map(fd: &OwnedFd, len: usize) -> Result<MmapRaw, Error> {
    MmapOptions::new()
        .len(len)
        .map_raw(fd)
        .map_err(|source| Error::Io { op: "mmap", source })
}

impl Segment {
    /// Create a new object of exactly `size` bytes. Never opens an existing
    /// one: a taken name (file, symlink, anyone's segment) is `AlreadyExists`
    /// and is left untouched.
    pub(crate) fn create(name: &str, size: usize, opts: &SegmentOptions) -> Result<Segment, Error> {
        let cname = c_name(name)?;
        if opts.mode & !0o777 != 0 {
            return Err(Error::InvalidArgument {
                detail: format!("mode {:#o} has bits outside 0o777", opts.mode),
            });
        }
        if opts.mode & 0o007 != 0 && !opts.allow_world {
            return Err(Error::InvalidArgument {
                detail: format!(
                    "mode {:#o} lets every user on the host read or write the queue; \
                     use a group mode (e.g. 0o660) or opt in with allow_world_access(true)",
                    opts.mode
                ),
            });
        }
        if opts.mode & 0o600 != 0o600 {
            return Err(Error::InvalidArgument {
                detail: format!(
                    "mode {:#o} must give the owner read and write (0o600)",
                    opts.mode
                ),
            });
        }
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_NOFOLLOW;
        let fd = match shm_open(cname.as_c_str(), flags, Mode::from_bits_truncate(opts.mode)) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) | Err(Errno::ELOOP) => {
                return Err(Error::AlreadyExists { name: name.into() })
            }
            Err(Errno::EACCES) | Err(Errno::EPERM) => {
                return Err(Error::PermissionDenied {
                    name: name.into(),
                    detail: "shm_open refused to create it (check /dev/shm permissions)".into(),
                })
            }
            Err(e) => return Err(io("shm_open(O_CREAT|O_EXCL)", e)),
        };
        // From here on the object is ours: remove it again if we cannot finish.
        let cleanup = UnlinkOnDrop(Some(cname));
        // Before anything is written: a segment in its init window is never
        // stale (see liveness.rs).
        hold_handle(name, &fd, deadline_after(Instant::now(), opts.init_timeout))?;
        // The umask applied to shm_open's mode; set exactly what was asked.
        fchmod(&fd, Mode::from_bits_truncate(opts.mode)).map_err(|e| io("fchmod", e))?;
        let len = i64::try_from(size).map_err(|_| Error::InvalidArgument {
            detail: format!("segment size {size} does not fit in off_t"),
        })?;
        ftruncate(&fd, len).map_err(|e| io("ftruncate", e))?;
        let map = map(&fd, size)?;
        cleanup.disarm();
        Ok(Segment {
            map,
            fd,
            name: name.into(),
        })
    }

    /// Open an existing object after checking, with `fstat`, that it is a
    /// regular file owned by us and not writable by others (unless the options
    /// accept that), and at least large enough for a header. Waits up to
    /// `opts.init_timeout` for a creator that has not yet sized it.
    pub(crate) fn open(name: &str, opts: &SegmentOptions) -> Result<(Segment, Instant), Error> {
        let cname = c_name(name)?;
        let started = Instant::now();
        let fd = match shm_open(
            cname.as_c_str(),
            OFlag::O_RDWR | OFlag::O_NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Err(Error::NotFound { name: name.into() }),
            Err(Errno::EACCES) | Err(Errno::EPERM) => {
                return Err(Error::PermissionDenied {
                    name: name.into(),
                    detail: "this user may not open it read-write".into(),
                })
            }
            Err(Errno::ELOOP) => {
                return Err(Error::Foreign {
                    name: name.into(),
                    detail: "it is a symbolic link".into(),
                })
            }
            Err(e) => return Err(io("shm_open", e)),
        };
        check_stat(name, &fd, opts)?;
        let deadline = deadline_after(started, opts.init_timeout);
        // This handle's liveness token (see liveness.rs), then make sure no
        // remover unlinked the object while we were getting it.
        hold_handle(name, &fd, deadline)?;
        let mut st = check_stat(name, &fd, opts)?;
        if st.st_nlink == 0 {
            return Err(Error::NotFound { name: name.into() });
        }
        // Between a creator's shm_open and its ftruncate the object is empty.
        while (st.st_size as u64) < HEADER_SIZE as u64 {
            if st.st_size != 0 {
                return Err(Error::Foreign {
                    name: name.into(),
                    detail: format!("{} bytes is too small for a header", st.st_size),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady { name: name.into() });
            }
            // Bounded poll: there is no event for "a file was resized".
            std::thread::sleep(Duration::from_millis(1));
            st = check_stat(name, &fd, opts)?;
        }
        let len = usize::try_from(st.st_size).map_err(|_| Error::Foreign {
            name: name.into(),
            detail: "size does not fit in memory".into(),
        })?;
        let map = map(&fd, len)?;
        Ok((
            Segment {
                map,
                fd,
                name: name.into(),
            },
            deadline,
        ))
    }

    /// Start of the mapping; page-aligned.
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The object's descriptor (for liveness locks and `fstat`).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The name it was created or opened by.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The object's current size in bytes.
    pub(crate) fn file_size(&self) -> Result<u64, Error> {
        fstat(&self.fd)
            .map(|st| st.st_size as u64)
            .map_err(|e| io("fstat", e))
    }
}

/// `start + timeout`; a huge timeout means "wait as long as it takes":
/// clamp rather than overflow Instant arithmetic.
fn deadline_after(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .unwrap_or(start + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Take the handle's shared liveness lock (see liveness.rs).
fn hold_handle(name: &str, fd: &OwnedFd, deadline: Instant) -> Result<(), Error> {
    if crate::liveness::hold_handle(fd.as_fd(), deadline)? {
        Ok(())
    } else {
        Err(Error::NotReady { name: name.into() })
    }
}

fn check_stat(name: &str, fd: &OwnedFd, opts: &SegmentOptions) -> Result<FileStat, Error> {
    let st = fstat(fd).map_err(|e| io("fstat", e))?;
    let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if fmt != SFlag::S_IFREG {
        return Err(Error::Foreign {
            name: name.into(),
            detail: "not a regular file".into(),
        });
    }
    let me = geteuid().as_raw();
    if st.st_uid != me && !opts.allow_foreign_owner {
        return Err(Error::PermissionDenied {
            name: name.into(),
            detail: format!(
                "owned by uid {} but this process runs as uid {me}; \
                 pass allow_foreign_owner(true) if you trust that user",
                st.st_uid
            ),
        });
    }
    if st.st_mode & 0o022 != 0 && !opts.allow_shared_write {
        return Err(Error::PermissionDenied {
            name: name.into(),
            detail: format!(
                "mode {:#o} lets other users write it, so they could corrupt the queue; \
                 pass allow_shared_write(true) if that is intended",
                st.st_mode & 0o777
            ),
        });
    }
    Ok(st)
}

/// Remove the shared-memory object `name`. Processes that have it mapped keep
/// using it; new `open`s fail with `NotFound`.
///
/// ```
/// # use shmqueue::{Spsc, unlink};
/// let name = format!("/doc-unlink-{}", std::process::id());
/// let q = Spsc::<u64>::create(&name, 8)?;
/// unlink(&name)?;
/// assert!(matches!(Spsc::<u64>::open(&name), Err(shmqueue::Error::NotFound { .. })));
/// # Ok::<(), shmqueue::Error>(())
/// ```
pub fn unlink(name: &str) -> Result<(), Error> {
    let cname = c_name(name)?;
    match shm_unlink(cname.as_c_str()) {
        Ok(()) => Ok(()),
        Err(Errno::ENOENT) => Err(Error::NotFound { name: name.into() }),
        Err(Errno::EACCES) | Err(Errno::EPERM) => Err(Error::PermissionDenied {
            name: name.into(),
            detail: "this user may not remove it".into(),
        }),
        Err(e) => Err(io("shm_unlink", e)),
    }
}

/// Unlinks a half-created object if creation fails part-way.
struct UnlinkOnDrop(Option<CString>);

impl UnlinkOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            let _ = shm_unlink(n.as_c_str());
        }
    }
}
