//! A hostile or buggy peer writing arbitrary record headers (lengths, flags)
//! and indices into a live byte ring: every call must return, promptly, with
//! Ok or a typed error; never a panic, an access outside the ring, a hang
//! past its deadline, or an allocation beyond the maximum message size.

mod common;

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::Shm;
use proptest::prelude::*;
use shmqueue::{ByteRing, RecvError, SendError};

const CAP: usize = 256;
/// The data area of a byte ring follows the header and a 2-entry registry.
const DATA: u64 = 768;
const HEAD: u64 = 128;
const TAIL: u64 = 256;
const MAX_MESSAGE: usize = 600;
/// No call may take longer than this (they all have short deadlines).
const PROMPT: Duration = Duration::from_secs(5);

fn poke(name: &str, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{name}"))
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    /// A record header at a multiple of 8 in the data area.
    Header {
        slot: u64,
        len: u32,
        flags: u32,
    },
    /// An index line.
    Index {
        tail: bool,
        value: u64,
    },
    /// Head and tail both set to one value (an "empty" ring anywhere).
    Both {
        value: u64,
    },
    /// Any 8 bytes anywhere in the segment's header, registry or data.
    Word {
        offset: u64,
        value: u64,
    },
    TrySend(usize),
    SendShort(usize),
    TryRecv,
    RecvShort,
    RecvInto(usize),
    TryRead,
    ReadMessage,
    Reattach,
}

fn len_field() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(8),
        Just(240),
        Just(248),
        Just(249),
        Just(256),
        Just(MAX_MESSAGE as u32 + 1),
        Just(u32::MAX),
        Just(u32::MAX - 7),
        0u32..300,
        any::<u32>(),
    ]
}

/// Positions at the edges of u64: where naive `+ len` arithmetic overflows,
/// where bit 63 flips, and ordinary small ones.
fn extreme_position() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just((1u64 << 62) - 8),
        Just(1u64 << 62),
        Just(i64::MAX as u64 - 7),
        Just(1u64 << 63),
        Just(u64::MAX - 7),
        Just(u64::MAX - CAP as u64 + 1),
        Just(u64::MAX),
        (0u64..=32).prop_map(|k| u64::MAX - 7 - 8 * k),
        0u64..2048,
        any::<u64>(),
    ]
}

fn flags_field() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..16, 1 => any::<u32>()]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..CAP as u64 / 8, len_field(), flags_field())
            .prop_map(|(slot, len, flags)| Op::Header { slot, len, flags }),
        1 => (any::<bool>(), extreme_position())
            .prop_map(|(tail, value)| Op::Index { tail, value }),
        1 => extreme_position().prop_map(|value| Op::Both { value }),
        1 => (0..(DATA + CAP as u64) / 8, any::<u64>())
            .prop_map(|(w, value)| Op::Word { offset: w * 8, value }),
        3 => (0usize..700).prop_map(Op::TrySend),
        1 => (0usize..700).prop_map(Op::SendShort),
        3 => Just(Op::TryRecv),
        1 => Just(Op::RecvShort),
        1 => (0usize..700).prop_map(Op::RecvInto),
        2 => Just(Op::TryRead),
        1 => Just(Op::ReadMessage),
        1 => Just(Op::Reattach),
    ]
}

fn check_recv(r: Result<usize, RecvError>) {
    match r {
        Ok(n) => assert!(n <= MAX_MESSAGE, "a {n}-byte message beyond the limit"),
        // Every typed outcome is acceptable; what matters is that it is one.
        Err(
            RecvError::Empty
            | RecvError::Timeout
            | RecvError::Disconnected
            | RecvError::Truncated
            | RecvError::TooLarge { .. }
            | RecvError::BufferTooSmall { .. }
            | RecvError::Fragmented
            | RecvError::Corrupt(_),
        ) => {}
        Err(e) => panic!("unexpected {e:?}"),
    }
}

