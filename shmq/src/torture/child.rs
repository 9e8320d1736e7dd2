//! The producer and consumer processes: attach, push or pop with every
//! call recorded in the ledger, and report where they are.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shmqueue::{mpmc, spsc, BatchError, Error, Mpmc, PopError, PushError, Spsc, TryPushError};

use crate::Res;

use super::ledger::*;
use super::*;

// ---------------------------------------------------------------------------
// The children
// ---------------------------------------------------------------------------

/// How long one blocking call may wait before the loop looks at its stop
/// word again.
pub(super) const SLICE: Duration = Duration::from_millis(100);
/// How long a child keeps retrying to attach (a role not yet free).
pub(super) const ATTACH_PATIENCE: Duration = Duration::from_secs(10);
/// Back-off while the other side has no endpoint at all (it is being
/// restarted): there is nothing to wait on in the queue.
pub(super) const ABSENT_BACKOFF: Duration = Duration::from_millis(1);

pub(super) fn child_setup(a: &RoleArgs) -> Res<Ledger> {
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
pub(super) fn attach<E>(mut f: impl FnMut() -> Result<E, Error>) -> Res<E> {
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

pub(super) enum Tx {
    Spsc(spsc::Producer<u64>),
    Mpmc(mpmc::Producer<u64>),
}

impl Tx {
    pub(super) fn push_timeout(&mut self, v: u64) -> Result<(), PushError<u64>> {
        match self {
            Tx::Spsc(p) => p.push_timeout(v, SLICE),
            Tx::Mpmc(p) => p.push_timeout(v, SLICE),
        }
    }

    pub(super) fn push_slice(&mut self, items: &[u64]) -> Result<usize, BatchError> {
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

pub(super) enum Rx {
    Spsc(spsc::Consumer<u64>),
    Mpmc(mpmc::Consumer<u64>),
}

impl Rx {
    pub(super) fn pop_timeout(&mut self) -> Result<u64, PopError> {
        match self {
            Rx::Spsc(c) => c.pop_timeout(SLICE),
            Rx::Mpmc(c) => c.pop_timeout(SLICE),
        }
    }

    pub(super) fn pop_slice(&mut self, out: &mut [u64]) -> Result<usize, BatchError> {
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

pub(super) fn pace(l: &Ledger, us: u64) {
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
        if done {
            l.set(FAULTED, n as u64);
        }
        pace(&l, a.pace_us);
    }
}
