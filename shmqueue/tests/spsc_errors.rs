//! Every documented error of creating, opening and using an SPSC ring, with
//! real segments in /dev/shm.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::time::Duration;

use common::*;
use shmqueue::{Error, PopError, PushError, Spsc, TryPopError, TryPushError};

/// Byte offsets of the segment layout (pinned in src/header.rs).
mod off {
    pub const MAGIC: u64 = 0;
    pub const VERSION: u64 = 8;
    pub const BUFFER_SIZE: u64 = 40;
    pub const INIT: u64 = 84;
    pub const IN: u64 = 128;
    pub const OUT: u64 = 256;
}

fn path(name: &str) -> String {
    format!("/dev/shm{name}")
}

fn poke(name: &str, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path(name)).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn incompatible_field<T: std::fmt::Debug>(r: Result<T, Error>) -> &'static str {
    match r {
        Err(Error::Incompatible { field, .. }) => field,
        other => panic!("expected Incompatible, got {other:?}"),
    }
}

#[test]
fn every_bad_name_is_rejected_by_create_open_and_unlink() {
    let long = format!("/{}", "x".repeat(255));
    for bad in [
        "",
        "noslash",
        "/",
        "/a/b",
        "/.",
        "/..",
        "/nul\0byte",
        long.as_str(),
    ] {
        for r in [
            Spsc::<u64>::create(bad, 4).map(drop),
            Spsc::<u64>::open(bad).map(drop),
            shmqueue::unlink(bad),
        ] {
            match r {
                Err(e @ Error::InvalidName { .. }) => {
                    assert!(e.to_string().contains("must"), "{e}");
                }
                other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
            }
        }
    }
}

