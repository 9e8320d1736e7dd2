//! The MPMC work queue between real processes: streaming with many producers
//! and consumers, SIGKILL injection and SIGSTOP. This test binary re-executes
//! itself as the children (see tests/common).
//!
//! Values are `producer << 40 | seq`. A consumer sees each producer's items in
//! increasing order (it wins positions in increasing order, and a producer
//! wins its positions in increasing order), so every consumer checks that,
//! and the parent checks that every `(producer, seq)` was delivered exactly
//! once overall.

mod common;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shmqueue::mpmc::{self, test_hooks};
use shmqueue::{
    Error, Mpmc, PopError, PushError, QueueKind, Role, Spsc, TryPopError, TryPushError,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const SEQ_BITS: u32 = 40;

fn item(producer: u64, seq: u64) -> u64 {
    producer << SEQ_BITS | seq
}

fn split(v: u64) -> (u64, u64) {
    (v >> SEQ_BITS, v & ((1 << SEQ_BITS) - 1))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn parse(key: &str) -> Result<u64, String> {
    let v = child_arg(key);
    v.parse().map_err(|e| format!("SHMQ_TEST_{key}={v}: {e}"))
}

/// Push, waiting at most `DEADLINE` while full. The first attempt does not
/// read the clock, so streaming costs what the queue costs.
fn push_u64(tx: &mut mpmc::Producer<u64>, v: u64) -> Result<(), String> {
    match tx.try_push(v) {
        Ok(()) => Ok(()),
        Err(TryPushError::Full(v)) => tx
            .push_timeout(v, DEADLINE)
            .map_err(|e| format!("push {v:#x}: {e:?}")),
        Err(e) => Err(format!("push {v:#x}: {e:?}")),
    }
}

/// Pop, waiting at most `DEADLINE` while empty; `None` once disconnected.
fn pop_u64(rx: &mut mpmc::Consumer<u64>) -> Result<Option<u64>, String> {
    match rx.try_pop() {
        Ok(v) => Ok(Some(v)),
        Err(TryPopError::Empty) => match rx.pop_timeout(DEADLINE) {
            Ok(v) => Ok(Some(v)),
            Err(PopError::Disconnected) => Ok(None),
            Err(e) => Err(format!("pop: {e:?}")),
        },
        Err(TryPopError::Disconnected) => Ok(None),
        Err(e) => Err(format!("pop: {e:?}")),
    }
}

/// A small deterministic generator (splitmix64). The seed is printed, and
/// `SHMQ_TEST_SEED=<seed>` replays a run's choices.
struct Rng(u64);

impl Rng {
    fn seeded(test: &str) -> Rng {
        let seed = std::env::var("SHMQ_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
            });
        eprintln!("{test}: seed {seed} (replay with SHMQ_TEST_SEED={seed})");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A unique path in the temporary directory, removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempPath(std::env::temp_dir().join(format!("shmq-test-{}-{tag}-{n}", std::process::id())))
    }

    fn arg(&self) -> String {
        self.0.to_str().expect("temporary path is UTF-8").to_owned()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Words in a file mapped shared by the parent and a child. What a child
/// stores there survives its SIGKILL: the parent reads it after the death.
struct Ledger {
    map: memmap2::MmapRaw,
    /// Set in the parent, which created (and removes) the file.
    file: Option<TempPath>,
}

impl Ledger {
    fn create(tag: &str, words: usize) -> Ledger {
        let path = TempPath::new(tag);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path.0)
            .unwrap();
        f.set_len(words as u64 * 8).unwrap();
        Ledger {
            map: memmap2::MmapRaw::map_raw(&f).unwrap(),
            file: Some(path),
        }
    }

    fn open(path: &str) -> Result<Ledger, String> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("open {path}: {e}"))?;
        Ok(Ledger {
            map: memmap2::MmapRaw::map_raw(&f).map_err(err)?,
            file: None,
        })
    }

    fn path(&self) -> String {
        self.file.as_ref().expect("parent side").arg()
    }

    fn words(&self) -> &[AtomicU64] {
        let len = self.map.len() / 8;
        // SAFETY: the mapping is page-aligned, at least `len * 8` bytes long
        // and lives as long as `self`; AtomicU64 has the size and alignment
        // of u64 and every bit pattern is valid; the file is this test's own
        // and is never truncated, and every process accesses it only through
        // these atomics (the pointer is the mapping's mutable one).
        unsafe { std::slice::from_raw_parts(self.map.as_mut_ptr().cast::<AtomicU64>(), len) }
    }
}

/// Checks, for one consumer, that each producer's sequence numbers increase.
#[derive(Default)]
struct Order(HashMap<u64, u64>);

impl Order {
    fn check(&mut self, v: u64) -> Result<(), String> {
        let (p, s) = split(v);
        let next = self.0.entry(p).or_insert(0);
        if s < *next {
            return Err(format!(
                "producer {p}: seq {s} after seq {} at the same consumer",
                *next - 1
            ));
        }
        *next = s + 1;
        Ok(())
    }
}

/// The set of delivered `(producer, seq)`, one bit each.
#[derive(Default)]
struct Delivered(HashMap<u64, Vec<u64>>);

impl Delivered {
    fn insert(&mut self, v: u64) -> Result<(), String> {
        let (p, s) = split(v);
        let words = self.0.entry(p).or_default();
        let i = (s / 64) as usize;
        if words.len() <= i {
            words.resize((i + 1).max(words.len() * 2), 0);
        }
        let bit = 1u64 << (s % 64);
        if words[i] & bit != 0 {
            return Err(format!("producer {p} seq {s} delivered twice"));
        }
        words[i] |= bit;
        Ok(())
    }

