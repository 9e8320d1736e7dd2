//! The results: the JSON document, the text tables (absolute figures and
//! ratios), the shmqueue-vs-pipe crossover and the targets.

use std::collections::BTreeMap;

use serde::Serialize;

use super::matrix::{Group, Metric, Placement};
use super::peers::{Family, Kind};
use super::runner::{Config, Outcome};
use super::stats::{paired_ratio, Stat};

/// Version tag of the JSON layout (docs/BENCHMARKS.md describes it).
pub const SCHEMA: &str = "shmq-bench/1";

#[derive(Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub started_unix_s: u64,
    pub duration_s: f64,
    pub machine: Machine,
    pub quick: bool,
    pub config: Config,
    pub sizes: Vec<usize>,
    pub only: Vec<String>,
    pub mq_limits: MqLimits,
    pub results: Vec<Entry>,
    pub skipped: Vec<Skip>,
    pub crossover: Vec<Cross>,
    pub targets: Vec<Target>,
}

#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub pinned: bool,
}

#[derive(Serialize)]
pub struct MqLimits {
    pub msgsize_max: usize,
    pub msg_max: usize,
}

#[derive(Serialize, Clone)]
pub struct Entry {
    /// `metric/placement/topology/size/contender`.
    pub id: String,
    pub metric: Metric,
    pub placement: Placement,
    pub topology: &'static str,
    pub size: usize,
    pub contender: &'static str,
    pub family: &'static str,
    pub blocking: bool,
    /// Items (stream) or round trips (rtt) per batch; wake-ups per batch
    /// (wake); 1 (idle).
    pub batch: u64,
    /// The figure the ratios compare.
    pub headline: &'static str,
    pub higher_is_better: bool,
    /// Median, quartiles and range over the rounds, per figure.
    pub figures: BTreeMap<&'static str, Stat>,
    /// The per-round values behind `figures`.
    pub rounds: BTreeMap<&'static str, Vec<f64>>,
    /// This contender's headline / the floor's, paired round by round.
    pub vs_floor: Option<Stat>,
    /// The best non-shmqueue peer of the group (by median headline).
    pub best_peer: Option<&'static str>,
    /// This contender's headline / the best peer's, paired.
    pub vs_best_peer: Option<Stat>,
}

#[derive(Serialize)]
pub struct Skip {
    pub group: String,
    pub contender: &'static str,
    pub reason: String,
}

#[derive(Serialize)]
pub struct Cross {
    pub metric: Metric,
    pub placement: Placement,
    pub contender: &'static str,
    pub size: usize,
    /// How many times faster than the pipe (throughput ratio for the
    /// stream, pipe p50 / contender p50 for the round trip).
    pub speedup_vs_pipe: Stat,
}

#[derive(Serialize)]
pub struct Target {
    pub target: String,
    pub goal: String,
    pub measured: Option<f64>,
    pub met: Option<bool>,
    pub detail: String,
}

fn family(k: Kind) -> &'static str {
    match k.family() {
        Family::Floor => "floor",
        Family::Shmqueue => "shmqueue",
        Family::Peer => "peer",
    }
}

/// Turn a group's outcomes into entries (figures and ratios).
pub fn entries(g: &Group, outs: &[Outcome], wake_samples: u64) -> Vec<Entry> {
    let (head, higher) = g.metric.headline();
    let hv = |o: &Outcome| o.figs.get(head).cloned().unwrap_or_default();
    let floor = outs.iter().find(|o| o.kind == Kind::Floor).map(hv);
    let med = |o: &Outcome| Stat::of(&hv(o)).median;
    let best = outs
        .iter()
        .filter(|o| o.kind.family() == Family::Peer && !hv(o).is_empty())
        .max_by(|a, b| {
            let (x, y) = (med(a), med(b));
            if higher {
                x.total_cmp(&y)
            } else {
                y.total_cmp(&x)
            }
        });
    outs.iter()
        .map(|o| {
            let mine = hv(o);
            Entry {
                id: format!("{}/{}", g.id(), o.kind.name()),
                metric: g.metric,
                placement: g.placement,
                topology: g.topo(),
                size: g.size,
                contender: o.kind.name(),
                family: family(o.kind),
                blocking: o.kind.blocking(),
                batch: match g.metric {
                    Metric::Stream | Metric::Rtt => o.n,
                    Metric::Wake => wake_samples,
                    Metric::Idle => 1,
                },
                headline: head,
                higher_is_better: higher,
                figures: o.figs.iter().map(|(k, v)| (*k, Stat::of(v))).collect(),
                rounds: o.figs.clone(),
                vs_floor: floor.as_ref().and_then(|f| paired_ratio(&mine, f)),
                best_peer: best.map(|b| b.kind.name()),
                vs_best_peer: best.and_then(|b| paired_ratio(&mine, &hv(b))),
            }
        })
        .collect()
}

fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn fmt_ratio(r: &Option<Stat>) -> String {
    match r {
        Some(s) => format!("{:.2}x [{:.2}-{:.2}]", s.median, s.p25, s.p75),
        None => "-".into(),
    }
}

fn fmt_stat(s: Option<&Stat>) -> String {
    match s {
        Some(s) => format!(
            "{} [{}-{}]",
            fmt_num(s.median),
            fmt_num(s.p25),
            fmt_num(s.p75)
        ),
        None => "-".into(),
    }
}

/// The table of one group.
pub fn print_group(g: &Group, es: &[Entry], skipped: &[(Kind, String)], rounds: usize) {
    let place = match g.placement {
        Placement::Thread => "cross-thread",
        Placement::Process => "cross-process",
    };
    let (cols, what): (&[(&str, &str)], &str) = match g.metric {
        Metric::Stream => (
            &[("items_per_s", "items/s"), ("bytes_per_s", "bytes/s")],
            "stream throughput (higher is better)",
        ),
        Metric::Rtt => (
            &[
                ("p50_ns", "p50 ns"),
                ("p99_ns", "p99 ns"),
                ("p999_ns", "p99.9 ns"),
            ],
            "round-trip latency (lower is better)",
        ),
        Metric::Wake => (
            &[
                ("p50_ns", "p50 ns"),
                ("p90_ns", "p90 ns"),
                ("max_ns", "max ns"),
            ],
            "wake-up latency of a sleeping consumer (lower is better)",
        ),
        Metric::Idle => (
            &[("cpu_percent", "CPU %")],
            "CPU of a blocked idle consumer (lower is better)",
        ),
    };
    println!(
        "\n== {} | {place} | {} | {} B payload: {what}; median of {rounds} rounds [p25-p75]",
        g.metric.name(),
        g.topo(),
        g.size
    );
    let best = es.first().and_then(|e| e.best_peer).unwrap_or("-");
    let has_floor = es.iter().any(|e| e.vs_floor.is_some());
    let mut hdr = format!("  {:<16}", "contender");
    for (i, (_, c)) in cols.iter().enumerate() {
        if i == 0 {
            hdr += &format!(" {:>24}", c);
        } else {
            hdr += &format!(" {:>10}", c);
        }
    }
    if has_floor {
        hdr += &format!(" {:>22}", "x floor");
    }
    hdr += &format!(" {:>22}", format!("x best peer ({best})"));
    println!("{hdr}");
    for e in es {
        let mut line = format!("  {:<16}", e.contender);
        for (i, (k, _)) in cols.iter().enumerate() {
            if i == 0 {
                line += &format!(" {:>24}", fmt_stat(e.figures.get(k)));
            } else {
                line += &format!(
                    " {:>10}",
                    e.figures.get(k).map_or("-".into(), |s| fmt_num(s.median))
                );
            }
        }
        if has_floor {
            line += &format!(" {:>22}", fmt_ratio(&e.vs_floor));
        }
        line += &format!(" {:>22}", fmt_ratio(&e.vs_best_peer));
        println!("{line}");
    }
    for (k, why) in skipped {
        println!("  {:<16} n/a: {why}", k.name());
    }
}

fn find<'a>(
    es: &'a [Entry],
    metric: Metric,
    place: Placement,
    topo: &str,
    size: usize,
    c: &str,
) -> Option<&'a Entry> {
    es.iter().find(|e| {
        e.metric == metric
            && e.placement == place
            && e.topology == topo
            && e.size == size
            && e.contender == c
    })
}