#[test]
fn open_or_unlink_of_a_missing_name_is_not_found() {
    let shm = Shm::new("missing");
    assert!(matches!(
        Spsc::<u64>::open(shm.name()),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        shmqueue::unlink(shm.name()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn create_never_opens_an_existing_segment_and_leaves_it_untouched() {
    let shm = Shm::new("exists");
    let q = Spsc::<u64>::create(shm.name(), 8).unwrap();
    q.producer().unwrap().try_push(5).unwrap();
    assert!(matches!(
        Spsc::<u64>::create(shm.name(), 16),
        Err(Error::AlreadyExists { .. })
    ));
    let again = Spsc::<u64>::open(shm.name()).unwrap();
    assert_eq!(again.capacity(), 8);
    assert_eq!(again.consumer().unwrap().try_pop(), Ok(5));
}

#[test]
fn a_squatted_name_plain_file_or_symlink_is_refused_and_untouched() {
    let shm = Shm::new("squat");
    std::fs::write(path(shm.name()), b"not yours").unwrap();
    assert!(matches!(
        Spsc::<u64>::create(shm.name(), 8),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(std::fs::read(path(shm.name())).unwrap(), b"not yours");
    // A plain file too small for a header is not a queue.
    let mut perms = std::fs::metadata(path(shm.name())).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(path(shm.name()), perms).unwrap();
    assert!(matches!(
        Spsc::<u64>::open(shm.name()),
        Err(Error::Foreign { .. })
    ));

    let link = Shm::new("symlink");
    let target = format!("/tmp/shmq-symlink-target-{}", std::process::id());
    std::fs::write(&target, b"target").unwrap();
    std::os::unix::fs::symlink(&target, path(link.name())).unwrap();
    assert!(matches!(
        Spsc::<u64>::create(link.name(), 8),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        Spsc::<u64>::open(link.name()),
        Err(Error::Foreign { .. })
    ));
    assert_eq!(std::fs::read(&target).unwrap(), b"target");
    std::fs::remove_file(&target).unwrap();
}

#[test]
fn another_element_type_or_schema_is_incompatible_and_names_the_field() {
    let shm = Shm::new("types");
    let _q = Spsc::<u64>::builder()
        .schema(7)
        .capacity(8)
        .create(shm.name())
        .unwrap();
    let open = || Spsc::<u64>::builder().schema(7);
    assert_eq!(
        incompatible_field(Spsc::<u32>::builder().schema(7).open(shm.name())),
        "element size"
    );
    assert_eq!(
        incompatible_field(Spsc::<[u8; 8]>::builder().schema(7).open(shm.name())),
        "element alignment"
    );
    assert_eq!(
        incompatible_field(Spsc::<u64>::open(shm.name())),
        "schema tag"
    );
    let err = Spsc::<u64>::builder()
        .schema(8)
        .open(shm.name())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("schema tag is 7 in the segment but 8 here"),
        "{err}"
    );
    open().open(shm.name()).unwrap();
}

#[test]
fn mode_is_exactly_what_was_asked_whatever_the_umask() {
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o077));
    let shm = Shm::new("mode");
    let r = Spsc::<u64>::builder().mode(0o660).create(shm.name());
    let dflt = Shm::new("mode-default");
    let r2 = Spsc::<u64>::create(dflt.name(), 4);
    umask(old);
    r.unwrap();
    r2.unwrap();
    assert_eq!(
        std::fs::metadata(path(shm.name())).unwrap().mode() & 0o7777,
        0o660
    );
    assert_eq!(
        std::fs::metadata(path(dflt.name())).unwrap().mode() & 0o7777,
        0o600
    );
}

#[test]
fn world_accessible_or_owner_less_modes_are_refused_unless_forced() {
    let shm = Shm::new("world");
    for mode in [0o666, 0o604, 0o400, 0o1600] {
        assert!(
            matches!(
                Spsc::<u64>::builder().mode(mode).create(shm.name()),
                Err(Error::InvalidArgument { .. })
            ),
            "{mode:o}"
        );
    }
    assert!(
        std::fs::metadata(path(shm.name())).is_err(),
        "nothing was created"
    );
    Spsc::<u64>::builder()
        .mode(0o666)
        .allow_world_access(true)
        .allow_shared_write(true)
        .create(shm.name())
        .unwrap();
    assert_eq!(
        std::fs::metadata(path(shm.name())).unwrap().mode() & 0o777,
        0o666
    );
}

#[test]
fn open_refuses_a_group_writable_segment_unless_opted_in() {
    let shm = Shm::new("groupw");
    let _q = Spsc::<u64>::builder()
        .mode(0o660)
        .create(shm.name())
        .unwrap();
    match Spsc::<u64>::open(shm.name()) {
        Err(Error::PermissionDenied { detail, .. }) => {
            assert!(detail.contains("allow_shared_write"))
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    Spsc::<u64>::builder()
        .allow_shared_write(true)
        .open(shm.name())
        .unwrap();
}

#[test]
fn open_refuses_a_segment_owned_by_another_user_unless_opted_in() {
    let shm = Shm::new("owner");
    let _q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    // The suite runs as root, which may give the file away; as anyone else
    // chown fails and there is no second uid to test with.
    if nix::unistd::chown(
        path(shm.name()).as_str(),
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .is_err()
    {
        eprintln!(
            "skipped: cannot chown as uid {} (needs root)",
            nix::unistd::geteuid()
        );
        return;
    }
    match Spsc::<u64>::open(shm.name()) {
        Err(Error::PermissionDenied { detail, .. }) => {
            assert!(detail.contains("65534"), "{detail}")
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    Spsc::<u64>::builder()
        .allow_foreign_owner(true)
        .open(shm.name())
        .unwrap();
}

fn raw_segment(name: &str, len: u64) {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path(name))
        .unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn an_uninitialised_segment_is_not_ready_after_a_bounded_wait() {
    for len in [0, 4096] {
        let shm = Shm::new("notready");
        raw_segment(shm.name(), len);
        let r = Spsc::<u64>::builder()
            .init_timeout(Duration::from_millis(50))
            .open(shm.name());
        assert!(matches!(r, Err(Error::NotReady { .. })), "len {len}: {r:?}");
    }
}

#[test]
fn foreign_bytes_are_refused_as_foreign() {
    let tiny = Shm::new("tiny");
    raw_segment(tiny.name(), 10);
    assert!(matches!(
        Spsc::<u64>::open(tiny.name()),
        Err(Error::Foreign { .. })
    ));

    let shm = Shm::new("garbage-init");
    raw_segment(shm.name(), 4096);
    poke(shm.name(), off::INIT, &0xdead_beefu32.to_ne_bytes());
    assert!(matches!(
        Spsc::<u64>::open(shm.name()),
        Err(Error::Foreign { .. })
    ));

    let magic = Shm::new("magic");
    let _q = Spsc::<u64>::create(magic.name(), 4).unwrap();
    poke(magic.name(), off::MAGIC, b"NOTMINE!");
    assert!(matches!(
        Spsc::<u64>::open(magic.name()),
        Err(Error::Foreign { .. })
    ));
}

#[test]
fn a_newer_layout_version_is_incompatible() {
    let shm = Shm::new("version");
    let _q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    poke(shm.name(), off::VERSION, &99u32.to_ne_bytes());
    assert_eq!(
        incompatible_field(Spsc::<u64>::open(shm.name())),
        "layout version"
    );
}

#[test]
fn inconsistent_geometry_or_file_size_is_corrupt() {
    let shm = Shm::new("geom");
    let _q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    poke(shm.name(), off::BUFFER_SIZE, &1000u64.to_ne_bytes());
    assert!(matches!(
        Spsc::<u64>::open(shm.name()),
        Err(Error::Corrupt(_))
    ));

    let grown = Shm::new("grown");
    let _q2 = Spsc::<u64>::create(grown.name(), 4).unwrap();
    OpenOptions::new()
        .write(true)
        .open(path(grown.name()))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    match Spsc::<u64>::open(grown.name()) {
        Err(Error::Corrupt(c)) => assert_eq!(c.what, "file size"),
        other => panic!("expected Corrupt(file size), got {other:?}"),
    }
}

#[test]
fn corrupt_indices_give_corrupt_errors_not_out_of_bounds_access() {
    let shm = Shm::new("badidx");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    poke(shm.name(), off::IN, &u64::MAX.to_ne_bytes());
    assert!(matches!(rx.try_pop(), Err(TryPopError::Corrupt(c)) if c.what == "in" && c.limit == 5));
    assert!(matches!(
        rx.pop_timeout(Duration::from_millis(10)),
        Err(PopError::Corrupt(_))
    ));
    poke(shm.name(), off::IN, &0u64.to_ne_bytes());
    // The producer never re-reads its own index; fill until it must read `out`.
    poke(shm.name(), off::OUT, &5u64.to_ne_bytes());
    let mut last = Ok(());
    for i in 0..5 {
        last = tx.try_push(i);
        if last.is_err() {
            break;
        }
    }
    match last {
        Err(TryPushError::Corrupt(v, c)) => {
            assert_eq!(c.what, "out");
            assert!(v < 5);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    drop((tx, rx));
    assert!(matches!(q.producer(), Err(Error::Corrupt(_))));
}

#[test]
fn a_gone_consumer_hands_the_value_back_and_a_new_one_resumes() {
    let shm = Shm::new("gonecons");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    let mut tx = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    tx.try_push(1).unwrap();
    drop(rx);
    let e = tx.try_push(2).unwrap_err();
    assert!(e.is_disconnected());
    assert_eq!(e.into_inner(), 2);
    assert!(matches!(tx.push(3), Err(PushError::Disconnected(3))));
    let mut rx = q.consumer().unwrap();
    tx.try_push(2).unwrap();
    assert_eq!(rx.try_pop(), Ok(1));
    assert_eq!(rx.try_pop(), Ok(2));
    assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
}

#[test]
fn a_gone_producer_is_drained_then_disconnected_and_can_come_back() {
    let shm = Shm::new("goneprod");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    let mut rx = q.consumer().unwrap();
    assert_eq!(
        rx.try_pop(),
        Err(TryPopError::Empty),
        "no producer yet is not disconnected"
    );
    let mut tx = q.producer().unwrap();
    tx.try_push(10).unwrap();
    tx.try_push(11).unwrap();
    drop(tx);
    assert_eq!(rx.try_pop(), Ok(10));
    assert_eq!(rx.pop(), Ok(11));
    assert_eq!(rx.try_pop(), Err(TryPopError::Disconnected));
    assert_eq!(rx.pop(), Err(PopError::Disconnected));
    q.producer().unwrap().try_push(12).unwrap();
    assert_eq!(rx.try_pop(), Ok(12));
}

#[test]
fn a_sleeping_pop_is_woken_by_the_producer_dropping() {
    let shm = Shm::new("dropwake");
    let q = Spsc::<u64>::builder().spin(0).create(shm.name()).unwrap();
    let tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    let t = std::thread::spawn(move || rx.pop_timeout(DEADLINE));
    drop(tx);
    assert_eq!(t.join().unwrap(), Err(PopError::Disconnected));
}

#[test]
fn second_endpoints_of_a_role_are_refused_in_process_too() {
    let shm = Shm::new("roles");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    let other = Spsc::<u64>::open(shm.name()).unwrap();
    let tx = q.producer().unwrap();
    let rx = q.consumer().unwrap();
    assert!(matches!(
        other.producer(),
        Err(Error::RoleTaken {
            role: shmqueue::Role::Producer,
            ..
        })
    ));
    assert!(matches!(
        q.consumer(),
        Err(Error::RoleTaken {
            role: shmqueue::Role::Consumer,
            ..
        })
    ));
    drop((tx, rx));
    other.producer().unwrap();
    other.consumer().unwrap();
}

#[test]
fn push_timeout_on_a_full_ring_gives_the_value_back() {
    let shm = Shm::new("full");
    let q = Spsc::<u64>::builder()
        .capacity(2)
        .spin(0)
        .create(shm.name())
        .unwrap();
    let mut tx = q.producer().unwrap();
    let _rx = q.consumer().unwrap();
    tx.push(1).unwrap();
    tx.push(2).unwrap();
    assert_eq!((tx.len(), tx.capacity(), q.is_empty()), (2, 2, false));
    assert!(tx.try_push(3).unwrap_err().is_full());
    let e = tx.push_timeout(3, Duration::from_millis(20)).unwrap_err();
    assert!(e.is_timeout());
    assert_eq!(e.into_inner(), 3);
}

#[test]
fn a_blocked_pop_uses_almost_no_cpu() {
    let shm = Shm::new("idle");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    let _tx = q.producer().unwrap(); // alive, silent
    let mut rx = q.consumer().unwrap();
    let cpu0 = thread_cpu_time();
    assert_eq!(
        rx.pop_timeout(Duration::from_secs(1)),
        Err(PopError::Timeout)
    );
    let used = thread_cpu_time() - cpu0;
    assert!(
        used < Duration::from_millis(50),
        "blocked pop burned {used:?} of CPU in 1 s"
    );
}

#[test]
fn over_aligned_and_zero_sized_element_types_work() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Zeroable, bytemuck::Pod)]
    #[repr(C, align(64))]
    struct Line([u64; 8]);
    let shm = Shm::new("align");
    let q = Spsc::<Line>::create(shm.name(), 3).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    for i in 0..10 {
        tx.try_push(Line([i; 8])).unwrap();
        assert_eq!(rx.try_pop(), Ok(Line([i; 8])));
    }
    let zst = Shm::new("zst");
    let q = Spsc::<()>::create(zst.name(), 2).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    tx.try_push(()).unwrap();
    tx.try_push(()).unwrap();
    assert!(tx.try_push(()).unwrap_err().is_full());
    assert_eq!(rx.try_pop(), Ok(()));
}

#[test]
fn debug_output_names_the_segment() {
    let shm = Shm::new("debug");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    assert!(format!("{q:?}").contains(shm.name()));
    assert!(format!("{:?}", q.producer().unwrap()).contains("Producer"));
    assert!(format!("{:?}", q.consumer().unwrap()).contains("Consumer"));
    assert!(format!("{:?}", Spsc::<u64>::builder()).contains("capacity"));
}

#[test]
fn an_unbounded_init_timeout_is_accepted_not_a_panic() {
    let shm = Shm::new("maxtimeout");
    let _q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    let q = Spsc::<u64>::builder()
        .init_timeout(Duration::MAX)
        .open(shm.name())
        .unwrap();
    assert_eq!(q.capacity(), 4);
}
