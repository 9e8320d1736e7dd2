//! The bridge against what it is built on, in one run, over loopback:
//!
//! * `tcp`: a plain TCP socket stream of the same items (63 KiB writes),
//!   and an 8-byte ping-pong;
//! * `zenoh`: zenoh's own publisher and subscriber (two sessions, one
//!   listening on tcp/127.0.0.1, one connecting; scouting off), frames of
//!   the same size, reliable with `CongestionControl::Block`;
//! * `bridge`: a producer pushing u64 into a local SPSC ring, an out-bridge,
//!   zenoh as above, an in-bridge, and a consumer popping the receiving
//!   ring; for the round trip, a bridge each way and an echo between.
//!
//! Rounds interleave the three, so a change in the machine's load touches
//! all of them; the ratios are per round, then the median.
//!
//! `cargo bench -p shmq-bridge --bench bridge` (env `ROUNDS`, default 5;
//! `ITEMS`, default 10^8 u64 per stream; `PINGS`, default 20000;
//! `PROFILE_BRIDGE_STREAM=1`: only the bridge's stream, once, to profile).
//! Threads of side A are pinned to CPU 0 and of side B to CPU 1 (zenoh's
//! own runtime threads are not).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shmq_bridge::{In, Out};
use shmqueue::Spsc;
use zenoh::handlers::FifoChannel;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

/// Items per write, zenoh put and bridge frame: 63 KiB, the bridge's
/// default frame, which fits one zenoh batch unfragmented.
const BATCH: usize = 63 * 1024 / 8;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two connected zenoh sessions (A listens, B connects).
fn sessions() -> (zenoh::Session, zenoh::Session) {
    let ep = format!("tcp/127.0.0.1:{}", port());
    let a = shmq_bridge::open_session(std::slice::from_ref(&ep), &[], None).unwrap();
    let b = shmq_bridge::open_session(&[], &[ep], None).unwrap();
    (a, b)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn tag(what: &str) -> String {
    format!(
        "shmqb-bench-{}-{}-{what}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A unique tag and a directory for state files (the caller removes it).
fn names(what: &str) -> (String, std::path::PathBuf) {
    let tag = tag(what);
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir).unwrap();
    (tag, dir)
}

type Sub = zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>;

/// A publisher on `key` in `a` and a subscriber in `b`, once a put reaches
/// the subscriber: zenoh propagates a declaration asynchronously, and a put
/// before the route exists goes nowhere. The warm-up puts are one byte
/// each; callers skip what is left of them.
fn route(
    a: &zenoh::Session,
    b: &zenoh::Session,
    key: &str,
) -> (zenoh::pubsub::Publisher<'static>, Sub) {
    let sub = b
        .declare_subscriber(key.to_string())
        .with(FifoChannel::new(64))
        .wait()
        .unwrap();
    let p = a
        .declare_publisher(key.to_string())
        .congestion_control(CongestionControl::Block)
        .wait()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        p.put(vec![0u8]).wait().unwrap();
        if sub
            .recv_timeout(Duration::from_millis(10))
            .unwrap()
            .is_some()
        {
            break;
        }
        assert!(Instant::now() < end, "zenoh sessions never connected");
    }
    // Drain the other warm-up puts.
    while sub
        .recv_timeout(Duration::from_millis(50))
        .unwrap()
        .is_some()
    {}
    (p, sub)
}

fn frame(i: u64) -> Vec<u8> {
    let mut f = Vec::with_capacity(BATCH * 8);
    for k in 0..BATCH as u64 {
        f.extend_from_slice(&(i + k).to_le_bytes());
    }
    f
}

/// Items per second, TCP.
fn tcp_stream(n: u64) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = thread::spawn(move || {
        pin(1);
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; BATCH * 8];
        let mut got = 0u64;
        while got < n * 8 {
            let k = s.read(&mut buf).unwrap();
            assert!(k > 0);
            got += k as u64;
        }
        Instant::now()
    });
    pin(0);
    let mut s = TcpStream::connect(addr).unwrap();
    let f = frame(0);
    let start = Instant::now();
    for _ in 0..n / BATCH as u64 {
        s.write_all(&f).unwrap();
    }
    let end = t.join().unwrap();
    n as f64 / (end - start).as_secs_f64()
}

