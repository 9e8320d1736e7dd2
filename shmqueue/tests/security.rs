//! Ownership, modes and group sharing against a real second user.
//!
//! The suite runs as root; each cross-user test re-executes this binary as a
//! child that drops to an unprivileged uid (`setgroups`, `setgid`, `setuid`,
//! in that order, then checks it cannot get root back) before touching a
//! segment, and reports the ids it runs with so the parent can assert that
//! the test really crossed users. Not root: the test says "SKIPPED" on
//! stderr (uncaptured) and returns.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;
use nix::unistd::{
    getegid, geteuid, getgid, getgroups, getuid, setgid, setgroups, setuid, Gid, Uid,
};
use shmqueue::{Error, Mpmc, PopError, Spsc, TryPopError};

/// An unprivileged uid no account uses.
const OTHER_UID: u32 = 54321;
/// Its primary group.
const OTHER_GID: u32 = 54321;
/// The group segments are shared with; only the "member" child has it.
const SHARED_GID: u32 = 54322;

fn path(name: &str) -> String {
    format!("/dev/shm{name}")
}

/// True if this process may switch uids; otherwise prints why the calling
/// test is skipped, on stderr and past libtest's capture.
fn can_switch_users(test: &str) -> bool {
    if geteuid().is_root() {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs root to run a child as uid {OTHER_UID} (running as uid {}); \
         this test did NOT check anything",
        geteuid()
    );
    false
}

/// Become uid `OTHER_UID` with primary group `OTHER_GID` and exactly the
/// supplementary `groups`, irrevocably. Returns the ids now in effect, as
/// "uid=U euid=U gid=G egid=G groups=[..]" for the parent to check.
fn drop_privileges(groups: &[u32]) -> Result<String, String> {
    let gids: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&gids).map_err(|e| format!("setgroups: {e}"))?;
    setgid(Gid::from_raw(OTHER_GID)).map_err(|e| format!("setgid: {e}"))?;
    setuid(Uid::from_raw(OTHER_UID)).map_err(|e| format!("setuid: {e}"))?;
    if setuid(Uid::from_raw(0)).is_ok() {
        return Err("could get root back after dropping it".into());
    }
    let mut gs: Vec<u32> = getgroups()
        .map_err(|e| format!("getgroups: {e}"))?
        .iter()
        .map(|g| g.as_raw())
        .collect();
    gs.sort_unstable();
    Ok(format!(
        "uid={} euid={} gid={} egid={} groups={gs:?}",
        getuid(),
        geteuid(),
        getgid(),
        getegid()
    ))
}

/// What `drop_privileges(groups)` reports when it worked.
fn ids_line(groups: &[u32]) -> String {
    format!("uid={OTHER_UID} euid={OTHER_UID} gid={OTHER_GID} egid={OTHER_GID} groups={groups:?}")
}

