//! `shmq bench` end to end: the real binary runs a smoke-sized matrix (every
//! metric, both placements, 1x1 and 2x2, 8-byte payloads), and the JSON,
//! the SVG and /dev/shm are checked afterwards; and the broadcast
//! contenders of issue #12 each get their rows. Every run has a deadline.
use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest a smoke-sized `shmq bench` may take before the test kills it.
const DEADLINE: Duration = Duration::from_secs(180);

/// Run `shmq bench` with `args`; the bench's pid (its objects' names carry
/// it) and its output. Killed, and the test failed, past [`DEADLINE`].
fn bench(args: &[&str]) -> (u32, Output) {
    let child = Command::new(env!("CARGO_BIN_EXE_shmq"))
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmq bench");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => (pid, out.expect("wait for shmq bench")),
        Err(_) => {
            // Its bench-peer children die with it (PR_SET_PDEATHSIG).
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("shmq bench {args:?} did not finish within {DEADLINE:?}");
        }
    }
}

/// What the matrix must contain for 8-byte payloads: (metric, placement,
/// topology) -> contenders.
fn expected() -> Vec<(&'static str, &'static str, &'static str, Vec<&'static str>)> {
    let shm_kernel = ["pipe", "fifo", "socketpair", "mq", "pthread-ring"];
    let in_proc = ["rtrb", "arrayqueue", "sync_channel"];
    let mut out = Vec::new();
    for place in ["thread", "process"] {
        let threads = place == "thread";
        // stream 1x1
        let mut v = vec![
            "shmq-spsc-spin",
            "shmq-spsc-batch",
            "shmq-spsc-block",
            "shmq-mpmc-spin",
            "shmq-mpmc-block",
        ];
        if threads {
            v.extend(in_proc);
        }
        v.extend(shm_kernel);
        out.push(("stream", place, "1x1", v));
        // stream 2x2
        let mut v = vec!["shmq-mpmc-spin", "shmq-mpmc-block"];
        if threads {
            v.push("arrayqueue");
        }
        v.extend(["mq", "pthread-ring"]);
        out.push(("stream", place, "2x2", v));
        // round trip
        let mut v = vec![
            "floor",
            "shmq-spsc-spin",
            "shmq-spsc-block",
            "shmq-mpmc-spin",
            "shmq-mpmc-block",
        ];
        if threads {
            v.extend(in_proc);
        }
        v.extend(shm_kernel);
        out.push(("rtt", place, "1x1", v));
        // wake-up and idle: blocking contenders
        for m in ["wake", "idle"] {
            let mut v = vec!["shmq-spsc-block", "shmq-mpmc-block"];
            if threads {
                v.push("sync_channel");
            }
            v.extend(shm_kernel);
            out.push((m, place, "1x1", v));
        }
    }
    out
}

