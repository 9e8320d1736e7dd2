//! `shmq torture`: crash testing with real processes. Producer and consumer
//! processes (this binary, re-executed with the hidden `torture-producer` /
//! `torture-consumer` subcommands) stream `(incarnation, seq)` values through
//! an SPSC ring or an MPMC queue while a supervisor SIGKILLs a random victim
//! after a random delay, hundreds of times, and starts a replacement that
//! re-attaches. At the end a final consumer drains the queue and the
//! supervisor closes the books.
//!
//! ## Bookkeeping
//!
//! Each child has a *ledger*: a file the supervisor creates and both map
//! shared. What a child stores there survives its SIGKILL.
//!
//! * A producer incarnation `g` pushes `g << 40 | seq` for `seq = 0, 1, ...`
//!   and, after each push (or batch) returned `Ok`, stores how many have:
//!   its *confirmed* count. A kill between the push and that store leaves up
//!   to one call's worth (1, or the batch) pushed but unconfirmed.
//! * A consumer incarnation stores each value it popped, in pop order, then
//!   the count (Release). A kill between the pop and that store loses the
//!   popped value(s) from the record: up to one call's worth (1, or the batch
//!   for SPSC `pop_slice`). That is the documented loss window: the library
//!   never hands an item to two consumers, so a value taken by a consumer
//!   that dies before recording it is gone (MPMC: also one it had claimed but
//!   not yet read, see DESIGN.md "Killed peers").
//!
//! The checks, once every process has ended:
//!
//! * **duplicates**: no value recorded twice, across all consumers: 0.
//! * **phantoms**: every recorded value comes from a producer incarnation of
//!   this run, with `seq < confirmed + in-flight window` (window 0 for a
//!   producer that was stopped, not killed): 0.
//! * **order**: SPSC: the consumers' records, concatenated in incarnation
//!   order (one consumer at a time), are strictly increasing, i.e. FIFO across
//!   every kill and restart. MPMC: within each consumer's record each
//!   producer's seqs increase (positions are taken in order on both sides; no
//!   order holds across consumers).
//! * **losses**: confirmed values never recorded. Total `<=` the sum of the
//!   windows of the consumers killed inside a pop or before recording it
//!   (their phase word, read while they were stopped, says so; a consumer
//!   killed while pausing, waiting for a producer to come back or attaching
//!   has window 0). SPSC, exactly: every lost value lies
//!   between the last value of one consumer's record and the first of a later
//!   one (never inside a record), and each such gap holds at most the windows
//!   of the killed consumers in between.
//! * **drain**: the final consumer reads until `Disconnected`; the queue is
//!   then empty with no live endpoint, and, for MPMC, `holes_skipped` equals
//!   the number of producers killed holding a won, unpublished position (up
//!   to ambiguous cases) and `slots_released` is at most the number of
//!   consumers killed holding a taken, unreleased slot (see "Kills").
//! * **no hangs**: a killed child must be gone, and its replacement must have
//!   moved an item, within `--step-deadline-secs`; the whole run within
//!   `--deadline-secs`. Otherwise the supervisor prints every child's state
//!   (phase, progress, kernel state, wait channel), kills them all and fails.
//!
//! ## Kills
//!
//! A victim is SIGSTOPped, then SIGKILLed: while it is stopped the
//! supervisor reads where it is (its phase word; the kernel's state, where
//! "sleeping" inside a push/pop is a blocking wait; and for MPMC its registry
//! entry and the slot it claims, through a read-only mapping of the segment).
//! 30% of kills are *targeted*: the victim is resumed and stopped again at
//! random moments (for at most 30 ms) until it is caught mid-batch or
//! between a call and its record, or (half of the MPMC ones) inside a claim. 15% of replacements are
//! killed again right after start (exec, attach, first operation), and 10%
//! of kills take two victims at once. Before 5% of kills a child is frozen
//! instead (SIGSTOP for 50-250 ms, inside a claim when one can be caught)
//! and resumed: a stopped endpoint is alive, so its hole must not be skipped
//! nor its slot released; the loss and hole counts show if one was.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use shmqueue::probe::{ClaimProbe, MpmcProbe};
use shmqueue::{
    mpmc, spsc, BatchError, Error, Mpmc, PopError, PushError, Role, Spsc, TryPushError,
};

use crate::Res;

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Spsc,
    Mpmc,
    Both,
}

impl Inject {
    fn as_str(self) -> &'static str {
        match self {
            Inject::None => "none",
            Inject::Lose => "lose",
            Inject::Duplicate => "duplicate",
            Inject::Reorder => "reorder",
            Inject::Hang => "hang",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Spsc,
    Mpmc,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Spsc => "spsc",
            Kind::Mpmc => "mpmc",
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct TortureArgs {
    /// Kill events per queue kind (one or two victims each).
    #[arg(long, default_value_t = 300)]
    iterations: u64,
    /// Which queue to torture (`both`: SPSC, then MPMC).
    #[arg(long, value_enum, default_value_t = KindArg::Both)]
    kind: KindArg,
    /// Seed of every random choice (default: from the clock). Printed, so a
    /// failing run's choices can be replayed (the timing cannot).
    #[arg(long)]
    seed: Option<u64>,
    /// Fail if the whole run takes longer than this.
    #[arg(long, default_value_t = 600)]
    deadline_secs: u64,
    /// Fail if one step takes longer: a killed process disappearing, its
    /// replacement attaching and moving an item, the final stop and drain.
    #[arg(long, default_value_t = 20)]
    step_deadline_secs: u64,
    /// Queue capacity in items (small: full and empty waits are common).
    #[arg(long, default_value_t = 64)]
    capacity: usize,
    /// MPMC producer processes.
    #[arg(long, default_value_t = 2)]
    producers: u32,
    /// MPMC consumer processes.
    #[arg(long, default_value_t = 2)]
    consumers: u32,
    /// Largest SPSC batch: half the SPSC incarnations use `push_slice` /
    /// `pop_slice` with random sizes up to this; 1 = single items only.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Longest random delay before a kill, in milliseconds.
    #[arg(long, default_value_t = 40)]
    max_delay_ms: u64,
    /// Segment name prefix (default `/shmq-torture-<pid>`); `-spsc` and
    /// `-mpmc` are appended. Both are removed at the end.
    #[arg(long)]
    name: Option<String>,
    /// Values one consumer records at most before it retires (and is
    /// replaced); bounds the ledger files.
    #[arg(long, default_value_t = 1 << 20, hide = true)]
    ledger_items: u64,
    /// Also print the summary as one JSON object per kind.
    #[arg(long)]
    json: bool,
    /// Self-test of the checker: make the first consumer misbehave.
    #[arg(long, value_enum, default_value_t = Inject::None, hide = true)]
    inject: Inject,
}

/// A deliberate fault in the first consumer, to show that the checks fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Inject {
    None,
    /// Leave its 11th value out of the record.
    Lose,
    /// Record its 11th value twice.
    Duplicate,
    /// Record its 11th and 12th values swapped.
    Reorder,
    /// Attach, then never pop.
    Hang,
}

/// Arguments of the hidden role subcommands.
#[derive(Args, Clone, Debug)]
pub struct RoleArgs {
    #[arg(long, value_enum)]
    kind: Kind,
    #[arg(long)]
    name: String,
    #[arg(long)]
    ledger: PathBuf,
    /// Incarnation number: the high bits of every value a producer pushes.
    #[arg(long)]
    id: u64,
    /// Largest batch (SPSC only; 1 = single-item calls).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Pause after each operation, in microseconds (0: full speed).
    #[arg(long, default_value_t = 0)]
    pace_us: u64,
    /// Consumer: stop at the first `Disconnected` (the final drain).
    #[arg(long)]
    drain: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Pid of the supervisor: exit if it is not (or no longer) our parent.
    #[arg(long)]
    supervisor: i32,
    #[arg(long, value_enum, default_value_t = Inject::None)]
    inject: Inject,
}

// ---------------------------------------------------------------------------
// Values, randomness, ledgers
// ---------------------------------------------------------------------------

const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

fn item(id: u64, seq: u64) -> u64 {
    id << SEQ_BITS | seq
}

fn split(v: u64) -> (u64, u64) {
    (v >> SEQ_BITS, v & SEQ_MASK)
}

/// splitmix64: small, seedable, good enough to pick victims and delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `pct`%.
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

// Ledger words.
const STATE: usize = 0;
const COUNT: usize = 1;
const PHASE: usize = 2;
const STOP: usize = 3;
const VALUES: usize = 8;

// STATE values.
const ST_STARTING: u64 = 0;
const ST_ATTACHED: u64 = 1;
const ST_STOPPED: u64 = 2;
const ST_RETIRED: u64 = 3;
const ST_DRAINED: u64 = 4;

// PHASE values: what the child was doing (racy, for reports only).
const PH_EXEC: u64 = 0;
const PH_ATTACH: u64 = 1;
const PH_OP: u64 = 2;
const PH_BATCH: u64 = 3;
const PH_RECORD: u64 = 4;
const PH_PACE: u64 = 5;
const PH_ABSENT: u64 = 6;
const PH_STOP: u64 = 7;

fn phase_name(p: u64) -> &'static str {
    match p {
        PH_EXEC => "starting",
        PH_ATTACH => "attaching",
        PH_OP => "in push/pop",
        PH_BATCH => "mid-batch",
        PH_RECORD => "recording",
        PH_PACE => "pausing",
        PH_ABSENT => "peer absent",
        PH_STOP => "stopping",
        _ => "?",
    }
}

