//! Sealed memfd queues: creation, seal checks, descriptor passing over a
//! Unix socket and by inheritance, resizing attempts by a peer, and
//! liveness (OFD locks through /proc/self/fd) on memfds, with real second
//! processes (this test binary re-executed with a role).

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{child_role, run_child, Shm, DEADLINE};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::unistd::ftruncate;
use shmqueue::{memfd, Error, Mpmc, PopError, Spsc, TryPopError};

const ITEMS: u64 = 100_000;

/// A re-executed child (stdout discarded, stderr shown), killed on drop.
struct Kid(Child);

/// Start this test binary again, running only `test` as `role`, after
/// `setup` had its say on the command (e.g. [`memfd::inherit_fd`]).
fn spawn_with(
    test: &str,
    role: &str,
    args: &[(&str, String)],
    setup: impl FnOnce(&mut Command),
) -> Kid {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SHMQ_TEST_ROLE", role)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in args {
        cmd.env(format!("SHMQ_TEST_{k}"), v);
    }
    setup(&mut cmd);
    // `cmd` (and the parent's copies of inherited descriptors it owns) is
    // dropped right after the spawn.
    Kid(cmd.spawn().expect("spawn child test process"))
}

impl Kid {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Wait for exit (deadline `DEADLINE`) and require success.
    fn success(&mut self) {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                assert!(s.success(), "child failed: {s}");
                return;
            }
            assert!(
                Instant::now() < end,
                "child still running after {DEADLINE:?}"
            );
            // Polling with a deadline; there is no portable wait-with-timeout.
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn sigkill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The queue descriptor a parent passed with `memfd::inherit_fd(.., var)`.
fn inherited(var: &str) -> Result<OwnedFd, String> {
    // SAFETY: the parent passed exactly this descriptor for us under `var`
    // (spawn_with + memfd::inherit_fd), and it is taken once.
    unsafe { memfd::take_inherited_fd(var) }.map_err(e2s)
}

fn socket_with_deadline(fd: OwnedFd) -> UnixStream {
    let s = UnixStream::from(fd);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

fn all_seals() -> SealFlag {
    SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL
}

// ---------------------------------------------------------------------------

#[test]
fn memfd_queues_passed_over_a_socket_stream_items_both_ways() {
    const TEST: &str = "memfd_queues_passed_over_a_socket_stream_items_both_ways";
    if child_role().is_some() {
        run_child(|| {
            let sock = socket_with_deadline(inherited("SHMQ_SOCK")?);
            let down = Spsc::<u64>::builder()
                .open_fd(memfd::recv_fd(&sock).map_err(e2s)?)
                .map_err(e2s)?;
            let up = Spsc::<u64>::builder()
                .open_fd(memfd::recv_fd(&sock).map_err(e2s)?)
                .map_err(e2s)?;
            let work = Mpmc::<u64>::builder()
                .open_fd(memfd::recv_fd(&sock).map_err(e2s)?)
                .map_err(e2s)?;
            let mut rx = down.consumer().map_err(e2s)?;
            let mut tx = up.producer().map_err(e2s)?;
            for i in 0..ITEMS {
                let v = rx
                    .pop_timeout(DEADLINE)
                    .map_err(|e| format!("pop {i}: {e}"))?;
                if v != i {
                    return Err(format!("got {v}, expected {i}"));
                }
                tx.push_timeout(!v, DEADLINE).map_err(e2s)?;
            }
            let mut p = work.producer().map_err(e2s)?;
            for v in [7, 8, 9] {
                p.push_timeout(v, DEADLINE).map_err(e2s)?;
            }
            match rx.pop_timeout(DEADLINE) {
                Err(PopError::Disconnected) => Ok(()),
                other => Err(format!("expected Disconnected, got {other:?}")),
            }
        });
    }
    let down = Spsc::<u64>::builder().capacity(64).create_memfd().unwrap();
    let up = Spsc::<u64>::builder().capacity(64).create_memfd().unwrap();
    let work = Mpmc::<u64>::builder().capacity(8).create_memfd().unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let ours = socket_with_deadline(ours.into());
    let mut kid = spawn_with(TEST, "peer", &[], |cmd| {
        memfd::inherit_fd(cmd, theirs.into(), "SHMQ_SOCK").unwrap();
    });
    for q in [down.dup_fd(), up.dup_fd(), work.dup_fd()] {
        memfd::send_fd(&ours, q.unwrap()).unwrap();
    }
    let mut tx = down.producer().unwrap();
    let pusher = std::thread::spawn(move || {
        for i in 0..ITEMS {
            tx.push_timeout(i, DEADLINE).unwrap();
        }
        // Dropping tx tells the child we are done.
    });
    let mut rx = up.consumer().unwrap();
    for i in 0..ITEMS {
        assert_eq!(rx.pop_timeout(DEADLINE).unwrap(), !i);
    }
    pusher.join().unwrap();
    let mut c = work.consumer().unwrap();
    let got: Vec<u64> = (0..3).map(|_| c.pop_timeout(DEADLINE).unwrap()).collect();
    assert_eq!(got, [7, 8, 9]);
    kid.success();
    assert_eq!(rx.try_pop(), Err(TryPopError::Disconnected));
}

#[test]
fn a_memfd_queue_is_inherited_by_a_reexecuted_child() {
    const TEST: &str = "a_memfd_queue_is_inherited_by_a_reexecuted_child";
    if child_role().is_some() {
        run_child(|| {
            // Wrong or missing numbers are typed errors, not panics, and
            // never close a descriptor we do not own.
            for var in [
                "SHMQ_UNSET",
                "SHMQ_NOT_A_NUMBER",
                "SHMQ_STDOUT",
                "SHMQ_CLOSED",
            ] {
                // SAFETY: each variable is either unset or names no
                // descriptor we could own; the call must refuse them all.
                match unsafe { memfd::take_inherited_fd(var) } {
                    Err(Error::FdPassing { detail }) if detail.contains(var) => {}
                    other => return Err(format!("{var}: expected FdPassing, got {other:?}")),
                }
            }
            let fd = inherited("SHMQ_QFD")?;
            let flags = rustix::io::fcntl_getfd(&fd).map_err(e2s)?;
            if !flags.contains(rustix::io::FdFlags::CLOEXEC) {
                return Err("the taken descriptor is not close-on-exec again".into());
            }
            let q = Spsc::<u64>::builder().open_fd(fd).map_err(e2s)?;
            let mut rx = q.consumer().map_err(e2s)?;
            for i in 0..ITEMS {
                let v = rx
                    .pop_timeout(DEADLINE)
                    .map_err(|e| format!("pop {i}: {e}"))?;
                if v != i {
                    return Err(format!("got {v}, expected {i}"));
                }
            }
            match rx.pop_timeout(DEADLINE) {
                Err(PopError::Disconnected) => Ok(()),
                other => Err(format!("expected Disconnected, got {other:?}")),
            }
        });
    }
    let q = Spsc::<u64>::builder().capacity(100).create_memfd().unwrap();
    let mut tx = q.producer().unwrap();
    let mut kid = spawn_with(TEST, "heir", &[], |cmd| {
        memfd::inherit_fd(cmd, q.dup_fd().unwrap(), "SHMQ_QFD").unwrap();
        cmd.env("SHMQ_NOT_A_NUMBER", "seven")
            .env("SHMQ_STDOUT", "1")
            .env("SHMQ_CLOSED", "1000000")
            .env_remove("SHMQ_UNSET");
    });
    for i in 0..ITEMS {
        tx.push_timeout(i, DEADLINE).unwrap();
    }
    drop(tx);
    kid.success();
}

#[test]
fn a_peer_cannot_resize_a_sealed_memfd_and_the_others_keep_working() {
    const TEST: &str = "a_peer_cannot_resize_a_sealed_memfd_and_the_others_keep_working";
    if child_role().is_some() {
        run_child(|| {
            let fd = inherited("SHMQ_QFD")?;
            let raw = fd.try_clone().map_err(e2s)?;
            let q = Spsc::<u64>::builder().open_fd(fd).map_err(e2s)?;
            let mut rx = q.consumer().map_err(e2s)?;
            let len = nix::sys::stat::fstat(&raw).map_err(e2s)?.st_size;
            // Every way to change the size, or to add a seal (e.g.
            // F_SEAL_FUTURE_WRITE, which would stop new peers from mapping
            // it writable), is refused by the kernel.
            let attempts: [(&str, nix::Result<()>); 5] = [
                ("shrink", ftruncate(&raw, 0)),
                ("grow", ftruncate(&raw, len * 2)),
                (
                    "fallocate past the end",
                    nix::fcntl::fallocate(&raw, nix::fcntl::FallocateFlags::empty(), len, 4096),
                ),
                (
                    "add F_SEAL_FUTURE_WRITE",
                    fcntl(&raw, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_FUTURE_WRITE)).map(drop),
                ),
                (
                    "add F_SEAL_WRITE",
                    fcntl(&raw, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_WRITE)).map(drop),
                ),
            ];
            for (what, r) in attempts {
                if r != Err(Errno::EPERM) {
                    return Err(format!("{what}: expected EPERM, got {r:?}"));
                }
            }
            let after = nix::sys::stat::fstat(&raw).map_err(e2s)?.st_size;
            if after != len {
                return Err(format!("size changed from {len} to {after}"));
            }
            for i in 0..ITEMS {
                let v = rx
                    .pop_timeout(DEADLINE)
                    .map_err(|e| format!("pop {i}: {e}"))?;
                if v != i {
                    return Err(format!("got {v}, expected {i}"));
                }
            }
            Ok(())
        });
    }
    let q = Spsc::<u64>::builder().capacity(32).create_memfd().unwrap();
    let own = q.dup_fd().unwrap();
    let len = nix::sys::stat::fstat(&own).unwrap().st_size;
    // The creator cannot resize it either.
    assert_eq!(ftruncate(&own, 0), Err(Errno::EPERM));
    assert_eq!(ftruncate(&own, len + 4096), Err(Errno::EPERM));
    let seals = SealFlag::from_bits_retain(fcntl(&own, FcntlArg::F_GET_SEALS).unwrap());
    assert_eq!(
        seals,
        all_seals(),
        "exactly SHRINK, GROW and SEAL (writes stay allowed)"
    );
    let mut tx = q.producer().unwrap();
    let mut kid = spawn_with(TEST, "resizer", &[], |cmd| {
        memfd::inherit_fd(cmd, q.dup_fd().unwrap(), "SHMQ_QFD").unwrap();
    });
    for i in 0..ITEMS {
        tx.push_timeout(i, DEADLINE).unwrap();
    }
    kid.success();
    assert_eq!(nix::sys::stat::fstat(&own).unwrap().st_size, len);
    // This side keeps working after the peer's attempts and exit: the
    // consumer is gone, the value comes back.
    assert!(tx.try_push(1).unwrap_err().is_disconnected());
}

