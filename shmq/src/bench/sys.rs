//! Operating-system plumbing of the bench: clocks, CPU pinning, a bounded
//! spin, raw shared-memory regions and the guards that remove every named
//! object (segment, message queue, FIFO) the bench creates, however it ends.

use std::ffi::{c_void, CString};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use nix::fcntl::OFlag;
use nix::sys::mman::{mmap, munmap, shm_open, shm_unlink, MapFlags, ProtFlags};
use nix::sys::stat::Mode;
use nix::time::{clock_gettime, ClockId};

use crate::Res;

/// CPU of the parent's (producer / pinging) side.
pub const CPU_A: usize = 0;
/// CPU of the peer's (consumer / echoing) side.
pub const CPU_B: usize = 1;

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the host,
/// so a stamp taken in one process can be compared in another.
#[inline]
pub fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// CPU time consumed by the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("CLOCK_THREAD_CPUTIME_ID");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Pin the calling thread to `cpu` if the machine has it; false otherwise.
pub fn pin(cpu: usize) -> bool {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).is_ok()
        && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}

/// Whether there are at least two CPUs to pin the two sides to.
pub fn can_pin() -> bool {
    std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
}

/// Bounded busy-waiting for the spin-mode peers: pause for the first
/// [`SPIN_PAUSES`] retries, then yield the CPU on every retry, so a spinner
/// that shares a core with its peer (2x2 on two CPUs, or a busy host) lets
/// the peer run.
pub struct Spin(u32);

/// Busy retries before a spinner starts yielding.
const SPIN_PAUSES: u32 = 1 << 12;

impl Spin {
    #[inline(always)]
    pub fn new() -> Self {
        Spin(0)
    }

    #[inline(always)]
    pub fn wait(&mut self) {
        if self.0 < SPIN_PAUSES {
            self.0 += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// A name unique to this process and call: `/shmqb-<pid>-<n>-<what>`.
pub fn unique_name(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("/shmqb-{}-{n}-{what}", std::process::id())
}

/// A named object the bench created; removed when the guard drops (also on
/// an error return or a panic, which unwinds through it).
pub enum Cleanup {
    /// A shmqueue segment.
    Queue(String),
    /// A raw POSIX shared-memory object.
    Shm(String),
    /// A POSIX message queue.
    Mq(String),
    /// A directory of FIFOs (or of iceoryx2's service files).
    Dir(PathBuf),
    /// Every /dev/shm entry whose name starts with this (iceoryx2's).
    ShmPrefix(String),
}

/// Names of the objects alive right now, for the signal handler.
static LIVE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl Cleanup {
    /// Register the object; removed again when the guard drops.
    pub fn new(c: Cleanup) -> Cleanup {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(c.key());
        c
    }

    fn key(&self) -> String {
        match self {
            Cleanup::Queue(n) => format!("q{n}"),
            Cleanup::Shm(n) => format!("s{n}"),
            Cleanup::Mq(n) => format!("m{n}"),
            Cleanup::Dir(p) => format!("d{}", p.display()),
            Cleanup::ShmPrefix(p) => format!("p{p}"),
        }
    }

    fn from_key(k: &str) -> Option<Cleanup> {
        let (t, n) = k.split_at_checked(1)?;
        Some(match t {
            "q" => Cleanup::Queue(n.into()),
            "s" => Cleanup::Shm(n.into()),
            "m" => Cleanup::Mq(n.into()),
            "d" => Cleanup::Dir(n.into()),
            "p" => Cleanup::ShmPrefix(n.into()),
            _ => return None,
        })
    }

    fn remove(&self) -> Result<(), String> {
        match self {
            Cleanup::Queue(n) => shmqueue::unlink(n).map_err(|e| e.to_string()),
            Cleanup::Shm(n) => shm_unlink(n.as_str()).map_err(|e| e.to_string()),
            Cleanup::Mq(n) => super::mq::unlink(n),
            // iceoryx2 may have removed its root directory itself.
            Cleanup::Dir(p) => match std::fs::remove_dir_all(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
            Cleanup::ShmPrefix(p) => {
                let mut first_err = Ok(());
                for e in std::fs::read_dir("/dev/shm").map_err(|e| e.to_string())? {
                    let Ok(e) = e else { continue };
                    if e.file_name().to_string_lossy().starts_with(p.as_str()) {
                        if let Err(err) = std::fs::remove_file(e.path()) {
                            if err.kind() != std::io::ErrorKind::NotFound && first_err.is_ok() {
                                first_err = Err(err.to_string());
                            }
                        }
                    }
                }
                first_err
            }
        }
    }
}

/// Ctrl-C and kill: a bench interrupted by SIGINT, SIGTERM or SIGHUP still
/// removes every object it made. The signals are blocked in every thread
/// (call this before spawning any) and taken by one thread with sigwait,
/// which removes what is registered and exits; peer processes die with
/// their parent (PR_SET_PDEATHSIG, see [`die_with_parent`]).
pub fn cleanup_on_signals() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            if let Ok(sig) = set.wait() {
                let keys = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
                for k in keys {
                    if let Some(c) = Cleanup::from_key(&k) {
                        let _ = c.remove();
                        std::mem::forget(c);
                    }
                }
                eprintln!("\nshmq bench: {sig}: removed the bench's objects, stopping");
                std::process::exit(130);
            }
        });
}

/// In a peer process: be killed when the bench that started it dies, so a
/// spinning peer never outlives an interrupted run.
pub fn die_with_parent() {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let key = self.key();
        {
            let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = live.iter().position(|k| *k == key) {
                live.swap_remove(i);
            }
        }
        let r = self.remove();
        if let Err(e) = r {
            eprintln!("shmq bench: warning: could not remove a bench object: {e}");
        }
    }
}

