//! The byte ring between real processes: this test binary re-executes itself
//! as the peer (see tests/common). Every wait has a deadline; the parent
//! learns where the child is from lines it prints, never from sleeps.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use shmqueue::{ByteRing, RecvError};

/// A small deterministic generator (xorshift64*), so both processes derive
/// the same message sequence from a seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// FNV-1a, 64 bits.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Message `i` of the sequence for `seed`: its length (0 to 4x the ring)
/// and contents, and how the producer sends it / the consumer receives it.
struct Plan {
    rng: Rng,
    max_len: u64,
}

impl Plan {
    fn new(seed: u64, ring: usize) -> Plan {
        Plan {
            rng: Rng::new(seed),
            max_len: 4 * ring as u64,
        }
    }
    /// (message, send method 0..4, receive method 0..4)
    fn next(&mut self) -> (Vec<u8>, u64, u64) {
        // Mostly short, some up to 4x the ring, the edges often.
        let len = match self.rng.below(8) {
            0 => 0,
            1 => self.max_len,
            2..=4 => self.rng.below(self.max_len + 1),
            _ => self.rng.below(200),
        } as usize;
        let mut m = vec![0u8; len];
        self.rng.fill(&mut m);
        (m, self.rng.below(4), self.rng.below(4))
    }
}

const RING: usize = 4096;
const MESSAGES: usize = 3000;
const SEED: u64 = 0x5eed_0007;

fn open(name: &str) -> Result<ByteRing, String> {
    ByteRing::open(name).map_err(|e| e.to_string())
}

#[test]
fn random_length_messages_up_to_4x_the_ring_cross_processes_intact() {
    if child_role().is_some() {
        run_child(|| {
            let q = open(&child_arg("NAME"))?;
            let mut tx = q.producer().map_err(|e| e.to_string())?;
            let mut plan = Plan::new(SEED, RING);
            for i in 0..MESSAGES {
                let (m, how, _) = plan.next();
                let r = match how {
                    // Blocking send (fragments beyond half the ring).
                    0 => tx.send(&m).map_err(|e| e.to_string()),
                    // Non-blocking single record when it fits in one.
                    1 if m.len() <= tx.max_record_payload() => loop {
                        match tx.try_send(&m) {
                            Ok(()) => break Ok(()),
                            Err(shmqueue::SendError::Full) => std::thread::yield_now(),
                            Err(e) => break Err(e.to_string()),
                        }
                    },
                    // Zero-copy: reserve, write in two halves, commit.
                    2 if m.len() <= tx.max_record_payload() => {
                        let mut w = tx.reserve(m.len()).map_err(|e| e.to_string())?;
                        let half = m.len() / 2;
                        w.write_at(half, &m[half..]);
                        w.write_at(0, &m[..half]);
                        w.commit();
                        Ok(())
                    }
                    // Streaming, in uneven writes.
                    _ => {
                        let mut w = tx.write_message();
                        for piece in m.chunks(777) {
                            w.write_all(piece).map_err(|e| e.to_string())?;
                        }
                        w.finish().map_err(|e| e.to_string())
                    }
                };
                r.map_err(|e| format!("message {i} ({} bytes): {e}", m.len()))?;
            }
            Ok(())
        });
    }
    let shm = Shm::new("bytes-rand");
    let q = ByteRing::create(shm.name(), RING).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "random_length_messages_up_to_4x_the_ring_cross_processes_intact",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    let mut plan = Plan::new(SEED, RING);
    let mut buf = Vec::new();
    let mut arr = vec![0u8; 4 * RING];
    let mut bytes = 0usize;
    for i in 0..MESSAGES {
        let (want, _, how) = plan.next();
        let got: Vec<u8> = match how {
            0 => {
                rx.recv_timeout(&mut buf, DEADLINE)
                    .unwrap_or_else(|e| panic!("message {i}: {e:?}"));
                buf.clone()
            }
            1 => {
                let n = rx
                    .recv_into_timeout(&mut arr, DEADLINE)
                    .unwrap_or_else(|e| panic!("message {i}: {e:?}"));
                arr[..n].to_vec()
            }
            2 => {
                // In place when it came in one record; otherwise recv.
                let in_place = match rx.read_timeout(DEADLINE) {
                    Ok(r) => Some(r.to_vec()),
                    Err(RecvError::Fragmented) => None,
                    Err(e) => panic!("message {i}: {e:?}"),
                };
                in_place.unwrap_or_else(|| {
                    rx.recv_timeout(&mut buf, DEADLINE)
                        .unwrap_or_else(|e| panic!("message {i}: {e:?}"));
                    buf.clone()
                })
            }
            _ => {
                let mut r = rx
                    .read_message_timeout(DEADLINE)
                    .unwrap_or_else(|e| panic!("message {i}: {e:?}"));
                let mut v = Vec::new();
                let mut piece = [0u8; 1000];
                loop {
                    match r.read(&mut piece) {
                        Ok(0) => break,
                        Ok(n) => v.extend_from_slice(&piece[..n]),
                        Err(e) => panic!("message {i}: {e}"),
                    }
                }
                assert!(r.is_finished());
                v
            }
        };
        assert_eq!(got.len(), want.len(), "length of message {i}");
        assert_eq!(checksum(&got), checksum(&want), "checksum of message {i}");
        bytes += got.len();
    }
    child.success();
    assert_eq!(
        rx.recv_timeout(&mut buf, DEADLINE),
        Err(RecvError::Disconnected)
    );
    assert!(
        bytes > MESSAGES * RING / 2,
        "the sequence exercised long messages"
    );
}

