//! The supervisor: starts, kills, freezes and restarts the children,
//! aiming some kills at a window or an MPMC claim.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use shmqueue::probe::{ClaimProbe, MpmcProbe};
use shmqueue::{Mpmc, Role, Spsc};

use crate::Res;

use super::audit::*;
use super::ledger::*;
use super::*;

// ---------------------------------------------------------------------------
// The supervisor
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum R {
    Producer,
    Consumer,
}

impl R {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            R::Producer => "producer",
            R::Consumer => "consumer",
        }
    }
}

/// A live child. Killed (and waited for) on drop, so a failing run leaves
/// nothing behind.
pub(super) struct Proc {
    pub(super) role: R,
    pub(super) id: u64,
    pub(super) child: Child,
    pub(super) ledger: Ledger,
    pub(super) path: PathBuf,
    /// Items one call may move: what a kill can leave unrecorded.
    pub(super) window: u64,
    pub(super) pace_us: u64,
    pub(super) spawned: Instant,
}

impl Proc {
    pub(super) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub(super) fn describe(&self) -> String {
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
    pub(super) fn kernel_state(&self) -> char {
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
pub(super) struct TempDir(pub(super) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unlinks a segment we created, however the run ends.
pub(super) struct Segment(pub(super) String);

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = shmqueue::unlink(&self.0);
    }
}

/// Where an MPMC victim was, as its registry entry and the queue show while
/// it is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Claim {
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
pub(super) enum Target {
    /// Mid-batch, or between a call and its record.
    Window,
    /// (MPMC) holding a won position or a taken slot: `Claim::Won`.
    Claim,
}

/// Kills inside a claim, per outcome.
#[derive(Default, Debug)]
pub(super) struct ClaimKills {
    pub(super) won_producer: u64,
    pub(super) won_consumer: u64,
    pub(super) ambiguous_producer: u64,
    pub(super) ambiguous_consumer: u64,
    pub(super) pending: u64,
}

/// How often a targeted kill stops and resumes its victim at most, and for
/// how long (a loaded machine makes each try slow).
pub(super) const TARGET_TRIES: u32 = 100;
pub(super) const TARGET_BUDGET: Duration = Duration::from_millis(30);

/// Where a stopped victim is in its MPMC claim, read by the library's own
/// probe (`shmqueue::probe`), which takes the layout and the slot-sequence
/// encoding from the header module: nothing here knows an offset.
pub(super) struct Peek(MpmcProbe);

impl Peek {
    pub(super) fn open(name: &str) -> Option<Peek> {
        MpmcProbe::open(name).ok().map(Peek)
    }

    /// What the stopped process `pid`, an endpoint of `role`, holds.
    pub(super) fn claim_of(&self, pid: u32, role: R) -> Claim {
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
pub(super) struct KillPoints {
    pub(super) starting: u64,
    pub(super) blocked: u64,
    pub(super) in_op: u64,
    pub(super) mid_batch: u64,
    pub(super) recording: u64,
    pub(super) pausing: u64,
    pub(super) peer_absent: u64,
}

impl KillPoints {
    pub(super) fn pairs(&self) -> [(&'static str, u64); 7] {
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

pub(super) struct Supervisor<'a> {
    pub(super) a: &'a TortureArgs,
    pub(super) kind: Kind,
    pub(super) name: String,
    pub(super) dir: TempDir,
    pub(super) exe: PathBuf,
    pub(super) rng: Rng,
    pub(super) seed: u64,
    pub(super) global_end: Instant,
    pub(super) step: Duration,
    pub(super) next_id: u64,
    pub(super) inject: Inject,
    /// The consumer given `inject`.
    pub(super) injected: Option<u64>,
    /// MPMC: a read-only view of the registry, to see where victims die.
    pub(super) peek: Option<Peek>,
    pub(super) live: Vec<Proc>,
    pub(super) book: Book,
    pub(super) s: Summary,
}

impl Supervisor<'_> {
    pub(super) fn spawn(&mut self, role: R, drain: bool) -> Res<u64> {
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
    pub(super) fn report(&self, what: &str, stuck: &[u64]) -> String {
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

    pub(super) fn check_global(&self, waiting_on: &[u64]) -> Res {
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
    pub(super) fn wait_exit(&mut self, idx: usize, why: &str) -> Res<ExitStatus> {
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
    pub(super) fn handle_exits(&mut self) -> Res {
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
    pub(super) fn kill(&mut self, idx: usize, target: Option<Target>) -> Res<Instant> {
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
    pub(super) fn stop_at(
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
    pub(super) fn freeze(&mut self) -> Res {
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
    pub(super) fn wait_stopped(&self, idx: usize) -> bool {
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
    pub(super) fn absorb(&mut self, p: Proc, killed: bool) {
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
    pub(super) fn record(
        &mut self,
        rec: &mut ConsumerRec,
        per_producer: &mut HashMap<u64, u64>,
        v: u64,
    ) {
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
    pub(super) fn wait_recovery(
        &mut self,
        ids: &[u64],
        since: Instant,
        after: &str,
    ) -> Res<Duration> {
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
    pub(super) fn wait_word(&mut self, id: u64, word: usize, n: u64) -> Res {
        let end = Instant::now() + self.step;
        while self
            .live
            .iter()
            .find(|p| p.id == id)
            .is_some_and(|p| p.ledger.get(word) < n)
        {
            self.handle_exits()?;
            if Instant::now() > end {
                return Err(self
                    .report(
                        &format!("#{id}: ledger word {word} did not reach {n}"),
                        &[id],
                    )
                    .into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    pub(super) fn pick_delay(&mut self) -> Duration {
        let max_us = self.a.max_delay_ms * 1000;
        let us = match self.rng.below(100) {
            0..=14 => 0,
            15..=39 => self.rng.below(1000),
            40..=79 => 1000 + self.rng.below(9000),
            _ => 10_000 + self.rng.below(max_us.saturating_sub(10_000).max(1)),
        };
        Duration::from_micros(us.min(max_us))
    }

    pub(super) fn run(&mut self) -> Res {
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
            // Self-test: let the faulty consumer get its fault into the
            // record. (Not a count: a reorder waits for a second item of
            // the same producer, which other producers' items may precede.)
            // Then a few clean records after it, so that the fault sits
            // inside this consumer's record, not at its end.
            self.wait_word(id, FAULTED, 1)?;
            let at = self
                .live
                .iter()
                .find(|p| p.id == id)
                .map_or(0, |p| p.ledger.get(FAULTED));
            self.wait_word(id, COUNT, at + 3)?;
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
    pub(super) fn finish(&mut self) -> Res {
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

    pub(super) fn close_books(&mut self) {
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
