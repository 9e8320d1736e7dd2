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
//!   `push()`/`pop()` (goal: >= 0.9x the `try_*` stream, issue #16); the
//!   batch calls (`push_slice`/`pop_slice`: goal of at least 3x rtrb's
//!   single-item stream), the blocking batch calls
//!   (`push_all`/`pop_slice_wait`) and the zero-copy windows (goal: at
//!   least 3x rtrb single-item), against rtrb's chunk API
//!   (`write_chunk_uninit`/`read_chunk`), all with up to 64 items per call.
//! * ping-pong: round trip shmqueue/atomic (goal <= 1.6); also rtrb, the
//!   blocking calls (goal: <= 1.1x the `try_*` round trip, issue #16), and
//!   "atomic two lines": a payload line written before a flag line, the
//!   least any ring with its index and slots in separate cache lines has to
//!   move per hop.
//! * single thread: push+pop, shmqueue against rtrb.
//!
//! Run with `cargo bench --bench spsc` (both parts, a minute or two), or
//! `SHMQ_INTERLEAVED=only cargo bench --bench spsc` for just the interleaved
//! tables (`SHMQ_INTERLEAVED=0`: just criterion). `SHMQ_ROUNDS=n` sets the
//! number of interleaved rounds (default 21), `SHMQ_RAW=1` also prints every
//! round's value (the host's phases show up as steps).

#[macro_use]
mod common;

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use shmqueue::Spsc;

use common::{
    config, criterion_group_of, interleave, pingpong_atomic, pingpong_atomic_two_lines, rounds,
    scale, Bench, Crew, Goal, Layout, ShmName, Spin, Timed, CAP, CPU_A, CPU_B, PINGPONG_BATCH,
    STREAM_BATCH,
};

/// Push+pop pairs per single-thread batch.
const SINGLE_BATCH: u64 = 1 << 22;
/// Column widths of the interleaved tables.
const LAYOUT: Layout = Layout {
    name: 18,
    ratio: 38,
};

/// A fresh shm ring and its two endpoints.
fn shm_ring() -> (
    ShmName,
    shmqueue::spsc::Producer<u64>,
    shmqueue::spsc::Consumer<u64>,
) {
    let name = ShmName::new("shmq-bench");
    let q = Spsc::<u64>::create(&name.0, CAP).expect("create ring");
    let tx = q.producer().expect("producer");
    let rx = q.consumer().expect("consumer");
    (name, tx, rx)
}

// rtrb's push/pop with the loop shape of `shm_push!`/`shm_pop!`: spin until
// done.

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
// The atomic floors live in `common`.
// ---------------------------------------------------------------------------

