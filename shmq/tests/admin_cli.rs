//! `shmq ls`, `shmq stat`, `shmq rm`: the real binary against real segments.
//!
//! /dev/shm is the whole machine's: other test processes create and remove
//! segments concurrently. So every assertion is about this test's own names,
//! and `rm --stale` is always given a prefix only this test's names carry.

#[path = "../../shmqueue/tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{child_arg, child_role, run_child, spawn, tell_parent, Shm, DEADLINE};
use serde_json::Value;
use shmqueue::Spsc;

/// What one run of `shmq` produced.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run the real binary, with a deadline.
fn shmq(args: &[&str]) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmq"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmq");
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).expect("read shmq output");
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("shmq {args:?} did not finish within {DEADLINE:?}");
        }
        // Polling with a deadline; there is no portable wait-with-timeout.
        std::thread::sleep(Duration::from_millis(2));
    };
    let o = Out {
        code: status.code().expect("shmq killed by a signal"),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    eprintln!(
        "$ shmq {}\n{}{}[exit {}]",
        args.join(" "),
        o.stdout,
        o.stderr,
        o.code
    );
    o
}

fn json(args: &[&str]) -> Value {
    let o = shmq(args);
    assert_eq!(o.code, 0, "shmq {args:?}: {}", o.stderr);
    serde_json::from_str(&o.stdout).expect("shmq --json prints JSON")
}

