//! Byte messages through a broadcast ring (`broadcast::messages`): every
//! size reaches every subscriber whole, a subscriber lapped or evicted
//! mid-message says exactly what it lost, and chunks written by a hostile
//! publisher give typed errors, after which the subscriber reads on. One
//! test runs the subscribers as separate processes.

mod common;

use std::thread;
use std::time::Duration;

use bytemuck::{Pod, Zeroable};
use common::*;
use proptest::prelude::*;
use shmqueue::broadcast::messages::{
    self, MessageError, MessageSubscriber, PublishError, CHUNK_DATA, MESSAGE_SCHEMA,
};
use shmqueue::broadcast::{Broadcast, Publisher, Start};
use shmqueue::Error;

/// Message `i` of length `len`: bytes that depend on both, so a message
/// put together from the wrong chunks cannot pass.
fn message(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (i.wrapping_mul(31) ^ (k as u64).wrapping_mul(7) ^ (k as u64 >> 8)) as u8)
        .collect()
}

/// A chunk as the segment holds it, for writing hostile ones: the same
/// size, alignment and schema as `messages::Chunk`, so it opens the ring.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawChunk {
    first: u64,
    total: u64,
    len: u32,
    pad: u32,
    data: [u8; 96],
}

fn raw(first: u64, total: u64, len: u32) -> RawChunk {
    RawChunk {
        first,
        total,
        len,
        ..RawChunk::zeroed()
    }
}

fn raw_publisher(name: &str) -> Publisher<RawChunk> {
    Broadcast::<RawChunk>::builder()
        .schema(MESSAGE_SCHEMA)
        .open(name)
        .unwrap()
        .publisher()
        .unwrap()
}

/// Receive `sizes.len()` messages and check each is `message(i, size)`.
fn expect_all(rx: &mut MessageSubscriber, sizes: &[usize]) {
    for (i, &len) in sizes.iter().enumerate() {
        let m = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("message {i} ({len} bytes): {e}"));
        assert!(
            m == message(i as u64, len),
            "message {i} ({len} bytes) differs"
        );
    }
}