fn stream_shm() -> Bench {
    let (name, mut tx, mut rx) = shm_ring();
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

/// Items per `push_slice`/`pop_slice` call in the batch stream.
const BATCH: usize = 64;

/// The stream through the batch calls: `push_slice` of up to [`BATCH`]
/// items, `pop_slice` into a [`BATCH`]-item buffer, one index publication per
/// call on each side.
fn stream_shm_batch() -> Bench {
    let (name, mut tx, mut rx) = shm_ring();
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            let mut buf = [0u64; BATCH];
            let mut next = 0u64;
            let mut spin = Spin::new();
            while next < n {
                let len = (n - next).min(BATCH as u64) as usize;
                for (k, slot) in buf[..len].iter_mut().enumerate() {
                    *slot = next + k as u64;
                }
                let mut done = 0;
                while done < len {
                    match tx.push_slice(&buf[done..len]) {
                        Ok(0) => spin.wait(),
                        Ok(k) => done += k,
                        Err(e) => panic!("push_slice: {e}"),
                    }
                }
                next += len as u64;
            }
        },
        move |n| {
            let mut buf = [0u64; BATCH];
            let mut expected = 0u64;
            let mut spin = Spin::new();
            while expected < n {
                let want = (n - expected).min(BATCH as u64) as usize;
                match rx.pop_slice(&mut buf[..want]) {
                    Ok(0) => spin.wait(),
                    Ok(k) => {
                        for &v in &buf[..k] {
                            if v != expected {
                                panic!("out of sequence: expected {expected}, got {v}");
                            }
                            expected += 1;
                        }
                    }
                    Err(e) => panic!("pop_slice: {e}"),
                }
            }
        },
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

/// The stream through the blocking batch calls: `push_all` of [`BATCH`]
/// items, `pop_slice_wait` into a [`BATCH`]-item buffer (spin, then futex).
fn stream_shm_push_all() -> Bench {
    let (name, mut tx, mut rx) = shm_ring();
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            let mut buf = [0u64; BATCH];
            let mut next = 0u64;
            while next < n {
                let len = (n - next).min(BATCH as u64) as usize;
                for (k, slot) in buf[..len].iter_mut().enumerate() {
                    *slot = next + k as u64;
                }
                tx.push_all(&buf[..len]).expect("push_all");
                next += len as u64;
            }
        },
        move |n| {
            let mut buf = [0u64; BATCH];
            let mut expected = 0u64;
            while expected < n {
                let want = (n - expected).min(BATCH as u64) as usize;
                let k = rx.pop_slice_wait(&mut buf[..want]).expect("pop_slice_wait");
                for &v in &buf[..k] {
                    if v != expected {
                        panic!("out of sequence: expected {expected}, got {v}");
                    }
                    expected += 1;
                }
            }
        },
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

/// The stream through zero-copy windows: the producer reserves up to
/// [`BATCH`] slots, writes them in place (`fill_with`) and commits; the
/// consumer opens a read window of up to [`BATCH`], checks the items in
/// place (`iter`, copies of `u64`s) and releases them. One index store per
/// window on each side.
fn stream_shm_window() -> Bench {
    let (name, mut tx, mut rx) = shm_ring();
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            let mut next = 0u64;
            let mut spin = Spin::new();
            while next < n {
                let want = (n - next).min(BATCH as u64) as usize;
                let mut w = tx.try_write_window(want).expect("try_write_window");
                if w.is_empty() {
                    spin.wait();
                    continue;
                }
                let base = next;
                w.fill_with(|i| base + i as u64);
                next += w.len() as u64;
                w.commit_all();
            }
        },
        move |n| {
            let mut expected = 0u64;
            let mut spin = Spin::new();
            while expected < n {
                let want = (n - expected).min(BATCH as u64) as usize;
                let r = rx.try_read_window(want).expect("try_read_window");
                if r.is_empty() {
                    spin.wait();
                    continue;
                }
                for v in r.iter() {
                    if v != expected {
                        panic!("out of sequence: expected {expected}, got {v}");
                    }
                    expected += 1;
                }
                r.release_all();
            }
        },
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

/// rtrb's chunk API, the same shape as [`stream_shm_window`]: the producer
/// asks for a chunk of up to [`BATCH`] (`write_chunk_uninit`; on
/// `TooFewSlots(k)` it takes the `k` there are) and fills it from an
/// iterator (which commits); the consumer reads a chunk of up to [`BATCH`]
/// (`read_chunk`), checks it through `as_slices` and commits it.
fn stream_rtrb_chunk() -> Bench {
    use rtrb::chunks::ChunkError;
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAP);
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            let mut next = 0u64;
            let mut spin = Spin::new();
            while next < n {
                let want = (n - next).min(BATCH as u64) as usize;
                let chunk = match tx.write_chunk_uninit(want) {
                    Ok(c) => c,
                    Err(ChunkError::TooFewSlots(0)) => {
                        assert!(!tx.is_abandoned(), "rtrb consumer gone");
                        spin.wait();
                        continue;
                    }
                    Err(ChunkError::TooFewSlots(k)) => tx.write_chunk_uninit(k).expect("k slots"),
                };
                next += chunk.fill_from_iter(next..) as u64;
            }
        },
        move |n| {
            let mut expected = 0u64;
            let mut spin = Spin::new();
            while expected < n {
                let want = (n - expected).min(BATCH as u64) as usize;
                let chunk = match rx.read_chunk(want) {
                    Ok(c) => c,
                    Err(ChunkError::TooFewSlots(0)) => {
                        assert!(!rx.is_abandoned(), "rtrb producer gone");
                        spin.wait();
                        continue;
                    }
                    Err(ChunkError::TooFewSlots(k)) => rx.read_chunk(k).expect("k items"),
                };
                let (a, b) = chunk.as_slices();
                for &v in a.iter().chain(b) {
                    if v != expected {
                        panic!("out of sequence: expected {expected}, got {v}");
                    }
                    expected += 1;
                }
                chunk.commit_all();
            }
        },
    );
    Bench {
        crew,
        _names: Vec::new(),
    }
}

