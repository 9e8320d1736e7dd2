//! Named POSIX shared-memory objects: `/dev/shm/NAME` created, opened,
//! checked (`fstat`), handed to a group (`fchown`), given its mode
//! (`fchmod`), sized (`ftruncate`), reserved (`fallocate`) and unlinked.
//!
//! `shm_open(3)` on Linux is `open("/dev/shm/NAME", flags | O_NOFOLLOW |
//! O_CLOEXEC)`, and that is what this module calls. rustix's `shm::open`
//! does not add `O_NOFOLLOW`, and the library promises never to follow a
//! symbolic link planted in `/dev/shm` (`tests/spsc_errors.rs` and the unit
//! test below), so the flags are spelled out here.

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{FallocateFlags, FileType, Gid, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::io;
use crate::name::validate_name;
use crate::segment::SegmentOptions;
use crate::Error;

/// Where Linux keeps named shared-memory objects (glibc's `shm_open`).
const SHM_DIR: &str = "/dev/shm";

/// `statfs.f_type` of hugetlbfs (`linux/magic.h`).
const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;

/// The file behind the shm name `name` (which starts with its only '/').
fn path(name: &str) -> Result<String, Error> {
    validate_name(name)?;
    Ok(format!("{SHM_DIR}{name}"))
}

/// `shm_open(name, O_CREAT | O_EXCL | O_RDWR, mode)`: never opens an
/// existing object, and a symbolic link in its place is `AlreadyExists`.
/// The umask applies to `mode` (see [`set_mode`]).
pub(crate) fn create(name: &str, mode: u32) -> Result<OwnedFd, Error> {
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::open(path(name)?.as_str(), flags, Mode::from_raw_mode(mode)) {
        Ok(fd) => Ok(fd),
        Err(Errno::EXIST) | Err(Errno::LOOP) => Err(Error::AlreadyExists { name: name.into() }),
        Err(Errno::ACCESS) | Err(Errno::PERM) => Err(Error::PermissionDenied {
            name: name.into(),
            detail: "shm_open refused to create it (check /dev/shm permissions)".into(),
        }),
        Err(e) => Err(io("shm_open(O_CREAT|O_EXCL)", e)),
    }
}

/// `shm_open(name, O_RDWR)`, refusing a symbolic link.
pub(crate) fn open(name: &str) -> Result<OwnedFd, Error> {
    let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::open(path(name)?.as_str(), flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => Err(Error::NotFound { name: name.into() }),
        Err(Errno::ACCESS) | Err(Errno::PERM) => Err(Error::PermissionDenied {
            name: name.into(),
            detail: "this user may not open it read-write".into(),
        }),
        Err(Errno::LOOP) => Err(Error::Foreign {
            name: name.into(),
            detail: "it is a symbolic link".into(),
        }),
        Err(e) => Err(io("shm_open", e)),
    }
}

/// `shm_unlink(name)`.
pub(crate) fn unlink(name: &str) -> Result<(), Error> {
    match rustix::fs::unlink(path(name)?.as_str()) {
        Ok(()) => Ok(()),
        Err(Errno::NOENT) => Err(Error::NotFound { name: name.into() }),
        Err(Errno::ACCESS) | Err(Errno::PERM) => Err(Error::PermissionDenied {
            name: name.into(),
            detail: "this user may not remove it".into(),
        }),
        Err(e) => Err(io("shm_unlink", e)),
    }
}

/// Give the object group `gid` (`fchown`).
pub(crate) fn set_group(fd: BorrowedFd<'_>, name: &str, gid: u32) -> Result<(), Error> {
    match rustix::fs::fchown(fd, None, Some(Gid::from_raw(gid))) {
        Ok(()) => Ok(()),
        Err(Errno::PERM) => Err(Error::PermissionDenied {
            name: name.into(),
            detail: format!(
                "cannot give it group {gid}: this process is not a member of that \
                 group (add the user to it, or pick one of its groups: `id -G`)"
            ),
        }),
        Err(e) => Err(io("fchown", e)),
    }
}

/// Set exactly the permission bits `mode` (`fchmod`, no umask).
pub(crate) fn set_mode(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Error> {
    rustix::fs::fchmod(fd, Mode::from_bits_truncate(mode)).map_err(|e| io("fchmod", e))
}

/// `size` as a file length (`off_t`).
fn file_len(size: usize) -> Result<u64, Error> {
    match i64::try_from(size) {
        Ok(len) => Ok(len as u64),
        Err(_) => Err(Error::InvalidArgument {
            detail: format!("segment size {size} does not fit in off_t"),
        }),
    }
}

/// Set the file's size (`ftruncate`).
pub(crate) fn set_len(fd: BorrowedFd<'_>, size: usize) -> Result<(), Error> {
    rustix::fs::ftruncate(fd, file_len(size)?).map_err(|e| io("ftruncate", e))
}

/// Reserve all `size` bytes of the file now (`fallocate`, mode 0): the
/// filesystem either has the pages or says ENOSPC here, instead of a
/// `SIGBUS` on first touch. `available` says how much room there was, for
/// the error.
pub(crate) fn reserve(
    fd: BorrowedFd<'_>,
    size: usize,
    name: &str,
    available: impl FnOnce() -> Option<u64>,
) -> Result<(), Error> {
    let len = file_len(size)?;
    loop {
        match rustix::fs::fallocate(fd, FallocateFlags::empty(), 0, len) {
            Ok(()) => return Ok(()),
            // tmpfs gives up with EINTR when a signal arrives mid-way; what
            // it allocated stays in the file and is reused by the retry.
            Err(Errno::INTR) => continue,
            Err(Errno::NOSPC) | Err(Errno::NOMEM) => {
                return Err(Error::NoSpace {
                    name: name.into(),
                    needed: size as u64,
                    available: available(),
                })
            }
            // A filesystem that cannot reserve (not tmpfs): nothing to
            // gain from failing; pages are then allocated on first touch.
            Err(Errno::OPNOTSUPP) => return Ok(()),
            Err(e) => return Err(io("fallocate", e)),
        }
    }
}

/// Free bytes of the filesystem holding `fd`, for `Error::NoSpace`.
pub(crate) fn fs_available(fd: BorrowedFd<'_>) -> Option<u64> {
    let st = rustix::fs::fstatvfs(fd).ok()?;
    st.f_bavail.checked_mul(st.f_frsize)
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> Result<Stat, Error> {
    rustix::fs::fstat(fd).map_err(|e| io("fstat", e))
}

/// Whether `st` describes a regular file.
pub(crate) fn is_regular(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
}

/// Whether `fd` was opened read-write (`F_GETFL`).
pub(crate) fn is_read_write(fd: BorrowedFd<'_>) -> Result<bool, Error> {
    let fl = rustix::fs::fcntl_getfl(fd).map_err(|e| io("fcntl(F_GETFL)", e))?;
    Ok(fl & OFlags::ACCMODE == OFlags::RDWR)
}

/// Whether the file lives on hugetlbfs (`fstatfs`).
pub(crate) fn is_hugetlbfs(fd: BorrowedFd<'_>) -> Result<bool, Error> {
    let fs = rustix::fs::fstatfs(fd).map_err(|e| io("fstatfs", e))?;
    // f_type is a signed long; the magic is its low 32 bits.
    Ok(fs.f_type as u32 == HUGETLBFS_MAGIC)
}

/// `fstat` the object and refuse it unless it is a regular file owned by
/// us and not writable by others, or what `opts` accept instead.
pub(crate) fn check_stat(
    name: &str,
    fd: BorrowedFd<'_>,
    opts: &SegmentOptions,
) -> Result<Stat, Error> {
    let st = fstat(fd)?;
    if !is_regular(&st) {
        return Err(Error::Foreign {
            name: name.into(),
            detail: "not a regular file".into(),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    // The expected group: the segment must have it, and then its owner and
    // group write access are what the caller asked for. Only root or a
    // member of the group can give a file that group (chown(2)), so a
    // stranger cannot dress up a segment as the group's.
    let group_ok = match opts.group {
        Some(gid) if st.st_gid != gid => {
            return Err(Error::PermissionDenied {
                name: name.into(),
                detail: format!(
                    "it belongs to group {} but group {gid} was expected; \
                     ask its creator to share it with group {gid}, or open it with that group",
                    st.st_gid
                ),
            })
        }
        Some(_) => true,
        None => false,
    };
    if st.st_uid != me && !opts.allow_foreign_owner && !group_ok {
        return Err(Error::PermissionDenied {
            name: name.into(),
            detail: format!(
                "owned by uid {} but this process runs as uid {me}; \
                 pass allow_foreign_owner(true) if you trust that user, \
                 or group(gid) if it is shared with a group you trust",
                st.st_uid
            ),
        });
    }
    let unexpected_write = if group_ok { 0o002 } else { 0o022 };
    if st.st_mode & unexpected_write != 0 && !opts.allow_shared_write {
        return Err(Error::PermissionDenied {
            name: name.into(),
            detail: if group_ok {
                format!(
                    "mode {:#o} lets every user on the host write it, so anyone could corrupt \
                     the queue; recreate it without world access, or pass \
                     allow_shared_write(true) if that is intended",
                    st.st_mode & 0o777
                )
            } else {
                format!(
                    "mode {:#o} (group {}) lets other users write it, so they could corrupt the \
                     queue; pass group({}) to share it with that group, or \
                     allow_shared_write(true) if any writer is intended",
                    st.st_mode & 0o777,
                    st.st_gid,
                    st.st_gid
                )
            },
        });
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removes the test's files even if an assertion fails.
    struct Cleanup(Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    #[test]
    fn a_symlink_in_dev_shm_is_never_followed() {
        let id = std::process::id();
        let name = format!("/shmq-sys-link-{id}");
        // The target is a file the opener could open: only O_NOFOLLOW
        // stands between `open` and it.
        let target = format!("/dev/shm/shmq-sys-target-{id}");
        let _c = Cleanup(vec![path(&name).unwrap(), target.clone()]);
        std::fs::write(&target, b"target").unwrap();
        std::os::unix::fs::symlink(&target, path(&name).unwrap()).unwrap();
        match open(&name) {
            Err(Error::Foreign { detail, .. }) => assert!(detail.contains("symbolic link")),
            other => panic!("followed the symlink: {other:?}"),
        }
        assert!(matches!(
            create(&name, 0o600),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(unlink("/a/b"), Err(Error::InvalidName { .. })));
        assert_eq!(std::fs::read(&target).unwrap(), b"target");
    }
}