/// Words in a file mapped shared by the supervisor and one child.
struct Ledger {
    map: memmap2::MmapRaw,
}

impl Ledger {
    fn create(path: &Path, words: usize) -> std::io::Result<Ledger> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        f.set_len(words as u64 * 8)?;
        Ok(Ledger {
            map: memmap2::MmapRaw::map_raw(&f)?,
        })
    }

    fn open(path: &Path) -> std::io::Result<Ledger> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        let map = memmap2::MmapRaw::map_raw(&f)?;
        if map.len() < VALUES * 8 {
            return Err(std::io::Error::other("ledger file too small"));
        }
        Ok(Ledger { map })
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned, `len` bytes long, and lives as
        // long as `self`; AtomicU64 has the size and alignment of u64 and
        // every bit pattern is valid. The file is private to this run (made
        // with create_new in the supervisor's own directory) and never
        // truncated; every process accesses it only through these atomics,
        // via the mapping's mutable pointer.
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_mut_ptr().cast::<AtomicU64>(),
                self.map.len() / 8,
            )
        }
    }

    fn get(&self, w: usize) -> u64 {
        self.words()[w].load(Ordering::Acquire)
    }

    fn set(&self, w: usize, v: u64) {
        self.words()[w].store(v, Ordering::Release);
    }

    fn phase(&self, p: u64) {
        self.words()[PHASE].store(p, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// The children
// ---------------------------------------------------------------------------

/// How long one blocking call may wait before the loop looks at its stop
/// word again.
const SLICE: Duration = Duration::from_millis(100);
/// How long a child keeps retrying to attach (a role not yet free).
const ATTACH_PATIENCE: Duration = Duration::from_secs(10);
/// Back-off while the other side has no endpoint at all (it is being
/// restarted): there is nothing to wait on in the queue.
const ABSENT_BACKOFF: Duration = Duration::from_millis(1);

fn child_setup(a: &RoleArgs) -> Res<Ledger> {
    // Die with the supervisor, whatever kills it.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if nix::unistd::getppid().as_raw() != a.supervisor {
        return Err("the supervisor is gone".into());
    }
    let l = Ledger::open(&a.ledger).map_err(|e| format!("ledger {}: {e}", a.ledger.display()))?;
    l.phase(PH_ATTACH);
    Ok(l)
}

/// Attach, retrying while the role is still held or the registry full
/// (a killed predecessor's entry is being resolved).
fn attach<E>(mut f: impl FnMut() -> Result<E, Error>) -> Res<E> {
    let end = Instant::now() + ATTACH_PATIENCE;
    loop {
        match f() {
            Ok(e) => return Ok(e),
            Err(Error::RoleTaken { .. } | Error::RegistryFull { .. }) if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(format!("attach: {e}").into()),
        }
    }
}

enum Tx {
    Spsc(spsc::Producer<u64>),
    Mpmc(mpmc::Producer<u64>),
}

impl Tx {
    fn push_timeout(&mut self, v: u64) -> Result<(), PushError<u64>> {
        match self {
            Tx::Spsc(p) => p.push_timeout(v, SLICE),
            Tx::Mpmc(p) => p.push_timeout(v, SLICE),
        }
    }

    fn push_slice(&mut self, items: &[u64]) -> Result<usize, BatchError> {
        match self {
            Tx::Spsc(p) => p.push_slice(items),
            // No batch API: one item, without waiting.
            Tx::Mpmc(p) => match p.try_push(items[0]) {
                Ok(()) => Ok(1),
                Err(TryPushError::Full(_)) => Ok(0),
                Err(TryPushError::Disconnected(_)) => Err(BatchError::Disconnected),
                Err(TryPushError::Corrupt(_, c)) => Err(BatchError::Corrupt(c)),
                Err(e) => unreachable!("MPMC try_push gave an error torture does not know: {e:?}"),
            },
        }
    }
}

enum Rx {
    Spsc(spsc::Consumer<u64>),
    Mpmc(mpmc::Consumer<u64>),
}

impl Rx {
    fn pop_timeout(&mut self) -> Result<u64, PopError> {
        match self {
            Rx::Spsc(c) => c.pop_timeout(SLICE),
            Rx::Mpmc(c) => c.pop_timeout(SLICE),
        }
    }

    fn pop_slice(&mut self, out: &mut [u64]) -> Result<usize, BatchError> {
        match self {
            Rx::Spsc(c) => c.pop_slice(out),
            Rx::Mpmc(c) => match c.try_pop() {
                Ok(v) => {
                    out[0] = v;
                    Ok(1)
                }
                Err(shmqueue::TryPopError::Empty) => Ok(0),
                Err(shmqueue::TryPopError::Disconnected) => Err(BatchError::Disconnected),
                Err(shmqueue::TryPopError::Corrupt(c)) => Err(BatchError::Corrupt(c)),
                Err(e) => unreachable!("MPMC try_pop gave an error torture does not know: {e:?}"),
            },
        }
    }
}

fn pace(l: &Ledger, us: u64) {
    if us > 0 {
        l.phase(PH_PACE);
        std::thread::sleep(Duration::from_micros(us));
    }
}

/// `torture-producer`: push `id << 40 | seq` until told to stop, recording
/// the confirmed count after every successful call.
pub fn producer(a: RoleArgs) -> Res {
    let l = child_setup(&a)?;
    let mut tx = match a.kind {
        Kind::Spsc => {
            let q = Spsc::<u64>::open(&a.name)?;
            Tx::Spsc(attach(|| q.producer())?)
        }
        Kind::Mpmc => {
            let q = Mpmc::<u64>::open(&a.name)?;
            Tx::Mpmc(attach(|| q.producer())?)
        }
    };
    l.set(STATE, ST_ATTACHED);
    let mut rng = Rng(a.seed);
    let batch = a.batch.max(1);
    let mut buf = vec![0u64; batch];
    let mut seq = 0u64;
    loop {
        if l.get(STOP) != 0 {
            l.phase(PH_STOP);
            drop(tx);
            l.set(STATE, ST_STOPPED);
            return Ok(());
        }
        let pushed = if batch > 1 {
            let k = 1 + rng.below(batch as u64) as usize;
            for (i, b) in buf[..k].iter_mut().enumerate() {
                *b = item(a.id, seq + i as u64);
            }
            l.phase(PH_BATCH);
            match tx.push_slice(&buf[..k]) {
                Ok(0) => None, // full: wait below, for one item
                Ok(n) => Some(n as u64),
                Err(BatchError::Disconnected) => Some(0),
                Err(e) => return Err(format!("push_slice: {e}").into()),
            }
        } else {
            None
        };
        let pushed = match pushed {
            Some(n) => n,
            None => {
                l.phase(PH_OP);
                match tx.push_timeout(item(a.id, seq)) {
                    Ok(()) => 1,
                    Err(PushError::Timeout(_) | PushError::Disconnected(_)) => 0,
                    Err(e) => return Err(format!("push: {e}").into()),
                }
            }
        };
        if pushed == 0 {
            // Full for a whole slice, or no consumer at all (being restarted).
            l.phase(PH_ABSENT);
            std::thread::sleep(ABSENT_BACKOFF);
            continue;
        }
        l.phase(PH_RECORD);
        seq += pushed;
        l.set(COUNT, seq);
        pace(&l, a.pace_us);
    }
}

/// `torture-consumer`: pop until told to stop (or, `--drain`, until
/// `Disconnected`), recording every value right after the call returns.
pub fn consumer(a: RoleArgs) -> Res {
    let l = child_setup(&a)?;
    let mut rx = match a.kind {
        Kind::Spsc => {
            let q = Spsc::<u64>::open(&a.name)?;
            Rx::Spsc(attach(|| q.consumer())?)
        }
        Kind::Mpmc => {
            let q = Mpmc::<u64>::open(&a.name)?;
            Rx::Mpmc(attach(|| q.consumer())?)
        }
    };
    l.set(STATE, ST_ATTACHED);
    if a.inject == Inject::Hang {
        l.phase(PH_OP);
        // Until the supervisor gives up on us and kills us.
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let mut rng = Rng(a.seed);
    let batch = a.batch.max(1);
    let mut buf = vec![0u64; batch];
    let mut fault = a.inject;
    let mut stash: Option<u64> = None;
    let words = l.words();
    let room = words.len() - VALUES;
    let mut n = 0usize;
    loop {
        if !a.drain && l.get(STOP) != 0 {
            l.phase(PH_STOP);
            drop(rx);
            l.set(STATE, ST_STOPPED);
            return Ok(());
        }
        if room - n < batch {
            // Ledger full: leave cleanly; the supervisor starts another.
            l.phase(PH_STOP);
            drop(rx);
            l.set(STATE, ST_RETIRED);
            return Ok(());
        }
        let mut got = if batch > 1 {
            let k = 1 + rng.below(batch as u64) as usize;
            l.phase(PH_BATCH);
            match rx.pop_slice(&mut buf[..k]) {
                Ok(0) => None,
                Ok(k) => Some(Ok(k)),
                Err(BatchError::Disconnected) => Some(Err(PopError::Disconnected)),
                Err(e) => return Err(format!("pop_slice: {e}").into()),
            }
        } else {
            None
        };
        if got.is_none() {
            l.phase(PH_OP);
            got = Some(rx.pop_timeout().map(|v| {
                buf[0] = v;
                1
            }));
        }
        let k = match got {
            Some(Ok(k)) => k,
            Some(Err(PopError::Timeout)) => continue,
            Some(Err(PopError::Disconnected)) => {
                if a.drain {
                    l.phase(PH_STOP);
                    drop(rx);
                    l.set(STATE, ST_DRAINED);
                    return Ok(());
                }
                // Every producer is gone for now: the supervisor is starting
                // another.
                l.phase(PH_ABSENT);
                std::thread::sleep(ABSENT_BACKOFF);
                continue;
            }
            Some(Err(e)) => return Err(format!("pop: {e}").into()),
            None => unreachable!("set above"),
        };
        l.phase(PH_RECORD);
        // Self-test of the supervisor's checks (single-item calls): corrupt
        // the record from value 10 on.
        let injected = if fault != Inject::None && n >= 10 && k == 1 {
            let v = buf[0];
            match (fault, stash) {
                (Inject::Lose, _) => Some(vec![]),
                (Inject::Duplicate, _) => Some(vec![v, v]),
                (Inject::Reorder, None) => {
                    stash = Some(v);
                    Some(vec![])
                }
                (Inject::Reorder, Some(s)) if split(s).0 == split(v).0 => Some(vec![v, s]),
                _ => None,
            }
        } else {
            None
        };
        // Disarmed once the record is corrupt (a stashed value waits for a
        // later one of the same producer).
        let done = match (fault, &injected) {
            (Inject::Reorder, Some(r)) => r.len() == 2,
            (_, Some(_)) => true,
            _ => false,
        };
        if done {
            fault = Inject::None;
        }
        let out: &[u64] = injected.as_deref().unwrap_or(&buf[..k]);
        let k = out.len();
        if n + k > room {
            return Err("ledger full".into());
        }
        for (w, v) in words[VALUES + n..VALUES + n + k].iter().zip(out) {
            w.store(*v, Ordering::Relaxed);
        }
        n += k;
        // Release: the values happen-before the count that covers them.
        l.set(COUNT, n as u64);
        pace(&l, a.pace_us);
    }
}

// ---------------------------------------------------------------------------
// The supervisor
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum R {
    Producer,
    Consumer,
}

impl R {
    fn as_str(self) -> &'static str {
        match self {
            R::Producer => "producer",
            R::Consumer => "consumer",
        }
    }
}

/// A live child. Killed (and waited for) on drop, so a failing run leaves
/// nothing behind.
struct Proc {
    role: R,
    id: u64,
    child: Child,
    ledger: Ledger,
    path: PathBuf,
    /// Items one call may move: what a kill can leave unrecorded.
    window: u64,
    pace_us: u64,
    spawned: Instant,
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn describe(&self) -> String {
        let pid = self.pid();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let kstate = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        format!(
            "{} #{} pid {pid}: state {}, phase '{}', count {}, batch {}, pace {} us, \
             up {:.0} ms, kernel state {kstate}, wchan {}",
            self.role.as_str(),
            self.id,
            match self.ledger.get(STATE) {
                ST_STARTING => "not attached",
                ST_ATTACHED => "attached",
                ST_STOPPED => "stopped",
                ST_RETIRED => "retired",
                ST_DRAINED => "drained",
                _ => "?",
            },
            phase_name(self.ledger.get(PHASE)),
            self.ledger.get(COUNT),
            self.window,
            self.pace_us,
            self.spawned.elapsed().as_secs_f64() * 1e3,
            if wchan.is_empty() { "?" } else { &wchan },
        )
    }

    /// The kernel's state letter (R, S, D, ...), or '?'.
    fn kernel_state(&self) -> char {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.trim_start().chars().next())
            })
            .unwrap_or('?')
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A directory for the ledgers, removed at the end.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unlinks a segment we created, however the run ends.
struct Segment(String);

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = shmqueue::unlink(&self.0);
    }
}