#[test]
fn a_ten_mebibyte_message_streams_through_a_64k_ring() {
    const LEN: usize = 10 << 20;
    if child_role().is_some() {
        run_child(|| {
            let q = open(&child_arg("NAME"))?;
            let mut tx = q.producer().map_err(|e| e.to_string())?;
            let mut m = vec![0u8; LEN];
            Rng::new(7).fill(&mut m);
            tx.send(&m).map_err(|e| e.to_string())?;
            let mut w = tx.write_message();
            w.write_all(&m).map_err(|e| e.to_string())?;
            w.finish().map_err(|e| e.to_string())
        });
    }
    let shm = Shm::new("bytes-big");
    let q = ByteRing::builder()
        .capacity(64 << 10)
        .max_message_size(LEN)
        .create(shm.name())
        .unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "a_ten_mebibyte_message_streams_through_a_64k_ring",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    let mut want = vec![0u8; LEN];
    Rng::new(7).fill(&mut want);
    let mut buf = Vec::new();
    rx.recv_timeout(&mut buf, DEADLINE).unwrap();
    assert!(buf == want, "reassembled message differs");
    // Streamed: hash as it arrives, never holding it whole.
    let mut r = rx.read_message_timeout(DEADLINE).unwrap();
    let (mut h, mut n) = (0xcbf2_9ce4_8422_2325u64, 0usize);
    let mut piece = vec![0u8; 3000];
    loop {
        let k = r.read(&mut piece).unwrap();
        if k == 0 {
            break;
        }
        for &b in &piece[..k] {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        n += k;
    }
    drop(r);
    assert_eq!((n, h), (LEN, checksum(&want)));
    child.success();
}

#[test]
fn reserve_then_drop_publishes_nothing_across_processes() {
    if child_role().is_some() {
        run_child(|| {
            let q = open(&child_arg("NAME"))?;
            let mut tx = q.producer().map_err(|e| e.to_string())?;
            for len in [0, 1, 100, 3000, q.max_record_payload()] {
                let mut w = tx.reserve(len).map_err(|e| e.to_string())?;
                w.write_at(0, &vec![0xEE; len]);
                w.discard();
            }
            // Wrap the ring several times with dropped reservations between
            // committed ones.
            for i in 0..100u32 {
                // Dropped at the end of the statement, uncommitted.
                let _ = tx.reserve(1000).map_err(|e| e.to_string())?;
                tx.send(&i.to_le_bytes()).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
    }
    let shm = Shm::new("bytes-drop");
    let q = ByteRing::create(shm.name(), RING).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "reserve_then_drop_publishes_nothing_across_processes",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    let mut buf = Vec::new();
    for i in 0..100u32 {
        rx.recv_timeout(&mut buf, DEADLINE).unwrap();
        assert_eq!(buf, i.to_le_bytes(), "only committed messages arrive");
    }
    child.success();
    assert_eq!(
        rx.recv_timeout(&mut buf, DEADLINE),
        Err(RecvError::Disconnected)
    );
}

/// Child: wait to be killed, without spinning.
fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

#[test]
fn producer_killed_inside_a_reserved_record_publishes_nothing() {
    if child_role().is_some() {
        run_child(|| {
            let q = open(&child_arg("NAME"))?;
            let mut tx = q.producer().map_err(|e| e.to_string())?;
            tx.send(b"before").map_err(|e| e.to_string())?;
            let mut w = tx.reserve(1000).map_err(|e| e.to_string())?;
            w.write_at(0, &[0xAB; 500]);
            tell_parent("half");
            park_forever();
        });
    }
    let shm = Shm::new("bytes-killres");
    let q = ByteRing::create(shm.name(), RING).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "producer_killed_inside_a_reserved_record_publishes_nothing",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    assert_eq!(child.expect_line(), "half");
    child.sigkill();
    let killed = Instant::now();
    let mut buf = Vec::new();
    rx.recv_timeout(&mut buf, DEADLINE).unwrap();
    assert_eq!(buf, b"before");
    // The half-written record was never published: the ring is drained and
    // the producer is gone.
    assert_eq!(
        rx.recv_timeout(&mut buf, DEADLINE),
        Err(RecvError::Disconnected)
    );
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "noticed the death"
    );
    assert!(q.is_empty());
    // A new producer takes over and is received intact.
    let mut tx = q.producer().unwrap();
    tx.send(b"after").unwrap();
    rx.recv_timeout(&mut buf, DEADLINE).unwrap();
    assert_eq!(buf, b"after");
}

/// Child for the mid-message kills: publish `FRAGMENTS` fragments of a
/// message through a MessageWriter (flush publishes each), then wait.
const FRAGMENTS: usize = 3;

fn child_dies_mid_message() -> ! {
    run_child(|| {
        let q = open(&child_arg("NAME"))?;
        let mut tx = q.producer().map_err(|e| e.to_string())?;
        tx.send(b"whole").map_err(|e| e.to_string())?;
        let mut w = tx.write_message();
        for i in 0..FRAGMENTS {
            w.write_all(&[i as u8; 1000]).map_err(|e| e.to_string())?;
            w.flush().map_err(|e| e.to_string())?;
        }
        tell_parent("fragments out");
        park_forever();
    })
}

#[test]
fn producer_killed_mid_message_gives_truncated_not_a_short_message() {
    if child_role().is_some() {
        child_dies_mid_message();
    }
    let shm = Shm::new("bytes-killmsg");
    let q = ByteRing::create(shm.name(), RING).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "producer_killed_mid_message_gives_truncated_not_a_short_message",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    let mut buf = Vec::new();
    rx.recv_timeout(&mut buf, DEADLINE).unwrap();
    assert_eq!(buf, b"whole");
    assert_eq!(child.expect_line(), "fragments out");
    // The fragments are in the ring, the end never comes.
    assert_eq!(
        rx.recv_timeout(&mut buf, Duration::from_millis(20)),
        Err(RecvError::Timeout)
    );
    child.sigkill();
    assert_eq!(
        rx.recv_timeout(&mut buf, DEADLINE),
        Err(RecvError::Truncated)
    );
    assert_eq!(
        rx.recv_timeout(&mut buf, DEADLINE),
        Err(RecvError::Disconnected)
    );
    // A new producer's messages arrive whole.
    let mut tx = q.producer().unwrap();
    tx.send(b"fresh").unwrap();
    rx.recv_timeout(&mut buf, DEADLINE).unwrap();
    assert_eq!(buf, b"fresh");
}

#[test]
fn producer_killed_mid_message_fails_a_streaming_read() {
    if child_role().is_some() {
        child_dies_mid_message();
    }
    let shm = Shm::new("bytes-killstream");
    let q = ByteRing::create(shm.name(), RING).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "producer_killed_mid_message_fails_a_streaming_read",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    let mut buf = Vec::new();
    rx.recv_timeout(&mut buf, DEADLINE).unwrap();
    assert_eq!(child.expect_line(), "fragments out");
    child.sigkill();
    let mut r = rx.read_message_timeout(DEADLINE).unwrap();
    let mut got = Vec::new();
    let err = r.read_to_end(&mut got).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<RecvError>());
    assert_eq!(inner, Some(&RecvError::Truncated));
    assert!(!r.is_finished());
    drop(r);
    // What arrived before the death was streamed, and is flagged incomplete.
    assert_eq!(got.len(), FRAGMENTS * 1000);
    assert_eq!(
        rx.recv_timeout(&mut buf, DEADLINE),
        Err(RecvError::Disconnected)
    );
}

#[test]
fn a_restarted_consumer_that_missed_the_start_reports_truncated_then_continues() {
    // Single process: the first consumer takes the first fragment and is
    // dropped; its successor must not pass the rest off as a message.
    let shm = Shm::new("bytes-resume");
    let q = ByteRing::create(shm.name(), 256).unwrap();
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    let big = [5u8; 200]; // > half the ring: fragments
    let mut w = tx.write_message();
    w.write_all(&big[..100]).unwrap();
    w.flush().unwrap(); // first fragment out
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Empty)); // holds it
    drop(rx);
    let mut rx = q.consumer().unwrap();
    w.write_all(&big[100..]).unwrap();
    w.finish().unwrap();
    tx.send(b"next").unwrap();
    assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Truncated));
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"next");
}

