//! Batch calls of the SPSC ring: push_slice / pop_slice move many items with
//! one index publication, across wrap-around, between real processes; the
//! blocking batch calls (push_all, pop_slice_wait and their deadlines) and
//! the zero-copy windows (reserve, write in place, commit / read in place,
//! release), including a producer killed inside a window.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use shmqueue::{BatchError, PopError, PushAllError, Spsc, WindowError};

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

// ---------------------------------------------------------------------------
// Blocking batches and zero-copy windows
// ---------------------------------------------------------------------------

/// Items in the window/blocking stream between two processes.
const WINDOW_N: u64 = 300_000;

/// A child producer mixes `push_all` (random batch sizes) with write windows
/// (random sizes, written in place, committed in part, sometimes dropped
/// after being scribbled on); the parent mixes `pop_slice_wait` with read
/// windows (released in part, sometimes dropped after a look). Capacity 37
/// divides none of the sizes, so every call lands on every wrap offset. Each
/// value is checked; the producer's scribbles (`u64::MAX`) must never show.
#[test]
fn blocking_batches_and_windows_cross_processes_in_order() {
    if child_role().is_some() {
        run_child(|| {
            let q = Spsc::<u64>::open(&child_arg("NAME")).map_err(|e| e.to_string())?;
            let mut tx = q.producer().map_err(|e| e.to_string())?;
            let mut rng = Lcg(3);
            let mut next = 0u64;
            while next < WINDOW_N {
                let size = (1 + rng.below(50)).min(WINDOW_N - next) as usize;
                match rng.below(4) {
                    0 => {
                        let batch: Vec<u64> = (next..next + size as u64).collect();
                        tx.push_all_timeout(&batch, DEADLINE)
                            .map_err(|e| e.to_string())?;
                        next += size as u64;
                    }
                    1 => {
                        // Scribble, then drop: must publish nothing.
                        let mut w = tx
                            .write_window_timeout(size, DEADLINE)
                            .map_err(|e| e.to_string())?;
                        w.fill_with(|_| u64::MAX);
                    }
                    _ => {
                        let mut w = tx
                            .write_window_timeout(size, DEADLINE)
                            .map_err(|e| e.to_string())?;
                        let len = w.len();
                        w.fill_with(|i| next + i as u64);
                        let k = 1 + rng.below(len as u64) as usize;
                        w.commit(k);
                        next += k as u64;
                    }
                }
            }
            Ok(())
        });
    }
    let shm = Shm::new("window-stream");
    let q = Spsc::<u64>::create(shm.name(), 37).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "blocking_batches_and_windows_cross_processes_in_order",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    let mut rng = Lcg(5);
    let mut buf = vec![0u64; 64];
    let mut expected = 0u64;
    while expected < WINDOW_N {
        let size = 1 + rng.below(63) as usize;
        match rng.below(4) {
            0 => {
                let n = rx
                    .pop_slice_timeout(&mut buf[..size], DEADLINE)
                    .unwrap_or_else(|e| panic!("at {expected}: {e}"));
                assert!(n >= 1);
                for &v in &buf[..n] {
                    assert_eq!(v, expected);
                    expected += 1;
                }
            }
            1 => {
                // Look, then drop: the same items must come again.
                let r = rx.read_window_timeout(size, DEADLINE).unwrap();
                assert!(!r.is_empty());
                assert_eq!(r.get(0), expected);
            }
            _ => {
                let r = rx
                    .read_window_timeout(size, DEADLINE)
                    .unwrap_or_else(|e| panic!("at {expected}: {e}"));
                assert!(!r.is_empty() && r.len() <= size);
                let k = 1 + rng.below(r.len() as u64) as usize;
                for (i, v) in r.iter().enumerate() {
                    assert_eq!(v, expected + i as u64);
                }
                r.release(k);
                expected += k as u64;
            }
        }
    }
    child.success();
    assert_eq!(rx.pop_slice_wait(&mut buf), Err(PopError::Disconnected));
    assert_eq!(
        rx.read_window(4).unwrap_err(),
        WindowError::Disconnected,
        "drained, producer gone"
    );
}

