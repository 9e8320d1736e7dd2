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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use shmqueue::{Mpmc, Spsc};

use crate::Res;

mod audit;
mod broadcast;
mod child;
mod ledger;
mod report;
mod supervisor;

use audit::*;
pub use broadcast::{subscriber, SubscriberArgs};
pub use child::{consumer, producer};
use ledger::*;
use report::*;
use supervisor::*;

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Spsc,
    Mpmc,
    /// SPSC, then MPMC.
    Both,
    /// A broadcast ring, lossless then overwrite, killing subscribers.
    Broadcast,
    /// SPSC, MPMC, then broadcast.
    All,
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
    /// Which queue to torture (`both`: SPSC, then MPMC; `all`: then
    /// broadcast too).
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
    /// MPMC consumer processes (broadcast: subscriber processes).
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
        KindArg::Both | KindArg::All => &[Kind::Spsc, Kind::Mpmc],
        KindArg::Broadcast => &[],
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
    if matches!(a.kind, KindArg::Broadcast | KindArg::All) {
        for policy in [
            shmqueue::broadcast::Policy::Lossless,
            shmqueue::broadcast::Policy::Overwrite,
        ] {
            let s = match broadcast::run(&a, policy, seed ^ 0x6263_6173 ^ policy as u64) {
                Ok(s) => s,
                Err(e) => {
                    println!("shmq torture: FAIL (broadcast {policy:?}): {e}");
                    return Err(format!("torture failed (seed {seed})").into());
                }
            };
            s.print(a.json);
            ok &= s.ok();
        }
    }
    if ok {
        println!("shmq torture: OK");
        Ok(())
    } else {
        println!("shmq torture: FAIL");
        Err(format!("torture found violations (seed {seed})").into())
    }
}