#[test]
fn liveness_works_on_memfds_a_killed_peer_is_detected() {
    const TEST: &str = "liveness_works_on_memfds_a_killed_peer_is_detected";
    if child_role().is_some() {
        run_child(|| {
            let q = Spsc::<u64>::builder()
                .open_fd(inherited("SHMQ_QFD")?)
                .map_err(e2s)?;
            let mut tx = q.producer().map_err(e2s)?;
            for v in 0..10 {
                tx.push_timeout(v, DEADLINE).map_err(e2s)?;
            }
            // Hold the producer role until the parent kills us.
            let end = Instant::now() + DEADLINE;
            while Instant::now() < end {
                std::thread::park_timeout(end - Instant::now());
            }
            Err("was not killed".into())
        });
    }
    let q = Spsc::<u64>::builder().capacity(16).create_memfd().unwrap();
    // In one process too, a second handle from the same memfd is refused
    // the held role: the OFD locks work through the /proc/self/fd reopen.
    {
        let other = Spsc::<u64>::builder().open_fd(q.dup_fd().unwrap()).unwrap();
        let _c = q.consumer().unwrap();
        assert!(matches!(other.consumer(), Err(Error::RoleTaken { .. })));
    }
    let mut rx = q.consumer().unwrap();
    let mut kid = spawn_with(TEST, "holder", &[], |cmd| {
        memfd::inherit_fd(cmd, q.dup_fd().unwrap(), "SHMQ_QFD").unwrap();
    });
    // All ten arrive (so the child is past its pushes, holding the role).
    for v in 0..10 {
        assert_eq!(rx.pop_timeout(DEADLINE), Ok(v));
    }
    match q.producer() {
        Err(Error::RoleTaken { holder_pid, .. }) => assert_eq!(holder_pid, kid.pid()),
        other => panic!("expected RoleTaken while the child lives, got {other:?}"),
    }
    kid.sigkill();
    let killed = Instant::now();
    assert_eq!(rx.pop_timeout(DEADLINE), Err(PopError::Disconnected));
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "death noticed after {:?}",
        killed.elapsed()
    );
    // The dead holder's role is free again.
    q.producer().unwrap().push(42).unwrap();
    assert_eq!(rx.try_pop(), Ok(42));
}

