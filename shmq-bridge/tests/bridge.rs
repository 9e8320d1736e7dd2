//! Two bridges in two processes (the `shmq-bridge` binary), each with its
//! own local ring, over zenoh on loopback (tcp/127.0.0.1, scouting off; the
//! bridge's config). The test process is the producer of the source ring
//! and the consumer of the receiving one, and checks every item.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shmqueue::broadcast::Start;
use shmqueue::{Broadcast, ByteRing, Mpmc, PopError, RecvError, Spsc};

const DEADLINE: Duration = Duration::from_secs(120);

/// Unique ring names, unlinked (and a state directory removed) on drop.
struct Names {
    tag: String,
    dir: PathBuf,
}

static N: AtomicU32 = AtomicU32::new(0);

impl Names {
    fn new(test: &str) -> Names {
        let tag = format!(
            "shmqb-{}-{}-{test}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).unwrap();
        Names { tag, dir }
    }
    fn ring(&self, which: &str) -> String {
        format!("/{}-{which}", self.tag)
    }
    fn state(&self) -> String {
        self.dir.join("in.state").display().to_string()
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for w in ["a", "b"] {
            let _ = shmqueue::unlink(&self.ring(w));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A bridge process, killed on drop if still running.
struct Bridge(Option<Child>);

impl Bridge {
    fn start(args: &[&str]) -> Bridge {
        let c = Command::new(env!("CARGO_BIN_EXE_shmq-bridge"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shmq-bridge");
        Bridge(Some(c))
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0.as_ref().unwrap().id() as i32)
    }

    /// Wait for it to exit (within the deadline); its status, its report
    /// (stdout, parsed) and its stderr.
    fn finish(mut self) -> (i32, serde_json::Value, String) {
        let mut c = self.0.take().unwrap();
        let end = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = c.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = c.kill();
                let mut err = String::new();
                c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("bridge did not finish within {DEADLINE:?}; stderr: {err}");
            }
            thread::sleep(Duration::from_millis(10));
        };
        let (mut out, mut err) = (String::new(), String::new());
        c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let report = serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null);
        (status.code().unwrap_or(-1), report, err)
    }

    /// Kill it (if running) and return what it wrote to stderr: for a
    /// failure message.
    fn stderr_now(mut self) -> String {
        let mut c = self.0.take().unwrap();
        let _ = c.kill();
        let _ = c.wait();
        let mut err = String::new();
        let _ = c.stderr.take().unwrap().read_to_string(&mut err);
        err
    }

    fn kill(mut self) {
        let mut c = self.0.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An out-bridge listening on `port`, and the key.
fn out_bridge(ring: &str, key: &str, port: u16, extra: &[&str]) -> Bridge {
    let ep = format!("tcp/127.0.0.1:{port}");
    let mut a = vec!["out", ring, "--key", key, "--listen", &ep];
    a.extend_from_slice(extra);
    Bridge::start(&a)
}

/// An in-bridge connecting to `port`.
fn in_bridge(key: &str, ring: &str, port: u16, state: &str, extra: &[&str]) -> Bridge {
    let ep = format!("tcp/127.0.0.1:{port}");
    let mut a = vec!["in", key, ring, "--connect", &ep, "--state", state];
    a.extend_from_slice(extra);
    Bridge::start(&a)
}

/// An out-bridge of ring "a" and an in-bridge into ring "b" of `n`, on a
/// fresh port and key.
fn bridges(n: &Names, out_extra: &[&str], in_extra: &[&str]) -> (Bridge, Bridge) {
    let port = free_port();
    let key = format!("test/{}", n.tag);
    let out = out_bridge(&n.ring("a"), &key, port, out_extra);
    let inb = in_bridge(&key, &n.ring("b"), port, &n.state(), in_extra);
    (out, inb)
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Pop every item of an SPSC ring until its producer has gone for good
/// (`done` says when), re-attaching after a producer that died (a killed
/// bridge) so a restarted one can go on.
fn drain_spsc(name: &str, done: impl Fn(usize) -> bool, progress: &AtomicUsize) -> Vec<u64> {
    let q = until("the receiving ring", || Spsc::<u64>::open(name).ok());
    let mut got = Vec::new();
    let end = Instant::now() + DEADLINE;
    'outer: loop {
        let mut c = until("the consumer role", || q.consumer().ok());
        loop {
            assert!(
                Instant::now() < end,
                "drain timed out at {} items",
                got.len()
            );
            match c.pop_timeout(Duration::from_millis(100)) {
                Ok(v) => {
                    got.push(v);
                    progress.store(got.len(), Ordering::Relaxed);
                }
                Err(PopError::Timeout) => {}
                Err(PopError::Disconnected) if done(got.len()) => break 'outer,
                Err(PopError::Disconnected) => continue 'outer,
                Err(e) => panic!("pop: {e}"),
            }
        }
    }
    got
}

fn report_u64(r: &serde_json::Value, k: &str) -> u64 {
    r[k].as_u64()
        .unwrap_or_else(|| panic!("report has no {k}: {r}"))
}

#[test]
fn spsc_million_u64_end_to_end() {
    let n = Names::new("spsc");
    let (a, b) = (n.ring("a"), n.ring("b"));
    const N: u64 = 1_000_000;
    let src = Spsc::<u64>::create(&a, 4096).unwrap();
    let _dst = Spsc::<u64>::create(&b, 4096).unwrap();
    let (out, inb) = bridges(&n, &[], &[]);
    let producer = thread::spawn(move || {
        let mut p = src.producer().unwrap();
        for i in 0..N {
            p.push(i).unwrap();
        }
    });
    let got = drain_spsc(&b, |_| true, &AtomicUsize::new(0));
    producer.join().unwrap();
    let (oc, orep, oerr) = out.finish();
    let (ic, irep, ierr) = inb.finish();
    assert_eq!((oc, ic), (0, 0), "out: {oerr}\nin: {ierr}");
    assert_eq!(got.len() as u64, N);
    assert!(
        got.iter().enumerate().all(|(i, &v)| v == i as u64),
        "out of order"
    );
    assert_eq!(report_u64(&orep, "items"), N);
    assert_eq!(report_u64(&irep, "items"), N);
    assert_eq!(report_u64(&irep, "duplicates"), 0);
    assert_eq!(report_u64(&irep, "lost"), 0);
}

/// A checksum of a sequence number (splitmix64), so an item carries proof
/// of itself.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn mpmc_items_with_checksums_into_an_spsc_ring() {
    // A typed stream goes into any typed kind: MPMC here, SPSC there.
    let n = Names::new("mpmc");
    let (a, b) = (n.ring("a"), n.ring("b"));
    const N: u64 = 200_000;
    let src = Mpmc::<[u64; 2]>::builder()
        .capacity(1024)
        .schema(0x5eed)
        .create(&a)
        .unwrap();
    let (out, inb) = bridges(&n, &[], &["--create", "--kind", "spsc"]);
    let producer = thread::spawn(move || {
        let mut p = src.producer().unwrap();
        for i in 0..N {
            p.push([i, mix(i)]).unwrap();
        }
    });
    let q = until("the created ring", || {
        Spsc::<[u64; 2]>::builder().schema(0x5eed).open(&b).ok()
    });
    let mut c = q.consumer().unwrap();
    for i in 0..N {
        let v = c.pop_timeout(DEADLINE).unwrap();
        assert_eq!(v, [i, mix(i)], "item {i}");
    }
    producer.join().unwrap();
    let (oc, _, oerr) = out.finish();
    let (ic, irep, ierr) = inb.finish();
    assert_eq!((oc, ic), (0, 0), "out: {oerr}\nin: {ierr}");
    assert_eq!(report_u64(&irep, "items"), N);
    assert!(matches!(
        c.pop_timeout(DEADLINE),
        Err(PopError::Disconnected)
    ));
}

/// Message `i`: its length (log-uniform from 16 bytes to 1 MiB, a few of
/// exactly 1 MiB), then the sequence number, a checksum, and filler made
/// from both.
fn message(i: u64) -> Vec<u8> {
    let len = if i % 1000 == 7 {
        1 << 20
    } else {
        let bits = 4 + mix(i) % 17; // 16 B .. 1 MiB
        (1usize << bits) + (mix(i ^ 0xabc) as usize % (1usize << bits))
    }
    .min(1 << 20);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&i.to_le_bytes());
    m.extend_from_slice(&mix(i).to_le_bytes());
    let fill = mix(i).wrapping_add(len as u64).to_le_bytes();
    while m.len() < len {
        let k = (len - m.len()).min(8);
        m.extend_from_slice(&fill[..k]);
    }
    m
}

#[test]
fn ten_thousand_byte_messages_up_to_a_mebibyte() {
    let n = Names::new("bytes");
    let (a, b) = (n.ring("a"), n.ring("b"));
    const N: u64 = 10_000;
    let src = ByteRing::builder().capacity(4 << 20).create(&a).unwrap();
    // Created like the source: a byte ring of its capacity.
    let (out, inb) = bridges(&n, &[], &["--create"]);
    let producer = thread::spawn(move || {
        let mut p = src.producer().unwrap();
        for i in 0..N {
            p.send(&message(i)).unwrap();
        }
    });
    let q = until("the created ring", || ByteRing::open(&b).ok());
    let mut c = q.consumer().unwrap();
    let mut buf = Vec::new();
    for i in 0..N {
        c.recv_timeout(&mut buf, DEADLINE).unwrap();
        assert!(buf == message(i), "message {i}: {} bytes", buf.len());
    }
    producer.join().unwrap();
    let (oc, _, oerr) = out.finish();
    let (ic, irep, ierr) = inb.finish();
    assert_eq!((oc, ic), (0, 0), "out: {oerr}\nin: {ierr}");
    assert_eq!(report_u64(&irep, "items"), N);
    assert!(matches!(
        c.recv_timeout(&mut buf, DEADLINE),
        Err(RecvError::Disconnected)
    ));
}

#[test]
fn a_stopped_consumer_blocks_the_remote_producer_and_nothing_is_lost() {
    let n = Names::new("slow");
    let (a, b) = (n.ring("a"), n.ring("b"));
    const N: u64 = 100_000;
    let src = Spsc::<u64>::create(&a, 1024).unwrap();
    let dst = Spsc::<u64>::create(&b, 1024).unwrap();
    // A small window, so what is in flight is bounded by it and the two
    // rings, not by zenoh's or TCP's buffers.
    let (out, inb) = bridges(&n, &["--window", "65536", "--batch", "8192"], &[]);
    let mut c = dst.consumer().unwrap();
    let mut p = src.producer().unwrap();
    // Nobody pops /b: the producer must come to a stop, well short of N.
    let mut pushed = 0u64;
    while pushed < N {
        match p.push_timeout(pushed, Duration::from_secs(2)) {
            Ok(()) => pushed += 1,
            Err(shmqueue::PushError::Timeout(_)) => break,
            Err(e) => panic!("push: {e}"),
        }
    }
    assert!(
        pushed < N / 2,
        "the producer was never held back: {pushed} of {N} went in with no consumer"
    );
    // Items held: both rings (1023 each), the window (8192 u64) and a frame
    // the in-bridge is pushing.
    assert!(pushed >= 1023, "only {pushed} went in");
    let producer = thread::spawn(move || {
        for i in pushed..N {
            p.push(i).unwrap();
        }
    });
    for i in 0..N {
        assert_eq!(c.pop_timeout(DEADLINE).unwrap(), i);
    }
    producer.join().unwrap();
    let (oc, _, oerr) = out.finish();
    let (ic, irep, ierr) = inb.finish();
    assert_eq!((oc, ic), (0, 0), "out: {oerr}\nin: {ierr}");
    assert_eq!(report_u64(&irep, "duplicates"), 0);
}

/// Stream `n` u64 through an out-bridge and an in-bridge, doing `disrupt`
/// to the in-bridge once the consumer has `at` items; the items received,
/// in order of arrival, and both reports.
fn disrupted_stream(
    names: &Names,
    n: u64,
    at: usize,
    disrupt: impl FnOnce(Bridge, &dyn Fn() -> Bridge) -> Bridge,
) -> (Vec<u64>, serde_json::Value, serde_json::Value) {
    let (a, b) = (names.ring("a"), names.ring("b"));
    let src = Spsc::<u64>::create(&a, 4096).unwrap();
    let _dst = Spsc::<u64>::create(&b, 4096).unwrap();
    let port = free_port();
    let key = format!("test/{}", names.tag);
    let state = names.state();
    let out = out_bridge(&a, &key, port, &["--batch", "16384"]);
    let start_in = || in_bridge(&key, &b, port, &state, &[]);
    let inb = start_in();
    let producer = thread::spawn(move || {
        let mut p = src.producer().unwrap();
        for i in 0..n {
            p.push(i).unwrap();
        }
    });
    let progress = std::sync::Arc::new(AtomicUsize::new(0));
    let (b2, pr) = (b.clone(), progress.clone());
    let consumer = thread::spawn(move || drain_spsc(&b2, |len| len as u64 >= n, &pr));
    until("the stream to get going", || {
        (progress.load(Ordering::Relaxed) >= at).then_some(())
    });
    let inb = disrupt(inb, &start_in);
    let got = match consumer.join() {
        Ok(got) => got,
        Err(_) => panic!(
            "the consumer failed; out-bridge stderr: {}\nin-bridge stderr: {}",
            out.stderr_now(),
            inb.stderr_now()
        ),
    };
    producer.join().unwrap();
    let (oc, orep, oerr) = out.finish();
    let (ic, irep, ierr) = inb.finish();
    assert_eq!((oc, ic), (0, 0), "out: {oerr}\nin: {ierr}");
    (got, orep, irep)
}

#[test]
fn a_killed_receiving_bridge_restarts_and_misses_nothing() {
    let n = Names::new("kill");
    const N: u64 = 400_000;
    let (got, orep, irep) = disrupted_stream(&n, N, 100_000, |inb, start| {
        inb.kill();
        start()
    });
    assert_eq!(report_u64(&orep, "items"), N);
    // Every item, in order, once: except that items the killed bridge was
    // pushing when it died may be there twice, and the restarted bridge
    // reports how many that could be and from where.
    let resumed = report_u64(&irep, "resumed_from");
    let possible = report_u64(&irep, "possible_duplicates");
    let mut expect = 0u64;
    let mut dups = 0u64;
    for &v in &got {
        if v == expect {
            expect += 1;
        } else {
            assert!(
                v < expect,
                "item {v} arrived before {expect}: lost or reordered"
            );
            assert!(
                v >= resumed && v < resumed + possible,
                "{v} arrived twice, outside the range the bridge reported \
                 ({possible} from {resumed})"
            );
            dups += 1;
        }
    }
    assert_eq!(expect, N, "items missing");
    assert!(dups <= possible);
    assert!(resumed > 0, "the restarted bridge did not resume: {irep}");
}

#[test]
fn a_receiving_bridge_stopped_for_two_seconds_goes_on() {
    // SIGSTOP is a network partition as its peer sees it: no reads, no
    // acknowledgements. Two seconds is under zenoh's lease (10 s), so the
    // session survives and the stream resumes where it was.
    let n = Names::new("stop");
    const N: u64 = 400_000;
    let (got, _, irep) = disrupted_stream(&n, N, 100_000, |inb, _| {
        nix::sys::signal::kill(inb.pid(), nix::sys::signal::Signal::SIGSTOP).unwrap();
        thread::sleep(Duration::from_secs(2)); // the partition itself
        nix::sys::signal::kill(inb.pid(), nix::sys::signal::Signal::SIGCONT).unwrap();
        inb
    });
    assert_eq!(got.len() as u64, N);
    assert!(
        got.iter().enumerate().all(|(i, &v)| v == i as u64),
        "out of order"
    );
    assert_eq!(report_u64(&irep, "duplicates"), 0);
}

#[test]
fn a_mismatched_stream_is_refused_on_both_sides() {
    let n = Names::new("schema");
    let (a, b) = (n.ring("a"), n.ring("b"));
    let src = Spsc::<u64>::builder()
        .capacity(64)
        .schema(1)
        .create(&a)
        .unwrap();
    // Same element, another schema tag.
    let _dst = Spsc::<u64>::builder()
        .capacity(64)
        .schema(2)
        .create(&b)
        .unwrap();
    let (out, inb) = bridges(&n, &[], &[]);
    let mut p = src.producer().unwrap();
    p.push(42).unwrap();
    let (ic, _, ierr) = inb.finish();
    let (oc, _, oerr) = out.finish();
    assert_eq!(ic, 3, "in: {ierr}");
    assert!(ierr.contains("schema 0x2 here, 0x1 on the wire"), "{ierr}");
    assert_eq!(oc, 3, "out: {oerr}");
    assert!(oerr.contains("refused"), "{oerr}");
    // Nothing was written.
    let dst = Spsc::<u64>::builder().schema(2).open(&b).unwrap();
    assert_eq!(dst.len(), 0);
}

#[test]
fn broadcast_to_broadcast_every_subscriber_gets_every_item() {
    let n = Names::new("bcast");
    let (a, b) = (n.ring("a"), n.ring("b"));
    const N: u64 = 100_000;
    let src = Broadcast::<[u64; 2]>::builder()
        .capacity(1024)
        .lossless()
        .create(&a)
        .unwrap();
    let dst = Broadcast::<[u64; 2]>::builder()
        .capacity(1024)
        .lossless()
        .create(&b)
        .unwrap();
    let subs: Vec<_> = (0..2)
        .map(|_| dst.subscribe(Start::Oldest).unwrap())
        .collect();
    let (out, inb) = bridges(&n, &[], &[]);
    // The out-bridge subscribes at the oldest item, so what is published
    // before it attaches is carried too.
    let mut p = src.publisher().unwrap();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut s| {
            thread::spawn(move || {
                for i in 0..N {
                    assert_eq!(s.recv_timeout(DEADLINE).unwrap(), [i, mix(i)], "item {i}");
                }
            })
        })
        .collect();
    // Lossless: the publisher waits for the bridge's subscriber once it has
    // attached; before that, nothing holds it back, so wait for it.
    until("the out-bridge's subscriber", || {
        (!src.stats().subscribers.is_empty()).then_some(())
    });
    for i in 0..N {
        p.publish([i, mix(i)]).unwrap();
    }
    drop(p);
    for r in readers {
        r.join().unwrap();
    }
    let (oc, _, oerr) = out.finish();
    let (ic, irep, ierr) = inb.finish();
    assert_eq!((oc, ic), (0, 0), "out: {oerr}\nin: {ierr}");
    assert_eq!(report_u64(&irep, "items"), N);
}

#[test]
fn a_lossy_stream_counts_exactly_what_it_lost() {
    let n = Names::new("lossy");
    let (a, b) = (n.ring("a"), n.ring("b"));
    const N: u64 = 4_000_000;
    let src = Spsc::<u64>::create(&a, 1 << 16).unwrap();
    let dst = Spsc::<u64>::create(&b, 1 << 16).unwrap();
    let (out, inb) = bridges(&n, &["--lossy"], &[]);
    let mut p = src.producer().unwrap();
    let mut c = dst.consumer().unwrap();
    // Item 0 through, so the link is up, then stop the receiver and send
    // far more than the link can hold: a lossy sender never waits, so
    // zenoh drops frames.
    let mut got = Vec::new();
    let mut i = 0u64;
    while got.is_empty() {
        assert!(i < N);
        p.push(i).unwrap();
        i += 1;
        if let Ok(v) = c.pop_timeout(Duration::from_millis(20)) {
            got.push(v);
        }
    }
    nix::sys::signal::kill(inb.pid(), nix::sys::signal::Signal::SIGSTOP).unwrap();
    let producer = thread::spawn(move || {
        for k in i..N {
            p.push(k).unwrap();
        }
    });
    // The out-bridge drains the source while the receiver is stopped.
    producer.join().unwrap();
    nix::sys::signal::kill(inb.pid(), nix::sys::signal::Signal::SIGCONT).unwrap();
    loop {
        match c.pop_timeout(DEADLINE) {
            Ok(v) => got.push(v),
            Err(PopError::Disconnected) => break,
            Err(e) => panic!("pop: {e}"),
        }
    }
    let (oc, _, oerr) = out.finish();
    let (ic, irep, ierr) = inb.finish();
    assert_eq!((oc, ic), (0, 0), "out: {oerr}\nin: {ierr}");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "reordered or duplicated"
    );
    let lost = report_u64(&irep, "lost");
    assert_eq!(got.len() as u64 + lost, N, "received + lost != sent");
    assert!(
        lost > 0,
        "nothing was dropped: the test did not exercise loss"
    );
}

