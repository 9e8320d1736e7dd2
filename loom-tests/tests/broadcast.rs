//! loom models of the real broadcast ring: lossless delivery to two
//! subscribers across a wrap, an overwrite lap where a torn read would be a
//! failure, a subscriber that dies while it holds the publisher back, a
//! joiner at `Oldest`, and a live subscriber evicted (`max_lag`) while it
//! copies.
#![cfg(shmqueue_loom)]

use std::time::Duration;

use loom::thread;
use loom_tests::{model_with_retries as model, push_retry};
use shmqueue::broadcast::{Broadcast, Start, Subscriber, TryRecvError};

/// Receive `n` items with try_recv, yielding while empty; any other error
/// is a failure of the model.
fn take(rx: &mut Subscriber<u64>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < n {
        match rx.try_recv() {
            Ok(v) => got.push(v),
            Err(TryRecvError::Empty) => thread::yield_now(),
            Err(e) => panic!("lossless subscriber got {e:?} after {got:?}"),
        }
    }
    got
}

fn publish_retry(tx: &mut shmqueue::broadcast::Publisher<u64>, v: u64) {
    push_retry(v, |v| tx.try_publish(v));
}

/// Lossless, capacity 1, one publisher and two subscribers, two items: the
/// second publish reuses the slot and must wait for both subscribers to
/// have read the first. Each subscriber gets 1, 2 in order (the
/// `bcast_no_gate` mutation overwrites unread items and is rejected). The
/// two subscribers are polled by one thread, in turn: their cursors still
/// race the publisher's scan, with a state space CI can afford.
#[test]
fn lossless_one_publisher_two_subscribers_with_wrap() {
    model(|| {
        let q = Broadcast::<u64>::builder()
            .capacity(1)
            .max_subscribers(2)
            .spin(0)
            .create_in_heap();
        let mut subs = [
            q.subscribe(Start::Latest).unwrap(),
            q.subscribe(Start::Latest).unwrap(),
        ];
        let mut tx = q.publisher().unwrap();
        let tp = thread::spawn(move || {
            for v in 1..=2 {
                publish_retry(&mut tx, v);
            }
        });
        let mut got = [Vec::new(), Vec::new()];
        while got.iter().any(|g| g.len() < 2) {
            for (rx, g) in subs.iter_mut().zip(&mut got) {
                if g.len() < 2 {
                    match rx.try_recv() {
                        Ok(v) => g.push(v),
                        Err(TryRecvError::Empty) => thread::yield_now(),
                        Err(e) => panic!("lossless subscriber got {e:?} after {g:?}"),
                    }
                }
            }
        }
        assert_eq!(got, [vec![1, 2], vec![1, 2]]);
        tp.join().unwrap();
    });
}

/// An item that knows whether it is whole: its halves are `p` and `!p`.
fn item(p: u64) -> [u64; 2] {
    [p, !p]
}

/// Overwrite, capacity 1: the publisher laps the subscriber while it reads.
/// Every item it keeps is whole and in order, and items received plus items
/// reported missed account for every position (the `bcast_no_recheck`
/// mutation keeps a torn copy and is rejected).
#[test]
fn overwrite_lap_never_yields_a_torn_item() {
    model(|| {
        let q = Broadcast::<[u64; 2]>::builder()
            .capacity(1)
            .max_subscribers(1)
            .overwrite()
            .spin(0)
            .create_in_heap();
        let mut rx = q.subscribe(Start::Latest).unwrap();
        let mut tx = q.publisher().unwrap();
        let tp = thread::spawn(move || {
            for p in 0..3 {
                tx.try_publish(item(p)).unwrap();
            }
            tx
        });
        let mut next = 0u64;
        let mut tries = 0;
        while next < 3 && tries < 4 {
            tries += 1;
            match rx.try_recv() {
                Ok(v) => {
                    assert_eq!(v, item(v[0]), "torn item {v:?}");
                    assert_eq!(v[0], next, "out of order");
                    next += 1;
                }
                Err(TryRecvError::Lagged { missed }) => next += missed,
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e:?}"),
            }
        }
        let _tx = tp.join().unwrap();
        // Whatever is left is readable now that the publisher is done.
        while next < 3 {
            match rx.try_recv() {
                Ok(v) => {
                    assert_eq!(v, item(next));
                    next += 1;
                }
                Err(TryRecvError::Lagged { missed }) => next += missed,
                Err(e) => panic!("after the publisher finished: {e:?} at {next}"),
            }
        }
        assert_eq!(next, 3);
    });
}

