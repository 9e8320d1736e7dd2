//! `shmq send` / `shmq recv`: the real binary, two real processes, stdin
//! and stdout through pipes. Every wait has a deadline (a process still
//! running then is killed and the test fails); names are unique and
//! unlinked by `Shm` guards, and the tests check that the commands remove
//! the rings they created themselves.

#[path = "../../shmqueue/tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Shm, DEADLINE};
use shmqueue::inspect::EndpointStatus;
use shmqueue::{Role, Spsc};

/// Exit status of a `--timeout` that expired.
const EXIT_TIMEOUT: i32 = 4;

/// A running `shmq`, its stdin fed and its output collected by threads.
struct Running {
    args: Vec<String>,
    child: Child,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
    started: Instant,
}

/// What one run produced.
struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    elapsed: Duration,
}

/// Start `shmq args`, writing `input` to its stdin (then closing it), or
/// leaving stdin empty.
fn start(args: &[&str], input: Option<Vec<u8>>) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmq"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmq");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        if let Some(data) = input {
            // The command may exit early (an error): a broken pipe is fine.
            let _ = stdin.write_all(&data);
        }
    });
    let collect = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).expect("read shmq output");
            v
        })
    };
    Running {
        args: args.iter().map(|s| s.to_string()).collect(),
        out: Some(collect(Box::new(child.stdout.take().unwrap()))),
        err: Some(collect(Box::new(child.stderr.take().unwrap()))),
        child,
        started: Instant::now(),
    }
}

impl Running {
    /// Wait for the exit, at most `DEADLINE`; kill it and fail past that.
    fn wait(mut self) -> Out {
        let end = self.started + DEADLINE;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("shmq {:?} did not finish within {DEADLINE:?}", self.args);
            }
            // Polling with a deadline; there is no portable wait-with-timeout.
            std::thread::sleep(Duration::from_millis(2));
        };
        let elapsed = self.started.elapsed();
        let o = Out {
            code: status.code().expect("shmq killed by a signal"),
            stdout: self.out.take().unwrap().join().unwrap(),
            stderr: String::from_utf8_lossy(&self.err.take().unwrap().join().unwrap()).into(),
            elapsed,
        };
        eprintln!(
            "$ shmq {}\n[{} bytes of stdout]\n{}[exit {} after {:?}]",
            self.args.join(" "),
            o.stdout.len(),
            o.stderr,
            o.code,
            o.elapsed
        );
        o
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that failed before waiting: leave no process behind.
        if self.out.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn run(args: &[&str], input: Option<Vec<u8>>) -> Out {
    start(args, input).wait()
}

fn exists(name: &str) -> bool {
    std::fs::symlink_metadata(format!("/dev/shm{name}")).is_ok()
}