/// The same stream through the blocking `push()`/`pop()` (spin, then futex).
fn stream_shm_blocking() -> Bench {
    let (name, mut tx, mut rx) = shm_ring();
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

fn stream_rtrb() -> Bench {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAP);
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            for i in 0..n {
                rtrb_push(&mut tx, i);
            }
        },
        move |n| drain_sequence!(rtrb_pop(&mut rx), n),
    );
    Bench {
        crew,
        _names: Vec::new(),
    }
}

fn pingpong_shm() -> Bench {
    let (ping_name, mut ping_tx, mut ping_rx) = shm_ring();
    let (pong_name, mut pong_tx, mut pong_rx) = shm_ring();
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

/// Ping-pong through the blocking `push()`/`pop()`.
fn pingpong_shm_blocking() -> Bench {
    let (ping_name, mut ping_tx, mut ping_rx) = shm_ring();
    let (pong_name, mut pong_tx, mut pong_rx) = shm_ring();
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

/// Push then pop on thread A (CPU 0), `n` times; B idles.
fn single_shm() -> Bench {
    let (name, mut tx, mut rx) = shm_ring();
    let crew = Crew::pair(
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
        crew,
        _names: vec![name],
    }
}

/// The same for rtrb, for reference.
fn single_rtrb() -> Bench {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAP);
    let crew = Crew::pair(
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
        crew,
        _names: Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Criterion groups (one contender after the other: see the interleaved
// section for comparisons)
// ---------------------------------------------------------------------------

fn stream(c: &mut Criterion) {
    criterion_group_of(
        c,
        "stream",
        true,
        &[("shmqueue", stream_shm), ("rtrb", stream_rtrb)],
    );
}

fn pingpong(c: &mut Criterion) {
    criterion_group_of(
        c,
        "pingpong",
        false,
        &[
            ("shmqueue", pingpong_shm),
            ("atomic", pingpong_atomic),
            ("rtrb", pingpong_rtrb),
        ],
    );
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

criterion_group! {
    name = benches;
    config = config();
    targets = stream, pingpong, single_thread
}

// ---------------------------------------------------------------------------
// Interleaved comparison
// ---------------------------------------------------------------------------

/// The comparisons the project's goals are stated in, each measured
/// interleaved. `smoke` (under `cargo test --benches`) runs one tiny round.
fn interleaved(smoke: bool) {
    let rounds = rounds(smoke);
    let scale = |b: u64| scale(smoke, b);
    let started = Instant::now();
    println!(
        "interleaved comparison (threads on CPUs {CPU_A} and {CPU_B}, u64 items, capacity {CAP})"
    );

    let s = interleave(
        &[
            ("shmqueue", stream_shm()),
            ("rtrb", stream_rtrb()),
            ("shmqueue blocking", stream_shm_blocking()),
            ("shmqueue batch", stream_shm_batch()),
            ("shmqueue push_all", stream_shm_push_all()),
            ("shmqueue window", stream_shm_window()),
            ("rtrb chunk", stream_rtrb_chunk()),
        ],
        scale(STREAM_BATCH),
        rounds,
        LAYOUT,
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
    // Issue #16: the blocking calls against their own try_* loop, busy peer.
    s.ratio(
        "throughput shmqueue blocking/shmqueue",
        blocking,
        shm,
        true,
        Some(Goal::AtLeast(0.9)),
    );
    s.ratio(
        "throughput shmqueue batch/rtrb",
        "shmqueue batch",
        rtrb,
        true,
        Some(Goal::AtLeast(3.0)),
    );
    s.ratio(
        "throughput shmqueue window/rtrb",
        "shmqueue window",
        rtrb,
        true,
        Some(Goal::AtLeast(3.0)),
    );
    s.ratio(
        "throughput shmqueue push_all/rtrb",
        "shmqueue push_all",
        rtrb,
        true,
        None,
    );
    s.ratio(
        "throughput shmqueue batch/rtrb chunk",
        "shmqueue batch",
        "rtrb chunk",
        true,
        None,
    );
    s.ratio(
        "throughput shmqueue window/rtrb chunk",
        "shmqueue window",
        "rtrb chunk",
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
        LAYOUT,
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
    s.ratio(
        "round trip shmqueue blocking/shmqueue",
        blocking,
        shm,
        false,
        Some(Goal::AtMost(1.1)),
    );

    let s = interleave(
        &[("shmqueue", single_shm()), ("rtrb", single_rtrb())],
        scale(SINGLE_BATCH),
        rounds,
        LAYOUT,
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

fn main() {
    common::main(interleaved, benches);
}
