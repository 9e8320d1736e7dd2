//! A hostile or buggy peer writing arbitrary values into a live MPMC
//! queue's positions, slot sequence words and registry claims, including
//! the edges of u64 (0, 2^61, 2^62, 2^63, u64::MAX and just below): every
//! call returns promptly with Ok or a typed error; never a panic, a hang
//! past its deadline, or an access outside the mapping.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::Shm;
use proptest::prelude::*;
use shmqueue::{Error, Mpmc, PopError, PushError, TryPopError, TryPushError};

/// The index lines (layout version 2: DESIGN.md, "Memory layout").
const HEAD: u64 = 128;
const TAIL: u64 = 256;
/// The registry, one 128-byte line per entry; `claim` at +8.
const REGISTRY: u64 = 512;
const CAP: usize = 4;
/// Compact u64 slots: the sequence word, then the value.
const STRIDE: u64 = 16;
const PROMPT: Duration = Duration::from_secs(5);

fn poke(name: &str, offset: u64, value: u64) {
    let f = OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{name}"))
        .unwrap();
    f.write_all_at(&value.to_le_bytes(), offset).unwrap();
}

/// The slot array ends the segment.
fn slots_at(name: &str) -> u64 {
    let len = std::fs::metadata(format!("/dev/shm{name}")).unwrap().len();
    len - CAP as u64 * STRIDE
}

fn queue(shm: &Shm) -> Mpmc<u64> {
    Mpmc::<u64>::builder()
        .capacity(CAP)
        .max_producers(2)
        .max_consumers(2)
        .spin(2)
        .create(shm.name())
        .unwrap()
}

fn edge() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..16,
        Just(1u64 << 61),
        Just((1u64 << 61) + 1),
        Just(1u64 << 62),
        Just(i64::MAX as u64),
        Just(1u64 << 63),
        Just((1u64 << 63) | 1),
        (0u64..16).prop_map(|k| u64::MAX - k),
        any::<u64>(),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Head(u64),
    Tail(u64),
    Seq(usize, u64),
    Claim(u32, u64),
    TryPush(u64),
    PushShort(u64),
    TryPop,
    PopShort,
    Reattach,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => edge().prop_map(Op::Head),
        1 => edge().prop_map(Op::Tail),
        2 => (0..CAP, edge()).prop_map(|(i, v)| Op::Seq(i, v)),
        1 => (0u32..4, edge()).prop_map(|(i, v)| Op::Claim(i, v)),
        3 => any::<u64>().prop_map(Op::TryPush),
        1 => any::<u64>().prop_map(Op::PushShort),
        3 => Just(Op::TryPop),
        1 => Just(Op::PopShort),
        1 => Just(Op::Reattach),
    ]
}

fn run(ops: Vec<Op>) {
    let shm = Shm::new("mpmc-hostile");
    let q = queue(&shm);
    let slots = slots_at(shm.name());
    let mut tx = q.producer().ok();
    let mut rx = q.consumer().ok();
    let short = Duration::from_millis(1);
    for op in ops {
        let t0 = Instant::now();
        match op {
            Op::Head(v) => poke(shm.name(), HEAD, v),
            Op::Tail(v) => poke(shm.name(), TAIL, v),
            Op::Seq(i, v) => poke(shm.name(), slots + i as u64 * STRIDE, v),
            Op::Claim(i, v) => poke(shm.name(), REGISTRY + 128 * u64::from(i) + 8, v),
            Op::TryPush(v) => {
                if let Some(tx) = tx.as_mut() {
                    match tx.try_push(v) {
                        Ok(())
                        | Err(TryPushError::Full(_))
                        | Err(TryPushError::Disconnected(_))
                        | Err(TryPushError::Corrupt(..)) => {}
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            }
            Op::PushShort(v) => {
                if let Some(tx) = tx.as_mut() {
                    match tx.push_timeout(v, short) {
                        Ok(())
                        | Err(PushError::Timeout(_))
                        | Err(PushError::Disconnected(_))
                        | Err(PushError::Corrupt(..)) => {}
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            }
            Op::TryPop => {
                if let Some(rx) = rx.as_mut() {
                    match rx.try_pop() {
                        Ok(_)
                        | Err(TryPopError::Empty)
                        | Err(TryPopError::Disconnected)
                        | Err(TryPopError::Corrupt(_)) => {}
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            }
            Op::PopShort => {
                if let Some(rx) = rx.as_mut() {
                    match rx.pop_timeout(short) {
                        Ok(_)
                        | Err(PopError::Timeout)
                        | Err(PopError::Disconnected)
                        | Err(PopError::Corrupt(_)) => {}
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            }
            Op::Reattach => {
                drop((tx.take(), rx.take()));
                tx = q.producer().ok();
                rx = q.consumer().ok();
            }
        }
        let took = t0.elapsed();
        assert!(took < PROMPT, "{op:?} took {took:?}");
        let _ = (q.len(), q.stats());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_positions_sequences_and_claims_give_typed_errors(
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        run(ops);
    }
}

/// Before positions were bounded, head = 2^63 (the SKIP / claim bit) made
/// every push Full and tail = 2^63 every pop Empty, forever: a wedged queue
/// that looked healthy. Now both are `Corrupt`, saying which word is wrong.
#[test]
fn positions_at_bit_63_are_corrupt_not_a_wedge() {
    for value in [1u64 << 63, (1 << 61) + 1, u64::MAX, u64::MAX - 3] {
        let shm = Shm::new("mpmc-edge");
        let q = queue(&shm);
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        tx.try_push(1).unwrap();
        poke(shm.name(), HEAD, value);
        match tx.try_push(2) {
            Err(TryPushError::Corrupt(2, c)) => assert_eq!(c.what, "MPMC head", "{value:#x}"),
            other => panic!("{value:#x}: push gave {other:?}, not Corrupt"),
        }
        poke(shm.name(), TAIL, value);
        match rx.try_pop() {
            Err(TryPopError::Corrupt(c)) => assert_eq!(c.what, "MPMC tail", "{value:#x}"),
            other => panic!("{value:#x}: pop gave {other:?}, not Corrupt"),
        }
        // The blocking forms say so at once too, not at their deadline.
        let t0 = Instant::now();
        assert!(matches!(
            rx.pop_timeout(Duration::from_secs(10)),
            Err(PopError::Corrupt(_))
        ));
        assert!(t0.elapsed() < Duration::from_secs(5));
        // Opening still works: the header is intact; only the positions lie.
        assert!(!matches!(
            Mpmc::<u64>::open(shm.name()),
            Err(Error::Corrupt { .. })
        ));
    }
}
