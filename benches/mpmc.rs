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
//!   `push()`/`pop()` against the `try_*` loop (goal >= 0.9, issue #16).
//! * ping-pong: round trip shmqueue/atomic (goal <= 1.2); also ArrayQueue,
//!   padded slots, the blocking calls (goal: <= 1.1x the `try_*` round
//!   trip, issue #16) and "atomic two lines" (a payload line written before a
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

#[macro_use]
mod common;

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use crossbeam_queue::ArrayQueue;
use shmqueue::mpmc::{Consumer, Producer};
use shmqueue::Mpmc;

use common::{
    config, criterion_group_of, interleave, pingpong_atomic, pingpong_atomic_two_lines, rounds,
    scale, Bench, Crew, Goal, Layout, Member, Run, ShmName, Spin, Timed, Work, CAP, CPU_A, CPU_B,
    PINGPONG_BATCH, STREAM_BATCH,
};

/// Items per 2×2 batch.
const MPMC_BATCH: u64 = 1 << 20;
/// Column widths of the interleaved tables.
const LAYOUT: Layout = Layout {
    name: 22,
    ratio: 44,
};

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

/// A fresh shm MPMC queue (the handle keeps the mapping for attaching more
/// endpoints).
fn shm_queue(padded: bool) -> (ShmName, Mpmc<u64>) {
    let name = ShmName::new("shmq-bench-mpmc");
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

// ArrayQueue's push/pop with the loop shape of `shm_push!`/`shm_pop!`: try,
// and on Full/Empty wait with `$wait` (a `Spin` or a `SpinYield`) and try
// again.

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
// The atomic floors live in `common`.
// ---------------------------------------------------------------------------

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

/// Ping-pong through the blocking `push()`/`pop()` (spin, then futex).
fn pingpong_shm_blocking() -> Bench {
    let (ping_name, mut ping_tx, mut ping_rx) = shm_pair(false);
    let (pong_name, mut pong_tx, mut pong_rx) = shm_pair(false);
    let crew = Crew::pair(
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
        crew,
        _names: vec![ping_name, pong_name],
    }
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

impl Run for Bench2x2 {
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
    criterion_group_of(
        c,
        "mpmc_stream",
        true,
        &[
            ("shmqueue", stream_shm_compact),
            ("shmqueue_padded", stream_shm_padded),
            ("arrayqueue", stream_aq),
        ],
    );
}

fn pingpong(c: &mut Criterion) {
    criterion_group_of(
        c,
        "mpmc_pingpong",
        false,
        &[
            ("shmqueue", pingpong_shm_compact),
            ("atomic", pingpong_atomic),
            ("arrayqueue", pingpong_aq),
        ],
    );
}

criterion_group! {
    name = benches;
    config = config();
    targets = stream, pingpong
}

// ---------------------------------------------------------------------------
// Interleaved comparison
// ---------------------------------------------------------------------------

/// The comparisons the goals are stated in, each measured interleaved.
/// `smoke` (under `cargo test --benches`) runs one tiny round.
fn interleaved(smoke: bool) {
    let rounds = rounds(smoke);
    let scale = |b: u64| scale(smoke, b);
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

    let s = interleave(
        &[
            (shm, stream_shm_compact()),
            (padded, stream_shm_padded()),
            (aq, stream_aq()),
            (blocking, stream_shm_blocking()),
        ],
        scale(STREAM_BATCH),
        rounds,
        LAYOUT,
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
    // Issue #16: the blocking calls against their own try_* loop, busy peer.
    s.ratio(
        "throughput shmqueue blocking/shmqueue",
        blocking,
        shm,
        true,
        Some(Goal::AtLeast(0.9)),
    );

    let (atomic, two) = ("atomic", "atomic two lines");
    let s = interleave(
        &[
            (shm, pingpong_shm_compact()),
            (atomic, pingpong_atomic()),
            (aq, pingpong_aq()),
            (two, pingpong_atomic_two_lines()),
            (padded, pingpong_shm_padded()),
            (blocking, pingpong_shm_blocking()),
        ],
        scale(PINGPONG_BATCH),
        rounds,
        LAYOUT,
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
    s.ratio(
        "round trip shmqueue blocking/shmqueue",
        blocking,
        shm,
        false,
        Some(Goal::AtMost(1.1)),
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
        scale(MPMC_BATCH),
        rounds,
        LAYOUT,
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

fn main() {
    common::main(interleaved, benches);
}
