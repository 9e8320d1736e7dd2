//! Harness shared by `benches/spsc.rs` and `benches/mpmc.rs`: pinned,
//! long-lived benchmark threads, the hardware-floor contenders, the
//! interleaved comparison (rounds, statistics, tables) and `main`.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use crossbeam_utils::CachePadded;
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Items the rings / queues hold.
pub const CAP: usize = 1024;
/// CPU of the producer / ping side.
pub const CPU_A: usize = 0;
/// CPU of the consumer / echo side.
pub const CPU_B: usize = 1;
/// A [`Member`]'s `cpu` that leaves the thread unpinned (`benches/aio.rs`,
/// `SHMQ_PIN=0`).
pub const ANY_CPU: usize = usize::MAX;
/// Longest a batch may take before the harness gives up (a wedged peer).
const BATCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Rounds of the interleaved comparison (`SHMQ_ROUNDS` overrides).
const ROUNDS: usize = 21;
/// Items per stream batch.
pub const STREAM_BATCH: u64 = 1 << 22;
/// Round trips per ping-pong batch.
pub const PINGPONG_BATCH: u64 = 1 << 16;

// ---------------------------------------------------------------------------
// Harness: pinning, waiting, a reusable crew of pinned threads.
// ---------------------------------------------------------------------------

/// Pin the calling thread to `cpu` (not [`ANY_CPU`]); on failure say so
/// once and run unpinned.
fn pin_to(cpu: usize) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if cpu == ANY_CPU {
        return;
    }
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
pub struct Spin(u32);

impl Spin {
    #[inline(always)]
    pub fn new() -> Self {
        Spin(0)
    }

