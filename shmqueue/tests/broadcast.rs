//! Broadcast rings within one process: start modes, both policies, exact
//! lap and eviction counts, the registry and role limits, takeover after a
//! dead publisher, and hostile writes into the segment.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::{Shm, Tick};
use proptest::prelude::*;
use shmqueue::broadcast::{Broadcast, Policy, RecvError, Start, TryRecvError};
use shmqueue::{Error, PushError, QueueKind, Role, Spsc, TryPushError};

fn lossless(shm: &Shm, cap: usize) -> Broadcast<u64> {
    Broadcast::<u64>::builder()
        .capacity(cap)
        .max_subscribers(4)
        .create(shm.name())
        .unwrap()
}

#[test]
fn every_subscriber_sees_every_item_in_order() {
    let shm = Shm::new("bc-all");
    let q = lossless(&shm, 8);
    let mut tx = q.publisher().unwrap();
    let mut subs: Vec<_> = (0..3)
        .map(|_| q.subscribe(Start::Latest).unwrap())
        .collect();
    for v in 0..5u64 {
        tx.try_publish(v).unwrap();
    }
    for rx in &mut subs {
        let got: Vec<u64> = (0..5).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.position(), 5);
    }
}

#[test]
fn lossless_full_ring_waits_for_the_slowest_subscriber() {
    let shm = Shm::new("bc-full");
    let q = lossless(&shm, 4);
    let mut tx = q.publisher().unwrap();
    let mut fast = q.subscribe(Start::Latest).unwrap();
    let mut slow = q.subscribe(Start::Latest).unwrap();
    for v in 0..4u64 {
        tx.try_publish(v).unwrap();
        assert_eq!(fast.try_recv().unwrap(), v);
    }
    // The slow one has read nothing: a whole ring behind.
    assert!(matches!(tx.try_publish(4), Err(TryPushError::Full(4))));
    assert!(matches!(
        tx.publish_timeout(4, Duration::from_millis(20)),
        Err(PushError::Timeout(4))
    ));
    assert_eq!(slow.try_recv().unwrap(), 0);
    tx.try_publish(4).unwrap();
    assert!(tx.try_publish(5).is_err());
    // Dropping the slow subscriber frees the publisher up to the fast
    // one's limit (its cursor, 4, plus the capacity).
    drop(slow);
    for v in 5..8u64 {
        tx.try_publish(v).unwrap();
    }
    assert!(tx.try_publish(8).is_err());
    let got: Vec<u64> = (0..4).map(|_| fast.try_recv().unwrap()).collect();
    assert_eq!(got, vec![4, 5, 6, 7]);
}

