//! The byte ring's framing against a model: random sequences of sends
//! (single records, fragmented messages, reservations committed, shortened
//! or dropped, streamed messages) and receives (whole, into a slice, in
//! place, streamed), on one thread, compared with a `VecDeque<Vec<u8>>`.
//!
//! Non-blocking calls only (zero timeouts), so a full ring shows up as a
//! refused send instead of a deadlock. A fragmented send that runs out of
//! room part-way leaves an "abandoned" marker in the model: the consumer
//! may report it as `Truncated` (if any fragment was published) or not see
//! it at all (if none was), but must never deliver it as a message.

mod common;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::time::Duration;

use common::Shm;
use proptest::prelude::*;
use shmqueue::{ByteRing, RecvError, SendError};

const CAP: usize = 256;
const MAX_RECORD: usize = CAP - 8;
/// Payload of one fragment: half the ring, less a header.
const CHUNK: usize = CAP / 2 - 8;
const MAX_MESSAGE: usize = 1000;

#[derive(Debug, Clone)]
enum Op {
    TrySend(usize),
    SendNow(usize),
    Reserve { len: usize, act: u8 },
    Stream { len: usize, piece: usize },
    TryRecv,
    RecvInto(usize),
    TryRead,
    ReadMessage,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..=300).prop_map(Op::TrySend),
        2 => (0usize..=1100).prop_map(Op::SendNow),
        2 => (0usize..=260, 0u8..3).prop_map(|(len, act)| Op::Reserve { len, act }),
        1 => (0usize..=1100, 1usize..200).prop_map(|(len, piece)| Op::Stream { len, piece }),
        3 => Just(Op::TryRecv),
        1 => (0usize..=1000).prop_map(Op::RecvInto),
        2 => Just(Op::TryRead),
        1 => Just(Op::ReadMessage),
    ]
}

#[derive(Debug)]
enum Expect {
    /// `fragmented`: sent in several records (None: the sender's choice,
    /// a streamed message's fragments depend on the room there was).
    Msg {
        data: Vec<u8>,
        fragmented: Option<bool>,
    },
    /// A message abandoned part-way: reported as Truncated, or invisible.
    Abandoned,
}

struct Model {
    q: VecDeque<Expect>,
    next_id: u32,
}

impl Model {
    fn data(&mut self, len: usize) -> Vec<u8> {
        self.next_id += 1;
        let id = self.next_id;
        (0..len)
            .map(|k| (id.wrapping_mul(131) as usize + k) as u8 ^ (k >> 8) as u8)
            .collect()
    }

    fn has_message(&self) -> bool {
        self.q.iter().any(|e| matches!(e, Expect::Msg { .. }))
    }

    /// Drop leading markers (abandoned messages that published nothing),
    /// then return the first message.
    fn front_message(&mut self) -> (&[u8], Option<bool>) {
        while matches!(self.q.front(), Some(Expect::Abandoned)) {
            self.q.pop_front();
        }
        match self.q.front() {
            Some(Expect::Msg { data, fragmented }) => (data, *fragmented),
            other => panic!("a message was delivered but the model holds {other:?}"),
        }
    }

    fn delivered(&mut self, got: &[u8]) {
        let (want, _) = self.front_message();
        assert_eq!(got, want, "delivered message differs from the model");
        self.q.pop_front();
    }

    fn truncated(&mut self) {
        match self.q.pop_front() {
            Some(Expect::Abandoned) => {}
            other => panic!("Truncated reported, but the model's next entry is {other:?}"),
        }
    }

    fn empty(&self, what: &str) {
        assert!(
            !self.has_message(),
            "{what} reported nothing, but the model holds {:?}",
            self.q
        );
    }
}

