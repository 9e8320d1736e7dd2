//! Every contender as a [`Duplex`]: one side of a two-way channel carrying
//! `size`-byte messages. The parent holds side A (producer, pinger), the
//! peer thread or process side B (consumer, echoer); for 2x2 each side has
//! two of them, one per thread.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use shmqueue::{mpmc, spsc, Mpmc, Spsc, TryPopError, TryPushError};

use super::bcast;
use super::mq::{self, MqDuplex};
use super::payload::{get_bytes, set_bytes, with_size, Msg};
use super::pthread_ring::{self, PthreadDuplex};
use super::sys::{unique_name, Cleanup, ShmRegion, Spin};
use crate::Res;

/// Ends a 2x2 stream: each producer sends one after its share, each
/// consumer stops at the first it sees.
pub const SENTINEL: u64 = u64::MAX;

/// One side of a two-way channel of `size`-byte messages whose first eight
/// bytes carry a `u64`.
pub trait Duplex: Send {
    fn send(&mut self, v: u64) -> Res;
    fn recv(&mut self) -> Res<u64>;

    /// Send `first..first + n`. The default (one `send` per item) is
    /// monomorphised per peer: no dynamic call per item.
    fn stream_send(&mut self, first: u64, n: u64) -> Res {
        for i in first..first + n {
            self.send(i)?;
        }
        Ok(())
    }

    /// Receive up to `n` items, stopping early at a [`SENTINEL`]; how many
    /// (not counting the sentinel).
    fn stream_recv(&mut self, n: u64) -> Res<u64> {
        let mut c = 0;
        while c < n {
            if self.recv()? == SENTINEL {
                break;
            }
            c += 1;
        }
        Ok(c)
    }
}

/// The contenders.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub enum Kind {
    Floor,
    SpscSpin,
    SpscBatch,
    SpscBlock,
    MpmcSpin,
    MpmcBlock,
    Rtrb,
    ArrayQueue,
    SyncChannel,
    Pipe,
    Fifo,
    Socketpair,
    Mq,
    Pthread,
    BcastSpin,
    BcastBlock,
    Ringfire,
    RingfireFutex,
    Iceoryx2,
}

pub const ALL_KINDS: [Kind; 19] = [
    Kind::Floor,
    Kind::SpscSpin,
    Kind::SpscBatch,
    Kind::SpscBlock,
    Kind::MpmcSpin,
    Kind::MpmcBlock,
    Kind::Rtrb,
    Kind::ArrayQueue,
    Kind::SyncChannel,
    Kind::Pipe,
    Kind::Fifo,
    Kind::Socketpair,
    Kind::Mq,
    Kind::Pthread,
    Kind::BcastSpin,
    Kind::BcastBlock,
    Kind::Ringfire,
    Kind::RingfireFutex,
    Kind::Iceoryx2,
];

