//! A process that forks after attaching endpoints: the child inherits
//! copies of them, and when the child drops its copies (or exits through
//! destructors) that must not change anything the parent's live endpoints
//! own. Before endpoints recorded the pid that attached them, the child's
//! drop marked the parent's roles DETACHED: its consumer saw Disconnected
//! while its producer was still publishing.
//!
//! The forking happens in a re-executed child of the test (never in the
//! harness process itself), and the forked grandchild only runs the drops
//! (atomics and a futex wake: no allocation, no lock) before `_exit`.

mod common;

use std::time::Duration;

use common::{child_role, run_child, spawn, Shm};
use shmqueue::{ByteRing, Mpmc, PopError, RecvError, Spsc, TryPopError};

const ITEMS: u64 = 10_000;

/// `fork()`; -1 is an error. In the child (0) the caller drops its copies
/// of the endpoints and calls [`child_exit`].
fn fork() -> Result<libc::pid_t, String> {
    // SAFETY: the child only drops endpoints (atomic stores, a futex wake:
    // no allocation, no lock another thread of the parent could have held at
    // the fork) and then `_exit`s.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        pid => Ok(pid),
    }
}

fn child_exit() -> ! {
    // SAFETY: ends the forked child at once, running no parent cleanup.
    unsafe { libc::_exit(0) }
}

/// Wait for the forked child and require exit status 0.
fn reap(pid: libc::pid_t) -> Result<(), String> {
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("forked child ended with status {status:#x}"));
    }
    Ok(())
}

fn spsc_after_fork() -> Result<(), String> {
    let shm = Shm::new("fork-spsc");
    let q = Spsc::<u64>::create(shm.name(), 64).map_err(|e| e.to_string())?;
    let mut tx = q.producer().map_err(|e| e.to_string())?;
    let mut rx = q.consumer().map_err(|e| e.to_string())?;
    tx.push(1).map_err(|e| e.to_string())?;
    let pid = fork()?;
    if pid == 0 {
        // The child's copies of the parent's endpoints: drop them.
        drop((tx, rx));
        child_exit();
    }
    reap(pid)?;
    if rx.try_pop() != Ok(1) {
        return Err("the item pushed before the fork is gone".into());
    }
    let t = std::thread::spawn(move || {
        for v in 0..ITEMS {
            tx.push(v).map_err(|e| format!("push {v}: {e}"))?;
        }
        Ok::<_, String>(tx)
    });
    for v in 0..ITEMS {
        match rx.pop_timeout(Duration::from_secs(30)) {
            Ok(got) if got == v => {}
            other => return Err(format!("pop {v}: {other:?} (the child detached a role)")),
        }
    }
    let tx = t.join().map_err(|_| "producer panicked")??;
    if rx.try_pop() != Err(TryPopError::Empty) {
        return Err("empty ring with a live producer did not say Empty".into());
    }
    drop(tx);
    if rx.pop_timeout(Duration::from_secs(5)) != Err(PopError::Disconnected) {
        return Err("the parent's own drop did not disconnect".into());
    }
    Ok(())
}

fn mpmc_after_fork() -> Result<(), String> {
    let shm = Shm::new("fork-mpmc");
    let q = Mpmc::<u64>::create(shm.name(), 64).map_err(|e| e.to_string())?;
    let mut tx = q.producer().map_err(|e| e.to_string())?;
    let mut rx = q.consumer().map_err(|e| e.to_string())?;
    let pid = fork()?;
    if pid == 0 {
        drop((tx, rx));
        child_exit();
    }
    reap(pid)?;
    let stats = q.stats();
    if (stats.producers, stats.consumers) != (1, 1) {
        return Err(format!("after the child's drop: {stats:?}"));
    }
    for v in 0..ITEMS {
        tx.push(v).map_err(|e| format!("push {v}: {e}"))?;
        match rx.try_pop() {
            Ok(got) if got == v => {}
            other => return Err(format!("pop {v}: {other:?}")),
        }
    }
    if rx.try_pop() != Err(TryPopError::Empty) {
        return Err("empty queue with a live producer did not say Empty".into());
    }
    Ok(())
}

fn bytes_after_fork() -> Result<(), String> {
    let shm = Shm::new("fork-bytes");
    let q = ByteRing::create(shm.name(), 4096).map_err(|e| e.to_string())?;
    let mut tx = q.producer().map_err(|e| e.to_string())?;
    let mut rx = q.consumer().map_err(|e| e.to_string())?;
    let pid = fork()?;
    if pid == 0 {
        drop((tx, rx));
        child_exit();
    }
    reap(pid)?;
    let mut buf = Vec::new();
    for v in 0..ITEMS {
        tx.send(&v.to_le_bytes())
            .map_err(|e| format!("send {v}: {e}"))?;
        rx.recv(&mut buf).map_err(|e| format!("recv {v}: {e}"))?;
        if buf != v.to_le_bytes() {
            return Err(format!("message {v}: {buf:?}"));
        }
    }
    match rx.try_recv(&mut buf) {
        Err(RecvError::Empty) => Ok(()),
        other => Err(format!("empty ring with a live producer: {other:?}")),
    }
}

fn run(test: &str, body: fn() -> Result<(), String>) {
    if child_role().is_some() {
        run_child(body);
    }
    spawn(test, "forker", &[]).success();
}

#[test]
fn spsc_roles_survive_a_forked_childs_drop() {
    run("spsc_roles_survive_a_forked_childs_drop", spsc_after_fork);
}

#[test]
fn mpmc_roles_survive_a_forked_childs_drop() {
    run("mpmc_roles_survive_a_forked_childs_drop", mpmc_after_fork);
}

#[test]
fn byte_ring_roles_survive_a_forked_childs_drop() {
    run(
        "byte_ring_roles_survive_a_forked_childs_drop",
        bytes_after_fork,
    );
}
