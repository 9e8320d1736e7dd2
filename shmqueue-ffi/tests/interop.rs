//! C processes on the same rings as this Rust process: 10^6 items each way
//! in order, dead peers detected within a second both ways, typed errors at
//! open. The C peer is `tests/c/peer.c`, compiled here with the system `cc`
//! against the crate's static library.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shmqueue::broadcast::{self, Broadcast, Start};
use shmqueue::{ByteRing, Mpmc, PopError, RecvError, Spsc, TryPushError};

const N: u64 = 1_000_000;
/// Bound on any one wait in this file: a hung peer fails the test.
const DEADLINE: Duration = Duration::from_secs(30);

fn target_dir() -> PathBuf {
    // The test binary is target/<profile>/deps/interop-<hash>.
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The static library `cargo test` built alongside this test (the crate's
/// lib target has every crate type, built together); built on demand if a
/// partial build left it out.
fn staticlib() -> PathBuf {
    let dir = target_dir();
    let lib = dir.join("libshmqueue_ffi.a");
    if !lib.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "shmqueue-ffi", "--lib"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build -p shmqueue-ffi failed");
    }
    assert!(lib.exists(), "no {}", lib.display());
    lib
}

/// `tests/c/peer.c`, compiled once per test binary.
fn peer_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let src_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        // In the target dir (build output). Built under a name of this
        // process's own, then renamed into place: a concurrent run never
        // sees a half-written binary, and runs do not pile up copies.
        let dir = target_dir().join("shmq-ffi-c");
        std::fs::create_dir_all(&dir).expect("mkdir target/<profile>/shmq-ffi-c");
        let tmp = dir.join(format!("peer.{}.tmp", std::process::id()));
        let out = dir.join("peer");
        let st = Command::new("cc")
            .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(src_dir.join("include"))
            .arg(src_dir.join("tests/c/peer.c"))
            .arg(staticlib())
            .args(["-lpthread", "-ldl", "-lm", "-lrt", "-o"])
            .arg(&tmp)
            .status()
            .expect("run cc (is a C compiler installed?)");
        assert!(st.success(), "cc failed to build tests/c/peer.c");
        std::fs::rename(&tmp, &out).expect("rename the peer into place");
        out
    })
}

/// A segment name unique to this test and process, unlinked on drop (even
/// when the test fails).
struct Seg(String);

impl Seg {
    fn new(test: &str) -> Seg {
        let s = Seg(format!("/shmq-ffi-{test}-{}", std::process::id()));
        let _ = shmqueue::unlink(&s.0);
        s
    }
}

impl Drop for Seg {
    fn drop(&mut self) {
        let _ = shmqueue::unlink(&self.0);
    }
}

/// A child process that is SIGKILLed and reaped on drop unless it was
/// waited for; its waits have deadlines.
struct Peer {
    child: Option<Child>,
    pid: i32,
    stdout: Option<BufReader<ChildStdout>>,
    stdin: Option<ChildStdin>,
}

impl Peer {
    fn spawn(mut cmd: Command) -> Peer {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn peer");
        let pid = child.id() as i32;
        let stdout = child.stdout.take().map(BufReader::new);
        let stdin = child.stdin.take();
        Peer {
            child: Some(child),
            pid,
            stdout,
            stdin,
        }
    }

    fn c(args: &[&str]) -> Peer {
        let mut cmd = Command::new(peer_exe());
        cmd.args(args);
        Peer::spawn(cmd)
    }

    /// Read stdout lines until one ending in `want`, within the deadline.
    fn expect_line(&mut self, want: &str) {
        let want = want.to_string();
        self.line_where(move |l| l.ends_with(&want));
    }

    /// Read stdout lines until one starting with `prefix` and a space,
    /// within the deadline; the words after it.
    fn words_after(&mut self, prefix: &str) -> Vec<u64> {
        let p = format!("{prefix} ");
        let line = self.line_where(move |l| l.starts_with(&p));
        line.split_whitespace()
            .skip(1)
            .map(|w| w.parse().expect("a number"))
            .collect()
    }