// ---------------------------------------------------------------------------
// Refusals, in one process.

/// The bytes of a valid, initialised SPSC<u64> segment.
fn valid_image() -> Vec<u8> {
    let q = Spsc::<u64>::builder().capacity(8).create_memfd().unwrap();
    let mut f = File::from(q.dup_fd().unwrap());
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).unwrap();
    bytes
}

/// A memfd holding `bytes` with exactly `seals` added.
fn memfd_with(bytes: &[u8], allow_sealing: bool, seals: SealFlag) -> OwnedFd {
    let mut flags = MFdFlags::MFD_CLOEXEC;
    if allow_sealing {
        flags |= MFdFlags::MFD_ALLOW_SEALING;
    }
    let fd = memfd_create(c"shmq-test", flags).unwrap();
    let mut f = File::from(fd);
    f.write_all(bytes).unwrap();
    let fd = OwnedFd::from(f);
    if !seals.is_empty() {
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).unwrap();
    }
    fd
}

fn missing_seals<T: std::fmt::Debug>(r: Result<T, Error>) -> (Option<u32>, String) {
    match r {
        Err(e @ Error::NotSealed { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("create_memfd"), "says what to do: {msg}");
            let Error::NotSealed { seals, missing } = e else {
                unreachable!()
            };
            (seals, missing)
        }
        other => panic!("expected NotSealed, got {other:?}"),
    }
}

