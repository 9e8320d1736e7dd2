//! Read-only inspection of segments, stale-segment detection, and careful
//! removal: the library half of `shmq ls`, `shmq stat` and `shmq rm`.
//!
//! * [`inspect`] describes one name in `/dev/shm`, whatever it is: a healthy
//!   queue, a corrupt one, one of unknown kind, or a file that is not a
//!   shmqueue segment at all. Everything it reports from the header is
//!   untrusted data, shown as found; each header check has its own
//!   [`Check`] entry, so a bad segment is *described*, not an error.
//! * [`list`] describes every shmqueue segment in `/dev/shm`, skipping
//!   anything else (wrong magic, too small, not a regular file, symlinks,
//!   files this user may not read).
//! * [`remove`] unlinks one segment, refusing files that are not shmqueue
//!   segments always, and segments in use unless forced.
//!
//! Inspection never attaches an endpoint and never writes the segment: it
//! opens the file read-only with `O_NOFOLLOW | O_NONBLOCK`, reads the header
//! and registry with `pread` (a snapshot; no mapping, so a concurrent
//! truncation cannot raise SIGBUS here), and probes the liveness locks with
//! `F_OFD_GETLK`.
//!
//! # Staleness
//!
//! A segment is **stale** when no process has it open through shmqueue.
//! Every handle ([`crate::Spsc`], [`crate::Mpmc`], …) holds a shared OFD lock
//! on a dedicated byte of the segment file from just after `shm_open` until
//! it is dropped, and every endpoint holds a write lock on its registry
//! entry's byte (byte assignment in `liveness.rs`). The kernel drops them when
//! the holder exits, SIGKILL included, and pid reuse cannot fool them.
//! [`SegmentInfo::stale`] is true when
//!
//! 1. the magic number matches and the layout version is one this build
//!    knows (other versions may not follow this locking protocol), and
//! 2. *after* the header was read, no other open file description holds any
//!    lock on any byte of the file (one whole-file `F_OFD_GETLK` probe).
//!
//! The order matters: a creator takes its handle lock before it writes the
//! header, so a valid magic number proves its writer held a lock at the time;
//! a segment in its creator's init window is either not yet a shmqueue
//! segment (no magic: never stale, never removed) or locked.
//! A segment whose creator died before finishing (`init` not READY) is stale
//! once nobody holds it; a zero-length file left by a creator that died
//! before sizing it is not recognisable and is left alone.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};

use crate::error::Role;
use crate::header::{
    EndpointEntry, Events, Geometry, Header, Identity, QueueKind, CLAIM_ACTIVE, HEADER_SIZE,
    INIT_READY, LAYOUT_VERSION, MAGIC, MAX_ENDPOINTS, REGISTRY_OFFSET, STATUS_ATTACHED,
    STATUS_DETACHED, STATUS_MASK, STATUS_VACANT,
};
use crate::{liveness, validate_name, Error};

/// Where POSIX shared-memory objects live on Linux (glibc maps
/// `shm_open("/name")` to `/dev/shm/name`).
pub const SHM_DIR: &str = "/dev/shm";

/// The result of one header check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed.
    Pass,
    /// The check failed; [`Check::detail`] says what was found.
    Fail,
    /// Not checked: an earlier check failed, or this build cannot interpret
    /// the field (unknown queue kind).
    Skipped,
}

/// One validation check of a segment (file type, magic, layout version, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Which check, e.g. `"magic"` or `"geometry"`; see [`CHECKS`].
    pub name: &'static str,
    /// Whether it passed.
    pub outcome: Outcome,
    /// What was found, in words.
    pub detail: String,
}

/// The names of the checks [`inspect`] runs, in order. Every
/// [`SegmentInfo::checks`] holds exactly these, in this order.
pub const CHECKS: [&str; 11] = [
    "file type",
    "readable",
    "header size",
    "magic",
    "layout version",
    "init",
    "queue kind",
    "registry",
    "geometry",
    "file size",
    "indices",
];

/// An endpoint's status word, as recorded in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointStatus {
    /// Never attached.
    Vacant,
    /// Attached (its holder may have died since: see [`EndpointInfo::alive`]).
    Attached,
    /// Detached cleanly, or reaped after its holder died.
    Detached,
    /// The status bits hold a value no endpoint writes.
    Invalid,
}

/// One registry entry, as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Registry index (also the byte its liveness lock is on).
    pub index: u32,
    /// The role this entry serves.
    pub role: Role,
    /// The recorded status.
    pub status: EndpointStatus,
    /// The generation, bumped on every attach.
    pub generation: u32,
    /// The pid the last holder recorded (informational; may be stale or reused).
    pub pid: u32,
    /// Whether a live process holds the entry's liveness token. An entry
    /// `Attached` but not alive belonged to a process that died.
    pub alive: bool,
    /// MPMC: the position the endpoint is claiming, if any.
    pub claim: Option<u64>,
    /// Broadcast subscribers: the next position it reads (for a detached
    /// entry, the last one it had; `None` for a never-attached one).
    pub cursor: Option<u64>,
    /// Broadcast subscribers recorded as attached (alive or dead): items
    /// published that it has not read ([`SegmentInfo::published`] minus the
    /// cursor). `None` when either is not known, or the cursor is past the
    /// publisher (a value shmqueue never writes; the cursor is still shown
    /// as found).
    pub lag: Option<u64>,
    /// Broadcast subscribers: evicted by the publisher and not yet told.
    pub evicted: bool,
}

/// What an endpoint's registry entry and liveness token say about it
/// ([`EndpointInfo::liveness`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// A live process holds the entry's liveness token.
    Alive,
    /// Recorded as attached, but nobody holds the token: its holder died
    /// and nobody has reaped the entry yet.
    Dead,
    /// Not held: never attached, detached cleanly, or reaped.
    Free,
}

impl Liveness {
    /// `"alive"`, `"dead"` or `"free"`.
    pub fn label(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Dead => "dead",
            Liveness::Free => "free",
        }
    }
}

