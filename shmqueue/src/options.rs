//! Builder options every queue kind shares.
//!
//! Each kind's `Builder` has fields `schema: u64`, `spin: u32` and
//! `seg: SegmentOptions`; `shared_builder_options!()` inside its `impl`
//! generates the setters for them (the memory options `prefault`,
//! `lock_memory` and `huge_pages` included, which live in `SegmentOptions`),
//! so every kind's builder documents and behaves identically. `memfd_builder_entry_points!` adds the memfd entry
//! points (`create_memfd`, `open_fd`) to a builder and
//! `memfd_queue_methods!` the queue's `dup_fd`, for any queue type backed
//! by a `Ring` (typed queues as `Name<T>`, the byte ring as `ByteRing`).

macro_rules! shared_builder_options {
    () => {
        /// A tag for the meaning of `T` (default 0). `open` fails with
        /// [`Error::Incompatible`](crate::Error::Incompatible) unless it passes
        /// the tag the creator used, so two programs that agree on size but not
        /// on meaning cannot connect.
        pub fn schema(mut self, tag: u64) -> Self {
            self.schema = tag;
            self
        }

        /// Retries before a blocking call sleeps on the futex (default
        /// [`DEFAULT_SPIN`](crate::DEFAULT_SPIN): ~10 µs of single pauses, then
        /// `sched_yield`s, ~50 µs in all on an idle core). 0 sleeps at once;
        /// larger values trade CPU for wake-up latency. The async waits of SPSC
        /// and MPMC endpoints (feature `tokio`) retry up to this many times
        /// too before they register to be woken, but at most 256, single
        /// pauses only (a few µs), never a `sched_yield`.
        pub fn spin(mut self, retries: u32) -> Self {
            self.spin = retries;
            self
        }

        /// Permission bits of a new segment (default `0o600`), applied exactly,
        /// whatever the umask. Modes that grant "others" any access are refused
        /// unless `allow_world_access(true)` is set.
        pub fn mode(mut self, mode: u32) -> Self {
            self.seg.mode = mode;
            self
        }

        /// Accept a creation mode that lets every user on the host read or write.
        pub fn allow_world_access(mut self, yes: bool) -> Self {
            self.seg.allow_world = yes;
            self
        }

        /// `open`: accept a segment owned by another user.
        pub fn allow_foreign_owner(mut self, yes: bool) -> Self {
            self.seg.allow_foreign_owner = yes;
            self
        }

        /// `open`: accept a segment that group or others may write.
        pub fn allow_shared_write(mut self, yes: bool) -> Self {
            self.seg.allow_shared_write = yes;
            self
        }

        /// Share the segment with the group `gid` (a `gid_t`; default: none).
        ///
        /// * create: the new segment is given this group with `fchown` while
        ///   it is still owner-only, then gets its [`mode`](Self::mode)
        ///   (use a group mode such as `0o660`). Creating fails with
        ///   [`Error::PermissionDenied`](crate::Error::PermissionDenied)
        ///   unless this process may use that group (a member of it, or root).
        /// * open: the segment must belong to group `gid`; then write access
        ///   for the group, and an owner other than this user, are expected
        ///   and accepted (only root or a member of `gid` can have given it
        ///   that group). World write access is still refused.
        ///
        /// ```
        /// # use shmqueue::Spsc;
        /// # let name = format!("/doc-group-{}", std::process::id());
        /// let gid = nix::unistd::getegid().as_raw();
        /// let q = Spsc::<u64>::builder().group(gid).mode(0o660).create(&name)?;
        /// // Group-writable, so a plain open refuses it; naming the group accepts it.
        /// assert!(Spsc::<u64>::open(&name).is_err());
        /// let peer = Spsc::<u64>::builder().group(gid).open(&name)?;
        /// # shmqueue::unlink(&name)?;
        /// # Ok::<(), shmqueue::Error>(())
        /// ```
        pub fn group(mut self, gid: u32) -> Self {
            self.seg.group = Some(gid);
            self
        }

        /// Map the segment with every page present (`MAP_POPULATE`), on
        /// create and on open (default off), so that the first push or pop
        /// to reach a page does not take a page fault (a few µs each, in
        /// the tail of the latency distribution). Costs the time to map the
        /// whole segment up front; every process that wants it must ask.
        ///
        /// ```
        /// # use shmqueue::Spsc;
        /// # let name = format!("/doc-prefault-{}", std::process::id());
        /// let q = Spsc::<u64>::builder().capacity(4096).prefault(true).create(&name)?;
        /// let peer = Spsc::<u64>::builder().prefault(true).open(&name)?;
        /// # shmqueue::unlink(&name)?;
        /// # Ok::<(), shmqueue::Error>(())
        /// ```
        pub fn prefault(mut self, yes: bool) -> Self {
            self.seg.prefault = yes;
            self
        }

        /// Lock the segment's pages in RAM with `mlock` (default off), on
        /// create and on open, so they are never swapped out nor faulted in
        /// later (locking also prefaults them). The lock ends with the
        /// queue's mapping.
        ///
        /// Fails with [`Error::MemoryLock`](crate::Error::MemoryLock), which
        /// says the limit, when `RLIMIT_MEMLOCK` (`ulimit -l`, often 8 MiB)
        /// is too low for the segment and the process lacks
        /// `CAP_IPC_LOCK`; a created segment is removed again.
        ///
        /// ```
        /// # use shmqueue::{Error, Spsc};
        /// match Spsc::<u64>::builder().lock_memory(true).create_memfd() {
        ///     Ok(q) => drop(q),                        // locked until dropped
        ///     Err(e @ Error::MemoryLock { .. }) => eprintln!("{e}"), // says the limit
        ///     Err(e) => return Err(e),
        /// }
        /// # Ok::<(), shmqueue::Error>(())
        /// ```
        pub fn lock_memory(mut self, yes: bool) -> Self {
            self.seg.lock_memory = yes;
            self
        }

        /// Create the segment on huge pages (default off), which cuts TLB
        /// misses for large rings. Fails with
        /// [`Error::HugePagesUnavailable`](crate::Error::HugePagesUnavailable),
        /// saying what to configure, when the system cannot provide them;
        /// there is no silent fallback to normal pages.
        ///
        /// * memfd (`create_memfd`): a hugetlbfs memfd (`MFD_HUGETLB`, the
        ///   default huge page size), its size rounded up to whole huge
        ///   pages. Needs huge pages reserved in
        ///   `/proc/sys/vm/nr_hugepages`.
        /// * named segment: transparent huge pages of the tmpfs on
        ///   `/dev/shm`, which its `huge=` mount option decides
        ///   (`always`/`within_size`, or `advise`, for which the mapping is
        ///   advised with `MADV_HUGEPAGE`), unless
        ///   `/sys/kernel/mm/transparent_hugepage/shmem_enabled` says
        ///   `force` or `deny` for all. Most systems mount `/dev/shm`
        ///   without `huge=`: then this is refused.
        ///
        /// Only creation looks at this option; an opener maps whatever pages
        /// the creator's segment has.
        ///
        /// ```
        /// # use shmqueue::{Error, Spsc};
        /// match Spsc::<u64>::builder().capacity(1 << 18).huge_pages(true).create_memfd() {
        ///     Ok(q) => drop(q),
        ///     // e.g. "... none are configured (/proc/sys/vm/nr_hugepages is 0) ..."
        ///     Err(e @ Error::HugePagesUnavailable { .. }) => eprintln!("{e}"),
        ///     Err(e) => return Err(e),
        /// }
        /// # Ok::<(), shmqueue::Error>(())
        /// ```
        pub fn huge_pages(mut self, yes: bool) -> Self {
            self.seg.huge_pages = yes;
            self
        }

        /// `open`: how long to wait for a creator that is still initialising the
        /// segment (default 2 s) before failing with
        /// [`Error::NotReady`](crate::Error::NotReady).
        pub fn init_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.seg.init_timeout = timeout;
            self
        }
    };
}

