//! The async endpoints (the library's `tokio` feature, issue #13) against
//! their sync counterparts and tokio's own channels.
//!
//! * `aio_wakeup/*`: a ping-pong where every hop sleeps (rings of capacity 4
//!   with `spin(0)`), thread A pinned to CPU 0, its peer B to CPU 1;
//!   time/iter is one round trip, i.e. two wake-ups from a publish to the
//!   woken side running.
//!   - `sync<->sync`: both sides sync, `push` and `pop_timeout` (the futex).
//!   - `sync<->async`: A sync, B a task on a current-thread runtime echoing
//!     with `pop_async`/`push_async` (one hop of the two wakes a task through
//!     the process's waiter thread): the shape of the ignored
//!     `wake_up_latency` test in `shmqueue/tests/aio.rs`.
//!   - `async<->async`: both sides tasks, each on its own current-thread
//!     runtime on its own thread: every hop wakes a task.
//!   - `tokio mpsc`: the same between two tasks (two runtimes, two threads)
//!     over two `tokio::sync::mpsc` channels.
//!   - `unix socket 2 procs`: a task in this process writes 8 bytes to a
//!     `tokio::net::UnixStream` and awaits the echo from a task in a child
//!     process (this binary re-executed, pinned to CPU 1, its socket end as
//!     stdin).
//! * `aio_stream/*`: a busy sync producer (a `try_push` spin loop on CPU 0)
//!   streams `u64`s through a 1024-item ring to a consumer on CPU 1:
//!   - `sync spin`: `try_pop` spin loop (the consumer never sleeps);
//!   - `async Stream`: the consumer's `into_stream()` polled by a task on a
//!     current-thread runtime;
//!   - `tokio mpsc`: `try_send` spin loop into a `tokio::sync::mpsc` channel
//!     of the same capacity, `recv().await` in a task.
//!
//! All runtimes are `new_current_thread().enable_all()`, as an application
//! would build them; a runtime's batch runs under one `tokio::time::timeout`
//! (a wedged peer fails the batch instead of hanging it), the sync waits
//! under `pop_timeout` and spin loops give up after [`DEADLINE`]. Rings are
//! memfd rings: nothing is left in `/dev/shm`.
//!
//! The process's waiter thread (the library's `futex_waitv` thread, which
//! wakes awaiting tasks) is not pinned: on a 2-core machine it shares a core
//! with one of the two benchmark threads.
//!
//! ## Interleaved comparison
//!
//! As in the other benches (see `benches/spsc.rs`): every contender of a
//! comparison is set up at once and each round runs one batch of each, back
//! to back; ratios are medians of per-round ratios, with the goals:
//!
//! * wake-up: `async<->async` / `sync<->sync` <= 1.2 (every hop wakes a
//!   task, so this is the per-hop ratio), and `sync<->async` /
//!   `sync<->sync` <= 1.2 (only half the hops are async: a weaker check);
//!   tokio mpsc and the Unix socket for comparison.
//! * stream: `async Stream` / `sync spin` throughput >= 0.8; tokio mpsc for
//!   comparison.
//!
//! Run with `SHMQ_INTERLEAVED=only cargo bench --bench aio` (just the
//! interleaved tables, ~1 min), `cargo bench --bench aio` (also criterion),
//! `SHMQ_ROUNDS=n` rounds (default 21), `SHMQ_RAW=1` every round's value,
//! `SHMQ_PIN=0` leaves every thread unpinned (on a loaded machine a pinned
//! sleeper waits for its core; the ignored test runs unpinned).

#[macro_use]
// No atomic floors, ping-pong batch or named segments here (memfd rings).
#[allow(dead_code, unused_macros)]
mod common;

use std::future::{poll_fn, Future};
use std::hint::spin_loop;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use futures_core::Stream;
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use shmqueue::spsc::{Consumer, Producer};
use shmqueue::Spsc;
use tokio::net::UnixStream;
use tokio::runtime::Runtime;

use common::{
    config, criterion_group_of, interleave, rounds, scale, Bench, Crew, Goal, Layout, Member,
    Timed, ANY_CPU, CAP, CPU_A, CPU_B, STREAM_BATCH,
};