#[test]
fn a_lossless_ring_without_subscribers_keeps_the_newest_items() {
    let shm = Shm::new("bc-nosub");
    let q = lossless(&shm, 8);
    let mut tx = q.publisher().unwrap();
    for v in 0..100u64 {
        tx.try_publish(v).unwrap();
    }
    let mut rx = q.subscribe(Start::Oldest).unwrap();
    assert_eq!(rx.position(), 93, "the newest capacity - 1");
    let got: Vec<u64> = (0..7).map(|_| rx.try_recv().unwrap()).collect();
    assert_eq!(got, (93..100).collect::<Vec<_>>());
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn start_modes_latest_oldest_and_a_sequence_number() {
    let shm = Shm::new("bc-start");
    let q = lossless(&shm, 16);
    let mut tx = q.publisher().unwrap();
    for v in 0..10u64 {
        tx.try_publish(v * 10).unwrap();
    }
    let mut latest = q.subscribe(Start::Latest).unwrap();
    let mut oldest = q.subscribe(Start::Oldest).unwrap();
    let mut at = q.subscribe(Start::At(7)).unwrap();
    tx.try_publish(100).unwrap();
    assert_eq!(latest.try_recv().unwrap(), 100);
    assert_eq!(oldest.try_recv().unwrap(), 0);
    assert_eq!(at.try_recv().unwrap(), 70);
    assert_eq!(at.position(), 8);
    // Position 11 is the next one: allowed; 12 is the future: refused.
    assert!(q.subscribe(Start::At(11)).is_ok());
    match q.subscribe(Start::At(12)) {
        Err(Error::StartGone {
            requested: 12,
            oldest: 0,
            next: 11,
        }) => {}
        other => panic!("{other:?}"),
    }
    for v in 11..40u64 {
        // Keep everyone reading so the ring moves on.
        tx.try_publish(v).unwrap();
        for rx in [&mut latest, &mut oldest, &mut at] {
            while rx.try_recv().is_ok() {}
        }
    }
    let e = q.subscribe(Start::At(3)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::StartGone {
                requested: 3,
                oldest: 25,
                next: 40
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("25..40"), "{e}");
}

#[test]
fn one_publisher_at_a_time_and_a_bounded_registry() {
    let shm = Shm::new("bc-roles");
    let q = Broadcast::<u64>::builder()
        .capacity(4)
        .max_subscribers(2)
        .create(shm.name())
        .unwrap();
    let tx = q.publisher().unwrap();
    assert!(matches!(
        q.publisher(),
        Err(Error::RoleTaken {
            role: Role::Producer,
            ..
        })
    ));
    drop(tx);
    let _tx = q.publisher().unwrap();
    let a = q.subscribe(Start::Latest).unwrap();
    let _b = q.subscribe(Start::Latest).unwrap();
    assert!(matches!(
        q.subscribe(Start::Latest),
        Err(Error::RegistryFull {
            role: Role::Consumer,
            limit: 2
        })
    ));
    drop(a);
    q.subscribe(Start::Latest).unwrap();
}

#[test]
fn opening_as_another_kind_or_type_is_incompatible() {
    let shm = Shm::new("bc-kind");
    let _q = lossless(&shm, 4);
    assert!(matches!(
        Spsc::<u64>::open(shm.name()),
        Err(Error::Incompatible {
            field: "queue kind",
            ..
        })
    ));
    assert!(matches!(
        Broadcast::<u32>::open(shm.name()),
        Err(Error::Incompatible {
            field: "element size",
            ..
        })
    ));
    assert!(matches!(
        Broadcast::<u64>::builder().schema(9).open(shm.name()),
        Err(Error::Incompatible {
            field: "schema tag",
            ..
        })
    ));
    let info = shmqueue::inspect(shm.name()).unwrap();
    assert_eq!(info.queue_kind(), Some(QueueKind::Broadcast));
    let spsc = Shm::new("bc-kind-spsc");
    let _s = Spsc::<u64>::create(spsc.name(), 4).unwrap();
    assert!(matches!(
        Broadcast::<u64>::open(spsc.name()),
        Err(Error::Incompatible {
            field: "queue kind",
            ..
        })
    ));
}

#[test]
fn overwrite_reports_exactly_how_many_were_missed() {
    let shm = Shm::new("bc-lap");
    let q = Broadcast::<Tick>::builder()
        .capacity(8)
        .overwrite()
        .create(shm.name())
        .unwrap();
    assert_eq!(q.policy(), Policy::Overwrite);
    let mut tx = q.publisher().unwrap();
    let mut rx = q.subscribe(Start::Latest).unwrap();
    for p in 0..3 {
        tx.try_publish(Tick::new(p)).unwrap();
    }
    assert_eq!(rx.try_recv().unwrap().pos, 0);
    // 30 more: positions 1..33 published, the ring keeps 25..33.
    for p in 3..33 {
        tx.try_publish(Tick::new(p)).unwrap();
    }
    // The oldest safe start with `next` = 33 is 26 (25's slot is the one
    // the next publish overwrites), so 1..26 are missed: 25 items.
    assert_eq!(rx.try_recv(), Err(TryRecvError::Lagged { missed: 25 }));
    let t = rx.try_recv().unwrap();
    assert!(t.valid());
    assert_eq!(t.pos, 26);
    assert_eq!(q.stats().laps, 1);
}

#[test]
fn overwrite_never_returns_a_torn_item_under_a_racing_publisher() {
    let shm = Shm::new("bc-torn");
    let q = Broadcast::<Tick>::builder()
        .capacity(4)
        .overwrite()
        .create(shm.name())
        .unwrap();
    let mut rx = q.subscribe(Start::Latest).unwrap();
    let mut tx = q.publisher().unwrap();
    const N: u64 = 300_000;
    let t = std::thread::spawn(move || {
        for p in 0..N {
            tx.try_publish(Tick::new(p)).unwrap();
        }
    });
    let (mut expect, mut got, mut missed) = (0u64, 0u64, 0u64);
    let end = Instant::now() + common::DEADLINE;
    while expect < N {
        assert!(Instant::now() < end, "stuck at {expect}");
        match rx.try_recv() {
            Ok(tick) => {
                assert!(tick.valid(), "torn item {tick:?}");
                assert_eq!(tick.pos, expect);
                expect += 1;
                got += 1;
            }
            Err(TryRecvError::Lagged { missed: m }) => {
                expect += m;
                missed += m;
            }
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
            Err(e) => panic!("{e:?}"),
        }
    }
    t.join().unwrap();
    assert_eq!(got + missed, N);
    eprintln!("received {got}, missed {missed}");
}

#[test]
fn max_lag_evicts_a_stalled_subscriber_which_then_rejoins() {
    let shm = Shm::new("bc-evict");
    let q = Broadcast::<u64>::builder()
        .capacity(4)
        .max_lag(Duration::from_millis(30))
        .create(shm.name())
        .unwrap();
    let mut tx = q.publisher().unwrap();
    let mut stalled = q.subscribe(Start::Latest).unwrap();
    let mut live = q.subscribe(Start::Latest).unwrap();
    let start = Instant::now();
    for v in 0..10u64 {
        tx.publish_timeout(v, common::DEADLINE).unwrap();
        assert_eq!(live.try_recv().unwrap(), v);
    }
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(q.stats().evictions, 1);
    assert!(q.stats().subscribers.iter().any(|s| s.evicted));
    // Evicted at cursor 0; `next` is 10, so it rejoins at 7: 7 missed.
    assert_eq!(stalled.try_recv(), Err(TryRecvError::Evicted { missed: 7 }));
    assert_eq!(stalled.try_recv().unwrap(), 7);
    // It gates again: three more fill the ring behind it.
    assert_eq!(stalled.try_recv().unwrap(), 8);
    assert_eq!(stalled.try_recv().unwrap(), 9);
    for v in 10..14u64 {
        tx.try_publish(v).unwrap();
        assert_eq!(live.try_recv().unwrap(), v);
    }
    assert!(matches!(tx.try_publish(14), Err(TryPushError::Full(14))));
}

#[test]
fn without_max_lag_a_live_subscriber_is_never_evicted() {
    let shm = Shm::new("bc-noevict");
    let q = lossless(&shm, 2);
    let mut tx = q.publisher().unwrap();
    let mut rx = q.subscribe(Start::Latest).unwrap();
    tx.try_publish(1).unwrap();
    tx.try_publish(2).unwrap();
    assert!(matches!(
        tx.publish_timeout(3, Duration::from_millis(100)),
        Err(PushError::Timeout(3))
    ));
    assert_eq!(q.stats().evictions, 0);
    assert_eq!(rx.try_recv().unwrap(), 1);
}

#[test]
fn blocking_recv_wakes_on_publish_and_disconnects_when_the_publisher_goes() {
    let shm = Shm::new("bc-block");
    let q = lossless(&shm, 64);
    let mut rx = q.subscribe(Start::Latest).unwrap();
    let mut tx = q.publisher().unwrap();
    let t = std::thread::spawn(move || {
        for v in 0..1000u64 {
            tx.publish_timeout(v, common::DEADLINE).unwrap();
        }
    });
    for v in 0..1000u64 {
        assert_eq!(rx.recv_timeout(common::DEADLINE).unwrap(), v);
    }
    t.join().unwrap();
    assert_eq!(
        rx.recv_timeout(common::DEADLINE),
        Err(RecvError::Disconnected)
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(5)),
        Err(RecvError::Disconnected)
    );
    // A new publisher resumes at the position; the subscriber goes on.
    let mut tx = q.publisher().unwrap();
    assert_eq!(tx.position(), 1000);
    tx.publish(1000).unwrap();
    assert_eq!(rx.try_recv().unwrap(), 1000);
}

#[test]
fn slices_publish_and_receive_in_order() {
    let shm = Shm::new("bc-slice");
    let q = lossless(&shm, 8);
    let mut tx = q.publisher().unwrap();
    let mut rx = q.subscribe(Start::Latest).unwrap();
    let items: Vec<u64> = (0..20).collect();
    assert_eq!(tx.publish_slice(&items).unwrap(), 8);
    let mut out = [0u64; 5];
    assert_eq!(rx.recv_slice(&mut out).unwrap(), 5);
    assert_eq!(out, [0, 1, 2, 3, 4]);
    let t = std::thread::spawn(move || {
        tx.publish_all_timeout(&items[8..], common::DEADLINE)
            .unwrap();
    });
    let mut got = vec![5, 6, 7];
    got.clear();
    while got.len() < 15 {
        match rx.recv_timeout(common::DEADLINE) {
            Ok(v) => got.push(v),
            Err(e) => panic!("{e:?}"),
        }
    }
    t.join().unwrap();
    assert_eq!(got, (5..20).collect::<Vec<_>>());
}

#[test]
fn stats_show_the_publisher_each_subscriber_and_its_lag() {
    let shm = Shm::new("bc-stats");
    let q = lossless(&shm, 8);
    let mut tx = q.publisher().unwrap();
    let mut a = q.subscribe(Start::Latest).unwrap();
    let _b = q.subscribe(Start::Latest).unwrap();
    for v in 0..5 {
        tx.try_publish(v).unwrap();
    }
    a.try_recv().unwrap();
    let s = q.stats();
    assert_eq!(s.published, 5);
    assert_eq!(s.publisher, Some((std::process::id(), true)));
    let mut lags: Vec<u64> = s.subscribers.iter().map(|s| s.lag).collect();
    lags.sort();
    assert_eq!(lags, vec![4, 5]);
    assert!(s.subscribers.iter().all(|s| s.alive && !s.evicted));
    assert_eq!(s.policy, Policy::Lossless);
}

// ---------------------------------------------------------------------------
// Hostile writes
// ---------------------------------------------------------------------------

const HEAD: u64 = 128;
const JOINS: u64 = 384 + 28;
const REGISTRY: u64 = 512;
const CAP: usize = 4;
const STRIDE: u64 = 16;

fn poke(name: &str, offset: u64, value: u64, width: usize) {
    let f = OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{name}"))
        .unwrap();
    f.write_all_at(&value.to_le_bytes()[..width], offset)
        .unwrap();
}

fn edge() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..16,
        Just(1u64 << 61),
        Just((1u64 << 61) + 1),
        Just(1u64 << 62),
        Just(1u64 << 63),
        (0u64..16).prop_map(|k| u64::MAX - k),
        any::<u64>(),
    ]
}

