//! Broadcast rings between real processes: fan-out to four subscriber
//! processes, late joiners with every start mode, a subscriber SIGKILLed or
//! SIGSTOPped while it holds a lossless publisher back, eviction past
//! `max_lag`, and a slow subscriber of an overwrite ring. This test binary
//! re-executes itself as the children (see tests/common).
//!
//! Lossless items are their own positions, so a subscriber checks that it
//! got exactly its start, start + 1, ... with nothing missing or repeated;
//! overwrite items carry a checksum of themselves.

mod common;

use std::io::BufRead;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use shmqueue::broadcast::{Broadcast, Publisher, RecvError, Start};
use shmqueue::TryPushError;

fn err(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

fn start_arg(s: &str) -> Start {
    match s {
        "latest" => Start::Latest,
        "oldest" => Start::Oldest,
        n => Start::At(n.parse().expect("start position")),
    }
}

/// The subscriber child. Receives until the publisher has gone, checking
/// that every item is the next position (after a reported eviction or lap,
/// the next one after the jump), then reports `done <received> <missed>`.
/// With `STOP_AT` it stops reading at that position, says `stalled`, and
/// blocks on its stdin until it is killed.
fn subscriber_child() -> Result<(), String> {
    let name = child_arg("NAME");
    let start = start_arg(&child_arg("START"));
    let stop_at: Option<u64> = std::env::var("SHMQ_TEST_STOP_AT")
        .ok()
        .map(|s| s.parse().unwrap());
    let may_miss = std::env::var("SHMQ_TEST_MAY_MISS").is_ok();
    let ticks = std::env::var("SHMQ_TEST_TICKS").is_ok();
    let (mut received, mut missed) = (0u64, 0u64);
    if ticks {
        let mut rx = Broadcast::<Tick>::open(&name)
            .map_err(err)?
            .subscribe(start)
            .map_err(err)?;
        let mut next = rx.position();
        tell_parent(&format!("ready {next}"));
        loop {
            match rx.recv_timeout(DEADLINE) {
                Ok(t) => {
                    if !t.valid() || t.pos != next {
                        return Err(format!("at {next}: got {t:?}"));
                    }
                    next += 1;
                    received += 1;
                    // A slow reader: some work per item.
                    let mut x = t.sum;
                    for _ in 0..200 {
                        x = std::hint::black_box(x.rotate_left(3) ^ 0x55);
                    }
                }
                Err(RecvError::Lagged { missed: m }) => {
                    next += m;
                    missed += m;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => return Err(format!("at {next}: {e:?}")),
            }
        }
    } else {
        let mut rx = Broadcast::<u64>::open(&name)
            .map_err(err)?
            .subscribe(start)
            .map_err(err)?;
        let mut next = rx.position();
        tell_parent(&format!("ready {next}"));
        loop {
            if Some(next) == stop_at {
                tell_parent("stalled");
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                return Err("stdin closed while stalled".into());
            }
            match rx.recv_timeout(DEADLINE) {
                Ok(v) if v == next => {
                    next += 1;
                    received += 1;
                }
                Ok(v) => return Err(format!("expected {next}, got {v}")),
                Err(RecvError::Evicted { missed: m }) if may_miss => {
                    next += m;
                    missed += m;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => return Err(format!("at {next}: {e:?}")),
            }
        }
    }
    tell_parent(&format!("done {received} {missed}"));
    Ok(())
}

/// Spawn a subscriber child and wait for its `ready <position>`.
fn subscriber(test: &str, name: &str, start: &str, extra: &[(&str, String)]) -> (ChildProc, u64) {
    let mut args = vec![("NAME", name.to_owned()), ("START", start.to_owned())];
    args.extend_from_slice(extra);
    let mut c = spawn(test, "sub", &args);
    let line = c.expect_line();
    let pos = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("subscriber said {line:?}"))
        .parse()
        .unwrap();
    (c, pos)
}

/// The child's `done <received> <missed>`, and a clean exit.
fn done(c: &mut ChildProc) -> (u64, u64) {
    let line = c.expect_line();
    let mut it = line
        .strip_prefix("done ")
        .unwrap_or_else(|| panic!("subscriber said {line:?}"))
        .split(' ')
        .map(|n| n.parse::<u64>().unwrap());
    let r = (it.next().unwrap(), it.next().unwrap());
    c.success();
    r
}

/// Publish `range` in batches, waiting (with the test deadline) while full.
fn publish_range(tx: &mut Publisher<u64>, range: std::ops::Range<u64>) {
    let mut buf = Vec::with_capacity(256);
    let mut v = range.start;
    while v < range.end {
        buf.clear();
        buf.extend(v..range.end.min(v + 256));
        tx.publish_all_timeout(&buf, DEADLINE)
            .unwrap_or_else(|e| panic!("publishing from {v}: {e}"));
        v += buf.len() as u64;
    }
}

/// Wait (bounded) until `cond` holds.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn dispatch() {
    if let Some(role) = child_role() {
        run_child(|| match role.as_str() {
            "sub" => subscriber_child(),
            other => Err(format!("unknown role {other}")),
        });
    }
}

const FANOUT_ITEMS: u64 = 10_000_000;

#[test]
fn one_publisher_four_subscriber_processes_ten_million_items_each() {
    dispatch();
    let test = "one_publisher_four_subscriber_processes_ten_million_items_each";
    let shm = Shm::new("bc-fanout");
    let q = Broadcast::<u64>::create(shm.name(), 4096).unwrap();
    let mut tx = q.publisher().unwrap();
    let mut subs: Vec<ChildProc> = (0..4)
        .map(|_| {
            let (c, pos) = subscriber(test, shm.name(), "latest", &[]);
            assert_eq!(pos, 0);
            c
        })
        .collect();
    let started = Instant::now();
    publish_range(&mut tx, 0..FANOUT_ITEMS);
    drop(tx);
    for (i, c) in subs.iter_mut().enumerate() {
        assert_eq!(done(c), (FANOUT_ITEMS, 0), "subscriber {i}");
    }
    let took = started.elapsed();
    let s = q.stats();
    assert_eq!((s.published, s.evictions, s.laps), (FANOUT_ITEMS, 0, 0));
    eprintln!(
        "{test}: {FANOUT_ITEMS} items to each of 4 processes in {took:?} \
         ({:.1} M items/s per subscriber, 2 cores, oversubscribed)",
        FANOUT_ITEMS as f64 / took.as_secs_f64() / 1e6
    );
}

#[test]
fn late_joiners_start_latest_oldest_or_at_a_sequence_number() {
    dispatch();
    let test = "late_joiners_start_latest_oldest_or_at_a_sequence_number";
    let shm = Shm::new("bc-late");
    let q = Broadcast::<u64>::create(shm.name(), 256).unwrap();
    let mut tx = q.publisher().unwrap();
    // Nobody subscribed: the ring keeps the newest items.
    publish_range(&mut tx, 0..1000);
    let (mut oldest, o) = subscriber(test, shm.name(), "oldest", &[]);
    let (mut at, a) = subscriber(test, shm.name(), "900", &[]);
    let (mut latest, l) = subscriber(test, shm.name(), "latest", &[]);
    assert_eq!((o, a, l), (1000 - 255, 900, 1000));
    publish_range(&mut tx, 1000..50_000);
    drop(tx);
    assert_eq!(done(&mut oldest), (50_000 - 745, 0));
    assert_eq!(done(&mut at), (50_000 - 900, 0));
    assert_eq!(done(&mut latest), (49_000, 0));
}

#[test]
fn a_killed_subscriber_stops_holding_the_publisher_within_a_second() {
    dispatch();
    let test = "a_killed_subscriber_stops_holding_the_publisher_within_a_second";
    let shm = Shm::new("bc-kill");
    let cap = 1024u64;
    let q = Broadcast::<u64>::create(shm.name(), cap as usize).unwrap();
    let mut tx = q.publisher().unwrap();
    let (mut victim, _) = subscriber(test, shm.name(), "latest", &[("STOP_AT", "5000".into())]);
    let mut healthy: Vec<ChildProc> = (0..2)
        .map(|_| subscriber(test, shm.name(), "latest", &[]).0)
        .collect();
    const N: u64 = 200_000;
    let publisher = thread::spawn(move || publish_range(&mut tx, 0..N));
    assert_eq!(victim.expect_line(), "stalled");
    // The victim's cursor is 5000: the publisher stops at 5000 + capacity.
    wait_for("the publisher to be held back", || {
        q.stats().published == 5000 + cap
    });
    let killed = Instant::now();
    victim.sigkill();
    wait_for("the publisher to go on", || {
        q.stats().published > 5000 + cap
    });
    let resumed = killed.elapsed();
    assert!(
        resumed < Duration::from_secs(1),
        "publisher resumed {resumed:?} after the kill"
    );
    publisher.join().unwrap();
    drop(q.publisher()); // (the thread's publisher is gone: the role is free)
    for c in &mut healthy {
        assert_eq!(done(c), (N, 0));
    }
    assert_eq!(q.stats().evictions, 0);
    eprintln!("{test}: the publisher went on {resumed:?} after SIGKILL");
}

#[test]
fn a_stopped_subscriber_holds_the_publisher_until_sigcont() {
    dispatch();
    let test = "a_stopped_subscriber_holds_the_publisher_until_sigcont";
    let shm = Shm::new("bc-stop");
    let cap = 1024u64;
    let q = Broadcast::<u64>::create(shm.name(), cap as usize).unwrap();
    let mut tx = q.publisher().unwrap();
    let (mut sub, _) = subscriber(test, shm.name(), "latest", &[]);
    sub.sigstop();
    const N: u64 = 100_000;
    let publisher = thread::spawn(move || publish_range(&mut tx, 0..N));
    wait_for("the ring to fill", || q.stats().published == cap);
    // Well past the dead-subscriber patience (20 ms): a live subscriber is
    // never dropped without max_lag. (An observation window, not a
    // synchronisation: the assertion holds however long it is.)
    thread::sleep(Duration::from_millis(300));
    let s = q.stats();
    assert_eq!((s.published, s.evictions), (cap, 0), "{s:?}");
    assert!(s.subscribers[0].alive);
    sub.sigcont();
    publisher.join().unwrap();
    assert_eq!(done(&mut sub), (N, 0));
}

#[test]
fn past_max_lag_a_stopped_subscriber_is_evicted_with_the_exact_missed_count() {
    dispatch();
    let test = "past_max_lag_a_stopped_subscriber_is_evicted_with_the_exact_missed_count";
    let shm = Shm::new("bc-evict");
    let cap = 1024u64;
    let q = Broadcast::<u64>::builder()
        .capacity(cap as usize)
        .max_lag(Duration::from_millis(100))
        .create(shm.name())
        .unwrap();
    let mut tx = q.publisher().unwrap();
    let (mut sub, pos) = subscriber(test, shm.name(), "latest", &[("MAY_MISS", "1".into())]);
    assert_eq!(pos, 0);
    sub.sigstop();
    const N: u64 = 50_000;
    let started = Instant::now();
    publish_range(&mut tx, 0..N);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(100), "evicted after {took:?}");
    drop(tx);
    assert_eq!(q.stats().evictions, 1);
    sub.sigcont();
    // Evicted at 0 and rejoined at the oldest safe position, N - (cap - 1).
    assert_eq!(done(&mut sub), (cap - 1, N - (cap - 1)));
    eprintln!("{test}: the publisher waited {took:?} for the stopped subscriber");
}

#[test]
fn an_overwrite_ring_laps_a_slow_subscriber_process_with_exact_counts() {
    dispatch();
    let test = "an_overwrite_ring_laps_a_slow_subscriber_process_with_exact_counts";
    let shm = Shm::new("bc-lap");
    let q = Broadcast::<Tick>::builder()
        .capacity(64)
        .overwrite()
        .create(shm.name())
        .unwrap();
    let mut tx = q.publisher().unwrap();
    let (mut sub, pos) = subscriber(test, shm.name(), "latest", &[("TICKS", "1".into())]);
    assert_eq!(pos, 0);
    const N: u64 = 2_000_000;
    for p in 0..N {
        match tx.try_publish(Tick::new(p)) {
            Ok(()) => {}
            Err(TryPushError::Full(_)) => panic!("an overwrite ring is never full"),
            Err(e) => panic!("{e:?}"),
        }
    }
    drop(tx);
    let (received, missed) = done(&mut sub);
    assert_eq!(received + missed, N);
    assert!(missed > 0, "the publisher never lapped the slow subscriber");
    assert!(q.stats().laps > 0);
    eprintln!("{test}: received {received}, missed {missed}, none torn");
}
