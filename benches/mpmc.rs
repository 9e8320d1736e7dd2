//! Throughput and latency of the MPMC queue, against
//! `crossbeam_queue::ArrayQueue` (the same Vyukov algorithm, in process
//! memory, without dead-peer recovery) and a bare atomic.
//!
//! * `mpmc_stream/*`: one producer pinned to CPU 0 streams `u64`s through a
//!   1024-item queue to one consumer pinned to CPU 1; the clock runs from the
//!   start barrier to the consumer's last item, so time/iter is the cost per
//!   item. shmqueue runs twice: compact slots (16 bytes for a `u64`, four to
//!   a 64-byte line) and padded slots (a 128-byte pair of lines each).
//! * `mpmc_pingpong/*`: thread A (CPU 0) sends `i` through queue A→B and
//!   waits for B (CPU 1) to echo it back through queue B→A; time/iter is the
//!   round trip. `mpmc_pingpong/atomic` bounces one value through a single
//!   cache-padded `AtomicU64`: the hardware floor.
//!
//! The benchmark threads live as long as one contender and are reused by
//! every batch: each batch hands them a size, they meet at a barrier and the
//! timed side reports how long it took.
//!
//! ## Interleaved comparison
//!
//! As in `benches/spsc.rs` (see there for why): before the criterion groups,
//! every comparison the goals are stated in runs *interleaved*, all
//! contenders set up at once and each round running one fixed-size batch of
//! each, back to back, the starting contender rotating. Per contender it
//! prints the median, quartiles and extremes of ns/op over the rounds; each
//! ratio is the median of the per-round ratios, with its quartiles and the
//! ratio of the two medians for reference.
//!
//! * stream, 1 producer × 1 consumer: throughput shmqueue/ArrayQueue
//!   (goal >= 1.5), compact and padded slots; also the blocking
//!   `push()`/`pop()`.
//! * ping-pong: round trip shmqueue/atomic (goal <= 1.2); also ArrayQueue,
//!   padded slots, and "atomic two lines" (a payload line written before a
//!   flag line: the least a queue whose index and slots live in different
//!   lines has to move per hop).
//! * 2 producers × 2 consumers (information only): four threads on two
//!   CPUs, producer and consumer *i* on CPU *i*, so every thread shares its
//!   core and waiting has to give the core away: shmqueue's blocking
//!   `push()`/`pop()` (spin, then futex), shmqueue's `try_*` with the same
//!   spin-then-yield loop as ArrayQueue, and ArrayQueue with that loop.
//!   Each producer pushes its half of the batch and then one end marker;
//!   each consumer stops at the first marker it pops, having checked that
//!   each producer's items reach it in order. The clock runs from the first
//!   thread leaving the start barrier to the last consumer finishing.
//!
//! On this machine the stream times are bimodal, ArrayQueue's most (seen:
//! ~15 or ~42 ns/item from one batch to the next, and ~8 ns for a whole
//! run), so read the stream ratios together with `SHMQ_RAW=1`.
//!
//! Run with `cargo bench --bench mpmc` (both parts, one to two minutes), or
//! `SHMQ_INTERLEAVED=only cargo bench --bench mpmc` for just the interleaved
//! tables (`SHMQ_INTERLEAVED=0`: just criterion). `SHMQ_ROUNDS=n` sets the
//! number of interleaved rounds (default 21), `SHMQ_RAW=1` also prints every
//! round's value.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use shmqueue::mpmc::{Consumer, Producer};
use shmqueue::{Mpmc, TryPopError, TryPushError};

/// Items the queues hold.
const CAP: usize = 1024;
/// CPU of the producer / ping side.
const CPU_A: usize = 0;
/// CPU of the consumer / echo side.
const CPU_B: usize = 1;
/// Longest a batch may take before the harness gives up (a wedged peer).
const BATCH_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Harness: pinning, waiting, a reusable crew of pinned threads.
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

/// Busy-wait helper for threads on distinct cores (the peer always makes
/// progress); after a long fruitless stretch it still yields, in case pinning
/// failed or something else was scheduled on the peer's core.
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

/// Bounded spin, then yield: the waiting loop for threads that share a core
/// with the peer they wait for (the 2×2 runs).
struct SpinYield(u32);

impl SpinYield {
    /// Pauses before the first yield.
    const SPINS: u32 = 64;

    #[inline(always)]
    fn new() -> Self {
        SpinYield(0)
    }

