//! The process's async waiter threads: each sleeps on up to 127 epoch words
//! of awaiting endpoints at once with `futex_waitv`, plus a private
//! doorbell word that a new registration rings, and wakes the `Waker` of
//! every registration whose word moved. See `aio/mod.rs` and
//! docs/DESIGN.md ("Async waiting") for the protocol and why it loses no
//! wake-up.
//!
//! Threads are added one per 127 concurrent waits (the kernel's
//! `FUTEX_WAITV_MAX` is 128, one of which is the doorbell) and live as
//! long as the process; an idle one sleeps on its doorbell alone, with no
//! deadline, and uses no CPU.

use std::ptr::NonNull;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use crate::mapping::Ring;
use crate::sync::{AtomicU32, Mutex, Ordering};
use crate::wait::{Deadline, LIVENESS_SLICE};

/// Waits one thread serves: `futex_waitv` takes at most 128 words, and one
/// is the doorbell.
pub(crate) const PER_THREAD: usize = 127;

/// One waiter thread's registrations.
pub(crate) struct Shard {
    state: Mutex<State>,
    /// A private futex word of this process. A registration that the thread
    /// cannot be waiting on yet bumps it and wakes it, so the thread returns
    /// from `futex_waitv` and rebuilds its list.
    doorbell: AtomicU32,
    /// The fork generation (`liveness::fork_generation`) of the process
    /// whose thread serves this shard. A child forked after the parent used
    /// async has the parent's shards in memory but not their threads: a
    /// wait registered there would never be woken, so a shard of another
    /// generation is never used (see `register` and `add`).
    generation: u64,
}

struct State {
    entries: Vec<Entry>,
    /// The thread is (about to be) inside `futex_waitv` with the list it
    /// built: a change to the list must ring the doorbell. Clear while the
    /// thread scans; it rebuilds the list before it sleeps again anyway.
    parked: bool,
    next_id: u64,
    /// When every registration is next woken although its word did not
    /// move, so that its endpoint re-checks its peer's liveness (a dead
    /// peer sends no wake-up): every `LIVENESS_SLICE` while any is
    /// registered, as a blocked sync endpoint's sleep slice.
    next_tick: Option<Deadline>,
    /// loom models only: the model's waiter thread returns.
    #[cfg(shmqueue_loom)]
    stop: bool,
}

/// One awaiting future: sleep while `*word == expected`.
struct Entry {
    id: u64,
    /// Keeps the mapping that `word` points into alive while it is listed.
    ring: Arc<Ring>,
    word: NonNull<AtomicU32>,
    expected: u32,
    /// `None` once woken by a liveness tick, until the future polls again
    /// and re-registers; the word stays listed meanwhile.
    waker: Option<Waker>,
    /// Wake after this even if the word did not move: the 1 ms slices of a
    /// waiter whose heavy fence could not be issued (wait.rs, `Ticket`).
    until: Option<Deadline>,
}

// SAFETY: `word` points into the mapping (or the loom heap) that `ring`
// owns, which `ring` keeps alive as long as the entry; it is only ever
// used as `&AtomicU32`, which is `Sync`. Everything else is `Send`.
unsafe impl Send for Entry {}

impl Entry {
    fn word(&self) -> &AtomicU32 {
        // SAFETY: see the `Send` impl: `self.ring` keeps the word mapped for
        // as long as `self` lives, and it is only read atomically.
        unsafe { self.word.as_ref() }
    }
}