impl EndpointInfo {
    /// Alive, dead (attached, token free) or free.
    pub fn liveness(&self) -> Liveness {
        match (self.alive, self.status) {
            (true, _) => Liveness::Alive,
            (false, EndpointStatus::Attached) => Liveness::Dead,
            (false, _) => Liveness::Free,
        }
    }
}

/// The state of the header's `init` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitState {
    /// The creator finished writing the header.
    Ready,
    /// Zero: the creator is still writing it, or died doing so.
    Uninitialised,
    /// Neither: not written by shmqueue.
    Invalid(u32),
}

/// What [`inspect`] found under one name. Header values are untrusted and
/// reported as read; `None` means "not read" (no header, or a layout version
/// this build cannot interpret).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The shared-memory name (`/name`).
    pub name: String,
    /// File size in bytes.
    pub size: u64,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Whether this is a shmqueue segment at all: a readable regular file,
    /// large enough for a header, with the right magic number.
    pub shmqueue: bool,
    /// Layout version.
    pub version: Option<u32>,
    /// Raw queue kind (1 SPSC, 2 MPMC, 3 byte ring, 4 broadcast; others unknown to this
    /// build, see [`SegmentInfo::queue_kind`] and [`QueueKind::ALL`]).
    pub kind: Option<u32>,
    /// Element size in bytes.
    pub elem_size: Option<u64>,
    /// Element alignment in bytes.
    pub elem_align: Option<u64>,
    /// Capacity in items.
    pub capacity: Option<u64>,
    /// Schema tag.
    pub schema: Option<u64>,
    /// Pid of the creator (informational).
    pub creator_pid: Option<u32>,
    /// The init word.
    pub init: Option<InitState>,
    /// Items in the queue, from the head and tail indices (broadcast: the
    /// items the ring holds); `None` unless the geometry and the indices
    /// are valid.
    pub fill: Option<u64>,
    /// Broadcast: lossless or overwrite.
    pub policy: Option<crate::broadcast::Policy>,
    /// Broadcast: items published so far (the publisher's next position).
    pub published: Option<u64>,
    /// Broadcast, lossless: how long a subscriber may keep the ring full
    /// before the publisher evicts it; `None` when not set (or not a
    /// lossless broadcast ring).
    pub max_lag: Option<std::time::Duration>,
    /// Broadcast: subscribers evicted for lagging past `max_lag` (a counter
    /// in the header; as found).
    pub evictions: Option<u64>,
    /// Broadcast: times a subscriber found itself lapped (overwrite) or
    /// evicted (a counter in the header; as found).
    pub laps: Option<u64>,
    /// The registry entries (empty if the registry could not be read).
    pub endpoints: Vec<EndpointInfo>,
    /// Whether some process holds a handle on it (has it open through
    /// shmqueue).
    pub in_use: bool,
    /// Whether anyone holds any lock on the file (a handle, an endpoint, a
    /// remover). Decides [`SegmentInfo::stale`].
    pub locked: bool,
    /// A shmqueue segment of a known layout version that no process has open
    /// through shmqueue (see the [module docs](self)).
    pub stale: bool,
    /// Every check in [`CHECKS`], in order.
    pub checks: Vec<Check>,
}

impl SegmentInfo {
    /// The queue kind, if this build knows it.
    pub fn queue_kind(&self) -> Option<QueueKind> {
        self.kind.and_then(known_kind)
    }

    /// The kind for display: `"spsc"`, `"mpmc"`, `"bytes"`, `"broadcast"`
    /// ([`QueueKind::label`]), the number for kinds this build does not
    /// know, `"-"` when not read.
    pub fn kind_label(&self) -> String {
        match (self.queue_kind(), self.kind) {
            (Some(k), _) => k.label().into(),
            (None, Some(k)) => k.to_string(),
            (None, None) => "-".into(),
        }
    }

    /// Entries whose holder is alive.
    pub fn endpoints_alive(&self) -> usize {
        self.endpoints.iter().filter(|e| e.alive).count()
    }

    /// Entries recorded as attached (alive or not).
    pub fn endpoints_attached(&self) -> usize {
        self.endpoints
            .iter()
            .filter(|e| e.status == EndpointStatus::Attached)
            .count()
    }

    /// The first failed check, if any.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.outcome == Outcome::Fail)
    }

    /// The check named `name` (one of [`CHECKS`]).
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// The kinds this module can describe: every kind the header knows (one
/// list, [`QueueKind::ALL`], so a new kind cannot be forgotten here).
fn known_kind(k: u32) -> Option<QueueKind> {
    QueueKind::from_raw(k)
}

fn path_of(name: &str) -> String {
    // validate_name guarantees one leading '/' and no other.
    format!("{SHM_DIR}{name}")
}

fn io(op: &'static str, source: io::Error) -> Error {
    Error::Io { op, source }
}

/// Describe the object named `name` (e.g. `"/orders"`) in `/dev/shm`,
/// read-only. Files that are not shmqueue segments are described too, with
/// [`SegmentInfo::shmqueue`] false and the failed check saying why.
///
/// Errors: [`Error::InvalidName`], [`Error::NotFound`], [`Error::Io`] for
/// unexpected system-call failures.
///
/// ```
/// use shmqueue::{inspect, Spsc};
/// # let name = format!("/doc-inspect-{}", std::process::id());
/// let q = Spsc::<u64>::create(&name, 8)?;
/// let mut tx = q.producer()?;
/// tx.push(1)?;
/// let info = inspect(&name)?;
/// assert!(info.shmqueue && info.in_use && !info.stale);
/// assert_eq!(info.kind_label(), "spsc");
/// assert_eq!((info.capacity, info.fill), (Some(8), Some(1)));
/// assert_eq!(info.endpoints_alive(), 1);
/// drop((tx, q));
/// assert!(inspect(&name)?.stale); // nobody has it open any more
/// shmqueue::unlink(&name)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inspect(name: &str) -> Result<SegmentInfo, Error> {
    inspect_opened(name, false).map(|(info, _)| info)
}