/// Items per second, zenoh publisher to subscriber.
fn zenoh_stream(n: u64) -> f64 {
    let (a, b) = sessions();
    let key = format!("bench/{}", tag("z"));
    let (p, sub) = route(&a, &b, &key);
    let t = thread::spawn(move || {
        pin(1);
        let mut got = 0u64;
        while got < n * 8 {
            let s = sub.recv().unwrap();
            got += s.payload().len() as u64;
        }
        Instant::now()
    });
    pin(0);
    let start = Instant::now();
    for i in 0..n / BATCH as u64 {
        p.put(frame(i)).wait().unwrap();
    }
    let end = t.join().unwrap();
    n as f64 / (end - start).as_secs_f64()
}

/// Items per second, ring -> out-bridge -> zenoh -> in-bridge -> ring.
fn bridge_stream(n: u64) -> f64 {
    let (a, b) = sessions();
    let (tag, dir) = names("s");
    let (ra, rb) = (format!("/{tag}-a"), format!("/{tag}-b"));
    let key = format!("bench/{tag}");
    let src = Spsc::<u64>::create(&ra, 1 << 16).unwrap();
    let dst = Spsc::<u64>::create(&rb, 1 << 16).unwrap();
    let out = Out::new(&ra, &key);
    let inb = In::new(&key, &rb, dir.join("state"));
    let to = thread::spawn(move || {
        pin(0);
        out.run(&a).unwrap()
    });
    let ti = thread::spawn(move || {
        pin(1);
        inb.run(&b).unwrap()
    });
    let first_batch = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fb = first_batch.clone();
    let tc = thread::spawn(move || {
        pin(1);
        let mut c = dst.consumer().unwrap();
        let mut buf = vec![0u64; BATCH];
        let mut got = 0u64;
        while got < BATCH as u64 {
            got += c.pop_slice_wait(&mut buf).unwrap() as u64;
        }
        fb.store(true, Ordering::Release);
        let mut got = 0u64;
        while got < n {
            got += c.pop_slice_wait(&mut buf).unwrap() as u64;
        }
        Instant::now()
    });
    pin(0);
    let mut p = src.producer().unwrap();
    let items: Vec<u64> = (0..BATCH as u64).collect();
    // The clock starts once the bridges have found each other (the zenoh
    // case starts once its route exists): a full batch goes first.
    p.push_all(&items).unwrap();
    while !first_batch.load(Ordering::Acquire) {
        thread::yield_now();
    }
    let start = Instant::now();
    for _ in 0..n / BATCH as u64 {
        p.push_all(&items).unwrap();
    }
    drop(p);
    let end = tc.join().unwrap();
    to.join().unwrap();
    ti.join().unwrap();
    let _ = shmqueue::unlink(&ra);
    let _ = shmqueue::unlink(&rb);
    let _ = std::fs::remove_dir_all(dir);
    n as f64 / (end - start).as_secs_f64()
}

/// Round-trip times in ns, sorted.
fn tcp_rtt(pings: usize) -> Vec<u64> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = thread::spawn(move || {
        pin(1);
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 8];
        for _ in 0..pings {
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        }
    });
    pin(0);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut v = Vec::with_capacity(pings);
    let mut b = [0u8; 8];
    for i in 0..pings as u64 {
        let t0 = Instant::now();
        s.write_all(&i.to_le_bytes()).unwrap();
        s.read_exact(&mut b).unwrap();
        v.push(t0.elapsed().as_nanos() as u64);
    }
    t.join().unwrap();
    v.sort_unstable();
    v
}

fn zenoh_rtt(pings: usize) -> Vec<u64> {
    let (a, b) = sessions();
    let tag = tag("zr");
    let (ping, pong) = (format!("bench/{tag}/ping"), format!("bench/{tag}/pong"));
    let (p, echo_sub) = route(&a, &b, &ping);
    let (echo_pub, sub) = route(&b, &a, &pong);
    let t = thread::spawn(move || {
        pin(1);
        for _ in 0..pings {
            let s = echo_sub.recv().unwrap();
            echo_pub.put(s.payload().clone()).wait().unwrap();
        }
    });
    pin(0);
    let mut v = Vec::with_capacity(pings);
    for i in 0..pings as u64 {
        let t0 = Instant::now();
        p.put(i.to_le_bytes().to_vec()).wait().unwrap();
        sub.recv().unwrap();
        v.push(t0.elapsed().as_nanos() as u64);
    }
    t.join().unwrap();
    v.sort_unstable();
    v
}