    fn merge(&mut self, other: Delivered) -> Result<(), String> {
        for (p, theirs) in other.0 {
            let ours = self.0.entry(p).or_default();
            if ours.len() < theirs.len() {
                ours.resize(theirs.len(), 0);
            }
            for (i, (o, t)) in ours.iter_mut().zip(&theirs).enumerate() {
                if *o & t != 0 {
                    let s = i as u64 * 64 + u64::from((*o & t).trailing_zeros());
                    return Err(format!("producer {p} seq {s} delivered twice"));
                }
                *o |= t;
            }
        }
        Ok(())
    }

    fn seqs(&self, p: u64) -> impl Iterator<Item = u64> + '_ {
        self.0.get(&p).into_iter().flat_map(|words| {
            words.iter().enumerate().flat_map(|(i, &w)| {
                (0..64)
                    .filter(move |b| w & (1 << b) != 0)
                    .map(move |b| i as u64 * 64 + b)
            })
        })
    }

    /// How many of `0..n` of producer `p` are missing.
    fn missing_below(&self, p: u64, n: u64) -> u64 {
        n - self.seqs(p).filter(|&s| s < n).count() as u64
    }

    /// The smallest delivered seq of producer `p` that is `>= n`.
    fn first_at_or_above(&self, p: u64, n: u64) -> Option<u64> {
        self.seqs(p).find(|&s| s >= n)
    }
}

// ---------------------------------------------------------------------------
// Streaming: P producer and C consumer processes, 10^7 items in all
// ---------------------------------------------------------------------------

const STREAM_ITEMS: u64 = 10_000_000;
const STREAM_CAPACITY: usize = 1024;

fn stream_child(role: &str) -> Result<(), String> {
    let q = Mpmc::<u64>::open(&child_arg("NAME")).map_err(err)?;
    let producers = parse("PRODUCERS")?;
    let per = parse("PER")?;
    match role {
        "producer" => {
            let id = parse("ID")?;
            let mut tx = q.producer().map_err(err)?;
            for seq in 0..per {
                push_u64(&mut tx, item(id, seq))?;
            }
            Ok(())
        }
        "consumer" => {
            let mut rx = q.consumer().map_err(err)?;
            let per_producer = per.div_ceil(64) as usize;
            let mut bits = vec![0u64; per_producer * producers as usize];
            let mut next = vec![0u64; producers as usize];
            let mut count = vec![0u64; producers as usize];
            while let Some(v) = pop_u64(&mut rx)? {
                let (p, s) = split(v);
                if p >= producers || s >= per {
                    return Err(format!("popped {v:#x}, which nobody pushed"));
                }
                let p = p as usize;
                // Strictly increasing per producer: no duplicate here, and
                // the order every consumer of an MPMC queue must see.
                if s < next[p] {
                    return Err(format!("producer {p}: seq {s} after {}", next[p] - 1));
                }
                next[p] = s + 1;
                count[p] += 1;
                bits[p * per_producer + (s / 64) as usize] |= 1 << (s % 64);
            }
            std::fs::write(child_arg("OUT"), bytemuck::cast_slice::<u64, u8>(&bits))
                .map_err(err)?;
            let counts: Vec<String> = count.iter().map(u64::to_string).collect();
            tell_parent(&format!("done {}", counts.join(" ")));
            Ok(())
        }
        other => Err(format!("unknown role {other}")),
    }
}

/// `producers` processes push `STREAM_ITEMS / producers` items each into a
/// queue that `consumers` processes drain; each consumer writes the set it
/// received as a bitmap, and the parent checks that the bitmaps are disjoint
/// (no duplicate) and cover every item (no loss).
fn stream(test: &str, producers: u64, consumers: usize, capacity: usize, items: u64) {
    if let Some(role) = child_role() {
        run_child(|| stream_child(&role));
    }
    let per = items / producers;
    assert_eq!(per * producers, items);
    let shm = Shm::new("stream");
    let q = Mpmc::<u64>::create(shm.name(), capacity).unwrap();
    // Until every producer child has pushed everything, keep one producer
    // attached: otherwise a consumer could read "every producer gone" in the
    // moment between one producer child finishing and another attaching.
    let gate = q.producer().unwrap();
    let started = Instant::now();
    let common = [
        ("NAME", shm.0.clone()),
        ("PRODUCERS", producers.to_string()),
        ("PER", per.to_string()),
    ];
    let outs: Vec<TempPath> = (0..consumers).map(|_| TempPath::new("bits")).collect();
    let mut consumer_procs: Vec<ChildProc> = outs
        .iter()
        .map(|out| {
            let mut args = common.to_vec();
            args.push(("OUT", out.arg()));
            spawn(test, "consumer", &args)
        })
        .collect();
    let mut producer_procs: Vec<ChildProc> = (0..producers)
        .map(|id| {
            let mut args = common.to_vec();
            args.push(("ID", id.to_string()));
            spawn(test, "producer", &args)
        })
        .collect();
    for p in &mut producer_procs {
        p.success();
    }
    drop(gate);
    let per_producer = per.div_ceil(64) as usize;
    let mut union = vec![0u64; per_producer * producers as usize];
    let mut total = 0u64;
    for (i, (c, out)) in consumer_procs.iter_mut().zip(&outs).enumerate() {
        let line = c.expect_line();
        let counts: Vec<u64> = line
            .strip_prefix("done ")
            .unwrap_or_else(|| panic!("consumer {i} said {line:?}"))
            .split(' ')
            .map(|n| n.parse().unwrap())
            .collect();
        c.success();
        eprintln!("{test}: consumer {i} got {counts:?} items per producer");
        total += counts.iter().sum::<u64>();
        let bytes = std::fs::read(&out.0).unwrap();
        assert_eq!(bytes.len(), union.len() * 8);
        for (k, (u, chunk)) in union.iter_mut().zip(bytes.chunks_exact(8)).enumerate() {
            let w = u64::from_ne_bytes(chunk.try_into().unwrap());
            let dup = *u & w;
            assert!(
                dup == 0,
                "producer {} seq {} delivered to two consumers",
                k / per_producer,
                (k % per_producer) as u64 * 64 + u64::from(dup.trailing_zeros())
            );
            *u |= w;
        }
    }
    let took = started.elapsed();
    assert_eq!(total, items, "items delivered in all");
    for (k, &u) in union.iter().enumerate() {
        let first = (k % per_producer) as u64 * 64;
        let want = if first + 64 <= per {
            !0
        } else {
            (1u64 << (per - first)) - 1
        };
        assert!(
            u == want,
            "producer {} seq {} never delivered",
            k / per_producer,
            first + u64::from((!u & want).trailing_zeros())
        );
    }
    // Nobody died: nothing may have been skipped or released, however long
    // the oversubscribed scheduler left a producer or consumer mid-claim.
    let stats = q.stats();
    assert_eq!(stats.holes_skipped, 0, "{stats:?}");
    assert_eq!(stats.slots_released, 0, "{stats:?}");
    eprintln!(
        "{test}: {items} items, {producers} producers x {consumers} consumers, \
         capacity {capacity}: {took:?}"
    );
}

