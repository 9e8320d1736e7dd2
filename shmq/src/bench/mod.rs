//! `shmq bench`: "which IPC should I use?" shmqueue's SPSC and MPMC rings
//! (spinning, blocking, batched; between threads and between processes)
//! against a bare cache-line ping-pong (the floor), rtrb, crossbeam's
//! ArrayQueue, `std::sync::mpsc::sync_channel`, a pipe, a FIFO, a Unix
//! socketpair, a POSIX message queue and a pthread mutex+condvar ring in
//! shared memory, on stream throughput, round-trip latency, wake-up latency
//! and idle CPU, for payloads of 8 B to 64 KiB.
//!
//! * `matrix`: which groups run and the `--only` filter;
//! * `peers`: every contender as a two-way channel (`Duplex`);
//!   `mq`, `pthread_ring`: the two peers that need libc;
//! * `runner`: peer threads / child processes, interleaved rounds;
//! * `stats`, `report`, `svg`: medians, ratios, tables, JSON, the chart.
//!
//! Cross-process contenders re-execute this binary as `shmq bench-peer`.

mod bcast;
mod matrix;
mod mq;
mod payload;
mod peers;
mod pthread_ring;
mod report;
mod runner;
mod stats;
mod svg;
mod sys;

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Res;
use matrix::{plan, Filter};
use report::Report;
use runner::Config;

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Smoke-sized run (3 rounds, short batches, payloads 8 B and 4 KiB):
    /// well under 30 s.
    #[arg(long)]
    quick: bool,
    /// Only the groups and contenders matching these tokens (comma
    /// separated, repeatable): metrics stream, rtt, wake, idle; placements
    /// thread, process; topologies 1x1, 2x2, 1x3 (broadcast fan-out);
    /// sizes 8, 64, 512, 4k, 64k; contenders by name or prefix (floor,
    /// shmq, shmq-spsc-spin, shmq-bcast, rtrb, arrayqueue, sync_channel,
    /// pipe, fifo, socketpair, mq, pthread-ring, ringfire, ringfire-futex,
    /// iceoryx2).
    /// Tokens of one kind are alternatives; kinds combine with "and".
    #[arg(long, alias = "filter", value_name = "TOKENS")]
    only: Vec<String>,
    /// Measured rounds per comparison (default 7, --quick 3); every figure
    /// is the median over them, with quartiles.
    #[arg(long)]
    rounds: Option<usize>,
    /// Target length of one batch in ms (default 40, --quick 5).
    #[arg(long)]
    batch_ms: Option<u64>,
    /// Idle window of the idle-CPU measurement in ms (default 1000, --quick 100).
    #[arg(long)]
    idle_ms: Option<u64>,
    /// Write every figure (medians, quartiles, per-round values, ratios) here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Write a chart of latency and throughput against payload size here.
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// Print the groups that would run, and exit.
    #[arg(long)]
    list: bool,
    /// Do not pin the two sides to CPUs 0 and 1.
    #[arg(long)]
    no_pin: bool,
}

/// `shmq bench-peer`: side B of a cross-process contender.
#[derive(Args, Clone, Debug)]
pub struct PeerArgs {
    #[arg(long)]
    kind: String,
    #[arg(long)]
    size: usize,
    #[arg(long, default_value_t = 1)]
    pairs: usize,
    #[arg(long, default_value_t = 1)]
    subs: usize,
    #[arg(long, value_delimiter = ',')]
    names: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    fds: Vec<i32>,
    #[arg(long)]
    cpu: Option<usize>,
}

pub fn peer(a: PeerArgs) -> Res {
    let kind = peers::Kind::parse(&a.kind).ok_or_else(|| format!("unknown kind {}", a.kind))?;
    runner::peer_main(
        peers::PeerSpec {
            kind,
            size: a.size,
            pairs: a.pairs,
            subs: a.subs,
            names: a.names,
            fds: a.fds,
        },
        a.cpu,
    )
}

fn machine(pinned: bool) -> report::Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    report::Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        kernel,
        pinned,
    }
}