/// `shmq ls --json`'s object for `name`, if listed.
fn listed(name: &str) -> Option<Value> {
    let v = json(&["ls", "--json"]);
    v.as_array()
        .expect("ls --json is an array")
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

fn exists(name: &str) -> bool {
    std::fs::symlink_metadata(format!("/dev/shm{name}")).is_ok()
}

/// A prefix that only the names `Shm::new(tag…)` of this process carry.
fn prefix(tag: &str) -> String {
    format!("/shmq-test-{}-{tag}", std::process::id())
}

const SEGMENT_FIELDS: [&str; 27] = [
    "name",
    "shmqueue",
    "kind",
    "kind_name",
    "version",
    "elem_size",
    "elem_align",
    "capacity",
    "size",
    "fill",
    "schema",
    "creator_pid",
    "uid",
    "gid",
    "mode",
    "init",
    "in_use",
    "stale",
    "endpoints_alive",
    "endpoints_attached",
    "policy",
    "max_lag_ns",
    "published",
    "evictions",
    "laps",
    "endpoints",
    "checks",
];

/// The holder child: create a ring, attach both ends, leave 3 items in it,
/// say so, then hold it until killed.
fn holder() -> ! {
    run_child(|| {
        let name = child_arg("NAME");
        let q = Spsc::<u64>::create(&name, 16).map_err(|e| e.to_string())?;
        let mut tx = q.producer().map_err(|e| e.to_string())?;
        let _rx = q.consumer().map_err(|e| e.to_string())?;
        for i in 0..3 {
            tx.push(i).map_err(|_| "push")?;
        }
        tell_parent("ready");
        // Hold everything until the parent kills us (or closes stdin).
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        Ok(())
    })
}

#[test]
fn ls_shows_live_rings_and_stale_ones_after_sigkill_and_rm_stale_removes_only_those() {
    if child_role().as_deref() == Some("holder") {
        holder();
    }
    let dead = Shm::new("rmstale-dead");
    let live = Shm::new("rmstale-live");
    let foreign = Shm::new("rmstale-foreign");
    let mut child = spawn(
        "ls_shows_live_rings_and_stale_ones_after_sigkill_and_rm_stale_removes_only_those",
        "holder",
        &[("NAME", dead.name().to_owned())],
    );
    assert_eq!(child.expect_line(), "ready");

    // Live: another process holds it with both endpoints.
    let s = listed(dead.name()).expect("ls lists the ring");
    for f in SEGMENT_FIELDS {
        assert!(s.get(f).is_some(), "ls --json lacks {f:?}: {s}");
    }
    assert_eq!(s["shmqueue"], true);
    assert_eq!(s["kind"], 1);
    assert_eq!(s["kind_name"], "spsc");
    assert_eq!(s["elem_size"], 8);
    assert_eq!(s["capacity"], 16);
    assert_eq!(s["fill"], 3);
    assert_eq!(s["creator_pid"], child.pid());
    assert_eq!(s["mode"], "0600");
    assert_eq!(s["init"], "ready");
    assert_eq!(s["endpoints_alive"], 2);
    assert_eq!(s["endpoints_attached"], 2);
    assert_eq!(s["in_use"], true);
    assert_eq!(s["stale"], false);
    let eps = s["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2);
    assert_eq!(eps[0]["role"], "producer");
    assert_eq!(eps[1]["role"], "consumer");
    for e in eps {
        assert_eq!(e["status"], "attached");
        assert_eq!(e["alive"], true);
        assert_eq!(e["pid"], child.pid());
        assert_eq!(e["liveness"], "alive");
        assert!(e.get("cursor").is_none(), "broadcast only: {e}");
    }
    assert!(s["policy"].is_null() && s["published"].is_null(), "{s}");
    let checks = s["checks"].as_array().unwrap();
    assert_eq!(checks.len(), shmqueue::inspect::CHECKS.len());
    assert!(checks.iter().all(|c| c["outcome"] == "pass"), "{s}");

    let table = shmq(&["ls", "--prefix", &prefix("rmstale")]);
    assert_eq!(table.code, 0);
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(dead.name()))
        .expect("the table lists the ring");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..9], ["spsc", "-", "8", "16", "3", "2/2", "no", "ok"]);

    // Dead: the kernel released the holder's locks when it was killed.
    child.sigkill();
    let s = listed(dead.name()).expect("ls still lists the dead ring");
    assert_eq!(s["stale"], true);
    assert_eq!(s["in_use"], false);
    assert_eq!(s["endpoints_alive"], 0);
    assert_eq!(s["endpoints_attached"], 2, "nobody reaped them");
    for e in s["endpoints"].as_array().unwrap() {
        assert_eq!(e["liveness"], "dead", "{e}");
    }
    assert_eq!(s["fill"], 3);
    let table = shmq(&["ls", "--prefix", dead.name()]);
    let cols: Vec<String> = table
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(cols[6..8], ["0/2", "yes"]);
    let stat = shmq(&["stat", dead.name()]);
    assert_eq!(stat.code, 0);
    assert!(stat.stdout.contains("STALE"), "{}", stat.stdout);
    assert!(
        stat.stdout.contains("DEAD (holder died)"),
        "{}",
        stat.stdout
    );

    // A live ring (a handle, no endpoint) and a foreign file with the
    // same prefix survive `rm --stale`.
    let _q = Spsc::<u32>::create(live.name(), 4).unwrap();
    std::fs::write(format!("/dev/shm{}", foreign.name()), vec![0u8; 4096]).unwrap();
    let v = json(&["rm", "--stale", "--prefix", &prefix("rmstale"), "--json"]);
    let removed = v.as_array().unwrap();
    assert_eq!(removed.len(), 1, "{v}");
    assert_eq!(removed[0]["name"], dead.name());
    assert_eq!(removed[0]["result"], "removed");
    assert!(removed[0]["reason"].is_null());
    assert!(!exists(dead.name()));
    assert!(exists(live.name()) && exists(foreign.name()));
    assert!(listed(live.name()).is_some_and(|s| s["stale"] == false));

    let again = shmq(&["rm", "--stale", "--prefix", &prefix("rmstale")]);
    assert_eq!(again.code, 0);
    assert!(again.stdout.contains("no stale segments"));
}

#[test]
fn foreign_files_are_ignored_by_ls_and_refused_by_rm() {
    let plain = Shm::new("foreign-plain");
    let tiny = Shm::new("foreign-tiny");
    let link = Shm::new("foreign-link");
    let ring = Shm::new("foreign-target");
    std::fs::write(format!("/dev/shm{}", plain.name()), vec![b'x'; 4096]).unwrap();
    std::fs::write(format!("/dev/shm{}", tiny.name()), b"SHMQUEUE").unwrap();
    // A symlink to a real, unused ring: never followed, never removed.
    drop(Spsc::<u64>::create(ring.name(), 4).unwrap());
    std::os::unix::fs::symlink(
        format!("/dev/shm{}", ring.name()),
        format!("/dev/shm{}", link.name()),
    )
    .unwrap();

    let names = json(&["ls", "--json"]);
    for n in [&plain, &tiny, &link] {
        assert!(
            !names
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == n.name()),
            "ls lists {}",
            n.name()
        );
        for force in [false, true] {
            let mut args = vec!["rm", n.name()];
            if force {
                args.push("--force");
            }
            let o = shmq(&args);
            assert_eq!(o.code, 3, "rm must refuse {}", n.name());
            assert!(o.stderr.contains("not a shmqueue segment"), "{}", o.stderr);
            assert!(exists(n.name()), "{} was removed", n.name());
        }
    }
    assert!(exists(ring.name()), "the symlink's target was removed");

    let st = shmq(&["stat", plain.name()]);
    assert_eq!(st.code, 0);
    assert!(st.stdout.contains("NOT a shmqueue segment"));
    assert!(st.stdout.contains("FAIL  magic"), "{}", st.stdout);
    let v = json(&["stat", "--json", tiny.name()]);
    assert_eq!(v["shmqueue"], false);
    assert_eq!(v["stale"], false);
    let failed = |v: &Value| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["outcome"] == "fail")
            .map(|c| c["name"].as_str().unwrap().to_owned())
    };
    assert_eq!(failed(&v).as_deref(), Some("header size"));
    let v = json(&["stat", "--json", link.name()]);
    assert_eq!(failed(&v).as_deref(), Some("file type"));

    // Nonexistent names are errors, not refusals.
    let gone = Shm::new("foreign-missing");
    assert_eq!(shmq(&["stat", gone.name()]).code, 1);
    assert_eq!(shmq(&["rm", gone.name()]).code, 1);
}

