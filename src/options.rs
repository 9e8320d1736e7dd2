//! Builder options every queue kind shares.
//!
//! Each kind's `Builder` has fields `schema: u64`, `spin: u32` and
//! `seg: SegmentOptions`; `shared_builder_options!()` inside its `impl`
//! generates the setters for them, so the SPSC and MPMC builders document and
//! behave identically.

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

        /// Retries (with backoff, then yields) before a blocking call sleeps on
        /// the futex (default [`DEFAULT_SPIN`](crate::DEFAULT_SPIN)). 0 sleeps at
        /// once; larger values trade CPU for wake-up latency.
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
