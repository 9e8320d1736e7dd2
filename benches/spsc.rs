//! Throughput and latency of the SPSC ring, against `rtrb` and a bare atomic.
//!
//! * `stream/*`: one producer pinned to CPU 0 streams `iters` `u64`s through
//!   a 1024-item ring to a consumer pinned to CPU 1; the consumer's clock runs
//!   from the start barrier to the last item, so time/iter is the cost per item.
//! * `pingpong/*`: thread A (CPU 0) sends `i` and waits for B (CPU 1) to echo
//!   it back; time/iter is the round-trip time. `pingpong/atomic` bounces one
//!   value through a single cache-padded `AtomicU64`: the hardware floor.
//! * `single_thread/*`: push then pop on one thread, no contention.
//!
//! The two benchmark threads live as long as one benchmark and are reused by
//! every `iter_custom` call: each call hands them a batch size, both meet at a
//! spin barrier and the timed thread reports how long its side took.
//!
//! ## Interleaved comparison
//!
//! Criterion runs one benchmark after the other, and on a small VM the host
//! moves vCPUs between phases of a run: a floor measured a minute after the
//! thing it bounds can come out *slower* than it (seen: an rtrb round trip
//! of 117 ns against an atomic floor of 319 ns). So before the criterion
//! groups the binary runs every comparison the project's goals are stated
//! in *interleaved*: all contenders of a comparison are set up at once, and
//! each round runs one fixed-size batch of each, back to back (the starting
//! contender rotates). It prints per contender the median, quartiles and
//! extremes of ns/op over the rounds, then each ratio as the median of the
//! per-round ratios (two batches that ran within a fraction of a second of
//! each other), with its quartiles and, for reference, the ratio of the two
//! medians (which mixes rounds from different machine states).
//!
//! * stream: throughput shmqueue/rtrb (goal >= 1); also the blocking
//!   `push()`/`pop()`.
//! * ping-pong: round trip shmqueue/atomic (goal <= 1.6); also rtrb, the
//!   blocking calls, and "atomic two lines": a payload line written before a
//!   flag line, the least any ring with its index and slots in separate
//!   cache lines has to move per hop.
//! * single thread: push+pop, shmqueue against rtrb.
//!
//! Run with `cargo bench --bench spsc` (both parts, a minute or two), or
//! `SHMQ_INTERLEAVED=only cargo bench --bench spsc` for just the interleaved
//! tables (`SHMQ_INTERLEAVED=0`: just criterion). `SHMQ_ROUNDS=n` sets the
//! number of interleaved rounds (default 21), `SHMQ_RAW=1` also prints every
//! round's value (the host's phases show up as steps).

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use crossbeam_utils::CachePadded;
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use shmqueue::{Spsc, TryPopError, TryPushError};

/// Items the rings hold.
const CAP: usize = 1024;
/// CPU of the producer / ping side.
const CPU_A: usize = 0;
/// CPU of the consumer / echo side.
const CPU_B: usize = 1;
/// Longest a batch may take before the harness gives up (a wedged peer).
const BATCH_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Harness: pinning, waiting, a reusable pair of pinned threads.
// ---------------------------------------------------------------------------

/// Pin the calling thread to `cpu`; on failure say so once and run unpinned.
fn pin_to(cpu: usize) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let mut set = CpuSet::new();
    let r = set
        .set(cpu)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set));
    if let Err(e) = r {
        if !WARNED.swap(true, Ordering::Relaxed) {
            eprintln!("note: cannot pin a thread to CPU {cpu} ({e}); running unpinned");
        }
    }
}

/// Busy-wait helper. The threads are pinned to distinct cores, so the peer
/// always makes progress; after a long fruitless stretch it still yields, in
/// case pinning failed or something else was scheduled on the peer's core.
struct Spin(u32);

impl Spin {
    #[inline(always)]
    fn new() -> Self {
        Spin(0)
    }

    #[inline(always)]
    fn wait(&mut self) {
        self.0 = self.0.wrapping_add(1);
        if self.0 & 0xF_FFFF == 0 {
            thread::yield_now();
        } else {
            spin_loop();
        }
    }
}

/// A reusable barrier for exactly two spinning threads.
#[derive(Default)]
struct SpinBarrier {
    arrived: CachePadded<AtomicUsize>,
    generation: CachePadded<AtomicUsize>,
}