#[test]
fn consumer_gone_is_disconnected_for_the_producer() {
    if child_role().is_some() {
        run_child(|| {
            let q = open(&child_arg("NAME"))?;
            let rx = q.consumer().map_err(|e| e.to_string())?;
            tell_parent("attached");
            drop(rx);
            tell_parent("dropped");
            Ok(())
        });
    }
    let shm = Shm::new("bytes-consgone");
    let q = ByteRing::create(shm.name(), RING).unwrap();
    let mut tx = q.producer().unwrap();
    let mut child = spawn(
        "consumer_gone_is_disconnected_for_the_producer",
        "consumer",
        &[("NAME", shm.0.clone())],
    );
    assert_eq!(child.expect_line(), "attached");
    assert_eq!(child.expect_line(), "dropped");
    child.success();
    assert_eq!(tx.send(b"x"), Err(shmqueue::SendError::Disconnected));
}

#[test]
fn consumer_killed_is_noticed_by_a_blocked_producer_within_a_second() {
    if child_role().is_some() {
        run_child(|| {
            let q = open(&child_arg("NAME"))?;
            let _rx = q.consumer().map_err(|e| e.to_string())?;
            tell_parent("attached");
            park_forever();
        });
    }
    let shm = Shm::new("bytes-killcons");
    let q = ByteRing::create(shm.name(), RING).unwrap();
    let mut tx = q.producer().unwrap();
    let mut child = spawn(
        "consumer_killed_is_noticed_by_a_blocked_producer_within_a_second",
        "consumer",
        &[("NAME", shm.0.clone())],
    );
    assert_eq!(child.expect_line(), "attached");
    // Fill the ring; the consumer never reads.
    while tx.try_send(&[1; 1000]).is_ok() {}
    child.sigkill();
    let killed = Instant::now();
    // A blocked send (the ring stays full) notices the death.
    assert_eq!(
        tx.send_timeout(&[2; 1000], DEADLINE),
        Err(shmqueue::SendError::Disconnected)
    );
    assert!(killed.elapsed() < Duration::from_secs(1));
    // What was sent stays for a new consumer.
    let mut rx = q.consumer().unwrap();
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(buf, [1; 1000]);
}