#[test]
fn dropped_windows_publish_and_release_nothing() {
    let shm = Shm::new("window-drop");
    let q = Spsc::<u64>::create(shm.name(), 8).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    // Move the indices so that the windows below wrap.
    tx.push_all(&[0; 6]).unwrap();
    assert_eq!(rx.pop_slice(&mut [0; 6]), Ok(6));

    let mut w = tx.try_write_window(5).unwrap();
    assert_eq!(w.len(), 5);
    w.fill_with(|_| 999);
    drop(w);
    assert_eq!(q.len(), 0);
    assert!(rx.try_read_window(8).unwrap().is_empty());
    assert_eq!(rx.pop_slice(&mut [0; 8]), Ok(0));

    let mut w = tx.write_window(3).unwrap();
    assert_eq!(w.fill_from_slice(&[100, 101, 102, 103]), 3);
    w.commit_all();
    assert_eq!(q.len(), 3);

    // A read window dropped without release gives the items back.
    let r = rx.read_window(8).unwrap();
    assert_eq!(r.iter().collect::<Vec<_>>(), [100, 101, 102]);
    drop(r);
    assert_eq!(q.len(), 3);
    let mut buf = [0u64; 8];
    assert_eq!(rx.pop_slice(&mut buf), Ok(3));
    assert_eq!(
        &buf[..3],
        &[100, 101, 102],
        "only what was committed, never 999"
    );
    assert_eq!(rx.pop_slice(&mut buf), Ok(0));
}

#[test]
fn partial_commit_and_release_move_exactly_k() {
    let shm = Shm::new("window-partial");
    let q = Spsc::<u64>::create(shm.name(), 5).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    let mut next = 0u64;
    let mut expected = 0u64;
    // 6 slots, windows of 4: every start offset, wrapped or not.
    for round in 0..12 {
        let mut w = tx.try_write_window(4).unwrap();
        assert_eq!(w.len(), 4, "round {round}: ring has room for 4");
        for i in 0..4 {
            w.write(i, next + i as u64);
        }
        w.commit(2);
        next += 2;
        assert_eq!(q.len(), 2, "round {round}: exactly two published");

        let r = rx.try_read_window(8).unwrap();
        assert_eq!(r.len(), 2, "round {round}: the consumer sees two");
        let mut out = [0u64; 8];
        assert_eq!(r.copy_to_slice(&mut out), 2);
        assert_eq!(&out[..2], &[expected, expected + 1]);
        r.release(1);
        expected += 1;
        assert_eq!(q.len(), 1, "round {round}: exactly one released");
        assert_eq!(rx.try_pop(), Ok(expected));
        expected += 1;
    }
    // Commit 0 and release 0 are no-ops; over-committing panics.
    tx.try_write_window(3).unwrap().commit(0);
    assert_eq!(q.len(), 0);
    tx.push_slice(&[1]).unwrap();
    rx.try_read_window(3).unwrap().release(0);
    assert_eq!(q.len(), 1);
    let over = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tx.try_write_window(2).unwrap().commit(3)
    }));
    assert!(over.is_err(), "commit beyond the window must panic");
    assert_eq!(q.len(), 1, "and publish nothing");
}

#[test]
fn raw_window_parts_cover_the_window_in_order() {
    let shm = Shm::new("window-raw");
    let q = Spsc::<u32>::create(shm.name(), 6).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    tx.push_all(&[0; 5]).unwrap();
    assert_eq!(rx.pop_slice(&mut [0; 5]), Ok(5));
    let mut w = tx.try_write_window(6).unwrap();
    let parts = w.as_mut_ptr_parts();
    assert_eq!((parts[0].1, parts[1].1), (2, 4), "wraps after two slots");
    let mut v = 10;
    for (p, len) in parts {
        for i in 0..len {
            // SAFETY: i < len, inside a live window's run.
            unsafe { p.add(i).write(v) };
            v += 1;
        }
    }
    w.commit_all();
    let r = rx.try_read_window(6).unwrap();
    let mut got = Vec::new();
    for (p, len) in r.as_ptr_parts() {
        for i in 0..len {
            // SAFETY: i < len, inside a live window's run.
            got.push(unsafe { p.add(i).read() });
        }
    }
    assert_eq!(got, [10, 11, 12, 13, 14, 15]);
    r.release_all();
    assert!(rx.try_read_window(6).unwrap().is_empty());
}

