//! A POSIX shared-memory object and its mapping:
//! `shm_open` → `fchown` (group) → `fchmod` → `ftruncate` → `fallocate` →
//! `mmap(MAP_SHARED)` (→ `madvise`, `mlock` if asked) … `munmap` on drop,
//! `shm_unlink` only when asked.
//!
//! Or an unnamed, sealed memfd (see `memfd.rs`): `memfd_create` →
//! `ftruncate` → `fallocate` → `F_ADD_SEALS` → `mmap`, and on the receiving
//! side `F_GET_SEALS` → `fstat` → `mmap`.
//!
//! `fallocate` reserves every page while creation can still fail cleanly:
//! without it a tmpfs that is too small (Docker's 64 MiB `/dev/shm`) accepts
//! the `ftruncate` and kills whoever first touches a page it cannot supply
//! with `SIGBUS`.
//!
//! This module owns the mapping's lifetime; `ring.rs` interprets its bytes.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::{fchmod, fstat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, ftruncate, geteuid, Gid};

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
    /// create: give the new segment this group (with `fchown`, before it is
    /// sized). open: require the segment to belong to this group, and then
    /// accept group write access and an owner other than us (only root or a
    /// member of the group can have given it that group).
    pub group: Option<u32>,
    /// `open`: how long to wait for a creator to finish initialising.
    pub init_timeout: Duration,
    /// Map with every page present (`MAP_POPULATE`), so that no access
    /// takes a first-touch page fault.
    pub prefault: bool,
    /// `mlock` the mapping (`Error::MemoryLock` if refused).
    pub lock_memory: bool,
    /// create: back the segment with huge pages (`MFD_HUGETLB` for a memfd,
    /// transparent huge pages of the tmpfs for a named segment), or fail
    /// with `Error::HugePagesUnavailable`.
    pub huge_pages: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            mode: 0o600,
            allow_world: false,
            allow_foreign_owner: false,
            allow_shared_write: false,
            group: None,
            init_timeout: Duration::from_secs(2),
            prefault: false,
            lock_memory: false,
            huge_pages: false,
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

fn map(fd: &OwnedFd, len: usize, populate: bool) -> Result<MmapRaw, Error> {
    let mut o = MmapOptions::new();
    o.len(len);
    if populate {
        // Page tables filled now, writable: the pages are already in the
        // file (fallocate) and shmem needs no write notification, so the
        // later stores fault neither for the page nor for write permission.
        o.populate();
    }
    o.map_raw(fd)
        .map_err(|source| Error::Io { op: "mmap", source })
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
    let len = libc::off_t::try_from(size).map_err(|_| Error::InvalidArgument {
        detail: format!("segment size {size} does not fit in off_t"),
    })?;
    loop {
        // SAFETY: plain system call on a descriptor we own; no memory is
        // passed.
        let r = unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, len) };
        if r == 0 {
            return Ok(());
        }
        match Errno::last() {
            // tmpfs gives up with EINTR when a signal arrives mid-way; what
            // it allocated stays in the file and is reused by the retry.
            Errno::EINTR => continue,
            Errno::ENOSPC | Errno::ENOMEM => {
                return Err(Error::NoSpace {
                    name: name.into(),
                    needed: size as u64,
                    available: available(),
                })
            }
            // A filesystem that cannot reserve (not tmpfs): nothing to
            // gain from failing; pages are then allocated on first touch.
            Errno::EOPNOTSUPP => return Ok(()),
            e => return Err(io("fallocate", e)),
        }
    }
}

/// Free bytes of the filesystem holding `fd`, for `Error::NoSpace`.
fn fs_available(fd: BorrowedFd<'_>) -> Option<u64> {
    let st = nix::sys::statvfs::fstatvfs(fd).ok()?;
    (st.blocks_available() as u64).checked_mul(st.fragment_size() as u64)
}

/// How the tmpfs behind `/dev/shm` gives a named segment huge pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ShmHuge {
    /// Every page that fits (`huge=always`, `within_size`, or the global
    /// `force`): `fallocate` itself allocates huge pages.
    Always,
    /// Only for mappings advised with `MADV_HUGEPAGE` (`huge=advise`):
    /// `fallocate` (no mapping involved) would reserve small pages, so the
    /// segment is populated through its advised mapping instead.
    Advise,
}