/// No segment whose name starts with this test's prefix is left in /dev/shm.
fn assert_dev_shm_clean(tag: &str) {
    let prefix = format!("shmq-test-{}-{tag}", std::process::id());
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

fn expect_denied<T: std::fmt::Debug>(r: Result<T, Error>, want: &str) -> Result<String, String> {
    match r {
        Err(e @ Error::PermissionDenied { .. }) => {
            let msg = e.to_string();
            if msg.contains(want) {
                Ok(msg)
            } else {
                Err(format!("PermissionDenied without {want:?}: {msg}"))
            }
        }
        other => Err(format!("expected PermissionDenied ({want}), got {other:?}")),
    }
}

// ---------------------------------------------------------------------------

#[test]
fn a_segment_created_by_another_user_is_refused_as_foreign_unless_opted_in() {
    if let Some(role) = child_role() {
        assert_eq!(role, "create-as-other");
        run_child(|| {
            let ids = drop_privileges(&[])?;
            let q = Spsc::<u64>::create(&child_arg("NAME"), 8).map_err(|e| e.to_string())?;
            let mut tx = q.producer().map_err(|e| e.to_string())?;
            for v in [11, 22, 33] {
                tx.push(v).map_err(|e| e.to_string())?;
            }
            tell_parent(&ids);
            Ok(())
        });
    }
    if !can_switch_users("a_segment_created_by_another_user_is_refused_as_foreign_unless_opted_in")
    {
        return;
    }
    {
        let shm = Shm::new("sec-foreign");
        let mut child = spawn(
            "a_segment_created_by_another_user_is_refused_as_foreign_unless_opted_in",
            "create-as-other",
            &[("NAME", shm.name().to_owned())],
        );
        assert_eq!(child.expect_line(), ids_line(&[]));
        child.success();
        let meta = std::fs::metadata(path(shm.name())).unwrap();
        assert_eq!(
            (meta.uid(), meta.mode() & 0o777),
            (OTHER_UID, 0o600),
            "the child created it as itself, owner-only"
        );

        // Root may open anything, but the owner check refuses it.
        let msg = expect_denied(Spsc::<u64>::open(shm.name()), "54321").unwrap();
        assert!(
            msg.contains("allow_foreign_owner"),
            "says what to do: {msg}"
        );
        expect_denied(Mpmc::<u64>::open(shm.name()), "54321").unwrap();

        // Opting in trusts that user: the items it pushed are there.
        let q = Spsc::<u64>::builder()
            .allow_foreign_owner(true)
            .open(shm.name())
            .unwrap();
        let mut rx = q.consumer().unwrap();
        for v in [11, 22, 33] {
            assert_eq!(rx.pop_timeout(DEADLINE).unwrap(), v);
        }
        assert_eq!(rx.try_pop(), Err(TryPopError::Disconnected));
    }
    assert_dev_shm_clean("sec-foreign");
}

#[test]
fn another_user_cannot_open_a_private_segment_and_gets_a_typed_error() {
    if let Some(role) = child_role() {
        assert_eq!(role, "open-as-other");
        run_child(|| {
            let ids = drop_privileges(&[])?;
            let name = child_arg("NAME");
            let mpmc = child_arg("MPMC");
            // shm_open itself fails with EACCES: no opt-in helps.
            let a = expect_denied(Spsc::<u64>::open(&name), "may not open")?;
            expect_denied(
                Spsc::<u64>::builder()
                    .allow_foreign_owner(true)
                    .allow_shared_write(true)
                    .open(&name),
                "may not open",
            )?;
            expect_denied(Mpmc::<u64>::open(&mpmc), "may not open")?;
            // /dev/shm is sticky: another user's segment cannot be removed.
            expect_denied(shmqueue::unlink(&name), "may not remove")?;
            tell_parent(&ids);
            tell_parent(&a);
            Ok(())
        });
    }
    if !can_switch_users("another_user_cannot_open_a_private_segment_and_gets_a_typed_error") {
        return;
    }
    {
        let shm = Shm::new("sec-private");
        let shm_mpmc = Shm::new("sec-private");
        let q = Spsc::<u64>::create(shm.name(), 8).unwrap();
        let _m = Mpmc::<u64>::create(shm_mpmc.name(), 8).unwrap();
        let mut tx = q.producer().unwrap();
        tx.push(5).unwrap();
        let mut child = spawn(
            "another_user_cannot_open_a_private_segment_and_gets_a_typed_error",
            "open-as-other",
            &[
                ("NAME", shm.name().to_owned()),
                ("MPMC", shm_mpmc.name().to_owned()),
            ],
        );
        assert_eq!(child.expect_line(), ids_line(&[]));
        let msg = child.expect_line();
        assert!(msg.starts_with("permission denied for"), "{msg}");
        child.success();
        // Untouched: still there, still ours, still holding the item.
        let meta = std::fs::metadata(path(shm.name())).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
        let mut rx = Spsc::<u64>::open(shm.name()).unwrap().consumer().unwrap();
        assert_eq!(rx.try_pop(), Ok(5));
    }
    assert_dev_shm_clean("sec-private");
}

const ROUNDS: u64 = 2000;

#[test]
fn a_group_shared_segment_admits_members_and_refuses_others() {
    if let Some(role) = child_role() {
        run_child(|| match role.as_str() {
            "member" => {
                let ids = drop_privileges(&[SHARED_GID])?;
                let open = |name: &str| {
                    Spsc::<u64>::builder()
                        .group(SHARED_GID)
                        .open(name)
                        .map_err(|e| format!("open {name}: {e}"))
                };
                // Without naming the group, the group-writable, root-owned
                // segment is refused (owner first).
                expect_denied(Spsc::<u64>::open(&child_arg("DOWN")), "owned by uid 0")?;
                let mut rx = open(&child_arg("DOWN"))?
                    .consumer()
                    .map_err(|e| e.to_string())?;
                let mut tx = open(&child_arg("UP"))?
                    .producer()
                    .map_err(|e| e.to_string())?;
                // A member may also create a segment for the group.
                let mine = Spsc::<u64>::builder()
                    .group(SHARED_GID)
                    .mode(0o660)
                    .create(&child_arg("MINE"))
                    .map_err(|e| format!("create for the group: {e}"))?;
                mine.producer()
                    .map_err(|e| e.to_string())?
                    .push(77)
                    .map_err(|e| e.to_string())?;
                tell_parent(&ids);
                for i in 0..ROUNDS {
                    let v = rx
                        .pop_timeout(DEADLINE)
                        .map_err(|e| format!("pop {i}: {e}"))?;
                    if v != i {
                        return Err(format!("got {v}, expected {i}"));
                    }
                    tx.push_timeout(v * 3 + 1, DEADLINE)
                        .map_err(|e| format!("push {i}: {e}"))?;
                }
                match rx.pop_timeout(DEADLINE) {
                    Err(PopError::Disconnected) => Ok(()),
                    other => Err(format!("expected Disconnected at the end, got {other:?}")),
                }
            }
            "outsider" => {
                let ids = drop_privileges(&[])?;
                let down = child_arg("DOWN");
                expect_denied(
                    Spsc::<u64>::builder().group(SHARED_GID).open(&down),
                    "may not open",
                )?;
                expect_denied(Spsc::<u64>::open(&down), "may not open")?;
                // Nor can it make a segment look like the group's.
                let fake = child_arg("FAKE");
                expect_denied(
                    Spsc::<u64>::builder()
                        .group(SHARED_GID)
                        .mode(0o660)
                        .create(&fake),
                    "not a member",
                )?;
                if std::fs::metadata(path(&fake)).is_ok() {
                    return Err("a failed create left the segment behind".into());
                }
                tell_parent(&ids);
                Ok(())
            }
            other => Err(format!("unknown role {other}")),
        });
    }
    if !can_switch_users("a_group_shared_segment_admits_members_and_refuses_others") {
        return;
    }
    {
        let down = Shm::new("sec-group");
        let up = Shm::new("sec-group");
        let mine = Shm::new("sec-group");
        let fake = Shm::new("sec-group");
        let shared = |name: &str| {
            Spsc::<u64>::builder()
                .capacity(16)
                .group(SHARED_GID)
                .mode(0o660)
                .create(name)
                .unwrap()
        };
        let q_down = shared(down.name());
        let q_up = shared(up.name());
        for s in [&down, &up] {
            let meta = std::fs::metadata(path(s.name())).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o777),
                (0, SHARED_GID, 0o660)
            );
        }
        let mut tx = q_down.producer().unwrap();
        let mut rx = q_up.consumer().unwrap();
        let args = [
            ("DOWN", down.name().to_owned()),
            ("UP", up.name().to_owned()),
            ("MINE", mine.name().to_owned()),
            ("FAKE", fake.name().to_owned()),
        ];

        let mut outsider = spawn(
            "a_group_shared_segment_admits_members_and_refuses_others",
            "outsider",
            &args,
        );
        assert_eq!(outsider.expect_line(), ids_line(&[]));
        outsider.success();

        let mut member = spawn(
            "a_group_shared_segment_admits_members_and_refuses_others",
            "member",
            &args,
        );
        assert_eq!(member.expect_line(), ids_line(&[SHARED_GID]));
        for i in 0..ROUNDS {
            tx.push_timeout(i, DEADLINE).unwrap();
            assert_eq!(rx.pop_timeout(DEADLINE).unwrap(), i * 3 + 1);
        }
        drop(tx);
        member.success();

        // The member's own group segment: foreign-owned, but in the group
        // we name, so accepted without allow_foreign_owner.
        let meta = std::fs::metadata(path(mine.name())).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (OTHER_UID, SHARED_GID, 0o660)
        );
        expect_denied(Spsc::<u64>::open(mine.name()), "owned by uid 54321").unwrap();
        let theirs = Spsc::<u64>::builder()
            .group(SHARED_GID)
            .open(mine.name())
            .unwrap();
        assert_eq!(
            theirs
                .consumer()
                .unwrap()
                .pop_timeout(Duration::from_secs(1)),
            Ok(77)
        );
    }
    assert_dev_shm_clean("sec-group");
}