/// Where an MPMC victim was, as its registry entry and the queue show while
/// it is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    /// No claim (or not an MPMC queue, or not attached).
    None,
    /// A claim written but the position not (or no longer) its own: about
    /// to compare-and-swap, or lost the race for it.
    Pending,
    /// Won the position and not yet published (producer: a hole if it dies)
    /// or taken it and not yet released (consumer: a slot to release).
    Won,
    /// Another entry claims the same position too: either may be the winner.
    Ambiguous,
}

/// What a targeted kill waits for its victim to be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Mid-batch, or between a call and its record.
    Window,
    /// (MPMC) holding a won position or a taken slot: `Claim::Won`.
    Claim,
}

/// Kills inside a claim, per outcome.
#[derive(Default, Debug)]
struct ClaimKills {
    won_producer: u64,
    won_consumer: u64,
    ambiguous_producer: u64,
    ambiguous_consumer: u64,
    pending: u64,
}

/// How often a targeted kill stops and resumes its victim at most, and for
/// how long (a loaded machine makes each try slow).
const TARGET_TRIES: u32 = 100;
const TARGET_BUDGET: Duration = Duration::from_millis(30);

/// Where a stopped victim is in its MPMC claim, read by the library's own
/// probe (`shmqueue::probe`), which takes the layout and the slot-sequence
/// encoding from the header module: nothing here knows an offset.
struct Peek(MpmcProbe);

