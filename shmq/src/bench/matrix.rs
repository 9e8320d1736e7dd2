//! The matrix: which (metric, placement, topology, size) groups run, with
//! which contenders, and the `--only` filter that selects a subset.

use serde::Serialize;

use super::payload::SIZES;
use super::peers::{Kind, ALL_KINDS};
use crate::Res;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Producer to consumer as fast as possible: items/s and bytes/s.
    Stream,
    /// Ping-pong: round-trip latency percentiles.
    Rtt,
    /// A sleeping consumer woken by one message: stamp-to-wake latency.
    Wake,
    /// CPU used by a consumer blocked with nothing to do.
    Idle,
}

pub const METRICS: [Metric; 4] = [Metric::Stream, Metric::Rtt, Metric::Wake, Metric::Idle];

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Stream => "stream",
            Metric::Rtt => "rtt",
            Metric::Wake => "wake",
            Metric::Idle => "idle",
        }
    }

    /// The figure ratios and charts use, and whether more is better.
    pub fn headline(self) -> (&'static str, bool) {
        match self {
            Metric::Stream => ("items_per_s", true),
            Metric::Rtt => ("p50_ns", false),
            Metric::Wake => ("p50_ns", false),
            Metric::Idle => ("cpu_percent", false),
        }
    }

    /// Whether `kind` takes part in this metric.
    pub fn applies(self, kind: Kind) -> bool {
        match self {
            Metric::Stream => kind != Kind::Floor,
            Metric::Rtt => kind != Kind::SpscBatch,
            // Waking up and idling are what blocking is for; a spinner
            // never sleeps and burns a whole core while idle.
            Metric::Wake | Metric::Idle => kind.blocking(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    Thread,
    Process,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Thread => "thread",
            Placement::Process => "process",
        }
    }
}

/// One interleaved comparison: every contender in it runs once per round.
#[derive(Clone, Debug)]
pub struct Group {
    pub metric: Metric,
    pub placement: Placement,
    /// Producer/consumer pairs: 1 (1x1, 1xN) or 2 (2x2).
    pub pairs: usize,
    /// Subscribers of the one publisher: 1, or [`FANOUT`] (the 1x3
    /// broadcast fan-out, every subscriber receiving every item).
    pub subs: usize,
    pub size: usize,
    pub kinds: Vec<Kind>,
    /// Contenders left out of this group, with the reason.
    pub skipped: Vec<(Kind, String)>,
}

impl Group {
    pub fn topo(&self) -> &'static str {
        match (self.pairs, self.subs) {
            (1, 1) => "1x1",
            (1, _) => "1x3",
            _ => "2x2",
        }
    }

    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.metric.name(),
            self.placement.name(),
            self.topo(),
            self.size
        )
    }
}

/// A parsed `--only` filter: per dimension, the accepted values (empty:
/// all).
/// Subscribers of the fan-out topology.
pub const FANOUT: usize = 3;

#[derive(Default, Debug)]
pub struct Filter {
    metrics: Vec<Metric>,
    placements: Vec<Placement>,
    /// (pairs, subscribers).
    topos: Vec<(usize, usize)>,
    sizes: Vec<usize>,
    kinds: Vec<Kind>,
}

fn parse_size(t: &str) -> Option<usize> {
    let t = t.to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    if let Some(k) = t.strip_suffix('k') {
        k.parse::<usize>().ok().map(|k| k * 1024)
    } else {
        t.parse().ok()
    }
}