/// Round trips per wake-up batch (each ~10 µs: a batch takes ~0.2 s).
const WAKE_BATCH: u64 = 1 << 14;
/// Longest any single wait may take (a sync `pop_timeout`, a spin loop).
const DEADLINE: Duration = Duration::from_secs(10);
/// Longest a runtime's batch may take (under the harness's own 120 s).
const BATCH_DEADLINE: Duration = Duration::from_secs(60);
/// Set in the environment of the re-executed Unix-socket echo child.
const ECHO_CHILD_ENV: &str = "SHMQ_AIO_BENCH_ECHO_CHILD";
/// Column widths of the interleaved tables.
const LAYOUT: Layout = Layout {
    name: 20,
    ratio: 42,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A current-thread runtime as an application builds it (I/O and time).
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Run `fut` to completion on `rt`, failing if it takes [`BATCH_DEADLINE`].
fn block_on_bounded<F: Future>(rt: &Runtime, what: &str, fut: F) -> F::Output {
    rt.block_on(async { tokio::time::timeout(BATCH_DEADLINE, fut).await })
        .unwrap_or_else(|_| panic!("{what}: batch took over {BATCH_DEADLINE:?} (wedged peer?)"))
}

/// A memfd SPSC ring of `capacity` `u64`s (nothing to unlink) and its ends.
fn ring(capacity: usize, spin: Option<u32>) -> (Producer<u64>, Consumer<u64>) {
    let mut b = Spsc::<u64>::builder().capacity(capacity);
    if let Some(s) = spin {
        b = b.spin(s);
    }
    let q = b.create_memfd().expect("create memfd ring");
    // The endpoints hold the mapping; the handle may go.
    (
        q.producer().expect("producer"),
        q.consumer().expect("consumer"),
    )
}

/// A ping-pong ring: capacity 4, `spin(0)`, so every wait sleeps at once.
fn sleeping_ring() -> (Producer<u64>, Consumer<u64>) {
    ring(4, Some(0))
}

/// The busy-wait of the spin loops ([`common::Spin`]'s cadence: a yield
/// every 2^20 tries) that gives up after [`DEADLINE`] without progress.
struct BoundedSpin {
    tries: u32,
    since: Option<Instant>,
}

impl BoundedSpin {
    #[inline(always)]
    fn new() -> Self {
        BoundedSpin {
            tries: 0,
            since: None,
        }
    }

    #[inline(always)]
    fn wait(&mut self) {
        self.tries = self.tries.wrapping_add(1);
        if self.tries & 0xF_FFFF == 0 {
            let since = *self.since.get_or_insert_with(Instant::now);
            assert!(since.elapsed() < DEADLINE, "spun {DEADLINE:?}: peer wedged");
            thread::yield_now();
        } else {
            spin_loop();
        }
    }
}

fn pin_to(cpu: usize) {
    let mut set = CpuSet::new();
    if let Err(e) = set
        .set(cpu)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set))
    {
        eprintln!("note: cannot pin to CPU {cpu} ({e}); running unpinned");
    }
}

/// Whether benchmark threads (and the echo child) are pinned: yes unless
/// `SHMQ_PIN=0`. On a loaded machine a woken thread pinned to a core that
/// runs something else waits for it to be preempted, which can dominate a
/// sleeping round trip; unpinned, the scheduler may run it on the other
/// core (the ignored `wake_up_latency` test runs unpinned).
fn pinned() -> bool {
    std::env::var("SHMQ_PIN").map_or(true, |v| v != "0")
}

/// [`Crew::pair`], pinned to [`CPU_A`]/[`CPU_B`] unless [`pinned`] says no.
fn pair<A, B>(timed: Timed, a: A, b: B) -> Crew
where
    A: FnMut(u64) + Send + 'static,
    B: FnMut(u64) + Send + 'static,
{
    let (cpu_a, cpu_b) = if pinned() {
        (CPU_A, CPU_B)
    } else {
        (ANY_CPU, ANY_CPU)
    };
    Crew::spawn(vec![
        Member {
            cpu: cpu_a,
            timed: timed == Timed::A,
            work: Box::new(a),
        },
        Member {
            cpu: cpu_b,
            timed: timed == Timed::B,
            work: Box::new(b),
        },
    ])
}

fn no_contender() -> Vec<common::ShmName> {
    Vec::new()
}