#[test]
fn two_producers_two_consumers_ten_million_items_exactly_once() {
    stream(
        "two_producers_two_consumers_ten_million_items_exactly_once",
        2,
        2,
        STREAM_CAPACITY,
        STREAM_ITEMS,
    );
}

#[test]
fn four_producers_four_consumers_ten_million_items_exactly_once() {
    stream(
        "four_producers_four_consumers_ten_million_items_exactly_once",
        4,
        4,
        STREAM_CAPACITY,
        STREAM_ITEMS,
    );
}

/// Capacity 1 (refused before layout version 2): every item is its own lap
/// of the one slot, handed over between processes, exactly once.
#[test]
fn capacity_one_two_producers_two_consumers_exactly_once() {
    stream(
        "capacity_one_two_producers_two_consumers_exactly_once",
        2,
        2,
        1,
        1_000_000,
    );
}

/// Capacity 1 in one process, with threads: a producer thread and a
/// consumer thread, every value in order, and `len`/`capacity` agree.
#[test]
fn capacity_one_between_threads_in_order() {
    let shm = Shm::new("cap1");
    let q = Mpmc::<u64>::create(shm.name(), 1).unwrap();
    assert_eq!(q.capacity(), 1);
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    tx.try_push(7).unwrap();
    assert!(matches!(tx.try_push(8), Err(TryPushError::Full(8))));
    assert_eq!((tx.len(), rx.len(), tx.capacity()), (1, 1, 1));
    assert_eq!(rx.try_pop(), Ok(7));
    assert!(rx.is_empty());
    const N: u64 = 100_000;
    let t = std::thread::spawn(move || {
        for v in 0..N {
            tx.push(v).unwrap();
        }
    });
    for v in 0..N {
        assert_eq!(rx.pop_timeout(DEADLINE), Ok(v));
    }
    t.join().unwrap();
    assert_eq!(rx.pop_timeout(DEADLINE), Err(PopError::Disconnected));
}

// ---------------------------------------------------------------------------
// In one process: kinds, limits, disconnection
// ---------------------------------------------------------------------------

fn incompatible_kind<T: std::fmt::Debug>(r: Result<T, Error>) -> (u64, u64) {
    match r {
        Err(Error::Incompatible {
            field: "queue kind",
            expected,
            found,
        }) => (expected, found),
        other => panic!("expected Incompatible {{ field: \"queue kind\" }}, got {other:?}"),
    }
}

#[test]
fn mpmc_and_spsc_segments_refuse_to_open_as_each_other() {
    let m = Shm::new("kind-mpmc");
    let _mpmc = Mpmc::<u64>::create(m.name(), 8).unwrap();
    let (expected, found) = incompatible_kind(Spsc::<u64>::open(m.name()));
    assert_eq!(
        (expected, found),
        (QueueKind::Spsc as u64, QueueKind::Mpmc as u64)
    );

    let s = Shm::new("kind-spsc");
    let _spsc = Spsc::<u64>::create(s.name(), 8).unwrap();
    let (expected, found) = incompatible_kind(Mpmc::<u64>::open(s.name()));
    assert_eq!(
        (expected, found),
        (QueueKind::Mpmc as u64, QueueKind::Spsc as u64)
    );
    // Each still opens as what it is.
    Mpmc::<u64>::open(m.name()).unwrap();
    Spsc::<u64>::open(s.name()).unwrap();
}

#[test]
fn registry_full_once_max_producers_are_attached() {
    let shm = Shm::new("full");
    let q = Mpmc::<u64>::builder()
        .capacity(8)
        .max_producers(2)
        .max_consumers(1)
        .create(shm.name())
        .unwrap();
    let p1 = q.producer().unwrap();
    let _p2 = q.producer().unwrap();
    match q.producer() {
        Err(Error::RegistryFull { role, limit }) => {
            assert_eq!((role, limit), (Role::Producer, 2));
        }
        other => panic!("a third producer: expected RegistryFull, got {other:?}"),
    }
    // Through another handle (as another process would) too.
    match Mpmc::<u64>::open(shm.name()).unwrap().producer() {
        Err(Error::RegistryFull { role, limit }) => {
            assert_eq!((role, limit), (Role::Producer, 2));
        }
        other => panic!("expected RegistryFull, got {other:?}"),
    }
    // The consumer limit is separate.
    let _c = q.consumer().unwrap();
    match q.consumer() {
        Err(Error::RegistryFull { role, limit }) => {
            assert_eq!((role, limit), (Role::Consumer, 1));
        }
        other => panic!("a second consumer: expected RegistryFull, got {other:?}"),
    }
    // A dropped producer frees its entry.
    drop(p1);
    let _p3 = q.producer().unwrap();
    assert_eq!(q.stats().producers, 2);
}

