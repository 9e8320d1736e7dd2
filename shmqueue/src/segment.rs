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
//! The system calls are in `sys/` (`sys/shm.rs`, `sys/mm.rs`,
//! `sys/memfd.rs`); this module orders them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};

use crate::header::HEADER_SIZE;
use crate::name::validate_name;
use crate::sys::mm::{madvise_hugepage, populate_write};
use crate::sys::shm::{self, check_stat};
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

/// `mlock` the whole mapping if asked; the lock goes with the mapping
/// (`munmap` on drop).
fn lock(map: &MmapRaw, opts: &SegmentOptions) -> Result<(), Error> {
    if !opts.lock_memory {
        return Ok(());
    }
    let Err(source) = crate::sys::mm::mlock(map) else {
        return Ok(());
    };
    Err(Error::MemoryLock {
        needed: map.len() as u64,
        limit: crate::sys::mm::memlock_limit(),
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
        validate_name(name)?;
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
        // With a group to set, owner-only until it is set: a group mode now
        // would let the creator's primary group open it (and keep the
        // descriptor) before `fchown` hands it to `opts.group`. An opener of
        // that group racing this creation gets PermissionDenied meanwhile.
        let initial = if opts.group.is_some() {
            0o600
        } else {
            opts.mode
        };
        let fd = shm::create(name, initial)?;
        // From here on the object is ours: remove it again if we cannot finish.
        let cleanup = UnlinkOnDrop(Some(name.into()));
        // Before anything is written: a segment in its init window is never
        // stale (see liveness.rs).
        hold_handle(name, &fd, deadline_after(Instant::now(), opts.init_timeout))?;
        if let Some(gid) = opts.group {
            shm::set_group(fd.as_fd(), name, gid)?;
        }
        // The umask applied to shm_open's mode; set exactly what was asked.
        shm::set_mode(fd.as_fd(), opts.mode)?;
        shm::set_len(fd.as_fd(), size)?;
        let available = || shm::fs_available(fd.as_fd());
        let map = if huge == Some(ShmHuge::Advise) {
            let map = map(&fd, size, false)?;
            madvise_hugepage(&map)?;
            // Reserves (and prefaults) through the advised mapping.
            populate_write(&map, name, available())?;
            map
        } else {
            shm::reserve(fd.as_fd(), size, name, available)?;
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
        validate_name(name)?;
        let started = Instant::now();
        let fd = shm::open(name)?;
        check_stat(name, fd.as_fd(), opts)?;
        let deadline = deadline_after(started, opts.init_timeout);
        // This handle's liveness token (see liveness.rs), then make sure no
        // remover unlinked the object while we were getting it.
        hold_handle(name, &fd, deadline)?;
        let mut st = check_stat(name, fd.as_fd(), opts)?;
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
            st = check_stat(name, fd.as_fd(), opts)?;
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
        let (fd, size) = crate::sys::memfd::create_sealed(size, opts.huge_pages)?;
        let map = map(&fd, size, opts.prefault)?;
        lock(&map, opts)?;
        Ok(Segment {
            map,
            fd,
            name: crate::sys::memfd::SEGMENT_NAME.into(),
        })
    }

    /// Map a descriptor someone handed us, after checking that it is a memfd
    /// carrying every seal in `memfd::REQUIRED_SEALS` (so its size can never
    /// change under the mapping) and big enough for a header. Owner and mode
    /// are not checked: holding the descriptor is the permission.
    pub(crate) fn open_fd(fd: OwnedFd, opts: &SegmentOptions) -> Result<Segment, Error> {
        let name = crate::sys::memfd::SEGMENT_NAME;
        crate::sys::memfd::check_seals(fd.as_fd())?;
        if !shm::is_read_write(fd.as_fd())? {
            return Err(Error::PermissionDenied {
                name: name.into(),
                detail: "the descriptor is not open read-write; pass one from the queue's \
                         dup_fd(), not a read-only reopen"
                    .into(),
            });
        }
        let st = shm::fstat(fd.as_fd())?;
        if !shm::is_regular(&st) {
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
        if !shm::is_hugetlbfs(self.fd.as_fd())? {
            return Ok(1);
        }
        let st = shm::fstat(self.fd.as_fd())?;
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
        shm::fstat(self.fd.as_fd()).map(|st| st.st_size as u64)
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
    shm::unlink(name)
}

/// Unlinks a half-created object if creation fails part-way.
struct UnlinkOnDrop(Option<String>);

impl UnlinkOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            let _ = shm::unlink(&n);
        }
    }
}