/// Every shmqueue segment in `/dev/shm` this user can read, sorted by name.
/// Everything else (other files, symlinks, directories, unreadable files,
/// names that vanish while listing) is skipped.
///
/// ```
/// # let name = format!("/doc-list-{}", std::process::id());
/// let q = shmqueue::Mpmc::<u32>::create(&name, 4)?;
/// assert!(shmqueue::list()?.iter().any(|s| s.name == name));
/// # shmqueue::unlink(&name)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn list() -> Result<Vec<SegmentInfo>, Error> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| io("read_dir(/dev/shm)", e))?;
    let mut out = Vec::new();
    for entry in dir {
        let Ok(entry) = entry else { continue };
        // Symlinks, directories and the like are never segments.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Some(file) = entry.file_name().to_str().map(|s| format!("/{s}")) else {
            continue;
        };
        if validate_name(&file).is_err() {
            continue;
        }
        match inspect(&file) {
            Ok(info) if info.shmqueue => out.push(info),
            _ => {}
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Why [`remove`] left a name alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a shmqueue segment (see the failed check). Never removed.
    NotShmqueue,
    /// This user cannot read it, so it cannot be verified to be a shmqueue
    /// segment. Never removed.
    Unreadable,
    /// Some process has it open or holds an endpoint (or held a lock at the
    /// moment of removal). Removed only when forced.
    InUse,
    /// A layout version this build does not know: it cannot tell whether the
    /// segment is in use. Removed only when forced.
    UnknownLayout,
}

/// What [`remove`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Unlinked; the description is as found just before.
    Removed(SegmentInfo),
    /// Left alone, and why.
    Refused(SegmentInfo, Refusal),
}

/// Remove the shmqueue segment `name`, if it is one, and, unless `force`,
/// only if it is stale.
///
/// A file that is not a shmqueue segment (wrong magic, symlink, too small…)
/// is never removed, forced or not. Without `force`, the segment is locked
/// as a whole (an OFD write lock, which fails while any handle or endpoint
/// holds its lock), its header re-read under that lock, and unlinked while
/// the lock is held: a process that opens it meanwhile waits for the lock
/// and then finds it gone (`NotFound`), rather than using an unlinked
/// segment. (If this user may only read the file, the lock is replaced by a
/// probe, which leaves a small window.) Processes that have it mapped when
/// it is forced away keep using it; new `open`s fail.
///
/// ```
/// use shmqueue::inspect::{remove, Removal, Refusal};
/// # let name = format!("/doc-remove-{}", std::process::id());
/// let q = shmqueue::Spsc::<u64>::create(&name, 8)?;
/// assert!(matches!(remove(&name, false)?, Removal::Refused(_, Refusal::InUse)));
/// drop(q);
/// assert!(matches!(remove(&name, false)?, Removal::Removed(_)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn remove(name: &str, force: bool) -> Result<Removal, Error> {
    let (info, file) = inspect_opened(name, true)?;
    let Some((file, writable)) = file.filter(|_| info.shmqueue) else {
        let why = if info.check("readable").map(|c| c.outcome) == Some(Outcome::Fail) {
            Refusal::Unreadable
        } else {
            Refusal::NotShmqueue
        };
        return Ok(Removal::Refused(info, why));
    };
    let info = if force {
        info
    } else {
        if writable && !liveness::lock_whole_file(file.as_fd())? {
            return Ok(Removal::Refused(info, Refusal::InUse));
        }
        // Under the lock (when writable) nothing can start using it; look again.
        let meta = file.metadata().map_err(|e| io("fstat", e))?;
        let info = describe(name, &meta, Some(&file));
        if !info.shmqueue {
            return Ok(Removal::Refused(info, Refusal::NotShmqueue));
        }
        if !info.stale {
            let why = if info.version == Some(LAYOUT_VERSION) {
                Refusal::InUse
            } else {
                Refusal::UnknownLayout
            };
            return Ok(Removal::Refused(info, why));
        }
        info
    };
    // The name must still be the file we checked.
    let ours = file.metadata().map_err(|e| io("fstat", e))?;
    match std::fs::symlink_metadata(path_of(name)) {
        Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {}
        Ok(_) => {
            return Err(Error::Foreign {
                name: name.into(),
                detail: "the name was replaced while it was being removed".into(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotFound { name: name.into() })
        }
        Err(e) => return Err(io("lstat", e)),
    }
    crate::unlink(name)?;
    drop(file); // releases the lock
    Ok(Removal::Removed(info))
}

/// Open and describe `name`. With `writable`, try read-write first (for
/// [`remove`]'s lock), falling back to read-only. Returns the open file when
/// it is a regular file, with whether it is writable.
#[allow(clippy::type_complexity)]
fn inspect_opened(
    name: &str,
    writable: bool,
) -> Result<(SegmentInfo, Option<(File, bool)>), Error> {
    validate_name(name)?;
    let path = path_of(name);
    let lmeta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotFound { name: name.into() })
        }
        Err(e) => return Err(io("lstat", e)),
    };
    if !lmeta.file_type().is_file() {
        return Ok((describe(name, &lmeta, None), None));
    }
    let open = |write: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
    };
    let opened = match writable.then(|| open(true)) {
        Some(Ok(f)) => Ok((f, true)),
        _ => open(false).map(|f| (f, false)),
    };
    match opened {
        Ok((file, w)) => {
            let meta = file.metadata().map_err(|e| io("fstat", e))?;
            let info = describe(name, &meta, Some(&file));
            Ok((info, Some((file, w))))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound { name: name.into() }),
        // Replaced by a symlink or something else between lstat and open,
        // or not ours to read: describe what lstat saw.
        Err(e) => {
            let mut info = describe(name, &lmeta, None);
            if let Some(c) = info.checks.iter_mut().find(|c| c.name == "readable") {
                c.outcome = Outcome::Fail;
                c.detail = format!("cannot open it read-only: {e}");
            }
            Ok((info, None))
        }
    }
}

