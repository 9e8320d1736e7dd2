//! loom models of the real MPMC queue: exactly-once delivery with several
//! producers and consumers, position wrap, and recovery of a hole left by a
//! producer that dies after winning a position.
#![cfg(shmqueue_loom)]

use loom::thread;
use loom_tests::{model_with_retries as model, push_retry};
use shmqueue::{Mpmc, TryPopError};

fn queue(capacity: usize) -> Mpmc<u64> {
    Mpmc::<u64>::builder()
        .capacity(capacity)
        .max_producers(2)
        .max_consumers(2)
        .spin(0)
        .create_in_heap()
}

/// Pop with try_pop, yielding while empty, until `n` items or disconnection.
fn drain(rx: &mut shmqueue::mpmc::Consumer<u64>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < n {
        match rx.try_pop() {
            Ok(v) => got.push(v),
            Err(TryPopError::Empty) => thread::yield_now(),
            Err(TryPopError::Disconnected) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    got
}

fn push(tx: &mut shmqueue::mpmc::Producer<u64>, v: u64) {
    push_retry(v, |v| tx.try_push(v));
}

/// 2 producers x 1 consumer, capacity 2: both items arrive exactly once.
#[test]
fn two_producers_one_consumer() {
    model(|| {
        let q = queue(2);
        let mut rx = q.consumer().unwrap();
        let ts: Vec<_> = (0..2u64)
            .map(|p| {
                let mut tx = q.producer().unwrap();
                thread::spawn(move || push(&mut tx, 10 + p))
            })
            .collect();
        let mut got = drain(&mut rx, 2);
        for t in ts {
            t.join().unwrap();
        }
        got.sort_unstable();
        assert_eq!(got, vec![10, 11]);
    });
}

/// Capacity 2, three items: positions wrap, the producer blocks on a full
/// queue and the consumer on an empty one.
#[test]
fn positions_wrap_with_blocking_calls() {
    model(|| {
        let q = queue(2);
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let tp = thread::spawn(move || {
            for v in 1..=3 {
                tx.push(v).unwrap();
            }
        });
        for v in 1..=3 {
            assert_eq!(rx.pop(), Ok(v));
        }
        tp.join().unwrap();
    });
}

/// 1 producer x 2 consumers: each of two items goes to exactly one consumer.
#[test]
fn one_producer_two_consumers() {
    model(|| {
        let q = queue(2);
        let mut tx = q.producer().unwrap();
        let mut a = q.consumer().unwrap();
        let mut b = q.consumer().unwrap();
        let ta = thread::spawn(move || a.pop().unwrap());
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        let mine = b.pop().unwrap();
        let theirs = ta.join().unwrap();
        let mut got = [mine, theirs];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// A producer that dies right after winning a position leaves a hole; the
/// consumer must not skip it while the claimant lives, must skip it exactly
/// once after, and must still deliver the other producer's item once.
#[test]
fn hole_of_a_dead_producer_is_skipped_once() {
    model(|| {
        let q = queue(2);
        let mut rx = q.consumer().unwrap();
        let mut dying = q.producer().unwrap();
        let mut live = q.producer().unwrap();
        let td = thread::spawn(move || {
            dying.die_after_next_claim();
            assert!(dying.try_push(7).is_err());
            drop(dying); // the "kernel" releases its token; nothing else
        });
        let tl = thread::spawn(move || {
            push(&mut live, 8);
            drop(live);
        });
        // Until both producers are gone, drain what can be drained.
        let got = drain(&mut rx, 1);
        assert_eq!(got, vec![8], "the live producer's item, once");
        td.join().unwrap();
        tl.join().unwrap();
        // Both gone: the hole (before or after 8) is skipped, then Disconnected.
        assert_eq!(drain(&mut rx, 1), Vec::<u64>::new());
        assert_eq!(q.stats().holes_skipped, 1);
    });
}

/// 2 producers x 2 consumers at capacity 2: two threads, each with its own
/// producer and consumer, push one item each and pop one item each. The
/// producers race on `head` and the consumers on `tail`; every item goes to
/// exactly one consumer. (Four threads, one endpoint each, is the same race
/// with a state space too large for CI.)
#[test]
fn two_producers_two_consumers() {
    model(|| {
        let q = queue(2);
        let mut ends: Vec<_> = (0..2)
            .map(|_| (q.producer().unwrap(), q.consumer().unwrap()))
            .collect();
        let (mut tx, mut rx) = ends.pop().unwrap();
        let t = thread::spawn(move || {
            tx.push(21).unwrap();
            rx.pop().unwrap()
        });
        let (mut tx, mut rx) = ends.pop().unwrap();
        tx.push(20).unwrap();
        let mine = rx.pop().unwrap();
        let mut got = [mine, t.join().unwrap()];
        got.sort_unstable();
        assert_eq!(got, [20, 21]);
    });
}

/// Capacity 1, three items through one slot: every push after the first
/// waits for the consumer to free the slot, every position is a new lap.
/// With Vyukov's p / p + 1 sequences "published for p" equals "free for
/// p + 1" here, and a producer overwrites an unconsumed item (the
/// `vyukov_seq` mutation; loom-tests/run.sh shows it rejected).
#[test]
fn capacity_one_laps_every_item() {
    model(|| {
        let q = queue(1);
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let tp = thread::spawn(move || {
            for v in 1..=3 {
                push(&mut tx, v);
            }
        });
        assert_eq!(drain(&mut rx, 3), vec![1, 2, 3]);
        tp.join().unwrap();
    });
}

/// Capacity 1, one producer and two consumers racing for two items: each
/// goes to exactly one of them (the model that first showed the collision).
#[test]
fn capacity_one_two_consumers() {
    model(|| {
        let q = queue(1);
        let mut tx = q.producer().unwrap();
        let mut a = q.consumer().unwrap();
        let mut b = q.consumer().unwrap();
        let ta = thread::spawn(move || drain(&mut a, 1));
        push(&mut tx, 1);
        push(&mut tx, 2);
        let mut got = drain(&mut b, 1);
        got.extend(ta.join().unwrap());
        got.sort_unstable();
        assert_eq!(got, vec![1, 2]);
    });
}
