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
