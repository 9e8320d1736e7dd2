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
//! Run with `cargo bench --bench spsc`.

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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
// Benchmarks
// ---------------------------------------------------------------------------

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

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(1));

    {
        let (_name, mut tx, mut rx) = shm_ring();
        let pair = Pair::spawn(
            Timed::B,
            move |n| {
                for i in 0..n {
                    shm_push(&mut tx, i);
                }
            },
            move |n| drain_sequence!(shm_pop(&mut rx), n),
        );
        g.bench_function("shmqueue", |b| b.iter_custom(|iters| pair.run(iters)));
        drop(pair); // threads and endpoints go before the name is unlinked
    }

    {
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
        g.bench_function("rtrb", |b| b.iter_custom(|iters| pair.run(iters)));
    }

    g.finish();
}

fn pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong");

    {
        let (_ping_name, mut ping_tx, mut ping_rx) = shm_ring();
        let (_pong_name, mut pong_tx, mut pong_rx) = shm_ring();
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
        g.bench_function("shmqueue", |b| b.iter_custom(|iters| pair.run(iters)));
        drop(pair);
    }

    {
        // A writes odd values, B answers with the next even one.
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
        g.bench_function("atomic", |b| b.iter_custom(|iters| pair.run(iters)));
    }

    {
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
        g.bench_function("rtrb", |b| b.iter_custom(|iters| pair.run(iters)));
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
criterion_main!(benches);
