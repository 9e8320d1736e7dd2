//! `shmq torture --kind broadcast`: a publisher (a thread of the
//! supervisor) streams into a broadcast ring, lossless and then overwrite,
//! while subscriber processes (this binary, re-executed with the hidden
//! `torture-subscriber` subcommand) are SIGKILLed at random moments and
//! replaced by new ones that join at `Latest`.
//!
//! Items are `[p, f(p), g(p), !p]` for position `p`, so a torn item shows.
//! Each subscriber checks its own stream as it goes and keeps its books in
//! a ledger (a file mapped shared with the supervisor, which survives its
//! SIGKILL): where it started, the next position it expects, the items it
//! was told it missed, and violations (a torn item, an item other than the
//! expected position, a lossless `Evicted`/`Lagged`).
//!
//! The checks, once every process has ended:
//!
//! * **violations**: 0 in every incarnation, killed or not.
//! * **lossless, exactly once per subscriber**: no item missed; a
//!   subscriber that was never killed received every position from its
//!   start to the last one published, each once, in order.
//! * **overwrite, exact missed counts**: received + missed = next - start
//!   for every subscriber (each position delivered or counted once).
//! * **no hangs**: after each kill the publisher must move past the
//!   position it was held at within the step deadline (a dead subscriber
//!   stops gating a lossless ring), every replacement must attach and
//!   receive, and the whole run must end within the deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use shmqueue::broadcast::{Broadcast, Policy, RecvError, Start};
use shmqueue::PushError;

use super::ledger::{Ledger, Rng};
use super::supervisor::{Segment, TempDir};
use super::TortureArgs;
use crate::Res;

/// One item: a position and three functions of it.
pub(super) fn item(p: u64) -> [u64; 4] {
    [
        p,
        p.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        p ^ 0x5555_aaaa_5555_aaaa,
        !p,
    ]
}

// Ledger words.
const STATE: usize = 0;
const START: usize = 1;
const NEXT: usize = 2;
const MISSED: usize = 3;
const BAD: usize = 4;
const RECEIVED: usize = 5;
const WORDS: usize = 8;

// 0: starting (the zero-filled ledger).
#[allow(dead_code)]
const ST_STARTING: u64 = 0;
const ST_ATTACHED: u64 = 1;
const ST_DONE: u64 = 2;

/// Arguments of the hidden `torture-subscriber` subcommand.
#[derive(Args, Clone, Debug)]
pub struct SubscriberArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    ledger: PathBuf,
    /// Pid of the supervisor: exit if it is no longer our parent.
    #[arg(long)]
    supervisor: i32,
}