#[test]
fn stat_reports_a_corrupted_header_and_an_unknown_kind() {
    let bad = Shm::new("corrupt-stride");
    let other = Shm::new("corrupt-kind");
    let _a = Spsc::<u64>::create(bad.name(), 8).unwrap();
    let _b = Spsc::<u64>::create(other.name(), 8).unwrap();
    let poke = |name: &str, offset: u64, bytes: &[u8]| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm{name}"))
            .unwrap()
            .write_all_at(bytes, offset)
            .unwrap();
    };
    // Slot stride (offset 72) no longer matches what the capacity gives.
    poke(bad.name(), 72, &999u64.to_ne_bytes());
    let st = shmq(&["stat", bad.name()]);
    assert_eq!(st.code, 0);
    let line = st
        .stdout
        .lines()
        .find(|l| l.contains("geometry"))
        .expect("a geometry line");
    assert!(
        line.contains("FAIL") && line.contains("slot stride 999"),
        "{line}"
    );
    let v = json(&["stat", "--json", bad.name()]);
    let geometry = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "geometry")
        .unwrap()
        .clone();
    assert_eq!(geometry["outcome"], "fail");
    assert!(v["fill"].is_null(), "no fill from an inconsistent geometry");
    assert_eq!(v["stale"], false, "we hold it");
    let table = shmq(&["ls", "--prefix", bad.name()]);
    assert!(table.stdout.contains("FAIL geometry"), "{}", table.stdout);

    // Kind 7 (unknown to this build) is shown as its number.
    poke(other.name(), 12, &7u32.to_ne_bytes());
    let s = listed(other.name()).expect("a ring of unknown kind is still listed");
    assert_eq!(s["kind"], 7);
    assert!(s["kind_name"].is_null());
    let table = shmq(&["ls", "--prefix", other.name()]);
    let cols: Vec<&str> = table
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(cols[1], "7");
}

#[test]
fn rm_refuses_a_live_ring_without_force_and_removes_it_with_force() {
    if child_role().as_deref() == Some("creator") {
        // Create a ring and exit: nothing of it is left in any process
        // (a ring dropped by this test process could still be shared, for
        // an instant, with a child another test thread is spawning).
        run_child(|| {
            drop(Spsc::<u64>::create(&child_arg("NAME"), 8).map_err(|e| e.to_string())?);
            Ok(())
        });
    }
    let held = Shm::new("rmlive-held");
    let unused = Shm::new("rmlive-unused");
    // A handle alone, with no endpoint attached, makes it live.
    let q = Spsc::<u64>::create(held.name(), 8).unwrap();
    drop(Spsc::<u64>::create(unused.name(), 8).unwrap());

    let o = shmq(&["rm", held.name()]);
    assert_eq!(o.code, 3);
    assert!(o.stderr.contains("in use"), "{}", o.stderr);
    assert!(exists(held.name()));
    let o = shmq(&["rm", "--json", held.name()]);
    assert_eq!(o.code, 3);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], held.name());
    assert_eq!(v[0]["result"], "refused");
    assert!(v[0]["reason"].as_str().unwrap().contains("in use"), "{v}");
    let o = shmq(&["rm", "--force", held.name(), unused.name()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains(&format!("removed {}", held.name())));
    assert!(!exists(held.name()) && !exists(unused.name()));
    // The holder keeps its mapping.
    let mut tx = q.producer().unwrap();
    tx.push(1).unwrap();

    // Without --force, an unused ring goes, and the exit status says
    // whether anything was refused.
    let unused2 = Shm::new("rmlive-unused2");
    let held2 = Shm::new("rmlive-held2");
    spawn(
        "rm_refuses_a_live_ring_without_force_and_removes_it_with_force",
        "creator",
        &[("NAME", unused2.name().to_owned())],
    )
    .success();
    let _q2 = Spsc::<u64>::create(held2.name(), 8).unwrap();
    let o = shmq(&["rm", unused2.name(), held2.name()]);
    assert_eq!(o.code, 3);
    assert!(!exists(unused2.name()) && exists(held2.name()));
}