#[test]
fn unsealed_or_partly_sealed_memfds_are_refused() {
    let image = valid_image();
    let open = |fd| Spsc::<u64>::builder().open_fd(fd);
    let s = |f: SealFlag| f.bits() as u32;

    let (seals, missing) = missing_seals(open(memfd_with(&image, true, SealFlag::empty())));
    assert_eq!(seals, Some(0));
    assert_eq!(missing, "F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_SEAL");

    let sg = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
    let (seals, missing) = missing_seals(open(memfd_with(&image, true, sg)));
    assert_eq!((seals, missing.as_str()), (Some(s(sg)), "F_SEAL_SEAL"));

    let ss = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_SEAL;
    let (_, missing) = missing_seals(Mpmc::<u64>::builder().open_fd(memfd_with(&image, true, ss)));
    assert_eq!(missing, "F_SEAL_GROW");

    // Without MFD_ALLOW_SEALING a memfd is born with F_SEAL_SEAL only, and
    // can never get the others.
    let (seals, missing) = missing_seals(open(memfd_with(&image, false, SealFlag::empty())));
    assert_eq!(seals, Some(s(SealFlag::F_SEAL_SEAL)));
    assert_eq!(missing, "F_SEAL_SHRINK, F_SEAL_GROW");

    // The same bytes, fully sealed, open: the refusals were the seals'.
    let q = open(memfd_with(&image, true, all_seals())).unwrap();
    assert_eq!(q.capacity(), 8);
}