fn run(ops: Vec<Op>) {
    let shm = Shm::new("bytes-model");
    let q = ByteRing::builder()
        .capacity(CAP)
        .max_message_size(MAX_MESSAGE)
        .spin(0)
        .create(shm.name())
        .unwrap();
    assert_eq!(q.max_record_payload(), MAX_RECORD);
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    let mut m = Model {
        q: VecDeque::new(),
        next_id: 0,
    };
    let now = Duration::ZERO;
    let mut buf = Vec::new();
    for op in ops {
        match op {
            Op::TrySend(len) => {
                let data = m.data(len);
                match tx.try_send(&data) {
                    Ok(()) => m.q.push_back(Expect::Msg {
                        data,
                        fragmented: Some(false),
                    }),
                    Err(SendError::Full) => assert!(len <= MAX_RECORD),
                    Err(SendError::TooLarge { max, .. }) => {
                        assert!(len > MAX_RECORD && max == MAX_RECORD)
                    }
                    Err(e) => panic!("try_send: {e:?}"),
                }
            }
            Op::SendNow(len) => {
                let data = m.data(len);
                match tx.send_timeout(&data, now) {
                    Ok(()) => m.q.push_back(Expect::Msg {
                        data,
                        fragmented: Some(len > CHUNK),
                    }),
                    Err(SendError::Timeout) if len > CHUNK => m.q.push_back(Expect::Abandoned),
                    Err(SendError::Timeout) => {}
                    Err(SendError::TooLarge { .. }) => assert!(len > MAX_MESSAGE),
                    Err(e) => panic!("send_timeout: {e:?}"),
                }
            }
            Op::Reserve { len, act } => {
                let data = m.data(len);
                match tx.try_reserve(len) {
                    Ok(mut w) => {
                        assert_eq!(w.len(), len);
                        let half = len / 2;
                        w.write_at(half, &data[half..]);
                        w.write_at(0, &data[..half]);
                        match act {
                            0 => {
                                w.commit();
                                m.q.push_back(Expect::Msg {
                                    data,
                                    fragmented: Some(false),
                                });
                            }
                            1 => {
                                w.commit_len(half);
                                m.q.push_back(Expect::Msg {
                                    data: data[..half].to_vec(),
                                    fragmented: Some(false),
                                });
                            }
                            _ => w.discard(),
                        }
                    }
                    Err(SendError::Full) => {}
                    Err(SendError::TooLarge { .. }) => assert!(len > MAX_RECORD),
                    Err(e) => panic!("try_reserve: {e:?}"),
                }
            }
            Op::Stream { len, piece } => {
                let data = m.data(len);
                let mut w = tx.write_message_timeout(now);
                let wrote = data.chunks(piece).try_for_each(|p| w.write_all(p));
                match wrote {
                    Ok(()) => match w.finish() {
                        Ok(()) => m.q.push_back(Expect::Msg {
                            data,
                            fragmented: if len > CHUNK { Some(true) } else { None },
                        }),
                        Err(SendError::Timeout) => m.q.push_back(Expect::Abandoned),
                        Err(e) => panic!("finish: {e:?}"),
                    },
                    Err(e) => {
                        assert!(
                            matches!(
                                e.kind(),
                                std::io::ErrorKind::TimedOut | std::io::ErrorKind::InvalidInput
                            ),
                            "write: {e}"
                        );
                        if e.kind() == std::io::ErrorKind::InvalidInput {
                            assert!(len > MAX_MESSAGE);
                        }
                        w.abort();
                        m.q.push_back(Expect::Abandoned);
                    }
                }
            }
            Op::TryRecv => match rx.try_recv(&mut buf) {
                Ok(()) => m.delivered(&buf),
                Err(RecvError::Truncated) => m.truncated(),
                Err(RecvError::Empty) => m.empty("try_recv"),
                Err(e) => panic!("try_recv: {e:?}"),
            },
            Op::RecvInto(n) => {
                let mut arr = vec![0u8; n];
                match rx.recv_into_timeout(&mut arr, now) {
                    Ok(k) => m.delivered(&arr[..k]),
                    Err(RecvError::BufferTooSmall { needed }) => {
                        let (want, _) = m.front_message();
                        assert_eq!(needed, want.len());
                        assert!(needed > n);
                    }
                    Err(RecvError::Truncated) => m.truncated(),
                    Err(RecvError::Timeout) => m.empty("recv_into"),
                    Err(e) => panic!("recv_into: {e:?}"),
                }
            }
            Op::TryRead => {
                let r = rx.try_read().map(|r| {
                    let mut v = vec![0u8; r.len()];
                    r.copy_to_slice(&mut v);
                    assert_eq!(v, r.to_vec());
                    v
                });
                match r {
                    Ok(v) => {
                        let (_, fragmented) = m.front_message();
                        assert_ne!(fragmented, Some(true), "a fragmented message read in place");
                        m.delivered(&v);
                    }
                    Err(RecvError::Fragmented) => {
                        // The next thing is the published part of an
                        // abandoned message, or a fragmented message.
                        let first_msg = m.q.iter().find(|e| !matches!(e, Expect::Abandoned));
                        match first_msg {
                            _ if matches!(m.q.front(), Some(Expect::Abandoned)) => {}
                            Some(Expect::Msg { fragmented, .. }) if *fragmented != Some(false) => {}
                            _ => panic!("Fragmented, but the model holds {:?}", m.q),
                        }
                    }
                    Err(RecvError::Truncated) => m.truncated(),
                    Err(RecvError::Empty) => m.empty("try_read"),
                    Err(e) => panic!("try_read: {e:?}"),
                }
            }
            Op::ReadMessage => match rx.read_message_timeout(now) {
                Ok(mut r) => {
                    let mut v = Vec::new();
                    match r.read_to_end(&mut v) {
                        Ok(_) => {
                            assert!(r.is_finished());
                            drop(r);
                            m.delivered(&v);
                        }
                        Err(e) => {
                            let inner = e.get_ref().and_then(|i| i.downcast_ref::<RecvError>());
                            match inner {
                                // Abandoned: reported, or (its end never
                                // coming) the read times out and dropping
                                // the reader skips it.
                                Some(RecvError::Truncated) | Some(RecvError::Timeout) => {
                                    drop(r);
                                    m.truncated();
                                }
                                other => panic!("read_to_end: {e} ({other:?})"),
                            }
                        }
                    }
                }
                Err(RecvError::Truncated) => m.truncated(),
                Err(RecvError::Timeout) => m.empty("read_message"),
                Err(e) => panic!("read_message: {e:?}"),
            },
        }
    }
    // The producer leaves: everything left drains, then Disconnected.
    drop(tx);
    for _ in 0..10_000 {
        match rx.try_recv(&mut buf) {
            Ok(()) => m.delivered(&buf),
            Err(RecvError::Truncated) => m.truncated(),
            Err(RecvError::Disconnected) => {
                m.empty("the final drain");
                return;
            }
            Err(e) => panic!("drain: {e:?}"),
        }
    }
    panic!("the drain did not end");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn framing_matches_a_queue_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}

