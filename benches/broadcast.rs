//! Latency and fan-out throughput of the broadcast ring (issue #12), against
//! ringfire's SPMC ring, `rtrb` and a bare atomic.
//!
//! ringfire (0.5) is a shared-memory ring too: its producer creates a file
//! in `/dev/shm` and its consumers map it, which is the setup closest to
//! ours. Here both ends of every ring live in one process (threads), as in
//! the other benches; neither crate's hot path depends on that. Its ring is
//! used with its default slot layout (sequence and payload in one slot) and
//! both flow controls: `LossyLatestWins` (the default, like our
//! `overwrite()`) and `LosslessBackpressure` (like our `lossless()`, a
//! registry of reader cursors the producer gates on).
//!
//! * ping-pong, one subscriber per ring: thread A (CPU 0) publishes `i` on
//!   ring A→B and waits for B (CPU 1) to echo it on ring B→A; time/iter is
//!   the round trip. Against the hardware floor (one value bounced through
//!   one cache-padded `AtomicU64`), "atomic two lines" (a payload line
//!   written before a flag line), rtrb, and ringfire with one consumer,
//!   lossy and lossless. Goal: broadcast lossless round trip <= 1.1x the
//!   floor.
//! * stream 1 x 1: one publisher (CPU 0) streams `u64`s to one subscriber
//!   (CPU 1), both busy-waiting; the subscriber's clock is the batch's.
//! * fan-out 1 x 3: one publisher and three subscribers, lossless, every
//!   subscriber reading every item in order. **Oversubscribed**: four
//!   threads on two CPUs (publisher on CPU 0, subscribers on CPUs 1, 0, 1),
//!   so every wait is a bounded spin (64 pauses) and then `yield`, for both
//!   crates alike. The clock runs from the first thread leaving the start
//!   line to the last subscriber's last item; items/s is per subscriber
//!   (each receives the whole batch). Goal: >= 1.5x ringfire lossless. What
//!   this measures is as much the scheduler's hand-offs between threads
//!   sharing a core as either ring; read it as such. shmqueue's blocking
//!   `publish()`/`recv()` (spin, then futex) runs as information.
//!
//! * single thread (information): publish then receive on one thread, and
//!   a poll of an empty ring: the instruction path of each crate without
//!   any line transfer (an empty poll is what every turn of a waiting loop
//!   costs besides its pause).
//!
//! Both crates' non-blocking calls (`try_publish`/`try_recv`,
//! `try_push`/`try_recv`) are driven by the same waiting loops, so the
//! comparison is of the rings, not of their waiting policies.
//!
//! As in `benches/spsc.rs` (see there for why), every comparison first runs
//! *interleaved* (all contenders set up at once, each round one batch of
//! each, back to back, the starting contender rotating; ratios are medians
//! of per-round ratios), then criterion runs the headline contenders one
//! after the other.
//!
//! Run with `cargo bench -p shmqueue-benches --bench broadcast` (both parts,
//! about a minute and a half), or `SHMQ_INTERLEAVED=only` for just the
//! interleaved tables (`SHMQ_INTERLEAVED=0`: just criterion). `SHMQ_ROUNDS=n`
//! sets the number of interleaved rounds (default 21), `SHMQ_RAW=1` also
//! prints every round's value.

#[macro_use]
#[allow(unused_macros)] // shm_push!/shm_pop! are the SPSC/MPMC benches'
mod common;

use std::hint::{black_box, spin_loop};
use std::thread;
use std::time::Instant;

use criterion::{criterion_group, Criterion};
use ringfire::{CleanupMode, FlowControl, RingConsumer, RingProducer, RingProducerBuilder};
use shmqueue::broadcast::{Broadcast, Publisher, Start, Subscriber, TryRecvError};
use shmqueue::TryPushError;

use common::{
    config, criterion_group_of, interleave, pingpong_atomic, pingpong_atomic_two_lines, rounds,
    scale, Bench, Crew, Goal, Layout, Member, ShmName, Spin, Timed, CAP, CPU_A, CPU_B,
    PINGPONG_BATCH, STREAM_BATCH,
};