    /// Read stdout lines until one (trimmed) that `pick` accepts, within
    /// the deadline; that line.
    fn line_where(&mut self, pick: impl Fn(&str) -> bool + Send + 'static) -> String {
        let mut out = self.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match out.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    // libtest prints "test name ... " before a child test's
                    // own output, on the same line.
                    Ok(_) if pick(line.trim_end()) => {
                        let _ = tx.send(Some((out, line.trim_end().to_string())));
                        return;
                    }
                    Ok(_) => {}
                }
            }
        });
        match rx.recv_timeout(DEADLINE) {
            Ok(Some((out, line))) => {
                self.stdout = Some(out);
                line
            }
            Ok(None) => panic!("peer {} closed stdout before saying the line", self.pid),
            Err(_) => panic!("peer {} did not say the line in time", self.pid),
        }
    }

    /// Write a line to the peer's stdin.
    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to the peer");
        stdin.flush().expect("flush to the peer");
    }

    /// Wait for exit within `limit`; kill it and fail otherwise.
    fn wait_ok(mut self, limit: Duration) {
        let mut child = self.child.take().expect("child");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(limit) {
            Ok(Ok(st)) => assert!(st.success(), "peer {} failed: {st}", self.pid),
            Ok(Err(e)) => panic!("wait for peer: {e}"),
            Err(_) => {
                kill(self.pid);
                panic!("peer {} did not finish within {limit:?}: killed", self.pid);
            }
        }
    }

    fn kill(&mut self) {
        kill(self.pid);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
    }
}

