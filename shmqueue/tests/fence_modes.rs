//! Processes in different fence modes (`SHMQUEUE_FENCE=symmetric` or the
//! default asymmetric one) lose no wake-ups between them.
//!
//! A consumer process sleeps for every item (spin 0) and a producer process
//! pushes the next item only once the previous one was acknowledged, so
//! every item needs a wake-up and a lost one is not rescued by the next
//! push: only the consumer's 100 ms liveness slice ends its sleep. The
//! consumer counts such sleeps (`shmqueue::slice_wakeups`); the test
//! requires none. The producer pushes right as the consumer goes to sleep
//! (it sees the acknowledgement the consumer sent just before), with a
//! random delay of up to a few hundred ns, so that many pushes land in the
//! waiter's arm-fence-recheck window, where a missing fence loses the wake.

mod common;

use std::time::Instant;

use common::*;
use shmqueue::{Spsc, TryPopError};

/// Items, each needing a wake-up. A lost one costs 100 ms, so a broken
/// fence pairing shows as a non-zero count well before the end.
const N: u64 = 200_000;

fn consumer_role() -> Result<(), String> {
    let data = child_arg("DATA");
    let acks = child_arg("ACKS");
    let mut rx = Spsc::<u64>::builder()
        .spin(0)
        .open(&data)
        .and_then(|q| q.consumer())
        .map_err(|e| e.to_string())?;
    let mut ack = Spsc::<u64>::open(&acks)
        .and_then(|q| q.producer())
        .map_err(|e| e.to_string())?;
    tell_parent("ready");
    for i in 0..N {
        match rx.pop_timeout(DEADLINE) {
            Ok(v) if v == i => {}
            other => return Err(format!("item {i}: got {other:?}")),
        }
        ack.try_push(i).map_err(|e| format!("ack {i}: {e}"))?;
    }
    tell_parent(&format!("slice_wakeups {}", shmqueue::slice_wakeups()));
    Ok(())
}

fn producer_role() -> Result<(), String> {
    let data = child_arg("DATA");
    let acks = child_arg("ACKS");
    let mut tx = Spsc::<u64>::open(&data)
        .and_then(|q| q.producer())
        .map_err(|e| e.to_string())?;
    let mut ack = Spsc::<u64>::open(&acks)
        .and_then(|q| q.consumer())
        .map_err(|e| e.to_string())?;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    for i in 0..N {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        for _ in 0..rng % 4 {
            std::hint::spin_loop();
        }
        tx.push(i).map_err(|e| format!("push {i}: {e}"))?;
        // Busy-poll, so that the next push follows this acknowledgement
        // within a cache-line transfer, while the consumer is arming.
        let end = Instant::now() + DEADLINE;
        loop {
            match ack.try_pop() {
                Ok(v) if v == i => break,
                Ok(v) => return Err(format!("ack {i}: got {v}")),
                Err(TryPopError::Empty) if Instant::now() < end => {}
                Err(e) => return Err(format!("ack {i}: {e}")),
            }
        }
    }
    Ok(())
}

/// Run a consumer process in `consumer_fence` mode against a producer
/// process in `producer_fence` mode ("" = default, asymmetric).
fn mixed_pair(test: &str, consumer_fence: &str, producer_fence: &str) {
    if let Some(role) = child_role() {
        run_child(|| match role.as_str() {
            "consumer" => consumer_role(),
            "producer" => producer_role(),
            r => Err(format!("unknown role {r}")),
        });
    }
    let data = Shm::new("fence-data");
    let acks = Shm::new("fence-acks");
    let _dq = Spsc::<u64>::create(data.name(), 4).unwrap();
    let _aq = Spsc::<u64>::create(acks.name(), 4).unwrap();
    let args = [("DATA", data.0.clone()), ("ACKS", acks.0.clone())];
    let mut consumer = spawn_env(
        test,
        "consumer",
        &args,
        &[("SHMQUEUE_FENCE", consumer_fence)],
    );
    assert_eq!(consumer.expect_line(), "ready");
    let mut producer = spawn_env(
        test,
        "producer",
        &args,
        &[("SHMQUEUE_FENCE", producer_fence)],
    );
    let report = consumer.expect_line();
    producer.success();
    consumer.success();
    let missed: u64 = report
        .strip_prefix("slice_wakeups ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected report {report:?}"));
    eprintln!("{test}: {missed} of {N} wake-ups found only by the slice");
    assert_eq!(
        missed, 0,
        "consumer ({consumer_fence:?}) slept through {missed} of {N} wake-ups from a \
         producer ({producer_fence:?}): lost, found only by the liveness slice"
    );
}

#[test]
fn symmetric_consumer_default_producer() {
    mixed_pair("symmetric_consumer_default_producer", "symmetric", "");
}

#[test]
fn default_consumer_symmetric_producer() {
    mixed_pair("default_consumer_symmetric_producer", "", "symmetric");
}

#[test]
fn default_consumer_default_producer() {
    mixed_pair("default_consumer_default_producer", "", "");
}

#[test]
fn symmetric_consumer_symmetric_producer() {
    mixed_pair(
        "symmetric_consumer_symmetric_producer",
        "symmetric",
        "symmetric",
    );
}
