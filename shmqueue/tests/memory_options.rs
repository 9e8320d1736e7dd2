//! The builders' memory options take effect: `prefault` maps every page
//! (the mapping's Rss in /proc/self/smaps is its whole length),
//! `lock_memory` locks it (VmLck in /proc/self/status) or, under a low
//! RLIMIT_MEMLOCK, fails with a typed error that names the limit and
//! leaves nothing behind, and `huge_pages` either gives huge pages or a
//! typed error, never normal pages in silence.
//!
//! Every test holds `SERIAL`: they read process-wide counters (VmLck, the
//! mappings of memfds, which all carry the same name).

mod common;

use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use shmqueue::{ByteRing, Error, Mpmc, Spsc};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Ring capacity in u64 items: a 4 MiB data area.
const ITEMS: usize = 1 << 19;
const BYTES: usize = ITEMS * 8;

fn skipped(test: &str, why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why}; this test did NOT check anything"
    );
}

/// One mapping of /proc/self/smaps.
#[derive(Debug)]
struct Vma {
    len: u64,
    rss: u64,
    /// Bytes mapped with huge-page (PMD) entries.
    pmd: u64,
    locked: u64,
}

/// The mappings whose path is `path`.
fn mappings(path: &str) -> Vec<Vma> {
    let text = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut out = Vec::new();
    let mut cur: Option<Vma> = None;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                out.extend(cur.take());
                // "addr perms offset dev inode path..."
                let name: Vec<&str> = line.split_whitespace().skip(5).collect();
                if name.join(" ") == path {
                    cur = Some(Vma {
                        len: b - a,
                        rss: 0,
                        pmd: 0,
                        locked: 0,
                    });
                }
                continue;
            }
        }
        if let Some(v) = cur.as_mut() {
            let mut kb = || f.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) * 1024;
            match first {
                "Rss:" => v.rss = kb(),
                "ShmemPmdMapped:" | "FilePmdMapped:" => v.pmd += kb(),
                "Locked:" => v.locked = kb(),
                _ => {}
            }
        }
    }
    out.extend(cur);
    out
}

fn shm_path(name: &str) -> String {
    format!("/dev/shm{name}")
}

const MEMFD_PATH: &str = "/memfd:shmqueue (deleted)";

/// `VmLck` of this process in bytes.
fn vm_lck() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmLck:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Every mapping of `path` is resident in full.
fn assert_all_resident(what: &str, path: &str, count: usize) {
    let m = mappings(path);
    assert_eq!(m.len(), count, "{what}: mappings of {path}: {m:?}");
    for v in &m {
        assert!(v.len >= BYTES as u64, "{what}: {v:?}");
        assert_eq!(v.rss, v.len, "{what}: not every page is mapped: {v:?}");
    }
}

#[test]
fn prefault_maps_every_page_on_create_and_on_open() {
    let _s = serial();
    // SPSC and byte rings touch only their header when created: without
    // prefault most of the mapping is absent (the check below can fail).
    let plain = Shm::new("plain");
    let _q = Spsc::<u64>::create(plain.name(), ITEMS).unwrap();
    let m = mappings(&shm_path(plain.name()));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].rss < m[0].len / 2, "without prefault: {m:?}");

    let spsc = Shm::new("spsc");
    let _c = Spsc::<u64>::builder()
        .capacity(ITEMS)
        .prefault(true)
        .create(spsc.name())
        .unwrap();
    assert_all_resident("SPSC create", &shm_path(spsc.name()), 1);
    let _o = Spsc::<u64>::builder()
        .prefault(true)
        .open(spsc.name())
        .unwrap();
    assert_all_resident("SPSC open", &shm_path(spsc.name()), 2);

    let bytes = Shm::new("bytes");
    let _c = ByteRing::builder()
        .capacity(BYTES)
        .prefault(true)
        .create(bytes.name())
        .unwrap();
    assert_all_resident("byte ring create", &shm_path(bytes.name()), 1);
    let _o = ByteRing::builder()
        .prefault(true)
        .open(bytes.name())
        .unwrap();
    assert_all_resident("byte ring open", &shm_path(bytes.name()), 2);

    // Creating an MPMC ring writes every slot's sequence word anyway; the
    // opener is where prefault shows.
    let mpmc = Shm::new("mpmc");
    let _c = Mpmc::<u64>::create(mpmc.name(), ITEMS).unwrap();
    let _o = Mpmc::<u64>::builder()
        .prefault(true)
        .open(mpmc.name())
        .unwrap();
    let m = mappings(&shm_path(mpmc.name()));
    let full = m.iter().filter(|v| v.rss == v.len).count();
    assert_eq!(
        (m.len(), full),
        (2, 1),
        "MPMC: only the opener prefaults: {m:?}"
    );
}