    #[inline(always)]
    pub fn wait(&mut self) {
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
pub type Work = Box<dyn FnMut(u64) + Send>;

/// A crew member: its CPU, whether its end time counts, its work.
pub struct Member {
    pub cpu: usize,
    pub timed: bool,
    pub work: Work,
}

/// What a member reports after a batch.
struct Report {
    timed: bool,
    start: Instant,
    end: Instant,
}

/// Which of the two threads of a pair reports the elapsed time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Timed {
    A,
    B,
}

/// Long-lived pinned threads, each running its closure once per batch.
pub struct Crew {
    cmds: Vec<mpsc::Sender<u64>>,
    reports: mpsc::Receiver<Report>,
    handles: Vec<JoinHandle<()>>,
}

impl Crew {
    pub fn spawn(members: Vec<Member>) -> Crew {
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
    pub fn pair<A, B>(timed: Timed, a: A, b: B) -> Crew
    where
        A: FnMut(u64) + Send + 'static,
        B: FnMut(u64) + Send + 'static,
    {
        Crew::spawn(vec![
            Member {
                cpu: CPU_A,
                timed: timed == Timed::A,
                work: Box::new(a),
            },
            Member {
                cpu: CPU_B,
                timed: timed == Timed::B,
                work: Box::new(b),
            },
        ])
    }

    /// Run one batch of `n` on every member; from the earliest start to the
    /// latest end of a timed member.
    pub fn run(&self, n: u64) -> Duration {
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

/// A uniquely named segment that is unlinked when dropped, panic or not.
pub struct ShmName(pub String);

impl ShmName {
    /// `/{prefix}-{pid}-{n}`, `n` counting up within the process.
    pub fn new(prefix: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        ShmName(format!("/{prefix}-{}-{n}", std::process::id()))
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        if let Err(e) = shmqueue::unlink(&self.0) {
            eprintln!("warning: unlink {}: {e}", self.0);
        }
    }
}

// Push/pop adapters for shmqueue's endpoints (SPSC and MPMC alike) with one
// loop shape: try, and on Full/Empty wait with `$wait` (a `Spin`, or any type
// with `new()` and `wait()`) and try again.

macro_rules! shm_push {
    ($tx:expr, $v:expr, $wait:ty) => {{
        let mut v: u64 = $v;
        let mut w = <$wait>::new();
        loop {
            match $tx.try_push(v) {
                Ok(()) => break,
                Err(shmqueue::TryPushError::Full(back)) => {
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
                Err(shmqueue::TryPopError::Empty) => w.wait(),
                Err(e) => panic!("try_pop: {e:?}"),
            }
        }
    }};
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

// ---------------------------------------------------------------------------
// Contenders shared by both benches.
// ---------------------------------------------------------------------------

/// A contender's running threads plus the shm names they use. Fields drop in
/// order: threads and endpoints go before the names are unlinked.
pub struct Bench {
    pub crew: Crew,
    pub _names: Vec<ShmName>,
}

/// Anything the interleaved comparison can run a batch of.
pub trait Run {
    /// Run one batch of `n`; the time it took.
    fn run(&self, n: u64) -> Duration;
}

impl Run for Bench {
    fn run(&self, n: u64) -> Duration {
        self.crew.run(n)
    }
}

/// The hardware floor: one value bounced through a single cache-padded
/// `AtomicU64`. A writes odd values, B answers with the next even one.
pub fn pingpong_atomic() -> Bench {
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

/// The floor for any ring or queue that keeps its index and its slots in
/// different cache lines: per direction, a payload line written first and a
/// flag line written after it (Release); the reader spins on the flag
/// (Acquire), then reads the payload. Each hop moves two lines, the second
/// only after the first has arrived.
pub fn pingpong_atomic_two_lines() -> Bench {
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

/// Builds a contender.
pub type MakeBench = fn() -> Bench;

/// A criterion group that runs the contenders one after the other, each
/// built just before its benchmark and dropped right after it; with
/// `per_item`, criterion reports a throughput of one element per iteration.
pub fn criterion_group_of(
    c: &mut Criterion,
    group: &str,
    per_item: bool,
    contenders: &[(&str, MakeBench)],
) {
    let mut g = c.benchmark_group(group);
    if per_item {
        g.throughput(Throughput::Elements(1));
    }
    for &(name, make) in contenders {
        let bench = make();
        g.bench_function(name, |b| b.iter_custom(|iters| bench.run(iters)));
    }
    g.finish();
}

/// Criterion settings of both benches.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

// ---------------------------------------------------------------------------
// Interleaved comparison
// ---------------------------------------------------------------------------

/// Column widths of a bench's tables.
#[derive(Clone, Copy)]
pub struct Layout {
    /// Width of the contender-name column.
    pub name: usize,
    /// Width of the ratio-description column.
    pub ratio: usize,
}

/// Per-round nanoseconds per operation of each contender.
pub struct Samples {
    names: Vec<&'static str>,
    /// `ns[c][r]`: contender `c`, round `r`.
    ns: Vec<Vec<f64>>,
    layout: Layout,
}

/// Run `rounds` rounds; in each, every contender runs one batch of `batch`,
/// back to back, so all of them see the same machine state (the host moves
/// vCPUs around between phases of a run). The starting contender rotates
/// from round to round so no one always goes first. One unrecorded warm-up
/// round comes first.
pub fn interleave<B: Run>(
    benches: &[(&'static str, B)],
    batch: u64,
    rounds: usize,
    layout: Layout,
) -> Samples {
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
        layout,
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
pub enum Goal {
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

    pub fn print(&self, title: &str, unit: &str, rate: bool) {
        let w = self.layout.name;
        println!("\n{title}: ns/{unit}, {} rounds", self.ns[0].len());
        println!(
            "  {:<w$} {:>9} {:>9} {:>9} {:>9} {:>9}{}",
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
                "  {name:<w$} {m:>9.2} {:>9.2} {:>9.2} {min:>9.2} {max:>9.2}",
                quantile(v, 0.25),
                quantile(v, 0.75),
            );
            if rate {
                print!("  {:>10.1}", 1e3 / m);
            }
            println!();
        }
        if std::env::var_os("SHMQ_RAW").is_some() {
            // "raw " takes four columns of the name's width.
            let rw = w - 4;
            for (name, v) in self.names.iter().zip(&self.ns) {
                let r: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
                println!("  raw {name:<rw$} {}", r.join(" "));
            }
        }
        println!("  per-round ratios: median [p25, p75; ratio of the medians]");
    }

    /// Print `num`'s time over `den`'s, or, if `throughput`, `den`'s time
    /// over `num`'s (a throughput ratio). The headline is the median of the
    /// per-round ratios, each from two batches that ran back to back; the
    /// ratio of the two medians mixes rounds from different machine states
    /// and is shown for reference only.
    pub fn ratio(&self, what: &str, num: &str, den: &str, throughput: bool, goal: Option<Goal>) {
        let (mut a, mut b) = (self.of(num), self.of(den));
        if throughput {
            std::mem::swap(&mut a, &mut b);
        }
        let paired: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        let m = median(&paired);
        let w = self.layout.ratio;
        print!(
            "  {what:<w$} {m:>6.3} [{:.3}, {:.3}; {:.3}]",
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

/// Rounds of the interleaved comparison: one under `smoke`, else
/// `SHMQ_ROUNDS` if set to a positive number, else [`ROUNDS`].
pub fn rounds(smoke: bool) -> usize {
    if smoke {
        1
    } else {
        std::env::var("SHMQ_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&r| r > 0)
            .unwrap_or(ROUNDS)
    }
}

/// A batch size, or 1024 under `smoke`.
pub fn scale(smoke: bool, batch: u64) -> u64 {
    if smoke {
        1024
    } else {
        batch
    }
}

/// The body of both benches' `main`. `SHMQ_INTERLEAVED=only` runs just the
/// interleaved comparison, `SHMQ_INTERLEAVED=0` just the criterion groups;
/// by default both run, interleaved first.
pub fn main(interleaved: fn(bool), criterion_groups: fn()) {
    let mode = std::env::var("SHMQ_INTERLEAVED").unwrap_or_default();
    let args: Vec<String> = std::env::args().collect();
    // As criterion decides: without `--bench` (e.g. `cargo test --benches`)
    // this is a test run, where one tiny round checks that everything works.
    let smoke = !args.iter().any(|a| a == "--bench");
    // Timing the fault-injection hooks would time code no user runs.
    assert!(
        !shmqueue::test_hooks_compiled(),
        "shmqueue was built with its test-hooks feature: run the benches from \
         their own package (cargo bench -p shmqueue-benches), not with the \
         library's tests"
    );
    let listing = args.iter().any(|a| a == "--list");
    if !listing && mode != "0" && mode != "off" {
        interleaved(smoke);
    }
    if mode != "only" {
        criterion_groups();
        Criterion::default().configure_from_args().final_summary();
    }
}