#[test]
fn descriptors_that_are_not_memfds_are_refused_cleanly() {
    let open = |fd: OwnedFd| Spsc::<u64>::builder().open_fd(fd);
    // A pipe, a socket, /dev/null: no seals at all.
    let (r, _w) = nix::unistd::pipe().unwrap();
    assert_eq!(missing_seals(open(r)).0, None);
    let (a, _b) = UnixStream::pair().unwrap();
    assert_eq!(missing_seals(open(a.into())).0, None);
    let null = File::open("/dev/null").unwrap();
    assert_eq!(missing_seals(open(null.into())).0, None);
    // A regular file: none on disk filesystems, F_SEAL_SEAL alone on tmpfs.
    let path = std::env::temp_dir().join(format!("shmq-test-{}-memfd-file", std::process::id()));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file.set_len(4096).unwrap();
    let (seals, _) = missing_seals(open(file.into()));
    assert!(seals.is_none() || seals == Some(SealFlag::F_SEAL_SEAL.bits() as u32));
    // A sealed memfd, but reopened read-only: refused before mapping.
    let q = Spsc::<u64>::builder().create_memfd().unwrap();
    let fd = q.dup_fd().unwrap();
    let ro = File::open(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    match open(ro.into()) {
        Err(Error::PermissionDenied { detail, .. }) => assert!(detail.contains("read-write")),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    // A named segment's descriptor: shm objects carry F_SEAL_SEAL only.
    let shm = Shm::new("memfd-named");
    let named = Spsc::<u64>::create(shm.name(), 8).unwrap();
    let (seals, missing) = missing_seals(open(named.dup_fd().unwrap()));
    assert_eq!(seals, Some(SealFlag::F_SEAL_SEAL.bits() as u32));
    assert_eq!(missing, "F_SEAL_SHRINK, F_SEAL_GROW");
}

#[test]
fn sealed_memfds_with_the_wrong_contents_get_the_usual_typed_errors() {
    let image = valid_image();
    // Too small for a header.
    let tiny = memfd_with(&[0u8; 10], true, all_seals());
    assert!(matches!(
        Spsc::<u64>::builder().open_fd(tiny),
        Err(Error::Foreign { .. })
    ));
    // Never initialised: refused at once, no waiting for a creator.
    let blank = memfd_with(&vec![0u8; image.len()], true, all_seals());
    let t = Instant::now();
    assert!(matches!(
        Spsc::<u64>::builder().open_fd(blank),
        Err(Error::NotReady { .. })
    ));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    // Another element type, another kind, another schema.
    let fd = || memfd_with(&image, true, all_seals());
    assert!(matches!(
        Spsc::<u32>::builder().open_fd(fd()),
        Err(Error::Incompatible { .. })
    ));
    assert!(matches!(
        Mpmc::<u64>::builder().open_fd(fd()),
        Err(Error::Incompatible { .. })
    ));
    assert!(matches!(
        Spsc::<u64>::builder().schema(9).open_fd(fd()),
        Err(Error::Incompatible {
            field: "schema tag",
            ..
        })
    ));
    // A bigger file than the header says: the geometry check refuses it.
    let mut big = image.clone();
    big.extend_from_slice(&[0u8; 4096]);
    assert!(matches!(
        Spsc::<u64>::builder().open_fd(memfd_with(&big, true, all_seals())),
        Err(Error::Corrupt(_))
    ));
}

// ---------------------------------------------------------------------------
// Descriptor passing edge cases.

/// Wait (up to `DEADLINE`) until every write end of the pipe whose read end
/// is `r` is closed, i.e. the read end reports POLLHUP.
fn wait_all_writers_closed(r: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        // SAFETY: one valid pollfd, on a descriptor we own, for one call.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
        if n > 0 && pfd.revents & libc::POLLHUP != 0 {
            return true;
        }
        if n == 0 || Instant::now() >= end {
            return false;
        }
    }
}

#[test]
fn a_message_must_carry_exactly_one_descriptor_and_extras_are_closed() {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let (a, b) = UnixStream::pair().unwrap();
    let b = socket_with_deadline(b.into());

    // Two descriptors (both the write end of a pipe): refused, and both
    // received copies closed, which the read end shows as a hang-up once
    // our own write end is closed too.
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let fds = [w.as_raw_fd(), w.as_raw_fd()];
    sendmsg::<()>(
        a.as_raw_fd(),
        &[std::io::IoSlice::new(b"F")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    match memfd::recv_fd(&b) {
        Err(Error::FdPassing { detail }) => assert!(detail.contains("2 descriptors"), "{detail}"),
        other => panic!("expected FdPassing, got {other:?}"),
    }
    drop(w);
    assert!(wait_all_writers_closed(&r), "a received copy was left open");

    // A byte without a descriptor.
    (&a).write_all(b"F").unwrap();
    match memfd::recv_fd(&b) {
        Err(Error::FdPassing { detail }) => assert!(detail.contains("no descriptor"), "{detail}"),
        other => panic!("expected FdPassing, got {other:?}"),
    }

    // One descriptor: fine (and it is a working queue).
    let q = Spsc::<u64>::builder().create_memfd().unwrap();
    memfd::send_fd(&a, q.dup_fd().unwrap()).unwrap();
    let got = Spsc::<u64>::builder()
        .open_fd(memfd::recv_fd(&b).unwrap())
        .unwrap();
    q.producer().unwrap().push(3).unwrap();
    assert_eq!(got.consumer().unwrap().try_pop(), Ok(3));

    // The peer goes away: a clean error, on both sides.
    drop(a);
    match memfd::recv_fd(&b) {
        Err(Error::FdPassing { detail }) => assert!(detail.contains("closed"), "{detail}"),
        other => panic!("expected FdPassing, got {other:?}"),
    }
    match memfd::send_fd(&b, q.dup_fd().unwrap()) {
        Err(Error::FdPassing { detail }) => assert!(detail.contains("closed"), "{detail}"),
        other => panic!("expected FdPassing, got {other:?}"),
    }

    // Not a socket at all.
    let (pr, _pw) = nix::unistd::pipe().unwrap();
    assert!(matches!(
        memfd::recv_fd(pr.as_fd()),
        Err(Error::FdPassing { .. })
    ));
    assert!(matches!(
        memfd::send_fd(pr.as_fd(), q.dup_fd().unwrap()),
        Err(Error::FdPassing { .. })
    ));
}

/// A message whose control data the kernel had to truncate still closes
/// every descriptor that did arrive. Truncation happens without the sender
/// exceeding `SCM_MAX_FD`: here `SO_PASSCRED` puts credentials ahead of the
/// descriptors, so only some of 253 fit; a receiver near `RLIMIT_NOFILE`
/// gets the same partial delivery (`EMFILE` part-way).
#[test]
fn a_truncated_message_still_closes_the_descriptors_that_arrived() {
    use nix::sys::socket::{sendmsg, setsockopt, sockopt, ControlMessage, MsgFlags};
    let (a, b) = UnixStream::pair().unwrap();
    let b = socket_with_deadline(b.into());
    setsockopt(&b, sockopt::PassCred, &true).unwrap();
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let fds = [w.as_raw_fd(); 253];
    sendmsg::<()>(
        a.as_raw_fd(),
        &[std::io::IoSlice::new(b"F")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert!(matches!(memfd::recv_fd(&b), Err(Error::FdPassing { .. })));
    drop(w);
    // Every copy closed: the read end hangs up at once (not DEADLINE: a
    // leak would otherwise cost a minute).
    let mut pfd = libc::pollfd {
        fd: r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, on a descriptor we own, for one call.
    let n = unsafe { libc::poll(&mut pfd, 1, 2000) };
    assert!(
        n > 0 && pfd.revents & libc::POLLHUP != 0,
        "received copies of the write end were leaked"
    );
}

// ---------------------------------------------------------------------------
// Across users, and why memfds are sealed.

/// Become uid/gid 54321 with no supplementary groups, irrevocably.
fn drop_to_nobody() -> Result<(), String> {
    use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
    setgroups(&[]).map_err(e2s)?;
    setgid(Gid::from_raw(54321)).map_err(e2s)?;
    setuid(Uid::from_raw(54321)).map_err(e2s)?;
    if setuid(Uid::from_raw(0)).is_ok() || nix::unistd::geteuid().as_raw() != 54321 {
        return Err("still privileged".into());
    }
    Ok(())
}

#[test]
fn a_memfd_queue_works_for_another_user_holding_only_the_descriptor() {
    const TEST: &str = "a_memfd_queue_works_for_another_user_holding_only_the_descriptor";
    if child_role().is_some() {
        run_child(|| {
            let sock = socket_with_deadline(inherited("SHMQ_SOCK")?);
            drop_to_nobody()?;
            // Received after the drop: the descriptor is the only permission.
            let q = Spsc::<u64>::builder()
                .open_fd(memfd::recv_fd(&sock).map_err(e2s)?)
                .map_err(e2s)?;
            // Attaching takes an OFD lock through /proc/self/fd as uid 54321.
            let mut rx = q.consumer().map_err(e2s)?;
            for i in 0..ITEMS {
                let v = rx
                    .pop_timeout(DEADLINE)
                    .map_err(|e| format!("pop {i}: {e}"))?;
                if v != i {
                    return Err(format!("got {v}, expected {i}"));
                }
            }
            (&sock)
                .write_all(&nix::unistd::geteuid().as_raw().to_le_bytes())
                .map_err(e2s)
        });
    }
    if !nix::unistd::geteuid().is_root() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {TEST}: needs root to run the child as another uid; NOT checked"
        );
        return;
    }
    let q = Spsc::<u64>::builder().capacity(64).create_memfd().unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut ours = socket_with_deadline(ours.into());
    let mut kid = spawn_with(TEST, "other-user", &[], |cmd| {
        memfd::inherit_fd(cmd, theirs.into(), "SHMQ_SOCK").unwrap();
    });
    memfd::send_fd(&ours, q.dup_fd().unwrap()).unwrap();
    let mut tx = q.producer().unwrap();
    for i in 0..ITEMS {
        tx.push_timeout(i, DEADLINE).unwrap();
    }
    let mut uid = [0u8; 4];
    ours.read_exact(&mut uid).unwrap();
    assert_eq!(
        u32::from_le_bytes(uid),
        54321,
        "the consumer ran as another user"
    );
    kid.success();
    assert!(tx.try_push(0).unwrap_err().is_disconnected());
}

#[test]
fn a_truncated_named_segment_kills_its_peer_with_sigbus() {
    // The failure memfd seals prevent, shown on a named segment.
    const TEST: &str = "a_truncated_named_segment_kills_its_peer_with_sigbus";
    use std::os::unix::process::ExitStatusExt;
    if child_role().is_some() {
        run_child(|| {
            let mut sock = socket_with_deadline(inherited("SHMQ_SOCK")?);
            let q = Spsc::<u64>::open(&common::child_arg("NAME")).map_err(e2s)?;
            let mut rx = q.consumer().map_err(e2s)?;
            sock.write_all(b"A").map_err(e2s)?;
            // Keep touching the segment until the parent truncates it.
            let end = Instant::now() + DEADLINE;
            while Instant::now() < end {
                let _ = rx.pop_timeout(Duration::from_millis(10));
            }
            Err("survived the truncation".into())
        });
    }
    let shm = Shm::new("memfd-sigbus");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut ours = socket_with_deadline(ours.into());
    let mut kid = spawn_with(TEST, "victim", &[("NAME", shm.name().to_owned())], |cmd| {
        memfd::inherit_fd(cmd, theirs.into(), "SHMQ_SOCK").unwrap();
    });
    let mut attached = [0u8; 1];
    ours.read_exact(&mut attached).unwrap();
    // Unmap ours first: we would fault too.
    drop(q);
    // Any process of the user can do this; nothing in POSIX shm stops it.
    File::options()
        .write(true)
        .open(format!("/dev/shm{}", shm.name()))
        .unwrap()
        .set_len(0)
        .unwrap();
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = kid.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the child survived the truncation");
        // Polling with a deadline; there is no portable wait-with-timeout.
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status}");
}