/// Items per fan-out batch (per subscriber: each receives all of them).
const FANOUT_BATCH: u64 = 1 << 20;
/// Subscribers of the fan-out.
const FANOUT_SUBSCRIBERS: usize = 3;
/// Operations per single-thread batch.
const SINGLE_BATCH: u64 = 1 << 22;
/// Column widths of the interleaved tables.
const LAYOUT: Layout = Layout {
    name: 24,
    ratio: 46,
};

/// Bounded spin, then yield: the waiting loop for threads that share a core
/// with the peer they wait for (the fan-out), as in `benches/mpmc.rs`.
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

// ---------------------------------------------------------------------------
// Endpoints and their waiting loops
// ---------------------------------------------------------------------------

/// How a broadcast ring is built.
#[derive(Clone, Copy)]
struct Kind {
    lossless: bool,
    padded: bool,
    /// `max_subscribers`, if not the default (64): the publisher's rescan
    /// walks every entry.
    max_subscribers: Option<u32>,
}

const LOSSLESS: Kind = Kind {
    lossless: true,
    padded: false,
    max_subscribers: None,
};

/// Lossless with room for [`SMALL_REGISTRY`] subscribers.
const LOSSLESS_SMALL: Kind = Kind {
    max_subscribers: Some(SMALL_REGISTRY),
    ..LOSSLESS
};

/// The subscriber limit of the `max_subscribers 4` contenders.
const SMALL_REGISTRY: u32 = 4;

/// A fresh broadcast ring with a publisher and `subscribers` subscribers.
fn bcast(kind: Kind, subscribers: usize) -> (ShmName, Publisher<u64>, Vec<Subscriber<u64>>) {
    let name = ShmName::new("shmq-bench-bcast");
    let b = Broadcast::<u64>::builder()
        .capacity(CAP)
        .padded_slots(kind.padded);
    let b = match kind.max_subscribers {
        Some(n) => b.max_subscribers(n),
        None => b,
    };
    let b = if kind.lossless {
        b.lossless()
    } else {
        b.overwrite()
    };
    let q = b.create(&name.0).expect("create broadcast ring");
    let tx = q.publisher().expect("publisher");
    let rxs = (0..subscribers)
        .map(|_| q.subscribe(Start::Oldest).expect("subscribe"))
        .collect();
    (name, tx, rxs)
}

/// A fresh ringfire SPMC ring in `/dev/shm` with `consumers` consumers. The
/// file is left for the returned name to remove (so it goes whatever way
/// the bench ends).
fn ringfire(
    lossless: bool,
    consumers: usize,
) -> (ShmName, RingProducer<u64>, Vec<RingConsumer<u64>>) {
    let name = ShmName::new("shmq-bench-ringfire");
    let path = format!("/dev/shm{}", name.0);
    let flow = if lossless {
        FlowControl::LosslessBackpressure
    } else {
        FlowControl::LossyLatestWins
    };
    let tx = RingProducerBuilder::new(CAP as u64)
        .flow_control(flow)
        .cleanup_mode(CleanupMode::Persistent)
        .build::<u64, _>(&path)
        .expect("create ringfire ring");
    let rxs = (0..consumers)
        .map(|_| RingConsumer::<u64>::attach(&path).expect("attach ringfire consumer"))
        .collect();
    (name, tx, rxs)
}

/// Publish on a broadcast ring: try, and while full wait with `$wait`.
macro_rules! bc_publish {
    ($tx:expr, $v:expr, $wait:ty) => {{
        let v: u64 = $v;
        let mut w = <$wait>::new();
        loop {
            match $tx.try_publish(v) {
                Ok(()) => break,
                Err(TryPushError::Full(_)) => w.wait(),
                Err(e) => panic!("try_publish: {e:?}"),
            }
        }
    }};
}

/// Receive from a broadcast ring: try, and while empty wait with `$wait`.
macro_rules! bc_recv {
    ($rx:expr, $wait:ty) => {{
        let mut w = <$wait>::new();
        loop {
            match $rx.try_recv() {
                Ok(v) => break v,
                Err(TryRecvError::Empty) => w.wait(),
                Err(e) => panic!("try_recv: {e:?}"),
            }
        }
    }};
}