// ---------------------------------------------------------------------------
// Wake-up latency: ping-pong, every hop sleeps
// ---------------------------------------------------------------------------

/// A's side of the shm ping-pongs when A is sync: push `i`, sleep for the
/// echo.
fn sync_ping(tx: &mut Producer<u64>, rx: &mut Consumer<u64>, n: u64) {
    for i in 0..n {
        tx.push(i).expect("push");
        assert_eq!(rx.pop_timeout(DEADLINE), Ok(i), "wrong or no echo");
    }
}

fn wake_sync_sync() -> Bench {
    let (mut ping_tx, mut ping_rx) = sleeping_ring();
    let (mut pong_tx, mut pong_rx) = sleeping_ring();
    let crew = pair(
        Timed::A,
        move |n| sync_ping(&mut ping_tx, &mut pong_rx, n),
        move |n| {
            for _ in 0..n {
                let v = ping_rx.pop_timeout(DEADLINE).expect("ping");
                pong_tx.push(v).expect("push");
            }
        },
    );
    Bench {
        crew,
        _names: no_contender(),
    }
}

/// B's side when B is a task: `pop_async`, `push_async` back.
fn async_echo(rt: &Runtime, rx: &mut Consumer<u64>, tx: &mut Producer<u64>, n: u64) {
    block_on_bounded(rt, "async echo", async {
        for _ in 0..n {
            let v = rx.pop_async().await.expect("pop_async");
            tx.push_async(v).await.expect("push_async");
        }
    })
}

fn wake_sync_async() -> Bench {
    let (mut ping_tx, mut ping_rx) = sleeping_ring();
    let (mut pong_tx, mut pong_rx) = sleeping_ring();
    let rt = runtime();
    let crew = pair(
        Timed::A,
        move |n| sync_ping(&mut ping_tx, &mut pong_rx, n),
        move |n| async_echo(&rt, &mut ping_rx, &mut pong_tx, n),
    );
    Bench {
        crew,
        _names: no_contender(),
    }
}

fn wake_async_async() -> Bench {
    let (mut ping_tx, mut ping_rx) = sleeping_ring();
    let (mut pong_tx, mut pong_rx) = sleeping_ring();
    let (rt_a, rt_b) = (runtime(), runtime());
    let crew = pair(
        Timed::A,
        move |n| {
            block_on_bounded(&rt_a, "async ping", async {
                for i in 0..n {
                    ping_tx.push_async(i).await.expect("push_async");
                    assert_eq!(pong_rx.pop_async().await, Ok(i), "wrong echo");
                }
            })
        },
        move |n| async_echo(&rt_b, &mut ping_rx, &mut pong_tx, n),
    );
    Bench {
        crew,
        _names: no_contender(),
    }
}

fn wake_tokio_mpsc() -> Bench {
    let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u64>(4);
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u64>(4);
    let (rt_a, rt_b) = (runtime(), runtime());
    let crew = pair(
        Timed::A,
        move |n| {
            block_on_bounded(&rt_a, "mpsc ping", async {
                for i in 0..n {
                    ping_tx.send(i).await.expect("send");
                    assert_eq!(pong_rx.recv().await, Some(i), "wrong echo");
                }
            })
        },
        move |n| {
            block_on_bounded(&rt_b, "mpsc echo", async {
                for _ in 0..n {
                    let v = ping_rx.recv().await.expect("recv");
                    pong_tx.send(v).await.expect("send");
                }
            })
        },
    );
    Bench {
        crew,
        _names: no_contender(),
    }
}