#[test]
fn blocking_batch_calls_time_out_with_the_count() {
    let shm = Shm::new("batch-timeout");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    let t = Duration::from_millis(20);
    let mut buf = [0u64; 4];
    assert_eq!(rx.pop_slice_timeout(&mut buf, t), Err(PopError::Timeout));
    assert_eq!(
        rx.read_window_timeout(2, t).unwrap_err(),
        WindowError::Timeout
    );
    let items: Vec<u64> = (0..10).collect();
    let e = tx.push_all_timeout(&items, t).unwrap_err();
    assert_eq!(e, PushAllError::Timeout { pushed: 4 });
    assert!(e.is_timeout() && e.pushed() == 4);
    assert_eq!(
        tx.write_window_timeout(1, t).unwrap_err(),
        WindowError::Timeout
    );
    // Resume with the rest after the consumer made room for 3.
    assert_eq!(rx.pop_slice_timeout(&mut buf[..3], t), Ok(3));
    let e = tx.push_all_timeout(&items[4..], t).unwrap_err();
    assert_eq!(e.pushed(), 3);
    assert_eq!(q.len(), 4);
    // Zero-sized requests never wait.
    assert_eq!(tx.push_all_timeout(&[], t), Ok(()));
    assert!(tx.write_window_timeout(0, t).unwrap().is_empty());
    assert_eq!(rx.pop_slice_timeout(&mut [], t), Ok(0));
}

/// A producer blocked in `push_all` on a full ring is woken by a consumer
/// process popping, then by that consumer exiting: `Disconnected` with
/// exactly the count that went in.
#[test]
fn push_all_is_woken_by_the_consumer_and_by_its_exit() {
    if child_role().is_some() {
        run_child(|| {
            let q = Spsc::<u64>::open(&child_arg("NAME")).map_err(|e| e.to_string())?;
            let mut rx = q.consumer().map_err(|e| e.to_string())?;
            for i in 0..3 {
                let v = rx.pop_timeout(DEADLINE).map_err(|e| e.to_string())?;
                if v != i {
                    return Err(format!("popped {v}, expected {i}"));
                }
            }
            Ok(())
        });
    }
    let shm = Shm::new("push-all-wake");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    let mut tx = q.producer().unwrap();
    let mut child = spawn(
        "push_all_is_woken_by_the_consumer_and_by_its_exit",
        "consumer",
        &[("NAME", shm.0.clone())],
    );
    let items: Vec<u64> = (0..100).collect();
    let e = tx.push_all_timeout(&items, DEADLINE).unwrap_err();
    child.success();
    let PushAllError::Disconnected { pushed } = e else {
        panic!("expected Disconnected, got {e:?}");
    };
    // 4 fill the ring; the consumer's 3 pops make room for up to 3 more.
    assert!((4..=7).contains(&pushed), "pushed {pushed}");
    assert_eq!(
        q.len(),
        pushed - 3,
        "what went in and was not popped is there"
    );
}

/// A consumer blocked in `pop_slice_wait` / `read_window` is woken by a
/// producer process, and by its exit: it drains everything, then
/// `Disconnected`.
#[test]
fn pop_slice_wait_is_woken_by_the_producer_and_by_its_exit() {
    if child_role().is_some() {
        run_child(|| {
            let q = Spsc::<u64>::open(&child_arg("NAME")).map_err(|e| e.to_string())?;
            let mut tx = q.producer().map_err(|e| e.to_string())?;
            let items: Vec<u64> = (0..1000).collect();
            tx.push_all_timeout(&items, DEADLINE)
                .map_err(|e| e.to_string())
        });
    }
    let shm = Shm::new("pop-wait-wake");
    let q = Spsc::<u64>::create(shm.name(), 8).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "pop_slice_wait_is_woken_by_the_producer_and_by_its_exit",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    let mut buf = [0u64; 5];
    let mut expected = 0u64;
    loop {
        let r = if expected % 2 == 0 {
            rx.pop_slice_timeout(&mut buf, DEADLINE)
        } else {
            match rx.read_window_timeout(3, DEADLINE) {
                Ok(w) => {
                    let n = w.copy_to_slice(&mut buf);
                    w.release_all();
                    Ok(n)
                }
                Err(WindowError::Disconnected) => Err(PopError::Disconnected),
                Err(e) => panic!("{e}"),
            }
        };
        match r {
            Ok(n) => {
                assert!(n >= 1);
                for &v in &buf[..n] {
                    assert_eq!(v, expected);
                    expected += 1;
                }
            }
            Err(PopError::Disconnected) => break,
            Err(e) => panic!("at {expected}: {e}"),
        }
    }
    assert_eq!(expected, 1000, "everything drained before Disconnected");
    child.success();
}