#[test]
fn dropping_every_producer_disconnects_a_drained_consumer() {
    let shm = Shm::new("noprod");
    let q = Mpmc::<u64>::create(shm.name(), 8).unwrap();
    let mut rx = q.consumer().unwrap();
    // No producer ever attached: empty, not disconnected.
    assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    let mut p1 = q.producer().unwrap();
    let mut p2 = q.producer().unwrap();
    p1.try_push(1).unwrap();
    p2.try_push(2).unwrap();
    drop(p1);
    assert_eq!(rx.try_pop(), Ok(1));
    assert_eq!(rx.try_pop(), Ok(2));
    // One producer is left.
    assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    p2.try_push(3).unwrap();
    drop(p2);
    // What was pushed before the last producer left is still delivered.
    assert_eq!(rx.pop_timeout(DEADLINE), Ok(3));
    assert_eq!(rx.try_pop(), Err(TryPopError::Disconnected));
    let t = Instant::now();
    assert_eq!(rx.pop_timeout(DEADLINE), Err(PopError::Disconnected));
    assert_eq!(rx.pop(), Err(PopError::Disconnected));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // A new producer reconnects the queue.
    let mut p3 = q.producer().unwrap();
    assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    p3.try_push(4).unwrap();
    assert_eq!(rx.try_pop(), Ok(4));
}

#[test]
fn dropping_every_consumer_hands_the_value_back() {
    let shm = Shm::new("nocons");
    let q = Mpmc::<u64>::create(shm.name(), 8).unwrap();
    let mut tx = q.producer().unwrap();
    // No consumer ever attached: items wait for one.
    tx.try_push(5).unwrap();
    let c1 = q.consumer().unwrap();
    let mut c2 = q.consumer().unwrap();
    drop(c1);
    // One consumer is left.
    tx.try_push(6).unwrap();
    assert_eq!(c2.try_pop(), Ok(5));
    drop(c2);
    match tx.try_push(7) {
        Err(TryPushError::Disconnected(v)) => assert_eq!(v, 7),
        other => panic!("expected Disconnected(7), got {other:?}"),
    }
    match tx.push_timeout(8, DEADLINE) {
        Err(PushError::Disconnected(v)) => assert_eq!(v, 8),
        other => panic!("expected Disconnected(8), got {other:?}"),
    }
    match tx.push(9) {
        Err(e @ PushError::Disconnected(_)) => assert_eq!(e.into_inner(), 9),
        other => panic!("expected Disconnected(9), got {other:?}"),
    }
    // A new consumer reconnects it, and finds what was left.
    let mut c3 = q.consumer().unwrap();
    tx.try_push(10).unwrap();
    assert_eq!(c3.try_pop(), Ok(6));
    assert_eq!(c3.try_pop(), Ok(10));
}

// ---------------------------------------------------------------------------
// SIGKILL injection
// ---------------------------------------------------------------------------

const KILL_TEST: &str = "sigkilled_producers_and_consumers_lose_nothing_outside_the_window";
const KILL_CAPACITY: usize = 128;
const MIN_KILLS: usize = 200;
/// Items a consumer child records at most (then it idles until killed).
const LEDGER_POPS: usize = 1 << 18;
/// A frozen child freezes at its k-th won position, k in `1..=FREEZE_MAX`.
const FREEZE_MAX: u64 = 200;
/// A child killed "at a random moment" dies this long (uniform, in µs)
/// after it said it is attached and about to start.
const RANDOM_KILL_MAX_US: u64 = 10_000;

