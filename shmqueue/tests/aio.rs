//! Async endpoints (feature `tokio`) in tokio runtimes, against sync peers
//! in other processes (this test binary re-executed, see tests/common) and
//! in this one. Run with `cargo test -p shmqueue --features tokio --test aio`.
#![cfg(feature = "tokio")]

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::time::{Duration, Instant};

use common::*;
#[allow(unused_imports)]
use shmqueue::{Mpmc, PopError, PushError, Spsc};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// `fut`, failing the test if it takes longer than [`DEADLINE`].
async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {DEADLINE:?}"),
    }
}

/// The next item of a stream (futures-core has no `StreamExt`).
async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

#[test]
fn pop_async_is_woken_by_a_sync_push_in_this_process() {
    let shm = Shm::new("aio-local");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    current_thread().block_on(async {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            // Push only once the task has (very likely) gone to sleep, so
            // the wake goes through the waiter thread; any order is correct.
            started_rx.recv_timeout(DEADLINE).unwrap();
            for i in 0..1000 {
                tx.push(i).unwrap();
            }
            tx
        });
        started_tx.send(()).unwrap();
        for i in 0..1000 {
            assert_eq!(within("pop_async", rx.pop_async()).await, Ok(i));
        }
        drop(t.join().unwrap());
        assert_eq!(
            within("pop_async after drop", rx.pop_async()).await,
            Err(PopError::Disconnected)
        );
    });
}
