//! loom models of the real SPSC ring and waiting protocol.
//!
//! Run with: `RUSTFLAGS="--cfg shmqueue_loom" cargo test --release -p loom-tests`
//! (see README). The ring lives in a heap-allocated header under loom; the
//! algorithm, the event-count protocol and the fences are the library's own
//! code, compiled against loom's atomics, `UnsafeCell`s and a Mutex+Condvar
//! model of the futex (compare-and-sleep atomic with respect to wake, no
//! timeouts: a lost wake-up is a deadlock that loom reports).
#![cfg(shmqueue_loom)]

use loom::thread;
use loom_tests::model;
use shmqueue::{PopError, PushError, Spsc, TryPopError, TryPushError};

fn ring(capacity: usize) -> Spsc<u64> {
    Spsc::<u64>::builder()
        .capacity(capacity)
        .spin(0)
        .create_in_heap()
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

/// Zero-copy windows through a capacity-2 ring (3 slots): the producer
/// reserves blocking windows of up to 2, writes them in place and commits
/// them; the consumer reads through blocking read windows and releases them.
/// Four items make the windows wrap the end of the array. loom's per-slot
/// cells check that no slot is written while read.
#[test]
fn windows_commit_and_release_across_wrap() {
    model(|| {
        let q = ring(2);
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let t = thread::spawn(move || {
            let mut next = 0u64;
            while next < 4 {
                let mut w = tx.write_window(2).unwrap();
                let n = w.len().min(4 - next as usize);
                w.fill_with(|i| next + i as u64);
                w.commit(n);
                next += n as u64;
            }
        });
        let mut expected = 0u64;
        while expected < 4 {
            let r = rx.read_window(2).unwrap();
            for (i, v) in r.iter().enumerate() {
                assert_eq!(v, expected + i as u64);
            }
            expected += r.len() as u64;
            r.release_all();
        }
        t.join().unwrap();
    });
}

/// A window that is scribbled on and dropped publishes nothing, a partial
/// commit publishes exactly its prefix, and the next window reuses the
/// uncommitted slot: the consumer (releasing one item per read window, so
/// the rest comes again) sees 0, 1 and never the scribble (99), and no slot
/// is read while it is being written.
#[test]
fn dropped_and_partial_windows_publish_only_commits() {
    model(|| {
        let q = ring(2);
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let t = thread::spawn(move || {
            let mut w = tx.write_window(2).unwrap();
            w.fill_with(|_| 99);
            drop(w);
            let mut w = tx.write_window(2).unwrap();
            w.fill_with(|i| i as u64);
            w.commit(1);
            let mut w = tx.write_window(2).unwrap();
            w.write(0, 1);
            w.commit(1);
        });
        // Release one item per window: the rest of a window comes again.
        let mut got = Vec::new();
        while got.len() < 2 {
            let r = rx.read_window(2).unwrap();
            got.push(r.get(0));
            r.release(1);
        }
        assert_eq!(got, [0, 1]);
        t.join().unwrap();
    });
}