impl Peek {
    fn open(name: &str) -> Option<Peek> {
        MpmcProbe::open(name).ok().map(Peek)
    }

    /// What the stopped process `pid`, an endpoint of `role`, holds.
    fn claim_of(&self, pid: u32, role: R) -> Claim {
        let role = match role {
            R::Producer => Role::Producer,
            R::Consumer => Role::Consumer,
        };
        match self.0.claim_of(pid, role) {
            ClaimProbe::Won => Claim::Won,
            ClaimProbe::Pending => Claim::Pending,
            ClaimProbe::Ambiguous => Claim::Ambiguous,
            _ => Claim::None,
        }
    }
}

/// Where kills landed (the victim's own report of its phase just before the
/// kill, and the kernel's state: sleeping in a push/pop is a blocking wait).
#[derive(Default, Debug)]
struct KillPoints {
    starting: u64,
    blocked: u64,
    in_op: u64,
    mid_batch: u64,
    recording: u64,
    pausing: u64,
    peer_absent: u64,
}

impl KillPoints {
    fn pairs(&self) -> [(&'static str, u64); 7] {
        [
            ("starting", self.starting),
            ("blocked", self.blocked),
            ("in_op", self.in_op),
            ("mid_batch", self.mid_batch),
            ("recording", self.recording),
            ("pausing", self.pausing),
            ("peer_absent", self.peer_absent),
        ]
    }
}

/// What was delivered, and the order checks.
#[derive(Default)]
struct Book {
    /// Dead producers: id -> (confirmed, in-flight window).
    producers: HashMap<u64, (u64, u64)>,
    /// Every producer ever started: id -> window.
    started: HashMap<u64, u64>,
    /// Recorded values, one bit per (producer, seq).
    delivered: HashMap<u64, Vec<u64>>,
    /// Consumers in start order.
    consumers: Vec<ConsumerRec>,
    /// SPSC: the last value of the concatenated records.
    last: Option<u64>,
    moved: u64,
    duplicates: u64,
    order_violations: u64,
    phantoms: u64,
    problems: Vec<String>,
}

struct ConsumerRec {
    id: u64,
    killed: bool,
    window: u64,
    first: Option<u64>,
    last: Option<u64>,
}

impl Book {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 20 {
            self.problems.push(p);
        }
    }
}

#[derive(Default, Debug)]
struct Summary {
    kind: &'static str,
    iterations: u64,
    kills_producer: u64,
    kills_consumer: u64,
    points: KillPoints,
    retirements: u64,
    pushed: u64,
    moved: u64,
    in_flight_delivered: u64,
    drained: u64,
    lost: u64,
    loss_bound: u64,
    /// Consumers killed inside a pop or before recording it.
    exposed_consumer_kills: u64,
    /// SPSC: how many consumer boundaries the losses sit at.
    loss_gaps: Option<u64>,
    duplicates: u64,
    order_violations: u64,
    phantoms: u64,
    recoveries: u64,
    max_recovery: Duration,
    sum_recovery: Duration,
    claims: ClaimKills,
    claims_known: bool,
    /// Children frozen (SIGSTOP, then SIGCONT) rather than killed, and how
    /// many of them inside a claim.
    freezes: u64,
    freezes_in_claim: u64,
    holes: Option<u64>,
    releases: Option<u64>,
    elapsed: Duration,
    /// Where the time went: random delays, stopping and killing victims,
    /// waiting for replacements to move.
    t_delay: Duration,
    t_kill: Duration,
    t_recover: Duration,
    problems: Vec<String>,
}

impl Summary {
    fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

struct Supervisor<'a> {
    a: &'a TortureArgs,
    kind: Kind,
    name: String,
    dir: TempDir,
    exe: PathBuf,
    rng: Rng,
    seed: u64,
    global_end: Instant,
    step: Duration,
    next_id: u64,
    inject: Inject,
    /// The consumer given `inject`.
    injected: Option<u64>,
    /// MPMC: a read-only view of the registry, to see where victims die.
    peek: Option<Peek>,
    live: Vec<Proc>,
    book: Book,
    s: Summary,
}