/// Where a hostile write lands.
#[derive(Clone, Debug)]
enum Target {
    Head,
    Joins,
    /// Entry `e`'s state, pid, cursor or mark (0..=3).
    Entry(u64, u64),
    /// Slot `i`'s sequence word or value.
    Slot(u64, bool),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::Head),
        Just(Target::Joins),
        (0u64..3, 0u64..4).prop_map(|(e, f)| Target::Entry(e, f)),
        (0u64..CAP as u64, any::<bool>()).prop_map(|(i, v)| Target::Slot(i, v)),
    ]
}

fn hit(name: &str, t: &Target, v: u64) {
    let slots = std::fs::metadata(format!("/dev/shm{name}")).unwrap().len() - CAP as u64 * STRIDE;
    match *t {
        Target::Head => poke(name, HEAD, v, 8),
        Target::Joins => poke(name, JOINS, v, 4),
        Target::Entry(e, f) => {
            let (off, width) = [(0, 4), (4, 4), (8, 8), (16, 8)][f as usize];
            poke(name, REGISTRY + 128 * e + off, v, width)
        }
        Target::Slot(i, value) => poke(name, slots + STRIDE * i + if value { 8 } else { 0 }, v, 8),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Random writes into the position, join counter, registry and slot
    /// sequences of a live ring, of either policy: every call returns
    /// promptly with an item or a typed error.
    #[test]
    fn hostile_writes_give_typed_errors_never_a_panic_or_hang(
        overwrite in any::<bool>(),
        writes in prop::collection::vec((target(), edge()), 1..6),
    ) {
        let shm = Shm::new("bc-hostile");
        let b = Broadcast::<u64>::builder().capacity(CAP).max_subscribers(2).spin(2);
        let b = if overwrite { b.overwrite() } else { b };
        let q = b.create(shm.name()).unwrap();
        let mut tx = q.publisher().unwrap();
        let mut rx = q.subscribe(Start::Latest).unwrap();
        tx.try_publish(1).unwrap();
        for (t, v) in &writes {
            hit(shm.name(), t, *v);
        }
        let prompt = Duration::from_secs(5);
        let started = Instant::now();
        for v in 0..6u64 {
            let _ = tx.try_publish(v);
            let _ = tx.publish_timeout(v, Duration::from_millis(2));
            let _ = rx.try_recv();
            let _ = rx.recv_timeout(Duration::from_millis(2));
            let mut out = [0u64; 3];
            let _ = rx.recv_slice(&mut out);
        }
        let _ = q.stats();
        let _ = q.subscribe(Start::Oldest);
        let _ = q.subscribe(Start::At(3));
        let _ = shmqueue::inspect(shm.name());
        prop_assert!(started.elapsed() < prompt, "took {:?}", started.elapsed());
    }
}