/// A producer SIGKILLed while it holds a write window (part of it written,
/// the window wrapping the end of the array): the consumer gets exactly what
/// was committed before, never the partial window, then `Disconnected`.
#[test]
fn producer_killed_inside_a_write_window_publishes_nothing_of_it() {
    if child_role().is_some() {
        run_child(|| {
            let q = Spsc::<u64>::open(&child_arg("NAME")).map_err(|e| e.to_string())?;
            let mut tx = q.producer().map_err(|e| e.to_string())?;
            let mut w = tx
                .write_window_timeout(5, DEADLINE)
                .map_err(|e| e.to_string())?;
            w.fill_with(|i| i as u64);
            w.commit_all();
            let mut w = tx
                .write_window_timeout(10, DEADLINE)
                .map_err(|e| e.to_string())?;
            if w.len() != 10 {
                return Err(format!("window of {}, expected 10", w.len()));
            }
            for i in 0..6 {
                w.write(i, 666);
            }
            tell_parent("inside");
            // Block until killed: stdin is a pipe the parent never writes.
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            Err("stdin closed before the kill".into())
        });
    }
    let shm = Shm::new("window-kill");
    let q = Spsc::<u64>::create(shm.name(), 16).unwrap();
    {
        // Start the indices near the end, so both windows wrap.
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        tx.push_all(&[0; 12]).unwrap();
        assert_eq!(rx.pop_slice(&mut [0; 12]), Ok(12));
    }
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "producer_killed_inside_a_write_window_publishes_nothing_of_it",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    assert_eq!(child.expect_line(), "inside");
    child.sigkill();
    assert_eq!(q.len(), 5, "only the committed window is in the ring");
    let mut got = Vec::new();
    let mut buf = [0u64; 16];
    let e = loop {
        match rx.pop_slice_timeout(&mut buf, DEADLINE) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert_eq!(e, PopError::Disconnected);
    // A new producer starts right after the committed items.
    let mut tx = q.producer().unwrap();
    tx.push_slice(&[42]).unwrap();
    assert_eq!(rx.pop_slice_timeout(&mut buf, DEADLINE), Ok(1));
    assert_eq!(buf[0], 42);
}

/// A consumer SIGKILLed inside a read window released nothing: a new
/// consumer reads the same items.
#[test]
fn consumer_killed_inside_a_read_window_releases_nothing() {
    if child_role().is_some() {
        run_child(|| {
            let q = Spsc::<u64>::open(&child_arg("NAME")).map_err(|e| e.to_string())?;
            let mut rx = q.consumer().map_err(|e| e.to_string())?;
            rx.read_window_timeout(2, DEADLINE)
                .map_err(|e| e.to_string())?
                .release_all();
            let r = rx
                .read_window_timeout(8, DEADLINE)
                .map_err(|e| e.to_string())?;
            if r.get(0) != 2 {
                return Err(format!("window starts at {}", r.get(0)));
            }
            tell_parent("inside");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            Err("stdin closed before the kill".into())
        });
    }
    let shm = Shm::new("read-window-kill");
    let q = Spsc::<u64>::create(shm.name(), 8).unwrap();
    let mut tx = q.producer().unwrap();
    tx.push_all(&[0, 1, 2, 3, 4, 5]).unwrap();
    let mut child = spawn(
        "consumer_killed_inside_a_read_window_releases_nothing",
        "consumer",
        &[("NAME", shm.0.clone())],
    );
    assert_eq!(child.expect_line(), "inside");
    child.sigkill();
    assert_eq!(q.len(), 4);
    let mut rx = q.consumer().unwrap();
    let r = rx.read_window(8).unwrap();
    assert_eq!((&r).into_iter().len(), 4);
    let mut got = Vec::new();
    for v in &r {
        got.push(v);
    }
    assert_eq!(got, [2, 3, 4, 5]);
}

#[derive(Debug, Clone)]
enum WinOp {
    /// Reserve up to `max`, write the first `written` (of the window),
    /// commit `commit` of them, or drop the window if `None`.
    Write {
        max: usize,
        seed: u64,
        written: usize,
        commit: Option<usize>,
    },
    /// Open a read window of up to `max`, check it, release `release`, or
    /// drop it if `None`.
    Read {
        max: usize,
        release: Option<usize>,
    },
    Push(Vec<u64>),
    Pop(usize),
}

fn win_op() -> impl Strategy<Value = WinOp> {
    prop_oneof![
        3 => (0usize..12, any::<u64>(), 0usize..12, proptest::option::weighted(0.8, 0usize..12))
            .prop_map(|(max, seed, written, commit)| WinOp::Write { max, seed, written, commit }),
        3 => (0usize..12, proptest::option::weighted(0.8, 0usize..12))
            .prop_map(|(max, release)| WinOp::Read { max, release }),
        1 => proptest::collection::vec(any::<u64>(), 0..12).prop_map(WinOp::Push),
        1 => (0usize..12).prop_map(WinOp::Pop),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Windows (with partial commits/releases and drops) mixed with slice
    /// calls behave like a bounded FIFO.
    #[test]
    fn windows_behave_like_a_bounded_fifo(
        capacity in 1usize..9,
        ops in proptest::collection::vec(win_op(), 1..60),
    ) {
        let shm = Shm::new("window-model");
        let q = Spsc::<u64>::create(shm.name(), capacity).unwrap();
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                WinOp::Write { max, seed, written, commit } => {
                    let mut w = tx.try_write_window(max).unwrap();
                    prop_assert_eq!(w.len(), max.min(capacity - model.len()));
                    let written = written.min(w.len());
                    let vals: Vec<u64> = (0..written as u64).map(|i| seed.wrapping_add(i)).collect();
                    prop_assert_eq!(w.fill_from_slice(&vals), written);
                    match commit {
                        Some(k) => {
                            let k = k.min(written);
                            w.commit(k);
                            model.extend(&vals[..k]);
                        }
                        None => drop(w),
                    }
                }
                WinOp::Read { max, release } => {
                    let r = rx.try_read_window(max).unwrap();
                    prop_assert_eq!(r.len(), max.min(model.len()));
                    let got: Vec<u64> = r.iter().collect();
                    let want: Vec<u64> = model.iter().take(r.len()).copied().collect();
                    prop_assert_eq!(got, want);
                    match release {
                        Some(k) => {
                            let k = k.min(r.len());
                            r.release(k);
                            model.drain(..k);
                        }
                        None => drop(r),
                    }
                }
                WinOp::Push(items) => {
                    let n = tx.push_slice(&items).unwrap();
                    prop_assert_eq!(n, items.len().min(capacity - model.len()));
                    model.extend(&items[..n]);
                }
                WinOp::Pop(k) => {
                    let mut buf = vec![0u64; k];
                    let n = rx.pop_slice(&mut buf).unwrap();
                    prop_assert_eq!(n, k.min(model.len()));
                    for v in &buf[..n] {
                        prop_assert_eq!(Some(*v), model.pop_front());
                    }
                }
            }
            prop_assert_eq!(q.len(), model.len());
        }
    }
}