/// Which of the three groups a contender is in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Family {
    Floor,
    Shmqueue,
    Peer,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::SpscSpin => "shmq-spsc-spin",
            Kind::SpscBatch => "shmq-spsc-batch",
            Kind::SpscBlock => "shmq-spsc-block",
            Kind::MpmcSpin => "shmq-mpmc-spin",
            Kind::MpmcBlock => "shmq-mpmc-block",
            Kind::Rtrb => "rtrb",
            Kind::ArrayQueue => "arrayqueue",
            Kind::SyncChannel => "sync_channel",
            Kind::Pipe => "pipe",
            Kind::Fifo => "fifo",
            Kind::Socketpair => "socketpair",
            Kind::Mq => "mq",
            Kind::Pthread => "pthread-ring",
            Kind::BcastSpin => "shmq-bcast-spin",
            Kind::BcastBlock => "shmq-bcast-block",
            Kind::Ringfire => "ringfire",
            Kind::RingfireFutex => "ringfire-futex",
            Kind::Iceoryx2 => "iceoryx2",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        ALL_KINDS.into_iter().find(|k| k.name() == s)
    }

    pub fn family(self) -> Family {
        match self {
            Kind::Floor => Family::Floor,
            Kind::SpscSpin
            | Kind::SpscBatch
            | Kind::SpscBlock
            | Kind::MpmcSpin
            | Kind::MpmcBlock
            | Kind::BcastSpin
            | Kind::BcastBlock => Family::Shmqueue,
            _ => Family::Peer,
        }
    }

    /// Sleeps in the kernel when there is nothing to do (as opposed to
    /// spinning).
    pub fn blocking(self) -> bool {
        !matches!(
            self,
            Kind::Floor
                | Kind::SpscSpin
                | Kind::SpscBatch
                | Kind::MpmcSpin
                | Kind::Rtrb
                | Kind::ArrayQueue
                | Kind::BcastSpin
                | Kind::Ringfire
                | Kind::Iceoryx2
        )
    }

    /// One publisher, every subscriber sees every item: these alone run the
    /// 1x3 fan-out, and carry `u64` items only.
    pub fn broadcast(self) -> bool {
        matches!(
            self,
            Kind::BcastSpin
                | Kind::BcastBlock
                | Kind::Ringfire
                | Kind::RingfireFutex
                | Kind::Iceoryx2
        )
    }

    /// Why this binary cannot run the contender, if it cannot.
    pub fn unavailable(self) -> Option<&'static str> {
        match self {
            Kind::Iceoryx2 if !cfg!(feature = "iceoryx2") => {
                Some("shmq built without the `iceoryx2` feature")
            }
            _ => None,
        }
    }

    /// In-process only: no way to put it between two processes.
    pub fn thread_only(self) -> bool {
        matches!(self, Kind::Rtrb | Kind::ArrayQueue | Kind::SyncChannel)
    }

    /// Takes several producers and consumers (the 2x2 stream).
    pub fn multi(self) -> bool {
        matches!(
            self,
            Kind::MpmcSpin | Kind::MpmcBlock | Kind::ArrayQueue | Kind::Mq | Kind::Pthread
        )
    }

    /// Largest payload, if capped.
    pub fn max_size(self) -> Option<usize> {
        match self {
            Kind::Mq => Some(mq::limits().msgsize_max),
            k if k.broadcast() => Some(8),
            _ => None,
        }
    }
}

/// Items a ring holds for `size`-byte payloads: about 1 MiB of slots, 16 to
/// 1024 of them (a power of two for the sizes the bench uses).
pub fn capacity(size: usize) -> usize {
    ((1 << 20) / size).clamp(16, 1024)
}

/// A received message's sequence number or stamp. `black_box` makes the
/// whole message exist in memory: without it the compiler may copy only the
/// eight bytes read out of the ring, while the kernel peers always copy the
/// whole payload into the receiver's buffer.
///
/// Callers match on the `Result` and pass the `Ok` payload here, the same
/// way in every shmq contender. `received(&rx.pop()?)` made the blocking
/// SPSC receive 3-5x slower than the spinning one at 4 KiB and 64 KiB, for
/// a reason that has nothing to do with blocking: the `?` moved the message
/// through two more stack temporaries, laid out back to back, each a
/// `Result<Msg<N>, PopError>` (N + 8 bytes, payload at offset 8), so one of
/// those copies had destination - source = 8 (mod 4096). glibc's memcpy
/// uses `rep movsb` for copies this large, and on the AMD EPYC (Zen 4) we
/// measure on `rep movsb` with (dst - src) mod 4096 in 1..=15 is ~25x slower
/// (4 KiB: 1.4 us instead of 50 ns; 64 KiB: 20 us instead of 1.2 us).
/// `GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=10000000` (no
/// `rep movsb`) made the two contenders equal, which is how it was found.
#[inline(always)]
fn received<const N: usize>(m: &Msg<N>) -> u64 {
    std::hint::black_box(m).get()
}

/// Items per push_slice / pop_slice call of the batch contender.
const CHUNK: usize = 64;