// In-process checks of the group option (root or not).

#[test]
fn open_with_a_group_requires_that_group_and_still_refuses_world_write() {
    {
        let me = getegid().as_raw();
        let shm = Shm::new("sec-gmismatch");
        let _q = Spsc::<u64>::builder()
            .group(me)
            .mode(0o660)
            .create(shm.name())
            .unwrap();
        let meta = std::fs::metadata(path(shm.name())).unwrap();
        assert_eq!((meta.gid(), meta.mode() & 0o777), (me, 0o660));
        // Group-writable and not expected: refused, saying what to pass.
        let msg = expect_denied(Spsc::<u64>::open(shm.name()), "group(").unwrap();
        assert!(msg.contains("allow_shared_write"), "{msg}");
        // Expected, but another group: refused, naming both.
        let other = me.wrapping_add(4242);
        let msg = expect_denied(
            Spsc::<u64>::builder().group(other).open(shm.name()),
            "was expected",
        )
        .unwrap();
        assert!(msg.contains(&format!("group {me}")) && msg.contains(&other.to_string()));
        Spsc::<u64>::builder().group(me).open(shm.name()).unwrap();

        // World-writable stays refused even in the right group.
        let world = Shm::new("sec-gmismatch");
        Spsc::<u64>::builder()
            .group(me)
            .mode(0o662)
            .allow_world_access(true)
            .create(world.name())
            .unwrap();
        let msg =
            expect_denied(Spsc::<u64>::builder().group(me).open(world.name()), "0o662").unwrap();
        assert!(msg.contains("every user"), "{msg}");
        Spsc::<u64>::builder()
            .group(me)
            .allow_shared_write(true)
            .open(world.name())
            .unwrap();
    }
    assert_dev_shm_clean("sec-gmismatch");
}

#[test]
fn default_mode_is_0600_and_world_modes_need_forcing_also_with_a_group() {
    {
        let shm = Shm::new("sec-modes");
        let _q = Spsc::<u64>::create(shm.name(), 4).unwrap();
        let meta = std::fs::metadata(path(shm.name())).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        let g = Shm::new("sec-modes");
        let e = Mpmc::<u64>::builder()
            .group(getegid().as_raw())
            .mode(0o664)
            .create(g.name())
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { detail } if detail.contains("allow_world_access")),
            "{e}"
        );
        assert!(std::fs::metadata(path(g.name())).is_err());
    }
    assert_dev_shm_clean("sec-modes");
}
