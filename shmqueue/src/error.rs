//! Error types. Every message says what went wrong *and* what to do about it.

use std::fmt;
use std::io;

/// Which end of a queue an endpoint is. Every kind has exactly these two
/// sides (a broadcast publisher writes, its subscribers read), so this enum
/// is exhaustive on purpose: a `match` on it need not guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The writing end.
    Producer,
    /// The reading end.
    Consumer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        })
    }
}

/// A value read from shared memory that cannot be valid: another process
/// wrote garbage into the segment, or it is not the segment we think it is.
///
/// The queue refuses to act on it; nothing outside the mapping is touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// Which shared word held the bad value.
    pub what: &'static str,
    /// The value that was read.
    pub found: u64,
    /// The exclusive upper bound (or the expected value) it violated.
    pub limit: u64,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shared-memory segment is corrupt: {} = {} (must be below {}); \
             a peer wrote outside the protocol; recreate the queue",
            self.what, self.found, self.limit
        )
    }
}

impl std::error::Error for Corruption {}

/// Errors from creating, opening, attaching to or removing a queue.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The name breaks a rule for POSIX shared-memory names.
    InvalidName {
        /// The name as given.
        name: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A creation parameter is out of range.
    InvalidArgument {
        /// What is wrong and what range is accepted.
        detail: String,
    },
    /// `create` found the name already taken. Nothing was changed.
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// `open` or `unlink` found no segment by that name.
    NotFound {
        /// The name.
        name: String,
    },
    /// The segment exists but this process may not use it, or its ownership
    /// or mode is not what the caller accepts.
    PermissionDenied {
        /// The name.
        name: String,
        /// Which check failed.
        detail: String,
    },
    /// The file is not a shmqueue segment at all (wrong magic, not a regular
    /// file, too small to hold a header).
    Foreign {
        /// The name.
        name: String,
        /// Why it was rejected.
        detail: String,
    },
    /// The segment is a valid shmqueue segment made for something else: another
    /// element type, queue kind, layout version or schema tag.
    Incompatible {
        /// Which header field differs.
        field: &'static str,
        /// What this process expected.
        expected: u64,
        /// What the segment holds.
        found: u64,
    },
    /// The segment's header or indices hold values that cannot be valid.
    Corrupt(Corruption),
    /// The creator did not finish initialising the segment within the
    /// timeout: it is still starting, or it died half-way.
    NotReady {
        /// The name.
        name: String,
    },
    /// Every registry entry for this role is held by a live endpoint.
    RegistryFull {
        /// The role asked for.
        role: Role,
        /// How many endpoints of that role the queue was created for.
        limit: u32,
    },
    /// Another live endpoint already holds this role.
    RoleTaken {
        /// The role asked for.
        role: Role,
        /// The process id recorded by the holder (informational; may be stale).
        holder_pid: u32,
    },
    /// `open_fd` was given a descriptor that is not a memfd sealed against
    /// resizing (`F_SEAL_SHRINK`, `F_SEAL_GROW` and `F_SEAL_SEAL`). Without
    /// those seals a peer could truncate the file under our mapping and
    /// crash this process with `SIGBUS`. Nothing was mapped.
    NotSealed {
        /// The seals it carries (`F_GET_SEALS` bits), or `None` if the
        /// descriptor supports no seals at all (a pipe, a socket, a file on a
        /// disk filesystem).
        seals: Option<u32>,
        /// The required seals that are missing, e.g. `"F_SEAL_SEAL"`.
        missing: String,
    },
    /// Handing a descriptor to another process (over a Unix socket, or by
    /// inheritance) failed: the peer sent nothing, sent more than one
    /// descriptor (all were closed), or the descriptor number is wrong.
    FdPassing {
        /// What went wrong and how to fix it.
        detail: String,
    },
    /// There is not enough room for the segment: the filesystem behind
    /// `/dev/shm` (often a container's 64 MiB default), or the memory a memfd
    /// is charged to, cannot hold `needed` bytes. Creation reserves every
    /// page up front (`fallocate`), so this is reported here instead of
    /// killing a process with `SIGBUS` when it first touches a missing page.
    /// The half-made segment was removed.
    NoSpace {
        /// The segment's name (`memfd:shmqueue` for a memfd).
        name: String,
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes available to it when creation failed (`fstatvfs` of
        /// `/dev/shm`; for a memfd, the cgroup's remaining memory limit or
        /// `MemAvailable`), or `None` if that could not be determined.
        available: Option<u64>,
    },
    /// `lock_memory(true)` was asked for and `mlock` refused to lock the
    /// segment in RAM, normally because `RLIMIT_MEMLOCK` is lower than the
    /// segment (plus what the process has locked already) and the process
    /// lacks `CAP_IPC_LOCK`. The segment was not created (or not opened).
    MemoryLock {
        /// Bytes that were to be locked.
        needed: u64,
        /// The soft `RLIMIT_MEMLOCK` in bytes, `None` if unlimited or unknown.
        limit: Option<u64>,
        /// Bytes this process had locked already (`VmLck`), if known.
        locked: Option<u64>,
        /// The OS error `mlock` returned.
        source: io::Error,
    },
    /// `huge_pages(true)` was asked for and the system cannot back this
    /// segment with huge pages. Nothing was created: there is no silent
    /// fallback to normal pages.
    HugePagesUnavailable {
        /// What is missing and how to provide it.
        detail: String,
    },
    /// A broadcast subscriber asked to start at a sequence number that is
    /// no longer (or not yet) in the ring.
    StartGone {
        /// The position asked for.
        requested: u64,
        /// The oldest position still in the ring when it was asked.
        oldest: u64,
        /// The next position the publisher will write (one past the newest).
        next: u64,
    },
    /// A system call failed.
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName { name, rule } => write!(
                f,
                "invalid shared-memory name {name:?}: {rule} \
                 (use one leading '/', then 1-254 bytes without '/' or NUL, e.g. \"/orders\")"
            ),
            Error::InvalidArgument { detail } => write!(f, "invalid argument: {detail}"),
            Error::AlreadyExists { name } => write!(
                f,
                "a shared-memory object named {name:?} already exists; pick another name, \
                 open it instead, or remove it with shmqueue::unlink (rm /dev/shm{name}) if it is stale"
            ),
            Error::NotFound { name } => write!(
                f,
                "no shared-memory object named {name:?}; create it first, or check the name"
            ),
            Error::PermissionDenied { name, detail } => {
                write!(f, "permission denied for {name:?}: {detail}")
            }
            Error::Foreign { name, detail } => write!(
                f,
                "{name:?} is not a shmqueue segment ({detail}); it was left untouched"
            ),
            Error::Incompatible {
                field,
                expected,
                found,
            } => write!(
                f,
                "segment is incompatible: {field} is {found} in the segment but {expected} here; \
                 open it with the same element type, queue kind and schema tag it was created with"
            ),
            Error::Corrupt(c) => c.fmt(f),
            Error::NotReady { name } => write!(
                f,
                "segment {name:?} was never fully initialised: its creator is still starting \
                 or died while creating it; retry, or remove it with shmqueue::unlink (rm /dev/shm{name})"
            ),
            Error::RoleTaken { role, holder_pid } => write!(
                f,
                "the {role} role is held by a live endpoint (pid {holder_pid}); \
                 this queue has one {role} at a time (an SPSC queue or byte ring: one of \
                 each; a broadcast ring: one publisher): drop the other one first"
            ),
            Error::RegistryFull { role, limit } => write!(
                f,
                "all {limit} {role} slots of this queue are held by live endpoints; \
                 drop one, or create the queue with a higher limit"
            ),
            Error::NotSealed { seals: None, .. } => f.write_str(
                "descriptor refused: it supports no file seals, so it is not a memfd \
                 (a pipe, socket or on-disk file?); open_fd only maps a memfd made by \
                 create_memfd, which is sealed so that no peer can resize it under us",
            ),
            Error::NotSealed {
                seals: Some(seals),
                missing,
            } => write!(
                f,
                "descriptor refused: its seals ({seals:#x}) lack {missing}, so a peer could \
                 resize it and crash this process with SIGBUS; pass the descriptor of a \
                 queue made by create_memfd, which adds F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_SEAL"
            ),
            Error::FdPassing { detail } => write!(f, "descriptor passing failed: {detail}"),
            Error::NoSpace {
                name,
                needed,
                available,
            } if name.starts_with("memfd:") => write!(
                f,
                "not enough memory for the memfd queue: {needed} bytes needed, {} available; \
                 make the queue smaller, free memory, or raise the memory limit of the \
                 container or cgroup (docker run --memory)",
                bytes_or_unknown(*available)
            ),
            Error::NoSpace {
                name,
                needed,
                available,
            } => write!(
                f,
                "no room in /dev/shm for {name:?}: {needed} bytes needed, {} available; \
                 free /dev/shm (shmq rm --stale removes segments no process uses), make the \
                 queue smaller, or give the container a larger /dev/shm \
                 (docker run --shm-size=1g, or a Kubernetes emptyDir with medium: Memory)",
                bytes_or_unknown(*available)
            ),
            Error::MemoryLock {
                needed,
                limit,
                locked,
                source,
            } => {
                write!(f, "lock_memory: mlock of {needed} bytes failed ({source}); ")?;
                match limit {
                    Some(l) => write!(f, "RLIMIT_MEMLOCK is {l} bytes")?,
                    None => f.write_str("RLIMIT_MEMLOCK is unlimited")?,
                }
                if let Some(l) = locked {
                    write!(f, ", {l} bytes already locked by this process")?;
                }
                f.write_str(
                    "; raise the limit (ulimit -l, LimitMEMLOCK= in a systemd unit, \
                     docker run --ulimit memlock=-1) or grant CAP_IPC_LOCK, \
                     or create the queue without lock_memory",
                )
            }
            Error::HugePagesUnavailable { detail } => write!(
                f,
                "huge pages were asked for but are not available: {detail}; \
                 or create the queue without huge_pages"
            ),
            Error::StartGone {
                requested,
                oldest,
                next,
            } => write!(
                f,
                "cannot start at position {requested}: the ring holds positions \
                 {oldest}..{next} now; start at one of those, or use Start::Oldest or Start::Latest"
            ),
            Error::Io { op, source } => write!(f, "{op} failed: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::MemoryLock { source, .. } => Some(source),
            Error::Corrupt(c) => Some(c),
            _ => None,
        }
    }
}