#[test]
fn prefault_maps_every_page_of_a_memfd() {
    let _s = serial();
    let before = mappings(MEMFD_PATH).len();
    let q = Spsc::<u64>::builder()
        .capacity(ITEMS)
        .prefault(true)
        .create_memfd()
        .unwrap();
    let peer = Spsc::<u64>::builder()
        .prefault(true)
        .open_fd(q.dup_fd().unwrap())
        .unwrap();
    assert_all_resident("SPSC memfd", MEMFD_PATH, before + 2);
    drop((q, peer));
    let q = Mpmc::<u64>::builder()
        .capacity(ITEMS)
        .prefault(true)
        .create_memfd()
        .unwrap();
    let peer = Mpmc::<u64>::builder()
        .prefault(true)
        .open_fd(q.dup_fd().unwrap())
        .unwrap();
    assert_all_resident("MPMC memfd", MEMFD_PATH, before + 2);
    drop((q, peer));
}

/// Can this process lock `bytes` more bytes?
fn may_lock(bytes: u64) -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let (soft, _) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK).unwrap();
    if soft == libc::RLIM_INFINITY || soft >= bytes + vm_lck() {
        Ok(())
    } else {
        Err(format!(
            "RLIMIT_MEMLOCK is {soft} bytes, too low to lock {bytes} (and not root)"
        ))
    }
}

#[test]
fn lock_memory_locks_the_segment_until_it_is_dropped() {
    const TEST: &str = "lock_memory_locks_the_segment_until_it_is_dropped";
    let _s = serial();
    // The largest segment below is the 4 MiB data area plus header and
    // registry.
    if let Err(why) = may_lock(BYTES as u64 + (1 << 20)) {
        return skipped(TEST, &why);
    }
    let check = |what: &str, make: &dyn Fn() -> Box<dyn std::any::Any>| {
        let base = vm_lck();
        let q = make();
        let held = vm_lck();
        assert!(
            held >= base + BYTES as u64,
            "{what}: VmLck {base} -> {held}, expected +{BYTES}"
        );
        drop(q);
        assert!(
            vm_lck() <= held - BYTES as u64,
            "{what}: still locked after drop"
        );
    };
    let spsc = Shm::new("lock-spsc");
    check("SPSC create", &|| {
        Box::new(
            Spsc::<u64>::builder()
                .capacity(ITEMS)
                .lock_memory(true)
                .create(spsc.name())
                .unwrap(),
        )
    });
    let opened = Shm::new("lock-open");
    let _c = Spsc::<u64>::create(opened.name(), ITEMS).unwrap();
    check("SPSC open", &|| {
        Box::new(
            Spsc::<u64>::builder()
                .lock_memory(true)
                .open(opened.name())
                .unwrap(),
        )
    });
    let mpmc = Shm::new("lock-mpmc");
    check("MPMC create", &|| {
        Box::new(
            // 16-byte slots: half the items for the same 4 MiB.
            Mpmc::<u64>::builder()
                .capacity(ITEMS / 2)
                .lock_memory(true)
                .create(mpmc.name())
                .unwrap(),
        )
    });
    let bytes = Shm::new("lock-bytes");
    check("byte ring create", &|| {
        Box::new(
            ByteRing::builder()
                .capacity(BYTES)
                .lock_memory(true)
                .create(bytes.name())
                .unwrap(),
        )
    });
    check("SPSC memfd", &|| {
        Box::new(
            Spsc::<u64>::builder()
                .capacity(ITEMS)
                .lock_memory(true)
                .create_memfd()
                .unwrap(),
        )
    });
}

/// The child's RLIMIT_MEMLOCK.
const LOW_LIMIT: u64 = 64 << 10;

/// `r` must be `MemoryLock` naming `LOW_LIMIT`, and no segment `name` may
/// be left.
fn expect_lock_refused<T>(
    what: &str,
    r: Result<T, Error>,
    name: Option<&str>,
) -> Result<(), String> {
    match r {
        Err(ref e @ Error::MemoryLock { needed, limit, .. }) => {
            if limit != Some(LOW_LIMIT) || needed < BYTES as u64 {
                return Err(format!("{what}: wrong figures: {e:?}"));
            }
            let msg = e.to_string();
            for want in ["RLIMIT_MEMLOCK is 65536 bytes", "ulimit -l", "CAP_IPC_LOCK"] {
                if !msg.contains(want) {
                    return Err(format!("{what}: message lacks {want:?}: {msg}"));
                }
            }
        }
        Err(e) => return Err(format!("{what}: expected MemoryLock, got {e:?}")),
        Ok(_) => {
            return Err(format!(
                "{what}: locked {BYTES} bytes under a {LOW_LIMIT}-byte limit"
            ))
        }
    }
    if let Some(n) = name {
        if std::fs::symlink_metadata(shm_path(n)).is_ok() {
            return Err(format!(
                "{what}: the half-made segment {n} was left in /dev/shm"
            ));
        }
    }
    Ok(())
}