impl Supervisor<'_> {
    fn spawn(&mut self, role: R, drain: bool) -> Res<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let inject = if role == R::Consumer && !drain {
            std::mem::replace(&mut self.inject, Inject::None)
        } else {
            Inject::None
        };
        if inject != Inject::None {
            self.injected = Some(id);
        }
        let batch = if self.kind == Kind::Spsc
            && !drain
            && inject == Inject::None
            && self.a.max_batch > 1
            && self.rng.chance(50)
        {
            self.a.max_batch
        } else {
            1
        };
        let pace_us = if drain || self.rng.chance(60) {
            0
        } else {
            1 + self.rng.below(300)
        };
        let words = match role {
            R::Producer => VALUES,
            R::Consumer => VALUES + self.a.ledger_items.max(batch as u64) as usize,
        };
        let path = self.dir.0.join(format!("{}-{id}", role.as_str()));
        let ledger = Ledger::create(&path, words)?;
        let child = Command::new(&self.exe)
            .arg(match role {
                R::Producer => "torture-producer",
                R::Consumer => "torture-consumer",
            })
            .args(["--kind", self.kind.as_str(), "--name", &self.name])
            .arg("--ledger")
            .arg(&path)
            .args([
                "--id",
                &id.to_string(),
                "--batch",
                &batch.to_string(),
                "--pace-us",
                &pace_us.to_string(),
                "--seed",
                &self.seed.wrapping_add(id).to_string(),
                "--supervisor",
                &std::process::id().to_string(),
            ])
            .args(drain.then_some("--drain"))
            .args(["--inject", inject.as_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.exe.display()))?;
        if role == R::Producer {
            self.book.started.insert(id, batch as u64);
        }
        self.live.push(Proc {
            role,
            id,
            child,
            ledger,
            path,
            window: batch as u64,
            pace_us,
            spawned: Instant::now(),
        });
        Ok(id)
    }

    /// Every live child's state, marking `stuck`.
    fn report(&self, what: &str, stuck: &[u64]) -> String {
        let mut s = format!(
            "{} (kind {}, seed {}):",
            what,
            self.kind.as_str(),
            self.seed
        );
        for p in &self.live {
            let mark = if stuck.contains(&p.id) {
                "  <- STUCK"
            } else {
                ""
            };
            s += &format!("\n    {}{mark}", p.describe());
        }
        s
    }

    fn check_global(&self, waiting_on: &[u64]) -> Res {
        if Instant::now() > self.global_end {
            return Err(self
                .report(
                    &format!("global deadline of {} s passed", self.a.deadline_secs),
                    waiting_on,
                )
                .into());
        }
        Ok(())
    }

    /// Wait for child `idx` to exit, within the step deadline.
    fn wait_exit(&mut self, idx: usize, why: &str) -> Res<ExitStatus> {
        let end = Instant::now() + self.step;
        loop {
            if let Some(st) = self.live[idx].child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > end {
                let id = self.live[idx].id;
                return Err(self
                    .report(&format!("{why}: still there after {:?}", self.step), &[id])
                    .into());
            }
            // Polling with a deadline: there is no waitpid with a timeout.
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Children that ended on their own: a retired consumer (ledger full) is
    /// absorbed and replaced; anything else fails the run.
    fn handle_exits(&mut self) -> Res {
        let mut i = 0;
        while i < self.live.len() {
            let Some(st) = self.live[i].child.try_wait()? else {
                i += 1;
                continue;
            };
            let p = &self.live[i];
            if st.success() && p.ledger.get(STATE) == ST_RETIRED {
                let p = self.live.remove(i);
                let role = p.role;
                self.absorb(p, false);
                self.s.retirements += 1;
                self.spawn(role, false)?;
                continue;
            }
            let d = p.describe();
            return Err(self
                .report(
                    &format!("a child exited on its own ({st}; its stderr is above): {d}"),
                    &[],
                )
                .into());
        }
        Ok(())
    }

    /// SIGKILL `live[idx]`, wait for it, absorb its ledger; returns when the
    /// SIGKILL was sent. The victim is stopped first (SIGSTOP), so that where
    /// it dies can be read from its ledger and, for MPMC, from the registry.
    /// With `target` it is resumed and stopped again, up to `TARGET_TRIES`
    /// times (within `TARGET_BUDGET`), until it is caught inside a window: mid-batch or between a
    /// call and its record, or (MPMC) inside a claim: a producer between
    /// winning a position and publishing it, a consumer between taking one
    /// and releasing it.
    fn kill(&mut self, idx: usize, target: Option<Target>) -> Res<Instant> {
        let (kstate, claim, stopped) = self.stop_at(idx, target, 1)?;
        let p = &self.live[idx];
        let phase = p.ledger.get(PHASE);
        let state = p.ledger.get(STATE);
        let (role, id) = (p.role, p.id);
        let t_kill = Instant::now();
        self.live[idx].child.kill()?;
        let st = self.wait_exit(idx, &format!("{} #{id} after SIGKILL", role.as_str()))?;
        if st.success() && self.live[idx].ledger.get(STATE) == ST_RETIRED {
            // It retired (ledger full) just before: not a kill.
            let p = self.live.remove(idx);
            self.absorb(p, false);
            self.s.retirements += 1;
            return Ok(t_kill);
        }
        if st.signal() != Some(libc::SIGKILL) {
            let d = self.live[idx].describe();
            return Err(format!("{d}: ended with {st} before the SIGKILL (stderr above)").into());
        }
        let pts = &mut self.s.points;
        match (state, phase) {
            (ST_STARTING, _) | (_, PH_EXEC | PH_ATTACH) => pts.starting += 1,
            (_, PH_OP) if kstate == 'S' => pts.blocked += 1,
            (_, PH_OP) => pts.in_op += 1,
            (_, PH_BATCH) => pts.mid_batch += 1,
            (_, PH_RECORD) => pts.recording += 1,
            (_, PH_PACE) => pts.pausing += 1,
            _ => pts.peer_absent += 1,
        }
        let c = &mut self.s.claims;
        match (claim, role) {
            (Claim::Won, R::Producer) => c.won_producer += 1,
            (Claim::Won, R::Consumer) => c.won_consumer += 1,
            (Claim::Ambiguous, R::Producer) => c.ambiguous_producer += 1,
            (Claim::Ambiguous, R::Consumer) => c.ambiguous_consumer += 1,
            (Claim::Pending, _) => c.pending += 1,
            (Claim::None, _) => {}
        }
        match role {
            R::Producer => self.s.kills_producer += 1,
            R::Consumer => self.s.kills_consumer += 1,
        }
        // Only a child stopped inside a call or before recording it can
        // leave items popped but unrecorded (consumer) or pushed but
        // unconfirmed (producer): its phase is set before each call and
        // moves on only after the record. If it was not seen stopped, assume
        // the worst.
        let exposed = !stopped || matches!(phase, PH_OP | PH_BATCH | PH_RECORD);
        let mut p = self.live.remove(idx);
        if !exposed {
            p.window = 0;
        } else if role == R::Consumer {
            self.s.exposed_consumer_kills += 1;
        }
        self.absorb(p, true);
        Ok(t_kill)
    }

    /// SIGSTOP `live[idx]` and read where it is: its kernel state just
    /// before, and (MPMC) its claim. With a target, resume and stop it again
    /// at random moments until it is there (within `scale` times the tries
    /// and budget of a targeted kill).
    fn stop_at(
        &mut self,
        idx: usize,
        target: Option<Target>,
        scale: u32,
    ) -> Res<(char, Claim, bool)> {
        let pid = Pid::from_raw(self.live[idx].pid());
        let mut tries = if target.is_some() {
            TARGET_TRIES * scale
        } else {
            1
        };
        let budget = Instant::now() + TARGET_BUDGET * scale;
        loop {
            let kstate = self.live[idx].kernel_state();
            signal::kill(pid, Signal::SIGSTOP)?;
            // Only a stopped victim's claim is what it dies with.
            let stopped = self.wait_stopped(idx);
            let claim = match &self.peek {
                Some(peek) if stopped => peek.claim_of(pid.as_raw() as u32, self.live[idx].role),
                _ => Claim::None,
            };
            tries -= 1;
            let phase = self.live[idx].ledger.get(PHASE);
            let hit = match target {
                Some(Target::Claim) => claim == Claim::Won,
                Some(Target::Window) => matches!(phase, PH_BATCH | PH_RECORD),
                None => true,
            };
            if hit || tries == 0 || Instant::now() > budget {
                return Ok((kstate, claim, stopped));
            }
            signal::kill(pid, Signal::SIGCONT)?;
            // A random moment later, not a synchronisation. (A sleep, not a
            // spin: on two cores the victim needs the CPU to move on.)
            std::thread::sleep(Duration::from_micros(self.rng.below(200)));
        }
    }

    /// Freeze a random child (for MPMC, preferably inside a claim) for 50 to
    /// 250 ms with SIGSTOP, then resume it. A stopped endpoint is alive: its
    /// hole must not be skipped nor its slot released, so nothing may be
    /// lost and the hole/release counts must still match the kills.
    fn freeze(&mut self) -> Res {
        let eager: Vec<usize> = (0..self.live.len())
            .filter(|&i| self.live[i].pace_us == 0)
            .collect();
        let idx = if eager.is_empty() {
            self.rng.below(self.live.len() as u64) as usize
        } else {
            eager[self.rng.below(eager.len() as u64) as usize]
        };
        let target = self.peek.is_some().then_some(Target::Claim);
        // Freezes are rare: hunt for a claim five times longer than a kill.
        let (_, claim, _) = self.stop_at(idx, target, 5)?;
        // Long enough for survivors to see the stall (patience 20 ms) and
        // ask the kernel about the claimant, several times.
        std::thread::sleep(Duration::from_millis(50 + self.rng.below(200)));
        signal::kill(Pid::from_raw(self.live[idx].pid()), Signal::SIGCONT)?;
        self.s.freezes += 1;
        if claim == Claim::Won {
            self.s.freezes_in_claim += 1;
        }
        Ok(())
    }

    /// Wait (bounded) until the kernel shows `live[idx]` stopped; false if
    /// it did not stop in time (or had exited).
    fn wait_stopped(&self, idx: usize) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            match self.live[idx].kernel_state() {
                'T' | 't' => return true,
                'Z' | 'X' | '?' => return false,
                _ if Instant::now() > end => return false,
                _ => std::thread::sleep(Duration::from_micros(20)),
            }
        }
    }

    /// Fold a dead child's ledger into the books and remove the file.
    fn absorb(&mut self, p: Proc, killed: bool) {
        let count = p.ledger.get(COUNT);
        let window = if killed { p.window } else { 0 };
        match p.role {
            R::Producer => {
                self.book.producers.insert(p.id, (count, window));
            }
            R::Consumer => {
                let words = p.ledger.words();
                let n = (count as usize).min(words.len() - VALUES);
                let mut rec = ConsumerRec {
                    id: p.id,
                    killed,
                    window,
                    first: None,
                    last: None,
                };
                let mut per_producer: HashMap<u64, u64> = HashMap::new();
                for w in &words[VALUES..VALUES + n] {
                    let v = w.load(Ordering::Relaxed);
                    self.record(&mut rec, &mut per_producer, v);
                }
                self.book.consumers.push(rec);
            }
        }
        drop(p);
    }

    /// Check and note one recorded value.
    fn record(&mut self, rec: &mut ConsumerRec, per_producer: &mut HashMap<u64, u64>, v: u64) {
        let (g, s) = split(v);
        // Phantom: not a producer of this run, or beyond what it can have
        // pushed (checked now, so that garbage never sizes a bitmap).
        let limit = match (self.book.producers.get(&g), self.book.started.get(&g)) {
            (Some(&(confirmed, window)), _) => Some(confirmed + window),
            (None, Some(&window)) => self
                .live
                .iter()
                .find(|p| p.id == g)
                .map(|p| p.ledger.get(COUNT) + window),
            (None, None) => None,
        };
        let b = &mut self.book;
        if limit.map_or(true, |l| s >= l) {
            b.phantoms += 1;
            let msg = format!(
                "consumer #{} recorded {v:#x} (producer #{g} seq {s}), which was never pushed \
                 (limit {limit:?})",
                rec.id
            );
            b.problem(msg);
            return;
        }
        b.moved += 1;
        rec.first.get_or_insert(v);
        rec.last = Some(v);
        let bits = b.delivered.entry(g).or_default();
        let i = (s / 64) as usize;
        if bits.len() <= i {
            bits.resize((i + 1).max(bits.len() * 2), 0);
        }
        let bit = 1u64 << (s % 64);
        let twice = bits[i] & bit != 0;
        bits[i] |= bit;
        if twice {
            b.duplicates += 1;
            let msg = format!(
                "producer #{g} seq {s} recorded twice (again by consumer #{})",
                rec.id
            );
            b.problem(msg);
        }
        match self.kind {
            Kind::Spsc => {
                if let Some(l) = b.last {
                    if v <= l {
                        b.order_violations += 1;
                        let msg = format!(
                            "FIFO: consumer #{} recorded {v:#x} after {l:#x} (values as \
                             producer << 40 | seq)",
                            rec.id
                        );
                        b.problem(msg);
                    }
                }
                b.last = Some(v);
            }
            Kind::Mpmc => {
                if let Some(prev) = per_producer.insert(g, s) {
                    if s <= prev {
                        b.order_violations += 1;
                        let msg = format!(
                            "consumer #{} got producer #{g}'s seq {s} after seq {prev}",
                            rec.id
                        );
                        b.problem(msg);
                    }
                }
            }
        }
    }

    /// Wait until each of `ids` has moved an item (a producer confirmed a
    /// push, a consumer recorded a pop): the role is back and the queue
    /// flows. Returns the time since `since`.
    fn wait_recovery(&mut self, ids: &[u64], since: Instant, after: &str) -> Res<Duration> {
        let end = Instant::now() + self.step;
        loop {
            self.handle_exits()?;
            let pending: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|id| {
                    self.live
                        .iter()
                        .find(|p| p.id == *id)
                        .is_some_and(|p| p.ledger.get(COUNT) == 0)
                })
                .collect();
            if pending.is_empty() {
                return Ok(since.elapsed());
            }
            if Instant::now() > end {
                return Err(self
                    .report(
                        &format!(
                            "no recovery within {:?} of {after}: the process(es) marked \
                             below moved nothing",
                            self.step
                        ),
                        &pending,
                    )
                    .into());
            }
            self.check_global(&pending)?;
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Wait until child `id` has moved `n` items.
    fn wait_count(&mut self, id: u64, n: u64) -> Res {
        let end = Instant::now() + self.step;
        while self
            .live
            .iter()
            .find(|p| p.id == id)
            .is_some_and(|p| p.ledger.get(COUNT) < n)
        {
            self.handle_exits()?;
            if Instant::now() > end {
                return Err(self
                    .report(&format!("#{id} did not move {n} items"), &[id])
                    .into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn pick_delay(&mut self) -> Duration {
        let max_us = self.a.max_delay_ms * 1000;
        let us = match self.rng.below(100) {
            0..=14 => 0,
            15..=39 => self.rng.below(1000),
            40..=79 => 1000 + self.rng.below(9000),
            _ => 10_000 + self.rng.below(max_us.saturating_sub(10_000).max(1)),
        };
        Duration::from_micros(us.min(max_us))
    }

    fn run(&mut self) -> Res {
        let started = Instant::now();
        let (np, nc) = match self.kind {
            Kind::Spsc => (1, 1),
            Kind::Mpmc => (self.a.producers, self.a.consumers),
        };
        for _ in 0..nc {
            self.spawn(R::Consumer, false)?;
        }
        for _ in 0..np {
            self.spawn(R::Producer, false)?;
        }
        let all: Vec<u64> = self.live.iter().map(|p| p.id).collect();
        self.wait_recovery(&all, Instant::now(), "the start")?;
        if let Some(id) = self.injected {
            // Self-test: let the faulty consumer get past its fault.
            self.wait_count(id, 14)?;
        }
        // Ids of replacements to kill next, before they recovered.
        let mut chain: Vec<u64> = Vec::new();
        for _ in 0..self.a.iterations {
            self.check_global(&[])?;
            self.handle_exits()?;
            chain.retain(|id| self.live.iter().any(|p| p.id == *id));
            if chain.is_empty() && self.rng.chance(5) {
                self.freeze()?;
            }
            let target = match (self.rng.chance(30), self.peek.is_some()) {
                (false, _) => None,
                (true, true) if self.rng.chance(50) => Some(Target::Claim),
                (true, _) => Some(Target::Window),
            };
            let (victims, delay) = if !chain.is_empty() {
                // Right after start: during exec, attach, the first push/pop.
                let d = Duration::from_micros(self.rng.below(500));
                (std::mem::take(&mut chain), d)
            } else {
                let n = self.live.len() as u64;
                // A claim is held for nanoseconds per operation: look for one
                // in a process that does not pause between operations.
                let eager: Vec<u64> = self
                    .live
                    .iter()
                    .filter(|p| p.pace_us == 0)
                    .map(|p| p.id)
                    .collect();
                let first = if target == Some(Target::Claim) && !eager.is_empty() {
                    eager[self.rng.below(eager.len() as u64) as usize]
                } else {
                    self.live[self.rng.below(n) as usize].id
                };
                let mut v = vec![first];
                if n > 1 && self.rng.chance(10) {
                    let other = loop {
                        let id = self.live[self.rng.below(n) as usize].id;
                        if id != first {
                            break id;
                        }
                    };
                    v.push(other);
                }
                (v, self.pick_delay())
            };
            // The random moment of the kill, not a synchronisation.
            std::thread::sleep(delay);
            self.s.t_delay += delay;
            self.handle_exits()?;
            let t0 = Instant::now();
            let mut t_kill = None;
            let mut roles = Vec::new();
            for id in victims {
                if let Some(idx) = self.live.iter().position(|p| p.id == id) {
                    roles.push(self.live[idx].role);
                    let t = self.kill(idx, target)?;
                    t_kill.get_or_insert(t);
                }
            }
            let t_kill = t_kill.unwrap_or_else(Instant::now);
            self.s.t_kill += t0.elapsed();
            if self.rng.chance(20) {
                // Let the survivors see the role empty for a moment.
                std::thread::sleep(Duration::from_micros(self.rng.below(5000)));
            }
            let mut fresh = Vec::new();
            for role in roles {
                fresh.push(self.spawn(role, false)?);
            }
            self.s.iterations += 1;
            if self.rng.chance(15) {
                chain = fresh;
                continue;
            }
            let t0 = Instant::now();
            let r = self.wait_recovery(&fresh, t_kill, "the kill")?;
            self.s.t_recover += t0.elapsed();
            self.s.recoveries += 1;
            self.s.sum_recovery += r;
            self.s.max_recovery = self.s.max_recovery.max(r);
        }
        self.finish()?;
        self.s.elapsed = started.elapsed();
        Ok(())
    }

    /// Stop producers, then consumers (cleanly), then drain what is left
    /// with one last consumer, and close the books.
    fn finish(&mut self) -> Res {
        for role in [R::Producer, R::Consumer] {
            for p in self.live.iter().filter(|p| p.role == role) {
                p.ledger.set(STOP, 1);
            }
            while let Some(idx) = self.live.iter().position(|p| p.role == role) {
                let id = self.live[idx].id;
                let st = self.wait_exit(idx, &format!("{} #{id} told to stop", role.as_str()))?;
                let p = &self.live[idx];
                let state = p.ledger.get(STATE);
                if !st.success() || !matches!(state, ST_STOPPED | ST_RETIRED) {
                    let d = p.describe();
                    return Err(format!("{d}: did not stop cleanly: {st} (stderr above)").into());
                }
                let p = self.live.remove(idx);
                self.absorb(p, false);
            }
        }
        let before = self.book.moved;
        let id = self.spawn(R::Consumer, true)?;
        let st = self.wait_exit(0, &format!("final drain consumer #{id}"))?;
        let state = self.live[0].ledger.get(STATE);
        if !st.success() || state != ST_DRAINED {
            let d = self.live[0].describe();
            return Err(format!("{d}: the final drain failed: {st} (stderr above)").into());
        }
        let p = self.live.remove(0);
        self.absorb(p, false);
        self.s.drained = self.book.moved - before;

        // The queue itself: empty, nobody attached.
        match self.kind {
            Kind::Spsc => {
                let q = Spsc::<u64>::open(&self.name)?;
                if !q.is_empty() {
                    self.book
                        .problem(format!("{} items left after the drain", q.len()));
                }
            }
            Kind::Mpmc => {
                let q = Mpmc::<u64>::open(&self.name)?;
                let st = q.stats();
                self.s.holes = Some(st.holes_skipped);
                self.s.releases = Some(st.slots_released);
                // Dead entries stay marked attached until someone reaps them
                // (documented); no live one may remain.
                if st.len != 0 || st.endpoints.iter().any(|e| e.alive) {
                    self.book.problem(format!("after the drain: {st:?}"));
                }
                let c = &self.s.claims;
                if self.peek.is_some()
                    && !(c.won_producer..=c.won_producer + c.ambiguous_producer)
                        .contains(&st.holes_skipped)
                {
                    // Every producer killed after winning a position left
                    // exactly one hole, and the drain passes every position.
                    self.book.problem(format!(
                        "{} holes skipped, but {} producers were killed holding a won, \
                         unpublished position ({} more ambiguously)",
                        st.holes_skipped, c.won_producer, c.ambiguous_producer
                    ));
                }
                if self.peek.is_some() && st.slots_released > c.won_consumer + c.ambiguous_consumer
                {
                    self.book.problem(format!(
                        "{} slots released, but only {} consumers were killed holding a \
                         taken, unreleased slot ({} more ambiguously)",
                        st.slots_released, c.won_consumer, c.ambiguous_consumer
                    ));
                }
                if st.holes_skipped > self.s.kills_producer {
                    self.book.problem(format!(
                        "{} holes skipped but only {} producers killed",
                        st.holes_skipped, self.s.kills_producer
                    ));
                }
                if st.slots_released > self.s.kills_consumer {
                    self.book.problem(format!(
                        "{} slots released but only {} consumers killed",
                        st.slots_released, self.s.kills_consumer
                    ));
                }
            }
        }
        self.close_books();
        Ok(())
    }

    fn close_books(&mut self) {
        let b = &mut self.book;
        let mut missing: Vec<u64> = Vec::new();
        let mut ids: Vec<u64> = b.producers.keys().copied().collect();
        ids.sort_unstable();
        for g in ids {
            let (confirmed, _) = b.producers[&g];
            self.s.pushed += confirmed;
            let bits = b.delivered.get(&g).map(Vec::as_slice).unwrap_or(&[]);
            let has = |s: u64| {
                bits.get((s / 64) as usize)
                    .is_some_and(|w| w & (1 << (s % 64)) != 0)
            };
            for s in 0..confirmed {
                if !has(s) {
                    missing.push(item(g, s));
                }
            }
            let beyond: u64 = bits
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    (0..64)
                        .filter(|k| w & (1 << k) != 0 && (i as u64 * 64 + k) >= confirmed)
                        .count() as u64
                })
                .sum();
            self.s.in_flight_delivered += beyond;
        }
        self.s.lost = missing.len() as u64;
        self.s.loss_bound = b
            .consumers
            .iter()
            .filter(|c| c.killed)
            .map(|c| c.window)
            .sum();
        if self.s.lost > self.s.loss_bound {
            b.problem(format!(
                "{} confirmed items were never recorded, more than the window allows ({})",
                self.s.lost, self.s.loss_bound
            ));
        }
        if self.kind == Kind::Spsc {
            // Each loss must sit at a consumer boundary, and each boundary
            // may hold at most the windows of the killed consumers there.
            let nonempty: Vec<(usize, u64, u64)> = b
                .consumers
                .iter()
                .enumerate()
                .filter_map(|(i, c)| Some((i, c.first?, c.last?)))
                .collect();
            let mut gaps: HashMap<(usize, usize), u64> = HashMap::new();
            let mut inside = Vec::new();
            for &m in &missing {
                let at = nonempty.partition_point(|&(_, _, last)| last < m);
                if at < nonempty.len() && nonempty[at].1 <= m {
                    inside.push((m, b.consumers[nonempty[at].0].id));
                    continue;
                }
                let lo = if at == 0 { 0 } else { nonempty[at - 1].0 };
                let hi = nonempty.get(at).map_or(b.consumers.len(), |c| c.0);
                *gaps.entry((lo, hi)).or_default() += 1;
            }
            for (m, c) in inside.into_iter().take(5) {
                let (g, s) = split(m);
                b.problem(format!(
                    "producer #{g} seq {s} lost inside consumer #{c}'s record (not at a kill)"
                ));
            }
            self.s.loss_gaps = Some(gaps.len() as u64);
            let mut over = Vec::new();
            for ((lo, hi), n) in gaps {
                let allowed: u64 = b.consumers[lo..hi]
                    .iter()
                    .filter(|c| c.killed)
                    .map(|c| c.window)
                    .sum();
                if n > allowed {
                    over.push(format!(
                        "{n} items lost between consumers #{} and #{}, but the killed \
                         consumers there allow {allowed}",
                        b.consumers[lo].id,
                        b.consumers.get(hi).map_or(0, |c| c.id)
                    ));
                }
            }
            for o in over {
                b.problem(o);
            }
        }
        self.s.moved = b.moved;
        self.s.duplicates = b.duplicates;
        self.s.order_violations = b.order_violations;
        self.s.phantoms = b.phantoms;
        self.s.problems = std::mem::take(&mut b.problems);
    }
}

fn run_kind(a: &TortureArgs, kind: Kind, seed: u64, global_end: Instant) -> Res<Summary> {
    let prefix = a
        .name
        .clone()
        .unwrap_or_else(|| format!("/shmq-torture-{}", std::process::id()));
    let name = format!("{prefix}-{}", kind.as_str());
    let segment = match kind {
        Kind::Spsc => Spsc::<u64>::create(&name, a.capacity).map(|_| ()),
        Kind::Mpmc => Mpmc::<u64>::builder()
            .capacity(a.capacity)
            // One spare entry each: replacements take over dead entries
            // (resolving their claims) or use the spare.
            .max_producers(a.producers + 1)
            .max_consumers(a.consumers + 1)
            .create(&name)
            .map(|_| ()),
    };
    segment.map_err(|e| format!("create {name}: {e}"))?;
    let _segment = Segment(name.clone());
    let dir = std::env::temp_dir().join(format!(
        "shmq-torture-{}-{}-{}",
        std::process::id(),
        kind.as_str(),
        seed
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut sup = Supervisor {
        a,
        kind,
        name: name.clone(),
        dir: TempDir(dir),
        exe: std::env::current_exe()?,
        rng: Rng(seed),
        seed,
        global_end,
        step: Duration::from_secs(a.step_deadline_secs),
        next_id: 1,
        inject: a.inject,
        injected: None,
        peek: match kind {
            Kind::Spsc => None,
            Kind::Mpmc => Peek::open(&name),
        },
        live: Vec::new(),
        book: Book::default(),
        s: Summary {
            kind: kind.as_str(),
            ..Summary::default()
        },
    };
    sup.s.claims_known = sup.peek.is_some();
    let r = sup.run();
    // Children first (their Drop kills them), then the ledgers and segment.
    sup.live.clear();
    r?;
    Ok(std::mem::take(&mut sup.s))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_summary(s: &Summary, a: &TortureArgs) {
    let k = s.kind;
    let points: Vec<String> = s
        .points
        .pairs()
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    println!(
        "{k}: {} iterations in {:.1} s: {} producer and {} consumer kills ({}); {} retirements",
        s.iterations,
        s.elapsed.as_secs_f64(),
        s.kills_producer,
        s.kills_consumer,
        points.join(", "),
        s.retirements
    );
    println!(
        "{k}: items: {} pushed and confirmed, {} recorded by consumers ({} of them unconfirmed: \
         in flight at a producer's kill), {} by the final drain",
        s.pushed, s.moved, s.in_flight_delivered, s.drained
    );
    let window = match k {
        "spsc" => format!("1 item each, or up to {} in batch mode", a.max_batch.max(1)),
        _ => "1 item each".to_owned(),
    };
    let gaps = match s.loss_gaps {
        Some(g) => format!(
            ", at {g} boundaries between consumer records, each within the windows of the \
             consumers killed there"
        ),
        None => String::new(),
    };
    println!(
        "{k}: lost {} (bound {}: the {} consumers killed inside a pop or before recording \
         it, {window}){gaps}; duplicates {}, order violations {}, phantoms {}",
        s.lost,
        s.loss_bound,
        s.exposed_consumer_kills,
        s.duplicates,
        s.order_violations,
        s.phantoms
    );
    let mean = if s.recoveries > 0 {
        ms(s.sum_recovery) / s.recoveries as f64
    } else {
        0.0
    };
    println!(
        "{k}: recovery (kill -> replacement moved an item): max {:.1} ms, mean {mean:.1} ms \
         over {} kills{}",
        ms(s.max_recovery),
        s.recoveries,
        match (s.holes, s.releases) {
            (Some(h), Some(r)) => format!("; holes skipped {h}, slots released {r}"),
            _ => String::new(),
        }
    );
    println!(
        "{k}: {} children frozen for 50-250 ms and resumed{}",
        s.freezes,
        if k == "mpmc" {
            format!(
                " ({} inside a claim, which survivors must not resolve)",
                s.freezes_in_claim
            )
        } else {
            String::new()
        }
    );
    if k == "mpmc" && !s.claims_known {
        println!("{k}: kills inside a claim: unknown (the segment's registry was not readable)");
    } else if k == "mpmc" {
        let c = &s.claims;
        println!(
            "{k}: kills inside a claim: {} producers with a won, unpublished position \
             (+{} ambiguous), {} consumers with a taken, unreleased slot (+{} ambiguous), \
             {} about to claim",
            c.won_producer, c.ambiguous_producer, c.won_consumer, c.ambiguous_consumer, c.pending
        );
    }
    println!(
        "{k}: time: {:.1} s in random delays, {:.1} s stopping and killing victims, {:.1} s \
         waiting for replacements",
        s.t_delay.as_secs_f64(),
        s.t_kill.as_secs_f64(),
        s.t_recover.as_secs_f64()
    );
    for p in &s.problems {
        println!("{k}: VIOLATION: {p}");
    }
    println!(
        "summary: kind={k} iterations={} kills_producer={} kills_consumer={} items_moved={} \
         lost={} loss_bound={} duplicates={} order_violations={} phantoms={} \
         max_recovery_ms={:.1} result={}",
        s.iterations,
        s.kills_producer,
        s.kills_consumer,
        s.moved,
        s.lost,
        s.loss_bound,
        s.duplicates,
        s.order_violations,
        s.phantoms,
        ms(s.max_recovery),
        if s.ok() { "OK" } else { "FAIL" }
    );
    if a.json {
        let points: Vec<String> = s
            .points
            .pairs()
            .iter()
            .map(|(n, c)| format!("\"{n}\":{c}"))
            .collect();
        let problems: Vec<String> = s
            .problems
            .iter()
            .map(|p| format!("\"{}\"", p.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        println!(
            "{{\"kind\":\"{k}\",\"iterations\":{},\"kills_producer\":{},\"kills_consumer\":{},\
             \"kill_points\":{{{}}},\"retirements\":{},\"pushed\":{},\"items_moved\":{},\
             \"in_flight_delivered\":{},\"drained\":{},\"lost\":{},\"loss_bound\":{},\
             \"duplicates\":{},\"order_violations\":{},\"phantoms\":{},\"max_recovery_ms\":{:.3},\
             \"mean_recovery_ms\":{mean:.3},\"holes_skipped\":{},\"slots_released\":{},\
             \"kills_in_claim\":{{\"producer_won\":{},\"producer_ambiguous\":{},\
             \"consumer_won\":{},\"consumer_ambiguous\":{},\"pending\":{}}},\
             \"elapsed_s\":{:.3},\"ok\":{},\"violations\":[{}]}}",
            s.iterations,
            s.kills_producer,
            s.kills_consumer,
            points.join(","),
            s.retirements,
            s.pushed,
            s.moved,
            s.in_flight_delivered,
            s.drained,
            s.lost,
            s.loss_bound,
            s.duplicates,
            s.order_violations,
            s.phantoms,
            ms(s.max_recovery),
            s.holes.map_or("null".into(), |h| h.to_string()),
            s.releases.map_or("null".into(), |r| r.to_string()),
            s.claims.won_producer,
            s.claims.ambiguous_producer,
            s.claims.won_consumer,
            s.claims.ambiguous_consumer,
            s.claims.pending,
            s.elapsed.as_secs_f64(),
            s.ok(),
            problems.join(",")
        );
    }
}

/// `shmq torture`.
pub fn torture(a: TortureArgs) -> Res {
    let seed = a.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32) & ((1 << 53) - 1)
    });
    if a.capacity < 2 {
        return Err("--capacity must be at least 2 (MPMC needs 2)".into());
    }
    if a.producers == 0 || a.consumers == 0 {
        return Err("--producers and --consumers must be at least 1".into());
    }
    let kinds: &[Kind] = match a.kind {
        KindArg::Spsc => &[Kind::Spsc],
        KindArg::Mpmc => &[Kind::Mpmc],
        KindArg::Both => &[Kind::Spsc, Kind::Mpmc],
    };
    println!(
        "shmq torture: seed {seed} (replay the choices with --seed {seed}), {} iterations per \
         kind, capacity {}, deadline {} s (step {} s)",
        a.iterations, a.capacity, a.deadline_secs, a.step_deadline_secs
    );
    let global_end = Instant::now() + Duration::from_secs(a.deadline_secs);
    let mut ok = true;
    for &kind in kinds {
        // Each kind's choices depend on the seed alone: `--kind mpmc --seed S`
        // replays the MPMC half of `--kind both --seed S`.
        let kind_seed = match kind {
            Kind::Spsc => seed,
            Kind::Mpmc => seed ^ 0x6d70_6d63,
        };
        let s = match run_kind(&a, kind, kind_seed, global_end) {
            Ok(s) => s,
            Err(e) => {
                println!("shmq torture: FAIL ({}): {e}", kind.as_str());
                return Err(format!("torture failed (seed {seed})").into());
            }
        };
        print_summary(&s, &a);
        ok &= s.ok();
    }
    if ok {
        println!("shmq torture: OK");
        Ok(())
    } else {
        println!("shmq torture: FAIL");
        Err(format!("torture found violations (seed {seed})").into())
    }
}