fn bytes_or_unknown(b: Option<u64>) -> String {
    b.map_or_else(|| "unknown".into(), |b| b.to_string())
}

impl From<Corruption> for Error {
    fn from(c: Corruption) -> Self {
        Error::Corrupt(c)
    }
}

/// Shorthand for results of queue management calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a non-blocking push failed. The value comes back in every case.
///
/// ```
/// use shmqueue::TryPushError;
/// let e = TryPushError::Full(7u64);
/// assert!(e.is_full());
/// assert_eq!(e.into_inner(), 7);
/// ```
#[non_exhaustive]
pub enum TryPushError<T> {
    /// The ring holds `capacity` items; retry after the consumer pops.
    Full(T),
    /// The consumer has gone (dropped, or its process died).
    Disconnected(T),
    /// The consumer's index in shared memory is corrupt.
    Corrupt(T, Corruption),
}

/// Why a blocking push failed. The value comes back in every case.
#[non_exhaustive]
pub enum PushError<T> {
    /// The deadline passed while the ring stayed full (only from `push_timeout`).
    Timeout(T),
    /// The consumer has gone (dropped, or its process died).
    Disconnected(T),
    /// The consumer's index in shared memory is corrupt.
    Corrupt(T, Corruption),
}

/// Why a non-blocking pop returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryPopError {
    /// Nothing to pop right now.
    Empty,
    /// The ring is empty and its producer has gone (dropped, or its process died).
    Disconnected,
    /// The producer's index in shared memory is corrupt.
    Corrupt(Corruption),
}