/// Fill `buf` from `s`; `Ok(false)` on a clean end of stream before any byte.
async fn read_exact(s: &UnixStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        s.readable().await?;
        match s.try_read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

async fn write_all(s: &UnixStream, buf: &[u8]) -> io::Result<()> {
    let mut put = 0;
    while put < buf.len() {
        s.writable().await?;
        match s.try_write(&buf[put..]) {
            Ok(k) => put += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The re-executed child: pinned to [`CPU_B`], echoes 8-byte messages on
/// its stdin (a Unix socket) until the parent closes its end.
fn echo_child() {
    if pinned() {
        pin_to(CPU_B);
    }
    let fd: OwnedFd = io::stdin().as_fd().try_clone_to_owned().expect("dup stdin");
    let sock = std::os::unix::net::UnixStream::from(fd);
    sock.set_nonblocking(true).expect("nonblocking");
    let rt = runtime();
    rt.block_on(async {
        let s = UnixStream::from_std(sock).expect("register socket");
        let mut buf = [0u8; 8];
        while read_exact(&s, &mut buf).await.expect("read") {
            write_all(&s, &buf).await.expect("write");
        }
    });
}

/// The parent's end: its socket, its runtime and the echo child, which is
/// waited for (bounded, then killed) once the socket is closed.
struct SocketPeer {
    rt: Runtime,
    sock: Option<UnixStream>,
    child: Child,
}

impl SocketPeer {
    fn spawn() -> SocketPeer {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        // std's sockets are close-on-exec: the child gets only `theirs`, as
        // its stdin, and sees the end of stream when we close `ours`.
        let child = Command::new(std::env::current_exe().expect("current_exe"))
            .env(ECHO_CHILD_ENV, "1")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the echo child");
        ours.set_nonblocking(true).expect("nonblocking");
        let rt = runtime();
        let sock = {
            let _guard = rt.enter();
            UnixStream::from_std(ours).expect("register socket")
        };
        SocketPeer {
            rt,
            sock: Some(sock),
            child,
        }
    }

    fn ping(&mut self, n: u64) {
        let s = self.sock.as_ref().expect("socket");
        block_on_bounded(&self.rt, "socket ping", async {
            let mut buf = [0u8; 8];
            for i in 0..n {
                write_all(s, &i.to_ne_bytes()).await.expect("write");
                assert!(read_exact(s, &mut buf).await.expect("read"), "child gone");
                assert_eq!(u64::from_ne_bytes(buf), i, "wrong echo");
            }
        })
    }
}

impl Drop for SocketPeer {
    fn drop(&mut self) {
        drop(self.sock.take()); // the child's end of stream
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() && !thread::panicking() {
                        eprintln!("warning: echo child: {status}");
                    }
                    return;
                }
                Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(5)),
                _ => break,
            }
        }
        eprintln!("warning: echo child did not exit; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wake_unix_socket() -> Bench {
    let mut peer = SocketPeer::spawn();
    // B (CPU 1) idles: the echo is the child's, pinned to CPU 1.
    let crew = pair(Timed::A, move |n| peer.ping(n), |_| {});
    Bench {
        crew,
        _names: no_contender(),
    }
}

// ---------------------------------------------------------------------------
// Streaming: busy sync producer, consumer sync / Stream / tokio mpsc
// ---------------------------------------------------------------------------

/// The busy producer of the shm streams: `0..n` by `try_push`, spinning.
fn busy_produce(tx: &mut Producer<u64>, n: u64) {
    for i in 0..n {
        shm_push!(tx, i, BoundedSpin);
    }
}

fn stream_sync_spin() -> Bench {
    let (mut tx, mut rx) = ring(CAP, None);
    let crew = pair(
        Timed::B,
        move |n| busy_produce(&mut tx, n),
        move |n| drain_sequence!(shm_pop!(rx, BoundedSpin), n),
    );
    Bench {
        crew,
        _names: no_contender(),
    }
}

fn stream_async() -> Bench {
    let (mut tx, rx) = ring(CAP, None);
    let mut stream = rx.into_stream();
    let rt = runtime();
    let crew = pair(
        Timed::B,
        move |n| busy_produce(&mut tx, n),
        move |n| {
            block_on_bounded(&rt, "Stream consumer", async {
                for i in 0..n {
                    let v = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx))
                        .await
                        .expect("stream ended")
                        .expect("corrupt");
                    assert_eq!(v, i, "out of sequence");
                }
            })
        },
    );
    Bench {
        crew,
        _names: no_contender(),
    }
}

fn stream_tokio_mpsc() -> Bench {
    use tokio::sync::mpsc::error::TrySendError;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(CAP);
    let rt = runtime();
    let crew = pair(
        Timed::B,
        move |n| {
            for i in 0..n {
                let mut w = BoundedSpin::new();
                loop {
                    match tx.try_send(i) {
                        Ok(()) => break,
                        Err(TrySendError::Full(_)) => w.wait(),
                        Err(TrySendError::Closed(_)) => panic!("mpsc receiver gone"),
                    }
                }
            }
        },
        move |n| {
            block_on_bounded(&rt, "mpsc consumer", async {
                for i in 0..n {
                    assert_eq!(rx.recv().await, Some(i), "out of sequence");
                }
            })
        },
    );
    Bench {
        crew,
        _names: no_contender(),
    }
}

