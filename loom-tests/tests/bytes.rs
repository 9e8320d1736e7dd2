//! loom models of the byte ring: the library's own framing code over a
//! heap-allocated header and one loom cell per data byte, so loom checks
//! every byte the producer writes against every byte the consumer reads.
//!
//! Run with: `RUSTFLAGS="--cfg shmqueue_loom" cargo test --release -p loom-tests --test bytes`.
#![cfg(shmqueue_loom)]

use loom::thread;
use loom_tests::model;
use shmqueue::{ByteRing, RecvError, SendError};

/// The smallest ring: 64 bytes, so records wrap (with PAD records) and a
/// message of more than 24 bytes is sent in fragments.
fn ring() -> ByteRing {
    ByteRing::builder().capacity(64).spin(0).create_in_heap()
}

fn message(i: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| i.wrapping_mul(31).wrapping_add(k as u8))
        .collect()
}

/// Blocking send/recv of records that do not fit before the end: 20 bytes
/// (a 32-byte record), then 30 (40 bytes: PAD, wait, wrap), then 12.
#[test]
fn records_wrap_with_pad_blocking() {
    model(|| {
        let q = ring();
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let lens = [20usize, 30, 12];
        let t = thread::spawn(move || {
            for (i, &len) in lens.iter().enumerate() {
                tx.send(&message(i as u8, len)).unwrap();
            }
        });
        let mut buf = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            rx.recv(&mut buf).unwrap();
            assert_eq!(buf, message(i as u8, len));
        }
        t.join().unwrap();
        assert_eq!(rx.recv(&mut buf), Err(RecvError::Disconnected));
    });
}

/// A 50-byte message through the 64-byte ring: three fragments (24, 24, 2),
/// each published as written, reassembled by the consumer.
#[test]
fn fragmented_message_reassembles() {
    model(|| {
        let q = ring();
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let t = thread::spawn(move || {
            tx.send(&message(7, 50)).unwrap();
        });
        let mut buf = Vec::new();
        rx.recv(&mut buf).unwrap();
        assert_eq!(buf, message(7, 50));
        t.join().unwrap();
    });
}

/// Reservations: one dropped, one committed, with non-blocking calls on
/// both sides; only the committed one arrives, read in place.
#[test]
fn only_committed_reservations_arrive() {
    model(|| {
        let q = ring();
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let t = thread::spawn(move || {
            let mut w = tx.try_reserve(16).unwrap();
            w.write_at(0, &[0xEE; 16]);
            w.discard();
            loop {
                match tx.try_reserve(9) {
                    Ok(mut w) => {
                        w.copy_from_slice(&message(1, 9));
                        w.commit();
                        break;
                    }
                    Err(SendError::Full) => thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
        loop {
            match rx.try_read() {
                Ok(r) => {
                    assert_eq!(r.to_vec(), message(1, 9));
                    break;
                }
                Err(RecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e:?}"),
            }
        }
        t.join().unwrap();
    });
}