/// A child of the kill test. `FREEZE` = k > 0: freeze the endpoint right after
/// its k-th won position and say "frozen"; 0: say "ready" and run until
/// killed. Either way it records its progress in the `LEDGER` file after
/// every operation, where the parent reads it after the SIGKILL:
///
/// * producer: word 0 = how many pushes returned `Ok` (seqs `0..n`);
/// * consumer: word 0 = n, words `1..=n` = the values popped, in order.
fn kill_child(role: &str) -> Result<(), String> {
    let q = Mpmc::<u64>::open(&child_arg("NAME")).map_err(err)?;
    let ledger = Ledger::open(&child_arg("LEDGER"))?;
    let freeze = parse("FREEZE")?;
    // Attach before saying anything: kills land after the attach (a kill
    // inside `producer()`/`consumer()` is not what this test is about).
    let worker = match role {
        "producer" => {
            let id = parse("ID")?;
            let mut tx = q.producer().map_err(err)?;
            test_hooks::freeze_after_claims(Role::Producer, freeze);
            thread::spawn(move || -> Result<(), String> {
                let done = &ledger.words()[0];
                let mut seq = 0;
                loop {
                    push_u64(&mut tx, item(id, seq))?;
                    seq += 1;
                    done.store(seq, Ordering::Release);
                }
            })
        }
        "consumer" => {
            let mut rx = q.consumer().map_err(err)?;
            test_hooks::freeze_after_claims(Role::Consumer, freeze);
            thread::spawn(move || -> Result<(), String> {
                let words = ledger.words();
                for n in 0..words.len() - 1 {
                    match pop_u64(&mut rx)? {
                        Some(v) => {
                            words[1 + n].store(v, Ordering::Relaxed);
                            words[0].store(n as u64 + 1, Ordering::Release);
                        }
                        None => return Err("disconnected while survivors live".into()),
                    }
                }
                Ok(()) // ledger full: idle until killed
            })
        }
        other => return Err(format!("unknown role {other}")),
    };
    if freeze == 0 {
        tell_parent("ready");
    }
    let mut worker = Some(worker);
    let mut told = freeze == 0;
    let end = Instant::now() + DEADLINE;
    // Wait to be killed; report the freeze, and any failure of the worker.
    loop {
        if !told && test_hooks::frozen() {
            tell_parent("frozen");
            told = true;
        }
        if worker.as_ref().is_some_and(|w| w.is_finished()) {
            worker
                .take()
                .unwrap()
                .join()
                .map_err(|_| "worker panicked".to_string())??;
        }
        if Instant::now() > end {
            return Err(format!("not killed within {DEADLINE:?}"));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// How a child of the kill test dies.
#[derive(Clone, Copy, Debug)]
enum Death {
    /// Frozen at its k-th won position, then killed.
    Frozen(u64),
    /// Killed this long after it said it was ready.
    Random(Duration),
}

/// Wait for the child's signal, SIGKILL it, and check that the kill (not a
/// failure of its own) is what ended it.
fn kill_when_due(mut child: ChildProc, death: Death) {
    let line = child.expect_line();
    match death {
        Death::Frozen(_) => assert_eq!(line, "frozen"),
        Death::Random(after) => {
            assert_eq!(line, "ready");
            // The random moment of the kill, not a synchronisation.
            thread::sleep(after);
        }
    }
    child.sigkill();
    let status = child.wait();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{death:?}: the child must die of the SIGKILL, not fail first: {status}"
    );
}

/// What the parent knows about a killed producer child: pushes `0..done`
/// returned `Ok`.
struct KilledProducer {
    id: u64,
    death: Death,
    done: u64,
}

/// Sets the flag on drop, so that a failing test stops its threads.
struct RaiseOnDrop(Arc<AtomicBool>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Over 200 SIGKILLs of producer and consumer children, at random moments or
/// right after they won a position (freeze hook), against a queue whose
/// survivors are a producer and a consumer thread in this process.
///
/// Exactness: a producer child records how many pushes returned `Ok`
/// (`done`), a consumer child every value it popped, both in a shared file
/// that outlives the kill. Then:
///
/// * no `(producer, seq)` is delivered twice, across the surviving consumer
///   and every killed consumer's record;
/// * each consumer saw each producer's seqs in increasing order;
/// * a killed producer's delivered seqs are within `0..=done` (`done` itself
///   may have been in flight) and, if it froze at its k-th position,
///   `done == k - 1` and seq `done` (the hole) is never delivered;
/// * of the items whose push returned `Ok`, at most one per killed consumer
///   is missing: the one it had taken but not yet recorded (a frozen
///   consumer's claimed item is exactly that);
/// * the survivors finish: holes are skipped, dead consumers' slots are
///   released, and every wait is bounded;
/// * `holes_skipped` counts each frozen producer's hole (plus at most one per
///   producer killed at random), `slots_released` each frozen consumer's slot
///   (plus at most one per consumer killed at random).
#[test]
fn sigkilled_producers_and_consumers_lose_nothing_outside_the_window() {
    if let Some(role) = child_role() {
        run_child(|| kill_child(&role));
    }
    let mut rng = Rng::seeded(KILL_TEST);
    let shm = Shm::new("kill");
    let q = Mpmc::<u64>::create(shm.name(), KILL_CAPACITY).unwrap();
    let started = Instant::now();

    // The survivors. The producer is id 0; when told to stop it pushes two
    // more laps, so that every slot a dead consumer held gets lapped (and so
    // released) before the end.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = RaiseOnDrop(stop.clone());
    let mut tx = q.producer().unwrap();
    let survivor_producer = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::Acquire) {
                push_u64(&mut tx, item(0, seq)).unwrap();
                seq += 1;
            }
            for _ in 0..2 * KILL_CAPACITY + 1 {
                push_u64(&mut tx, item(0, seq)).unwrap();
                seq += 1;
            }
            seq
        })
    };
    let mut rx = q.consumer().unwrap();
    let name = shm.0.clone();
    let survivor_consumer = thread::spawn(move || {
        let mut order = Order::default();
        let mut got = Delivered::default();
        // Until disconnected: the survivor producer has gone and every dead
        // producer child has been reaped.
        while let Some(v) = pop_u64(&mut rx).unwrap_or_else(|e| {
            let stats = Mpmc::<u64>::open(&name).map(|q| q.stats());
            panic!("surviving consumer: {e}; {stats:?}")
        }) {
            order.check(v).unwrap();
            got.insert(v).unwrap();
        }
        got
    });

    let mut delivered = Delivered::default();
    let mut producers: Vec<KilledProducer> = Vec::new();
    let (mut frozen_p, mut random_p, mut frozen_c, mut random_c) = (0, 0, 0, 0);
    let mut next_id = 1;
    let mut rounds = 0;
    while frozen_p + random_p + frozen_c + random_c < MIN_KILLS {
        rounds += 1;
        // Two producers and two consumers per round, each frozen or killed
        // at random; each is handled by its own thread, so that a frozen
        // producer that stalls everyone is killed without waiting for the
        // consumer children that it stalls.
        let mut children = Vec::new();
        for role in ["producer", "producer", "consumer", "consumer"] {
            let death = if rng.below(2) == 0 {
                Death::Frozen(1 + rng.below(FREEZE_MAX))
            } else {
                Death::Random(Duration::from_micros(rng.below(RANDOM_KILL_MAX_US)))
            };
            let words = if role == "producer" {
                1
            } else {
                1 + LEDGER_POPS
            };
            let ledger = Ledger::create("ledger", words);
            let id = next_id;
            next_id += 1;
            let freeze = match death {
                Death::Frozen(k) => k,
                Death::Random(_) => 0,
            };
            let child = spawn(
                KILL_TEST,
                role,
                &[
                    ("NAME", shm.0.clone()),
                    ("LEDGER", ledger.path()),
                    ("FREEZE", freeze.to_string()),
                    ("ID", id.to_string()),
                ],
            );
            let handler = thread::spawn(move || kill_when_due(child, death));
            children.push((role, id, death, ledger, handler));
        }
        for (role, id, death, ledger, handler) in children {
            if let Err(panic) = handler.join() {
                std::panic::resume_unwind(panic);
            }
            let words = ledger.words();
            let n = words[0].load(Ordering::Acquire);
            match (role, death) {
                ("producer", Death::Frozen(k)) => {
                    frozen_p += 1;
                    // Each push wins exactly one position: the k-th is the
                    // push of seq k - 1, frozen before it could return.
                    assert_eq!(n, k - 1, "producer {id} frozen at position {k}");
                }
                ("producer", Death::Random(_)) => random_p += 1,
                ("consumer", Death::Frozen(k)) => {
                    frozen_c += 1;
                    // Positions that were holes count as won but deliver nothing.
                    assert!(n < k, "consumer frozen at position {k} recorded {n}");
                }
                ("consumer", Death::Random(_)) => random_c += 1,
                _ => unreachable!(),
            }
            if role == "producer" {
                producers.push(KilledProducer { id, death, done: n });
            } else {
                let mut order = Order::default();
                for w in &words[1..=n as usize] {
                    let v = w.load(Ordering::Relaxed);
                    order.check(v).unwrap();
                    delivered.insert(v).unwrap();
                }
            }
        }
    }
    let kills = frozen_p + random_p + frozen_c + random_c;
    let killing = started.elapsed();

    stop.store(true, Ordering::Release);
    let survivor_pushed = survivor_producer.join().unwrap();
    delivered.merge(survivor_consumer.join().unwrap()).unwrap();

    // Nothing invented, nothing lost outside the window.
    let mut missing = survivor_missing(&delivered, survivor_pushed);
    for p in &producers {
        let limit = match p.death {
            Death::Frozen(_) => p.done,     // seq `done` is the hole
            Death::Random(_) => p.done + 1, // seq `done` may have been in flight
        };
        if let Some(s) = delivered.first_at_or_above(p.id, limit) {
            panic!(
                "producer {} ({:?}) pushed Ok up to seq {} but seq {s} was delivered",
                p.id,
                p.death,
                p.done.wrapping_sub(1)
            );
        }
        missing += delivered.missing_below(p.id, p.done);
    }
    let killed_consumers = (frozen_c + random_c) as u64;
    assert!(
        missing <= killed_consumers,
        "{missing} items pushed Ok were never delivered, but only {killed_consumers} \
         consumers were killed (at most one item each may be lost)"
    );
    let known: std::collections::HashSet<u64> = producers.iter().map(|p| p.id).chain([0]).collect();
    for p in delivered.0.keys() {
        assert!(known.contains(p), "items of unknown producer {p} delivered");
    }

    let stats = q.stats();
    eprintln!(
        "{KILL_TEST}: {rounds} rounds, {kills} SIGKILLs (producers: {frozen_p} frozen, \
         {random_p} at random; consumers: {frozen_c} frozen, {random_c} at random) in \
         {killing:?}; survivor pushed {survivor_pushed}; {missing} items lost with killed \
         consumers; holes_skipped {}, slots_released {}; total {:?}",
        stats.holes_skipped,
        stats.slots_released,
        started.elapsed()
    );
    assert!(frozen_p > 0 && frozen_c > 0, "both freezes were exercised");
    assert!(
        (frozen_p as u64..=(frozen_p + random_p) as u64).contains(&stats.holes_skipped),
        "holes_skipped {} for {frozen_p} frozen and {random_p} randomly killed producers",
        stats.holes_skipped
    );
    assert!(
        (frozen_c as u64..=(frozen_c + random_c) as u64).contains(&stats.slots_released),
        "slots_released {} for {frozen_c} frozen and {random_c} randomly killed consumers",
        stats.slots_released
    );
    assert_eq!(
        stats.producers, 0,
        "every dead producer was reaped: {stats:?}"
    );
}

