//! The SPSC ring between real processes: this test binary re-executes itself
//! as the peer (see tests/common).

mod common;

use std::time::{Duration, Instant};

use common::*;
use shmqueue::{Error, PopError, PushError, Role, Spsc};

fn open_u64(name: &str) -> Result<Spsc<u64>, String> {
    Spsc::<u64>::open(name).map_err(|e| e.to_string())
}

#[test]
fn ten_million_values_cross_processes_in_order() {
    const N: u64 = 10_000_000;
    if child_role().is_some() {
        run_child(|| {
            let mut tx = open_u64(&child_arg("NAME"))?
                .producer()
                .map_err(|e| e.to_string())?;
            for i in 0..N {
                tx.push(i).map_err(|e| format!("push {i}: {e}"))?;
            }
            Ok(())
        });
    }
    let shm = Shm::new("stream");
    let q = Spsc::<u64>::create(shm.name(), 1024).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "ten_million_values_cross_processes_in_order",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    for expected in 0..N {
        match rx.pop_timeout(DEADLINE) {
            Ok(v) if v == expected => {}
            other => panic!("item {expected}: got {other:?}"),
        }
    }
    child.success();
    // Everything arrived; the producer's exit must read as Disconnected.
    assert_eq!(rx.pop_timeout(DEADLINE), Err(PopError::Disconnected));
}

#[test]
fn capacity_one_wraps_many_times_across_processes() {
    const N: u64 = 100_000;
    if child_role().is_some() {
        run_child(|| {
            let mut tx = open_u64(&child_arg("NAME"))?
                .producer()
                .map_err(|e| e.to_string())?;
            for i in 0..N {
                tx.push(i).map_err(|e| format!("push {i}: {e}"))?;
            }
            Ok(())
        });
    }
    let shm = Shm::new("cap1");
    let q = Spsc::<u64>::create(shm.name(), 1).unwrap();
    assert_eq!(q.capacity(), 1);
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "capacity_one_wraps_many_times_across_processes",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    for expected in 0..N {
        assert_eq!(rx.pop_timeout(DEADLINE), Ok(expected));
        assert!(rx.len() <= 1);
    }
    child.success();
    assert_eq!(rx.pop_timeout(DEADLINE), Err(PopError::Disconnected));
}

#[test]
fn producer_killed_mid_stream_is_drained_then_disconnected_within_a_second() {
    if child_role().is_some() {
        run_child(|| {
            let mut tx = open_u64(&child_arg("NAME"))?
                .producer()
                .map_err(|e| e.to_string())?;
            let mut i = 0u64;
            loop {
                tx.push(i).map_err(|e| format!("push {i}: {e}"))?;
                i += 1;
            }
        });
    }
    let shm = Shm::new("killprod");
    let q = Spsc::<u64>::create(shm.name(), 1024).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "producer_killed_mid_stream_is_drained_then_disconnected_within_a_second",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    let mut expected = 0u64;
    while expected < 20_000 {
        assert_eq!(rx.pop_timeout(DEADLINE), Ok(expected));
        expected += 1;
    }
    child.sigkill(); // SIGKILL: no destructor runs, the header still says "attached"
    let killed = Instant::now();
    loop {
        match rx.pop_timeout(DEADLINE) {
            Ok(v) => {
                assert_eq!(v, expected, "drained values must continue the sequence");
                expected += 1;
            }
            Err(PopError::Disconnected) => break,
            Err(e) => panic!("after the kill: {e:?}"),
        }
    }
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "dead producer noticed after {took:?}"
    );
    assert!(expected >= 20_000);
}