#[test]
fn a_byte_ring_is_listed_as_bytes_with_its_fill_in_bytes() {
    let ring = Shm::new("bytes-ls");
    let q = shmqueue::ByteRing::create(ring.name(), 4096).unwrap();
    let mut tx = q.producer().unwrap();
    // One 5-byte message: an 8-byte record header plus the payload padded to 8.
    tx.try_send(b"hello").unwrap();
    let s = listed(ring.name()).expect("the byte ring is listed");
    assert_eq!(s["kind_name"], "bytes");
    assert_eq!(s["capacity"], 4096);
    assert_eq!(s["fill"], 16);
    assert_eq!(s["endpoints_alive"], 1);
    let st = json(&["stat", "--json", ring.name()]);
    let failed: Vec<&Value> = st["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn a_broadcast_ring_shows_its_policy_and_each_subscribers_cursor_and_lag() {
    use shmqueue::broadcast::{Broadcast, Start};
    let ring = Shm::new("bcast-ls");
    let q = Broadcast::<u64>::builder()
        .capacity(16)
        .max_subscribers(4)
        .max_lag(Duration::from_millis(250))
        .create(ring.name())
        .unwrap();
    let mut tx = q.publisher().unwrap();
    let mut a = q.subscribe(Start::Latest).unwrap();
    let _b = q.subscribe(Start::Latest).unwrap();
    for i in 0..5 {
        tx.publish(i).unwrap();
    }
    a.recv().unwrap();
    a.recv().unwrap();

    let table = shmq(&["ls", "--prefix", ring.name()]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);
    let head: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(head[1..3], ["KIND", "POLICY"]);
    let cols: Vec<&str> = table
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        cols[1..9],
        ["broadcast", "lossless", "8", "16", "5", "3/3", "no", "ok"]
    );

    let st = shmq(&["stat", ring.name()]);
    assert_eq!(st.code, 0);
    assert!(
        st.stdout.contains("policy        lossless, max lag 250ms"),
        "{}",
        st.stdout
    );
    assert!(st.stdout.contains("published     5"), "{}", st.stdout);
    let subs: Vec<&str> = st
        .stdout
        .lines()
        .filter(|l| l.contains("subscriber"))
        .collect();
    assert_eq!(subs.len(), 2, "{}", st.stdout);
    assert!(subs[0].contains("alive, cursor 2, lag 3"), "{}", subs[0]);
    assert!(subs[1].contains("alive, cursor 0, lag 5"), "{}", subs[1]);
    assert!(
        st.stdout.contains("(2 more never attached)"),
        "{}",
        st.stdout
    );

    let v = json(&["stat", "--json", ring.name()]);
    assert_eq!(v["kind_name"], "broadcast");
    assert_eq!(v["policy"], "lossless");
    assert_eq!(v["max_lag_ns"], 250_000_000u64);
    assert_eq!(
        (v["published"].clone(), v["evictions"].clone()),
        (5.into(), 0.into())
    );
    let eps = v["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 5);
    assert!(
        eps[0].get("cursor").is_none(),
        "the publisher has no cursor"
    );
    let lags: Vec<(Value, Value, Value)> = eps[1..]
        .iter()
        .map(|e| {
            (
                e["liveness"].clone(),
                e["lag"].clone(),
                e["evicted"].clone(),
            )
        })
        .collect();
    assert_eq!(
        lags,
        [
            ("alive".into(), 3.into(), false.into()),
            ("alive".into(), 5.into(), false.into()),
            ("free".into(), Value::Null, Value::Null),
            ("free".into(), Value::Null, Value::Null),
        ]
    );
}