/// Why a blocking pop returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PopError {
    /// The deadline passed while the ring stayed empty (only from `pop_timeout`).
    Timeout,
    /// The ring is empty and its producer has gone (dropped, or its process died).
    Disconnected,
    /// The producer's index in shared memory is corrupt.
    Corrupt(Corruption),
}

impl<T> TryPushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            TryPushError::Full(v) | TryPushError::Disconnected(v) | TryPushError::Corrupt(v, _) => {
                v
            }
        }
    }
    /// True for [`TryPushError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, TryPushError::Full(_))
    }
    /// True for [`TryPushError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TryPushError::Disconnected(_))
    }
}

impl<T> PushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Timeout(v) | PushError::Disconnected(v) | PushError::Corrupt(v, _) => v,
        }
    }
    /// True for [`PushError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, PushError::Timeout(_))
    }
    /// True for [`PushError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, PushError::Disconnected(_))
    }
}

// Debug without requiring `T: Debug`, so that `?` works for any element type.
impl<T> fmt::Debug for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("Full(..)"),
            TryPushError::Disconnected(_) => f.write_str("Disconnected(..)"),
            TryPushError::Corrupt(_, c) => write!(f, "Corrupt(.., {c:?})"),
        }
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Timeout(_) => f.write_str("Timeout(..)"),
            PushError::Disconnected(_) => f.write_str("Disconnected(..)"),
            PushError::Corrupt(_, c) => write!(f, "Corrupt(.., {c:?})"),
        }
    }
}

