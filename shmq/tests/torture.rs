//! `shmq torture` as CI runs it: the real binary, SPSC and MPMC (and broadcast subscribers), a few
//! hundred SIGKILLs in all, under a hard wall-clock deadline; and the
//! checker's self-tests (a deliberately lost, duplicated or reordered record
//! and a hung consumer must each fail the run).
//!
//! Every segment name is unique and unlinked by a guard, the ledgers live in
//! a private temporary directory removed by a guard, and a run that outlives
//! its deadline is killed (its children die with it: they ask the kernel
//! for SIGKILL when their parent dies).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Kill events per kind in the CI run: with double kills and chained kills
/// of fresh replacements that is about 250 SIGKILLs over both kinds.
const ITERATIONS: u64 = 120;
/// The binary's own deadline for the whole run.
const RUN_DEADLINE_SECS: u64 = 50;
/// The test's hard deadline: past it, the run is killed and the test fails.
const HARD_DEADLINE: Duration = Duration::from_secs(58);

/// A unique segment-name prefix; the segments the run makes (`-spsc`,
/// `-mpmc`) are unlinked on drop, whatever happened.
struct Names(String);

impl Names {
    fn new(tag: &str) -> Names {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Names(format!(
            "/shmq-test-torture-{}-{tag}-{n}",
            std::process::id()
        ))
    }

    fn segments(&self) -> [String; 4] {
        [
            format!("{}-spsc", self.0),
            format!("{}-mpmc", self.0),
            format!("{}-broadcast-lossless", self.0),
            format!("{}-broadcast-overwrite", self.0),
        ]
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for s in self.segments() {
            let _ = shmqueue::unlink(&s);
        }
    }
}

/// A private TMPDIR for the run's ledgers, removed on drop.
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(tag: &str) -> TmpDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "shmq-test-torture-{}-{tag}-{n}",
            std::process::id()
        ));
        std::fs::create_dir(&p).unwrap();
        TmpDir(p)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    status: ExitStatus,
    stdout: String,
    elapsed: Duration,
}

/// Run `shmq torture <args>` with unique names and a private TMPDIR, killed
/// if it outlives `HARD_DEADLINE`. Checks that it removed its segments and
/// ledgers itself.
fn torture(tag: &str, args: &[&str]) -> Run {
    let names = Names::new(tag);
    let tmp = TmpDir::new(tag);
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmq"))
        .arg("torture")
        .args(["--name", &names.0])
        .args(args)
        .env("TMPDIR", &tmp.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn shmq torture");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > HARD_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = reader.join().unwrap();
            panic!("shmq torture {args:?} ran past {HARD_DEADLINE:?}; its output:\n{stdout}");
        }
        // Polling with a deadline: there is no wait-with-timeout for a child.
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let stdout = reader.join().unwrap();
    eprintln!("shmq torture {args:?}: {status} in {elapsed:?}\n{stdout}");
    for s in names.segments() {
        let path = format!("/dev/shm/{}", s.trim_start_matches('/'));
        assert!(
            !std::path::Path::new(&path).exists(),
            "the run left {path} behind"
        );
    }
    let left: Vec<_> = std::fs::read_dir(&tmp.0).unwrap().collect();
    assert!(left.is_empty(), "the run left ledgers behind: {left:?}");
    Run {
        status,
        stdout,
        elapsed,
    }
}

