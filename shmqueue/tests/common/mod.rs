//! Helpers for tests that use real segments and real processes.
//!
//! * Every segment gets a unique name and an [`Shm`] guard that unlinks it on
//!   drop, including when the test panics.
//! * A second process is this same test binary re-executed with
//!   `SHMQ_TEST_ROLE` set, running only the named test (rusty-fork style);
//!   [`ChildProc`] kills it on drop, and every wait on it has a deadline.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Deadline for anything a test waits on: generous, so a bug fails instead of
/// hanging CI, and a loaded 2-core machine does not fail a correct run.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A unique shared-memory name, unlinked on drop.
pub struct Shm(pub String);

impl Shm {
    pub fn new(tag: &str) -> Shm {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Shm(format!("/shmq-test-{}-{tag}-{n}", std::process::id()))
    }
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        let _ = shmqueue::unlink(&self.0);
    }
}

/// The role this process plays, when it is a re-executed child.
pub fn child_role() -> Option<String> {
    std::env::var("SHMQ_TEST_ROLE").ok()
}

/// An argument passed to a child.
pub fn child_arg(key: &str) -> String {
    std::env::var(format!("SHMQ_TEST_{key}")).unwrap_or_else(|_| panic!("missing SHMQ_TEST_{key}"))
}

/// Print a line the parent can read with [`ChildProc::expect_line`].
pub fn tell_parent(msg: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // libtest leaves "test name ... " unterminated on stdout: start afresh.
    writeln!(out, "\n@@{msg}").unwrap();
    out.flush().unwrap();
}

/// Run a child body and exit with its status, so that the harness in the
/// child never runs the parent half of the test.
pub fn run_child(body: impl FnOnce() -> Result<(), String>) -> ! {
    match body() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("child failed: {e}");
            std::process::exit(3)
        }
    }
}

/// A child process, killed on drop.
pub struct ChildProc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// Start this test binary again, running only `test` with role `role`.
pub fn spawn(test: &str, role: &str, args: &[(&str, String)]) -> ChildProc {
    spawn_env(test, role, args, &[])
}

/// As [`spawn`], with extra environment variables for the child only (for
/// settings the library reads from the environment, such as
/// `SHMQUEUE_FENCE`). An empty value removes the variable.
pub fn spawn_env(
    test: &str,
    role: &str,
    args: &[(&str, String)],
    env: &[(&str, &str)],
) -> ChildProc {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SHMQ_TEST_ROLE", role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in args {
        cmd.env(format!("SHMQ_TEST_{k}"), v);
    }
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().expect("spawn child test process");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("@@") {
                if tx.send(line[at + 2..].to_owned()).is_err() {
                    break;
                }
            }
        }
    });
    ChildProc { child, lines }
}

impl ChildProc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next line the child sent with [`tell_parent`], within `DEADLINE`.
    pub fn expect_line(&mut self) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(l) => l,
            Err(e) => panic!("child sent nothing within {DEADLINE:?}: {e}"),
        }
    }

    pub fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL child");
        self.wait();
    }

    /// Wait for exit, failing the test if it takes longer than `DEADLINE`.
    pub fn wait(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < end,
                "child did not exit within {DEADLINE:?}"
            );
            // Polling with a deadline; there is no portable wait-with-timeout.
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGSTOP the child and return once every one of its threads is
    /// stopped. `kill` returns when the signal is queued, not delivered: a
    /// child running on another core goes on for a moment, so a test that
    /// counts on "stopped here" must wait for the kernel to say so.
    pub fn sigstop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        kill(nix::unistd::Pid::from_raw(self.pid()), Signal::SIGSTOP).expect("SIGSTOP child");
        let end = Instant::now() + DEADLINE;
        while !all_threads_stopped(self.pid()) {
            assert!(Instant::now() < end, "SIGSTOP did not take effect");
            // Polling with a deadline: there is no wait for "stopped" that
            // leaves the child to std's Child.
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// SIGCONT the child.
    pub fn sigcont(&mut self) {
        use nix::sys::signal::{kill, Signal};
        kill(nix::unistd::Pid::from_raw(self.pid()), Signal::SIGCONT).expect("SIGCONT child");
    }

    /// Wait and require a successful exit.
    pub fn success(&mut self) {
        let s = self.wait();
        assert!(s.success(), "child failed: {s}");
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether every thread of `pid` is in the stopped state ('T' in
/// `/proc/<pid>/task/*/stat`).
pub fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    for task in tasks {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            return false; // a thread exiting: not stopped
        };
        // "tid (comm) S ...": the state follows the last ')'.
        let state = stat[stat.rfind(')').unwrap() + 1..]
            .trim_start()
            .chars()
            .next();
        if state != Some('T') {
            return false;
        }
    }
    true
}

/// CPU time consumed by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32)
}

/// Why a test that needs a private mount namespace (`unshare -m`, as root)
/// to `what` cannot run here, if it cannot: not root, or root without
/// CAP_SYS_ADMIN (a default container), or no `unshare` command.
pub fn cannot_unshare(what: &str) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(format!(
            "needs root to {what} in a private mount namespace (running as uid {})",
            nix::unistd::geteuid()
        ));
    }
    match Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`unshare -m` failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("no `unshare` command (util-linux): {e}")),
    }
}

/// Items that carry a checksum of themselves: a torn item (words from two
/// different writes) fails `valid`. The broadcast tests use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Tick {
    pub pos: u64,
    pub words: [u64; 6],
    pub sum: u64,
}

impl Tick {
    pub fn new(pos: u64) -> Tick {
        let mut words = [0u64; 6];
        let mut x = pos.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for w in &mut words {
            x ^= x >> 29;
            x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            *w = x;
        }
        let sum = words.iter().fold(pos, |a, &w| a.rotate_left(7) ^ w);
        Tick { pos, words, sum }
    }
    pub fn valid(&self) -> bool {
        *self == Tick::new(self.pos)
    }
}