fn bridge_rtt(pings: usize) -> Vec<u64> {
    let (a, b) = sessions();
    let (tag, dir) = names("br");
    let ring = |w: &str| format!("/{tag}-{w}");
    let (k1, k2) = (format!("bench/{tag}/ping"), format!("bench/{tag}/pong"));
    let qs: Vec<Spsc<u64>> = ["a", "b", "c", "d"]
        .iter()
        .map(|w| Spsc::<u64>::create(&ring(w), 1024).unwrap())
        .collect();
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let mut threads = Vec::new();
    for (cpu, s, out, inn) in [
        (0, a.clone(), Out::new(&ring("a"), &k1), None),
        (1, b.clone(), Out::new(&ring("c"), &k2), None),
        (
            1,
            b.clone(),
            Out::new("", ""),
            Some(In::new(&k1, &ring("b"), dir.join("1"))),
        ),
        (
            0,
            a.clone(),
            Out::new("", ""),
            Some(In::new(&k2, &ring("d"), dir.join("2"))),
        ),
    ] {
        threads.push(thread::spawn(move || {
            pin(cpu);
            match inn {
                Some(i) => {
                    i.run(&s).unwrap();
                }
                None => {
                    out.run(&s).unwrap();
                }
            }
        }));
    }
    let (mut ec, mut ep) = (qs[1].consumer().unwrap(), qs[2].producer().unwrap());
    let echo = thread::spawn(move || {
        pin(1);
        let (c, p) = (&mut ec, &mut ep);
        while let Ok(v) = c.pop() {
            p.push(v).unwrap();
        }
    });
    pin(0);
    let mut p = qs[0].producer().unwrap();
    let mut c = qs[3].consumer().unwrap();
    let mut v = Vec::with_capacity(pings);
    for i in 0..pings as u64 {
        let t0 = Instant::now();
        p.push(i).unwrap();
        assert_eq!(c.pop().unwrap(), i);
        v.push(t0.elapsed().as_nanos() as u64);
    }
    drop(p);
    echo.join().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    for w in ["a", "b", "c", "d"] {
        let _ = shmqueue::unlink(&ring(w));
    }
    let _ = std::fs::remove_dir_all(dir);
    v.sort_unstable();
    v
}

fn pct(v: &[u64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would run this
    // too, so a smoke size then.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rounds = env("ROUNDS", if smoke { 1 } else { 5 }) as usize;
    let n = env("ITEMS", if smoke { 1 << 18 } else { 100_000_000 }) / BATCH as u64 * BATCH as u64;
    let pings = env("PINGS", if smoke { 200 } else { 20_000 }) as usize;
    println!("shmq-bridge bench: {rounds} rounds, {n} u64 per stream, {pings} round trips");
    let mut rate = [Vec::new(), Vec::new(), Vec::new()];
    let mut p50 = [Vec::new(), Vec::new(), Vec::new()];
    let mut p99 = [Vec::new(), Vec::new(), Vec::new()];
    let (mut tput_ratio, mut p50_ratio, mut p99_ratio) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        if std::env::var_os("PROFILE_BRIDGE_STREAM").is_some() {
            // One case alone, for a profiler.
            println!("bridge stream {:.1} M/s", bridge_stream(n) / 1e6);
            return;
        }
        let t = [tcp_stream(n), zenoh_stream(n), bridge_stream(n)];
        let l = [tcp_rtt(pings), zenoh_rtt(pings), bridge_rtt(pings)];
        for k in 0..3 {
            rate[k].push(t[k]);
            p50[k].push(pct(&l[k], 0.5));
            p99[k].push(pct(&l[k], 0.99));
        }
        tput_ratio.push(t[2] / t[1]);
        p50_ratio.push(pct(&l[2], 0.5) / pct(&l[1], 0.5));
        p99_ratio.push(pct(&l[2], 0.99) / pct(&l[1], 0.99));
        println!(
            "round {r}: M items/s tcp {:.1} zenoh {:.1} bridge {:.1}; rtt p50 us tcp {:.1} zenoh {:.1} bridge {:.1}",
            t[0] / 1e6,
            t[1] / 1e6,
            t[2] / 1e6,
            pct(&l[0], 0.5),
            pct(&l[1], 0.5),
            pct(&l[2], 0.5)
        );
    }
    println!();
    println!("| case | stream, M u64/s | round trip p50, us | p99, us |");
    println!("|---|---|---|---|");
    for (k, name) in [
        "tcp socket",
        "zenoh pub/sub",
        "shmq-bridge (ring-zenoh-ring)",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            median(rate[k].clone()) / 1e6,
            median(p50[k].clone()),
            median(p99[k].clone())
        );
    }
    println!();
    println!(
        "bridge / zenoh (median of per-round ratios): throughput {:.3} (goal >= 0.9), \
         p50 {:.3} (goal <= 1.1), p99 {:.3} (goal <= 1.1)",
        median(tput_ratio),
        median(p50_ratio),
        median(p99_ratio)
    );
}