/// The `summary:` lines, as key=value maps.
fn summaries(stdout: &str) -> Vec<std::collections::HashMap<String, String>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("summary: "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

fn num(m: &std::collections::HashMap<String, String>, k: &str) -> f64 {
    m.get(k)
        .unwrap_or_else(|| panic!("summary has no {k}: {m:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("summary {k}: {e}: {m:?}"))
}

fn seed_args() -> Vec<String> {
    // Replay a failing run's choices with SHMQ_TEST_SEED=<seed printed>.
    match std::env::var("SHMQ_TEST_SEED") {
        Ok(s) => vec!["--seed".into(), s],
        Err(_) => vec![],
    }
}

#[test]
fn hundreds_of_sigkills_lose_nothing_outside_the_window_and_nothing_hangs() {
    let iterations = ITERATIONS.to_string();
    let deadline = RUN_DEADLINE_SECS.to_string();
    let seed = seed_args();
    let mut args = vec![
        "--kind",
        "both",
        "--iterations",
        &iterations,
        "--deadline-secs",
        &deadline,
        // Generous: a step is ~10-300 ms, but this machine may be loaded.
        "--step-deadline-secs",
        "30",
    ];
    args.extend(seed.iter().map(String::as_str));
    let run = torture("ci", &args);
    assert!(
        run.status.success(),
        "shmq torture failed ({}):\n{}",
        run.status,
        run.stdout
    );
    let sums = summaries(&run.stdout);
    let kinds: Vec<&str> = sums.iter().map(|m| m["kind"].as_str()).collect();
    assert_eq!(kinds, ["spsc", "mpmc"], "{}", run.stdout);
    let mut kills = 0.0;
    for m in &sums {
        assert!(num(m, "iterations") >= ITERATIONS as f64, "{m:?}");
        assert_eq!(num(m, "duplicates"), 0.0, "{m:?}");
        assert_eq!(num(m, "order_violations"), 0.0, "{m:?}");
        assert_eq!(num(m, "phantoms"), 0.0, "{m:?}");
        assert!(num(m, "lost") <= num(m, "loss_bound"), "{m:?}");
        assert!(num(m, "items_moved") > 0.0, "{m:?}");
        assert_eq!(m["result"], "OK", "{m:?}");
        kills += num(m, "kills_producer") + num(m, "kills_consumer");
    }
    // One or two victims per iteration (a victim that retired on its own
    // just before is not counted): a few hundred in all.
    assert!(kills >= 200.0, "{kills} kills: {}", run.stdout);
    assert!(
        run.stdout.lines().last() == Some("shmq torture: OK"),
        "{}",
        run.stdout
    );
    eprintln!("{kills} SIGKILLs in {:?}", run.elapsed);
}

/// Broadcast, both policies: subscriber processes SIGKILLed at random and
/// replaced; every subscriber's books must balance (lossless: nothing
/// missed, survivors got every position; overwrite: received + missed
/// covers every position), no torn or out-of-order item, and a killed
/// subscriber never holds the lossless publisher past the step deadline.
#[test]
fn broadcast_subscribers_killed_at_random_keep_their_books_exact() {
    let iterations = "60";
    let seed = seed_args();
    let mut args = vec![
        "--kind",
        "broadcast",
        "--iterations",
        iterations,
        "--consumers",
        "3",
        "--deadline-secs",
        "40",
        "--step-deadline-secs",
        "10",
    ];
    args.extend(seed.iter().map(String::as_str));
    let run = torture("bcast", &args);
    assert!(run.status.success(), "{}", run.stdout);
    let sums = summaries(&run.stdout);
    let kinds: Vec<&str> = sums.iter().map(|m| m["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["broadcast-lossless", "broadcast-overwrite"],
        "{}",
        run.stdout
    );
    for m in &sums {
        assert_eq!(num(m, "kills"), 60.0, "{m:?}");
        assert_eq!(num(m, "violations"), 0.0, "{m:?}");
        assert!(num(m, "published") > 0.0, "{m:?}");
        assert!(num(m, "received") > 0.0, "{m:?}");
        assert_eq!(m["result"], "OK", "{m:?}");
    }
    assert_eq!(num(&sums[0], "missed"), 0.0, "lossless: {:?}", sums[0]);
    // A dead subscriber stops gating within the 20 ms patience plus one
    // 100 ms sleep slice; 1 s is the requirement.
    assert!(num(&sums[0], "worst_resume_ms") < 1000.0, "{:?}", sums[0]);
}

/// The checker itself: each injected fault in a consumer's record must make
/// the run fail, naming the violation; so must a consumer that hangs.
#[test]
fn the_checker_catches_a_lost_duplicated_or_reordered_record_and_a_hang() {
    for (inject, kind, expect) in [
        ("lose", "spsc", "lost inside consumer"),
        ("lose", "mpmc", "never recorded"),
        ("duplicate", "spsc", "recorded twice"),
        ("duplicate", "mpmc", "recorded twice"),
        ("reorder", "spsc", "FIFO"),
        ("reorder", "mpmc", "after seq"),
    ] {
        // No kills at all (the bound is then 0): a clean stream plus one
        // fault, which the books must show.
        let run = torture(
            inject,
            &[
                "--kind",
                kind,
                "--iterations",
                "0",
                "--inject",
                inject,
                "--deadline-secs",
                "50",
                "--max-batch",
                "1",
            ],
        );
        assert!(
            !run.status.success(),
            "{inject} on {kind} went unnoticed:\n{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("VIOLATION") && run.stdout.contains(expect),
            "{inject} on {kind}: expected a violation mentioning {expect:?}:\n{}",
            run.stdout
        );
        assert!(run.stdout.contains("result=FAIL"), "{}", run.stdout);
    }
    let run = torture(
        "hang",
        &[
            "--kind",
            "spsc",
            "--iterations",
            "5",
            "--inject",
            "hang",
            "--step-deadline-secs",
            "2",
        ],
    );
    assert!(!run.status.success(), "{}", run.stdout);
    assert!(
        run.stdout.contains("no recovery within") && run.stdout.contains("<- STUCK"),
        "a hang must be reported with the stuck process:\n{}",
        run.stdout
    );
}