fn leftovers(dir: &str, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn quick_bench_writes_json_and_svg_and_cleans_up() {
    let dir = std::env::temp_dir().join(format!("shmq-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("bench.json"), dir.join("bench.svg"));
    let t0 = Instant::now();
    let (pid, out) = bench(&[
        "--quick",
        "--only",
        "8",
        "--rounds",
        "2",
        "--batch-ms",
        "2",
        "--idle-ms",
        "50",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "shmq bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    eprintln!(
        "shmq bench --quick --only 8 took {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // The table: absolute figures and ratios.
    assert!(
        stdout.contains("x floor"),
        "no ratio to the floor:\n{stdout}"
    );
    assert!(
        stdout.contains("x best peer"),
        "no ratio to the best peer:\n{stdout}"
    );

    // The JSON and its documented fields.
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["schema"], "shmq-bench/1");
    for k in [
        "machine",
        "config",
        "mq_limits",
        "results",
        "skipped",
        "crossover",
        "targets",
    ] {
        assert!(doc.get(k).is_some(), "JSON lacks {k}");
    }
    let results = doc["results"].as_array().unwrap();
    let mut seen = BTreeSet::new();
    for r in results {
        for k in [
            "id",
            "metric",
            "placement",
            "topology",
            "size",
            "contender",
            "family",
            "blocking",
            "batch",
            "headline",
            "higher_is_better",
            "figures",
            "rounds",
            "vs_floor",
            "best_peer",
            "vs_best_peer",
        ] {
            assert!(r.get(k).is_some(), "{} lacks {k}", r["id"]);
        }
        let head = r["headline"].as_str().unwrap();
        let figs = r["figures"].as_object().unwrap();
        assert!(figs.contains_key(head), "{} lacks its headline", r["id"]);
        for (name, f) in figs {
            for q in ["median", "p25", "p75", "min", "max"] {
                let v = f[q].as_f64().unwrap_or(f64::NAN);
                // Idle CPU may round to zero; everything else is a rate or
                // a latency and must be positive.
                let ok = if name == "cpu_percent" {
                    v >= 0.0
                } else {
                    v > 0.0
                };
                assert!(ok && v.is_finite(), "{} {name}.{q} = {v}", r["id"]);
            }
            assert_eq!(f["n"], 2, "{} {name}: rounds", r["id"]);
        }
        seen.insert((
            r["metric"].as_str().unwrap().to_string(),
            r["placement"].as_str().unwrap().to_string(),
            r["topology"].as_str().unwrap().to_string(),
            r["contender"].as_str().unwrap().to_string(),
        ));
    }
    for (m, p, t, cs) in expected() {
        for c in cs {
            assert!(
                seen.contains(&(m.into(), p.into(), t.into(), c.into())),
                "no result for {m}/{p}/{t}/8/{c}"
            );
        }
    }
    // In-process peers are reported as such, not silently dropped.
    let skipped = doc["skipped"].as_array().unwrap();
    assert!(skipped
        .iter()
        .any(|s| s["contender"] == "rtrb" && s["reason"] == "in-process only"));
    // The floor ratio of the floor itself is 1.
    let floor = results
        .iter()
        .find(|r| r["id"] == "rtt/process/1x1/8/floor")
        .unwrap();
    assert!((floor["vs_floor"]["median"].as_f64().unwrap() - 1.0).abs() < 1e-9);

    // The chart.
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.contains("<svg") && s.contains("</svg>"), "not an SVG");

    // Nothing left behind: segments, message queues, FIFO directories.
    let prefix = format!("shmqb-{pid}-");
    assert_eq!(leftovers("/dev/shm", &prefix), Vec::<String>::new());
    assert_eq!(leftovers("/dev/mqueue", &prefix), Vec::<String>::new());
    let tmp = std::env::temp_dir();
    assert_eq!(
        leftovers(tmp.to_str().unwrap(), &prefix),
        Vec::<String>::new()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The broadcast contenders of issue #12 (shmqueue's broadcast ring, spin
/// and blocking; ringfire's lossless SPMC, spin and futex; iceoryx2
/// publish-subscribe when built in) each get a row in the 1x1 stream, the
/// 1x3 fan-out and the round trip, in both placements, in the table and the
/// JSON; the broadcast targets are reported; nothing is left behind.
#[test]
fn broadcast_contenders_each_get_their_rows() {
    let dir = std::env::temp_dir().join(format!("shmq-bench-bcast-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let (pid, out) = bench(&[
        "--quick",
        "--only",
        "8,stream,rtt,floor,shmq-bcast,ringfire,iceoryx2",
        "--rounds",
        "2",
        "--batch-ms",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "shmq bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let iox = cfg!(feature = "iceoryx2");
    let mut contenders = vec![
        "shmq-bcast-spin",
        "shmq-bcast-block",
        "ringfire",
        "ringfire-futex",
    ];
    if iox {
        contenders.push("iceoryx2");
    }

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut seen = BTreeSet::new();
    for r in doc["results"].as_array().unwrap() {
        let head = r["headline"].as_str().unwrap();
        let med = r["figures"][head]["median"].as_f64().unwrap_or(f64::NAN);
        assert!(med > 0.0 && med.is_finite(), "{}: {head} = {med}", r["id"]);
        seen.insert(r["id"].as_str().unwrap().to_string());
    }
    for place in ["thread", "process"] {
        for (metric, topo) in [("stream", "1x1"), ("stream", "1x3"), ("rtt", "1x1")] {
            for c in &contenders {
                let id = format!("{metric}/{place}/{topo}/8/{c}");
                assert!(seen.contains(&id), "no result for {id}; got {seen:?}");
            }
        }
        // Only broadcast contenders fan out; the floor is not one.
        assert!(!seen.contains(&format!("stream/{place}/1x3/8/floor")));
    }
    // The table has a row per contender in each fan-out section.
    for place in ["cross-thread", "cross-process"] {
        let head = format!("== stream | {place} | 1x3 | 8 B payload");
        let sect = stdout
            .split("\n== ")
            .find(|s| format!("== {s}").starts_with(&head))
            .unwrap_or_else(|| panic!("no section {head:?}:\n{stdout}"));
        for c in &contenders {
            assert!(
                sect.lines().any(|l| l.split_whitespace().next() == Some(c)),
                "no {c} row in {head:?}:\n{sect}"
            );
        }
    }
    // Built without iceoryx2, the bench says so rather than drop it.
    if !iox {
        assert!(
            doc["skipped"].as_array().unwrap().iter().any(|s| {
                s["contender"] == "iceoryx2" && s["reason"].as_str().unwrap().contains("feature")
            }),
            "iceoryx2 not reported as skipped: {}",
            doc["skipped"]
        );
    }
    // The targets of issue #12 are measured (met or not).
    let targets = doc["targets"].to_string();
    for call in ["", "blocking "] {
        let mut ts = vec![
            "broadcast round trip vs floor",
            "broadcast fan-out vs ringfire lossless",
        ];
        if iox {
            ts.push("broadcast fan-out vs iceoryx2");
        }
        for t in ts {
            let t = format!("\"{call}{t} (");
            assert!(targets.contains(&t), "no target {t:?}: {targets}");
        }
    }

    // Nothing left: shmqueue and ringfire segments, iceoryx2's /dev/shm
    // files (prefix with '_') and its root directory under the temp dir.
    let tmp = std::env::temp_dir();
    for (d, p) in [
        ("/dev/shm", format!("shmqb-{pid}-")),
        ("/dev/shm", format!("shmqb_{pid}_")),
        (tmp.to_str().unwrap(), format!("shmqb-{pid}-")),
    ] {
        assert_eq!(leftovers(d, &p), Vec::<String>::new(), "left in {d}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_filter_token_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_shmq"))
        .args(["bench", "--only", "carrier-pigeon", "--list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown token"));
}
