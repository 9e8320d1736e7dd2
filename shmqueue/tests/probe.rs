//! `shmqueue::probe` reads what an MPMC endpoint holds from the segment
//! alone, with the layout and sequence encoding of the header module.
//! Endpoints are frozen inside a claim with the test hooks (threads of this
//! process that sleep there until it exits; no other test of this file
//! uses the hooks, so the process-wide hooks are this test's own).

mod common;

use std::time::Instant;

use common::{Shm, DEADLINE};
use shmqueue::mpmc::test_hooks;
use shmqueue::probe::{ClaimProbe, MpmcProbe};
use shmqueue::{Error, Mpmc, Role, Spsc, TryPopError};

fn wait_frozen() {
    let end = Instant::now() + DEADLINE;
    while !test_hooks::frozen() {
        assert!(
            Instant::now() < end,
            "the endpoint never froze in its claim"
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_frozen_producer_and_a_frozen_consumer_are_seen_inside_their_claims() {
    let me = std::process::id();

    // A producer frozen after winning position 0, before publishing it.
    let a = Shm::new("probe-producer");
    let q = Mpmc::<u64>::create(a.name(), 8).unwrap();
    let mut rx = q.consumer().unwrap();
    let probe = MpmcProbe::open(a.name()).unwrap();
    assert_eq!(probe.claim_of(me, Role::Producer), ClaimProbe::None);
    let mut tx = q.producer().unwrap();
    assert_eq!(probe.claim_of(me, Role::Producer), ClaimProbe::None, "idle");
    test_hooks::freeze_after_claims(Role::Producer, 1);
    std::thread::spawn(move || {
        let _ = tx.push(42);
    });
    wait_frozen();
    assert_eq!(probe.claim_of(me, Role::Producer), ClaimProbe::Won);
    assert_eq!(probe.claim_of(me, Role::Consumer), ClaimProbe::None);
    assert_eq!(
        rx.try_pop(),
        Err(TryPopError::Empty),
        "in flight, not published"
    );
    assert_eq!(
        probe.claim_of(me + 1, Role::Producer),
        ClaimProbe::None,
        "another pid"
    );

    // A consumer frozen after taking position 0, before releasing its slot.
    let b = Shm::new("probe-consumer");
    let q = Mpmc::<u64>::create(b.name(), 8).unwrap();
    let mut tx = q.producer().unwrap();
    tx.try_push(7).unwrap();
    let probe = MpmcProbe::open(b.name()).unwrap();
    let mut rx = q.consumer().unwrap();
    assert_eq!(probe.claim_of(me, Role::Consumer), ClaimProbe::None);
    test_hooks::freeze_after_claims(Role::Consumer, 1);
    std::thread::spawn(move || {
        let _ = rx.pop();
    });
    let end = Instant::now() + DEADLINE;
    while probe.claim_of(me, Role::Consumer) != ClaimProbe::Won {
        assert!(
            Instant::now() < end,
            "the consumer was never seen in its claim"
        );
        std::thread::yield_now();
    }
    assert_eq!(probe.claim_of(me, Role::Producer), ClaimProbe::None);
}

#[test]
fn other_kinds_and_missing_names_are_refused() {
    let s = Shm::new("probe-spsc");
    let _q = Spsc::<u64>::create(s.name(), 8).unwrap();
    assert!(matches!(
        MpmcProbe::open(s.name()),
        Err(Error::Incompatible {
            field: "queue kind",
            ..
        })
    ));
    assert!(matches!(
        MpmcProbe::open("/shmq-probe-no-such-segment"),
        Err(Error::NotFound { .. })
    ));
}