impl Filter {
    /// Comma- or space-separated tokens: metric (stream, rtt, wake, idle),
    /// placement (thread, process), topology (1x1, 2x2), payload size (8,
    /// 4k, 65536, ...) or contender (a name or prefix: shmq, shmq-spsc,
    /// pipe, ...). Within a dimension tokens are alternatives; dimensions
    /// combine with "and".
    pub fn parse(spec: &[String]) -> Res<Filter> {
        let mut f = Filter::default();
        for tok in spec.iter().flat_map(|s| s.split([',', ' '])) {
            let t = tok.trim();
            if t.is_empty() {
                continue;
            }
            if let Some(m) = super::matrix::METRICS.iter().find(|m| m.name() == t) {
                f.metrics.push(*m);
            } else if t == "thread" || t == "threads" {
                f.placements.push(Placement::Thread);
            } else if t == "process" || t == "processes" {
                f.placements.push(Placement::Process);
            } else if t == "1x1" {
                f.topos.push((1, 1));
            } else if t == "2x2" {
                f.topos.push((2, 1));
            } else if t == "1x3" || t == "fanout" || t == "fan-out" {
                f.topos.push((1, FANOUT));
            } else if let Some(s) = parse_size(t) {
                if !SIZES.contains(&s) {
                    return Err(format!("size {s} not supported; sizes: {SIZES:?}").into());
                }
                f.sizes.push(s);
            } else {
                let ks: Vec<Kind> = ALL_KINDS
                    .into_iter()
                    .filter(|k| k.name() == t || k.name().starts_with(t))
                    .collect();
                if ks.is_empty() {
                    let names: Vec<&str> = ALL_KINDS.iter().map(|k| k.name()).collect();
                    return Err(format!(
                        "--only: unknown token {t:?}; use a metric (stream, rtt, wake, idle), \
                         placement (thread, process), topology (1x1, 2x2, 1x3), size {SIZES:?} \
                         or contender {names:?}"
                    )
                    .into());
                }
                f.kinds.extend(ks);
            }
        }
        Ok(f)
    }
}

fn ok<T: PartialEq>(v: &[T], x: T) -> bool {
    v.is_empty() || v.contains(&x)
}

/// The groups to run, in order.
pub fn plan(f: &Filter, default_sizes: &[usize]) -> Vec<Group> {
    let sizes: Vec<usize> = if f.sizes.is_empty() {
        default_sizes.to_vec()
    } else {
        f.sizes.clone()
    };
    let smallest = sizes.iter().copied().min().unwrap_or(8);
    let mut groups = Vec::new();
    for metric in METRICS {
        if !ok(&f.metrics, metric) {
            continue;
        }
        for placement in [Placement::Thread, Placement::Process] {
            if !ok(&f.placements, placement) {
                continue;
            }
            for (pairs, subs) in [(1, 1), (2, 1), (1, FANOUT)] {
                // Several producers and consumers, or the broadcast
                // fan-out: the stream only, at the smallest payload.
                if (pairs, subs) != (1, 1) && metric != Metric::Stream
                    || !ok(&f.topos, (pairs, subs))
                {
                    continue;
                }
                for &size in &sizes {
                    // Waking and idling do not depend on the payload.
                    if ((pairs, subs) != (1, 1) || matches!(metric, Metric::Wake | Metric::Idle))
                        && size != smallest
                    {
                        continue;
                    }
                    let mut g = Group {
                        metric,
                        placement,
                        pairs,
                        subs,
                        size,
                        kinds: Vec::new(),
                        skipped: Vec::new(),
                    };
                    for kind in ALL_KINDS {
                        if !metric.applies(kind) || !ok(&f.kinds, kind) {
                            continue;
                        }
                        if pairs > 1 && !kind.multi() || subs > 1 && !kind.broadcast() {
                            continue;
                        }
                        if let Some(why) = kind.unavailable() {
                            g.skipped.push((kind, why.into()));
                            continue;
                        }
                        if placement == Placement::Process && kind.thread_only() {
                            g.skipped.push((kind, "in-process only".into()));
                            continue;
                        }
                        if let Some(max) = kind.max_size() {
                            if size > max {
                                let why = if kind.broadcast() {
                                    "u64 items only".to_string()
                                } else {
                                    format!("{size} B > /proc/sys/fs/mqueue/msgsize_max ({max})")
                                };
                                g.skipped.push((kind, why));
                                continue;
                            }
                        }
                        g.kinds.push(kind);
                    }
                    if !g.kinds.is_empty() {
                        groups.push(g);
                    }
                }
            }
        }
    }
    groups
}