/// `shmq torture-subscriber`: subscribe at `Latest`, receive until the
/// publisher has gone, checking and recording every item.
pub fn subscriber(a: SubscriberArgs) -> Res {
    let l = Ledger::open(&a.ledger)?;
    let w = l.words();
    let q = Broadcast::<[u64; 4]>::open(&a.name)?;
    let lossless = q.policy() == Policy::Lossless;
    let mut rx = q.subscribe(Start::Latest)?;
    let mut next = rx.position();
    w[START].store(next, Ordering::Relaxed);
    w[NEXT].store(next, Ordering::Relaxed);
    w[STATE].store(ST_ATTACHED, Ordering::Release);
    let (mut received, mut missed, mut bad) = (0u64, 0u64, 0u64);
    loop {
        if nix::unistd::getppid().as_raw() != a.supervisor {
            return Err("the supervisor has gone".into());
        }
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(v) => {
                if v != item(next) {
                    bad += 1;
                    w[BAD].store(bad, Ordering::Release);
                    // Resynchronise on what came, so one fault is one count.
                    next = v[0];
                }
                next += 1;
                received += 1;
            }
            Err(RecvError::Lagged { missed: m } | RecvError::Evicted { missed: m }) => {
                if lossless {
                    bad += 1;
                    w[BAD].store(bad, Ordering::Release);
                }
                next += m;
                missed += m;
                w[MISSED].store(missed, Ordering::Release);
            }
            Err(RecvError::Timeout) => continue,
            Err(RecvError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
        w[RECEIVED].store(received, Ordering::Release);
        w[NEXT].store(next, Ordering::Release);
    }
    w[STATE].store(ST_DONE, Ordering::Release);
    Ok(())
}

struct Sub {
    child: Child,
    ledger: Ledger,
    killed: bool,
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The figures of one policy's run.
#[derive(Debug, Default)]
pub(super) struct BroadcastSummary {
    pub(super) policy: &'static str,
    pub(super) iterations: u64,
    pub(super) kills: u64,
    pub(super) incarnations: u64,
    pub(super) published: u64,
    pub(super) received: u64,
    pub(super) missed: u64,
    pub(super) violations: u64,
    /// Longest time from a SIGKILL to the publisher moving on.
    pub(super) worst_resume: Duration,
    pub(super) elapsed: Duration,
    pub(super) failures: Vec<String>,
}

impl BroadcastSummary {
    pub(super) fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    pub(super) fn print(&self, json: bool) {
        println!(
            "broadcast {}: {} iterations, {} subscriber kills, {} incarnations, {} published, \
             {} received, {} missed, {} violations; publisher resumed at most {:?} after a \
             kill; {:?}: {}",
            self.policy,
            self.iterations,
            self.kills,
            self.incarnations,
            self.published,
            self.received,
            self.missed,
            self.violations,
            self.worst_resume,
            self.elapsed,
            if self.ok() { "OK" } else { "FAIL" }
        );
        for f in &self.failures {
            println!("  violation: {f}");
        }
        println!(
            "summary: kind=broadcast-{} iterations={} kills={} incarnations={} published={} \
             received={} missed={} violations={} worst_resume_ms={:.1} result={}",
            self.policy,
            self.iterations,
            self.kills,
            self.incarnations,
            self.published,
            self.received,
            self.missed,
            self.violations + self.failures.len() as u64,
            self.worst_resume.as_secs_f64() * 1e3,
            if self.ok() { "OK" } else { "FAIL" }
        );
        if json {
            println!(
                "{{\"kind\":\"broadcast-{}\",\"iterations\":{},\"kills\":{},\"incarnations\":{},\
                 \"published\":{},\"received\":{},\"missed\":{},\"violations\":{},\
                 \"worst_resume_ms\":{:.1},\"result\":\"{}\"}}",
                self.policy,
                self.iterations,
                self.kills,
                self.incarnations,
                self.published,
                self.received,
                self.missed,
                self.violations,
                self.worst_resume.as_secs_f64() * 1e3,
                if self.ok() { "OK" } else { "FAIL" }
            );
        }
    }
}

fn spawn(exe: &Path, name: &str, dir: &Path, id: u64) -> Res<Sub> {
    let path = dir.join(format!("subscriber-{id}"));
    let ledger = Ledger::create(&path, WORDS)?;
    let child = Command::new(exe)
        .arg("torture-subscriber")
        .args(["--name", name])
        .arg("--ledger")
        .arg(&path)
        .args(["--supervisor", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
    Ok(Sub {
        child,
        ledger,
        killed: false,
    })
}

/// Wait until `cond`, or fail naming `what` after `limit`.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Res {
    let end = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= end {
            return Err(format!("hang: {what} within {limit:?}").into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Torture one policy.
pub(super) fn run(a: &TortureArgs, policy: Policy, seed: u64) -> Res<BroadcastSummary> {
    let started = Instant::now();
    let label = match policy {
        Policy::Lossless => "lossless",
        Policy::Overwrite => "overwrite",
    };
    let prefix = a
        .name
        .clone()
        .unwrap_or_else(|| format!("/shmq-torture-{}", std::process::id()));
    let name = format!("{prefix}-broadcast-{label}");
    let subscribers = a.consumers.max(1);
    let b = Broadcast::<[u64; 4]>::builder()
        .capacity(a.capacity)
        // A spare entry: a replacement may attach before the victim's
        // entry is reaped.
        .max_subscribers(subscribers + 1);
    let b = match policy {
        Policy::Lossless => b.lossless(),
        Policy::Overwrite => b.overwrite(),
    };
    let q = b.create(&name).map_err(|e| format!("create {name}: {e}"))?;
    let _segment = Segment(name.clone());
    let dir = std::env::temp_dir().join(format!(
        "shmq-torture-{}-broadcast-{label}-{seed}",
        std::process::id()
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let dir = TempDir(dir);
    let exe = std::env::current_exe()?;
    let step = Duration::from_secs(a.step_deadline_secs);
    let mut rng = Rng(seed);
    let mut s = BroadcastSummary {
        policy: label,
        ..BroadcastSummary::default()
    };
    let mut next_id = 0u64;
    let mut live: Vec<Sub> = Vec::new();
    let mut dead: Vec<Sub> = Vec::new();
    for _ in 0..subscribers {
        live.push(spawn(&exe, &name, &dir.0, next_id)?);
        next_id += 1;
    }
    for sub in &live {
        wait_until("a subscriber attaching", step, || {
            sub.ledger.get(STATE) == ST_ATTACHED
        })?;
    }
    // The publisher: as fast as it can, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tx = q.publisher()?;
    let publisher = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> Result<u64, String> {
            let mut p = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match tx.publish_timeout(item(p), step) {
                    Ok(()) => p += 1,
                    Err(PushError::Timeout(_)) => {
                        return Err(format!("hang: the publisher was held at {p} for {step:?}"))
                    }
                    Err(e) => return Err(format!("publish {p}: {e}")),
                }
            }
            Ok(p)
        })
    };
    let end = started + Duration::from_secs(a.deadline_secs);
    for _ in 0..a.iterations {
        if Instant::now() >= end {
            break;
        }
        s.iterations += 1;
        std::thread::sleep(Duration::from_millis(rng.below(a.max_delay_ms.max(1))));
        let victim = rng.below(live.len() as u64) as usize;
        let mut v = live.swap_remove(victim);
        let held_at = q.stats().published;
        let killed = Instant::now();
        let _ = v.child.kill();
        let _ = v.child.wait();
        v.killed = true;
        s.kills += 1;
        dead.push(v);
        // A lossless publisher held back by the victim must go on.
        let moved = || q.stats().published > held_at;
        wait_until("the publisher moving on after a kill", step, moved)?;
        s.worst_resume = s.worst_resume.max(killed.elapsed());
        let sub = spawn(&exe, &name, &dir.0, next_id)?;
        next_id += 1;
        wait_until("a replacement attaching", step, || {
            sub.ledger.get(STATE) == ST_ATTACHED
        })?;
        live.push(sub);
    }
    // Everyone still alive receives something more before the end.
    let marks: Vec<u64> = live.iter().map(|l| l.ledger.get(RECEIVED)).collect();
    for (sub, m) in live.iter().zip(marks) {
        wait_until("a subscriber receiving", step, || {
            sub.ledger.get(RECEIVED) > m
        })?;
    }
    stop.store(true, Ordering::Relaxed);
    s.published = publisher
        .join()
        .map_err(|_| "the publisher thread panicked")??;
    for sub in &live {
        wait_until("a subscriber draining to Disconnected", step, || {
            sub.ledger.get(STATE) == ST_DONE
        })?;
    }
    // The books.
    for (i, sub) in live.iter().chain(&dead).enumerate() {
        let l = &sub.ledger;
        let (start, next, missed, bad, received) = (
            l.get(START),
            l.get(NEXT),
            l.get(MISSED),
            l.get(BAD),
            l.get(RECEIVED),
        );
        s.incarnations += 1;
        s.received += received;
        s.missed += missed;
        s.violations += bad;
        let who = format!(
            "subscriber {i} ({}, start {start})",
            if sub.killed { "killed" } else { "survivor" }
        );
        if bad != 0 {
            s.failures.push(format!(
                "{who}: {bad} torn, out-of-order or lossless-lapped"
            ));
        }
        if policy == Policy::Lossless && missed != 0 {
            s.failures.push(format!("{who}: missed {missed} items"));
        }
        // A kill between an item and its record leaves NEXT one behind
        // RECEIVED's count at most: both are written after each item.
        let span = next.saturating_sub(start);
        if received + missed != span && !(sub.killed && received + missed == span + 1) {
            s.failures.push(format!(
                "{who}: received {received} + missed {missed} != next {next} - start"
            ));
        }
        if !sub.killed && next != s.published {
            s.failures.push(format!(
                "{who}: ended at {next}, the publisher at {}",
                s.published
            ));
        }
    }
    let st = q.stats();
    if st.evictions != 0 {
        s.failures
            .push(format!("{} evictions without max_lag", st.evictions));
    }
    s.elapsed = started.elapsed();
    Ok(s)
}