/// A built contender: side A, and side B either built here (thread
/// placement) or described for a child process.
pub struct Built {
    pub a: Vec<Box<dyn Duplex>>,
    pub b: Vec<Box<dyn Duplex>>,
    /// Arguments of `shmq bench-peer` that open side B.
    pub child_args: Vec<String>,
    /// Descriptors the child inherits (closed here once it is spawned).
    pub child_fds: Vec<OwnedFd>,
    /// Keeps the creator's view alive (pthread: destroys the mutexes).
    pub owners: Vec<Box<dyn Send>>,
    /// Named objects, removed last.
    pub guards: Vec<Cleanup>,
}

/// Where side B of a contender lives and how to find it.
pub struct PeerSpec {
    pub kind: Kind,
    pub size: usize,
    pub pairs: usize,
    /// Subscribers per publisher (broadcast fan-out), 1 otherwise.
    pub subs: usize,
    pub names: Vec<String>,
    pub fds: Vec<RawFd>,
}

impl PeerSpec {
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "--kind".into(),
            self.kind.name().into(),
            "--size".into(),
            self.size.to_string(),
            "--pairs".into(),
            self.pairs.to_string(),
            "--subs".into(),
            self.subs.to_string(),
        ];
        if !self.names.is_empty() {
            v.push("--names".into());
            v.push(self.names.join(","));
        }
        if !self.fds.is_empty() {
            v.push("--fds".into());
            v.push(
                self.fds
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        v
    }
}