fn ratio(a: &Entry, b: &Entry) -> Option<Stat> {
    paired_ratio(a.rounds.get(a.headline)?, b.rounds.get(b.headline)?)
}

/// shmqueue's speed-up over the pipe, per payload size.
pub fn crossover(es: &[Entry]) -> Vec<Cross> {
    let mut out = Vec::new();
    for metric in [Metric::Stream, Metric::Rtt] {
        for place in [Placement::Process, Placement::Thread] {
            for c in ["shmq-spsc-spin", "shmq-spsc-block"] {
                for e in es.iter().filter(|e| {
                    e.metric == metric
                        && e.placement == place
                        && e.topology == "1x1"
                        && e.contender == c
                }) {
                    let Some(p) = find(es, metric, place, "1x1", e.size, "pipe") else {
                        continue;
                    };
                    let r = if metric == Metric::Stream {
                        ratio(e, p)
                    } else {
                        ratio(p, e)
                    };
                    if let Some(r) = r {
                        out.push(Cross {
                            metric,
                            placement: place,
                            contender: c,
                            size: e.size,
                            speedup_vs_pipe: r,
                        });
                    }
                }
            }
        }
    }
    out
}

pub fn print_crossover(cs: &[Cross]) {
    if cs.is_empty() {
        return;
    }
    println!("\n== Does the copy through the kernel stop mattering? shmqueue speed-up over the pipe by payload");
    println!("   (stream: items/s ratio; rtt: pipe p50 / shmqueue p50; > 1: shmqueue faster)");
    let mut sizes: Vec<usize> = cs.iter().map(|c| c.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut head = format!("  {:<40}", "");
    for s in &sizes {
        head += &format!(" {:>9}", format!("{s} B"));
    }
    println!("{head}");
    let mut rows: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    for c in cs {
        let key = format!("{} {} {}", c.metric.name(), c.placement.name(), c.contender);
        let i = match rows.iter().position(|r| r.0 == key) {
            Some(i) => i,
            None => {
                rows.push((key, vec![None; sizes.len()]));
                rows.len() - 1
            }
        };
        let j = sizes.iter().position(|s| *s == c.size).expect("size");
        rows[i].1[j] = Some(c.speedup_vs_pipe.median);
    }
    for (k, v) in rows {
        let mut line = format!("  {k:<40}");
        for x in v {
            line += &format!(" {:>9}", x.map_or("-".into(), |x| format!("{x:.2}x")));
        }
        println!("{line}");
    }
}

/// The targets, checked on this run's paired ratios.
pub fn targets(es: &[Entry]) -> Vec<Target> {
    let mut t = Vec::new();
    let smallest = es.iter().map(|e| e.size).min().unwrap_or(8);
    let mut vs = |name: &str,
                  goal: &str,
                  a: &str,
                  b: &str,
                  metric: Metric,
                  topo: &str,
                  min: Option<f64>,
                  max: Option<f64>| {
        for place in [Placement::Thread, Placement::Process] {
            let (Some(x), Some(y)) = (
                find(es, metric, place, topo, smallest, a),
                find(es, metric, place, topo, smallest, b),
            ) else {
                continue;
            };
            let r = ratio(x, y).map(|s| s.median);
            let met = r.map(|r| {
                let lo = match min {
                    Some(m) => r >= m,
                    None => true,
                };
                let hi = match max {
                    Some(m) => r < m,
                    None => true,
                };
                lo && hi
            });
            t.push(Target {
                target: format!("{name} ({}, {topo}, {smallest} B)", place.name()),
                goal: goal.into(),
                measured: r,
                met,
                detail: format!("{a} / {b}, {}, per-round paired median", x.headline),
            });
        }
    };
    vs(
        "SPSC stream vs rtrb",
        ">= 1.0x",
        "shmq-spsc-spin",
        "rtrb",
        Metric::Stream,
        "1x1",
        Some(1.0),
        None,
    );
    vs(
        "SPSC batch stream vs rtrb",
        ">= 3.0x",
        "shmq-spsc-batch",
        "rtrb",
        Metric::Stream,
        "1x1",
        Some(3.0),
        None,
    );
    vs(
        "MPMC 1x1 stream vs ArrayQueue",
        ">= 1.5x",
        "shmq-mpmc-spin",
        "arrayqueue",
        Metric::Stream,
        "1x1",
        Some(1.5),
        None,
    );
    vs(
        "blocking round trip vs pipe",
        "< 1.0x",
        "shmq-spsc-block",
        "pipe",
        Metric::Rtt,
        "1x1",
        None,
        Some(1.0),
    );
    // Issue #12: the broadcast ring against the floor and its peers.
    vs(
        "broadcast round trip vs floor",
        "<= 1.1x",
        "shmq-bcast-spin",
        "floor",
        Metric::Rtt,
        "1x1",
        None,
        Some(1.1 + 1e-9),
    );
    vs(
        "broadcast fan-out vs ringfire lossless",
        ">= 1.5x",
        "shmq-bcast-spin",
        "ringfire",
        Metric::Stream,
        "1x3",
        Some(1.5),
        None,
    );
    vs(
        "broadcast fan-out vs iceoryx2",
        ">= 10x",
        "shmq-bcast-spin",
        "iceoryx2",
        Metric::Stream,
        "1x3",
        Some(10.0),
        None,
    );
    // The same three for the blocking broadcast calls (`publish`/`recv`:
    // spin, then futex), which on an oversubscribed machine differ most.
    vs(
        "blocking broadcast round trip vs floor",
        "<= 1.1x",
        "shmq-bcast-block",
        "floor",
        Metric::Rtt,
        "1x1",
        None,
        Some(1.1 + 1e-9),
    );
    vs(
        "blocking broadcast fan-out vs ringfire lossless",
        ">= 1.5x",
        "shmq-bcast-block",
        "ringfire",
        Metric::Stream,
        "1x3",
        Some(1.5),
        None,
    );
    vs(
        "blocking broadcast fan-out vs iceoryx2",
        ">= 10x",
        "shmq-bcast-block",
        "iceoryx2",
        Metric::Stream,
        "1x3",
        Some(10.0),
        None,
    );
    // Best shmqueue round trip against the floor.
    for place in [Placement::Thread, Placement::Process] {
        let Some(f) = find(es, Metric::Rtt, place, "1x1", smallest, "floor") else {
            continue;
        };
        let best = es
            .iter()
            .filter(|e| {
                e.metric == Metric::Rtt
                    && e.placement == place
                    && e.size == smallest
                    && e.family == "shmqueue"
            })
            .filter_map(|e| ratio(e, f).map(|r| (e.contender, r.median)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((c, r)) = best {
            t.push(Target {
                target: format!(
                    "best shmqueue round trip vs floor ({}, {smallest} B)",
                    place.name()
                ),
                goal: "<= 1.2x".into(),
                measured: Some(r),
                met: Some(r <= 1.2),
                detail: format!("{c} p50 / floor p50, per-round paired median"),
            });
        }
    }
    for e in es
        .iter()
        .filter(|e| e.metric == Metric::Idle && e.family == "shmqueue")
    {
        let m = e.figures.get("cpu_percent").map(|s| s.median);
        t.push(Target {
            target: format!("idle CPU of {} ({})", e.contender, e.placement.name()),
            goal: "~0% (< 1%)".into(),
            measured: m,
            met: m.map(|m| m < 1.0),
            detail: "thread CPU time / wall time while blocked with nothing to do".into(),
        });
    }
    t
}

pub fn print_targets(ts: &[Target]) {
    if ts.is_empty() {
        return;
    }
    println!("\n== Targets of issues #5 and #12 (ratios from this run, paired round by round)");
    for t in ts {
        let v = match (t.measured, t.met) {
            (Some(m), Some(ok)) => format!("{m:.3}  {}", if ok { "met" } else { "MISSED" }),
            _ => "not measured".into(),
        };
        println!("  {:<67} goal {:<10} {v}", t.target, t.goal);
    }
}