/// The bracketed choice of a sysfs policy file such as
/// `always within_size advise [never] deny force`.
fn sysfs_choice(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(&text[start..end])
}

/// Whether named segments can have transparent huge pages: the global
/// `shmem_enabled` can force them on or off for every tmpfs, otherwise the
/// `huge=` mount option of `/dev/shm` decides.
fn shm_huge_policy() -> Result<ShmHuge, Error> {
    const SYSFS: &str = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
    let unavailable = |detail: String| Error::HugePagesUnavailable { detail };
    let global = std::fs::read_to_string(SYSFS).map_err(|e| {
        unavailable(format!(
            "cannot read {SYSFS} ({e}): this kernel has no transparent huge pages for tmpfs; \
             use a memfd queue (create_memfd) with hugetlb pages configured instead"
        ))
    })?;
    match sysfs_choice(&global) {
        Some("force") => return Ok(ShmHuge::Always),
        Some("deny") => {
            return Err(unavailable(format!(
                "{SYSFS} is \"deny\", which turns huge pages off for every tmpfs; \
                 write \"advise\" or \"never\" there (as root) to let the /dev/shm mount decide"
            )))
        }
        _ => {}
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS";
    // the last mount listed on /dev/shm is the one in effect.
    let huge = mounts
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some("/dev/shm"))
        .filter_map(|l| {
            let (_, tail) = l.split_once(" - ")?;
            let mut t = tail.split(' ');
            let fstype = t.next()?;
            let superopts = t.nth(1).unwrap_or("");
            Some((fstype.to_owned(), superopts.to_owned()))
        })
        .next_back();
    let Some((fstype, superopts)) = huge else {
        return Err(unavailable(
            "nothing is mounted on /dev/shm, so the huge-page policy of its filesystem \
             is unknown"
                .into(),
        ));
    };
    if fstype != "tmpfs" {
        return Err(unavailable(format!(
            "/dev/shm is a {fstype} filesystem, not tmpfs, so it has no transparent huge pages"
        )));
    }
    match superopts
        .split(',')
        .find_map(|o| o.strip_prefix("huge="))
        .unwrap_or("never")
    {
        "always" | "within_size" => Ok(ShmHuge::Always),
        "advise" => Ok(ShmHuge::Advise),
        other => Err(unavailable(format!(
            "the tmpfs on /dev/shm is mounted with huge={other}, so its files get no huge pages; \
             remount it with huge=advise or huge=within_size (mount -o remount,huge=advise \
             /dev/shm, as root), or use a memfd queue with hugetlb pages (create_memfd)"
        ))),
    }
}

