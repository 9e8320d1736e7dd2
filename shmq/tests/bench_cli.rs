//! `shmq bench` end to end: the real binary runs a smoke-sized matrix (every
//! metric, both placements, 1x1 and 2x2, 8-byte payloads), and the JSON,
//! the SVG and /dev/shm are checked afterwards.
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

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
    let child = Command::new(env!("CARGO_BIN_EXE_shmq"))
        .args(["bench", "--quick", "--only", "8"])
        .args(["--rounds", "2", "--batch-ms", "2", "--idle-ms", "50"])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run shmq bench");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for shmq bench");
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

#[test]
fn unknown_filter_token_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_shmq"))
        .args(["bench", "--only", "carrier-pigeon", "--list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown token"));
}