/// Build `kind` for `size`-byte messages with `pairs` A/B endpoint pairs
/// and `subs` subscribers per publisher (broadcast contenders);
/// `process`: leave side B to a child.
pub fn build(kind: Kind, size: usize, pairs: usize, subs: usize, process: bool) -> Res<Built> {
    let mut built = Built {
        a: Vec::new(),
        b: Vec::new(),
        child_args: Vec::new(),
        child_fds: Vec::new(),
        owners: Vec::new(),
        guards: Vec::new(),
    };
    if pairs > 1 && !kind.multi() {
        return Err(format!("{} takes one producer and one consumer", kind.name()).into());
    }
    if subs > 1 && !kind.broadcast() {
        return Err(format!("{} gives each item to one consumer", kind.name()).into());
    }
    let cap = capacity(size);
    let mut spec = PeerSpec {
        kind,
        size,
        pairs,
        subs,
        names: Vec::new(),
        fds: Vec::new(),
    };
    // Side B from descriptors, when not handed to a child.
    let mut b_fds: Vec<OwnedFd> = Vec::new();
    match kind {
        Kind::Floor => {
            let n = unique_name("floor");
            let r = ShmRegion::create(&n, 4096)?;
            built.guards.push(Cleanup::new(Cleanup::Shm(n.clone())));
            built.a.push(Box::new(FloorA {
                r: Arc::new(r),
                next: 0,
            }));
            spec.names.push(n);
        }
        Kind::SpscSpin | Kind::SpscBatch | Kind::SpscBlock => {
            let (ab, ba) = (unique_name("ab"), unique_name("ba"));
            with_size!(size, N => {
                let q1 = Spsc::<Msg<N>>::create(&ab, cap)?;
                built.guards.push(Cleanup::new(Cleanup::Queue(ab.clone())));
                let q2 = Spsc::<Msg<N>>::create(&ba, cap)?;
                built.guards.push(Cleanup::new(Cleanup::Queue(ba.clone())));
                built.a.push(Box::new(SpscDuplex::<N>::new(kind, q1.producer()?, q2.consumer()?)));
            }, _ => return Err(format!("unsupported size {size}").into()));
            spec.names = vec![ab, ba];
        }
        Kind::MpmcSpin | Kind::MpmcBlock => {
            let (ab, ba) = (unique_name("ab"), unique_name("ba"));
            with_size!(size, N => {
                let q1 = Mpmc::<Msg<N>>::create(&ab, cap)?;
                built.guards.push(Cleanup::new(Cleanup::Queue(ab.clone())));
                let q2 = Mpmc::<Msg<N>>::create(&ba, cap)?;
                built.guards.push(Cleanup::new(Cleanup::Queue(ba.clone())));
                for _ in 0..pairs {
                    built.a.push(Box::new(MpmcDuplex::<N>::new(kind, q1.producer()?, q2.consumer()?)));
                }
            }, _ => return Err(format!("unsupported size {size}").into()));
            spec.names = vec![ab, ba];
        }
        Kind::Rtrb | Kind::ArrayQueue | Kind::SyncChannel => {
            if process {
                return Err(format!("{} works between threads only", kind.name()).into());
            }
            with_size!(size, N => build_in_process::<N>(kind, cap, pairs, &mut built),
                _ => return Err(format!("unsupported size {size}").into()));
            return Ok(built);
        }
        Kind::Pipe => {
            let (ab_r, ab_w) = nix::unistd::pipe()?;
            let (ba_r, ba_w) = nix::unistd::pipe()?;
            built
                .a
                .push(Box::new(FdDuplex::new(ba_r.into(), ab_w.into(), size)));
            b_fds = vec![ab_r, ba_w];
        }
        Kind::Socketpair => {
            let (s0, s1) = std::os::unix::net::UnixStream::pair()?;
            let s0b = s0.try_clone()?;
            built.a.push(Box::new(FdDuplex::new(
                OwnedFd::from(s0).into(),
                OwnedFd::from(s0b).into(),
                size,
            )));
            b_fds = vec![s1.into()];
        }
        Kind::Fifo => {
            let dir = std::env::temp_dir().join(unique_name("fifo").trim_start_matches('/'));
            std::fs::create_dir(&dir)?;
            built.guards.push(Cleanup::new(Cleanup::Dir(dir.clone())));
            let (ab, ba) = (dir.join("ab"), dir.join("ba"));
            for p in [&ab, &ba] {
                nix::unistd::mkfifo(
                    p,
                    nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
                )?;
            }
            built.a.push(Box::new(FdDuplex::new(
                open_fifo(&ba)?,
                open_fifo(&ab)?,
                size,
            )));
            spec.names = vec![path_str(&ab)?, path_str(&ba)?];
        }
        Kind::Mq => {
            if size > mq::limits().msgsize_max {
                return Err(format!(
                    "mq: {size} B exceeds /proc/sys/fs/mqueue/msgsize_max ({})",
                    mq::limits().msgsize_max
                )
                .into());
            }
            let (ab, ba) = (unique_name("mqab"), unique_name("mqba"));
            let tx = mq::create(&ab, size)?;
            built.guards.push(Cleanup::new(Cleanup::Mq(ab.clone())));
            let rx = mq::create(&ba, size)?;
            built.guards.push(Cleanup::new(Cleanup::Mq(ba.clone())));
            built.a.push(Box::new(MqDuplex {
                tx,
                rx,
                buf: vec![0; size],
            }));
            for _ in 1..pairs {
                built.a.push(Box::new(MqDuplex {
                    tx: mq::open(&ab)?,
                    rx: mq::open(&ba)?,
                    buf: vec![0; size],
                }));
            }
            spec.names = vec![ab, ba];
        }
        Kind::Pthread => {
            let n = unique_name("pthread");
            let len = pthread_ring::segment_bytes(cap, size);
            let region = ShmRegion::create(&n, len)?;
            built.guards.push(Cleanup::new(Cleanup::Shm(n.clone())));
            pthread_ring::init(&region, cap, size)?;
            let region = Arc::new(region);
            built.owners.push(Box::new(pthread_ring::Owner {
                region: Arc::clone(&region),
                cap,
                size,
            }));
            for _ in 0..pairs {
                built.a.push(Box::new(PthreadDuplex {
                    region: Arc::clone(&region),
                    tx: 0,
                    rx: 1,
                    cap,
                    buf: vec![0; size],
                }));
            }
            spec.names = vec![n];
        }
        k if k.broadcast() => {
            if size != 8 {
                return Err(format!("{} carries u64 items only", k.name()).into());
            }
            bcast::build(k, subs, &mut built, &mut spec)?;
        }
        _ => return Err(format!("cannot build {}", kind.name()).into()),
    }
    if process {
        spec.fds = b_fds.iter().map(|f| f.as_raw_fd()).collect();
        built.child_fds = b_fds;
        built.child_args = spec.to_args();
    } else {
        built.b = open_b(&spec, b_fds)?;
    }
    Ok(built)
}