/// The test is the sender, speaking the wire format itself over zenoh, so
/// it can send what a real sender sends only in rare races: overlapping
/// frames, a gap, a foreign message. The in-bridge (a real process) must
/// push each item once, in order, and ask for the gap rather than pass it.
#[test]
fn duplicates_are_dropped_and_gaps_asked_for() {
    use shmq_bridge::wire::{Ctl, FrameHeader, StreamInfo};
    use zenoh::Wait;

    let n = Names::new("wire");
    let b = n.ring("b");
    let dst = Spsc::<u64>::create(&b, 1024).unwrap();
    let mut c = dst.consumer().unwrap();
    let port = free_port();
    let ep = format!("tcp/127.0.0.1:{port}");
    let key = format!("test/{}", n.tag);
    let session = shmq_bridge::open_session(&[ep], &[], None).unwrap();
    let ctl = session
        .declare_subscriber(format!("{key}/ctl"))
        .with(zenoh::handlers::FifoChannel::new(256))
        .wait()
        .unwrap();
    let data = session.declare_publisher(key.clone()).wait().unwrap();
    let inb = in_bridge(&key, &b, port, &n.state(), &[]);

    // The receiver's hello: a fresh one, no stream yet.
    let next_ctl = || {
        let s = ctl
            .recv_timeout(DEADLINE)
            .unwrap()
            .expect("the in-bridge said nothing");
        Ctl::read(&s.payload().to_bytes()).unwrap()
    };
    let Ctl::Hello {
        stream: 0,
        next: 0,
        incarnation,
    } = next_ctl()
    else {
        panic!("expected a first hello")
    };
    let info = StreamInfo {
        kind: shmqueue::QueueKind::Spsc,
        elem_size: 8,
        elem_align: 8,
        schema: 0,
        capacity: 1024,
        lossy: false,
    };
    let stream = 0xabcd_u64;
    let frame = |first: u64, count: u32, end: bool| {
        let mut f = Vec::new();
        FrameHeader {
            end,
            info,
            stream,
            first,
            count,
            answer: incarnation as u32,
        }
        .write(&mut f);
        for i in first..first + u64::from(count) * u64::from(!end) {
            f.extend_from_slice(&i.to_le_bytes());
        }
        f
    };
    let put = |f: Vec<u8>| data.put(f).wait().unwrap();
    put(frame(0, 10, false));
    put(b"not a bridge frame".to_vec()); // foreign: ignored, counted
    put(frame(5, 10, false)); // 5..10 again, then 10..15
    put(frame(0, 15, false)); // all again
    put(frame(30, 10, false)); // a gap: 15..30 missing
                               // The receiver must ask for 15 (a new incarnation), not pass 30.. on.
    let asked = loop {
        match next_ctl() {
            Ctl::Hello {
                stream: s, next, ..
            } if s == stream => break next,
            Ctl::Ack { .. } | Ctl::Hello { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(asked, 15, "the receiver asked for the wrong place");
    put(frame(15, 25, false)); // 15..40: the gap and the frame it dropped
    put(frame(40, 0, true));
    let (ic, irep, ierr) = inb.finish();
    assert_eq!(ic, 0, "in: {ierr}");
    for i in 0..40 {
        assert_eq!(c.pop_timeout(DEADLINE).unwrap(), i);
    }
    assert!(matches!(
        c.try_pop(),
        Err(shmqueue::TryPopError::Disconnected | shmqueue::TryPopError::Empty)
    ));
    assert_eq!(report_u64(&irep, "items"), 40);
    assert_eq!(report_u64(&irep, "duplicates"), 5 + 15);
    assert_eq!(report_u64(&irep, "foreign"), 1);
    assert_eq!(report_u64(&irep, "lost"), 0);
}

/// A consumer that stops for longer than zenoh's own limit on a blocked
/// `put` (5 s by default, after which zenoh closes the session): with the
/// bridge's configuration the sender just waits, no session is lost and
/// nothing has to be sent again.
#[test]
fn a_consumer_stalled_past_zenohs_block_limit_costs_no_session() {
    let n = Names::new("stall");
    let (a, b) = (n.ring("a"), n.ring("b"));
    const N: u64 = 4_000_000; // 32 MB: more than zenoh, TCP and the window hold
    let src = Spsc::<u64>::create(&a, 1024).unwrap();
    let dst = Spsc::<u64>::create(&b, 1024).unwrap();
    // A window larger than the stream: only zenoh's queues and TCP hold
    // the sender back, so its put blocks for the whole stall.
    let (out, inb) = bridges(&n, &["--window", "268435456"], &[]);
    let mut c = dst.consumer().unwrap();
    let producer = thread::spawn(move || {
        let mut p = src.producer().unwrap();
        let items: Vec<u64> = (0..N).collect();
        p.push_all(&items).unwrap();
    });
    // The first item, then a stall of 7 s: the sender's put blocks.
    assert_eq!(c.pop_timeout(DEADLINE).unwrap(), 0);
    thread::sleep(Duration::from_secs(7)); // the stall itself
    let mut buf = vec![0u64; 4096];
    let mut next = 1u64;
    while next < N {
        let k = c.pop_slice_timeout(&mut buf, DEADLINE).unwrap();
        for &v in &buf[..k] {
            assert_eq!(v, next);
            next += 1;
        }
    }
    producer.join().unwrap();
    let (oc, orep, oerr) = out.finish();
    let (ic, irep, ierr) = inb.finish();
    assert_eq!((oc, ic), (0, 0), "out: {oerr}\nin: {ierr}");
    assert_eq!(
        report_u64(&orep, "resent"),
        0,
        "the session was lost: {orep}"
    );
    assert_eq!(report_u64(&irep, "duplicates"), 0);
}

/// The receiving ring's consumer leaves mid-stream and a new one attaches
/// later: the in-bridge waits for it (its pushes are refused meanwhile)
/// instead of giving up, and the new consumer gets the rest, in order.
#[test]
fn the_receiving_consumer_may_leave_and_come_back() {
    let n = Names::new("leave");
    let (a, b) = (n.ring("a"), n.ring("b"));
    const N: u64 = 200_000;
    let src = Spsc::<u64>::create(&a, 1024).unwrap();
    let dst = Spsc::<u64>::create(&b, 1024).unwrap();
    let (out, inb) = bridges(&n, &[], &[]);
    let producer = thread::spawn(move || {
        let mut p = src.producer().unwrap();
        for i in 0..N {
            p.push(i).unwrap();
        }
    });
    let mut next = 0u64;
    {
        let mut c = dst.consumer().unwrap();
        while next < 10_000 {
            assert_eq!(c.pop_timeout(DEADLINE).unwrap(), next);
            next += 1;
        }
    } // the consumer leaves
    thread::sleep(Duration::from_millis(500)); // and stays away a while
    let mut c = dst.consumer().unwrap();
    while next < N {
        assert_eq!(c.pop_timeout(DEADLINE).unwrap(), next);
        next += 1;
    }
    producer.join().unwrap();
    let (oc, _, oerr) = out.finish();
    let (ic, irep, ierr) = inb.finish();
    assert_eq!((oc, ic), (0, 0), "out: {oerr}\nin: {ierr}");
    assert_eq!(report_u64(&irep, "items"), N);
}