impl SpinBarrier {
    fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) == 1 {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            let mut spin = Spin::new();
            while self.generation.load(Ordering::Acquire) == generation {
                spin.wait();
            }
        }
    }
}

/// One side's work for a batch of `n`.
type Work = Box<dyn FnMut(u64) + Send>;

/// Which of the two threads reports the elapsed time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Timed {
    A,
    B,
}

/// Two long-lived threads, A pinned to [`CPU_A`] and B to [`CPU_B`], each
/// running its closure once per batch.
struct Pair {
    cmds: Vec<mpsc::Sender<u64>>,
    elapsed: mpsc::Receiver<Duration>,
    handles: Vec<JoinHandle<()>>,
}

impl Pair {
    fn spawn<A, B>(timed: Timed, a: A, b: B) -> Pair
    where
        A: FnMut(u64) + Send + 'static,
        B: FnMut(u64) + Send + 'static,
    {
        let barrier = Arc::new(SpinBarrier::default());
        let (elapsed_tx, elapsed) = mpsc::channel();
        let mut cmds = Vec::new();
        let mut handles = Vec::new();
        let sides: [(usize, bool, Work); 2] = [
            (CPU_A, timed == Timed::A, Box::new(a)),
            (CPU_B, timed == Timed::B, Box::new(b)),
        ];
        for (cpu, is_timed, mut work) in sides {
            let (tx, rx) = mpsc::channel::<u64>();
            let barrier = Arc::clone(&barrier);
            let elapsed_tx = elapsed_tx.clone();
            let h = thread::Builder::new()
                .name(format!("bench-cpu{cpu}"))
                .spawn(move || {
                    pin_to(cpu);
                    while let Ok(n) = rx.recv() {
                        barrier.wait();
                        let t0 = Instant::now();
                        work(n);
                        if is_timed {
                            let _ = elapsed_tx.send(t0.elapsed());
                        }
                    }
                })
                .expect("spawn benchmark thread");
            cmds.push(tx);
            handles.push(h);
        }
        Pair {
            cmds,
            elapsed,
            handles,
        }
    }

    /// Run one batch of `n` on both threads; the timed thread's elapsed time.
    fn run(&self, n: u64) -> Duration {
        for c in &self.cmds {
            c.send(n).expect("benchmark thread died");
        }
        self.elapsed
            .recv_timeout(BATCH_TIMEOUT)
            .expect("benchmark thread died or wedged")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.cmds.clear(); // closes the channels: the threads leave their loops
        if thread::panicking() {
            return; // a side may be wedged; don't join it
        }
        for h in self.handles.drain(..) {
            h.join().expect("benchmark thread panicked");
        }
    }
}

/// A uniquely named segment that is unlinked when dropped, panic or not.
struct ShmName(String);

impl ShmName {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        ShmName(format!("/shmq-bench-{}-{n}", std::process::id()))
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        if let Err(e) = shmqueue::unlink(&self.0) {
            eprintln!("warning: unlink {}: {e}", self.0);
        }
    }
}

/// A fresh shm ring and its two endpoints.
fn shm_ring() -> (
    ShmName,
    shmqueue::spsc::Producer<u64>,
    shmqueue::spsc::Consumer<u64>,
) {
    let name = ShmName::new();
    let q = Spsc::<u64>::create(&name.0, CAP).expect("create ring");
    let tx = q.producer().expect("producer");
    let rx = q.consumer().expect("consumer");
    (name, tx, rx)
}

// Push/pop adapters with one loop shape for both rings: spin until done.

#[inline(always)]
fn shm_push(tx: &mut shmqueue::spsc::Producer<u64>, mut v: u64) {
    let mut spin = Spin::new();
    loop {
        match tx.try_push(v) {
            Ok(()) => return,
            Err(TryPushError::Full(back)) => {
                v = back;
                spin.wait();
            }
            Err(e) => panic!("try_push: {e:?}"),
        }
    }
}

#[inline(always)]
fn shm_pop(rx: &mut shmqueue::spsc::Consumer<u64>) -> u64 {
    let mut spin = Spin::new();
    loop {
        match rx.try_pop() {
            Ok(v) => return v,
            Err(TryPopError::Empty) => spin.wait(),
            Err(e) => panic!("try_pop: {e:?}"),
        }
    }
}