// ---------------------------------------------------------------------------
// Criterion groups
// ---------------------------------------------------------------------------

fn wakeup(c: &mut Criterion) {
    criterion_group_of(
        c,
        "aio_wakeup",
        false,
        &[
            ("sync_sync", wake_sync_sync),
            ("sync_async", wake_sync_async),
            ("async_async", wake_async_async),
            ("tokio_mpsc", wake_tokio_mpsc),
            ("unix_socket_2procs", wake_unix_socket),
        ],
    );
}

fn stream(c: &mut Criterion) {
    criterion_group_of(
        c,
        "aio_stream",
        true,
        &[
            ("sync_spin", stream_sync_spin),
            ("async_stream", stream_async),
            ("tokio_mpsc", stream_tokio_mpsc),
        ],
    );
}

criterion_group! {
    name = benches;
    config = config();
    targets = wakeup, stream
}

// ---------------------------------------------------------------------------
// Interleaved comparison
// ---------------------------------------------------------------------------

fn interleaved(smoke: bool) {
    let rounds = rounds(smoke);
    let scale = |b: u64| scale(smoke, b);
    let started = Instant::now();
    let threads = if pinned() {
        format!("threads on CPUs {CPU_A} and {CPU_B}")
    } else {
        "threads unpinned (SHMQ_PIN=0)".to_string()
    };
    println!(
        "interleaved comparison, async endpoints ({threads}, u64 items; current-thread tokio \
         runtimes; the library's waiter thread unpinned)"
    );

    let (ss, sa, aa) = ("sync<->sync", "sync<->async", "async<->async");
    let (mpsc, sock) = ("tokio mpsc", "unix socket 2 procs");
    let s = interleave(
        &[
            (ss, wake_sync_sync()),
            (sa, wake_sync_async()),
            (aa, wake_async_async()),
            (mpsc, wake_tokio_mpsc()),
            (sock, wake_unix_socket()),
        ],
        scale(WAKE_BATCH),
        rounds,
        LAYOUT,
    );
    s.print(
        &format!(
            "wake-up ping-pong, every hop sleeps ({} round trips per batch)",
            scale(WAKE_BATCH)
        ),
        "round trip",
        false,
    );
    let goal = || Some(Goal::AtMost(1.2));
    s.ratio(
        "round trip async<->async / sync<->sync",
        aa,
        ss,
        false,
        goal(),
    );
    s.ratio(
        "round trip sync<->async / sync<->sync",
        sa,
        ss,
        false,
        goal(),
    );
    s.ratio("round trip tokio mpsc / sync<->sync", mpsc, ss, false, None);
    s.ratio(
        "round trip unix socket / sync<->sync",
        sock,
        ss,
        false,
        None,
    );
    s.ratio(
        "round trip async<->async / tokio mpsc",
        aa,
        mpsc,
        false,
        None,
    );
    s.ratio(
        "round trip async<->async / unix socket",
        aa,
        sock,
        false,
        None,
    );

    let (spin, strm) = ("sync spin", "async Stream");
    let s = interleave(
        &[
            (spin, stream_sync_spin()),
            (strm, stream_async()),
            (mpsc, stream_tokio_mpsc()),
        ],
        scale(STREAM_BATCH),
        rounds,
        LAYOUT,
    );
    s.print(
        &format!(
            "stream, busy sync producer ({} items per batch, capacity {CAP})",
            scale(STREAM_BATCH)
        ),
        "item",
        true,
    );
    let goal = Some(Goal::AtLeast(0.8));
    s.ratio(
        "throughput async Stream / sync spin",
        strm,
        spin,
        true,
        goal,
    );
    s.ratio("throughput tokio mpsc / sync spin", mpsc, spin, true, None);
    s.ratio(
        "throughput async Stream / tokio mpsc",
        strm,
        mpsc,
        true,
        None,
    );
    println!(
        "interleaved section took {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    if std::env::var_os(ECHO_CHILD_ENV).is_some() {
        echo_child();
        return;
    }
    common::main(interleaved, benches);
}