fn kill(pid: i32) {
    // SAFETY: kill(2) with a pid we spawned and have not reaped (so it
    // names our child, alive or a zombie) and a valid signal.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// C producer -> Rust consumer, `N` items, order checked.
fn c_to_rust(kind: &str, test: &str) {
    let seg = Seg::new(test);
    let t0 = Instant::now();
    let mut pop: Box<dyn FnMut() -> Result<u64, PopError>> = if kind == "mpmc" {
        let q = Mpmc::<u64>::create(&seg.0, 4096).unwrap();
        let mut rx = q.consumer().unwrap();
        Box::new(move || rx.pop_timeout(DEADLINE))
    } else {
        let q = Spsc::<u64>::create(&seg.0, 4096).unwrap();
        let mut rx = q.consumer().unwrap();
        Box::new(move || rx.pop_timeout(DEADLINE))
    };
    let mut peer = Peer::c(&["produce", &seg.0, kind, &N.to_string()]);
    // An MPMC consumer that has never seen a producer would call the queue
    // drained and deserted: start once the C producer holds its role.
    peer.expect_line("attached");
    for i in 0..N {
        assert_eq!(pop().unwrap(), i, "item {i} out of order");
    }
    // The C producer freed its endpoint: drained and gone.
    assert_eq!(pop(), Err(PopError::Disconnected));
    peer.wait_ok(DEADLINE);
    eprintln!("{kind}: C -> Rust, {N} items in {:?}", t0.elapsed());
}

/// Rust producer -> C consumer, `N` items; the C side checks the order and
/// then sees the Rust producer gone.
fn rust_to_c(kind: &str, test: &str) {
    let seg = Seg::new(test);
    let t0 = Instant::now();
    let mut push: Box<dyn FnMut(u64)> = if kind == "mpmc" {
        let q = Mpmc::<u64>::create(&seg.0, 4096).unwrap();
        let mut tx = q.producer().unwrap();
        Box::new(move |i| tx.push_timeout(i, DEADLINE).unwrap())
    } else {
        let q = Spsc::<u64>::create(&seg.0, 4096).unwrap();
        let mut tx = q.producer().unwrap();
        Box::new(move |i| tx.push_timeout(i, DEADLINE).unwrap())
    };
    let mut peer = Peer::c(&["consume", &seg.0, kind, &N.to_string()]);
    peer.expect_line("attached");
    for i in 0..N {
        push(i);
    }
    drop(push);
    peer.wait_ok(DEADLINE);
    eprintln!("{kind}: Rust -> C, {N} items in {:?}", t0.elapsed());
}

#[test]
fn spsc_c_producer_rust_consumer() {
    c_to_rust("spsc", "spsc-c2r");
}

#[test]
fn spsc_rust_producer_c_consumer() {
    rust_to_c("spsc", "spsc-r2c");
}

#[test]
fn mpmc_c_producer_rust_consumer() {
    c_to_rust("mpmc", "mpmc-c2r");
}

#[test]
fn mpmc_rust_producer_c_consumer() {
    rust_to_c("mpmc", "mpmc-r2c");
}

/// A consumer of either kind, for the kill tests.
fn consumer_of(kind: &str, name: &str) -> Box<dyn FnMut(Duration) -> Result<u64, PopError>> {
    if kind == "mpmc" {
        let mut rx = Mpmc::<u64>::open(name).unwrap().consumer().unwrap();
        Box::new(move |t| rx.pop_timeout(t))
    } else {
        let mut rx = Spsc::<u64>::open(name).unwrap().consumer().unwrap();
        Box::new(move |t| rx.pop_timeout(t))
    }
}

/// A SIGKILLed C producer is seen as gone by the blocked Rust consumer
/// within a second, after it drained what the producer published.
fn killed_c_producer(kind: &str, test: &str) {
    let seg = Seg::new(test);
    let _q: Box<dyn std::any::Any> = if kind == "mpmc" {
        Box::new(Mpmc::<u64>::create(&seg.0, 64).unwrap())
    } else {
        Box::new(Spsc::<u64>::create(&seg.0, 64).unwrap())
    };
    let mut pop = consumer_of(kind, &seg.0);
    let mut peer = Peer::c(&["hold", &seg.0, kind]);
    peer.expect_line("ready");
    for i in 0..3 {
        assert_eq!(pop(DEADLINE).unwrap(), i);
    }
    let t0 = Instant::now();
    peer.kill();
    assert_eq!(pop(DEADLINE), Err(PopError::Disconnected));
    let took = t0.elapsed();
    eprintln!("{kind}: killed C producer detected in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn killed_c_producer_detected_by_rust() {
    killed_c_producer("spsc", "kill-c");
}

#[test]
fn killed_c_mpmc_producer_detected_by_rust() {
    killed_c_producer("mpmc", "kill-c-mpmc");
}

/// The reverse: a Rust producer process is SIGKILLed, and the C consumer
/// blocked in `shmq_pop_timeout` gets `SHMQ_DISCONNECTED` within a second.
/// The Rust process is this test binary again, running `rust_child_entry`;
/// it attaches first (an MPMC consumer that has never seen a producer
/// would call the queue deserted at once).
fn killed_rust_producer(kind: &str, test: &str) {
    let seg = Seg::new(test);
    let _q: Box<dyn std::any::Any> = if kind == "mpmc" {
        Box::new(Mpmc::<u64>::create(&seg.0, 64).unwrap())
    } else if kind == "bcast" {
        Box::new(Broadcast::<u64>::create(&seg.0, 64).unwrap())
    } else {
        Box::new(Spsc::<u64>::create(&seg.0, 64).unwrap())
    };
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "rust_child_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("SHMQ_FFI_CHILD", &seg.0)
    .env("SHMQ_FFI_CHILD_KIND", kind);
    let mut rust = Peer::spawn(cmd);
    rust.expect_line("ready");
    let mode = if kind == "bcast" {
        "bcast-await-death"
    } else {
        "await-death"
    };
    let mut c = Peer::c(&[mode, &seg.0, kind]);
    c.expect_line("ready");
    let t0 = Instant::now();
    rust.kill();
    c.expect_line("disconnected");
    let took = t0.elapsed();
    eprintln!("{kind}: killed Rust producer detected by C in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    c.wait_ok(DEADLINE);
}

#[test]
fn killed_rust_producer_detected_by_c() {
    killed_rust_producer("spsc", "kill-rust");
}

#[test]
fn killed_rust_mpmc_producer_detected_by_c() {
    killed_rust_producer("mpmc", "kill-rust-mpmc");
}

/// The broadcast form: a C subscriber blocked in `shmq_recv_timeout` sees
/// the SIGKILLed Rust publisher gone within a second, after reading what
/// it published.
#[test]
fn killed_rust_publisher_detected_by_c_subscriber() {
    killed_rust_producer("bcast", "kill-rust-bcast");
}

/// Not a test of its own: the Rust producer process of the
/// `killed_rust_*` tests (does nothing unless one of them started it).
#[test]
fn rust_child_entry() {
    let Ok(name) = std::env::var("SHMQ_FFI_CHILD") else {
        return;
    };
    let kind = std::env::var("SHMQ_FFI_CHILD_KIND").unwrap_or_default();
    let mut push: Box<dyn FnMut(u64)> = match kind.as_str() {
        "mpmc" => {
            let mut tx = Mpmc::<u64>::open(&name).unwrap().producer().unwrap();
            Box::new(move |i| tx.push_timeout(i, DEADLINE).unwrap())
        }
        "bcast" => {
            let mut tx = Broadcast::<u64>::open(&name).unwrap().publisher().unwrap();
            Box::new(move |i| tx.publish_timeout(i, DEADLINE).unwrap())
        }
        _ => {
            let mut tx = Spsc::<u64>::open(&name).unwrap().producer().unwrap();
            Box::new(move |i| tx.push_timeout(i, DEADLINE).unwrap())
        }
    };
    for i in 0..3 {
        push(i);
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    // Wait to be killed; a closed stdin (the test died) ends us too.
    let mut buf = String::new();
    let _ = std::io::stdin().read_line(&mut buf);
    drop(push);
}

/// Wrong element size, schema and kind at open are typed codes; zeroed,
/// freed and wrong-kind handles are `SHMQ_ERR_INVALID_HANDLE` (tests/c/peer.c,
/// mode `errors`).
#[test]
fn c_open_errors_are_typed() {
    let seg = Seg::new("errors");
    let _q = Spsc::<u64>::create(&seg.0, 16).unwrap();
    Peer::c(&["errors", &seg.0]).wait_ok(DEADLINE);
}

const MSGS: u64 = 200_000;

fn check_msg(i: u64, m: &[u8]) {
    assert_eq!(m.len() as u64, i % 300, "message {i} length");
    for (j, b) in m.iter().enumerate() {
        assert_eq!(*b as u64, (i + j as u64) % 251, "message {i} byte {j}");
    }
}

/// Byte ring, C sender -> Rust receiver: lengths 0..300, contents checked.
#[test]
fn bytes_c_producer_rust_consumer() {
    let seg = Seg::new("bytes-c2r");
    let t0 = Instant::now();
    let ring = ByteRing::create(&seg.0, 1 << 16).unwrap();
    let mut rx = ring.consumer().unwrap();
    let peer = Peer::c(&["bytes-produce", &seg.0, "-", &MSGS.to_string()]);
    let mut buf = Vec::new();
    for i in 0..MSGS {
        rx.recv_timeout(&mut buf, DEADLINE).unwrap();
        check_msg(i, &buf);
    }
    peer.wait_ok(DEADLINE);
    assert_eq!(
        rx.recv_timeout(&mut buf, DEADLINE),
        Err(RecvError::Disconnected)
    );
    eprintln!("bytes: C -> Rust, {MSGS} messages in {:?}", t0.elapsed());
}

/// Byte ring, Rust sender -> C receiver.
#[test]
fn bytes_rust_producer_c_consumer() {
    let seg = Seg::new("bytes-r2c");
    let t0 = Instant::now();
    let ring = ByteRing::create(&seg.0, 1 << 16).unwrap();
    let mut tx = ring.producer().unwrap();
    let peer = Peer::c(&["bytes-consume", &seg.0, "-", &MSGS.to_string()]);
    let mut m = Vec::new();
    for i in 0..MSGS {
        m.clear();
        m.extend((0..i % 300).map(|j| ((i + j) % 251) as u8));
        tx.send_timeout(&m, DEADLINE).unwrap();
    }
    drop(tx);
    peer.wait_ok(DEADLINE);
    eprintln!("bytes: Rust -> C, {MSGS} messages in {:?}", t0.elapsed());
}

/// A memfd ring made in Rust, handed to the C process as an inherited
/// descriptor (fd 3), 10^5 items through it.
#[test]
fn memfd_rust_producer_c_consumer_by_descriptor() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    const M: u64 = 100_000;
    let q = Spsc::<u64>::builder()
        .capacity(1024)
        .create_memfd()
        .unwrap();
    let fd = q.dup_fd().unwrap();
    let raw = fd.as_raw_fd();
    let mut cmd = Command::new(peer_exe());
    cmd.args(["fd-consume", "3", "-", &M.to_string()]);
    // SAFETY: the closure runs in the forked child before exec and calls
    // only dup2 and fcntl, which are async-signal-safe. dup2 onto 3 clears
    // close-on-exec for the copy; if the descriptor already is 3, dup2
    // would do nothing, so clear the flag by hand. Either way the C peer
    // inherits it as fd 3.
    unsafe {
        cmd.pre_exec(move || {
            let r = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let peer = Peer::spawn(cmd);
    drop(fd);
    let mut tx = q.producer().unwrap();
    for i in 0..M {
        tx.push_timeout(i, DEADLINE).unwrap();
    }
    drop(tx);
    peer.wait_ok(DEADLINE);
}

/// memfd create, dup and open-from-descriptor from C, for both rings, and
/// the element check on a descriptor.
#[test]
fn memfd_in_c() {
    Peer::c(&["memfd-local", "-"]).wait_ok(DEADLINE);
}

/// Stats and inspection from C agree with what the Rust side did: an MPMC
/// ring with one Rust producer, one Rust consumer and 5 items, then the C
/// process's own producer; SPSC and byte-ring stats on memfd rings.
#[test]
fn stats_and_inspect_from_c() {
    let seg = Seg::new("stats");
    let q = Mpmc::<u64>::create(&seg.0, 64).unwrap();
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    for i in 0..5 {
        tx.try_push(i).unwrap();
    }
    Peer::c(&["stats", &seg.0]).wait_ok(DEADLINE);
    // The C producer's item is there, after ours.
    for i in 0..6 {
        assert_eq!(rx.try_pop().unwrap(), i);
    }
}

/// A SIGKILLed C byte-ring producer is seen as gone by the blocked Rust
/// consumer within a second, after it drained what was sent.
#[test]
fn killed_c_bytes_producer_detected_by_rust() {
    let seg = Seg::new("kill-c-bytes");
    let ring = ByteRing::create(&seg.0, 4096).unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut peer = Peer::c(&["bytes-hold", &seg.0]);
    peer.expect_line("ready");
    let mut buf = Vec::new();
    for i in 0..3u8 {
        rx.recv_timeout(&mut buf, DEADLINE).unwrap();
        assert_eq!(buf, [b'm', b'0' + i]);
    }
    let t0 = Instant::now();
    peer.kill();
    assert_eq!(
        rx.recv_timeout(&mut buf, DEADLINE),
        Err(RecvError::Disconnected)
    );
    let took = t0.elapsed();
    eprintln!("bytes: killed C producer detected in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// Broadcast, Rust publisher -> C subscriber, `N` items on a lossless
/// ring; the C side checks the order, then sees the publisher gone.
#[test]
fn broadcast_rust_publisher_c_subscriber() {
    let seg = Seg::new("bcast-r2c");
    let t0 = Instant::now();
    let q = Broadcast::<u64>::builder()
        .capacity(4096)
        .lossless()
        .create(&seg.0)
        .unwrap();
    let mut tx = q.publisher().unwrap();
    let mut peer = Peer::c(&["bcast-subscribe", &seg.0, "-", &N.to_string()]);
    // The C subscriber starts at the latest item: publish once it gates us.
    peer.expect_line("attached");
    for i in 0..N {
        tx.publish_timeout(i, DEADLINE).unwrap();
    }
    drop(tx);
    peer.wait_ok(DEADLINE);
    eprintln!("broadcast: Rust -> C, {N} items in {:?}", t0.elapsed());
}

/// Broadcast, C publisher -> Rust subscriber, `N` items in order; the C
/// publisher also finds the role taken by itself.
#[test]
fn broadcast_c_publisher_rust_subscriber() {
    let seg = Seg::new("bcast-c2r");
    let t0 = Instant::now();
    let q = Broadcast::<u64>::builder()
        .capacity(4096)
        .create(&seg.0)
        .unwrap();
    let mut rx = q.subscribe(Start::Latest).unwrap();
    let mut peer = Peer::c(&["bcast-publish", &seg.0, "-", &N.to_string()]);
    peer.expect_line("attached");
    for i in 0..N {
        assert_eq!(
            rx.recv_timeout(DEADLINE).unwrap(),
            i,
            "item {i} out of order"
        );
    }
    assert_eq!(
        rx.recv_timeout(DEADLINE),
        Err(broadcast::RecvError::Disconnected)
    );
    peer.wait_ok(DEADLINE);
    let s = q.stats();
    assert_eq!((s.published, s.publisher, s.laps), (N, None, 0));
    eprintln!("broadcast: C -> Rust, {N} items in {:?}", t0.elapsed());
}

/// A C subscriber holding a lossless ring full is SIGKILLed: the Rust
/// publisher blocked on it goes on within a second, and the dead
/// subscriber is gone from the stats.
#[test]
fn killed_c_subscriber_stops_gating_rust_publisher() {
    let seg = Seg::new("bcast-kill-sub");
    let q = Broadcast::<u64>::builder()
        .capacity(64)
        .lossless()
        .create(&seg.0)
        .unwrap();
    let mut tx = q.publisher().unwrap();
    let mut peer = Peer::c(&["bcast-hold", &seg.0]);
    peer.expect_line("ready");
    for i in 0..64 {
        tx.try_publish(i).unwrap();
    }
    // The C subscriber has read nothing: it holds the ring full.
    assert!(matches!(tx.try_publish(64), Err(TryPushError::Full(64))));
    let s = q.stats();
    assert_eq!(s.subscribers.len(), 1);
    assert_eq!(
        (
            s.subscribers[0].pid,
            s.subscribers[0].alive,
            s.subscribers[0].lag
        ),
        (peer.pid as u32, true, 64)
    );
    // Blocked publishes from another thread, so the wait is real; the kill
    // happens while it waits.
    let (done_tx, done_rx) = mpsc::channel();
    let publisher = std::thread::spawn(move || {
        let r = tx.publish_timeout(64, DEADLINE);
        let _ = done_tx.send(Instant::now());
        r.map(|_| tx)
    });
    let t0 = Instant::now();
    peer.kill();
    let done = done_rx
        .recv_timeout(DEADLINE)
        .expect("the publisher returned");
    let tx = publisher.join().unwrap().expect("publish after the kill");
    let took = done.saturating_duration_since(t0);
    eprintln!("broadcast: killed C subscriber dropped in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(tx.position(), 65);
    let s = q.stats();
    assert!(s.subscribers.is_empty(), "{:?}", s.subscribers);
    assert_eq!(s.evictions, 0, "a dead subscriber is dropped, not evicted");
}

/// Overwrite ring: a slow C subscriber gets `SHMQ_LAGGED` with the same
/// missed count a Rust subscriber in the same place gets, and both resume
/// at the same item.
#[test]
fn broadcast_lagged_c_subscriber_missed_count_matches_rust() {
    const CAP: u64 = 10;
    const PUBLISHED: u64 = 1003;
    let seg = Seg::new("bcast-lag");
    let q = Broadcast::<u64>::builder()
        .capacity(CAP as usize)
        .overwrite()
        .create(&seg.0)
        .unwrap();
    let mut tx = q.publisher().unwrap();
    let mut rust = q.subscribe(Start::Latest).unwrap();
    let mut peer = Peer::c(&["bcast-lag", &seg.0]);
    peer.expect_line("ready");
    for i in 0..PUBLISHED {
        tx.try_publish(i).unwrap();
    }
    let missed = match rust.try_recv() {
        Err(broadcast::TryRecvError::Lagged { missed }) => missed,
        other => panic!("the Rust subscriber got {other:?}"),
    };
    // What the library's docs promise: of the last `CAP` items, the
    // `CAP - 1` no publish in flight can be overwriting are still there.
    assert_eq!(missed, PUBLISHED - (CAP - 1));
    let resume = rust.position();
    peer.say("go");
    let lagged = peer.words_after("lagged");
    assert_eq!(
        lagged,
        [missed, missed, resume],
        "C: missed, total missed, position"
    );
    let resumed = peer.words_after("resumed");
    assert_eq!(
        resumed,
        [resume, PUBLISHED - resume],
        "C: first item, count"
    );
    peer.wait_ok(DEADLINE);
    for i in resume..PUBLISHED {
        assert_eq!(rust.try_recv().unwrap(), i);
    }
    assert_eq!(q.stats().laps, 2, "one lap each, Rust and C");
}

/// A memfd broadcast ring from C: descriptors, the publisher role,
/// eviction past `max_lag` with its exact count, the start modes, stats,
/// misuse, and overwrite laps (tests/c/peer.c, mode `bcast-local`).
#[test]
fn broadcast_in_c() {
    Peer::c(&["bcast-local", "-"]).wait_ok(DEADLINE);
}
