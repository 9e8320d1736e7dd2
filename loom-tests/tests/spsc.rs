//! loom models of the real SPSC ring and waiting protocol.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test --release -p loom-tests`
//! (see README). The ring lives in a heap-allocated header under loom; the
//! algorithm, the event-count protocol and the fences are the library's own
//! code, compiled against loom's atomics, `UnsafeCell`s and a Mutex+Condvar
//! model of the futex (compare-and-sleep atomic with respect to wake, no
//! timeouts: a lost wake-up is a deadlock that loom reports).
#![cfg(loom)]

use loom::thread;
use shmqueue::{PopError, PushError, Spsc, TryPopError, TryPushError};

fn ring(capacity: usize) -> Spsc<u64> {
    Spsc::<u64>::builder()
        .capacity(capacity)
        .spin(0)
        .create_in_heap()
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// Blocking push/pop through a 1-item ring: B = 2 slots, 3 items wrap the
/// indices one and a half times; every hand-off needs a sleep and a wake.
#[test]
fn capacity_one_blocking_wraps() {
    model(|| {
        let q = ring(1);
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let t = thread::spawn(move || {
            for i in 0..3 {
                tx.push(i).unwrap();
            }
        });
        for i in 0..3 {
            assert_eq!(rx.pop(), Ok(i));
        }
        t.join().unwrap();
    });
}

/// Capacity 2: full and empty edges with non-blocking calls, the cached
/// index refresh on both sides, and several wrap-arounds.
#[test]
fn capacity_two_try_edges_and_cache_refresh() {
    model(|| {
        let q = ring(2);
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let t = thread::spawn(move || {
            let mut next = 0u64;
            while next < 4 {
                match tx.try_push(next) {
                    Ok(()) => next += 1,
                    Err(TryPushError::Full(_)) => thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
        let mut expected = 0u64;
        while expected < 4 {
            match rx.try_pop() {
                Ok(v) => {
                    assert_eq!(v, expected);
                    expected += 1;
                }
                Err(TryPopError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e:?}"),
            }
        }
        t.join().unwrap();
    });
}

/// A producer that pushes and leaves, racing a consumer blocked in pop:
/// the consumer gets the item, then Disconnected, never a hang.
#[test]
fn producer_drop_races_blocked_pop() {
    model(|| {
        let q = ring(1);
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let t = thread::spawn(move || {
            tx.push(7).unwrap();
            drop(tx);
        });
        assert_eq!(rx.pop(), Ok(7));
        assert_eq!(rx.pop(), Err(PopError::Disconnected));
        t.join().unwrap();
    });
}

/// A consumer that leaves while the producer pushes into a full ring: the
/// push either completes (the consumer took an item first) or hands the
/// value back; it never hangs and never loses the value.
#[test]
fn consumer_drop_races_blocked_push() {
    model(|| {
        let q = ring(1);
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        tx.push(1).unwrap();
        let t = thread::spawn(move || {
            let got = rx.try_pop();
            drop(rx);
            got
        });
        match tx.push(2) {
            Ok(()) => {}
            Err(PushError::Disconnected(v)) => assert_eq!(v, 2),
            Err(e) => panic!("{e:?}"),
        }
        assert_eq!(t.join().unwrap(), Ok(1));
    });
}