    #[inline(always)]
    fn wait(&mut self) {
        if self.0 < Self::SPINS {
            self.0 += 1;
            spin_loop();
        } else {
            thread::yield_now();
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

/// The start line of a batch: two threads on two cores spin; more threads
/// than cores sleep (a spinner would hold the core another member needs).
enum Start {
    Spin(Box<SpinBarrier>),
    Sleep(Barrier),
}

impl Start {
    fn for_members(n: usize) -> Start {
        if n == 2 {
            Start::Spin(Box::default())
        } else {
            Start::Sleep(Barrier::new(n))
        }
    }

    fn wait(&self) {
        match self {
            Start::Spin(b) => b.wait(),
            Start::Sleep(b) => {
                b.wait();
            }
        }
    }
}

/// One thread's work for a batch of `n` (the whole batch: each member
/// decides its share).
type Work = Box<dyn FnMut(u64) + Send>;

/// A crew member: its CPU, whether its end time counts, its work.
struct Member {
    cpu: usize,
    timed: bool,
    work: Work,
}

fn member(cpu: usize, timed: bool, work: impl FnMut(u64) + Send + 'static) -> Member {
    Member {
        cpu,
        timed,
        work: Box::new(work),
    }
}

/// What a member reports after a batch.
struct Report {
    timed: bool,
    start: Instant,
    end: Instant,
}

/// Long-lived pinned threads, each running its closure once per batch.
struct Crew {
    cmds: Vec<mpsc::Sender<u64>>,
    reports: mpsc::Receiver<Report>,
    handles: Vec<JoinHandle<()>>,
}

impl Crew {
    fn spawn(members: Vec<Member>) -> Crew {
        let start = Arc::new(Start::for_members(members.len()));
        let (report_tx, reports) = mpsc::channel();
        let mut cmds = Vec::new();
        let mut handles = Vec::new();
        for (k, m) in members.into_iter().enumerate() {
            let Member {
                cpu,
                timed,
                mut work,
            } = m;
            let (tx, rx) = mpsc::channel::<u64>();
            let start = Arc::clone(&start);
            let report_tx = report_tx.clone();
            let h = thread::Builder::new()
                .name(format!("bench-{k}-cpu{cpu}"))
                .spawn(move || {
                    pin_to(cpu);
                    while let Ok(n) = rx.recv() {
                        start.wait();
                        let t0 = Instant::now();
                        work(n);
                        let _ = report_tx.send(Report {
                            timed,
                            start: t0,
                            end: Instant::now(),
                        });
                    }
                })
                .expect("spawn benchmark thread");
            cmds.push(tx);
            handles.push(h);
        }
        Crew {
            cmds,
            reports,
            handles,
        }
    }

    /// A producer-side thread A on [`CPU_A`] and a consumer-side thread B on
    /// [`CPU_B`]; the elapsed time is `timed`'s.
    fn pair<A, B>(timed: Timed, a: A, b: B) -> Crew
    where
        A: FnMut(u64) + Send + 'static,
        B: FnMut(u64) + Send + 'static,
    {
        Crew::spawn(vec![
            member(CPU_A, timed == Timed::A, a),
            member(CPU_B, timed == Timed::B, b),
        ])
    }

    /// Run one batch of `n` on every member; from the earliest start to the
    /// latest end of a timed member.
    fn run(&self, n: u64) -> Duration {
        for c in &self.cmds {
            c.send(n).expect("benchmark thread died");
        }
        let mut first_start: Option<Instant> = None;
        let mut last_end: Option<Instant> = None;
        for _ in 0..self.cmds.len() {
            let r = self
                .reports
                .recv_timeout(BATCH_TIMEOUT)
                .expect("benchmark thread died or wedged");
            first_start = Some(first_start.map_or(r.start, |s| s.min(r.start)));
            if r.timed {
                last_end = Some(last_end.map_or(r.end, |e| e.max(r.end)));
            }
        }
        let (start, end) = (
            first_start.expect("a member"),
            last_end.expect("a timed member"),
        );
        end.saturating_duration_since(start)
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.cmds.clear(); // closes the channels: the threads leave their loops
        if thread::panicking() {
            return; // a member may be wedged; don't join it
        }
        for h in self.handles.drain(..) {
            h.join().expect("benchmark thread panicked");
        }
    }
}

/// Which of the two threads of a pair reports the elapsed time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Timed {
    A,
    B,
}

/// A uniquely named segment that is unlinked when dropped, panic or not.
struct ShmName(String);

impl ShmName {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        ShmName(format!("/shmq-bench-mpmc-{}-{n}", std::process::id()))
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        if let Err(e) = shmqueue::unlink(&self.0) {
            eprintln!("warning: unlink {}: {e}", self.0);
        }
    }
}

/// A fresh shm MPMC queue (the handle keeps the mapping for attaching more
/// endpoints).
fn shm_queue(padded: bool) -> (ShmName, Mpmc<u64>) {
    let name = ShmName::new();
    let q = Mpmc::<u64>::builder()
        .capacity(CAP)
        .padded_slots(padded)
        .create(&name.0)
        .expect("create queue");
    (name, q)
}

/// A fresh queue with one producer and one consumer.
fn shm_pair(padded: bool) -> (ShmName, Producer<u64>, Consumer<u64>) {
    let (name, q) = shm_queue(padded);
    let tx = q.producer().expect("producer");
    let rx = q.consumer().expect("consumer");
    (name, tx, rx)
}

// Push/pop adapters with one loop shape for every queue: try, and on
// Full/Empty wait with `$wait` (a `Spin` or a `SpinYield`) and try again.

macro_rules! shm_push {
    ($tx:expr, $v:expr, $wait:ty) => {{
        let mut v: u64 = $v;
        let mut w = <$wait>::new();
        loop {
            match $tx.try_push(v) {
                Ok(()) => break,
                Err(TryPushError::Full(back)) => {
                    v = back;
                    w.wait();
                }
                Err(e) => panic!("try_push: {e:?}"),
            }
        }
    }};
}

macro_rules! shm_pop {
    ($rx:expr, $wait:ty) => {{
        let mut w = <$wait>::new();
        loop {
            match $rx.try_pop() {
                Ok(v) => break v,
                Err(TryPopError::Empty) => w.wait(),
                Err(e) => panic!("try_pop: {e:?}"),
            }
        }
    }};
}

macro_rules! aq_push {
    ($q:expr, $v:expr, $wait:ty) => {{
        let mut v: u64 = $v;
        let mut w = <$wait>::new();
        loop {
            match $q.push(v) {
                Ok(()) => break,
                Err(back) => {
                    v = back;
                    w.wait();
                }
            }
        }
    }};
}

macro_rules! aq_pop {
    ($q:expr, $wait:ty) => {{
        let mut w = <$wait>::new();
        loop {
            match $q.pop() {
                Some(v) => break v,
                None => w.wait(),
            }
        }
    }};
}

// ---------------------------------------------------------------------------
// Contenders: each builds its crew of pinned threads (and whatever must
// outlive them), shared by the criterion groups and the interleaved section.
// ---------------------------------------------------------------------------

/// A contender's running threads plus the shm names they use. Fields drop in
/// order: threads and endpoints go before the names are unlinked.
struct Bench {
    crew: Crew,
    _names: Vec<ShmName>,
}

impl Bench {
    fn run(&self, n: u64) -> Duration {
        self.crew.run(n)
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

fn stream_shm(padded: bool) -> Bench {
    let (name, mut tx, mut rx) = shm_pair(padded);
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            for i in 0..n {
                shm_push!(tx, i, Spin);
            }
        },
        move |n| drain_sequence!(shm_pop!(rx, Spin), n),
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

fn stream_shm_compact() -> Bench {
    stream_shm(false)
}

fn stream_shm_padded() -> Bench {
    stream_shm(true)
}

/// The same stream through the blocking `push()`/`pop()` (spin, then futex).
fn stream_shm_blocking() -> Bench {
    let (name, mut tx, mut rx) = shm_pair(false);
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            for i in 0..n {
                tx.push(i).expect("push");
            }
        },
        move |n| drain_sequence!(rx.pop().expect("pop"), n),
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

fn stream_aq() -> Bench {
    let q = Arc::new(ArrayQueue::<u64>::new(CAP));
    let (tx, rx) = (Arc::clone(&q), q);
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            for i in 0..n {
                aq_push!(tx, i, Spin);
            }
        },
        move |n| drain_sequence!(aq_pop!(rx, Spin), n),
    );
    Bench {
        crew,
        _names: Vec::new(),
    }
}

fn pingpong_shm(padded: bool) -> Bench {
    let (ping_name, mut ping_tx, mut ping_rx) = shm_pair(padded);
    let (pong_name, mut pong_tx, mut pong_rx) = shm_pair(padded);
    let crew = Crew::pair(
        Timed::A,
        move |n| {
            for i in 0..n {
                shm_push!(ping_tx, i, Spin);
                let r = shm_pop!(pong_rx, Spin);
                assert_eq!(r, i, "wrong echo");
            }
        },
        move |n| {
            for _ in 0..n {
                let v = shm_pop!(ping_rx, Spin);
                shm_push!(pong_tx, v, Spin);
            }
        },
    );
    Bench {
        crew,
        _names: vec![ping_name, pong_name],
    }
}

fn pingpong_shm_compact() -> Bench {
    pingpong_shm(false)
}

fn pingpong_shm_padded() -> Bench {
    pingpong_shm(true)
}

fn pingpong_aq() -> Bench {
    let ping = Arc::new(ArrayQueue::<u64>::new(CAP));
    let pong = Arc::new(ArrayQueue::<u64>::new(CAP));
    let (ping_a, pong_a) = (Arc::clone(&ping), Arc::clone(&pong));
    let crew = Crew::pair(
        Timed::A,
        move |n| {
            for i in 0..n {
                aq_push!(ping_a, i, Spin);
                let r = aq_pop!(pong_a, Spin);
                assert_eq!(r, i, "wrong echo");
            }
        },
        move |n| {
            for _ in 0..n {
                let v = aq_pop!(ping, Spin);
                aq_push!(pong, v, Spin);
            }
        },
    );
    Bench {
        crew,
        _names: Vec::new(),
    }
}

/// The hardware floor: one value bounced through a single cache-padded
/// `AtomicU64`. A writes odd values, B answers with the next even one.
fn pingpong_atomic() -> Bench {
    let cell = Arc::new(CachePadded::new(AtomicU64::new(0)));
    let (ca, cb) = (Arc::clone(&cell), Arc::clone(&cell));
    let crew = Crew::pair(
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
        crew,
        _names: Vec::new(),
    }
}

/// Per direction, a payload line written first and a flag line written after
/// it (Release); the reader spins on the flag (Acquire), then reads the
/// payload. The least a queue with its index and slots in different cache
/// lines has to move per hop.
fn pingpong_atomic_two_lines() -> Bench {
    #[derive(Default)]
    struct Dir {
        flag: CachePadded<AtomicU64>,
        data: CachePadded<AtomicU64>,
    }
    let dirs = Arc::new([Dir::default(), Dir::default()]);
    let (da, db) = (Arc::clone(&dirs), Arc::clone(&dirs));
    let crew = Crew::pair(
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
        crew,
        _names: Vec::new(),
    }
}

// 2 producers × 2 consumers. Producer `p` sends `p << 62 | i` for its
// share of the batch, then END; a consumer stops at the first END it pops.

/// End marker of a producer's share (no item has both top bits set).
const END: u64 = u64::MAX;
/// Producer tag position in an item.
const TAG_SHIFT: u32 = 62;

/// Items producer `p` of two sends in a batch of `n`.
fn share(n: u64, p: u64) -> u64 {
    n / 2 + if p == 0 { n % 2 } else { 0 }
}

/// A consumer's bookkeeping: each producer's items must arrive in order.
#[derive(Default)]
struct Seen {
    next: [u64; 2],
    count: u64,
}

impl Seen {
    #[inline(always)]
    fn take(&mut self, v: u64) {
        let p = (v >> TAG_SHIFT) as usize;
        let i = v & ((1 << TAG_SHIFT) - 1);
        assert!(p < 2, "bad item {v:#x}");
        assert!(
            i >= self.next[p],
            "producer {p}'s item {i} after {}",
            self.next[p]
        );
        self.next[p] = i + 1;
        self.count += 1;
    }
}

/// Builds the four members: producers and consumers `0` on [`CPU_A`], `1`
/// on [`CPU_B`]; the consumers are timed.
fn crew_2x2<P, C>(mut make_producer: P, mut make_consumer: C) -> Crew
where
    P: FnMut(u64) -> Work,
    C: FnMut() -> Work,
{
    let mut members = Vec::new();
    for (p, cpu) in [(0u64, CPU_A), (1, CPU_B)] {
        let work = make_producer(p);
        members.push(Member {
            cpu,
            timed: false,
            work,
        });
    }
    for cpu in [CPU_A, CPU_B] {
        let work = make_consumer();
        members.push(Member {
            cpu,
            timed: true,
            work,
        });
    }
    Crew::spawn(members)
}

/// A 2×2 contender plus the count its consumers keep, checked per batch.
struct Bench2x2 {
    bench: Bench,
    consumed: Arc<AtomicU64>,
}

impl Bench2x2 {
    fn run(&self, n: u64) -> Duration {
        self.consumed.store(0, Ordering::Relaxed);
        let t = self.bench.run(n);
        let got = self.consumed.load(Ordering::Relaxed);
        assert_eq!(got, n, "2x2: consumed {got} of {n} items");
        t
    }
}

macro_rules! producer_2x2 {
    ($p:expr, |$v:ident| $push:expr) => {{
        let p: u64 = $p;
        Box::new(move |n: u64| {
            for i in 0..share(n, p) {
                let $v = p << TAG_SHIFT | i;
                $push;
            }
            let $v = END;
            $push;
        }) as Work
    }};
}

macro_rules! consumer_2x2 {
    ($consumed:expr, || $pop:expr) => {{
        let consumed = Arc::clone(&$consumed);
        Box::new(move |_n: u64| {
            let mut seen = Seen::default();
            loop {
                let v: u64 = $pop;
                if v == END {
                    break;
                }
                seen.take(v);
            }
            consumed.fetch_add(seen.count, Ordering::Relaxed);
        }) as Work
    }};
}

/// shmqueue's blocking `push()`/`pop()`.
fn mpmc2x2_shm_blocking() -> Bench2x2 {
    let (name, q) = shm_queue(false);
    let consumed = Arc::new(AtomicU64::new(0));
    let crew = crew_2x2(
        |p| {
            let mut tx = q.producer().expect("producer");
            producer_2x2!(p, |v| tx.push(v).expect("push"))
        },
        || {
            let mut rx = q.consumer().expect("consumer");
            consumer_2x2!(consumed, || rx.pop().expect("pop"))
        },
    );
    Bench2x2 {
        bench: Bench {
            crew,
            _names: vec![name],
        },
        consumed,
    }
}

/// shmqueue's `try_push`/`try_pop` in a spin-then-yield loop.
fn mpmc2x2_shm_yield() -> Bench2x2 {
    let (name, q) = shm_queue(false);
    let consumed = Arc::new(AtomicU64::new(0));
    let crew = crew_2x2(
        |p| {
            let mut tx = q.producer().expect("producer");
            producer_2x2!(p, |v| shm_push!(tx, v, SpinYield))
        },
        || {
            let mut rx = q.consumer().expect("consumer");
            consumer_2x2!(consumed, || shm_pop!(rx, SpinYield))
        },
    );
    Bench2x2 {
        bench: Bench {
            crew,
            _names: vec![name],
        },
        consumed,
    }
}

/// ArrayQueue in the same spin-then-yield loop.
fn mpmc2x2_aq() -> Bench2x2 {
    let q = Arc::new(ArrayQueue::<u64>::new(CAP));
    let consumed = Arc::new(AtomicU64::new(0));
    let crew = crew_2x2(
        |p| {
            let q = Arc::clone(&q);
            producer_2x2!(p, |v| aq_push!(q, v, SpinYield))
        },
        || {
            let q = Arc::clone(&q);
            consumer_2x2!(consumed, || aq_pop!(q, SpinYield))
        },
    );
    Bench2x2 {
        bench: Bench {
            crew,
            _names: Vec::new(),
        },
        consumed,
    }
}

// ---------------------------------------------------------------------------
// Criterion groups (one contender after the other: see the interleaved
// section for comparisons)
// ---------------------------------------------------------------------------

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_stream");
    g.throughput(Throughput::Elements(1));
    for (name, make) in [
        ("shmqueue", stream_shm_compact as fn() -> Bench),
        ("shmqueue_padded", stream_shm_padded),
        ("arrayqueue", stream_aq),
    ] {
        let bench = make();
        g.bench_function(name, |b| b.iter_custom(|iters| bench.run(iters)));
    }
    g.finish();
}

