//! Runs the groups: builds every contender of a group, puts side B in a
//! pinned peer thread or a child process, then runs the rounds interleaved
//! (each round, every contender one batch, starting contender rotating), so
//! all of them see the same machine state.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;

use super::matrix::{Group, Metric, Placement};
use super::peers::{build, open_b, Duplex, Kind, PeerSpec, SENTINEL};
use super::sys::{now_ns, pin, thread_cpu_ns, Cleanup, CPU_A, CPU_B};
use crate::Res;

/// Knobs of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Config {
    /// Measured rounds per group (a warm-up round comes first).
    pub rounds: usize,
    /// Target length of one stream / round-trip batch.
    pub batch_ms: u64,
    /// Wake-ups measured per batch.
    pub wake_samples: u64,
    /// Sleep before each wake-up message.
    pub wake_gap_ms: u64,
    /// Idle window of the idle-CPU measurement.
    pub idle_ms: u64,
    /// Rounds of the idle measurement (it is slow and very stable).
    pub idle_rounds: usize,
    /// Pin the two sides to CPUs 0 and 1.
    pub pin: bool,
}

/// A command to side B, and its answer.
#[derive(Debug)]
pub enum Cmd {
    Stream(u64),
    Echo(u64),
    Wake(u64),
    Idle,
}

#[derive(Debug)]
pub enum Reply {
    /// CLOCK_MONOTONIC when the last item arrived.
    Done(u64),
    /// Stamp-to-wake latencies (ns).
    Lat(Vec<u64>),
    /// Thread CPU time and wall time while blocked (ns).
    Idle(u64, u64),
}

impl Cmd {
    fn encode(&self) -> String {
        match self {
            Cmd::Stream(n) => format!("stream {n}"),
            Cmd::Echo(n) => format!("echo {n}"),
            Cmd::Wake(n) => format!("wake {n}"),
            Cmd::Idle => "idle".into(),
        }
    }

    fn decode(s: &str) -> Res<Cmd> {
        let mut it = s.split_whitespace();
        let w = it.next().unwrap_or("");
        let n = || -> Res<u64> {
            Ok(s.split_whitespace()
                .nth(1)
                .ok_or("missing count")?
                .parse()?)
        };
        Ok(match w {
            "stream" => Cmd::Stream(n()?),
            "echo" => Cmd::Echo(n()?),
            "wake" => Cmd::Wake(n()?),
            "idle" => Cmd::Idle,
            _ => return Err(format!("bad command {s:?}").into()),
        })
    }
}

impl Reply {
    fn encode(r: &Res<Reply>) -> String {
        match r {
            Ok(Reply::Done(t)) => format!("done {t}"),
            Ok(Reply::Lat(v)) => {
                let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                format!("lat {}", s.join(" "))
            }
            Ok(Reply::Idle(c, w)) => format!("idle {c} {w}"),
            Err(e) => format!("err {}", e.to_string().replace('\n', " ")),
        }
    }

    fn decode(s: &str) -> Res<Reply> {
        let (w, rest) = s.split_once(' ').unwrap_or((s, ""));
        let nums = || -> Res<Vec<u64>> {
            rest.split_whitespace()
                .map(|x| x.parse::<u64>().map_err(|e| e.into()))
                .collect()
        };
        Ok(match w {
            "done" => Reply::Done(rest.trim().parse()?),
            "lat" => Reply::Lat(nums()?),
            "idle" => {
                let v = nums()?;
                if v.len() != 2 {
                    return Err("bad idle reply".into());
                }
                Reply::Idle(v[0], v[1])
            }
            "err" => return Err(format!("peer: {rest}").into()),
            _ => return Err(format!("bad reply {s:?}").into()),
        })
    }
}

/// Side B's half of a command.
pub fn serve(b: &mut [Box<dyn Duplex>], cmd: &Cmd, pin_b: bool) -> Res<Reply> {
    match *cmd {
        Cmd::Stream(n) => {
            if b.len() == 1 {
                b[0].stream_recv(n)?;
            } else {
                std::thread::scope(|s| -> Res {
                    let hs: Vec<_> = b
                        .iter_mut()
                        .map(|d| {
                            s.spawn(move || -> Result<u64, String> {
                                if pin_b {
                                    pin(CPU_B);
                                }
                                d.stream_recv(u64::MAX).map_err(|e| e.to_string())
                            })
                        })
                        .collect();
                    for h in hs {
                        h.join().map_err(|_| "consumer panicked")??;
                    }
                    Ok(())
                })?;
            }
            Ok(Reply::Done(now_ns()))
        }
        Cmd::Echo(n) => {
            let d = &mut b[0];
            for _ in 0..n {
                let v = d.recv()?;
                d.send(v)?;
            }
            Ok(Reply::Done(now_ns()))
        }
        Cmd::Wake(n) => {
            let d = &mut b[0];
            let mut lat = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let stamp = d.recv()?;
                lat.push(now_ns().saturating_sub(stamp));
            }
            Ok(Reply::Lat(lat))
        }
        Cmd::Idle => {
            let d = &mut b[0];
            let (c0, w0) = (thread_cpu_ns(), now_ns());
            d.recv()?;
            let (c1, w1) = (thread_cpu_ns(), now_ns());
            Ok(Reply::Idle(c1 - c0, w1 - w0))
        }
    }
}