/// Poll `cond` until it holds, failing after `DEADLINE`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait until `role` of ring `name` is attached by a live process.
fn wait_attached(name: &str, role: Role) {
    wait_until(&format!("{role} attached to {name}"), || {
        shmqueue::inspect(name).is_ok_and(|s| {
            s.endpoints
                .iter()
                .any(|e| e.role == role && e.status == EndpointStatus::Attached && e.alive)
        })
    });
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Deterministic bytes with every value in them (xorshift64*).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn lines_round_trip_in_order_with_empty_lines_and_a_line_longer_than_the_ring() {
    let shm = Shm::new("lines");
    let name = shm.name();
    let long: String = (0..1000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut lines: Vec<String> = vec!["first".into(), String::new(), long, String::new()];
    lines.extend((0..2000).map(|i| format!("line {i} ünïcödé")));
    lines.push(String::new());
    lines.push("last, without a newline".into());
    let input = lines.join("\n");

    // A 64-byte ring: everything waits for the receiver, the long line is
    // sent in fragments.
    let send = start(
        &["send", "--create", "--capacity", "64", name],
        Some(input.into()),
    );
    wait_until("send created the ring", || exists(name));
    let recv = run(&["recv", name], None);
    assert_eq!(recv.code, 0, "{}", recv.stderr);
    let mut expected = lines.join("\n");
    expected.push('\n');
    assert_eq!(String::from_utf8(recv.stdout).unwrap(), expected);
    let send = send.wait();
    assert_eq!(send.code, 0, "{}", send.stderr);
    assert!(
        !exists(name),
        "send removes the ring it created once drained"
    );
}

#[test]
fn raw_one_mebibyte_of_binary_through_a_64k_ring_is_byte_identical() {
    let shm = Shm::new("raw");
    let name = shm.name();
    let data = noise(1 << 20, 0x5eed);
    let send = start(
        &["send", "--raw", "--create", "--capacity", "64k", name],
        Some(data.clone()),
    );
    let recv = run(&["recv", "--raw", "--create", name], None);
    let send = send.wait();
    assert_eq!(send.code, 0, "{}", send.stderr);
    assert_eq!(recv.code, 0, "{}", recv.stderr);
    assert_eq!(recv.stdout.len(), data.len());
    assert_eq!(fnv1a(&recv.stdout), fnv1a(&data));
    assert!(!exists(name));
}

#[test]
fn recv_started_first_with_create_then_send_opens_it() {
    let shm = Shm::new("recvfirst");
    let name = shm.name();
    let recv = start(&["recv", "--create", "--capacity", "4k", name], None);
    wait_until("recv created the ring", || exists(name));
    let send = run(&["send", name], Some(b"one\ntwo\n\nthree\n".to_vec()));
    assert_eq!(send.code, 0, "{}", send.stderr);
    let recv = recv.wait();
    assert_eq!(recv.code, 0, "{}", recv.stderr);
    assert_eq!(recv.stdout, b"one\ntwo\n\nthree\n");
    assert!(!exists(name), "recv removes the ring it created");
}

#[test]
fn count_stops_early_and_the_rest_stays_for_the_next_receiver() {
    let shm = Shm::new("count");
    let name = shm.name();
    // --keep: send exits once everything is in the ring, and leaves it.
    let send = run(
        &["send", "--create", "--keep", name],
        Some(b"a\nb\nc\nd\ne\n".to_vec()),
    );
    assert_eq!(send.code, 0, "{}", send.stderr);
    let first = run(&["recv", "--count", "2", name], None);
    assert_eq!((first.code, &first.stdout[..]), (0, &b"a\nb\n"[..]));
    let rest = run(&["recv", "--count", "10", name], None);
    assert_eq!(rest.code, 0, "the sender is gone and the ring drained");
    assert_eq!(rest.stdout, b"c\nd\ne\n");
    assert!(exists(name), "--keep and plain opens leave the ring");

    // A receiver that stops early while the sender still has lines: the
    // sender fails like a writer into a closed pipe, and removes its ring.
    let shm = Shm::new("count-live");
    let name = shm.name();
    let input: Vec<u8> = (0..1000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let send = start(&["send", "--create", "--capacity", "64", name], Some(input));
    wait_until("send created the ring", || exists(name));
    let recv = run(&["recv", "--count", "3", name], None);
    assert_eq!((recv.code, &recv.stdout[..]), (0, &b"0\n1\n2\n"[..]));
    let send = send.wait();
    assert_eq!(send.code, 1, "{}", send.stderr);
    assert!(send.stderr.contains("the receiver of"), "{}", send.stderr);
    assert!(send.stderr.contains("has gone"), "{}", send.stderr);
    assert!(!exists(name));
}

#[test]
fn recv_timeout_without_a_producer_exits_4_promptly_and_removes_its_ring() {
    let shm = Shm::new("timeout");
    let name = shm.name();
    let recv = run(&["recv", "--create", "--timeout", "300ms", name], None);
    assert_eq!(recv.code, EXIT_TIMEOUT, "{}", recv.stderr);
    assert!(recv.stderr.contains("timed out"), "{}", recv.stderr);
    assert!(recv.elapsed >= Duration::from_millis(300));
    assert!(recv.elapsed < Duration::from_secs(10), "{:?}", recv.elapsed);
    assert!(!exists(name));

    // A ring whose sender has come and gone, drained: wait for the next
    // sender (like a FIFO), then time out.
    let send = run(&["send", "--create", "--keep", name], Some(b"x\n".to_vec()));
    assert_eq!(send.code, 0);
    assert_eq!(run(&["recv", name], None).stdout, b"x\n");
    let again = run(&["recv", "--timeout", "200ms", name], None);
    assert_eq!(again.code, EXIT_TIMEOUT, "{}", again.stderr);
    assert!(
        again.stderr.contains("waiting for a sender"),
        "{}",
        again.stderr
    );
}

#[test]
fn send_timeout_without_a_receiver_exits_4() {
    let shm = Shm::new("sendtimeout");
    let name = shm.name();
    // 64 bytes of ring, 100 lines: the ring fills and nobody drains it.
    let input: Vec<u8> = (0..100)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let send = run(
        &[
            "send",
            "--create",
            "--capacity",
            "64",
            "--timeout",
            "300ms",
            name,
        ],
        Some(input),
    );
    assert_eq!(send.code, EXIT_TIMEOUT, "{}", send.stderr);
    assert!(send.stderr.contains("timed out"), "{}", send.stderr);
    assert!(send.elapsed < Duration::from_secs(10), "{:?}", send.elapsed);
    assert!(
        !exists(name),
        "send removes the ring it created on failure too"
    );
}

#[test]
fn null_separated_records_and_fixed_size_records() {
    let shm = Shm::new("null");
    let name = shm.name();
    let send = run(
        &["send", "-0", "--create", "--keep", name],
        Some(b"a\nb\0\0c".to_vec()),
    );
    assert_eq!(send.code, 0, "{}", send.stderr);
    let recv = run(&["recv", "--null", name], None);
    assert_eq!(recv.code, 0, "{}", recv.stderr);
    assert_eq!(recv.stdout, b"a\nb\0\0c\0");

    // 10 bytes in records of 4: 4, 4, then the short rest; JSON shows them.
    // Both ends' previous peers have left, so each waits for the other
    // (like a FIFO), whichever starts first.
    let recv = start(&["recv", "--json", name], None);
    let send = run(
        &["send", "--record-size", "4", name],
        Some(b"abcd\xff\x00\x01\x02ij".to_vec()),
    );
    assert_eq!(send.code, 0, "{}", send.stderr);
    let recv = recv.wait();
    assert_eq!(recv.code, 0, "{}", recv.stderr);
    let got: Vec<serde_json::Value> = String::from_utf8(recv.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        got,
        [
            serde_json::json!({"len": 4, "text": "abcd"}),
            serde_json::json!({"len": 4, "base64": "/wABAg=="}),
            serde_json::json!({"len": 2, "text": "ij"}),
        ]
    );
}

#[test]
fn a_typed_spsc_ring_is_not_a_byte_ring() {
    let shm = Shm::new("typed");
    let name = shm.name();
    let _q = Spsc::<u64>::create(name, 16).unwrap();
    for args in [vec!["send", name], vec!["recv", "--timeout", "5s", name]] {
        let o = run(&args, Some(b"x\n".to_vec()));
        assert_eq!(o.code, 1, "{}", o.stderr);
        assert!(o.stderr.starts_with("shmq: "), "{}", o.stderr);
        assert!(o.stderr.contains("not a byte ring"), "{}", o.stderr);
        assert!(
            o.stderr.contains("spsc queue of 8-byte elements"),
            "{}",
            o.stderr
        );
    }
    // --create on a taken name opens it, and refuses it the same way.
    let o = run(&["send", "--create", name], Some(b"x\n".to_vec()));
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("not a byte ring"), "{}", o.stderr);
    assert!(exists(name), "left untouched");
}

#[test]
fn send_to_a_missing_name_without_create_fails_and_suggests_create() {
    let shm = Shm::new("missing");
    let name = shm.name();
    let o = run(&["send", name], Some(b"x\n".to_vec()));
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.starts_with("shmq: no byte ring named"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("--create"), "{}", o.stderr);
    assert!(!exists(name), "nothing created");
    // Usage errors are 2.
    assert_eq!(run(&["send", "--raw", "-0", name], None).code, 2);
    assert_eq!(run(&["recv", "--keep", name], None).code, 2);
}

#[test]
fn a_second_receiver_is_refused_while_the_first_is_attached() {
    let shm = Shm::new("role");
    let name = shm.name();
    let first = start(&["recv", "--create", name], None);
    wait_attached(name, Role::Consumer);
    let second = run(&["recv", "--timeout", "5s", name], None);
    assert_eq!(second.code, 1);
    assert!(
        second.stderr.contains("another receiver (pid"),
        "{}",
        second.stderr
    );
    let send = run(&["send", name], Some(b"hi\n".to_vec()));
    assert_eq!(send.code, 0, "{}", send.stderr);
    let first = first.wait();
    assert_eq!((first.code, &first.stdout[..]), (0, &b"hi\n"[..]));
    assert!(!exists(name));
}
