//! Batch calls of the SPSC ring: push_slice / pop_slice move many items with
//! one index publication, across wrap-around, between real processes.

mod common;

use std::collections::VecDeque;
use std::time::Instant;

use common::*;
use proptest::prelude::*;
use shmqueue::{BatchError, Spsc};

/// A small deterministic generator for batch sizes (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn batches_cross_processes_and_wrap_around_in_order() {
    const N: u64 = 1_000_000;
    if child_role().is_some() {
        run_child(|| {
            let q = Spsc::<u64>::open(&child_arg("NAME")).map_err(|e| e.to_string())?;
            let mut tx = q.producer().map_err(|e| e.to_string())?;
            let mut rng = Lcg(7);
            let mut next = 0u64;
            let end = Instant::now() + DEADLINE;
            while next < N {
                let len = (1 + rng.below(37)).min(N - next);
                let batch: Vec<u64> = (next..next + len).collect();
                let n = tx.push_slice(&batch).map_err(|e| e.to_string())?;
                next += n as u64;
                if n == 0 {
                    if Instant::now() > end {
                        return Err("ring stayed full".into());
                    }
                    std::thread::yield_now();
                }
            }
            Ok(())
        });
    }
    let shm = Shm::new("batch");
    // 100 is not a power of two and not a multiple of the batch sizes, so
    // batches split at the end of the array at every possible offset.
    let q = Spsc::<u64>::create(shm.name(), 100).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "batches_cross_processes_and_wrap_around_in_order",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    let mut rng = Lcg(11);
    let mut buf = vec![0u64; 64];
    let mut expected = 0u64;
    let end = Instant::now() + DEADLINE;
    while expected < N {
        let want = 1 + rng.below(63) as usize;
        match rx.pop_slice(&mut buf[..want]) {
            Ok(0) => {
                assert!(Instant::now() < end, "stalled at {expected}");
                std::thread::yield_now();
            }
            Ok(n) => {
                for &v in &buf[..n] {
                    assert_eq!(v, expected);
                    expected += 1;
                }
            }
            Err(e) => panic!("at {expected}: {e}"),
        }
    }
    child.success();
    assert_eq!(rx.pop_slice(&mut buf), Err(BatchError::Disconnected));
}

#[test]
fn batch_edges_full_empty_and_disconnect() {
    let shm = Shm::new("batch-edges");
    let q = Spsc::<u64>::create(shm.name(), 3).unwrap();
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    let mut buf = [0u64; 8];
    assert_eq!(rx.pop_slice(&mut buf), Ok(0), "empty, producer alive");
    assert_eq!(tx.push_slice(&[]), Ok(0));
    assert_eq!(tx.push_slice(&[1, 2, 3, 4]), Ok(3), "only capacity fits");
    assert_eq!(tx.push_slice(&[4]), Ok(0), "full");
    assert_eq!(rx.pop_slice(&mut buf[..2]), Ok(2));
    assert_eq!(tx.push_slice(&[4, 5, 6]), Ok(2), "wraps around the end");
    drop(tx);
    assert_eq!(rx.pop_slice(&mut buf), Ok(3));
    assert_eq!(&buf[..3], &[3, 4, 5]);
    assert_eq!(rx.pop_slice(&mut buf), Err(BatchError::Disconnected));
    let mut tx = q.producer().unwrap();
    drop(rx);
    assert_eq!(tx.push_slice(&[7]), Err(BatchError::Disconnected));
}

#[derive(Debug, Clone)]
enum Op {
    Push(Vec<u64>),
    Pop(usize),
    PushOne(u64),
    PopOne,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        proptest::collection::vec(any::<u64>(), 0..12).prop_map(Op::Push),
        (0usize..12).prop_map(Op::Pop),
        any::<u64>().prop_map(Op::PushOne),
        Just(Op::PopOne),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any mix of batch and single calls behaves like a bounded FIFO.
    #[test]
    fn batches_and_single_items_behave_like_a_bounded_fifo(
        capacity in 1usize..9,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let shm = Shm::new("batch-model");
        let q = Spsc::<u64>::create(shm.name(), capacity).unwrap();
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                Op::Push(items) => {
                    let n = tx.push_slice(&items).unwrap();
                    prop_assert_eq!(n, items.len().min(capacity - model.len()));
                    model.extend(&items[..n]);
                }
                Op::Pop(k) => {
                    let mut buf = vec![0u64; k];
                    let n = rx.pop_slice(&mut buf).unwrap();
                    prop_assert_eq!(n, k.min(model.len()));
                    for v in &buf[..n] {
                        prop_assert_eq!(Some(*v), model.pop_front());
                    }
                }
                Op::PushOne(v) => {
                    let full = model.len() == capacity;
                    prop_assert_eq!(tx.try_push(v).is_err(), full);
                    if !full {
                        model.push_back(v);
                    }
                }
                Op::PopOne => {
                    prop_assert_eq!(rx.try_pop().ok(), model.pop_front());
                }
            }
            prop_assert_eq!(q.len(), model.len());
        }
    }
}