pub fn bench(a: BenchArgs) -> Res {
    let filter = Filter::parse(&a.only)?;
    let sizes: Vec<usize> = if a.quick {
        vec![8, 4096]
    } else {
        payload::SIZES.to_vec()
    };
    let groups = plan(&filter, &sizes);
    if groups.is_empty() {
        return Err("--only selects nothing".into());
    }
    let pin = !a.no_pin && sys::can_pin();
    // Before pinning: available_parallelism then counts the CPUs we may use.
    let m = machine(pin);
    let rounds = a.rounds.unwrap_or(if a.quick { 3 } else { 7 }).max(1);
    let cfg = Config {
        rounds,
        batch_ms: a.batch_ms.unwrap_or(if a.quick { 5 } else { 40 }).max(1),
        wake_samples: if a.quick { 5 } else { 20 },
        wake_gap_ms: 2,
        idle_ms: a.idle_ms.unwrap_or(if a.quick { 100 } else { 1000 }).max(1),
        idle_rounds: rounds.min(3),
        pin,
    };
    if a.list {
        for g in &groups {
            let ks: Vec<&str> = g.kinds.iter().map(|k| k.name()).collect();
            println!("{:<28} {}", g.id(), ks.join(" "));
            for (k, why) in &g.skipped {
                println!("{:<28}   n/a {}: {why}", "", k.name());
            }
        }
        return Ok(());
    }
    sys::cleanup_on_signals();
    if pin {
        sys::pin(sys::CPU_A);
    } else {
        eprintln!("shmq bench: not pinning (fewer than 2 CPUs or --no-pin)");
    }
    let total: u64 = groups
        .iter()
        .map(|g| {
            let r = if g.metric == matrix::Metric::Idle {
                cfg.idle_rounds
            } else {
                cfg.rounds
            };
            (r as u64 + 1) * g.kinds.len() as u64
        })
        .sum();
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")?
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let mut tables = Vec::new();
    let mut failures = Vec::new();
    for g in &groups {
        let (outs, failed) = runner::run_group(g, &cfg, &pb);
        let es = report::entries(g, &outs, cfg.wake_samples);
        let mut sk = g.skipped.clone();
        for (k, why) in &failed {
            pb.println(format!("shmq bench: {} {} failed: {why}", g.id(), k.name()));
            failures.push(format!("{} {}: {why}", g.id(), k.name()));
            sk.push((*k, format!("FAILED: {why}")));
        }
        for (k, why) in &sk {
            skipped.push(report::Skip {
                group: g.id(),
                contender: k.name(),
                reason: why.clone(),
            });
        }
        let r = if g.metric == matrix::Metric::Idle {
            cfg.idle_rounds
        } else {
            cfg.rounds
        };
        tables.push((g.clone(), es.clone(), sk, r));
        entries.extend(es);
    }
    pb.finish_and_clear();
    let duration_s = started.elapsed().as_secs_f64();
    println!(
        "shmq bench: {} CPUs ({}), kernel {}, {}; {} rounds interleaved, {:.0} s",
        m.cpus,
        m.cpu_model,
        m.kernel,
        if pin {
            "sides pinned to CPUs 0 and 1"
        } else {
            "unpinned"
        },
        cfg.rounds,
        duration_s
    );
    println!(
        "Figures: median over rounds [p25-p75]. Ratios: this contender's headline figure / the \
         reference's, computed per round (both ran back to back) and summarised the same way. \
         Stream: > 1 is faster; latency and CPU: < 1 is better. rtrb, arrayqueue and \
         sync_channel work between threads only."
    );
    for (g, es, sk, r) in &tables {
        report::print_group(g, es, sk, *r);
    }
    let crossover = report::crossover(&entries);
    report::print_crossover(&crossover);
    let targets = report::targets(&entries);
    report::print_targets(&targets);
    let l = mq::limits();
    let rep = Report {
        schema: report::SCHEMA,
        started_unix_s,
        duration_s,
        machine: m,
        quick: a.quick,
        config: cfg,
        sizes,
        only: a.only.clone(),
        mq_limits: report::MqLimits {
            msgsize_max: l.msgsize_max,
            msg_max: l.msg_max,
        },
        results: entries,
        skipped,
        crossover,
        targets,
    };
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&rep)?)?;
        println!("\nJSON: {}", p.display());
    }
    if let Some(p) = &a.svg {
        svg::write(p, &rep.results)?;
        println!("SVG: {}", p.display());
    }
    if !failures.is_empty() {
        return Err(format!(
            "{} contender(s) failed: {}",
            failures.len(),
            failures.join("; ")
        )
        .into());
    }
    Ok(())
}