#[test]
fn lock_memory_over_rlimit_memlock_is_a_typed_error_that_names_the_limit() {
    const TEST: &str = "lock_memory_over_rlimit_memlock_is_a_typed_error_that_names_the_limit";
    if child_role().as_deref() == Some("low-memlock") {
        run_child(|| {
            use nix::sys::resource::{setrlimit, Resource};
            setrlimit(Resource::RLIMIT_MEMLOCK, LOW_LIMIT, LOW_LIMIT)
                .map_err(|e| format!("setrlimit: {e}"))?;
            if nix::unistd::geteuid().is_root() {
                // Root's CAP_IPC_LOCK ignores the limit; a uid change from
                // root drops every capability.
                use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
                setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
                setgid(Gid::from_raw(54321)).map_err(|e| format!("setgid: {e}"))?;
                setuid(Uid::from_raw(54321)).map_err(|e| format!("setuid: {e}"))?;
            }
            let base = child_arg("BASE");
            let n = |k: &str| format!("{base}-{k}");
            expect_lock_refused(
                "SPSC create",
                Spsc::<u64>::builder()
                    .capacity(ITEMS)
                    .lock_memory(true)
                    .create(&n("spsc")),
                Some(&n("spsc")),
            )?;
            expect_lock_refused(
                "MPMC create",
                Mpmc::<u64>::builder()
                    .capacity(ITEMS)
                    .lock_memory(true)
                    .create(&n("mpmc")),
                Some(&n("mpmc")),
            )?;
            expect_lock_refused(
                "byte ring create",
                ByteRing::builder()
                    .capacity(BYTES)
                    .lock_memory(true)
                    .create(&n("bytes")),
                Some(&n("bytes")),
            )?;
            expect_lock_refused(
                "SPSC memfd",
                Spsc::<u64>::builder()
                    .capacity(ITEMS)
                    .lock_memory(true)
                    .create_memfd(),
                None,
            )?;
            // Opening: the segment stays (it is the creator's), the opener
            // gets the error.
            let q = Spsc::<u64>::create(&n("open"), ITEMS).map_err(|e| e.to_string())?;
            let r = Spsc::<u64>::builder().lock_memory(true).open(&n("open"));
            expect_lock_refused("SPSC open", r, None)?;
            drop(q);
            shmqueue::unlink(&n("open")).map_err(|e| e.to_string())?;
            tell_parent("ok");
            Ok(())
        });
    }
    let _s = serial();
    let base = Shm::new("memlock");
    // Guards for whatever the child might leave if it fails half-way.
    let _guards: Vec<Shm> = ["spsc", "mpmc", "bytes", "open"]
        .iter()
        .map(|k| Shm(format!("{}-{k}", base.name())))
        .collect();
    let mut child = spawn(TEST, "low-memlock", &[("BASE", base.name().to_owned())]);
    assert_eq!(child.expect_line(), "ok");
    child.success();
}

/// The huge-page policy that applies to /dev/shm, as the tests see it:
/// true if named segments can have huge pages.
fn dev_shm_has_huge_pages() -> bool {
    let global = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .unwrap_or_default();
    if global.contains("[force]") {
        return true;
    }
    if global.is_empty() || global.contains("[deny]") {
        return false;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some("/dev/shm"))
        .is_some_and(|l| {
            ["huge=always", "huge=within_size", "huge=advise"]
                .iter()
                .any(|h| l.contains(h))
        })
}

#[test]
fn huge_pages_for_a_named_segment_follow_the_dev_shm_mount() {
    let _s = serial();
    let shm = Shm::new("huge-named");
    let r = Spsc::<u64>::builder()
        .capacity(ITEMS)
        .huge_pages(true)
        .create(shm.name());
    if dev_shm_has_huge_pages() {
        let q = r.expect("/dev/shm allows huge pages");
        let mut tx = q.producer().unwrap();
        tx.push(1).unwrap();
    } else {
        match r {
            Err(e @ Error::HugePagesUnavailable { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("huge="), "{msg}");
            }
            other => panic!("expected HugePagesUnavailable, got {other:?}"),
        }
        assert!(
            std::fs::symlink_metadata(shm_path(shm.name())).is_err(),
            "a refused huge-page segment was created anyway"
        );
    }
}

