//! `shmq demo`, the main job: the seeds' controller done for real. It
//! creates two rings, starts a producer process and a consumer process (this
//! same binary, re-executed), streams 10 million u64 values through shared
//! memory, checks that none was lost, duplicated or reordered, measures the
//! round-trip latency with a ping-pong, and removes the rings.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clap::Args;
use shmqueue::{PopError, Spsc};

#[derive(Args, Clone)]
pub struct DemoArgs {
    /// Values to stream.
    #[arg(long, default_value_t = 10_000_000)]
    count: u64,
    /// Ring capacity in items.
    #[arg(long, default_value_t = 1024)]
    capacity: usize,
    /// Ping-pong round trips to time.
    #[arg(long, default_value_t = 100_000)]
    round_trips: u64,
    /// Do not pin the two processes to distinct CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Map the rings with every page present in every process
    /// (`Builder::prefault`), so no push or pop takes a first-touch fault.
    #[arg(long)]
    prefault: bool,
}

#[derive(Args, Clone)]
pub struct RoleArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    count: u64,
    #[arg(long)]
    round_trips: u64,
    #[arg(long)]
    cpu: Option<usize>,
    #[arg(long)]
    prefault: bool,
}

use crate::Res;

fn echo_name(name: &str) -> String {
    format!("{name}-echo")
}

/// Removes the demo's rings however `demo` ends.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = shmqueue::unlink(n);
        }
    }
}

pub fn demo(a: DemoArgs) -> Res {
    let name = format!("/shmq-demo-{}", std::process::id());
    // Each name is registered for removal only once we created it: a name
    // that turned out to be someone else's is never unlinked.
    let create = |n: &str| {
        Spsc::<u64>::builder()
            .capacity(a.capacity)
            .prefault(a.prefault)
            .create(n)
    };
    let _stream = create(&name)?;
    let mut cleanup = Cleanup(vec![name.clone()]);
    let _echo = create(&echo_name(&name))?;
    cleanup.0.push(echo_name(&name));
    println!(
        "shmq demo: ring {name} (capacity {}{}), {} values producer -> consumer, then {} round trips",
        a.capacity,
        if a.prefault { ", prefaulted" } else { "" },
        a.count,
        a.round_trips
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = !a.no_pin && cpus >= 2;
    let exe = std::env::current_exe()?;
    let spawn = |role: &str, cpu: usize| -> std::io::Result<Child> {
        let mut c = Command::new(&exe);
        c.arg(role)
            .args(["--name", &name])
            .args(["--count", &a.count.to_string()])
            .args(["--round-trips", &a.round_trips.to_string()]);
        if pin {
            c.args(["--cpu", &cpu.to_string()]);
        }
        if a.prefault {
            c.arg("--prefault");
        }
        c.spawn()
    };
    let mut children = vec![
        ("consumer", spawn("demo-consumer", 1)?),
        ("producer", spawn("demo-producer", 0)?),
    ];
    // Wait for both; if one fails, stop the other rather than leave it
    // blocked on a peer that will never come.
    let mut failed = None;
    while !children.is_empty() {
        let mut i = 0;
        while i < children.len() {
            match children[i].1.try_wait()? {
                Some(status) => {
                    let (role, _) = children.remove(i);
                    if !status.success() && failed.is_none() {
                        failed = Some(format!("{role} process failed: {status}"));
                        for (_, c) in &mut children {
                            let _ = c.kill();
                        }
                    }
                }
                None => i += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(f) = failed {
        return Err(f.into());
    }
    println!("shmq demo: OK - every value arrived once, in order; rings removed");
    Ok(())
}

pub fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let mut set = nix::sched::CpuSet::new();
        if set.set(cpu).is_ok() {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
        }
    }
}

fn open(a: &RoleArgs, name: &str) -> Result<Spsc<u64>, shmqueue::Error> {
    Spsc::<u64>::builder().prefault(a.prefault).open(name)
}

pub fn producer(a: RoleArgs) -> Res {
    pin(a.cpu);
    let mut tx = open(&a, &a.name)?.producer()?;
    let mut rx = open(&a, &echo_name(&a.name))?.consumer()?;
    for i in 0..a.count {
        tx.push(i).map_err(|e| format!("push {i}: {e}"))?;
    }
    let mut rtts = Vec::with_capacity(a.round_trips.min(1 << 24) as usize);
    for i in 0..a.round_trips {
        let v = a.count + i;
        let t0 = Instant::now();
        tx.push(v).map_err(|e| format!("ping {i}: {e}"))?;
        let back = rx.pop().map_err(|e| format!("pong {i}: {e}"))?;
        rtts.push(t0.elapsed().as_nanos() as u64);
        if back != v {
            return Err(format!("round trip {i}: sent {v}, got back {back}").into());
        }
    }
    if !rtts.is_empty() {
        rtts.sort_unstable();
        let q = |p: f64| rtts[((rtts.len() - 1) as f64 * p) as usize];
        println!(
            "round trip ({} pings): p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
            rtts.len(),
            q(0.50),
            q(0.99),
            q(0.999),
            rtts[rtts.len() - 1]
        );
    }
    Ok(())
}

pub fn consumer(a: RoleArgs) -> Res {
    pin(a.cpu);
    let mut rx = open(&a, &a.name)?.consumer()?;
    let mut tx = open(&a, &echo_name(&a.name))?.producer()?;
    let mut start = None;
    let mut last_report = Instant::now();
    for expected in 0..a.count {
        let v = rx.pop().map_err(|e| format!("pop {expected}: {e}"))?;
        let t0 = *start.get_or_insert_with(Instant::now);
        if v != expected {
            let what = if v < expected {
                "duplicated or reordered"
            } else {
                "lost"
            };
            return Err(format!("value {what}: expected {expected}, got {v}").into());
        }
        if expected & 0xffff == 0 && last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            eprintln!(
                "  ... {expected}/{} ({:.0}%) after {:.1} s",
                a.count,
                expected as f64 * 100.0 / a.count as f64,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    if let Some(t0) = start {
        let secs = t0.elapsed().as_secs_f64();
        let rate = a.count as f64 / secs;
        println!(
            "streamed {} u64 values in {:.3} s: {:.1} M msg/s, {:.0} MB/s, none lost, duplicated or reordered",
            a.count,
            secs,
            rate / 1e6,
            rate * 8.0 / 1e6
        );
    }
    for i in 0..a.round_trips {
        let v = rx.pop().map_err(|e| format!("ping {i}: {e}"))?;
        tx.push(v).map_err(|e| format!("pong {i}: {e}"))?;
    }
    // The producer drops its endpoint when done: the ring must then report
    // Disconnected, not hang and not deliver anything more.
    match rx.pop_timeout(Duration::from_secs(10)) {
        Err(PopError::Disconnected) => Ok(()),
        Ok(v) => Err(format!("unexpected extra value {v}").into()),
        Err(e) => Err(format!("expected Disconnected after the producer left, got: {e}").into()),
    }
}
