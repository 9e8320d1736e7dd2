//! Byte throughput of the byte ring against a same-core `memcpy`.
//!
//! * `ring`: a producer pinned to CPU 0 sends `size`-byte messages
//!   (`try_send`, spinning while full) through a 256 KiB byte ring to a
//!   consumer pinned to CPU 1, which copies each one out (`try_recv_into`
//!   into a reused buffer, spinning while empty). Time/message is the
//!   consumer's, from the start barrier to the last message.
//! * `ring blocking`: the same with `send` / `recv_into` (spin, then futex).
//! * `ring zero-copy`: `reserve` + one copy in, `read` in place + one copy
//!   out: the same bytes moved, through the zero-copy API.
//! * `memcpy`: one thread on CPU 0 copies the same `size` bytes from one
//!   buffer to another, `n` times: the rate a single core moves these bytes
//!   when nothing crosses cores.
//! * `two-core floor`: the least any shared-memory ring can do with these
//!   bytes: a bare ring of `size`-byte slots in the same 256 KiB, with
//!   cached head/tail counters and no framing, validation or liveness; the
//!   producer (CPU 0) copies each message in, the consumer (CPU 1) copies
//!   it out. `ring / two-core floor` is the cost of the byte ring's design;
//!   `two-core floor / memcpy` is what crossing cores costs on this machine.
//!
//! The goal (issue #7) is ring >= 50% of the memcpy byte rate for 64 KiB
//! messages; 1 KiB and 64 B are shown for information (there the per-record
//! cost dominates). The ring moves every byte twice (into the ring on one
//! core, out on the other) and across cores; the memcpy moves it once,
//! within one core's caches.
//!
//! On a loaded machine the spinning contenders (`ring`, `two-core floor`)
//! suffer most (a spinner whose peer was descheduled burns its time slice),
//! so read `ring / two-core floor` there; the blocking variants sleep instead.
//!
//! Run with `SHMQ_INTERLEAVED=only cargo bench --bench bytes` for the
//! interleaved tables (the contenders of each size alternate round by round,
//! see benches/common), or `cargo bench --bench bytes` for criterion too.

// The shared harness; this bench uses its crew, interleaving and tables, not
// the u64 push/pop adapters or the atomic floors.
#[allow(dead_code, unused_macros)]
mod common;

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use criterion::{criterion_group, Criterion, Throughput};
use shmqueue::{ByteRing, RecvError, SendError};

use common::{
    config, interleave, rounds, scale, Bench, Crew, Goal, Layout, Member, ShmName, Spin, Timed,
    CPU_A, CPU_B,
};

/// Bytes of the ring's data area.
const RING: usize = 256 << 10;
/// Column widths of the interleaved tables.
const LAYOUT: Layout = Layout {
    name: 18,
    ratio: 40,
};

fn ring(
    size: usize,
) -> (
    ShmName,
    shmqueue::bytes::Producer,
    shmqueue::bytes::Consumer,
) {
    let name = ShmName::new("shmq-bench-bytes");
    let q = ByteRing::builder()
        .capacity(RING)
        .max_message_size(size.max(1))
        .create(&name.0)
        .expect("create byte ring");
    let tx = q.producer().expect("producer");
    let rx = q.consumer().expect("consumer");
    (name, tx, rx)
}

/// Source bytes that are not all the same (so nothing can shortcut them).
fn source(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 131 + 7) as u8).collect()
}

fn stream_ring(size: usize) -> Bench {
    let (name, mut tx, mut rx) = ring(size);
    let src = source(size);
    let mut dst = vec![0u8; size];
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            for _ in 0..n {
                let mut w = Spin::new();
                loop {
                    match tx.try_send(&src) {
                        Ok(()) => break,
                        Err(SendError::Full) => w.wait(),
                        Err(e) => panic!("try_send: {e}"),
                    }
                }
            }
        },
        move |n| {
            for _ in 0..n {
                let mut w = Spin::new();
                loop {
                    match rx.try_recv_into(&mut dst) {
                        Ok(k) => {
                            assert_eq!(k, size);
                            break;
                        }
                        Err(RecvError::Empty) => w.wait(),
                        Err(e) => panic!("try_recv_into: {e}"),
                    }
                }
                black_box(&mut dst);
            }
        },
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

fn stream_ring_blocking(size: usize) -> Bench {
    let (name, mut tx, mut rx) = ring(size);
    let src = source(size);
    let mut dst = vec![0u8; size];
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            for _ in 0..n {
                tx.send(&src).expect("send");
            }
        },
        move |n| {
            for _ in 0..n {
                assert_eq!(rx.recv_into(&mut dst).expect("recv_into"), size);
                black_box(&mut dst);
            }
        },
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

fn stream_ring_zero_copy(size: usize) -> Bench {
    let (name, mut tx, mut rx) = ring(size);
    let src = source(size);
    let mut dst = vec![0u8; size];
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            for _ in 0..n {
                let mut w = tx.reserve(size).expect("reserve");
                w.copy_from_slice(&src);
                w.commit();
            }
        },
        move |n| {
            for _ in 0..n {
                let r = rx.read().expect("read");
                r.copy_to_slice(&mut dst);
                r.release();
                black_box(&mut dst);
            }
        },
    );
    Bench {
        crew,
        _names: vec![name],
    }
}

/// The bare ring of [`two_core_floor`]: `slots` slots of `size` bytes.
struct Floor {
    buf: Box<[UnsafeCell<u8>]>,
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    slots: u64,
    size: usize,
}

