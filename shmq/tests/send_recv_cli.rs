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

impl Running {
    /// SIGKILL it (a subscriber that dies without detaching) and reap it.
    fn sigkill(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.code().is_none(), "killed by a signal: {status:?}");
        self.out.take().unwrap().join().unwrap();
        self.err.take().unwrap().join().unwrap();
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

/// Wait until `n` live subscribers are attached to broadcast ring `name`.
fn wait_subscribers(name: &str, n: usize) {
    wait_until(&format!("{n} subscribers attached to {name}"), || {
        shmqueue::inspect(name).is_ok_and(|s| {
            s.endpoints
                .iter()
                .filter(|e| {
                    e.role == Role::Consumer && e.status == EndpointStatus::Attached && e.alive
                })
                .count()
                == n
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

// --------------------------------------------------------------------------
// --kind broadcast
// --------------------------------------------------------------------------

fn numbered(n: usize) -> String {
    (0..n).map(|i| format!("line {i} ünïcödé\n")).collect()
}

#[test]
fn broadcast_two_subscribers_each_get_every_line_through_a_lossless_ring() {
    let shm = Shm::new("bcast-two");
    let name = shm.name();
    // 500 lines (an empty one among them) through 16 items: the publisher
    // waits for the slower subscriber over and over.
    let mut input = numbered(250);
    input.push('\n');
    input.push_str(&numbered(249));
    let a = start(
        &[
            "recv",
            "--kind",
            "broadcast",
            "--create",
            "--capacity",
            "16",
            "--timeout",
            "30s",
            name,
        ],
        None,
    );
    wait_subscribers(name, 1);
    let b = start(
        &["recv", "--kind", "broadcast", "--timeout", "30s", name],
        None,
    );
    wait_subscribers(name, 2);
    let send = run(
        &["send", "--kind", "broadcast", name],
        Some(input.clone().into()),
    );
    assert_eq!(send.code, 0, "{}", send.stderr);
    for sub in [a.wait(), b.wait()] {
        assert_eq!(sub.code, 0, "{}", sub.stderr);
        assert_eq!(String::from_utf8(sub.stdout).unwrap(), input);
        assert!(sub.stderr.is_empty(), "nothing missed: {}", sub.stderr);
    }
    assert!(!exists(name), "the recv that created it removed it");
}

#[test]
fn broadcast_late_joiner_at_oldest_gets_what_is_still_in_the_ring() {
    let shm = Shm::new("bcast-oldest");
    let name = shm.name();
    // Nobody subscribed: the publisher never waits and the ring keeps the
    // newest lines (capacity 8: the newest 7 are safe to start at).
    let send = run(
        &[
            "send",
            "--kind",
            "broadcast",
            "--create",
            "--keep",
            "--capacity",
            "8",
            name,
        ],
        Some(numbered(20).into()),
    );
    assert_eq!(send.code, 0, "{}", send.stderr);
    let late = run(
        &["recv", "--kind", "broadcast", "--start", "oldest", name],
        None,
    );
    assert_eq!(late.code, 0, "the publisher has gone: {}", late.stderr);
    let tail: String = numbered(20)
        .lines()
        .skip(13)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(String::from_utf8(late.stdout).unwrap(), tail);

    // From a position still in the ring, with --json and --count.
    let at = run(
        &[
            "recv",
            "--kind",
            "broadcast",
            "--start",
            "17",
            "--json",
            "--count",
            "2",
            name,
        ],
        None,
    );
    assert_eq!(at.code, 0, "{}", at.stderr);
    let got: Vec<serde_json::Value> = String::from_utf8(at.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["text"], "line 17 ünïcödé");
    assert_eq!(got[1]["len"], "line 18 ünïcödé".len());

    // A position no longer in the ring says which are.
    let gone = run(&["recv", "--kind", "broadcast", "--start", "2", name], None);
    assert_eq!(gone.code, 1, "{}", gone.stderr);
    assert!(
        gone.stderr.contains("holds positions 13 to 19"),
        "{}",
        gone.stderr
    );
    // Latest, with the publisher gone: wait for the next one, then time out.
    let latest = run(
        &["recv", "--kind", "broadcast", "--timeout", "200ms", name],
        None,
    );
    assert_eq!(latest.code, EXIT_TIMEOUT, "{}", latest.stderr);
    assert!(
        latest.stderr.contains("waiting for a sender"),
        "{}",
        latest.stderr
    );
    assert!(exists(name), "--keep and plain opens leave it");
}

#[test]
fn broadcast_and_byte_rings_refuse_each_others_kind_and_item_size() {
    let bytes = Shm::new("bcast-kind-bytes");
    let _ring = shmqueue::ByteRing::create(bytes.name(), 4096).unwrap();
    for args in [
        vec!["send", "--kind", "broadcast", bytes.name()],
        vec![
            "recv",
            "--kind",
            "broadcast",
            "--timeout",
            "5s",
            bytes.name(),
        ],
        vec!["send", "--kind", "broadcast", "--create", bytes.name()],
    ] {
        let o = run(&args, Some(b"x\n".to_vec()));
        assert_eq!(o.code, 1, "{}", o.stderr);
        assert!(o.stderr.starts_with("shmq: "), "{}", o.stderr);
        assert!(o.stderr.contains("is not a broadcast ring"), "{}", o.stderr);
        assert!(o.stderr.contains("a bytes queue"), "{}", o.stderr);
    }

    let bcast = Shm::new("bcast-kind-bcast");
    let name = bcast.name();
    let made = run(
        &["send", "--kind", "broadcast", "--create", "--keep", name],
        Some(Vec::new()),
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    for args in [vec!["send", name], vec!["recv", "--timeout", "5s", name]] {
        let o = run(&args, Some(b"x\n".to_vec()));
        assert_eq!(o.code, 1, "{}", o.stderr);
        assert!(o.stderr.contains("is not a byte ring"), "{}", o.stderr);
        assert!(o.stderr.contains("--kind broadcast"), "{}", o.stderr);
    }
    // The item size is the ring's: another one is the library's
    // Incompatible, said with the size to use.
    let o = run(
        &["recv", "--kind", "broadcast", "--item-size", "64", name],
        None,
    );
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("pass --item-size 256"), "{}", o.stderr);
    // A broadcast ring a program made for its own items is not lines.
    let foreign = Shm::new("bcast-kind-foreign");
    let _q = shmqueue::Broadcast::<[u64; 32]>::create(foreign.name(), 8).unwrap();
    let o = run(&["recv", "--kind", "broadcast", foreign.name()], None);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("did not make"), "{}", o.stderr);
    // Options of the other kind are usage errors.
    for args in [
        vec!["send", "--raw", "--kind", "broadcast", name],
        vec!["recv", "--start", "oldest", name],
        vec!["send", "--item-size", "64", name],
        vec!["send", "--kind", "broadcast", "--max-lag", "1s", name],
    ] {
        let o = run(&args, Some(Vec::new()));
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
    }
}

#[test]
fn broadcast_a_line_longer_than_an_item_is_an_error_not_truncated() {
    let shm = Shm::new("bcast-long");
    let name = shm.name();
    let fits = "y".repeat(60);
    let input = format!("short\n{fits}\n{}\nnever sent\n", "z".repeat(61));
    let send = run(
        &[
            "send",
            "--kind",
            "broadcast",
            "--create",
            "--keep",
            "--item-size",
            "64",
            name,
        ],
        Some(input.into()),
    );
    assert_eq!(send.code, 1, "{}", send.stderr);
    assert!(
        send.stderr.contains("line 3 is 61 bytes"),
        "{}",
        send.stderr
    );
    assert!(
        send.stderr.contains("use a larger --item-size"),
        "{}",
        send.stderr
    );
    assert!(send.stderr.contains("--item-size 128"), "{}", send.stderr);
    assert!(
        send.stderr.contains("2 line(s) were published"),
        "{}",
        send.stderr
    );
    let o = run(
        &[
            "recv",
            "--kind",
            "broadcast",
            "--item-size",
            "64",
            "--start",
            "oldest",
            name,
        ],
        None,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        format!("short\n{fits}\n")
    );
}

#[test]
fn broadcast_stat_shows_policy_and_each_subscribers_liveness_and_lag() {
    let shm = Shm::new("bcast-stat");
    let name = shm.name();
    let made = run(
        &[
            "send",
            "--kind",
            "broadcast",
            "--create",
            "--keep",
            "--overwrite",
            "--capacity",
            "64",
            "--max-subscribers",
            "4",
            name,
        ],
        Some(Vec::new()),
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let live = start(
        &["recv", "--kind", "broadcast", "--timeout", "30s", name],
        None,
    );
    wait_subscribers(name, 1);
    let doomed = start(
        &["recv", "--kind", "broadcast", "--timeout", "30s", name],
        None,
    );
    wait_subscribers(name, 2);
    // Killed: its entry stays attached with its cursor (an overwrite
    // publisher never reaps), its liveness token is gone.
    doomed.sigkill();
    wait_subscribers(name, 1);
    let send = run(
        &["send", "--kind", "broadcast", name],
        Some(b"a\nb\nc\n".to_vec()),
    );
    assert_eq!(send.code, 0, "{}", send.stderr);
    let live = live.wait();
    assert_eq!(
        (live.code, &live.stdout[..]),
        (0, &b"a\nb\nc\n"[..]),
        "{}",
        live.stderr
    );

    let st = run(&["stat", name], None);
    assert_eq!(st.code, 0, "{}", st.stderr);
    let text = String::from_utf8(st.stdout).unwrap();
    assert!(text.contains("kind          broadcast"), "{text}");
    assert!(text.contains("policy        overwrite"), "{text}");
    assert!(text.contains("published     3"), "{text}");
    let subs: Vec<&str> = text.lines().filter(|l| l.contains("subscriber")).collect();
    assert_eq!(subs.len(), 2, "{text}");
    assert!(
        subs.iter()
            .any(|l| l.contains("detached") && l.contains("free")),
        "{text}"
    );
    assert!(
        subs.iter()
            .any(|l| l.contains("DEAD (holder died), cursor 0, lag 3")),
        "{text}"
    );
    let ls = run(&["ls", "--prefix", name], None);
    let row = String::from_utf8(ls.stdout).unwrap();
    let cols: Vec<&str> = row.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(cols[1..3], ["broadcast", "overwrite"]);
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["stat", "--json", name], None).stdout).unwrap();
    assert_eq!(v["policy"], "overwrite");
    assert_eq!(v["published"], 3);
    let dead: Vec<&serde_json::Value> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["liveness"] == "dead")
        .collect();
    assert_eq!(dead.len(), 1, "{v}");
    assert_eq!(
        (dead[0]["cursor"].clone(), dead[0]["lag"].clone()),
        (0.into(), 3.into())
    );
}

#[test]
fn broadcast_recv_reports_lines_it_missed_when_lapped_and_exits_5() {
    let shm = Shm::new("bcast-lapped");
    let name = shm.name();
    let made = run(
        &[
            "send",
            "--kind",
            "broadcast",
            "--create",
            "--keep",
            "--overwrite",
            "--capacity",
            "8",
            name,
        ],
        Some(Vec::new()),
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    // A subscriber attached but not reading (SIGSTOPped) while 100 lines go
    // through 8 items: when it runs again it has been lapped.
    let sub = start(
        &["recv", "--kind", "broadcast", "--timeout", "30s", name],
        None,
    );
    wait_subscribers(name, 1);
    let pid = nix::unistd::Pid::from_raw(sub.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    wait_until("the subscriber is stopped", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('T'))
        })
    });
    let send = run(
        &["send", "--kind", "broadcast", name],
        Some(numbered(100).into()),
    );
    assert_eq!(
        send.code, 0,
        "an overwrite publisher never waits: {}",
        send.stderr
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let o = sub.wait();
    assert_eq!(o.code, 5, "{}", o.stderr);
    assert!(o.stderr.contains("warning: lapped"), "{}", o.stderr);
    let got = String::from_utf8(o.stdout).unwrap();
    let n = got.lines().count() as u64;
    let missed: u64 = o
        .stderr
        .split("line(s) were missed")
        .next()
        .and_then(|s| s.rsplit("shmq: ").next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("a missed count in {}", o.stderr));
    assert_eq!(n + missed, 100, "every line received or counted as missed");
    assert!(got.ends_with("line 99 ünïcödé\n"), "{got}");
}