#[inline(always)]
fn rtrb_push(tx: &mut rtrb::Producer<u64>, mut v: u64) {
    let mut spin = Spin::new();
    loop {
        match tx.push(v) {
            Ok(()) => return,
            Err(rtrb::PushError::Full(back)) => {
                assert!(!tx.is_abandoned(), "rtrb consumer gone");
                v = back;
                spin.wait();
            }
        }
    }
}

#[inline(always)]
fn rtrb_pop(rx: &mut rtrb::Consumer<u64>) -> u64 {
    let mut spin = Spin::new();
    loop {
        match rx.pop() {
            Ok(v) => return v,
            Err(rtrb::PopError::Empty) => {
                assert!(!rx.is_abandoned(), "rtrb producer gone");
                spin.wait();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Contenders: each builds its pair of pinned threads (and whatever must
// outlive them), shared by the criterion groups and the interleaved section.
// ---------------------------------------------------------------------------

/// A contender's running threads plus the shm names they use. Fields drop in
/// order: threads and endpoints go before the names are unlinked.
struct Bench {
    pair: Pair,
    _names: Vec<ShmName>,
}

impl Bench {
    fn run(&self, n: u64) -> Duration {
        self.pair.run(n)
    }
}

/// Consumer side of a stream: expects exactly `0..n` in order.
macro_rules! drain_sequence {
    ($pop:expr, $n:expr) => {{
        for i in 0..$n {
            let v = $pop;
            if v != i {
                panic!("out of sequence: expected {i}, got {v}");
            }
        }
    }};
}

fn stream_shm() -> Bench {
    let (name, mut tx, mut rx) = shm_ring();
    let pair = Pair::spawn(
        Timed::B,
        move |n| {
            for i in 0..n {
                shm_push(&mut tx, i);
            }
        },
        move |n| drain_sequence!(shm_pop(&mut rx), n),
    );
    Bench {
        pair,
        _names: vec![name],
    }
}

/// The same stream through the blocking `push()`/`pop()` (spin, then futex).
fn stream_shm_blocking() -> Bench {
    let (name, mut tx, mut rx) = shm_ring();
    let pair = Pair::spawn(
        Timed::B,
        move |n| {
            for i in 0..n {
                tx.push(i).expect("push");
            }
        },
        move |n| drain_sequence!(rx.pop().expect("pop"), n),
    );
    Bench {
        pair,
        _names: vec![name],
    }
}

fn stream_rtrb() -> Bench {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAP);
    let pair = Pair::spawn(
        Timed::B,
        move |n| {
            for i in 0..n {
                rtrb_push(&mut tx, i);
            }
        },
        move |n| drain_sequence!(rtrb_pop(&mut rx), n),
    );
    Bench {
        pair,
        _names: Vec::new(),
    }
}

fn pingpong_shm() -> Bench {
    let (ping_name, mut ping_tx, mut ping_rx) = shm_ring();
    let (pong_name, mut pong_tx, mut pong_rx) = shm_ring();
    let pair = Pair::spawn(
        Timed::A,
        move |n| {
            for i in 0..n {
                shm_push(&mut ping_tx, i);
                let r = shm_pop(&mut pong_rx);
                assert_eq!(r, i, "wrong echo");
            }
        },
        move |n| {
            for _ in 0..n {
                let v = shm_pop(&mut ping_rx);
                shm_push(&mut pong_tx, v);
            }
        },
    );
    Bench {
        pair,
        _names: vec![ping_name, pong_name],
    }
}

/// Ping-pong through the blocking `push()`/`pop()`.
fn pingpong_shm_blocking() -> Bench {
    let (ping_name, mut ping_tx, mut ping_rx) = shm_ring();
    let (pong_name, mut pong_tx, mut pong_rx) = shm_ring();
    let pair = Pair::spawn(
        Timed::A,
        move |n| {
            for i in 0..n {
                ping_tx.push(i).expect("push");
                let r = pong_rx.pop().expect("pop");
                assert_eq!(r, i, "wrong echo");
            }
        },
        move |n| {
            for _ in 0..n {
                let v = ping_rx.pop().expect("pop");
                pong_tx.push(v).expect("push");
            }
        },
    );
    Bench {
        pair,
        _names: vec![ping_name, pong_name],
    }
}

/// The floor for any ring that keeps its index and its slots in different
/// cache lines: per direction, a payload line written first and a flag line
/// written after it (Release); the reader spins on the flag (Acquire), then
/// reads the payload. Each hop moves two lines, the second only after the
/// first has arrived.
fn pingpong_atomic_two_lines() -> Bench {
    #[derive(Default)]
    struct Dir {
        flag: CachePadded<AtomicU64>,
        data: CachePadded<AtomicU64>,
    }
    let dirs = Arc::new([Dir::default(), Dir::default()]);
    let (da, db) = (Arc::clone(&dirs), Arc::clone(&dirs));
    let pair = Pair::spawn(
        Timed::A,
        move |n| {
            let (ping, pong) = (&da[0], &da[1]);
            let mut seq = ping.flag.load(Ordering::Relaxed);
            for i in 0..n {
                ping.data.store(i, Ordering::Relaxed);
                seq += 1;
                ping.flag.store(seq, Ordering::Release);
                let mut spin = Spin::new();
                while pong.flag.load(Ordering::Acquire) != seq {
                    spin.wait();
                }
                assert_eq!(pong.data.load(Ordering::Relaxed), i, "wrong echo");
            }
        },
        move |n| {
            let (ping, pong) = (&db[0], &db[1]);
            let mut seq = pong.flag.load(Ordering::Relaxed);
            for _ in 0..n {
                seq += 1;
                let mut spin = Spin::new();
                while ping.flag.load(Ordering::Acquire) != seq {
                    spin.wait();
                }
                let v = ping.data.load(Ordering::Relaxed);
                pong.data.store(v, Ordering::Relaxed);
                pong.flag.store(seq, Ordering::Release);
            }
        },
    );
    Bench {
        pair,
        _names: Vec::new(),
    }
}

/// The hardware floor: one value bounced through a single cache-padded
/// `AtomicU64`. A writes odd values, B answers with the next even one.
fn pingpong_atomic() -> Bench {
    let cell = Arc::new(CachePadded::new(AtomicU64::new(0)));
    let (ca, cb) = (Arc::clone(&cell), Arc::clone(&cell));
    let pair = Pair::spawn(
        Timed::A,
        move |n| {
            for _ in 0..n {
                let v = ca.load(Ordering::Relaxed) + 1; // even: our turn
                ca.store(v, Ordering::Release);
                let mut spin = Spin::new();
                while ca.load(Ordering::Acquire) != v + 1 {
                    spin.wait();
                }
            }
        },
        move |n| {
            for _ in 0..n {
                let mut spin = Spin::new();
                let mut v = cb.load(Ordering::Acquire);
                while v % 2 == 0 {
                    spin.wait();
                    v = cb.load(Ordering::Acquire);
                }
                cb.store(v + 1, Ordering::Release);
            }
        },
    );
    Bench {
        pair,
        _names: Vec::new(),
    }
}

fn pingpong_rtrb() -> Bench {
    let (mut ping_tx, mut ping_rx) = rtrb::RingBuffer::<u64>::new(CAP);
    let (mut pong_tx, mut pong_rx) = rtrb::RingBuffer::<u64>::new(CAP);
    let pair = Pair::spawn(
        Timed::A,
        move |n| {
            for i in 0..n {
                rtrb_push(&mut ping_tx, i);
                let r = rtrb_pop(&mut pong_rx);
                assert_eq!(r, i, "wrong echo");
            }
        },
        move |n| {
            for _ in 0..n {
                let v = rtrb_pop(&mut ping_rx);
                rtrb_push(&mut pong_tx, v);
            }
        },
    );
    Bench {
        pair,
        _names: Vec::new(),
    }
}

/// Push then pop on thread A (CPU 0), `n` times; B idles.
fn single_shm() -> Bench {
    let (name, mut tx, mut rx) = shm_ring();
    let pair = Pair::spawn(
        Timed::A,
        move |n| {
            for i in 0..n {
                tx.try_push(black_box(i)).expect("push into an empty ring");
                black_box(rx.try_pop().expect("pop what was just pushed"));
            }
        },
        |_| {},
    );
    Bench {
        pair,
        _names: vec![name],
    }
}

/// The same for rtrb, for reference.
fn single_rtrb() -> Bench {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAP);
    let pair = Pair::spawn(
        Timed::A,
        move |n| {
            for i in 0..n {
                tx.push(black_box(i)).expect("push into an empty ring");
                black_box(rx.pop().expect("pop what was just pushed"));
            }
        },
        |_| {},
    );
    Bench {
        pair,
        _names: Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Criterion groups (one contender after the other: see the interleaved
// section for comparisons)
// ---------------------------------------------------------------------------

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(1));
    for (name, make) in [
        ("shmqueue", stream_shm as fn() -> Bench),
        ("rtrb", stream_rtrb),
    ] {
        let bench = make();
        g.bench_function(name, |b| b.iter_custom(|iters| bench.run(iters)));
    }
    g.finish();
}

fn pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong");
    for (name, make) in [
        ("shmqueue", pingpong_shm as fn() -> Bench),
        ("atomic", pingpong_atomic),
        ("rtrb", pingpong_rtrb),
    ] {
        let bench = make();
        g.bench_function(name, |b| b.iter_custom(|iters| bench.run(iters)));
    }
    g.finish();
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("single_thread");
    g.throughput(Throughput::Elements(1));
    let (_name, mut tx, mut rx) = shm_ring();
    let mut i = 0u64;
    g.bench_function("shmqueue_push_pop", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            tx.try_push(black_box(i)).expect("push into an empty ring");
            rx.try_pop().expect("pop what was just pushed")
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = stream, pingpong, single_thread
}

// ---------------------------------------------------------------------------
// Interleaved comparison
// ---------------------------------------------------------------------------

/// Rounds of the interleaved comparison (`SHMQ_ROUNDS` overrides).
const ROUNDS: usize = 21;
/// Items per stream batch.
const STREAM_BATCH: u64 = 1 << 22;
/// Round trips per ping-pong batch.
const PINGPONG_BATCH: u64 = 1 << 16;
/// Push+pop pairs per single-thread batch.
const SINGLE_BATCH: u64 = 1 << 22;

/// Per-round nanoseconds per operation of each contender.
struct Samples {
    names: Vec<&'static str>,
    /// `ns[c][r]`: contender `c`, round `r`.
    ns: Vec<Vec<f64>>,
}

/// Run `rounds` rounds; in each, every contender runs one batch of `batch`,
/// back to back, so all of them see the same machine state (the host moves
/// vCPUs around between phases of a run). The starting contender rotates
/// from round to round so no one always goes first. One unrecorded warm-up
/// round comes first.
fn interleave(benches: &[(&'static str, Bench)], batch: u64, rounds: usize) -> Samples {
    let k = benches.len();
    let mut ns = vec![Vec::with_capacity(rounds); k];
    for round in 0..=rounds {
        for j in 0..k {
            let c = (round + j) % k;
            let t = benches[c].1.run(batch);
            if round > 0 {
                ns[c].push(t.as_nanos() as f64 / batch as f64);
            }
        }
    }
    Samples {
        names: benches.iter().map(|(n, _)| *n).collect(),
        ns,
    }
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// What a ratio is checked against.
enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Samples {
    fn of(&self, name: &str) -> &[f64] {
        let i = self
            .names
            .iter()
            .position(|n| *n == name)
            .expect("contender");
        &self.ns[i]
    }

    fn print(&self, title: &str, unit: &str, rate: bool) {
        println!("\n{title}: ns/{unit}, {} rounds", self.ns[0].len());
        println!(
            "  {:<18} {:>9} {:>9} {:>9} {:>9} {:>9}{}",
            "",
            "median",
            "p25",
            "p75",
            "min",
            "max",
            if rate { "  M items/s" } else { "" }
        );
        for (name, v) in self.names.iter().zip(&self.ns) {
            let m = median(v);
            let max = v.iter().copied().fold(f64::MIN, f64::max);
            let min = v.iter().copied().fold(f64::MAX, f64::min);
            print!(
                "  {name:<18} {m:>9.2} {:>9.2} {:>9.2} {min:>9.2} {max:>9.2}",
                quantile(v, 0.25),
                quantile(v, 0.75),
            );
            if rate {
                print!("  {:>10.1}", 1e3 / m);
            }
            println!();
        }
        if std::env::var_os("SHMQ_RAW").is_some() {
            for (name, v) in self.names.iter().zip(&self.ns) {
                let r: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
                println!("  raw {name:<14} {}", r.join(" "));
            }
        }
        println!("  per-round ratios: median [p25, p75; ratio of the medians]");
    }

    /// Print `num`'s time over `den`'s, or, if `throughput`, `den`'s time
    /// over `num`'s (a throughput ratio). The headline is the median of the
    /// per-round ratios, each from two batches that ran back to back; the
    /// ratio of the two medians mixes rounds from different machine states
    /// and is shown for reference only.
    fn ratio(&self, what: &str, num: &str, den: &str, throughput: bool, goal: Option<Goal>) {
        let (mut a, mut b) = (self.of(num), self.of(den));
        if throughput {
            std::mem::swap(&mut a, &mut b);
        }
        let paired: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        let m = median(&paired);
        print!(
            "  {what:<38} {m:>6.3} [{:.3}, {:.3}; {:.3}]",
            quantile(&paired, 0.25),
            quantile(&paired, 0.75),
            median(a) / median(b),
        );
        match goal {
            Some(Goal::AtLeast(g)) => print!("  goal >= {g}: {}", verdict(m >= g)),
            Some(Goal::AtMost(g)) => print!("  goal <= {g}: {}", verdict(m <= g)),
            None => {}
        }
        println!();
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// The comparisons the project's goals are stated in, each measured
/// interleaved. `smoke` (under `cargo test --benches`) runs one tiny round.
fn interleaved(smoke: bool) {
    let rounds = if smoke {
        1
    } else {
        std::env::var("SHMQ_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&r| r > 0)
            .unwrap_or(ROUNDS)
    };
    let scale = |b: u64| if smoke { 1024 } else { b };
    let started = Instant::now();
    println!(
        "interleaved comparison (threads on CPUs {CPU_A} and {CPU_B}, u64 items, capacity {CAP})"
    );

    let s = interleave(
        &[
            ("shmqueue", stream_shm()),
            ("rtrb", stream_rtrb()),
            ("shmqueue blocking", stream_shm_blocking()),
        ],
        scale(STREAM_BATCH),
        rounds,
    );
    s.print(
        &format!("stream ({} items per batch)", scale(STREAM_BATCH)),
        "item",
        true,
    );
    let (shm, blocking, rtrb) = ("shmqueue", "shmqueue blocking", "rtrb");
    let goal = Some(Goal::AtLeast(1.0));
    s.ratio("throughput shmqueue/rtrb", shm, rtrb, true, goal);
    s.ratio(
        "throughput shmqueue blocking/rtrb",
        blocking,
        rtrb,
        true,
        None,
    );

    let s = interleave(
        &[
            ("shmqueue", pingpong_shm()),
            ("atomic", pingpong_atomic()),
            ("rtrb", pingpong_rtrb()),
            ("atomic two lines", pingpong_atomic_two_lines()),
            ("shmqueue blocking", pingpong_shm_blocking()),
        ],
        scale(PINGPONG_BATCH),
        rounds,
    );
    s.print(
        &format!(
            "ping-pong ({} round trips per batch)",
            scale(PINGPONG_BATCH)
        ),
        "round trip",
        false,
    );
    let (atomic, two) = ("atomic", "atomic two lines");
    let goal = Some(Goal::AtMost(1.6));
    s.ratio("round trip shmqueue/atomic", shm, atomic, false, goal);
    s.ratio("round trip rtrb/atomic", rtrb, atomic, false, None);
    s.ratio(
        "round trip atomic two lines/atomic",
        two,
        atomic,
        false,
        None,
    );
    s.ratio(
        "round trip shmqueue/atomic two lines",
        shm,
        two,
        false,
        None,
    );
    s.ratio(
        "round trip shmqueue blocking/atomic",
        blocking,
        atomic,
        false,
        None,
    );

    let s = interleave(
        &[("shmqueue", single_shm()), ("rtrb", single_rtrb())],
        scale(SINGLE_BATCH),
        rounds,
    );
    s.print(
        &format!(
            "single thread push+pop on CPU {CPU_A} ({} per batch)",
            scale(SINGLE_BATCH)
        ),
        "push+pop",
        false,
    );
    s.ratio("time shmqueue/rtrb", shm, rtrb, false, None);
    println!(
        "interleaved section took {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
}

/// `SHMQ_INTERLEAVED=only` runs just the interleaved comparison,
/// `SHMQ_INTERLEAVED=0` just the criterion groups; by default both run,
/// interleaved first.
fn main() {
    let mode = std::env::var("SHMQ_INTERLEAVED").unwrap_or_default();
    let args: Vec<String> = std::env::args().collect();
    // As criterion decides: without `--bench` (e.g. `cargo test --benches`)
    // this is a test run, where one tiny round checks that everything works.
    let smoke = !args.iter().any(|a| a == "--bench");
    let listing = args.iter().any(|a| a == "--list");
    if !listing && mode != "0" && mode != "off" {
        interleaved(smoke);
    }
    if mode != "only" {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