fn file_type_name(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link (never followed)"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device node"
    } else if t.is_file() {
        "a regular file"
    } else {
        "an unknown file type"
    }
}

/// Accumulates the checks in [`CHECKS`] order.
struct Checks(Vec<Check>);

impl Checks {
    fn set(&mut self, name: &'static str, outcome: Outcome, detail: impl Into<String>) {
        debug_assert!(CHECKS.contains(&name));
        self.0.push(Check {
            name,
            outcome,
            detail: detail.into(),
        });
    }
    fn pass(&mut self, name: &'static str, detail: impl Into<String>) -> bool {
        self.set(name, Outcome::Pass, detail);
        true
    }
    fn fail(&mut self, name: &'static str, detail: impl Into<String>) -> bool {
        self.set(name, Outcome::Fail, detail);
        false
    }
    /// Fill the checks not run yet as skipped, and return them in order.
    fn finish(mut self) -> Vec<Check> {
        let mut out = Vec::with_capacity(CHECKS.len());
        for name in CHECKS {
            match self.0.iter().position(|c| c.name == name) {
                Some(i) => out.push(self.0.swap_remove(i)),
                None => out.push(Check {
                    name,
                    outcome: Outcome::Skipped,
                    detail: "not checked: an earlier check failed".into(),
                }),
            }
        }
        out
    }
}