// SAFETY: the bytes are only accessed through raw pointers by one producer
// and one consumer, which hand slots over with Release/Acquire on head and
// tail, so no slot is accessed by both at once.
unsafe impl Sync for Floor {}

impl Floor {
    fn slot(&self, pos: u64) -> *mut u8 {
        let i = (pos % self.slots) as usize * self.size;
        // SAFETY: i + size <= slots * size = buf.len(); UnsafeCell<u8> has
        // u8's layout and permits writes through a shared reference.
        unsafe { UnsafeCell::raw_get(self.buf.as_ptr().add(i)) }
    }
}

fn two_core_floor(size: usize) -> Bench {
    let slots = (RING / size) as u64;
    let f = Arc::new(Floor {
        buf: (0..slots as usize * size)
            .map(|_| UnsafeCell::new(0))
            .collect(),
        head: CachePadded::new(AtomicU64::new(0)),
        tail: CachePadded::new(AtomicU64::new(0)),
        slots,
        size,
    });
    let (fa, fb) = (Arc::clone(&f), f);
    let src = source(size);
    let mut dst = vec![0u8; size];
    let crew = Crew::pair(
        Timed::B,
        move |n| {
            let mut head = fa.head.load(Ordering::Relaxed);
            let mut tail = fa.tail.load(Ordering::Acquire);
            for _ in 0..n {
                let mut w = Spin::new();
                while head - tail == fa.slots {
                    w.wait();
                    tail = fa.tail.load(Ordering::Acquire);
                }
                // SAFETY: the slot is free (released by the consumer, Acquire
                // above) and invisible to it until the store below.
                unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), fa.slot(head), size) };
                head += 1;
                fa.head.store(head, Ordering::Release);
            }
        },
        move |n| {
            let mut tail = fb.tail.load(Ordering::Relaxed);
            let mut head = fb.head.load(Ordering::Acquire);
            for _ in 0..n {
                let mut w = Spin::new();
                while head == tail {
                    w.wait();
                    head = fb.head.load(Ordering::Acquire);
                }
                // SAFETY: the slot is published (Acquire above) and the
                // producer leaves it alone until the store below.
                unsafe { core::ptr::copy_nonoverlapping(fb.slot(tail), dst.as_mut_ptr(), size) };
                tail += 1;
                fb.tail.store(tail, Ordering::Release);
                black_box(&mut dst);
            }
        },
    );
    Bench {
        crew,
        _names: Vec::new(),
    }
}

fn memcpy(size: usize) -> Bench {
    let src = source(size);
    let mut dst = vec![0u8; size];
    let crew = Crew::spawn(vec![Member {
        cpu: CPU_A,
        timed: true,
        work: Box::new(move |n| {
            for _ in 0..n {
                dst.copy_from_slice(black_box(&src));
                black_box(&mut dst);
            }
        }),
    }]);
    Bench {
        crew,
        _names: Vec::new(),
    }
}

/// Messages per batch for `size`-byte messages: about 256 MiB of payload
/// (64 KiB), or a fixed count for the small sizes.
fn batch(size: usize) -> u64 {
    match size {
        s if s >= 64 << 10 => 4096,
        s if s >= 1024 => 1 << 18,
        _ => 1 << 20,
    }
}

fn label(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

fn interleaved(smoke: bool) {
    let rounds = rounds(smoke);
    let started = Instant::now();
    println!(
        "interleaved comparison: byte ring ({} KiB, producer CPU {CPU_A}, consumer CPU {CPU_B}) \
         against memcpy on CPU {CPU_A}",
        RING >> 10
    );
    for size in [64 << 10, 1024, 64] {
        let n = scale(smoke, batch(size));
        let s = interleave(
            &[
                ("ring", stream_ring(size)),
                ("memcpy", memcpy(size)),
                ("two-core floor", two_core_floor(size)),
                ("ring blocking", stream_ring_blocking(size)),
                ("ring zero-copy", stream_ring_zero_copy(size)),
            ],
            n,
            rounds,
            LAYOUT,
        );
        s.print(
            &format!(
                "{} messages ({n} per batch; GB/s = {size} B x M msg/s / 1000)",
                label(size)
            ),
            "message",
            true,
        );
        let goal = (size == 64 << 10).then_some(Goal::AtLeast(0.5));
        s.ratio("byte rate ring/memcpy", "ring", "memcpy", true, goal);
        s.ratio(
            "byte rate ring/two-core floor",
            "ring",
            "two-core floor",
            true,
            None,
        );
        s.ratio(
            "byte rate two-core floor/memcpy",
            "two-core floor",
            "memcpy",
            true,
            None,
        );
        s.ratio(
            "byte rate ring blocking/memcpy",
            "ring blocking",
            "memcpy",
            true,
            None,
        );
        s.ratio(
            "byte rate ring zero-copy/memcpy",
            "ring zero-copy",
            "memcpy",
            true,
            None,
        );
    }
    println!(
        "interleaved section took {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
}

fn criterion_bytes(c: &mut Criterion) {
    let size = 64 << 10;
    let mut g = c.benchmark_group("bytes/64KiB");
    g.throughput(Throughput::Bytes(size as u64));
    for (name, make) in [
        ("ring", stream_ring as fn(usize) -> Bench),
        ("memcpy", memcpy),
    ] {
        let bench = make(size);
        g.bench_function(name, |b| b.iter_custom(|iters| bench.crew.run(iters)));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = criterion_bytes
}

fn main() {
    common::main(interleaved, benches);
}