#[test]
fn killed_consumer_is_replaced_and_resumes_without_loss() {
    const K: u64 = 5_000;
    const N: u64 = 20_000;
    if child_role().is_some() {
        run_child(|| {
            let mut rx = open_u64(&child_arg("NAME"))?
                .consumer()
                .map_err(|e| e.to_string())?;
            for expected in 0..K {
                let v = rx.pop_timeout(DEADLINE).map_err(|e| e.to_string())?;
                if v != expected {
                    return Err(format!("expected {expected}, got {v}"));
                }
            }
            tell_parent("popped");
            // Hold the role until killed: stdin never delivers anything.
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
            Err("stdin closed before the kill".into())
        });
    }
    let shm = Shm::new("killcons");
    let q = Spsc::<u64>::create(shm.name(), 64).unwrap();
    let mut tx = q.producer().unwrap();
    let producer = std::thread::spawn(move || {
        let end = Instant::now() + DEADLINE;
        for mut v in 0..N {
            // A dead or absent consumer hands the value back: retry it.
            loop {
                match tx.push_timeout(v, Duration::from_millis(100)) {
                    Ok(()) => break,
                    Err(PushError::Disconnected(back)) | Err(PushError::Timeout(back)) => {
                        assert!(Instant::now() < end, "no consumer came back");
                        v = back;
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("push {v}: {e}"),
                }
            }
        }
    });
    let mut child = spawn(
        "killed_consumer_is_replaced_and_resumes_without_loss",
        "consumer",
        &[("NAME", shm.0.clone())],
    );
    assert_eq!(child.expect_line(), "popped");
    child.sigkill();
    let mut rx = q
        .consumer()
        .expect("the dead consumer's role is free again");
    for expected in K..N {
        assert_eq!(
            rx.pop_timeout(DEADLINE),
            Ok(expected),
            "resume exactly at {K}"
        );
    }
    producer.join().unwrap();
}

#[test]
fn second_producer_is_refused_while_the_first_lives() {
    if child_role().is_some() {
        run_child(|| {
            let q = open_u64(&child_arg("NAME"))?;
            let _tx = q.producer().map_err(|e| e.to_string())?;
            tell_parent("holding");
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
            Ok(())
        });
    }
    let shm = Shm::new("second");
    let q = Spsc::<u64>::create(shm.name(), 8).unwrap();
    let mut child = spawn(
        "second_producer_is_refused_while_the_first_lives",
        "holder",
        &[("NAME", shm.0.clone())],
    );
    assert_eq!(child.expect_line(), "holding");
    match q.producer() {
        Err(Error::RoleTaken { role, holder_pid }) => {
            assert_eq!(role, Role::Producer);
            assert_eq!(holder_pid as i32, child.pid());
        }
        other => panic!("expected RoleTaken, got {other:?}"),
    }
    // The consumer role is independent.
    let _rx = q.consumer().unwrap();
    child.sigkill();
    q.producer().expect("a dead holder's role can be claimed");
}

#[test]
fn blocked_pop_is_woken_by_another_process() {
    if child_role().is_some() {
        run_child(|| {
            let mut tx = open_u64(&child_arg("NAME"))?
                .producer()
                .map_err(|e| e.to_string())?;
            tx.push(42).map_err(|e| e.to_string())
        });
    }
    let shm = Shm::new("wake");
    let q = Spsc::<u64>::builder()
        .spin(0)
        .capacity(4)
        .create(shm.name())
        .unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "blocked_pop_is_woken_by_another_process",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    assert_eq!(rx.pop_timeout(DEADLINE), Ok(42));
    child.success();
}

#[test]
fn blocked_push_is_woken_by_a_pop_in_another_process() {
    if child_role().is_some() {
        run_child(|| {
            let mut rx = open_u64(&child_arg("NAME"))?
                .consumer()
                .map_err(|e| e.to_string())?;
            for expected in 0..3 {
                match rx.pop_timeout(DEADLINE) {
                    Ok(v) if v == expected => {}
                    other => return Err(format!("expected {expected}, got {other:?}")),
                }
            }
            Ok(())
        });
    }
    let shm = Shm::new("wakepush");
    let q = Spsc::<u64>::builder()
        .spin(0)
        .capacity(1)
        .create(shm.name())
        .unwrap();
    let mut tx = q.producer().unwrap();
    tx.try_push(0).unwrap();
    assert!(tx.try_push(1).unwrap_err().is_full());
    let mut child = spawn(
        "blocked_push_is_woken_by_a_pop_in_another_process",
        "consumer",
        &[("NAME", shm.0.clone())],
    );
    tx.push_timeout(1, DEADLINE).unwrap();
    tx.push_timeout(2, DEADLINE).unwrap();
    child.success();
}