fn ne_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn ne_u64(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

macro_rules! id_u32 {
    ($b:expr, $f:ident) => {
        ne_u32($b, core::mem::offset_of!(Identity, $f))
    };
}
macro_rules! id_u64 {
    ($b:expr, $f:ident) => {
        ne_u64($b, core::mem::offset_of!(Identity, $f))
    };
}

/// Describe a file from its metadata and, if it could be opened, its bytes
/// and locks. Never fails: anything unexpected becomes a failed check.
fn describe(name: &str, meta: &Metadata, file: Option<&File>) -> SegmentInfo {
    let mut info = SegmentInfo {
        name: name.into(),
        size: meta.len(),
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
        shmqueue: false,
        version: None,
        kind: None,
        elem_size: None,
        elem_align: None,
        capacity: None,
        schema: None,
        creator_pid: None,
        init: None,
        fill: None,
        policy: None,
        published: None,
        max_lag: None,
        evictions: None,
        laps: None,
        endpoints: Vec::new(),
        in_use: false,
        locked: false,
        stale: false,
        checks: Vec::new(),
    };
    let mut checks = Checks(Vec::new());
    if let Some(file) = file.filter(|_| meta.file_type().is_file()) {
        read_header(&mut info, &mut checks, file, meta);
        // Only now that the header has been read (see the module docs for
        // why the order matters).
        probe_locks(&mut info, file);
    } else if meta.file_type().is_file() {
        checks.pass("file type", "a regular file");
    } else {
        checks.fail("file type", file_type_name(meta));
    }
    info.checks = checks.finish();
    info
}

fn read_header(info: &mut SegmentInfo, checks: &mut Checks, file: &File, meta: &Metadata) {
    checks.pass("file type", "a regular file");
    checks.pass("readable", "opened read-only");
    let mut b = [0u8; HEADER_SIZE];
    if meta.len() < HEADER_SIZE as u64 {
        checks.fail(
            "header size",
            format!("{} bytes, a header needs {HEADER_SIZE}", meta.len()),
        );
        return;
    }
    if let Err(e) = file.read_exact_at(&mut b, 0) {
        checks.fail(
            "header size",
            format!("cannot read {HEADER_SIZE} bytes: {e}"),
        );
        return;
    }
    checks.pass("header size", format!("{} bytes", meta.len()));
    let magic = id_u64!(&b, magic);
    if magic != MAGIC {
        checks.fail("magic", format!("{magic:#018x}, not \"SHMQUEUE\""));
        return;
    }
    checks.pass("magic", "\"SHMQUEUE\"");
    info.shmqueue = true;
    let version = id_u32!(&b, version);
    info.version = Some(version);
    if version != LAYOUT_VERSION {
        checks.fail(
            "layout version",
            format!("{version}; this build reads version {LAYOUT_VERSION} only"),
        );
        return;
    }
    checks.pass("layout version", version.to_string());

    let init = id_u32!(&b, init);
    info.init = Some(match init {
        INIT_READY => {
            checks.pass("init", "ready");
            InitState::Ready
        }
        0 => {
            checks.fail(
                "init",
                "not initialised: the creator is still writing it, or died doing so",
            );
            InitState::Uninitialised
        }
        v => {
            checks.fail("init", format!("{v:#x} is neither 0 nor READY"));
            InitState::Invalid(v)
        }
    });
    let kind = id_u32!(&b, kind);
    info.kind = Some(kind);
    info.elem_size = Some(id_u64!(&b, elem_size));
    info.elem_align = Some(id_u64!(&b, elem_align));
    info.capacity = Some(id_u64!(&b, capacity));
    info.schema = Some(id_u64!(&b, schema));
    info.creator_pid = Some(id_u32!(&b, creator_pid));
    let known = known_kind(kind);
    match known {
        Some(k) => checks.pass("queue kind", format!("{kind} ({k:?})")),
        None => checks.fail(
            "queue kind",
            format!("{kind}, unknown to this build (made by a newer shmqueue?)"),
        ),
    };

    // The registry: where it is does not depend on the kind.
    let endpoints = id_u32!(&b, endpoints);
    let producers = id_u32!(&b, producer_entries);
    let entry_size = core::mem::size_of::<EndpointEntry>() as u64;
    let registry_end = REGISTRY_OFFSET as u64 + entry_size * u64::from(endpoints);
    let registry_ok = if producers == 0 || producers >= endpoints || endpoints > 2 * MAX_ENDPOINTS {
        checks.fail(
            "registry",
            format!("{endpoints} entries, {producers} of them producers: implausible"),
        )
    } else if matches!(known, Some(QueueKind::Spsc | QueueKind::Bytes))
        && (producers, endpoints) != (1, 2)
    {
        checks.fail(
            "registry",
            format!("{endpoints} entries ({producers} producers); an SPSC ring has 1 + 1"),
        )
    } else if registry_end > meta.len() {
        checks.fail(
            "registry",
            format!("{endpoints} entries end at byte {registry_end}, past the end of the file"),
        )
    } else {
        checks.pass(
            "registry",
            format!(
                "{endpoints} entries: {producers} producer, {} consumer",
                endpoints - producers
            ),
        )
    };
    let mut registry = vec![
        0u8;
        if registry_ok {
            (registry_end as usize) - REGISTRY_OFFSET
        } else {
            0
        }
    ];
    let registry_ok = registry_ok
        && match file.read_exact_at(&mut registry, REGISTRY_OFFSET as u64) {
            Ok(()) => true,
            Err(e) => {
                checks.0.pop();
                checks.fail("registry", format!("cannot read it: {e}"))
            }
        };

    // Geometry, recomputed from the primary fields, against the stored
    // derived ones.
    let total_size = id_u64!(&b, total_size);
    let geometry = match known {
        Some(k) if registry_ok => check_geometry(checks, &b, k, producers, endpoints),
        Some(_) => {
            checks.set("geometry", Outcome::Skipped, "registry implausible");
            None
        }
        None => {
            checks.set("geometry", Outcome::Skipped, "unknown queue kind");
            None
        }
    };
    if total_size == meta.len() {
        checks.pass("file size", format!("{total_size} bytes, as recorded"));
    } else {
        checks.fail(
            "file size",
            format!(
                "the file is {} bytes, the header says {total_size}",
                meta.len()
            ),
        );
    }
    if let Some(g) = geometry.filter(|g| g.total_size as u64 == meta.len()) {
        let head = ne_u64(&b, core::mem::offset_of!(Header, head));
        let tail = ne_u64(&b, core::mem::offset_of!(Header, tail));
        match fill(&g, head, tail) {
            Ok(None) => checks.set(
                "indices",
                Outcome::Skipped,
                format!("head {head}, tail {tail}: not interpreted for this kind"),
            ),
            Ok(Some(n)) => {
                info.fill = Some(n);
                if g.kind == QueueKind::Broadcast {
                    let policy = crate::broadcast::policy_of(&g);
                    info.published = Some(head);
                    info.policy = Some(policy);
                    // Read by the library only for lossless rings.
                    let lag_ns = id_u64!(&b, max_lag_ns);
                    info.max_lag = (policy == crate::broadcast::Policy::Lossless && lag_ns != 0)
                        .then(|| std::time::Duration::from_nanos(lag_ns));
                    let events = core::mem::offset_of!(Header, events);
                    info.evictions =
                        Some(ne_u64(&b, events + core::mem::offset_of!(Events, holes)));
                    info.laps = Some(ne_u64(&b, events + core::mem::offset_of!(Events, releases)));
                }
                checks.pass("indices", format!("head {head}, tail {tail}: {n} items"));
            }
            Err(why) => {
                checks.fail("indices", format!("head {head}, tail {tail}: {why}"));
            }
        }
    }

    // Endpoint liveness, probed after the header was read.
    if registry_ok {
        for i in 0..endpoints {
            let e = &registry[(i as usize) * entry_size as usize..];
            let state = ne_u32(e, core::mem::offset_of!(EndpointEntry, state));
            let claim = ne_u64(e, core::mem::offset_of!(EndpointEntry, claim));
            let subscriber = known == Some(QueueKind::Broadcast) && i >= producers;
            let status = match state & STATUS_MASK {
                STATUS_VACANT => EndpointStatus::Vacant,
                STATUS_ATTACHED => EndpointStatus::Attached,
                STATUS_DETACHED => EndpointStatus::Detached,
                _ => EndpointStatus::Invalid,
            };
            info.endpoints.push(EndpointInfo {
                index: i,
                role: if i < producers {
                    Role::Producer
                } else {
                    Role::Consumer
                },
                status,
                generation: state >> 2,
                pid: ne_u32(e, core::mem::offset_of!(EndpointEntry, pid)),
                // A failed probe is reported as "alive": never call a
                // segment dead on an error.
                alive: liveness::is_held(file.as_fd(), i).unwrap_or(true),
                claim: (known == Some(QueueKind::Mpmc) && claim & CLAIM_ACTIVE != 0)
                    .then_some(claim & !CLAIM_ACTIVE),
                cursor: (subscriber && status != EndpointStatus::Vacant).then_some(claim),
                // Only from a validated head, and only for a cursor at or
                // below it: shmqueue never stores one past the publisher.
                lag: match info.published {
                    Some(head) if subscriber && status == EndpointStatus::Attached => {
                        head.checked_sub(claim)
                    }
                    _ => None,
                },
                evicted: known == Some(QueueKind::Broadcast)
                    && ne_u64(e, core::mem::offset_of!(EndpointEntry, mark)) != 0,
            });
        }
    }
}

/// Handle and whole-file lock probes, and the stale verdict.
fn probe_locks(info: &mut SegmentInfo, file: &File) {
    info.in_use = liveness::handle_held(file.as_fd()).unwrap_or(true);
    info.locked = liveness::any_lock_held(file.as_fd()).unwrap_or(true);
    info.stale = info.shmqueue && info.version == Some(LAYOUT_VERSION) && !info.locked;
}

/// Recompute the geometry from the header's primary fields and compare the
/// stored derived ones; record the "geometry" check.
fn check_geometry(
    checks: &mut Checks,
    b: &[u8],
    kind: QueueKind,
    producers: u32,
    endpoints: u32,
) -> Option<Geometry> {
    let elem_size = id_u64!(b, elem_size);
    let elem_align = id_u64!(b, elem_align);
    let capacity = id_u64!(b, capacity);
    let flags = id_u32!(b, flags);
    let known_flags = crate::header::known_flags(kind);
    if flags & !known_flags != 0 {
        checks.fail("geometry", format!("unknown layout flags {flags:#x}"));
        return None;
    }
    let max_lag = id_u64!(b, max_lag_ns);
    if kind != QueueKind::Broadcast && max_lag != 0 {
        checks.fail(
            "geometry",
            format!("max lag {max_lag} ns on a ring that is not broadcast"),
        );
        return None;
    }
    let (Ok(size), Ok(align), Ok(cap)) = (
        usize::try_from(elem_size),
        usize::try_from(elem_align),
        usize::try_from(capacity),
    ) else {
        checks.fail("geometry", "element size, alignment or capacity overflows");
        return None;
    };
    let g = match Geometry::compute(
        kind,
        size,
        align,
        cap,
        producers,
        endpoints - producers,
        id_u64!(b, schema),
        flags,
    ) {
        Ok(g) => g,
        Err(e) => {
            checks.fail("geometry", format!("impossible parameters: {e}"));
            return None;
        }
    };
    let mut bad = Vec::new();
    for (what, found, want) in [
        ("buffer size", id_u64!(b, buffer_size), g.buffer_size),
        ("total size", id_u64!(b, total_size), g.total_size),
        ("slots offset", id_u64!(b, slots_offset), g.slots_offset),
        ("slot stride", id_u64!(b, slot_stride), g.slot_stride),
    ] {
        if found != want as u64 {
            bad.push(format!("{what} {found} (expected {want})"));
        }
    }
    if bad.is_empty() {
        checks.pass(
            "geometry",
            format!(
                "consistent: {} slots of {} bytes from byte {}",
                g.buffer_size, g.slot_stride, g.slots_offset
            ),
        );
        Some(g)
    } else {
        checks.fail("geometry", bad.join(", "));
        None
    }
}

/// Items in the queue, from untrusted indices (`None`: a kind whose
/// indices this module does not interpret).
fn fill(g: &Geometry, head: u64, tail: u64) -> Result<Option<u64>, String> {
    if g.kind == QueueKind::Spsc {
        // Indices in [0, capacity + 1); one slot always empty.
        let b = g.buffer_size as u64;
        if head >= b || tail >= b {
            return Err(format!("an index is not below the {b} slots"));
        }
        Ok(Some(if head >= tail {
            head - tail
        } else {
            head + b - tail
        }))
    } else if g.kind == QueueKind::Broadcast {
        // One position; the ring holds the newest `capacity` items.
        if head > crate::header::mpmc_seq::MAX_POSITION {
            return Err(format!(
                "head is above {}",
                crate::header::mpmc_seq::MAX_POSITION
            ));
        }
        Ok(Some(head.min(g.capacity as u64)))
    } else if g.kind == QueueKind::Mpmc || g.kind == QueueKind::Bytes {
        // Monotonic positions (byte ring: byte positions); at most
        // `capacity` apart.
        match head.checked_sub(tail) {
            Some(n) if n <= g.capacity as u64 => Ok(Some(n)),
            _ => Err(format!(
                "head - tail is not within 0..={} (the capacity)",
                g.capacity
            )),
        }
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mpmc, Spsc};
    use std::os::unix::fs::FileExt;

    struct Name(String);
    impl Name {
        fn new(tag: &str) -> Name {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            Name(format!("/shmq-inspect-{}-{tag}-{n}", std::process::id()))
        }
    }
    impl Drop for Name {
        fn drop(&mut self) {
            let _ = crate::unlink(&self.0);
        }
    }

    fn outcome(info: &SegmentInfo, check: &str) -> Outcome {
        info.check(check).unwrap().outcome
    }

    #[test]
    fn a_healthy_ring_passes_every_check() {
        let n = Name::new("healthy");
        let q = Spsc::<u64>::create(&n.0, 5).unwrap();
        let mut tx = q.producer().unwrap();
        for i in 0..4 {
            tx.push(i).unwrap();
        }
        let rx = q.consumer().unwrap();
        let info = inspect(&n.0).unwrap();
        assert_eq!(info.checks.len(), CHECKS.len());
        assert!(info.first_failure().is_none(), "{:?}", info.checks);
        assert_eq!(info.fill, Some(4));
        assert_eq!((info.endpoints_alive(), info.endpoints_attached()), (2, 2));
        assert_eq!(info.endpoints[0].role, Role::Producer);
        assert!(info.in_use && info.locked && !info.stale);
        drop(tx);
        let info = inspect(&n.0).unwrap();
        assert_eq!(info.endpoints[0].status, EndpointStatus::Detached);
        assert!(!info.endpoints[0].alive && info.endpoints[1].alive);
        drop((rx, q));
        let info = inspect(&n.0).unwrap();
        assert!(!info.in_use && !info.locked && info.stale);
        assert_eq!(info.fill, Some(4));
    }

    #[test]
    fn every_kind_is_described_with_its_label_and_checks() {
        let n = Name::new("kinds");
        for &kind in QueueKind::ALL {
            let handle: Box<dyn std::any::Any> = match kind {
                QueueKind::Spsc => Box::new(Spsc::<u64>::create(&n.0, 8).unwrap()),
                QueueKind::Mpmc => Box::new(Mpmc::<u64>::create(&n.0, 8).unwrap()),
                QueueKind::Bytes => Box::new(crate::ByteRing::create(&n.0, 256).unwrap()),
                QueueKind::Broadcast => Box::new(crate::Broadcast::<u64>::create(&n.0, 8).unwrap()),
            };
            let info = inspect(&n.0).unwrap();
            assert_eq!(info.queue_kind(), Some(kind));
            assert_eq!(info.kind_label(), kind.label());
            assert!(
                info.first_failure().is_none(),
                "{kind:?}: {:?}",
                info.checks
            );
            assert_eq!(info.fill, Some(0), "{kind:?}");
            drop(handle);
            crate::unlink(&n.0).unwrap();
        }
    }

    #[test]
    fn a_broadcast_ring_shows_policy_lag_and_each_subscriber() {
        use crate::broadcast::{Broadcast, Policy, Start};
        use std::time::Duration;
        let n = Name::new("bcast");
        let q = Broadcast::<u64>::builder()
            .capacity(8)
            .max_subscribers(4)
            .max_lag(Duration::from_millis(250))
            .create(&n.0)
            .unwrap();
        let mut tx = q.publisher().unwrap();
        let mut fast = q.subscribe(Start::Latest).unwrap();
        let slow = q.subscribe(Start::Latest).unwrap();
        for i in 0..5 {
            tx.publish(i).unwrap();
        }
        for _ in 0..3 {
            fast.recv().unwrap();
        }
        let gone = q.subscribe(Start::Oldest).unwrap();
        drop(gone);
        let info = inspect(&n.0).unwrap();
        assert!(info.first_failure().is_none(), "{:?}", info.checks);
        assert_eq!(info.policy, Some(Policy::Lossless));
        assert_eq!(info.max_lag, Some(Duration::from_millis(250)));
        assert_eq!((info.published, info.fill), (Some(5), Some(5)));
        assert_eq!((info.evictions, info.laps), (Some(0), Some(0)));
        assert_eq!(info.endpoints.len(), 5, "publisher + 4 subscriber slots");
        let p = &info.endpoints[0];
        assert_eq!((p.role, p.liveness()), (Role::Producer, Liveness::Alive));
        assert_eq!((p.cursor, p.lag), (None, None));
        let s: Vec<_> = info.endpoints[1..]
            .iter()
            .map(|e| (e.liveness(), e.cursor, e.lag, e.evicted))
            .collect();
        assert_eq!(
            s,
            [
                (Liveness::Alive, Some(3), Some(2), false),
                (Liveness::Alive, Some(0), Some(5), false),
                (Liveness::Free, Some(0), None, false),
                (Liveness::Free, None, None, false),
            ]
        );
        assert_eq!(info.endpoints[3].status, EndpointStatus::Detached);

        // A cursor past the publisher is shown as found, without a lag.
        let f = OpenOptions::new().write(true).open(path_of(&n.0)).unwrap();
        let entry = REGISTRY_OFFSET + 2 * core::mem::size_of::<EndpointEntry>();
        f.write_all_at(
            &99u64.to_ne_bytes(),
            (entry + core::mem::offset_of!(EndpointEntry, claim)) as u64,
        )
        .unwrap();
        let info = inspect(&n.0).unwrap();
        assert_eq!(
            (info.endpoints[2].cursor, info.endpoints[2].lag),
            (Some(99), None)
        );
        drop((tx, fast, slow, q));

        // Overwrite rings have no max_lag; other kinds none of these fields.
        let o = Name::new("bcast-ow");
        let q = Broadcast::<u64>::builder()
            .overwrite()
            .create(&o.0)
            .unwrap();
        let info = inspect(&o.0).unwrap();
        assert_eq!((info.policy, info.max_lag), (Some(Policy::Overwrite), None));
        drop(q);
        let m = Name::new("bcast-mpmc");
        let q = Mpmc::<u64>::create(&m.0, 4).unwrap();
        let info = inspect(&m.0).unwrap();
        assert_eq!((info.policy, info.published, info.laps), (None, None, None));
        // A max lag is a broadcast field: elsewhere it fails the geometry.
        f_write(&m.0, core::mem::offset_of!(Identity, max_lag_ns), 5);
        assert_eq!(outcome(&inspect(&m.0).unwrap(), "geometry"), Outcome::Fail);
        drop(q);
    }

    fn f_write(name: &str, at: usize, v: u64) {
        OpenOptions::new()
            .write(true)
            .open(path_of(name))
            .unwrap()
            .write_all_at(&v.to_ne_bytes(), at as u64)
            .unwrap();
    }

    #[test]
    fn a_handle_without_endpoints_keeps_it_live() {
        let n = Name::new("handle");
        let q = Mpmc::<u32>::create(&n.0, 4).unwrap();
        let info = inspect(&n.0).unwrap();
        assert_eq!(info.kind_label(), "mpmc");
        assert!(info.in_use && !info.stale);
        assert_eq!(info.endpoints_attached(), 0);
        assert!(matches!(
            remove(&n.0, false).unwrap(),
            Removal::Refused(_, Refusal::InUse)
        ));
        let opened = Mpmc::<u32>::open(&n.0).unwrap();
        drop(q);
        assert!(!inspect(&n.0).unwrap().stale, "the second handle counts");
        drop(opened);
        assert!(inspect(&n.0).unwrap().stale);
        assert!(matches!(remove(&n.0, false).unwrap(), Removal::Removed(_)));
        assert!(matches!(inspect(&n.0), Err(Error::NotFound { .. })));
    }

    #[test]
    fn corrupt_and_unknown_headers_are_described() {
        let n = Name::new("corrupt");
        let q = Spsc::<u64>::create(&n.0, 8).unwrap();
        let f = OpenOptions::new().write(true).open(path_of(&n.0)).unwrap();
        let at = |field: usize| field as u64;
        f.write_all_at(
            &999u64.to_ne_bytes(),
            at(core::mem::offset_of!(Identity, slot_stride)),
        )
        .unwrap();
        let info = inspect(&n.0).unwrap();
        assert!(info.shmqueue);
        assert_eq!(outcome(&info, "geometry"), Outcome::Fail);
        assert!(info
            .check("geometry")
            .unwrap()
            .detail
            .contains("slot stride 999"));
        assert_eq!(outcome(&info, "indices"), Outcome::Skipped);
        assert_eq!(info.fill, None);

        f.write_all_at(
            &7u32.to_ne_bytes(),
            at(core::mem::offset_of!(Identity, kind)),
        )
        .unwrap();
        let info = inspect(&n.0).unwrap();
        assert_eq!(info.kind_label(), "7");
        assert_eq!(outcome(&info, "queue kind"), Outcome::Fail);
        assert_eq!(outcome(&info, "geometry"), Outcome::Skipped);

        f.write_all_at(
            &(LAYOUT_VERSION + 1).to_ne_bytes(),
            at(core::mem::offset_of!(Identity, version)),
        )
        .unwrap();
        drop(q);
        let info = inspect(&n.0).unwrap();
        assert_eq!(outcome(&info, "layout version"), Outcome::Fail);
        assert!(!info.stale, "unknown layouts are never stale");
        assert!(matches!(
            remove(&n.0, false).unwrap(),
            Removal::Refused(_, Refusal::UnknownLayout)
        ));
    }

    #[test]
    fn foreign_files_are_described_and_never_removed() {
        let n = Name::new("foreign");
        std::fs::write(path_of(&n.0), vec![b'x'; 4096]).unwrap();
        let info = inspect(&n.0).unwrap();
        assert!(!info.shmqueue && !info.stale);
        assert_eq!(outcome(&info, "magic"), Outcome::Fail);
        for force in [false, true] {
            assert!(matches!(
                remove(&n.0, force).unwrap(),
                Removal::Refused(_, Refusal::NotShmqueue)
            ));
        }
        assert!(!list().unwrap().iter().any(|s| s.name == n.0));

        let small = Name::new("small");
        std::fs::write(path_of(&small.0), b"SHMQUEUE").unwrap();
        assert_eq!(
            outcome(&inspect(&small.0).unwrap(), "header size"),
            Outcome::Fail
        );

        let link = Name::new("link");
        std::os::unix::fs::symlink(path_of(&n.0), path_of(&link.0)).unwrap();
        let info = inspect(&link.0).unwrap();
        assert_eq!(outcome(&info, "file type"), Outcome::Fail);
        assert!(matches!(
            remove(&link.0, true).unwrap(),
            Removal::Refused(_, Refusal::NotShmqueue)
        ));
        assert!(std::fs::symlink_metadata(path_of(&link.0)).is_ok());
        assert!(std::fs::metadata(path_of(&n.0)).is_ok());
    }

    #[test]
    fn a_segment_in_its_creators_init_window_is_never_stale() {
        let n = Name::new("init");
        // What Ring::create has done right after sizing the file: handle
        // lock held, nothing written yet.
        let seg = crate::segment::Segment::create(&n.0, 4096, &Default::default()).unwrap();
        let info = inspect(&n.0).unwrap();
        assert!(!info.shmqueue && !info.stale && info.in_use);
        assert!(!list().unwrap().iter().any(|s| s.name == n.0));
        assert!(matches!(
            remove(&n.0, false).unwrap(),
            Removal::Refused(_, Refusal::NotShmqueue)
        ));
        // Magic and version written, init not yet READY.
        let f = OpenOptions::new().write(true).open(path_of(&n.0)).unwrap();
        f.write_all_at(&MAGIC.to_ne_bytes(), 0).unwrap();
        f.write_all_at(&LAYOUT_VERSION.to_ne_bytes(), 8).unwrap();
        drop(f);
        let info = inspect(&n.0).unwrap();
        assert!(info.shmqueue && !info.stale && info.in_use);
        assert_eq!(info.init, Some(InitState::Uninitialised));
        assert!(matches!(
            remove(&n.0, false).unwrap(),
            Removal::Refused(_, Refusal::InUse)
        ));
        // The creator dies: now it is stale, and removable.
        drop(seg);
        let info = inspect(&n.0).unwrap();
        assert!(info.stale);
        assert_eq!(info.check("init").unwrap().outcome, Outcome::Fail);
        assert!(matches!(remove(&n.0, false).unwrap(), Removal::Removed(_)));
    }

    #[test]
    fn concurrent_stale_removal_never_takes_a_ring_being_created_or_held() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let base = Name::new("churn");
        let prefix = format!("{}-", base.0);
        let done = AtomicBool::new(false);
        let passes = AtomicU64::new(0);
        let rounds = 200;
        std::thread::scope(|s| {
            let remover = s.spawn(|| {
                let mut removed = 0;
                while !done.load(Ordering::Relaxed) {
                    for seg in list().unwrap() {
                        if seg.stale && seg.name.starts_with(&prefix) {
                            if let Ok(Removal::Removed(_)) = remove(&seg.name, false) {
                                removed += 1;
                            }
                        }
                    }
                    passes.fetch_add(1, Ordering::Release);
                }
                removed
            });
            // Stops the remover however this thread leaves the loop
            // (a failed assertion must fail the test, not hang it).
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let stop = Stop(&done);
            for i in 0..rounds {
                let name = format!("{prefix}{i}");
                let q = Spsc::<u64>::create(&name, 4).unwrap();
                if i % 4 == 0 {
                    // Hold it (a handle, no endpoint) across two whole passes
                    // of the remover, so it certainly looked at it.
                    let start = passes.load(Ordering::Acquire);
                    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
                    while passes.load(Ordering::Acquire) < start + 2 {
                        assert!(std::time::Instant::now() < end, "remover stalled");
                        std::thread::yield_now();
                    }
                }
                let again = Spsc::<u64>::open(&name).expect("removed while held");
                drop((q, again));
                // Leave every other one behind, stale, for the remover.
                if i % 2 == 1 {
                    let _ = crate::unlink(&name);
                }
            }
            drop(stop);
            let removed = remover.join().unwrap();
            eprintln!("the remover removed {removed} stale rings");
        });
        for i in 0..rounds {
            let _ = crate::unlink(&format!("{prefix}{i}"));
        }
    }

    #[test]
    fn a_remover_holding_the_lock_makes_openers_see_not_found() {
        let n = Name::new("race");
        drop(Spsc::<u64>::create(&n.0, 8).unwrap());
        // Simulate the instant remove() holds its lock: openers must wait.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path_of(&n.0))
            .unwrap();
        assert!(liveness::lock_whole_file(f.as_fd()).unwrap());
        let opener = std::thread::spawn({
            let name = n.0.clone();
            move || Spsc::<u64>::open(&name).map(|_| ())
        });
        crate::unlink(&n.0).unwrap();
        drop(f);
        assert!(matches!(
            opener.join().unwrap(),
            Err(Error::NotFound { .. })
        ));
    }
}