/// A deadline bounds the whole wait, spinning included: a large spin
/// budget must not keep a timed call past its timeout. (Before the fix the
/// spin phase ignored the deadline: tens of millions of yields, seconds to
/// minutes, per call; `u32::MAX` hung for hours.)
#[test]
fn deadlines_bound_the_spin_phase_too() {
    let shm = Shm::new("batch-spin-deadline");
    let q = Spsc::<u64>::builder()
        .capacity(4)
        .spin(50_000_000)
        .create(shm.name())
        .unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    let t = Duration::from_millis(10);
    let within = |what: &str, start: Instant| {
        let took = start.elapsed();
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    };
    let mut buf = [0u64; 4];
    let s = Instant::now();
    assert_eq!(rx.pop_slice_timeout(&mut buf, t), Err(PopError::Timeout));
    within("pop_slice_timeout", s);
    let s = Instant::now();
    assert_eq!(
        rx.read_window_timeout(2, t).unwrap_err(),
        WindowError::Timeout
    );
    within("read_window_timeout", s);
    let s = Instant::now();
    assert_eq!(rx.pop_timeout(t), Err(PopError::Timeout));
    within("pop_timeout", s);
    tx.push_slice(&[1, 2, 3, 4]).unwrap();
    let s = Instant::now();
    assert_eq!(
        tx.push_all_timeout(&[5], t),
        Err(PushAllError::Timeout { pushed: 0 })
    );
    within("push_all_timeout", s);
    let s = Instant::now();
    assert_eq!(
        tx.write_window_timeout(1, t).unwrap_err(),
        WindowError::Timeout
    );
    within("write_window_timeout", s);
    let s = Instant::now();
    assert!(tx.push_timeout(6, t).is_err());
    within("push_timeout", s);
}