fn path_str(p: &std::path::Path) -> Res<String> {
    Ok(p.to_str().ok_or("non-UTF-8 temp dir")?.to_string())
}

/// Linux: opening a FIFO read-write never blocks waiting for the other
/// end (POSIX leaves it undefined); each side reads one FIFO and writes the
/// other, so this changes nothing about the data path.
fn open_fifo(p: &std::path::Path) -> Res<File> {
    Ok(std::fs::OpenOptions::new().read(true).write(true).open(p)?)
}

/// Open side B: in a peer thread (`fds` given) or a child process (`fds`
/// taken from `spec.fds`, inherited).
pub fn open_b(spec: &PeerSpec, mut fds: Vec<OwnedFd>) -> Res<Vec<Box<dyn Duplex>>> {
    let size = spec.size;
    let mut b: Vec<Box<dyn Duplex>> = Vec::new();
    if fds.is_empty() {
        for &fd in &spec.fds {
            // SAFETY: the parent cleared FD_CLOEXEC on exactly these
            // descriptors for this child and passed their numbers; nothing
            // else in this process owns them.
            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    let name = |i: usize| -> Res<&str> {
        spec.names
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| "missing --names".into())
    };
    match spec.kind {
        Kind::Floor => b.push(Box::new(FloorB {
            r: Arc::new(ShmRegion::open(name(0)?, 4096)?),
            next: 0,
        })),
        Kind::SpscSpin | Kind::SpscBatch | Kind::SpscBlock => {
            with_size!(size, N => {
                let rx = Spsc::<Msg<N>>::open(name(0)?)?.consumer()?;
                let tx = Spsc::<Msg<N>>::open(name(1)?)?.producer()?;
                b.push(Box::new(SpscDuplex::<N>::new(spec.kind, tx, rx)));
            }, _ => return Err(format!("unsupported size {size}").into()));
        }
        Kind::MpmcSpin | Kind::MpmcBlock => {
            with_size!(size, N => {
                let q1 = Mpmc::<Msg<N>>::open(name(0)?)?;
                let q2 = Mpmc::<Msg<N>>::open(name(1)?)?;
                for _ in 0..spec.pairs {
                    b.push(Box::new(MpmcDuplex::<N>::new(spec.kind, q2.producer()?, q1.consumer()?)));
                }
            }, _ => return Err(format!("unsupported size {size}").into()));
        }
        Kind::Rtrb | Kind::ArrayQueue | Kind::SyncChannel => {
            return Err("in-process peer cannot be opened by a child".into())
        }
        Kind::Pipe => {
            if fds.len() != 2 {
                return Err("pipe: expected two descriptors".into());
            }
            let w = fds.pop().expect("two");
            let r = fds.pop().expect("two");
            b.push(Box::new(FdDuplex::new(r.into(), w.into(), size)));
        }
        Kind::Socketpair => {
            let s = fds.pop().ok_or("socketpair: expected a descriptor")?;
            let s2 = s.try_clone()?;
            b.push(Box::new(FdDuplex::new(s.into(), s2.into(), size)));
        }
        Kind::Fifo => b.push(Box::new(FdDuplex::new(
            open_fifo(std::path::Path::new(name(0)?))?,
            open_fifo(&PathBuf::from(name(1)?))?,
            size,
        ))),
        Kind::Mq => {
            for _ in 0..spec.pairs {
                b.push(Box::new(MqDuplex {
                    tx: mq::open(name(1)?)?,
                    rx: mq::open(name(0)?)?,
                    buf: vec![0; size],
                }));
            }
        }
        Kind::Pthread => {
            let cap = capacity(size);
            let region = Arc::new(ShmRegion::open(
                name(0)?,
                pthread_ring::segment_bytes(cap, size),
            )?);
            for _ in 0..spec.pairs {
                b.push(Box::new(PthreadDuplex {
                    region: Arc::clone(&region),
                    tx: 1,
                    rx: 0,
                    cap,
                    buf: vec![0; size],
                }));
            }
        }
        k if k.broadcast() => b = bcast::open_b(spec)?,
        _ => return Err(format!("cannot open {}", spec.kind.name()).into()),
    }
    Ok(b)
}

fn build_in_process<const N: usize>(kind: Kind, cap: usize, pairs: usize, built: &mut Built) {
    match kind {
        Kind::Rtrb => {
            let (p1, c1) = rtrb::RingBuffer::<Msg<N>>::new(cap);
            let (p2, c2) = rtrb::RingBuffer::<Msg<N>>::new(cap);
            built.a.push(Box::new(RtrbDuplex::<N> {
                tx: p1,
                rx: c2,
                msg: Msg::zeroed(),
            }));
            built.b.push(Box::new(RtrbDuplex::<N> {
                tx: p2,
                rx: c1,
                msg: Msg::zeroed(),
            }));
        }
        Kind::ArrayQueue => {
            let q1 = Arc::new(ArrayQueue::<Msg<N>>::new(cap));
            let q2 = Arc::new(ArrayQueue::<Msg<N>>::new(cap));
            for _ in 0..pairs {
                built.a.push(Box::new(AqDuplex::<N> {
                    tx: Arc::clone(&q1),
                    rx: Arc::clone(&q2),
                    msg: Msg::zeroed(),
                }));
                built.b.push(Box::new(AqDuplex::<N> {
                    tx: Arc::clone(&q2),
                    rx: Arc::clone(&q1),
                    msg: Msg::zeroed(),
                }));
            }
        }
        _ => {
            let (t1, r1) = std::sync::mpsc::sync_channel::<Msg<N>>(cap);
            let (t2, r2) = std::sync::mpsc::sync_channel::<Msg<N>>(cap);
            built.a.push(Box::new(ChanDuplex::<N> {
                tx: t1,
                rx: r2,
                msg: Msg::zeroed(),
            }));
            built.b.push(Box::new(ChanDuplex::<N> {
                tx: t2,
                rx: r1,
                msg: Msg::zeroed(),
            }));
        }
    }
}

// ---------------------------------------------------------------------------
// The floor: one cache line bounced between the two sides.
// ---------------------------------------------------------------------------

/// A's side: writes odd values, waits for the following even one.
struct FloorA {
    r: Arc<ShmRegion>,
    next: u64,
}

impl Duplex for FloorA {
    fn send(&mut self, _v: u64) -> Res {
        self.next += 1;
        self.r
            .atomic_u64(0)
            .store(self.next, std::sync::atomic::Ordering::Release);
        Ok(())
    }
    fn recv(&mut self) -> Res<u64> {
        let cell = self.r.atomic_u64(0);
        let mut spin = Spin::new();
        while cell.load(std::sync::atomic::Ordering::Acquire) != self.next + 1 {
            spin.wait();
        }
        self.next += 1;
        Ok(self.next)
    }
}

/// B's side: waits for an odd value, answers with the next.
struct FloorB {
    r: Arc<ShmRegion>,
    next: u64,
}

impl Duplex for FloorB {
    fn send(&mut self, _v: u64) -> Res {
        self.next += 1;
        self.r
            .atomic_u64(0)
            .store(self.next, std::sync::atomic::Ordering::Release);
        Ok(())
    }
    fn recv(&mut self) -> Res<u64> {
        let cell = self.r.atomic_u64(0);
        let mut spin = Spin::new();
        while cell.load(std::sync::atomic::Ordering::Acquire) != self.next + 1 {
            spin.wait();
        }
        self.next += 1;
        Ok(self.next)
    }
}

// ---------------------------------------------------------------------------
// shmqueue
// ---------------------------------------------------------------------------

struct SpscDuplex<const N: usize> {
    tx: spsc::Producer<Msg<N>>,
    rx: spsc::Consumer<Msg<N>>,
    block: bool,
    batch: bool,
    msg: Msg<N>,
    buf: Vec<Msg<N>>,
}

impl<const N: usize> SpscDuplex<N> {
    fn new(kind: Kind, tx: spsc::Producer<Msg<N>>, rx: spsc::Consumer<Msg<N>>) -> Self {
        let batch = kind == Kind::SpscBatch;
        SpscDuplex {
            tx,
            rx,
            block: kind == Kind::SpscBlock,
            batch,
            msg: Msg::zeroed(),
            buf: if batch {
                vec![Msg::zeroed(); CHUNK.min(capacity(N))]
            } else {
                Vec::new()
            },
        }
    }
}

impl<const N: usize> Duplex for SpscDuplex<N> {
    #[inline]
    fn send(&mut self, v: u64) -> Res {
        self.msg.set(v);
        if self.block {
            return self.tx.push(self.msg).map_err(|e| e.to_string().into());
        }
        let mut spin = Spin::new();
        loop {
            match self.tx.try_push(self.msg) {
                Ok(()) => return Ok(()),
                Err(TryPushError::Full(_)) => spin.wait(),
                Err(e) => return Err(e.to_string().into()),
            }
        }
    }

    #[inline]
    fn recv(&mut self) -> Res<u64> {
        if self.block {
            // The same shape as the spinning arm below, not
            // `received(&self.rx.pop()?)`: see `received`.
            return match self.rx.pop() {
                Ok(m) => Ok(received(&m)),
                Err(e) => Err(e.into()),
            };
        }
        let mut spin = Spin::new();
        loop {
            match self.rx.try_pop() {
                Ok(m) => return Ok(received(&m)),
                Err(TryPopError::Empty) => spin.wait(),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn stream_send(&mut self, first: u64, n: u64) -> Res {
        if !self.batch {
            for i in first..first + n {
                self.send(i)?;
            }
            return Ok(());
        }
        let end = first + n;
        let mut i = first;
        while i < end {
            let k = (self.buf.len() as u64).min(end - i) as usize;
            for (j, m) in self.buf[..k].iter_mut().enumerate() {
                m.set(i + j as u64);
            }
            let mut off = 0;
            let mut spin = Spin::new();
            while off < k {
                let m = self.tx.push_slice(&self.buf[off..k])?;
                if m == 0 {
                    spin.wait();
                } else {
                    off += m;
                    spin = Spin::new();
                }
            }
            i += k as u64;
        }
        Ok(())
    }

    fn stream_recv(&mut self, n: u64) -> Res<u64> {
        if !self.batch {
            let mut c = 0;
            while c < n {
                if self.recv()? == SENTINEL {
                    break;
                }
                c += 1;
            }
            return Ok(c);
        }
        let mut c = 0u64;
        let mut spin = Spin::new();
        while c < n {
            let want = (self.buf.len() as u64).min(n - c) as usize;
            let m = self.rx.pop_slice(&mut self.buf[..want])?;
            if m == 0 {
                spin.wait();
            } else {
                c += m as u64;
                spin = Spin::new();
            }
        }
        Ok(c)
    }
}

struct MpmcDuplex<const N: usize> {
    tx: mpmc::Producer<Msg<N>>,
    rx: mpmc::Consumer<Msg<N>>,
    block: bool,
    msg: Msg<N>,
}

impl<const N: usize> MpmcDuplex<N> {
    fn new(kind: Kind, tx: mpmc::Producer<Msg<N>>, rx: mpmc::Consumer<Msg<N>>) -> Self {
        MpmcDuplex {
            tx,
            rx,
            block: kind == Kind::MpmcBlock,
            msg: Msg::zeroed(),
        }
    }
}

impl<const N: usize> Duplex for MpmcDuplex<N> {
    #[inline]
    fn send(&mut self, v: u64) -> Res {
        self.msg.set(v);
        if self.block {
            return self.tx.push(self.msg).map_err(|e| e.to_string().into());
        }
        let mut spin = Spin::new();
        loop {
            match self.tx.try_push(self.msg) {
                Ok(()) => return Ok(()),
                Err(TryPushError::Full(_)) => spin.wait(),
                Err(e) => return Err(e.to_string().into()),
            }
        }
    }

    #[inline]
    fn recv(&mut self) -> Res<u64> {
        if self.block {
            // The same shape as the spinning arm below, not
            // `received(&self.rx.pop()?)`: see `received`.
            return match self.rx.pop() {
                Ok(m) => Ok(received(&m)),
                Err(e) => Err(e.into()),
            };
        }
        let mut spin = Spin::new();
        loop {
            match self.rx.try_pop() {
                Ok(m) => return Ok(received(&m)),
                Err(TryPopError::Empty) => spin.wait(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// In-process peers
// ---------------------------------------------------------------------------

struct RtrbDuplex<const N: usize> {
    tx: rtrb::Producer<Msg<N>>,
    rx: rtrb::Consumer<Msg<N>>,
    msg: Msg<N>,
}

impl<const N: usize> Duplex for RtrbDuplex<N> {
    #[inline]
    fn send(&mut self, v: u64) -> Res {
        self.msg.set(v);
        let mut spin = Spin::new();
        while self.tx.push(self.msg).is_err() {
            spin.wait();
        }
        Ok(())
    }
    #[inline]
    fn recv(&mut self) -> Res<u64> {
        let mut spin = Spin::new();
        loop {
            if let Ok(m) = self.rx.pop() {
                return Ok(received(&m));
            }
            spin.wait();
        }
    }
}

struct AqDuplex<const N: usize> {
    tx: Arc<ArrayQueue<Msg<N>>>,
    rx: Arc<ArrayQueue<Msg<N>>>,
    msg: Msg<N>,
}

impl<const N: usize> Duplex for AqDuplex<N> {
    #[inline]
    fn send(&mut self, v: u64) -> Res {
        self.msg.set(v);
        let mut spin = Spin::new();
        while self.tx.push(self.msg).is_err() {
            spin.wait();
        }
        Ok(())
    }
    #[inline]
    fn recv(&mut self) -> Res<u64> {
        let mut spin = Spin::new();
        loop {
            if let Some(m) = self.rx.pop() {
                return Ok(received(&m));
            }
            spin.wait();
        }
    }
}

struct ChanDuplex<const N: usize> {
    tx: std::sync::mpsc::SyncSender<Msg<N>>,
    rx: std::sync::mpsc::Receiver<Msg<N>>,
    msg: Msg<N>,
}

impl<const N: usize> Duplex for ChanDuplex<N> {
    #[inline]
    fn send(&mut self, v: u64) -> Res {
        self.msg.set(v);
        self.tx
            .send(self.msg)
            .map_err(|_| "sync_channel: receiver gone".into())
    }
    #[inline]
    fn recv(&mut self) -> Res<u64> {
        Ok(received(&self.rx.recv()?))
    }
}

// ---------------------------------------------------------------------------
// Kernel byte streams: pipe, FIFO, socketpair
// ---------------------------------------------------------------------------

struct FdDuplex {
    r: File,
    w: File,
    buf: Vec<u8>,
}

impl FdDuplex {
    fn new(r: File, w: File, size: usize) -> Self {
        FdDuplex {
            r,
            w,
            buf: vec![0; size],
        }
    }
}

impl Duplex for FdDuplex {
    #[inline]
    fn send(&mut self, v: u64) -> Res {
        set_bytes(&mut self.buf, v);
        self.w.write_all(&self.buf)?;
        Ok(())
    }
    #[inline]
    fn recv(&mut self) -> Res<u64> {
        self.r.read_exact(&mut self.buf)?;
        Ok(get_bytes(&self.buf))
    }
}