impl<T> fmt::Display for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str(
                "queue is full; retry later, or use push()/push_timeout() to wait for space",
            ),
            TryPushError::Disconnected(_) => f.write_str(
                "the consumer has gone; the value was not pushed and is returned in this error",
            ),
            TryPushError::Corrupt(_, c) => c.fmt(f),
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Timeout(_) => {
                f.write_str("timed out waiting for space; the consumer is alive but not keeping up")
            }
            PushError::Disconnected(_) => f.write_str(
                "the consumer has gone; the value was not pushed and is returned in this error",
            ),
            PushError::Corrupt(_, c) => c.fmt(f),
        }
    }
}

impl fmt::Display for TryPopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPopError::Empty => f.write_str(
                "queue is empty; retry later, or use pop()/pop_timeout() to wait for an item",
            ),
            TryPopError::Disconnected => {
                f.write_str("queue is empty and the producer has gone; nothing more will arrive until a producer attaches")
            }
            TryPopError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PopError::Timeout => f.write_str(
                "timed out waiting for an item; the producer is alive but sent nothing",
            ),
            PopError::Disconnected => {
                f.write_str("queue is empty and the producer has gone; nothing more will arrive until a producer attaches")
            }
            PopError::Corrupt(c) => c.fmt(f),
        }
    }
}

/// Why a batch call (`push_slice`, `pop_slice`) moved nothing. "Full" and
/// "empty" are not errors there: the call returns `Ok(0)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// The peer has gone (for `pop_slice`: and the ring is drained).
    Disconnected,
    /// The peer's index in shared memory is corrupt.
    Corrupt(Corruption),
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Disconnected => {
                f.write_str("the peer has gone; nothing was moved (a new peer may attach later)")
            }
            BatchError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for BatchError {}

impl<T> std::error::Error for TryPushError<T> {}
impl<T> std::error::Error for PushError<T> {}
impl std::error::Error for TryPopError {}
impl std::error::Error for PopError {}

/// Why a blocking `push_all`/`push_all_timeout` stopped before every item
/// was in. Each variant says how many items (a prefix of the slice, in
/// order) were pushed before it stopped; those are in the ring.
///
/// ```
/// use shmqueue::PushAllError;
/// let e = PushAllError::Timeout { pushed: 3 };
/// assert_eq!(e.pushed(), 3);
/// assert!(e.is_timeout());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushAllError {
    /// The deadline passed while the ring stayed full (only from `push_all_timeout`).
    Timeout {
        /// Items pushed before the deadline.
        pushed: usize,
    },
    /// The consumer has gone (dropped, or its process died).
    Disconnected {
        /// Items pushed before it went.
        pushed: usize,
    },
    /// The consumer's index in shared memory is corrupt.
    Corrupt {
        /// Items pushed before the corruption was seen.
        pushed: usize,
        /// What was corrupt.
        corruption: Corruption,
    },
}

impl PushAllError {
    /// How many items (a prefix of the slice) were pushed.
    pub fn pushed(&self) -> usize {
        match *self {
            PushAllError::Timeout { pushed }
            | PushAllError::Disconnected { pushed }
            | PushAllError::Corrupt { pushed, .. } => pushed,
        }
    }
    /// True for [`PushAllError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, PushAllError::Timeout { .. })
    }
    /// True for [`PushAllError::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, PushAllError::Disconnected { .. })
    }
}

impl fmt::Display for PushAllError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushAllError::Timeout { pushed } => write!(
                f,
                "timed out waiting for space after pushing {pushed} items; \
                 the consumer is alive but not keeping up; push the rest again"
            ),
            PushAllError::Disconnected { pushed } => write!(
                f,
                "the consumer has gone after {pushed} items were pushed; the rest were not"
            ),
            PushAllError::Corrupt { pushed, corruption } => {
                write!(f, "after {pushed} items were pushed: {corruption}")
            }
        }
    }
}

impl std::error::Error for PushAllError {}

/// Why a blocking window call (`write_window`, `read_window` and their
/// `_timeout` forms) returned no window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowError {
    /// The deadline passed with no free slot (producer) or no item
    /// (consumer) (only from the `_timeout` forms).
    Timeout,
    /// The peer has gone (for a read window: and the ring is drained).
    Disconnected,
    /// The peer's index in shared memory is corrupt.
    Corrupt(Corruption),
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowError::Timeout => f.write_str(
                "timed out waiting for the ring to have room (or items); the peer is alive but idle",
            ),
            WindowError::Disconnected => {
                f.write_str("the peer has gone; no window was opened (a new peer may attach later)")
            }
            WindowError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for WindowError {}