/// Where side B runs.
enum Peer {
    Thread {
        cmds: Option<mpsc::Sender<Cmd>>,
        replies: mpsc::Receiver<Result<Reply, String>>,
        handle: Option<JoinHandle<()>>,
    },
    Process {
        child: Child,
        stdin: Option<ChildStdin>,
        stdout: BufReader<ChildStdout>,
    },
}

impl Peer {
    fn thread(mut b: Vec<Box<dyn Duplex>>, pin_b: bool) -> Res<Peer> {
        let (ctx, crx) = mpsc::channel::<Cmd>();
        let (rtx, rrx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("bench-peer".into())
            .stack_size(16 << 20)
            .spawn(move || {
                if pin_b {
                    pin(CPU_B);
                }
                while let Ok(cmd) = crx.recv() {
                    let r = serve(&mut b, &cmd, pin_b).map_err(|e| e.to_string());
                    if rtx.send(r).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Peer::Thread {
            cmds: Some(ctx),
            replies: rrx,
            handle: Some(handle),
        })
    }

    fn process(args: &[String], fds: Vec<std::os::fd::OwnedFd>, pin_b: bool) -> Res<Peer> {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        for fd in &fds {
            // The child inherits exactly these descriptors.
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
        }
        let mut c = Command::new(std::env::current_exe()?);
        c.arg("bench-peer").args(args);
        if pin_b {
            c.args(["--cpu", &CPU_B.to_string()]);
        }
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        drop(fds); // the child has its copies
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().ok_or("child stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("bench peer did not start: {:?}", line.trim()).into());
        }
        Ok(Peer::Process {
            child,
            stdin,
            stdout,
        })
    }

    fn send(&mut self, cmd: Cmd) -> Res {
        match self {
            Peer::Thread { cmds, .. } => cmds
                .as_ref()
                .ok_or("peer gone")?
                .send(cmd)
                .map_err(|_| "peer thread died".into()),
            Peer::Process { stdin, .. } => {
                let w = stdin.as_mut().ok_or("peer gone")?;
                writeln!(w, "{}", cmd.encode())?;
                w.flush()?;
                Ok(())
            }
        }
    }

    fn recv(&mut self) -> Res<Reply> {
        match self {
            Peer::Thread { replies, .. } => {
                Ok(replies.recv().map_err(|_| "peer thread died")??)
            }
            Peer::Process { stdout, .. } => {
                let mut line = String::new();
                if stdout.read_line(&mut line)? == 0 {
                    return Err("peer process died".into());
                }
                Reply::decode(line.trim())
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        match self {
            Peer::Thread {
                cmds,
                replies,
                handle,
            } => {
                cmds.take(); // the thread leaves its loop once idle
                             // Join only a thread that has left (it drops its reply
                             // sender): one wedged in a spin on a failed contender is
                             // left behind rather than hang the bench.
                let gone = loop {
                    match replies.recv_timeout(Duration::from_secs(3)) {
                        Ok(_) => continue,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break true,
                        Err(mpsc::RecvTimeoutError::Timeout) => break false,
                    }
                };
                if let Some(h) = handle.take() {
                    if gone {
                        let _ = h.join();
                    }
                }
            }
            Peer::Process { child, stdin, .. } => {
                stdin.take(); // EOF: the child leaves its loop
                let t0 = Instant::now();
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) => break,
                        Ok(None) if t0.elapsed() < Duration::from_secs(3) => {
                            std::thread::sleep(Duration::from_millis(2))
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// One contender of a group, ready to run. Fields drop in order: our
/// endpoints, then the peer (joined / exited), then the creator's handles,
/// then the named objects.
struct Rig {
    a: Vec<Box<dyn Duplex>>,
    peer: Peer,
    _owners: Vec<Box<dyn Send>>,
    _guards: Vec<Cleanup>,
    kind: Kind,
    /// Items (stream) or round trips (rtt) per batch, set by the warm-up.
    n: u64,
    /// Per-round figures.
    figs: BTreeMap<&'static str, Vec<f64>>,
}

fn rig(kind: Kind, g: &Group, cfg: &Config) -> Res<Rig> {
    let process = g.placement == Placement::Process;
    let b = build(kind, g.size, g.pairs, g.subs, process)?;
    let peer = if process {
        Peer::process(&b.child_args, b.child_fds, cfg.pin)?
    } else {
        Peer::thread(b.b, cfg.pin)?
    };
    Ok(Rig {
        a: b.a,
        peer,
        _owners: b.owners,
        _guards: b.guards,
        kind,
        n: match g.metric {
            Metric::Stream => 2000,
            Metric::Rtt => 200,
            _ => 0,
        },
        figs: BTreeMap::new(),
    })
}

/// What one batch measured.
enum Sample {
    Stream { n: u64, ns: u64 },
    Rtt(Histogram<u64>),
    Wake(Vec<u64>),
    Idle { cpu: u64, wall: u64 },
}

fn batch(r: &mut Rig, g: &Group, cfg: &Config, warm: bool) -> Res<Sample> {
    match g.metric {
        Metric::Stream => {
            let n = r.n;
            if g.subs > 1 {
                // Fan-out: one publisher, every subscriber receives all n
                // and stops at the sentinel; items/s is per subscriber.
                r.peer.send(Cmd::Stream(u64::MAX))?;
                let t0 = now_ns();
                r.a[0].stream_send(0, n)?;
                r.a[0].send(SENTINEL)?;
                let Reply::Done(end) = r.peer.recv()? else {
                    return Err("unexpected reply".into());
                };
                Ok(Sample::Stream {
                    n,
                    ns: end.saturating_sub(t0).max(1),
                })
            } else if r.a.len() == 1 {
                r.peer.send(Cmd::Stream(n))?;
                let t0 = now_ns();
                r.a[0].stream_send(0, n)?;
                let Reply::Done(end) = r.peer.recv()? else {
                    return Err("unexpected reply".into());
                };
                Ok(Sample::Stream {
                    n,
                    ns: end.saturating_sub(t0).max(1),
                })
            } else {
                let k = r.a.len() as u64;
                let share = n / k;
                r.peer.send(Cmd::Stream(u64::MAX))?;
                let t0 = now_ns();
                let pin_a = cfg.pin;
                std::thread::scope(|s| -> Res {
                    let hs: Vec<_> =
                        r.a.iter_mut()
                            .enumerate()
                            .map(|(i, d)| {
                                s.spawn(move || -> Result<(), String> {
                                    if pin_a {
                                        pin(CPU_A);
                                    }
                                    d.stream_send(i as u64 * share, share)
                                        .and_then(|()| d.send(SENTINEL))
                                        .map_err(|e| e.to_string())
                                })
                            })
                            .collect();
                    for h in hs {
                        h.join().map_err(|_| "producer panicked")??;
                    }
                    Ok(())
                })?;
                let Reply::Done(end) = r.peer.recv()? else {
                    return Err("unexpected reply".into());
                };
                Ok(Sample::Stream {
                    n: share * k,
                    ns: end.saturating_sub(t0).max(1),
                })
            }
        }
        Metric::Rtt => {
            let n = r.n;
            r.peer.send(Cmd::Echo(n))?;
            let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3)?;
            let d = &mut r.a[0];
            for i in 0..n {
                let t = Instant::now();
                d.send(i)?;
                d.recv()?;
                h.saturating_record(t.elapsed().as_nanos().max(1) as u64);
            }
            r.peer.recv()?;
            Ok(Sample::Rtt(h))
        }
        Metric::Wake => {
            let n = if warm { 2 } else { cfg.wake_samples };
            r.peer.send(Cmd::Wake(n))?;
            for _ in 0..n {
                std::thread::sleep(Duration::from_millis(cfg.wake_gap_ms));
                r.a[0].send(now_ns())?;
            }
            let Reply::Lat(v) = r.peer.recv()? else {
                return Err("unexpected reply".into());
            };
            Ok(Sample::Wake(v))
        }
        Metric::Idle => {
            let ms = if warm {
                cfg.idle_ms.min(20)
            } else {
                cfg.idle_ms
            };
            r.peer.send(Cmd::Idle)?;
            std::thread::sleep(Duration::from_millis(ms));
            r.a[0].send(0)?;
            let Reply::Idle(cpu, wall) = r.peer.recv()? else {
                return Err("unexpected reply".into());
            };
            Ok(Sample::Idle { cpu, wall })
        }
    }
}

fn record(r: &mut Rig, g: &Group, s: Sample) {
    let mut put = |k: &'static str, v: f64| r.figs.entry(k).or_default().push(v);
    match s {
        Sample::Stream { n, ns } => {
            let ips = n as f64 * 1e9 / ns as f64;
            put("items_per_s", ips);
            put("bytes_per_s", ips * g.size as f64);
        }
        Sample::Rtt(h) => {
            put("p50_ns", h.value_at_quantile(0.5) as f64);
            put("p99_ns", h.value_at_quantile(0.99) as f64);
            put("p999_ns", h.value_at_quantile(0.999) as f64);
            put("mean_ns", h.mean());
        }
        Sample::Wake(mut v) => {
            v.sort_unstable();
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64;
            if !v.is_empty() {
                put("p50_ns", q(0.5));
                put("p90_ns", q(0.9));
                put("max_ns", q(1.0));
            }
        }
        Sample::Idle { cpu, wall } => {
            put("cpu_percent", cpu as f64 * 100.0 / wall.max(1) as f64);
        }
    }
}

/// Per-contender result of a group.
pub struct Outcome {
    pub kind: Kind,
    pub figs: BTreeMap<&'static str, Vec<f64>>,
    pub n: u64,
}

/// Run one group; contenders that cannot be built or fail are reported in
/// the returned list of failures.
pub fn run_group(g: &Group, cfg: &Config, pb: &ProgressBar) -> (Vec<Outcome>, Vec<(Kind, String)>) {
    let mut failed = Vec::new();
    let mut rigs: Vec<Option<Rig>> = Vec::new();
    let rounds = if g.metric == Metric::Idle {
        cfg.idle_rounds
    } else {
        cfg.rounds
    };
    for &k in &g.kinds {
        pb.set_message(format!("{} {}: building", g.id(), k.name()));
        match rig(k, g, cfg) {
            Ok(r) => rigs.push(Some(r)),
            Err(e) => {
                pb.inc(rounds as u64 + 1);
                failed.push((k, e.to_string()));
            }
        }
    }
    let target = cfg.batch_ms as f64 * 1e6;
    for round in 0..=rounds {
        let warm = round == 0;
        let len = rigs.len();
        for j in 0..len {
            let i = (round + j) % len;
            let Some(r) = rigs[i].as_mut() else { continue };
            pb.set_message(format!(
                "{} {}{}",
                g.id(),
                r.kind.name(),
                if warm { " (warm-up)" } else { "" }
            ));
            let res = batch(r, g, cfg, warm);
            pb.inc(1);
            match res {
                Ok(s) => {
                    if warm {
                        // Calibrate the batch to the target length.
                        let (done, ns) = match &s {
                            Sample::Stream { n, ns } => (*n, *ns as f64),
                            Sample::Rtt(h) => (h.len(), h.mean() * h.len() as f64),
                            _ => (0, 0.0),
                        };
                        if done > 0 && ns > 0.0 {
                            let per = ns / done as f64;
                            let (lo, hi) = if g.metric == Metric::Stream {
                                (256, 50_000_000)
                            } else {
                                (64, 5_000_000)
                            };
                            r.n = ((target / per) as u64).clamp(lo, hi);
                        }
                    } else {
                        record(r, g, s);
                    }
                }
                Err(e) => {
                    failed.push((r.kind, e.to_string()));
                    pb.inc((rounds - round) as u64);
                    rigs[i] = None; // drops it: peer stopped, objects removed
                }
            }
        }
    }
    let out = rigs
        .into_iter()
        .flatten()
        .map(|r| Outcome {
            kind: r.kind,
            figs: r.figs.clone(),
            n: r.n,
        })
        .collect();
    (out, failed)
}

/// `shmq bench-peer`: side B in a child process.
pub fn peer_main(spec: PeerSpec, cpu: Option<usize>) -> Res {
    super::sys::die_with_parent();
    if let Some(c) = cpu {
        pin(c);
    }
    let pin_b = cpu.is_some();
    let mut b = open_b(&spec, Vec::new())?;
    let out = std::io::stdout();
    writeln!(out.lock(), "ready")?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let r = Cmd::decode(line.trim()).and_then(|c| serve(&mut b, &c, pin_b));
        writeln!(out.lock(), "{}", Reply::encode(&r))?;
    }
    Ok(())
}