/// Push on a ringfire ring: try, and while a lossless ring is full wait.
macro_rules! rf_push {
    ($tx:expr, $v:expr, $wait:ty) => {{
        let v: u64 = $v;
        let mut w = <$wait>::new();
        loop {
            match $tx.try_push(&v) {
                Ok(()) => break,
                Err(ringfire::RingfireError::BackpressureBufferFull) => w.wait(),
                Err(e) => panic!("ringfire try_push: {e}"),
            }
        }
    }};
}

/// Receive from a ringfire ring: try, and while empty wait.
macro_rules! rf_recv {
    ($rx:expr, $wait:ty) => {{
        let mut w = <$wait>::new();
        loop {
            match $rx.try_recv() {
                Some(v) => break v,
                None => w.wait(),
            }
        }
    }};
}

// rtrb's push/pop, spinning until done (as in `benches/spsc.rs`).

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
// Ping-pong: one subscriber per ring, a ring each way
// ---------------------------------------------------------------------------

fn pingpong_bcast(kind: Kind) -> Bench {
    let (ping_name, mut ping_tx, mut ping_rx) = bcast(kind, 1);
    let (pong_name, mut pong_tx, mut pong_rx) = bcast(kind, 1);
    let (mut ping_rx, mut pong_rx) = (ping_rx.remove(0), pong_rx.remove(0));
    let crew = Crew::pair(
        Timed::A,
        move |n| {
            for i in 0..n {
                bc_publish!(ping_tx, i, Spin);
                let r = bc_recv!(pong_rx, Spin);
                assert_eq!(r, i, "wrong echo");
            }
        },
        move |n| {
            for _ in 0..n {
                let v = bc_recv!(ping_rx, Spin);
                bc_publish!(pong_tx, v, Spin);
            }
        },
    );
    Bench {
        crew,
        _names: vec![ping_name, pong_name],
    }
}

fn pingpong_bcast_lossless() -> Bench {
    pingpong_bcast(LOSSLESS)
}

fn pingpong_bcast_overwrite() -> Bench {
    pingpong_bcast(Kind {
        lossless: false,
        ..LOSSLESS
    })
}

fn pingpong_bcast_padded() -> Bench {
    pingpong_bcast(Kind {
        padded: true,
        ..LOSSLESS
    })
}

fn pingpong_ringfire(lossless: bool) -> Bench {
    let (ping_name, mut ping_tx, mut ping_rx) = ringfire(lossless, 1);
    let (pong_name, mut pong_tx, mut pong_rx) = ringfire(lossless, 1);
    let (mut ping_rx, mut pong_rx) = (ping_rx.remove(0), pong_rx.remove(0));
    let crew = Crew::pair(
        Timed::A,
        move |n| {
            for i in 0..n {
                rf_push!(ping_tx, i, Spin);
                let r = rf_recv!(pong_rx, Spin);
                assert_eq!(r, i, "wrong echo");
            }
        },
        move |n| {
            for _ in 0..n {
                let v = rf_recv!(ping_rx, Spin);
                rf_push!(pong_tx, v, Spin);
            }
        },
    );
    Bench {
        crew,
        _names: vec![ping_name, pong_name],
    }
}

fn pingpong_ringfire_lossy() -> Bench {
    pingpong_ringfire(false)
}

fn pingpong_ringfire_lossless() -> Bench {
    pingpong_ringfire(true)
}