pub(crate) use shared_builder_options;

/// Builder entry points for unnamed, sealed queues (see [`crate::memfd`]).
///
/// `$queue` names the queue type (for the docs and the return type);
/// `expected` maps `&Self` to the [`Expected`](crate::header::Expected) an
/// opener checks, `wrap` turns `(&Self, Ring)` into the queue. The builder
/// needs a `geometry(&self) -> Result<Geometry, Error>` and a `spin` field.
macro_rules! memfd_builder_entry_points {
    // Typed queues: a u64 example.
    ($queue:ident<T>, expected = $expected:expr, wrap = $wrap:expr $(,)?) => {
        crate::options::memfd_builder_entry_points!(
            @ $queue, $queue<T>, "::<u64>", "let mut tx = q.producer()?;",
            "let mut rx = peer.consumer()?;", "tx.push(1)?;\nassert_eq!(rx.pop()?, 1);",
            expected = $expected, wrap = $wrap
        );
    };
    // Typed queues whose endpoints have other names (broadcast).
    ($queue:ident<T>, tx = $tx:literal, rx = $rx:literal, roundtrip = $rt:literal,
     expected = $expected:expr, wrap = $wrap:expr $(,)?) => {
        crate::options::memfd_builder_entry_points!(
            @ $queue, $queue<T>, "::<u64>", $tx, $rx, $rt,
            expected = $expected, wrap = $wrap
        );
    };
    // The byte ring: a message example.
    ($queue:ident, expected = $expected:expr, wrap = $wrap:expr $(,)?) => {
        crate::options::memfd_builder_entry_points!(
            @ $queue, $queue, "", "let mut tx = q.producer()?;", "let mut rx = peer.consumer()?;",
            "tx.send(b\"hi\")?;\nlet mut buf = Vec::new();\nrx.recv(&mut buf)?;\nassert_eq!(buf, b\"hi\");",
            expected = $expected, wrap = $wrap
        );
    };
    (@ $queue:ident, $ty:ty, $tf:literal, $txline:literal, $rxline:literal, $roundtrip:literal,
     expected = $expected:expr, wrap = $wrap:expr) => {
        /// Create the queue in an unnamed memfd instead of a named segment.
        ///
        /// The memfd is sized and then sealed with `F_SEAL_SHRINK`,
        /// `F_SEAL_GROW` and `F_SEAL_SEAL` before this returns, so nobody (this
        /// process included) can resize it and make a peer's access fault with
        /// `SIGBUS`. It has no name: hand it to other processes with
        #[doc = concat!("[`", stringify!($queue), "::dup_fd`] and [`memfd::send_fd`](crate::memfd::send_fd)")]
        /// or [`memfd::inherit_fd`](crate::memfd::inherit_fd); they open it
        /// with [`open_fd`](Self::open_fd). It disappears when the last
        /// descriptor and mapping are gone. The mode, group and owner options
        /// do not apply.
        ///
        /// ```
        #[doc = concat!("use shmqueue::", stringify!($queue), ";")]
        #[doc = concat!("let q = ", stringify!($queue), $tf, "::builder().capacity(64).create_memfd()?;")]
        #[doc = $txline]
        #[doc = concat!("let peer = ", stringify!($queue), $tf, "::builder().open_fd(q.dup_fd()?)?;")]
        #[doc = $rxline]
        #[doc = $roundtrip]
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn create_memfd(self) -> Result<$ty, crate::Error> {
            let ring = crate::mapping::Ring::create_memfd(self.geometry()?, &self.seg)?;
            Ok(($wrap)(&self, ring))
        }

        /// Open a queue from a descriptor made by
        /// [`create_memfd`](Self::create_memfd) and handed to this process.
        ///
        /// The descriptor must be a memfd carrying `F_SEAL_SHRINK`,
        /// `F_SEAL_GROW` and `F_SEAL_SEAL`; anything else (an unsealed or
        /// partly sealed memfd, a named segment, a pipe, a file) is refused
        /// with [`Error::NotSealed`](crate::Error::NotSealed) before it is
        /// mapped. Then the header is validated as by
        /// [`open`](Self::open) (element type, schema tag, geometry against the
        /// file size), without waiting: the creator initialised it before
        /// handing it on. Owner and mode are not checked: holding the
        /// descriptor is the permission.
        ///
        /// ```
        #[doc = concat!("use shmqueue::{", stringify!($queue), ", Error};")]
        #[doc = concat!("let q = ", stringify!($queue), $tf, "::builder().create_memfd()?;")]
        #[doc = concat!("let ok = ", stringify!($queue), $tf, "::builder().open_fd(q.dup_fd()?)?;")]
        /// // A descriptor that is not a sealed memfd is refused.
        /// let (r, _w) = nix::unistd::pipe().expect("pipe");
        /// assert!(matches!(
        #[doc = concat!("    ", stringify!($queue), $tf, "::builder().open_fd(r),")]
        ///     Err(Error::NotSealed { .. })
        /// ));
        /// # Ok::<(), Error>(())
        /// ```
        pub fn open_fd(self, fd: std::os::fd::OwnedFd) -> Result<$ty, crate::Error> {
            let ring = crate::mapping::Ring::open_fd(fd, &($expected)(&self), &self.seg)?;
            Ok(($wrap)(&self, ring))
        }
    };
}

