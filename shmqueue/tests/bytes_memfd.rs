//! Byte rings in sealed memfds: created with `ByteRing::builder()
//! .create_memfd()`, handed to a re-executed child over a Unix socket or by
//! inheritance, opened there with `open_fd`, and carrying messages larger
//! than the ring (fragmented, reassembled) checked by length and checksum.

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{child_role, run_child, DEADLINE};
use shmqueue::{memfd, ByteRing, Error, RecvError, Spsc};

const CAPACITY: usize = 4096;
const MESSAGES: u64 = 300;

/// Message `i`: a length from 0 to 3x the ring, bytes derived from `i`.
fn message(i: u64) -> Vec<u8> {
    let len = (i * 7919 % (3 * CAPACITY as u64)) as usize;
    (0..len).map(|k| (i as usize * 31 + k * 7) as u8).collect()
}

/// FNV-1a, so a reordered or corrupted message is caught, not just its length.
fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn receive_all(q: &ByteRing) -> Result<(), String> {
    let mut rx = q.consumer().map_err(e2s)?;
    let mut buf = Vec::new();
    for i in 0..MESSAGES {
        rx.recv_timeout(&mut buf, DEADLINE)
            .map_err(|e| format!("message {i}: {e}"))?;
        let want = message(i);
        if buf.len() != want.len() || checksum(&buf) != checksum(&want) {
            return Err(format!("message {i}: {} bytes, wrong contents", buf.len()));
        }
    }
    match rx.recv_timeout(&mut buf, DEADLINE) {
        Err(RecvError::Disconnected) => Ok(()),
        other => Err(format!("after the last message: {other:?}")),
    }
}

fn send_all(q: &ByteRing) -> Result<(), String> {
    let mut tx = q.producer().map_err(e2s)?;
    for i in 0..MESSAGES {
        tx.send_timeout(&message(i), DEADLINE)
            .map_err(|e| format!("message {i}: {e}"))?;
    }
    Ok(())
}

/// The descriptor a parent passed with `memfd::inherit_fd(.., var)`.
fn inherited(var: &str) -> Result<OwnedFd, String> {
    // SAFETY: the variable names a descriptor this process inherited from
    // its parent (spawned below with memfd::inherit_fd), taken once.
    unsafe { memfd::take_inherited_fd(var) }.map_err(e2s)
}

fn child(test: &str, role: &str, setup: impl FnOnce(&mut Command)) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SHMQ_TEST_ROLE", role)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    setup(&mut cmd);
    cmd.spawn().expect("spawn child test process")
}

fn wait_ok(mut c: std::process::Child) {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            assert!(s.success(), "child failed: {s}");
            return;
        }
        if std::time::Instant::now() > end {
            let _ = c.kill();
            panic!("child did not finish within {DEADLINE:?}");
        }
        // Polling with a deadline; there is no portable wait-with-timeout.
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_byte_ring_passed_over_a_socket_carries_messages_larger_than_the_ring() {
    const TEST: &str = "a_byte_ring_passed_over_a_socket_carries_messages_larger_than_the_ring";
    if child_role().is_some() {
        run_child(|| {
            let sock = UnixStream::from(inherited("SHMQ_SOCK")?);
            sock.set_read_timeout(Some(DEADLINE)).map_err(e2s)?;
            let fd = memfd::recv_fd(&sock).map_err(e2s)?;
            let q = ByteRing::builder().open_fd(fd).map_err(e2s)?;
            if q.capacity() != CAPACITY {
                return Err(format!("capacity {} after open_fd", q.capacity()));
            }
            receive_all(&q)
        });
    }
    let q = ByteRing::builder()
        .capacity(CAPACITY)
        .create_memfd()
        .unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let kid = child(TEST, "consumer", |cmd| {
        memfd::inherit_fd(cmd, theirs.into(), "SHMQ_SOCK").unwrap();
    });
    memfd::send_fd(&ours, q.dup_fd().unwrap()).unwrap();
    send_all(&q).unwrap();
    drop(q);
    wait_ok(kid);
}

#[test]
fn an_inherited_byte_ring_memfd_carries_messages_back_to_its_creator() {
    const TEST: &str = "an_inherited_byte_ring_memfd_carries_messages_back_to_its_creator";
    if child_role().is_some() {
        run_child(|| {
            let q = ByteRing::builder()
                .open_fd(inherited("SHMQ_QFD")?)
                .map_err(e2s)?;
            send_all(&q)
        });
    }
    let q = ByteRing::builder()
        .capacity(CAPACITY)
        .create_memfd()
        .unwrap();
    let kid = child(TEST, "producer", |cmd| {
        memfd::inherit_fd(cmd, q.dup_fd().unwrap(), "SHMQ_QFD").unwrap();
    });
    receive_all(&q).unwrap();
    wait_ok(kid);
}

#[test]
fn open_fd_refuses_other_kinds_and_unsealed_descriptors() {
    // A typed ring's memfd is sealed, but it is not a byte ring.
    let typed = Spsc::<u64>::builder().create_memfd().unwrap();
    assert!(matches!(
        ByteRing::builder().open_fd(typed.dup_fd().unwrap()),
        Err(Error::Incompatible { .. })
    ));
    // A byte ring's memfd is not a typed ring either.
    let bytes = ByteRing::builder().create_memfd().unwrap();
    assert!(matches!(
        Spsc::<u64>::builder().open_fd(bytes.dup_fd().unwrap()),
        Err(Error::Incompatible { .. })
    ));
    // A socket has no seals at all.
    let (a, _b) = UnixStream::pair().unwrap();
    assert!(matches!(
        ByteRing::builder().open_fd(a.into()),
        Err(Error::NotSealed { .. })
    ));
}