#[test]
fn messages_of_every_size_reach_two_subscribers_whole_and_in_order() {
    let shm = Shm::new("bcm-sizes");
    // 8 chunks: most of these messages are larger than the ring and stream
    // through it.
    let q = messages::builder().capacity(8).create(shm.name()).unwrap();
    let d = CHUNK_DATA;
    let sizes = vec![
        0,
        1,
        d - 1,
        d,
        d + 1,
        2 * d,
        8 * d,
        8 * d + 1,
        1000,
        100_000,
        1 << 20,
        0,
        3,
    ];
    let subs: Vec<_> = (0..2)
        .map(|_| {
            let mut rx = q.message_subscriber(Start::Latest).unwrap();
            let sizes = sizes.clone();
            thread::spawn(move || expect_all(&mut rx, &sizes))
        })
        .collect();
    let mut tx = q.message_publisher().unwrap();
    for (i, &len) in sizes.iter().enumerate() {
        tx.publish_timeout(&message(i as u64, len), DEADLINE)
            .unwrap();
    }
    for s in subs {
        s.join().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_sizes_through_any_capacity_arrive_as_sent(
        sizes in prop::collection::vec(0usize..2000, 1..24),
        capacity in 1usize..12,
    ) {
        let shm = Shm::new("bcm-prop");
        let q = messages::builder().capacity(capacity).create(shm.name()).unwrap();
        let mut rx = q.message_subscriber(Start::Latest).unwrap();
        let s2 = sizes.clone();
        let sub = thread::spawn(move || expect_all(&mut rx, &s2));
        let mut tx = q.message_publisher().unwrap();
        for (i, &len) in sizes.iter().enumerate() {
            tx.publish_timeout(&message(i as u64, len), DEADLINE).unwrap();
        }
        sub.join().unwrap();
    }
}

#[test]
fn a_subscriber_lapped_mid_message_says_what_it_lost_and_reads_on() {
    let shm = Shm::new("bcm-lap");
    let q = messages::builder()
        .capacity(8)
        .overwrite()
        .create(shm.name())
        .unwrap();
    let mut rx = q.message_subscriber(Start::Latest).unwrap();
    let mut raw_tx = raw_publisher(shm.name());
    // Two chunks of a five-chunk (480-byte) message at positions 0 and 1.
    let total = 5 * CHUNK_DATA as u64;
    for _ in 0..2 {
        raw_tx.try_publish(raw(0, total, 96)).unwrap();
    }
    assert_eq!(rx.try_recv(), Err(MessageError::Empty));
    // The rest of it (2..5), then one-chunk messages at 5..22: the ring
    // of 8 laps the subscriber, whose cursor is at 2.
    for _ in 2..5 {
        raw_tx.try_publish(raw(0, total, 96)).unwrap();
    }
    for p in 5..22 {
        raw_tx.try_publish(raw(p, 10, 10)).unwrap();
    }
    // The oldest safe position with 22 published is 22 - 8 + 1 = 15.
    assert_eq!(
        rx.try_recv(),
        Err(MessageError::Lagged {
            missed_chunks: 13,
            dropped: 2 * CHUNK_DATA,
        })
    );
    assert_eq!(rx.try_recv().unwrap(), vec![0u8; 10]);
    assert_eq!(rx.subscriber().position(), 16);
}

#[test]
fn a_subscriber_that_joins_mid_message_starts_with_the_next_whole_one() {
    let shm = Shm::new("bcm-join");
    let q = messages::builder().capacity(16).create(shm.name()).unwrap();
    let mut tx = q.message_publisher().unwrap();
    tx.publish(&message(0, 3 * CHUNK_DATA)).unwrap();
    tx.publish(&message(1, 5)).unwrap();
    // Position 1 is the middle of message 0.
    let mut rx = q.message_subscriber(Start::At(1)).unwrap();
    assert_eq!(rx.try_recv().unwrap(), message(1, 5));
    assert_eq!(rx.try_recv(), Err(MessageError::Empty));
}

#[test]
fn hostile_chunks_give_typed_errors_and_the_next_message_still_arrives() {
    let shm = Shm::new("bcm-hostile");
    let q = messages::builder().capacity(64).create(shm.name()).unwrap();
    let mut rx = q
        .message_subscriber(Start::Latest)
        .unwrap()
        .max_message_size(1000);
    let mut tx = raw_publisher(shm.name());
    let good = |tx: &mut Publisher<RawChunk>| {
        let p = tx.position();
        tx.try_publish(raw(p, 4, 4)).unwrap();
    };
    let corrupt = |e: Result<Vec<u8>, MessageError>, what: &str| match e {
        Err(MessageError::Corrupt(c)) => assert_eq!(c.what, what, "{c}"),
        other => panic!("expected a corrupt {what}, got {other:?}"),
    };
    // A length beyond a chunk.
    tx.try_publish(raw(0, 500, 200)).unwrap();
    corrupt(rx.try_recv(), "message chunk length");
    good(&mut tx);
    assert_eq!(rx.try_recv().unwrap(), vec![0u8; 4]);
    // A first chunk that names a later position.
    tx.try_publish(raw(1000, 4, 4)).unwrap();
    corrupt(rx.try_recv(), "message chunk start");
    good(&mut tx);
    assert_eq!(rx.try_recv().unwrap(), vec![0u8; 4]);
    // Longer than the subscriber accepts: skipped whole, nothing allocated.
    let p = tx.position();
    tx.try_publish(raw(p, u64::MAX, 96)).unwrap();
    tx.try_publish(raw(p, u64::MAX, 96)).unwrap();
    assert_eq!(
        rx.try_recv(),
        Err(MessageError::TooLarge {
            len: u64::MAX,
            max: 1000
        })
    );
    good(&mut tx);
    assert_eq!(rx.try_recv().unwrap(), vec![0u8; 4]);
    // A short chunk that does not end its message.
    let p = tx.position();
    tx.try_publish(raw(p, 300, 50)).unwrap();
    corrupt(rx.try_recv(), "message chunk length");
    good(&mut tx);
    assert_eq!(rx.try_recv().unwrap(), vec![0u8; 4]);
    // A continuation whose header disagrees with its first chunk.
    let p = tx.position();
    tx.try_publish(raw(p, 300, 96)).unwrap();
    tx.try_publish(raw(p, 299, 96)).unwrap();
    corrupt(rx.try_recv(), "message chunk header");
    good(&mut tx);
    assert_eq!(rx.try_recv().unwrap(), vec![0u8; 4]);
    // A first chunk longer than its own message.
    let p = tx.position();
    tx.try_publish(raw(p, 3, 4)).unwrap();
    corrupt(rx.try_recv(), "message chunk length");
    good(&mut tx);
    assert_eq!(rx.try_recv().unwrap(), vec![0u8; 4]);
    assert_eq!(rx.try_recv(), Err(MessageError::Empty));
}

#[test]
fn an_abandoned_message_is_reported_once_then_the_next_one_arrives() {
    let shm = Shm::new("bcm-abandon");
    let q = messages::builder().capacity(4).create(shm.name()).unwrap();
    let mut rx = q.message_subscriber(Start::Latest).unwrap();
    let mut tx = q.message_publisher().unwrap();
    // 10 chunks into a ring of 4 nobody drains: the publisher times out
    // after 4. (The timeout is the behaviour under test, not a pause.)
    let big = message(0, 10 * CHUNK_DATA);
    assert_eq!(
        tx.publish_timeout(&big, Duration::from_millis(20)),
        Err(PublishError::Timeout {
            sent: 4 * CHUNK_DATA
        })
    );
    assert_eq!(rx.try_recv(), Err(MessageError::Empty)); // holds 4 chunks
    tx.publish_timeout(b"next", DEADLINE).unwrap();
    assert_eq!(
        rx.try_recv(),
        Err(MessageError::Abandoned {
            received: 4 * CHUNK_DATA,
            len: 10 * CHUNK_DATA as u64,
        })
    );
    assert_eq!(rx.try_recv().unwrap(), b"next");
    // A publisher that goes away mid-message: Abandoned, then Disconnected.
    drop(tx);
    let mut raw_tx = raw_publisher(shm.name());
    let p = raw_tx.position();
    raw_tx.try_publish(raw(p, 500, 96)).unwrap();
    assert_eq!(rx.try_recv(), Err(MessageError::Empty));
    drop(raw_tx);
    assert_eq!(
        rx.try_recv(),
        Err(MessageError::Abandoned {
            received: 96,
            len: 500
        })
    );
    assert_eq!(rx.try_recv(), Err(MessageError::Disconnected));
}

#[test]
fn an_overwrite_ring_refuses_a_message_it_cannot_hold() {
    let shm = Shm::new("bcm-toolarge");
    let q = messages::builder()
        .capacity(4)
        .overwrite()
        .create(shm.name())
        .unwrap();
    let mut tx = q.message_publisher().unwrap();
    assert_eq!(
        tx.publish(&[1u8; 4 * CHUNK_DATA + 1]),
        Err(PublishError::TooLarge {
            len: 4 * CHUNK_DATA + 1,
            max: 4 * CHUNK_DATA
        })
    );
    let mut rx = q.message_subscriber(Start::Latest).unwrap();
    tx.publish(&[1u8; 4 * CHUNK_DATA]).unwrap();
    assert_eq!(rx.try_recv().unwrap(), vec![1u8; 4 * CHUNK_DATA]);
}

#[test]
fn a_message_ring_and_a_typed_ring_do_not_open_as_each_other() {
    let m = Shm::new("bcm-kind-m");
    let t = Shm::new("bcm-kind-t");
    let _q = messages::builder().create(m.name()).unwrap();
    let _t = Broadcast::<RawChunk>::create(t.name(), 8).unwrap();
    // Same size and alignment, no schema tag: refused.
    assert!(matches!(
        Broadcast::<RawChunk>::open(m.name()),
        Err(Error::Incompatible { .. })
    ));
    assert!(matches!(
        messages::open(t.name()),
        Err(Error::Incompatible { .. })
    ));
}

/// The subscriber child: `COUNT` messages of lengths `size(i)`, each
/// checked byte for byte, then `done`.
fn message_child() -> Result<(), String> {
    let name = child_arg("NAME");
    let count: u64 = child_arg("COUNT").parse().unwrap();
    let mut rx = messages::open(&name)
        .map_err(|e| e.to_string())?
        .message_subscriber(Start::Oldest)
        .map_err(|e| e.to_string())?;
    tell_parent("ready");
    for i in 0..count {
        let m = rx
            .recv_timeout(DEADLINE)
            .map_err(|e| format!("message {i}: {e}"))?;
        if m != message(i, size(i)) {
            return Err(format!("message {i} differs ({} bytes)", m.len()));
        }
    }
    tell_parent("done");
    Ok(())
}

fn size(i: u64) -> usize {
    (i.wrapping_mul(2654435761) % 3000) as usize
}

#[test]
fn subscriber_processes_get_every_message_whole() {
    if let Some(role) = child_role() {
        run_child(|| match role.as_str() {
            "msg" => message_child(),
            other => Err(format!("unknown role {other}")),
        });
    }
    let test = "subscriber_processes_get_every_message_whole";
    let shm = Shm::new("bcm-procs");
    let q = messages::builder().capacity(64).create(shm.name()).unwrap();
    const COUNT: u64 = 5000;
    let mut kids: Vec<ChildProc> = (0..2)
        .map(|_| {
            spawn(
                test,
                "msg",
                &[
                    ("NAME", shm.name().to_owned()),
                    ("COUNT", COUNT.to_string()),
                ],
            )
        })
        .collect();
    for k in &mut kids {
        assert_eq!(k.expect_line(), "ready");
    }
    let mut tx = q.message_publisher().unwrap();
    for i in 0..COUNT {
        tx.publish_timeout(&message(i, size(i)), DEADLINE).unwrap();
    }
    for k in &mut kids {
        assert_eq!(k.expect_line(), "done");
        k.success();
    }
}