#[test]
fn a_message_as_large_as_a_record_fits_at_any_offset() {
    // A record of capacity bytes needs an empty ring at offset 0: the PAD is
    // published on its own first, so it cannot livelock.
    for lead in [None, Some(0usize), Some(1), Some(8), Some(100), Some(240)] {
        let shm = Shm::new("bytes-maxrec");
        let q = ByteRing::create(shm.name(), CAP).unwrap();
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        let mut buf = Vec::new();
        if let Some(lead) = lead {
            tx.try_send(&vec![1; lead]).unwrap();
            rx.try_recv(&mut buf).unwrap();
        }
        let big = vec![2u8; MAX_RECORD];
        assert_eq!(
            tx.try_send(&big).is_ok(),
            lead.is_none(),
            "lead {lead:?}: fits at once only at offset 0"
        );
        if lead.is_some() {
            // The PAD went out; once it is consumed the record fits.
            assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Empty));
            tx.try_send(&big).unwrap();
        }
        rx.try_recv(&mut buf).unwrap();
        assert_eq!(buf, big);
        assert!(q.is_empty());
    }
}

#[test]
fn messages_beyond_the_consumers_limit_are_skipped_and_the_ring_stays_usable() {
    let shm = Shm::new("bytes-limit");
    let q = ByteRing::builder()
        .capacity(CAP)
        .create(shm.name())
        .unwrap();
    let small = ByteRing::builder()
        .max_message_size(100)
        .open(shm.name())
        .unwrap();
    let mut tx = q.producer().unwrap();
    let mut rx = small.consumer().unwrap();
    let mut buf = Vec::new();
    // One record over the limit, then a fragmented one, then a fine one.
    tx.try_send(&[1; 101]).unwrap();
    assert_eq!(
        rx.try_recv(&mut buf),
        Err(RecvError::TooLarge { len: 101, max: 100 })
    );
    tx.try_send(b"ok").unwrap();
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"ok");
    let mut w = tx.write_message();
    for _ in 0..5 {
        w.write_all(&[3; 100]).unwrap();
        w.flush().unwrap();
        // Drain as we go, or the small ring would fill.
        let _ = rx.try_recv(&mut buf);
    }
    w.finish().unwrap();
    tx.send(b"after").unwrap();
    let mut seen = Vec::new();
    loop {
        match rx.try_recv(&mut buf) {
            Ok(()) => {
                seen.push(buf.clone());
                break;
            }
            Err(RecvError::Empty) => break,
            Err(e) => seen.push(format!("{e:?}").into_bytes()),
        }
    }
    assert_eq!(seen.last().unwrap(), b"after");
    // The producer's own limit.
    let mut tx_small = {
        drop(tx);
        small.producer().unwrap()
    };
    assert_eq!(
        tx_small.send(&[0; 101]),
        Err(SendError::TooLarge { len: 101, max: 100 })
    );
}

#[test]
fn byte_ring_refuses_bad_capacities_and_other_kinds() {
    let shm = Shm::new("bytes-args");
    for bad in [0, 8, 56, 65, 1001] {
        assert!(matches!(
            ByteRing::create(shm.name(), bad),
            Err(shmqueue::Error::InvalidArgument { .. })
        ));
    }
    let _q = shmqueue::Spsc::<u64>::create(shm.name(), 8).unwrap();
    assert!(matches!(
        ByteRing::open(shm.name()),
        Err(shmqueue::Error::Incompatible {
            field: "queue kind",
            ..
        })
    ));
}