/// A read-write mapping of a POSIX shared-memory object. Only raw pointers
/// and atomics are handed out: the other process writes this memory.
pub struct ShmRegion {
    ptr: NonNull<c_void>,
    len: usize,
}

// SAFETY: the region is plain shared memory; every access goes through
// atomics or raw pointers under the users' own synchronisation (a pshared
// mutex, a seqlock-free ping-pong), never through `&T` to non-atomic data.
unsafe impl Send for ShmRegion {}
// SAFETY: as for Send: `&ShmRegion` only yields raw pointers and atomics.
unsafe impl Sync for ShmRegion {}

impl ShmRegion {
    /// Create `name` exclusively (mode 0600), `len` zeroed bytes. The caller
    /// registers a [`Cleanup::Shm`] for it.
    pub fn create(name: &str, len: usize) -> Res<Self> {
        let fd = shm_open(
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )?;
        nix::unistd::ftruncate(&fd, len as i64)?;
        Self::map(fd, len)
    }

    /// Map an existing object of at least `len` bytes.
    pub fn open(name: &str, len: usize) -> Res<Self> {
        let fd = shm_open(name, OFlag::O_RDWR, Mode::empty())?;
        let st = nix::sys::stat::fstat(&fd)?;
        if (st.st_size as usize) < len {
            return Err(format!("{name}: {} bytes, expected {len}", st.st_size).into());
        }
        Self::map(fd, len)
    }

    fn map(fd: std::os::fd::OwnedFd, len: usize) -> Res<Self> {
        let n = NonZeroUsize::new(len).ok_or("empty region")?;
        // SAFETY: a fresh shared mapping chosen by the kernel (no address
        // hint), backed by a shm object of at least `len` bytes; nothing in
        // this process aliases it yet. The fd may close after mmap.
        let ptr = unsafe {
            mmap(
                None,
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )?
        };
        Ok(ShmRegion { ptr, len })
    }

    /// The base address (page-aligned).
    pub fn base(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }

    /// The `AtomicU64` at byte offset `off` (8-aligned, in range).
    pub fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.len, "atomic out of range");
        // SAFETY: in range and 8-aligned (the base is page-aligned); the
        // mapping lives as long as `&self`; every process accesses this word
        // only atomically, which is what AtomicU64 requires.
        unsafe { &*self.base().add(off).cast::<AtomicU64>() }
    }
}

impl Drop for ShmRegion {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; every user of a
        // pointer into it (a duplex) holds an Arc to this region.
        unsafe {
            let _ = munmap(self.ptr, self.len);
        }
    }
}

/// Make `s` a C string (names never contain NUL).
pub fn cstring(s: &str) -> Res<CString> {
    Ok(CString::new(s)?)
}
