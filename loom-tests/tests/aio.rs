//! loom models of the async waiting path (feature `tokio`'s code, compiled
//! in under `--cfg shmqueue_loom`): an awaiting endpoint's arm, fence,
//! re-check and registration with the waiter thread, against a notifier's
//! publish, fence and `armed` swap.
//!
//! The waiter thread is the library's own loop (`aio/reactor.rs`), run in
//! a loom thread; its `futex_waitv` is modelled as one compare-and-sleep
//! over every listed word under the futex model's mutex, which the
//! notifiers' wake also takes (atomic with respect to wake, as in the
//! kernel). The task is `loom::future::block_on`'s, whose waker unparks
//! it. No timeouts: a lost wake-up is a deadlock that loom reports.
#![cfg(shmqueue_loom)]

use loom::thread;
use loom_tests::model;
use shmqueue::{PopError, Spsc};

fn ring(capacity: usize) -> Spsc<u64> {
    Spsc::<u64>::builder()
        .capacity(capacity)
        .spin(0)
        .create_in_heap()
}

/// Stop the model's waiter thread and wait for it.
fn stop(waiter: thread::JoinHandle<()>) {
    shmqueue::aio::model_stop_waiter();
    waiter.join().unwrap();
}

/// An awaiting pop against a sync push from another thread: the pop sees
/// the item at its first attempt, at the re-check after arming, or is
/// woken through the waiter thread; never lost. The producer stays
/// attached until the pop is done, so no disconnect wake can mask a lost
/// publish wake.
#[test]
fn pop_async_against_push() {
    model(|| {
        let q = ring(1);
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let waiter = thread::spawn(shmqueue::aio::model_run_waiter);
        let p = thread::spawn(move || {
            tx.push(7).unwrap();
            tx
        });
        assert_eq!(loom::future::block_on(rx.pop_async()), Ok(7));
        let tx = p.join().unwrap();
        stop(waiter);
        drop(tx);
    });
}

/// An awaiting push into a full ring against a sync pop that frees the
/// slot; then the consumer leaves and a second awaiting push is told
/// Disconnected (the detach wake reaches an async waiter too).
#[test]
fn push_async_against_pop_then_disconnect() {
    model(|| {
        let q = ring(1);
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        tx.push(1).unwrap();
        let waiter = thread::spawn(shmqueue::aio::model_run_waiter);
        let c = thread::spawn(move || {
            assert_eq!(rx.pop(), Ok(1));
            assert_eq!(rx.pop(), Ok(2));
        });
        loom::future::block_on(tx.push_async(2)).unwrap();
        c.join().unwrap();
        match loom::future::block_on(tx.push_async(3)) {
            Err(shmqueue::PushError::Disconnected(3)) => {}
            other => panic!("{other:?}"),
        }
        stop(waiter);
    });
}

/// The producer's drop (detach, then notify) wakes an awaiting pop, which
/// drains the item and then reports Disconnected.
#[test]
fn producer_drop_wakes_pop_async() {
    model(|| {
        let q = ring(1);
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let waiter = thread::spawn(shmqueue::aio::model_run_waiter);
        let p = thread::spawn(move || {
            tx.push(5).unwrap();
            drop(tx);
        });
        assert_eq!(loom::future::block_on(rx.pop_async()), Ok(5));
        assert_eq!(
            loom::future::block_on(rx.pop_async()),
            Err(PopError::Disconnected)
        );
        p.join().unwrap();
        stop(waiter);
    });
}

// The broadcast and byte-ring async forms (phase 2) add no ordering of
// their own: the same `AsyncWait` around the sync calls' attempts (see
// docs/DESIGN.md, "Async waiting"). These models check that the reuse
// holds on their events: a subscriber woken by a publish, a lossless
// publisher woken by a subscriber's read, a byte-ring consumer woken by a
// send.

use shmqueue::broadcast::{Broadcast, Start};

/// An awaiting subscriber against a sync publish from another thread
/// (`async_no_recheck` is rejected here too: loom-tests/run.sh).
#[test]
fn broadcast_recv_async_against_publish() {
    model(|| {
        let q = Broadcast::<u64>::builder()
            .capacity(1)
            .max_subscribers(1)
            .spin(0)
            .create_in_heap();
        let mut rx = q.subscribe(Start::Latest).unwrap();
        let mut tx = q.publisher().unwrap();
        let waiter = thread::spawn(shmqueue::aio::model_run_waiter);
        let p = thread::spawn(move || {
            tx.publish(7).unwrap();
            tx
        });
        assert_eq!(loom::future::block_on(rx.recv_async()), Ok(7));
        let tx = p.join().unwrap();
        stop(waiter);
        drop(tx);
    });
}

/// An awaiting lossless publish into a full ring against a sync receive
/// that frees the slot.
#[test]
fn broadcast_publish_async_against_recv() {
    model(|| {
        let q = Broadcast::<u64>::builder()
            .capacity(1)
            .max_subscribers(1)
            .spin(0)
            .create_in_heap();
        let mut rx = q.subscribe(Start::Latest).unwrap();
        let mut tx = q.publisher().unwrap();
        tx.try_publish(1).unwrap();
        let waiter = thread::spawn(shmqueue::aio::model_run_waiter);
        let c = thread::spawn(move || {
            assert_eq!(rx.recv(), Ok(1));
            rx
        });
        loom::future::block_on(tx.publish_async(2)).unwrap();
        let mut rx = c.join().unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        stop(waiter);
        drop(tx);
    });
}

/// An awaiting byte-ring receive against a sync send.
#[test]
fn bytes_recv_async_against_send() {
    model(|| {
        let q = shmqueue::ByteRing::builder()
            .capacity(64)
            .spin(0)
            .create_in_heap();
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let waiter = thread::spawn(shmqueue::aio::model_run_waiter);
        let p = thread::spawn(move || {
            tx.send(b"hi").unwrap();
            tx
        });
        let mut buf = Vec::new();
        assert_eq!(loom::future::block_on(rx.recv_async(&mut buf)), Ok(()));
        assert_eq!(buf, b"hi");
        let tx = p.join().unwrap();
        stop(waiter);
        drop(tx);
    });
}