/// A future's registration with a waiter thread; dropping it withdraws it.
pub(crate) struct Registration {
    shard: Arc<Shard>,
    id: u64,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            state: Mutex::new(State {
                entries: Vec::new(),
                parked: false,
                next_id: 0,
                next_tick: None,
                #[cfg(shmqueue_loom)]
                stop: false,
            }),
            doorbell: AtomicU32::new(0),
            generation: {
                // Before the first shard exists, so no later fork goes
                // unseen: the child handler bumps the generation.
                crate::liveness::watch_forks();
                crate::liveness::fork_generation()
            },
        }
    }

    /// Make the thread rebuild its list. Called after the change, outside
    /// the lock: the thread read the doorbell under the lock before it
    /// parked, so the bump makes its `futex_waitv` return at once if it has
    /// not slept yet, and the wake ends it if it has.
    fn ring_bell(&self) {
        self.doorbell.fetch_add(1, Ordering::Release);
        #[cfg(not(shmqueue_loom))]
        crate::sys::futex::wake_private(&self.doorbell);
        #[cfg(shmqueue_loom)]
        crate::sync::futex_wake_all_model(&self.doorbell);
    }

    /// Add `entry` if there is room; its id, or the entry back.
    fn try_add(&self, mut entry: Entry) -> Result<u64, Entry> {
        let mut st = self.state.lock().unwrap();
        if st.entries.len() >= PER_THREAD {
            return Err(entry);
        }
        let id = st.next_id;
        st.next_id += 1;
        entry.id = id;
        st.entries.push(entry);
        let bell = st.parked;
        drop(st);
        if bell {
            self.ring_bell();
        }
        Ok(id)
    }

    /// Renew registration `id` for another wait; false if the thread has
    /// dropped it (its word moved), and the caller must register afresh.
    fn renew(&self, id: u64, expected: u32, until: Option<Deadline>, waker: &Waker) -> bool {
        let mut st = self.state.lock().unwrap();
        let Some(e) = st.entries.iter_mut().find(|e| e.id == id) else {
            return false;
        };
        match &mut e.waker {
            Some(w) => w.clone_from(waker),
            None => e.waker = Some(waker.clone()),
        }
        // The same word and value as the thread is listening to: nothing
        // for it to rebuild. (The common case: a liveness tick woke the
        // future, nothing moved, and it waits again.)
        if e.expected == expected && e.until.is_none() && until.is_none() {
            return true;
        }
        e.expected = expected;
        e.until = until;
        let bell = st.parked;
        drop(st);
        if bell {
            self.ring_bell();
        }
        true
    }

    fn remove(&self, id: u64) {
        let mut st = self.state.lock().unwrap();
        let Some(at) = st.entries.iter().position(|e| e.id == id) else {
            return; // already dropped by the thread: its word moved
        };
        let entry = st.entries.swap_remove(at);
        // The thread holds this ring (`held` in `run`) while it sleeps with
        // the word listed: let it drop it now, not at the next liveness tick
        // (or never, if this was the last entry), so a dropped endpoint's
        // mapping and handle lock go when the endpoint does.
        let bell = st.parked;
        drop(st);
        drop(entry);
        if bell {
            self.ring_bell();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shard.remove(self.id);
    }
}

/// Register (or renew) a wait: wake `waker` once `word` (an epoch word in
/// `ring`) no longer holds `expected`, or at the next liveness tick, or
/// after 1 ms if `short`.
pub(crate) fn register(
    reg: &mut Option<Registration>,
    ring: &Arc<Ring>,
    word: &AtomicU32,
    expected: u32,
    short: bool,
    waker: &Waker,
) {
    let until = short.then(|| Deadline::after(Duration::from_millis(1)));
    if let Some(r) = reg {
        // A registration made before a fork names a shard whose thread is
        // the parent's: register anew with one of this process's own.
        if r.shard.generation == crate::liveness::fork_generation()
            && r.shard.renew(r.id, expected, until, waker)
        {
            return;
        }
    }
    *reg = None;
    let entry = Entry {
        id: 0,
        ring: Arc::clone(ring),
        word: NonNull::from(word),
        expected,
        waker: Some(waker.clone()),
        until,
    };
    *reg = Some(add(entry));
}

/// Every waiter thread's shard, in the order they were started.
#[cfg(not(shmqueue_loom))]
static SHARDS: std::sync::Mutex<Vec<Arc<Shard>>> = std::sync::Mutex::new(Vec::new());