#[test]
fn huge_pages_for_a_memfd_are_hugetlb_pages_or_a_typed_error() {
    let _s = serial();
    let total: u64 = std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let r = Spsc::<u64>::builder()
        .capacity(ITEMS)
        .huge_pages(true)
        .create_memfd();
    if total == 0 {
        match r {
            Err(e @ Error::HugePagesUnavailable { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("/proc/sys/vm/nr_hugepages is 0"), "{msg}");
            }
            other => {
                panic!("no huge pages configured, expected HugePagesUnavailable, got {other:?}")
            }
        }
        return;
    }
    // Huge pages are configured: the memfd may still be refused if they are
    // all taken, but never silently made of normal pages.
    let q = match r {
        Ok(q) => q,
        Err(Error::HugePagesUnavailable { detail }) => {
            return skipped(
                "huge_pages_for_a_memfd_are_hugetlb_pages_or_a_typed_error",
                &format!("huge pages are configured but not free: {detail}"),
            )
        }
        Err(e) => panic!("{e}"),
    };
    let fd = q.dup_fd().unwrap();
    let st = nix::sys::stat::fstat(fd.as_fd()).unwrap();
    let page = st.st_blksize as i64;
    assert!(page >= 2 << 20, "not a hugetlbfs file: block size {page}");
    assert_eq!(st.st_size % page, 0, "size not rounded to huge pages");
    // The rounded size passes an opener's validation.
    let peer = Spsc::<u64>::builder().open_fd(fd).unwrap();
    q.producer().unwrap().push(7).unwrap();
    assert_eq!(peer.consumer().unwrap().pop().unwrap(), 7);
}

#[test]
fn huge_pages_in_a_tmpfs_mounted_with_huge_are_huge() {
    const TEST: &str = "huge_pages_in_a_tmpfs_mounted_with_huge_are_huge";
    if child_role().as_deref() == Some("huge-shm") {
        run_child(|| {
            let global =
                std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
                    .unwrap_or_default();
            if global.contains("[deny]") {
                tell_parent("deny");
                return Ok(());
            }
            for (what, kind) in [("SPSC", 0), ("MPMC", 1), ("byte ring", 2)] {
                let shm = Shm::new("huge");
                let r: Result<Box<dyn std::any::Any>, Error> = match kind {
                    0 => Spsc::<u64>::builder()
                        .capacity(ITEMS)
                        .huge_pages(true)
                        .create(shm.name())
                        .map(|q| Box::new(q) as _),
                    1 => Mpmc::<u64>::builder()
                        .capacity(ITEMS)
                        .huge_pages(true)
                        .create(shm.name())
                        .map(|q| Box::new(q) as _),
                    _ => ByteRing::builder()
                        .capacity(BYTES)
                        .huge_pages(true)
                        .create(shm.name())
                        .map(|q| Box::new(q) as _),
                };
                let q = r.map_err(|e| format!("{what}: {e}"))?;
                let m = mappings(&shm_path(shm.name()));
                if m.len() != 1 || m[0].pmd < 2 << 20 {
                    return Err(format!("{what}: no huge-page mapping: {m:?}"));
                }
                drop(q);
            }
            tell_parent("ok");
            Ok(())
        });
    }
    let _s = serial();
    if let Some(why) = cannot_unshare("mount a tmpfs with huge pages on /dev/shm") {
        return skipped(TEST, &why);
    }
    for huge in ["within_size", "advise"] {
        let exe = std::env::current_exe().unwrap();
        let script = format!(
            "mount -t tmpfs -o size=64m,huge={huge} shmq-test /dev/shm && \
             exec \"$0\" {TEST} --exact --nocapture --test-threads=1"
        );
        let mut child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .arg(&exe)
            .env("SHMQ_TEST_ROLE", "huge-shm")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn unshare");
        let end = Instant::now() + DEADLINE;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() >= end {
                let _ = child.kill();
                panic!("huge={huge}: child did not exit within {DEADLINE:?}");
            }
            // Polling with a deadline; there is no portable wait-with-timeout.
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains("@@deny") {
            return skipped(
                TEST,
                "shmem_enabled is \"deny\": no tmpfs may have huge pages",
            );
        }
        assert!(
            out.status.success() && text.contains("@@ok"),
            "huge={huge}: child failed ({}):\n{text}",
            out.status
        );
    }
}