fn pingpong_rtrb() -> Bench {
    let (mut ping_tx, mut ping_rx) = rtrb::RingBuffer::<u64>::new(CAP);
    let (mut pong_tx, mut pong_rx) = rtrb::RingBuffer::<u64>::new(CAP);
    let crew = Crew::pair(
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
        crew,
        _names: Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Stream 1 x 1 (two cores, busy-waiting)
// ---------------------------------------------------------------------------

fn stream_bcast_kind(kind: Kind) -> Bench {
    let (name, mut tx, mut rxs) = bcast(kind, 1);
    let mut rx = rxs.remove(0);
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            for i in 0..n {
                bc_publish!(tx, i, Spin);
            }
        },
        move |n| drain_sequence!(bc_recv!(rx, Spin), n),
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

fn stream_bcast() -> Bench {
    stream_bcast_kind(LOSSLESS)
}

fn stream_bcast_small() -> Bench {
    stream_bcast_kind(LOSSLESS_SMALL)
}

fn stream_ringfire() -> Bench {
    let (name, mut tx, mut rxs) = ringfire(true, 1);
    let mut rx = rxs.remove(0);
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            for i in 0..n {
                rf_push!(tx, i, Spin);
            }
        },
        move |n| drain_sequence!(rf_recv!(rx, Spin), n),
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

// ---------------------------------------------------------------------------
// Fan-out 1 x 3 (four threads on two cores: spin, then yield)
// ---------------------------------------------------------------------------

/// The publisher on [`CPU_A`], untimed; subscriber `k` on CPU `(k + 1) % 2`
/// (1, 0, 1), timed.
fn crew_fanout(publisher: common::Work, subscribers: Vec<common::Work>) -> Crew {
    let cpus = [CPU_A, CPU_B];
    let mut members = vec![Member {
        cpu: CPU_A,
        timed: false,
        work: publisher,
    }];
    for (k, work) in subscribers.into_iter().enumerate() {
        members.push(Member {
            cpu: cpus[(k + 1) % 2],
            timed: true,
            work,
        });
    }
    Crew::spawn(members)
}

fn fanout_bcast_kind(kind: Kind) -> Bench {
    let (name, mut tx, rxs) = bcast(kind, FANOUT_SUBSCRIBERS);
    let subs = rxs
        .into_iter()
        .map(|mut rx| {
            Box::new(move |n: u64| drain_sequence!(bc_recv!(rx, SpinYield), n)) as common::Work
        })
        .collect();
    let publisher = Box::new(move |n: u64| {
        for i in 0..n {
            bc_publish!(tx, i, SpinYield);
        }
    });
    Bench {
        crew: crew_fanout(publisher, subs),
        _names: vec![name],
    }
}

fn fanout_bcast() -> Bench {
    fanout_bcast_kind(LOSSLESS)
}

fn fanout_bcast_small() -> Bench {
    fanout_bcast_kind(LOSSLESS_SMALL)
}

/// The blocking calls: `publish()` and `recv()` (spin, then futex).
fn fanout_bcast_blocking() -> Bench {
    let (name, mut tx, rxs) = bcast(LOSSLESS, FANOUT_SUBSCRIBERS);
    let subs = rxs
        .into_iter()
        .map(|mut rx| {
            Box::new(move |n: u64| drain_sequence!(rx.recv().expect("recv"), n)) as common::Work
        })
        .collect();
    let publisher = Box::new(move |n: u64| {
        for i in 0..n {
            tx.publish(i).expect("publish");
        }
    });
    Bench {
        crew: crew_fanout(publisher, subs),
        _names: vec![name],
    }
}

fn fanout_ringfire() -> Bench {
    let (name, mut tx, rxs) = ringfire(true, FANOUT_SUBSCRIBERS);
    let subs = rxs
        .into_iter()
        .map(|mut rx| {
            Box::new(move |n: u64| drain_sequence!(rf_recv!(rx, SpinYield), n)) as common::Work
        })
        .collect();
    let publisher = Box::new(move |n: u64| {
        for i in 0..n {
            rf_push!(tx, i, SpinYield);
        }
    });
    Bench {
        crew: crew_fanout(publisher, subs),
        _names: vec![name],
    }
}

// ---------------------------------------------------------------------------
// Single thread (information: the instruction path without transfers)
// ---------------------------------------------------------------------------

/// Publish then receive on thread A (CPU 0), `n` times; B idles.
fn single_bcast() -> Bench {
    let (name, mut tx, mut rxs) = bcast(LOSSLESS, 1);
    let mut rx = rxs.remove(0);
    let crew = Crew::pair(
        Timed::A,
        move |n| {
            for i in 0..n {
                tx.try_publish(black_box(i))
                    .expect("publish into a drained ring");
                black_box(rx.try_recv().expect("receive what was just published"));
            }
        },
        |_| {},
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

fn single_ringfire() -> Bench {
    let (name, mut tx, mut rxs) = ringfire(true, 1);
    let mut rx = rxs.remove(0);
    let crew = Crew::pair(
        Timed::A,
        move |n| {
            for i in 0..n {
                tx.try_push(&black_box(i))
                    .expect("push into a drained ring");
                black_box(rx.try_recv().expect("receive what was just pushed"));
            }
        },
        |_| {},
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

/// A poll of an empty ring, `n` times on thread A: what every turn of a
/// waiting loop costs besides its pause. The publisher lives on B's side
/// (idle), so the ring is empty, not disconnected.
fn empty_poll_bcast() -> Bench {
    let (name, tx, mut rxs) = bcast(LOSSLESS, 1);
    let mut rx = rxs.remove(0);
    let crew = Crew::pair(
        Timed::A,
        move |n| {
            for _ in 0..n {
                let r = black_box(rx.try_recv());
                assert!(matches!(r, Err(TryRecvError::Empty)), "not empty: {r:?}");
            }
        },
        move |_| {
            black_box(&tx);
        },
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

fn empty_poll_ringfire() -> Bench {
    let (name, tx, mut rxs) = ringfire(true, 1);
    let mut rx = rxs.remove(0);
    let crew = Crew::pair(
        Timed::A,
        move |n| {
            for _ in 0..n {
                assert!(black_box(rx.try_recv()).is_none(), "not empty");
            }
        },
        move |_| {
            black_box(&tx);
        },
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

// ---------------------------------------------------------------------------
// Criterion groups (one contender after the other: see the interleaved
// section for comparisons)
// ---------------------------------------------------------------------------

fn pingpong(c: &mut Criterion) {
    criterion_group_of(
        c,
        "broadcast_pingpong",
        false,
        &[
            ("broadcast", pingpong_bcast_lossless),
            ("atomic", pingpong_atomic),
            ("rtrb", pingpong_rtrb),
            ("ringfire_lossy", pingpong_ringfire_lossy),
            ("ringfire_lossless", pingpong_ringfire_lossless),
        ],
    );
}

fn stream(c: &mut Criterion) {
    criterion_group_of(
        c,
        "broadcast_stream_1x1",
        true,
        &[("broadcast", stream_bcast), ("ringfire", stream_ringfire)],
    );
}

fn fanout(c: &mut Criterion) {
    criterion_group_of(
        c,
        "broadcast_fanout_1x3",
        true,
        &[("broadcast", fanout_bcast), ("ringfire", fanout_ringfire)],
    );
}

criterion_group! {
    name = benches;
    config = config();
    targets = pingpong, stream, fanout
}

// ---------------------------------------------------------------------------
// Interleaved comparison
// ---------------------------------------------------------------------------

fn interleaved(smoke: bool) {
    let rounds = rounds(smoke);
    let scale = |b: u64| scale(smoke, b);
    let started = Instant::now();
    println!(
        "interleaved broadcast comparison (u64 items, capacity {CAP}; \
         ringfire 0.5, a shm file in /dev/shm)"
    );
    let (bc, atomic, rtrb) = ("broadcast", "atomic", "rtrb");
    let (rf_lossy, rf) = ("ringfire lossy", "ringfire lossless");

    let s = interleave(
        &[
            (bc, pingpong_bcast_lossless()),
            (atomic, pingpong_atomic()),
            ("atomic two lines", pingpong_atomic_two_lines()),
            (rtrb, pingpong_rtrb()),
            (rf_lossy, pingpong_ringfire_lossy()),
            (rf, pingpong_ringfire_lossless()),
            ("broadcast overwrite", pingpong_bcast_overwrite()),
            ("broadcast padded", pingpong_bcast_padded()),
        ],
        scale(PINGPONG_BATCH),
        rounds,
        LAYOUT,
    );
    s.print(
        &format!(
            "ping-pong, one subscriber per ring, CPUs {CPU_A} and {CPU_B} ({} round trips per batch)",
            scale(PINGPONG_BATCH)
        ),
        "round trip",
        false,
    );
    s.ratio(
        "round trip broadcast/atomic",
        bc,
        atomic,
        false,
        Some(Goal::AtMost(1.1)),
    );
    s.ratio(
        "round trip ringfire lossy/atomic",
        rf_lossy,
        atomic,
        false,
        None,
    );
    s.ratio(
        "round trip ringfire lossless/atomic",
        rf,
        atomic,
        false,
        None,
    );
    s.ratio("round trip rtrb/atomic", rtrb, atomic, false, None);
    s.ratio(
        "round trip atomic two lines/atomic",
        "atomic two lines",
        atomic,
        false,
        None,
    );
    s.ratio(
        "round trip broadcast/ringfire lossless",
        bc,
        rf,
        false,
        None,
    );
    s.ratio(
        "round trip broadcast/ringfire lossy",
        bc,
        rf_lossy,
        false,
        None,
    );
    s.ratio(
        "round trip broadcast overwrite/atomic",
        "broadcast overwrite",
        atomic,
        false,
        None,
    );
    s.ratio(
        "round trip broadcast padded/atomic",
        "broadcast padded",
        atomic,
        false,
        None,
    );

    let small = "broadcast max_subscribers 4";
    let s = interleave(
        &[
            (bc, stream_bcast()),
            (rf, stream_ringfire()),
            (small, stream_bcast_small()),
        ],
        scale(STREAM_BATCH),
        rounds,
        LAYOUT,
    );
    s.print(
        &format!(
            "stream 1 publisher x 1 subscriber, lossless, CPUs {CPU_A} and {CPU_B} ({} items per batch)",
            scale(STREAM_BATCH)
        ),
        "item",
        true,
    );
    s.ratio("throughput broadcast/ringfire lossless", bc, rf, true, None);
    s.ratio(
        "throughput broadcast max_subs 4/ringfire lossless",
        small,
        rf,
        true,
        None,
    );

    let blocking = "broadcast blocking";
    let s = interleave(
        &[
            (bc, fanout_bcast()),
            (rf, fanout_ringfire()),
            (blocking, fanout_bcast_blocking()),
            (small, fanout_bcast_small()),
        ],
        scale(FANOUT_BATCH),
        rounds,
        LAYOUT,
    );
    s.print(
        &format!(
            "fan-out 1 publisher x {FANOUT_SUBSCRIBERS} subscribers, lossless, OVERSUBSCRIBED: \
             4 threads on CPUs {CPU_A},{CPU_B} ({} items per batch; items/s per subscriber)",
            scale(FANOUT_BATCH)
        ),
        "item",
        true,
    );
    s.ratio(
        "throughput broadcast/ringfire lossless",
        bc,
        rf,
        true,
        Some(Goal::AtLeast(1.5)),
    );
    s.ratio(
        "throughput broadcast blocking/ringfire lossless",
        blocking,
        rf,
        true,
        None,
    );
    s.ratio(
        "throughput broadcast max_subs 4/ringfire lossless",
        small,
        rf,
        true,
        Some(Goal::AtLeast(1.5)),
    );
    let s = interleave(
        &[(bc, single_bcast()), (rf, single_ringfire())],
        scale(SINGLE_BATCH),
        rounds,
        LAYOUT,
    );
    s.print(
        &format!(
            "single thread publish+receive on CPU {CPU_A}, lossless ({} per batch)",
            scale(SINGLE_BATCH)
        ),
        "publish+receive",
        false,
    );
    s.ratio("time broadcast/ringfire lossless", bc, rf, false, None);
    let s = interleave(
        &[(bc, empty_poll_bcast()), (rf, empty_poll_ringfire())],
        scale(SINGLE_BATCH),
        rounds,
        LAYOUT,
    );
    s.print(
        &format!(
            "poll of an empty ring on CPU {CPU_A}, lossless ({} per batch)",
            scale(SINGLE_BATCH)
        ),
        "poll",
        false,
    );
    s.ratio("time broadcast/ringfire lossless", bc, rf, false, None);
    println!(
        "interleaved section took {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    common::main(interleaved, benches);
}