/// (waiter threads, registered waits) in this process right now.
#[cfg(not(shmqueue_loom))]
pub(crate) fn census() -> (usize, usize) {
    let shards = SHARDS.lock().unwrap_or_else(|p| p.into_inner());
    let waits = shards
        .iter()
        .map(|s| {
            s.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entries
                .len()
        })
        .sum();
    (shards.len(), waits)
}

/// Add to the first thread with room, starting a new one if all are full.
#[cfg(not(shmqueue_loom))]
fn add(mut entry: Entry) -> Registration {
    let mut shards = SHARDS.lock().unwrap_or_else(|p| p.into_inner());
    let generation = crate::liveness::fork_generation();
    if shards.first().is_some_and(|s| s.generation != generation) {
        // Forked: these shards' threads are the parent's and do not exist
        // here. Forget them (not dropped: their locks may have been held
        // by a parent thread at the fork) and start this process's own.
        std::mem::forget(std::mem::take(&mut *shards));
    }
    for shard in shards.iter() {
        match shard.try_add(entry) {
            Ok(id) => {
                return Registration {
                    shard: Arc::clone(shard),
                    id,
                }
            }
            Err(back) => entry = back,
        }
    }
    let shard = Arc::new(Shard::new());
    let runner = Arc::clone(&shard);
    std::thread::Builder::new()
        .name(format!("shmqueue-waiter-{}", shards.len()))
        .spawn(move || run(&runner))
        // Out of threads: nothing else this process could do would wake
        // the future; say so loudly instead of hanging it.
        .expect("shmqueue: cannot start an async waiter thread");
    let id = match shard.try_add(entry) {
        Ok(id) => id,
        Err(_) => unreachable!("a new waiter thread has room"),
    };
    shards.push(Arc::clone(&shard));
    Registration { shard, id }
}

#[cfg(shmqueue_loom)]
loom::lazy_static! {
    /// Under loom: one shard per execution, whose thread the model runs
    /// itself ([`model_run`]), so that it can also stop it.
    static ref MODEL_SHARD: Arc<Shard> = Arc::new(Shard::new());
}

#[cfg(shmqueue_loom)]
fn add(entry: Entry) -> Registration {
    let shard = Arc::clone(&MODEL_SHARD);
    let id = match shard.try_add(entry) {
        Ok(id) => id,
        Err(_) => panic!("loom models register fewer than {PER_THREAD} waits"),
    };
    Registration { shard, id }
}

/// loom models only: run this execution's waiter thread until
/// [`model_stop`].
#[cfg(shmqueue_loom)]
pub(crate) fn model_run() {
    run(&MODEL_SHARD);
}

/// loom models only: make [`model_run`] return.
#[cfg(shmqueue_loom)]
pub(crate) fn model_stop() {
    MODEL_SHARD.state.lock().unwrap().stop = true;
    MODEL_SHARD.ring_bell();
}