/// How many of the survivor producer's `0..pushed` were not delivered.
fn survivor_missing(delivered: &Delivered, pushed: u64) -> u64 {
    if let Some(s) = delivered.first_at_or_above(0, pushed) {
        panic!("survivor pushed {pushed} items but seq {s} was delivered");
    }
    delivered.missing_below(0, pushed)
}

// ---------------------------------------------------------------------------
// Reusing a dead endpoint's registry entry
// ---------------------------------------------------------------------------

/// A child attaches one endpoint of `ROLE`, says so, and is SIGKILLed. Before
/// anyone reaps its entry, this process attaches an endpoint of the same
/// role, which takes over that entry, then drops it. No endpoint of that role
/// is left, so the other side must read Disconnected (the count of attached
/// endpoints must not keep the dead child's attach forever).
#[test]
fn a_dead_endpoints_entry_reused_before_it_was_reaped_still_disconnects() {
    if child_role().is_some() {
        run_child(|| {
            let q = Mpmc::<u64>::open(&child_arg("NAME")).map_err(err)?;
            let _held = match child_arg("ROLE").as_str() {
                "producer" => (Some(q.producer().map_err(err)?), None),
                _ => (None, Some(q.consumer().map_err(err)?)),
            };
            tell_parent("attached");
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
            Err("stdin closed before the kill".into())
        });
    }
    let test = "a_dead_endpoints_entry_reused_before_it_was_reaped_still_disconnects";
    for role in [Role::Producer, Role::Consumer] {
        let shm = Shm::new("reuse");
        let q = Mpmc::<u64>::create(shm.name(), 8).unwrap();
        // The survivor of the other role.
        let (mut tx, mut rx) = match role {
            Role::Producer => (None, Some(q.consumer().unwrap())),
            Role::Consumer => (Some(q.producer().unwrap()), None),
        };
        let mut child = spawn(
            test,
            "holder",
            &[("NAME", shm.0.clone()), ("ROLE", role.to_string())],
        );
        assert_eq!(child.expect_line(), "attached");
        child.sigkill();
        // Takes the dead child's entry (the first one whose token is free).
        match role {
            Role::Producer => drop(q.producer().unwrap()),
            Role::Consumer => drop(q.consumer().unwrap()),
        }
        match role {
            Role::Producer => assert_eq!(
                rx.as_mut().unwrap().pop_timeout(Duration::from_secs(2)),
                Err(PopError::Disconnected),
                "every producer has gone"
            ),
            Role::Consumer => match tx.as_mut().unwrap().push_timeout(7, Duration::from_secs(2)) {
                Err(PushError::Disconnected(7)) => {}
                other => panic!("every consumer has gone, yet push gave {other:?}"),
            },
        }
        let stats = q.stats();
        let attached = stats.endpoints.iter().filter(|e| e.role == role).count();
        let counted = match role {
            Role::Producer => stats.producers,
            Role::Consumer => stats.consumers,
        };
        assert_eq!(
            counted as usize, attached,
            "{role}s counted as attached vs. {role} entries attached: {stats:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// SIGSTOP: a live producer is never skipped
// ---------------------------------------------------------------------------

const STOP_TEST: &str = "sigstopped_producer_is_waited_for_never_skipped";
/// Producer threads in the child, each with its own endpoint.
const STOP_THREADS: usize = 2;
/// How long the consumer keeps trying while a stopped producer holds a
/// position: ten times the ~150 ms in which a dead one is recovered.
const STOP_HOLD: Duration = Duration::from_millis(1500);
/// Stops that must land while a producer holds a won position.
const STOPS_IN_CLAIM: u32 = 3;
/// Give up looking for more stops inside a claim after this long.
const STOP_SEARCH: Duration = Duration::from_secs(20);

/// Big items (256 KiB), so that copying an item in, between winning its
/// position and publishing it, is a good part of a producer's time.
type Block = [[u64; 4096]; 8];
/// Words of a block that carry its tag (one per 4 KiB page): a torn read,
/// or a slot read before it was fully written, shows as a mismatch.
const TAG_STRIDE: usize = 512;
/// Capacity: the producers take several microseconds per block, so after the
/// consumer drained it they fill it only after hundreds of microseconds.
const STOP_QUEUE: usize = 64;
/// Blocks pass by value through a few frames.
const BIG_STACK: usize = 64 << 20;

fn tag_block(b: &mut Block, tag: u64) {
    let words: &mut [u64] = bytemuck::cast_slice_mut(&mut b[..]);
    let last = words.len() - 1;
    for w in words.iter_mut().step_by(TAG_STRIDE) {
        *w = tag;
    }
    words[last] = tag;
}

fn block_tag(b: &Block) -> u64 {
    let words: &[u64] = bytemuck::cast_slice(&b[..]);
    let tag = words[0];
    assert!(
        words.iter().step_by(TAG_STRIDE).all(|&w| w == tag) && words[words.len() - 1] == tag,
        "torn or corrupt item {tag:#x}"
    );
    tag
}

/// Run the calling thread on `cpu` only.
fn pin_to(cpu: usize) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(err)?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set).map_err(err)
}

/// Give the calling thread the `SCHED_IDLE` policy: any ordinary thread that
/// wakes up on its CPU preempts it at once, wherever it is.
fn run_when_idle() -> Result<(), String> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system call on the calling thread (id 0) with a valid,
    // initialised parameter; lowering one's own policy needs no privilege.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r != 0 {
        return Err(format!("SCHED_IDLE: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A producer process with `STOP_THREADS` threads pushes blocks tagged
/// `t << 40 | seq` until told to stop (ledger word 0), recording each
/// thread's count (word `1 + t`), while this process pops them and stops the
/// producer process with SIGSTOP now and then.
///
/// To make stops land between a producer winning a position and publishing
/// it, the producer threads and the consuming thread share one CPU: whenever
/// the consumer runs, the producers are not running, so a consumer that has
/// drained everything published and still finds the queue not empty
/// (`len() > 0`) knows a producer was preempted inside a claim, and the
/// SIGSTOP it sends then stops it exactly there. Other stops land at random.
///
/// During a stop inside a claim the consumer keeps trying for `STOP_HOLD`:
/// the stopped (live) producer must not be skipped, `holes_skipped` stays 0
/// and nothing behind its position is delivered. After SIGCONT every item
/// arrives, exactly once and in each thread's order.
#[test]
fn sigstopped_producer_is_waited_for_never_skipped() {
    if child_role().is_some() {
        run_child(|| {
            let q = Mpmc::<Block>::open(&child_arg("NAME")).map_err(err)?;
            let ledger = Arc::new(Ledger::open(&child_arg("LEDGER"))?);
            let cpu = parse("CPU")? as usize;
            let mut workers = Vec::new();
            for t in 0..STOP_THREADS {
                let mut tx = q.producer().map_err(err)?;
                let ledger = ledger.clone();
                let worker = thread::Builder::new().stack_size(BIG_STACK);
                let worker = worker.spawn(move || -> Result<(), String> {
                    pin_to(cpu)?;
                    run_when_idle()?;
                    let words = ledger.words();
                    let mut b: Box<Block> = Box::new(bytemuck::Zeroable::zeroed());
                    let mut seq = 0;
                    while words[0].load(Ordering::Acquire) == 0 {
                        tag_block(&mut b, item(t as u64, seq));
                        tx.push_timeout(*b, DEADLINE)
                            .map_err(|e| format!("thread {t} push {seq}: {e:?}"))?;
                        seq += 1;
                        words[1 + t].store(seq, Ordering::Release);
                    }
                    Ok(())
                });
                workers.push(worker.map_err(err)?);
            }
            tell_parent("ready");
            for w in workers {
                w.join()
                    .map_err(|_| "producer thread panicked".to_string())??;
            }
            Ok(())
        });
    }
    // A thread of its own: it pins itself to a CPU, and needs a big stack.
    let parent = thread::Builder::new().stack_size(BIG_STACK);
    if let Err(panic) = parent.spawn(stop_parent).unwrap().join() {
        std::panic::resume_unwind(panic);
    }
}

fn stop_parent() {
    let mut rng = Rng::seeded(STOP_TEST);
    let allowed = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
    let cpu = (0..nix::sched::CpuSet::count())
        .find(|&c| allowed.is_set(c).unwrap_or(false))
        .unwrap();
    pin_to(cpu).unwrap();
    let shm = Shm::new("stop");
    let q = Mpmc::<Block>::create(shm.name(), STOP_QUEUE).unwrap();
    let mut rx = q.consumer().unwrap();
    let ledger = Ledger::create("stop", 1 + STOP_THREADS);
    let mut child = spawn(
        STOP_TEST,
        "producer",
        &[
            ("NAME", shm.0.clone()),
            ("LEDGER", ledger.path()),
            ("CPU", cpu.to_string()),
        ],
    );
    assert_eq!(child.expect_line(), "ready");
    let pid = Pid::from_raw(child.pid());
    let started = Instant::now();
    let mut next = [0u64; STOP_THREADS];
    let mut take = |b: Block| {
        let (t, seq) = split(block_tag(&b));
        assert!((t as usize) < STOP_THREADS, "unknown producer {t}");
        assert_eq!(
            seq, next[t as usize],
            "thread {t}: items lost, repeated or reordered"
        );
        next[t as usize] += 1;
    };
    let (mut looks, mut stops, mut in_claim) = (0, 0, 0);
    while in_claim < STOPS_IN_CLAIM && started.elapsed() < STOP_SEARCH {
        looks += 1;
        for _ in 0..rng.below(1000) {
            take(rx.pop_timeout(DEADLINE).unwrap());
        }
        // Let the producers run for a random moment; waking up, this thread
        // preempts them (they share its CPU) wherever they are. This sleep
        // picks a random point in their execution; it synchronises nothing.
        thread::sleep(Duration::from_micros(rng.below(STOP_QUEUE as u64 * 5)));
        loop {
            match rx.try_pop() {
                Ok(b) => take(b),
                Err(TryPopError::Empty) => break,
                Err(e) => panic!("pop: {e:?}"),
            }
        }
        // Drained, yet not empty: a producer was preempted between winning a
        // position and publishing it. Stop it there (and now and then stop
        // it wherever it is).
        if q.is_empty() && rng.below(4) != 0 {
            continue;
        }
        stops += 1;
        kill(pid, Signal::SIGSTOP).unwrap();
        let end = Instant::now() + DEADLINE;
        while !all_threads_stopped(child.pid()) {
            assert!(Instant::now() < end, "SIGSTOP did not take effect");
            // Polling with a deadline; lets the producers reach their stop.
            thread::sleep(Duration::from_micros(50));
        }
        loop {
            match rx.try_pop() {
                Ok(b) => take(b),
                Err(TryPopError::Empty) => break,
                Err(e) => panic!("pop while stopped: {e:?}"),
            }
        }
        let len = q.len();
        if len > 0 {
            // Drained, yet not empty: a stopped thread won a position and has
            // not published it. It is alive: wait for it, never skip it.
            in_claim += 1;
            let held = Instant::now();
            while let Some(left) = STOP_HOLD.checked_sub(held.elapsed()) {
                match rx.pop_timeout(left) {
                    Err(PopError::Timeout) => {}
                    other => panic!("popped past a stopped producer's position: {other:?}"),
                }
            }
            assert_eq!(q.stats().holes_skipped, 0, "a live producer was skipped");
            assert_eq!(q.len(), len, "the stopped producer's positions stay queued");
        }
        kill(pid, Signal::SIGCONT).unwrap();
    }
    ledger.words()[0].store(1, Ordering::Release);
    loop {
        match rx.pop_timeout(DEADLINE) {
            Ok(b) => take(b),
            Err(PopError::Disconnected) => break,
            Err(e) => panic!("draining: {e:?}"),
        }
    }
    child.success();
    for (t, &n) in next.iter().enumerate() {
        let pushed = ledger.words()[1 + t].load(Ordering::Acquire);
        assert_eq!(n, pushed, "thread {t}: items delivered vs. pushed");
    }
    let stats = q.stats();
    eprintln!(
        "{STOP_TEST}: {looks} looks, {stops} stops, {in_claim} inside a claim, \
         items per thread {next:?}, {:?}",
        started.elapsed()
    );
    assert_eq!(stats.holes_skipped, 0, "{stats:?}");
    assert_eq!(stats.slots_released, 0, "{stats:?}");
    assert!(
        in_claim >= 1,
        "none of {stops} stops landed inside a claim within {STOP_SEARCH:?}"
    );
}

/// A consumer killed right after winning a position leaves its entry with an
/// unresolved claim. With `max_consumers(1)` the only entry is that one: a new
/// consumer must take it over (resolving the stalled release) instead of
/// getting RegistryFull until a producer happens to come round to the slot.
#[test]
fn a_dead_consumers_unresolved_claim_does_not_block_its_entry() {
    if child_role().is_some() {
        run_child(|| {
            test_hooks::freeze_after_claims(Role::Consumer, 1);
            let q = Mpmc::<u64>::open(&child_arg("NAME")).map_err(|e| e.to_string())?;
            let mut rx = q.consumer().map_err(|e| e.to_string())?;
            let _worker = thread::spawn(move || {
                let _ = rx.pop_timeout(DEADLINE);
            });
            let end = Instant::now() + DEADLINE;
            while !test_hooks::frozen() {
                if Instant::now() > end {
                    return Err("never froze".into());
                }
                thread::yield_now();
            }
            tell_parent("frozen");
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
            Err("not killed".into())
        });
    }
    let shm = Shm::new("takeover");
    let q = Mpmc::<u64>::builder()
        .capacity(8)
        .max_consumers(1)
        .create(shm.name())
        .unwrap();
    let mut tx = q.producer().unwrap();
    for v in 0..3 {
        tx.try_push(v).unwrap();
    }
    drop(tx);
    let mut child = spawn(
        "a_dead_consumers_unresolved_claim_does_not_block_its_entry",
        "consumer",
        &[("NAME", shm.0.clone())],
    );
    assert_eq!(child.expect_line(), "frozen");
    child.sigkill();
    let mut rx = q
        .consumer()
        .expect("the dead consumer's entry is taken over, not refused");
    // Item 0 was taken by the killed consumer: the documented loss.
    assert_eq!(rx.pop_timeout(DEADLINE), Ok(1));
    assert_eq!(rx.pop_timeout(DEADLINE), Ok(2));
    assert_eq!(rx.pop_timeout(DEADLINE), Err(PopError::Disconnected));
    assert_eq!(q.stats().slots_released, 1);
}