/// Populate the whole advised mapping with write faults, which allocate
/// (huge) pages as `MADV_HUGEPAGE` allows and report a shortage as an error
/// rather than `SIGBUS` (`MADV_POPULATE_WRITE`, Linux 5.14).
fn populate_write(map: &MmapRaw, name: &str, available: Option<u64>) -> Result<(), Error> {
    // SAFETY: the range is exactly our own live mapping; populating only
    // faults its pages in (as a write of nothing would), it changes no data.
    let r = unsafe {
        libc::madvise(
            map.as_mut_ptr().cast(),
            map.len(),
            libc::MADV_POPULATE_WRITE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    match Errno::last() {
        Errno::ENOMEM | Errno::EFAULT => Err(Error::NoSpace {
            name: name.into(),
            needed: map.len() as u64,
            available,
        }),
        Errno::EINVAL => Err(Error::HugePagesUnavailable {
            detail: "this kernel lacks MADV_POPULATE_WRITE (Linux 5.14), which reserving an \
                     advised huge-page segment needs; mount /dev/shm with huge=within_size"
                .into(),
        }),
        e => Err(io("madvise(MADV_POPULATE_WRITE)", e)),
    }
}

fn madvise_hugepage(map: &MmapRaw) -> Result<(), Error> {
    // SAFETY: the range is exactly our own live mapping; MADV_HUGEPAGE
    // changes only how future faults in it are served.
    let r = unsafe { libc::madvise(map.as_mut_ptr().cast(), map.len(), libc::MADV_HUGEPAGE) };
    if r == 0 {
        Ok(())
    } else {
        match Errno::last() {
            Errno::EINVAL => Err(Error::HugePagesUnavailable {
                detail: "madvise(MADV_HUGEPAGE) is refused: this kernel has no transparent \
                         huge pages"
                    .into(),
            }),
            e => Err(io("madvise(MADV_HUGEPAGE)", e)),
        }
    }
}

/// `mlock` the whole mapping if asked; the lock goes with the mapping
/// (`munmap` on drop).
fn lock(map: &MmapRaw, opts: &SegmentOptions) -> Result<(), Error> {
    if !opts.lock_memory {
        return Ok(());
    }
    // SAFETY: the range is exactly our own live mapping; mlock faults its
    // pages in and pins them, it changes no data.
    let r = unsafe { libc::mlock(map.as_mut_ptr().cast(), map.len()) };
    if r == 0 {
        return Ok(());
    }
    let source = std::io::Error::last_os_error();
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
        .ok()
        .map(|(soft, _)| soft)
        .filter(|&soft| soft != libc::RLIM_INFINITY);
    Err(Error::MemoryLock {
        needed: map.len() as u64,
        limit,
        locked: locked_bytes(),
        source,
    })
}

/// `VmLck` of this process, in bytes.
fn locked_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmLck:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Map a segment being opened, with the attach-time options.
fn map_for_open(fd: &OwnedFd, len: usize, opts: &SegmentOptions) -> Result<MmapRaw, Error> {
    let map = map(fd, len, opts.prefault)?;
    lock(&map, opts)?;
    Ok(map)
}

impl Segment {
    /// Create a new object of exactly `size` bytes. Never opens an existing
    /// one: a taken name (file, symlink, anyone's segment) is `AlreadyExists`
    /// and is left untouched.
    pub(crate) fn create(name: &str, size: usize, opts: &SegmentOptions) -> Result<Segment, Error> {
        let cname = c_name(name)?;
        // Before anything exists: asking for huge pages where there are none
        // leaves nothing behind.
        let huge = if opts.huge_pages {
            Some(shm_huge_policy()?)
        } else {
            None
        };
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
        // With a group to set, owner-only until it is set: a group mode now
        // would let the creator's primary group open it (and keep the
        // descriptor) before `fchown` hands it to `opts.group`. An opener of
        // that group racing this creation gets PermissionDenied meanwhile.
        let initial = if opts.group.is_some() {
            Mode::S_IRUSR | Mode::S_IWUSR
        } else {
            Mode::from_bits_truncate(opts.mode)
        };
        let fd = match shm_open(cname.as_c_str(), flags, initial) {
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
        if let Some(gid) = opts.group {
            match fchown(&fd, None, Some(Gid::from_raw(gid))) {
                Ok(()) => {}
                Err(Errno::EPERM) => {
                    return Err(Error::PermissionDenied {
                        name: name.into(),
                        detail: format!(
                            "cannot give it group {gid}: this process is not a member of that \
                             group (add the user to it, or pick one of its groups: `id -G`)"
                        ),
                    })
                }
                Err(e) => return Err(io("fchown", e)),
            }
        }
        // The umask applied to shm_open's mode; set exactly what was asked.
        fchmod(&fd, Mode::from_bits_truncate(opts.mode)).map_err(|e| io("fchmod", e))?;
        let len = i64::try_from(size).map_err(|_| Error::InvalidArgument {
            detail: format!("segment size {size} does not fit in off_t"),
        })?;
        ftruncate(&fd, len).map_err(|e| io("ftruncate", e))?;
        let available = || fs_available(fd.as_fd());
        let map = if huge == Some(ShmHuge::Advise) {
            let map = map(&fd, size, false)?;
            madvise_hugepage(&map)?;
            // Reserves (and prefaults) through the advised mapping.
            populate_write(&map, name, available())?;
            map
        } else {
            reserve(fd.as_fd(), size, name, available)?;
            let map = map(&fd, size, opts.prefault)?;
            if huge.is_some() {
                // Already huge where the mount allows; this also lets
                // khugepaged collapse what was not.
                madvise_hugepage(&map)?;
            }
            map
        };
        lock(&map, opts)?;
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
        let map = map_for_open(&fd, len, opts)?;
        Ok((
            Segment {
                map,
                fd,
                name: name.into(),
            },
            deadline,
        ))
    }

    /// Create an unnamed memfd of exactly `size` bytes, sealed against
    /// shrinking, growing and further sealing before it is mapped (see
    /// `memfd.rs`). Only this process holds it until the caller hands on a
    /// duplicate of [`Segment::fd`].
    /// With `huge_pages` the memfd is a hugetlbfs file and `size` is rounded
    /// up to a whole number of huge pages (the mapping's length says how
    /// much).
    pub(crate) fn create_memfd(size: usize, opts: &SegmentOptions) -> Result<Segment, Error> {
        let (fd, size) = crate::memfd::create_sealed(size, opts.huge_pages)?;
        let map = map(&fd, size, opts.prefault)?;
        lock(&map, opts)?;
        Ok(Segment {
            map,
            fd,
            name: crate::memfd::SEGMENT_NAME.into(),
        })
    }

    /// Map a descriptor someone handed us, after checking that it is a memfd
    /// carrying every seal in `memfd::REQUIRED_SEALS` (so its size can never
    /// change under the mapping) and big enough for a header. Owner and mode
    /// are not checked: holding the descriptor is the permission.
    pub(crate) fn open_fd(fd: OwnedFd, opts: &SegmentOptions) -> Result<Segment, Error> {
        let name = crate::memfd::SEGMENT_NAME;
        crate::memfd::check_seals(fd.as_fd())?;
        let fl = fcntl(&fd, FcntlArg::F_GETFL).map_err(|e| io("fcntl(F_GETFL)", e))?;
        if OFlag::from_bits_truncate(fl) & OFlag::O_ACCMODE != OFlag::O_RDWR {
            return Err(Error::PermissionDenied {
                name: name.into(),
                detail: "the descriptor is not open read-write; pass one from the queue's \
                         dup_fd(), not a read-only reopen"
                    .into(),
            });
        }
        let st = fstat(&fd).map_err(|e| io("fstat", e))?;
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if fmt != SFlag::S_IFREG {
            return Err(Error::Foreign {
                name: name.into(),
                detail: "not a regular file".into(),
            });
        }
        if (st.st_size as u64) < HEADER_SIZE as u64 {
            return Err(Error::Foreign {
                name: name.into(),
                detail: format!("{} bytes is too small for a header", st.st_size),
            });
        }
        let len = usize::try_from(st.st_size).map_err(|_| Error::Foreign {
            name: name.into(),
            detail: "size does not fit in memory".into(),
        })?;
        let map = map_for_open(&fd, len, opts)?;
        Ok(Segment {
            map,
            fd,
            name: name.into(),
        })
    }

    /// The unit the file's size is a multiple of: the huge page size for a
    /// hugetlbfs memfd (whose size is rounded up to it, past the ring's
    /// geometry), otherwise 1.
    pub(crate) fn size_granule(&self) -> Result<u64, Error> {
        let fs = nix::sys::statfs::fstatfs(&self.fd).map_err(|e| io("fstatfs", e))?;
        if fs.filesystem_type() != nix::sys::statfs::HUGETLBFS_MAGIC {
            return Ok(1);
        }
        let st = fstat(&self.fd).map_err(|e| io("fstat", e))?;
        Ok((st.st_blksize as u64).max(1))
    }

    /// A new descriptor for the same object (close-on-exec), to hand on.
    pub(crate) fn dup_fd(&self) -> Result<OwnedFd, Error> {
        self.fd.try_clone().map_err(|source| Error::Io {
            op: "fcntl(F_DUPFD_CLOEXEC)",
            source,
        })
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