/// A waiter thread: list every registered word and the doorbell, sleep
/// until one moves (or the tick), wake whose word moved, repeat.
fn run(shard: &Shard) {
    let mut list: Vec<(NonNull<AtomicU32>, u32, bool)> = Vec::with_capacity(PER_THREAD + 1);
    // The rings of the listed words, so every address handed to the kernel
    // is mapped until the call has returned (even if its entry is removed
    // meanwhile).
    let mut held: Vec<Arc<Ring>> = Vec::with_capacity(PER_THREAD);
    let mut wake: Vec<Waker> = Vec::new();
    let mut fallback = false;
    loop {
        let until = {
            let mut st = shard.state.lock().unwrap();
            #[cfg(shmqueue_loom)]
            if st.stop {
                return;
            }
            // Read under the lock: a change made after this (under the
            // lock) rings the bell, because it sees `parked`.
            let bell = shard.doorbell.load(Ordering::Acquire);
            list.clear();
            list.push((NonNull::from(&shard.doorbell), bell, true));
            for e in &st.entries {
                list.push((e.word, e.expected, false));
                held.push(Arc::clone(&e.ring));
            }
            if st.entries.is_empty() {
                st.next_tick = None;
            } else if st.next_tick.is_none() {
                st.next_tick = Some(Deadline::after(LIVENESS_SLICE));
            }
            let until = st
                .entries
                .iter()
                .filter_map(|e| e.until)
                .fold(st.next_tick, |a, u| Some(a.map_or(u, |a| a.min(u))));
            st.parked = true;
            until
        };
        sleep(&list, until, &mut fallback);
        {
            let mut st = shard.state.lock().unwrap();
            st.parked = false;
            let tick = st.next_tick.is_some_and(|t| t.passed());
            if tick {
                st.next_tick = Some(Deadline::after(LIVENESS_SLICE));
            }
            st.entries.retain_mut(|e| {
                // Acquire: pairs with the notifier's Release bump, though
                // the woken future re-reads the ring with its own Acquire.
                let moved = e.word().load(Ordering::Acquire) != e.expected;
                let slice_over = e.until.is_some_and(|u| u.passed());
                if moved || slice_over || tick {
                    wake.extend(e.waker.take());
                }
                // A moved word is done with: the future re-arms for a new
                // epoch. A ticked one stays listed for its renewal.
                !(moved || slice_over)
            });
        }
        // Outside the lock: a waker may run code that registers again.
        for w in wake.drain(..) {
            w.wake();
        }
        held.clear();
    }
}

/// One sleep of a waiter thread on `list` (the doorbell first), until
/// `until` (forever if `None`).
#[cfg(not(shmqueue_loom))]
fn sleep(list: &[(NonNull<AtomicU32>, u32, bool)], until: Option<Deadline>, fallback: &mut bool) {
    use crate::sys::futex::{wait_many, wait_private, WokenMany};
    if !*fallback {
        match wait_many(list, until.as_ref().map(Deadline::timespec)) {
            WokenMany::Maybe | WokenMany::TimedOut => return,
            WokenMany::Unsupported => {
                *fallback = true;
                eprintln!(
                    "shmqueue: futex_waitv is not available (Linux < 5.16 or a seccomp \
                     filter); async waits poll their words every 1 ms instead"
                );
            }
            // EFAULT/EINVAL: no spin on a failing call; one slice below.
            WokenMany::Failed => {}
        }
    }
    // Without futex_waitv: sleep on the doorbell alone, in 1 ms slices
    // while anything is registered, and let the caller compare every word
    // after each slice. Latency (up to 1 ms) and ~1000 wake-ups a second
    // while something is awaited; never a lost wake-up, since the caller
    // compares values, not wake-ups.
    let (doorbell, bell, _) = list[0];
    let slice = Deadline::after(Duration::from_millis(1));
    let until = if list.len() > 1 {
        Some(until.map_or(slice, |u| u.min(slice)))
    } else {
        until
    };
    // SAFETY: the doorbell is a field of the shard, which the caller (the
    // thread, holding an `Arc` of it) keeps alive.
    let doorbell = unsafe { doorbell.as_ref() };
    let _ = wait_private(doorbell, bell, until.as_ref().map(Deadline::timespec));
}

/// The loom model of [`sleep`]: `futex_waitv` as one compare-and-sleep over
/// every word, under the futex model's mutex (sync.rs).
#[cfg(shmqueue_loom)]
fn sleep(list: &[(NonNull<AtomicU32>, u32, bool)], _until: Option<Deadline>, _: &mut bool) {
    crate::sync::futex_waitv_model(list.iter().map(|&(w, expected, _)| {
        // SAFETY: the doorbell is kept alive by the shard the thread holds,
        // every other word by a ring in the thread's `held`.
        (unsafe { w.as_ref() }, expected)
    }));
}