fn run(ops: Vec<Op>) {
    let shm = Shm::new("bytes-hostile");
    let q = ByteRing::builder()
        .capacity(CAP)
        .max_message_size(MAX_MESSAGE)
        .spin(2)
        .create(shm.name())
        .unwrap();
    let mut tx = q.producer().ok();
    let mut rx = q.consumer().ok();
    let short = Duration::from_millis(1);
    let mut buf = Vec::new();
    for op in ops {
        let t0 = Instant::now();
        match op {
            Op::Header { slot, len, flags } => {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&len.to_le_bytes());
                b[4..].copy_from_slice(&flags.to_le_bytes());
                poke(shm.name(), DATA + slot * 8, &b);
            }
            Op::Index { tail, value } => {
                poke(
                    shm.name(),
                    if tail { TAIL } else { HEAD },
                    &value.to_le_bytes(),
                );
            }
            Op::Both { value } => {
                poke(shm.name(), HEAD, &value.to_le_bytes());
                poke(shm.name(), TAIL, &value.to_le_bytes());
            }
            Op::Word { offset, value } => poke(shm.name(), offset, &value.to_le_bytes()),
            Op::TrySend(len) => {
                if let Some(tx) = tx.as_mut() {
                    let _: Result<(), SendError> = tx.try_send(&vec![7; len]);
                }
            }
            Op::SendShort(len) => {
                if let Some(tx) = tx.as_mut() {
                    let _ = tx.send_timeout(&vec![7; len], short);
                }
            }
            Op::TryRecv => {
                if let Some(rx) = rx.as_mut() {
                    check_recv(rx.try_recv(&mut buf).map(|()| buf.len()));
                    assert!(
                        buf.capacity() <= 2 * MAX_MESSAGE,
                        "allocation beyond the limit"
                    );
                }
            }
            Op::RecvShort => {
                if let Some(rx) = rx.as_mut() {
                    check_recv(rx.recv_timeout(&mut buf, short).map(|()| buf.len()));
                    assert!(
                        buf.capacity() <= 2 * MAX_MESSAGE,
                        "allocation beyond the limit"
                    );
                }
            }
            Op::RecvInto(n) => {
                if let Some(rx) = rx.as_mut() {
                    let mut arr = vec![0u8; n];
                    check_recv(rx.recv_into_timeout(&mut arr, short));
                }
            }
            Op::TryRead => {
                if let Some(rx) = rx.as_mut() {
                    check_recv(rx.try_read().map(|r| r.to_vec().len()));
                }
            }
            Op::ReadMessage => {
                if let Some(rx) = rx.as_mut() {
                    match rx.read_message_timeout(short) {
                        Ok(mut r) => {
                            let mut v = Vec::new();
                            let _ = r.read_to_end(&mut v);
                            assert!(v.len() <= MAX_MESSAGE, "streamed beyond the limit");
                        }
                        Err(e) => check_recv(Err(e)),
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
        assert!(took < PROMPT, "an operation took {took:?}");
        let _ = (q.len(), q.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_headers_and_indices_give_typed_errors(
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        run(ops);
    }
}

#[test]
fn a_huge_length_is_corrupt_without_allocating() {
    let shm = Shm::new("bytes-huge");
    let q = ByteRing::builder()
        .capacity(CAP)
        .create(shm.name())
        .unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    tx.try_send(b"abc").unwrap();
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    poke(shm.name(), DATA, &b);
    let mut buf = Vec::new();
    assert!(matches!(
        rx.try_recv(&mut buf),
        Err(RecvError::Corrupt(c)) if c.what == "byte ring record length"
    ));
    assert_eq!(buf.capacity(), 0);
    // Unknown flags, and a record reaching past head.
    b[..4].copy_from_slice(&3u32.to_le_bytes());
    b[4..].copy_from_slice(&64u32.to_le_bytes());
    poke(shm.name(), DATA, &b);
    assert!(matches!(
        rx.try_recv(&mut buf),
        Err(RecvError::Corrupt(c)) if c.what == "byte ring record flags"
    ));
    b[..4].copy_from_slice(&100u32.to_le_bytes());
    b[4..].copy_from_slice(&0u32.to_le_bytes());
    poke(shm.name(), DATA, &b);
    assert!(matches!(
        rx.try_recv(&mut buf),
        Err(RecvError::Corrupt(c)) if c.what == "byte ring record end"
    ));
    // Repaired, the record is received; then a head beyond tail + capacity.
    b[..4].copy_from_slice(&3u32.to_le_bytes());
    poke(shm.name(), DATA, &b);
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"abc");
    poke(shm.name(), HEAD, &(16 + CAP as u64 + 8).to_le_bytes());
    assert!(matches!(
        rx.try_recv(&mut buf),
        Err(RecvError::Corrupt(c)) if c.what == "byte ring head"
    ));
}

/// head = tail = u64::MAX - 7 (and other positions that cannot advance by a
/// capacity without overflowing) used to make the next `try_send` panic with
/// "attempt to add with overflow": they are `Corrupt` for a new endpoint,
/// and any call of an attached one returns a typed result.
#[test]
fn positions_that_cannot_advance_are_corrupt_not_a_panic() {
    for value in [u64::MAX - 7, u64::MAX - 255, 1 << 63, (1 << 62) + 8] {
        let shm = Shm::new("bytes-edge");
        let q = ByteRing::builder()
            .capacity(CAP)
            .create(shm.name())
            .unwrap();
        poke(shm.name(), HEAD, &value.to_le_bytes());
        poke(shm.name(), TAIL, &value.to_le_bytes());
        assert!(
            matches!(q.producer(), Err(shmqueue::Error::Corrupt { .. })),
            "{value:#x}: a producer attached at an unusable position"
        );
        assert!(
            matches!(q.consumer(), Err(shmqueue::Error::Corrupt { .. })),
            "{value:#x}: a consumer attached at an unusable position"
        );
        // Attached first, then the positions are moved under them.
        poke(shm.name(), HEAD, &0u64.to_le_bytes());
        poke(shm.name(), TAIL, &0u64.to_le_bytes());
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        poke(shm.name(), HEAD, &value.to_le_bytes());
        poke(shm.name(), TAIL, &value.to_le_bytes());
        let mut buf = Vec::new();
        for _ in 0..4 {
            let _ = tx.try_send(&[1; 40]);
            check_recv(rx.try_recv(&mut buf).map(|()| buf.len()));
        }
    }
}