fn pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_pingpong");
    for (name, make) in [
        ("shmqueue", pingpong_shm_compact as fn() -> Bench),
        ("atomic", pingpong_atomic),
        ("arrayqueue", pingpong_aq),
    ] {
        let bench = make();
        g.bench_function(name, |b| b.iter_custom(|iters| bench.run(iters)));
    }
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
    targets = stream, pingpong
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
/// Items per 2×2 batch.
const MPMC_BATCH: u64 = 1 << 20;

/// Per-round nanoseconds per operation of each contender.
struct Samples {
    names: Vec<&'static str>,
    /// `ns[c][r]`: contender `c`, round `r`.
    ns: Vec<Vec<f64>>,
}

/// Run `rounds` rounds; in each, every contender runs one batch of `batch`,
/// back to back, so all of them see the same machine state. The starting
/// contender rotates from round to round so no one always goes first. One
/// unrecorded warm-up round comes first.
fn interleave<B>(
    benches: &[(&'static str, B)],
    run: impl Fn(&B, u64) -> Duration,
    batch: u64,
    rounds: usize,
) -> Samples {
    let k = benches.len();
    let mut ns = vec![Vec::with_capacity(rounds); k];
    for round in 0..=rounds {
        for j in 0..k {
            let c = (round + j) % k;
            let t = run(&benches[c].1, batch);
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
            "  {:<22} {:>9} {:>9} {:>9} {:>9} {:>9}{}",
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
                "  {name:<22} {m:>9.2} {:>9.2} {:>9.2} {min:>9.2} {max:>9.2}",
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
                println!("  raw {name:<18} {}", r.join(" "));
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
            "  {what:<44} {m:>6.3} [{:.3}, {:.3}; {:.3}]",
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

/// The comparisons the goals are stated in, each measured interleaved.
/// `smoke` (under `cargo test --benches`) runs one tiny round.
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
        "interleaved MPMC comparison (threads on CPUs {CPU_A} and {CPU_B}, u64 items, capacity {CAP})"
    );
    let (shm, padded, blocking, aq) = (
        "shmqueue",
        "shmqueue padded",
        "shmqueue blocking",
        "ArrayQueue",
    );
    let run = |b: &Bench, n| b.run(n);

    let s = interleave(
        &[
            (shm, stream_shm_compact()),
            (padded, stream_shm_padded()),
            (aq, stream_aq()),
            (blocking, stream_shm_blocking()),
        ],
        run,
        scale(STREAM_BATCH),
        rounds,
    );
    s.print(
        &format!(
            "stream 1 producer x 1 consumer ({} items per batch)",
            scale(STREAM_BATCH)
        ),
        "item",
        true,
    );
    let goal = || Some(Goal::AtLeast(1.5));
    s.ratio("throughput shmqueue/ArrayQueue", shm, aq, true, goal());
    s.ratio(
        "throughput shmqueue padded/ArrayQueue",
        padded,
        aq,
        true,
        goal(),
    );
    s.ratio(
        "throughput shmqueue padded/shmqueue",
        padded,
        shm,
        true,
        None,
    );
    s.ratio(
        "throughput shmqueue blocking/ArrayQueue",
        blocking,
        aq,
        true,
        None,
    );

    let (atomic, two) = ("atomic", "atomic two lines");
    let s = interleave(
        &[
            (shm, pingpong_shm_compact()),
            (atomic, pingpong_atomic()),
            (aq, pingpong_aq()),
            (two, pingpong_atomic_two_lines()),
            (padded, pingpong_shm_padded()),
        ],
        run,
        scale(PINGPONG_BATCH),
        rounds,
    );
    s.print(
        &format!(
            "ping-pong, two queues ({} round trips per batch)",
            scale(PINGPONG_BATCH)
        ),
        "round trip",
        false,
    );
    let goal = || Some(Goal::AtMost(1.2));
    s.ratio("round trip shmqueue/atomic", shm, atomic, false, goal());
    s.ratio(
        "round trip shmqueue padded/atomic",
        padded,
        atomic,
        false,
        goal(),
    );
    s.ratio("round trip ArrayQueue/atomic", aq, atomic, false, None);
    s.ratio("round trip shmqueue/ArrayQueue", shm, aq, false, None);
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

    let (yielding, aq_yield) = ("shmqueue try+yield", "ArrayQueue try+yield");
    let s = interleave(
        &[
            (blocking, mpmc2x2_shm_blocking()),
            (yielding, mpmc2x2_shm_yield()),
            (aq_yield, mpmc2x2_aq()),
        ],
        |b: &Bench2x2, n| b.run(n),
        scale(MPMC_BATCH),
        rounds,
    );
    s.print(
        &format!(
            "2 producers x 2 consumers on 2 CPUs, information only ({} items per batch)",
            scale(MPMC_BATCH)
        ),
        "item",
        true,
    );
    s.ratio(
        "throughput shmqueue blocking/ArrayQueue",
        blocking,
        aq_yield,
        true,
        None,
    );
    s.ratio(
        "throughput shmqueue try+yield/ArrayQueue",
        yielding,
        aq_yield,
        true,
        None,
    );
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