/// Lossless, capacity 1: subscriber A dies without reading (the kernel
/// releases its token, nothing else) while the publisher, held back by A's
/// cursor, waits to publish its second item. It must go on once A is dead,
/// must never evict B (alive and reading), and B gets both items (the
/// `bcast_evict_live` mutation cuts B loose too and is rejected).
#[test]
fn a_subscriber_dying_while_it_gates_the_publisher() {
    model(|| {
        let q = Broadcast::<u64>::builder()
            .capacity(1)
            .max_subscribers(2)
            .spin(0)
            .create_in_heap();
        let a = q.subscribe(Start::Latest).unwrap();
        let mut b = q.subscribe(Start::Latest).unwrap();
        let mut tx = q.publisher().unwrap();
        let tb = thread::spawn(move || {
            let first = take(&mut b, 1);
            a.kill();
            [first, take(&mut b, 1)].concat()
        });
        publish_retry(&mut tx, 1);
        publish_retry(&mut tx, 2);
        assert_eq!(tb.join().unwrap(), vec![1, 2]);
    });
}

/// Lossless, capacity 2: subscriber X reads from the start while S joins
/// at `Oldest` during the stream. Whatever S's start, it then gets every
/// item from there in order, never an eviction: its join (cursor, `joins`,
/// heavy fence, `head`) and the publisher's join check before every publish
/// form a Dekker pair (the `bcast_no_join_check` mutation, which rescans
/// only at the cached limit, lets the publisher overwrite S's first item
/// and is rejected).
#[test]
fn a_subscriber_joining_mid_stream_at_oldest_misses_nothing_after_its_start() {
    model(|| {
        let q = Broadcast::<u64>::builder()
            .capacity(2)
            .max_subscribers(2)
            .spin(0)
            .create_in_heap();
        let mut x = q.subscribe(Start::Latest).unwrap();
        let mut tx = q.publisher().unwrap();
        let tp = thread::spawn(move || {
            for v in 0..4 {
                publish_retry(&mut tx, v);
            }
        });
        // X reads two items: if the publisher scans after that, its limit
        // lets it write two more without looking again.
        assert_eq!(take(&mut x, 2), vec![0, 1]);
        let mut s = q.subscribe(Start::Oldest).unwrap();
        let start = s.position();
        let want: Vec<u64> = (start..4).collect();
        let mut got = Vec::new();
        let mut xs = vec![0, 1];
        while got.len() < want.len() || xs.len() < 4 {
            if got.len() < want.len() {
                match s.try_recv() {
                    Ok(v) => got.push(v),
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("joiner at {start} got {e:?} after {got:?}"),
                }
            }
            if xs.len() < 4 {
                match x.try_recv() {
                    Ok(v) => xs.push(v),
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        assert_eq!(got, want);
        assert_eq!(xs, vec![0, 1, 2, 3]);
        tp.join().unwrap();
    });
}

/// Lossless with `max_lag`, capacity 1: the publisher, held back by a live
/// subscriber, evicts it (under loom the stall check looks at once, and a
/// 1 ns lag has always passed) and overwrites the slot that subscriber may
/// be copying from at that moment. This is the one lossless case where a
/// live subscriber can be lapped, and the `writing` mark is what tells it:
/// the subscriber must get `Evicted` with the exact count, never a torn
/// item. Every item kept is whole and in order, and items kept plus items
/// missed account for every position.
#[test]
fn an_evicted_subscriber_never_keeps_a_torn_item() {
    model(|| {
        let q = Broadcast::<[u64; 2]>::builder()
            .capacity(1)
            .max_subscribers(1)
            .max_lag(Duration::from_nanos(1))
            .spin(0)
            .create_in_heap();
        let mut rx = q.subscribe(Start::Latest).unwrap();
        let mut tx = q.publisher().unwrap();
        let tp = thread::spawn(move || {
            for p in 0..2 {
                push_retry(item(p), |v| tx.try_publish(v));
            }
            tx
        });
        let mut next = 0u64;
        let mut tries = 0;
        let step = |rx: &mut Subscriber<[u64; 2]>, next: &mut u64| match rx.try_recv() {
            Ok(v) => {
                assert_eq!(v, item(v[0]), "torn item {v:?}");
                assert_eq!(v[0], *next, "out of order");
                *next += 1;
                true
            }
            Err(TryRecvError::Evicted { missed }) => {
                *next += missed;
                true
            }
            Err(TryRecvError::Empty) => false,
            Err(e) => panic!("{e:?} at {next}"),
        };
        while next < 2 && tries < 3 {
            tries += 1;
            if !step(&mut rx, &mut next) {
                thread::yield_now();
            }
        }
        let _tx = tp.join().unwrap();
        while next < 2 {
            assert!(
                step(&mut rx, &mut next),
                "empty at {next} after the publisher finished"
            );
        }
        assert_eq!(next, 2);
    });
}