pub(crate) use memfd_builder_entry_points;

/// Queue methods for handing the segment's descriptor on. The queue type
/// needs a `ring: Arc<Ring>` field.
macro_rules! memfd_queue_methods {
    ($queue:ident<T>) => {
        crate::options::memfd_queue_methods!(@ $queue, "::<u64>");
    };
    ($queue:ident) => {
        crate::options::memfd_queue_methods!(@ $queue, "");
    };
    (@ $queue:ident, $tf:literal) => {
        /// A new descriptor for this queue's segment (close-on-exec), to hand
        /// to another process with [`memfd::send_fd`](crate::memfd::send_fd)
        /// or [`memfd::inherit_fd`](crate::memfd::inherit_fd).
        ///
        /// Only the descriptor of a queue made by the builder's
        /// `create_memfd` can be opened with `open_fd`; a named segment's
        /// descriptor is refused there (it is not sealed).
        ///
        /// ```
        /// use std::os::fd::AsRawFd;
        #[doc = concat!("let q = shmqueue::", stringify!($queue), $tf, "::builder().create_memfd()?;")]
        /// let fd = q.dup_fd()?;
        /// assert!(fd.as_raw_fd() > 2);
        /// # Ok::<(), shmqueue::Error>(())
        /// ```
        pub fn dup_fd(&self) -> Result<std::os::fd::OwnedFd, crate::Error> {
            self.ring.dup_fd()
        }
    };
}

pub(crate) use memfd_queue_methods;
