//! A hostile or buggy peer writing arbitrary bytes into the segment must get
//! from every call either Ok with a valid value or a typed error: never a
//! panic, never an access outside the mapping, never a hang past a deadline.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::Shm;
use proptest::prelude::*;
use shmqueue::Spsc;

/// Fixed header + SPSC registry; the slot array starts here for u64 items.
const HEADER_AND_REGISTRY: usize = 768;

fn poke(name: &str, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{name}"))
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Poke { offset: u64, value: u64, width: u8 },
    TryPush(u64),
    TryPop,
    PushTimeout(u64),
    PopTimeout,
    Len,
    Reattach,
}

/// Index values at the edges of u64 (0, around 2^62 and 2^63, u64::MAX and
/// just below) as well as small plausible ones and random ones.
fn edge_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..16,
        Just(1u64 << 62),
        Just(i64::MAX as u64),
        Just(1u64 << 63),
        Just((1u64 << 63) + 1),
        (0u64..16).prop_map(|k| u64::MAX - k),
        any::<u64>(),
    ]
}

fn op(total: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..total, any::<u64>(), prop_oneof![Just(1u8), Just(4), Just(8)])
            .prop_map(|(o, value, width)| Op::Poke { offset: o - o % u64::from(width), value, width }),
        // Small values make plausible-but-wrong indices more likely; edge
        // values catch overflowing arithmetic on them.
        2 => (0..total / 128, edge_value())
            .prop_map(|(line, value)| Op::Poke { offset: line * 128, value, width: 8 }),
        2 => any::<u64>().prop_map(Op::TryPush),
        2 => Just(Op::TryPop),
        1 => any::<u64>().prop_map(Op::PushTimeout),
        1 => Just(Op::PopTimeout),
        1 => Just(Op::Len),
        1 => Just(Op::Reattach),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random bytes over the header and registry, then open: an error or a
    /// usable queue, never a panic.
    #[test]
    fn random_header_bytes_give_an_error_not_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 1..HEADER_AND_REGISTRY),
        at in 0usize..HEADER_AND_REGISTRY,
    ) {
        let shm = Shm::new("hdr");
        let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
        let at = at.min(HEADER_AND_REGISTRY - bytes.len());
        poke(shm.name(), at as u64, &bytes);
        let opened = Spsc::<u64>::builder()
            .init_timeout(Duration::from_millis(1))
            .open(shm.name());
        if let Ok(q2) = opened {
            if let Ok(mut tx) = q2.producer() {
                let _ = tx.try_push(1);
            }
            if let Ok(mut rx) = q2.consumer() {
                let _ = rx.try_pop();
            }
            let _ = q2.len();
        }
        drop(q);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random words written into a live segment between operations of
    /// attached endpoints: every call returns, with Ok or a typed error.
    #[test]
    fn writes_into_a_live_segment_never_panic_or_hang(
        ops in proptest::collection::vec(op(HEADER_AND_REGISTRY as u64 + 5 * 8), 1..40),
    ) {
        let shm = Shm::new("live");
        let q = Spsc::<u64>::builder().capacity(4).spin(2).create(shm.name()).unwrap();
        let mut tx = q.producer().ok();
        let mut rx = q.consumer().ok();
        let short = Duration::from_millis(1);
        for op in ops {
            let t0 = std::time::Instant::now();
            match op {
                Op::Poke { offset, value, width } => {
                    let b = value.to_ne_bytes();
                    poke(shm.name(), offset, &b[..usize::from(width)]);
                }
                Op::TryPush(v) => if let Some(tx) = tx.as_mut() { let _ = tx.try_push(v); },
                Op::TryPop => if let Some(rx) = rx.as_mut() { let _ = rx.try_pop(); },
                Op::PushTimeout(v) => if let Some(tx) = tx.as_mut() { let _ = tx.push_timeout(v, short); },
                Op::PopTimeout => if let Some(rx) = rx.as_mut() { let _ = rx.pop_timeout(short); },
                Op::Len => { let _ = (q.len(), q.is_empty()); },
                Op::Reattach => {
                    // Release both roles before claiming them again.
                    drop((tx.take(), rx.take()));
                    tx = q.producer().ok();
                    rx = q.consumer().ok();
                }
            }
            let took = t0.elapsed();
            prop_assert!(took < Duration::from_secs(5), "a call took {:?}", took);
        }
    }
}
