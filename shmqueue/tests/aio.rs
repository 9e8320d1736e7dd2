//! Async endpoints (feature `tokio`) in tokio runtimes, against sync peers
//! in other processes (this test binary re-executed, see tests/common) and
//! in this one. Run with `cargo test -p shmqueue --features tokio --test aio`.
#![cfg(feature = "tokio")]

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::time::{Duration, Instant};

use common::*;
#[allow(unused_imports)]
use shmqueue::{Mpmc, PopError, PushError, Spsc};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// `fut`, failing the test if it takes longer than [`DEADLINE`].
async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {DEADLINE:?}"),
    }
}

/// The next item of a stream (futures-core has no `StreamExt`).
async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

#[test]
fn pop_async_is_woken_by_a_sync_push_in_this_process() {
    let shm = Shm::new("aio-local");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    current_thread().block_on(async {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            // Push only once the task has (very likely) gone to sleep, so
            // the wake goes through the waiter thread; any order is correct.
            started_rx.recv_timeout(DEADLINE).unwrap();
            for i in 0..1000 {
                tx.push(i).unwrap();
            }
            tx
        });
        started_tx.send(()).unwrap();
        for i in 0..1000 {
            assert_eq!(within("pop_async", rx.pop_async()).await, Ok(i));
        }
        drop(t.join().unwrap());
        assert_eq!(
            within("pop_async after drop", rx.pop_async()).await,
            Err(PopError::Disconnected)
        );
    });
}

const MILLION: u64 = 1_000_000;

#[test]
fn spsc_async_consumer_gets_a_million_from_a_sync_producer_process() {
    if child_role().is_some() {
        run_child(|| {
            let mut tx = Spsc::<u64>::open(&child_arg("NAME"))
                .and_then(|q| q.producer())
                .map_err(|e| e.to_string())?;
            for i in 0..MILLION {
                tx.push(i).map_err(|e| format!("push {i}: {e}"))?;
            }
            Ok(())
        });
    }
    let shm = Shm::new("aio-spsc-c");
    let q = Spsc::<u64>::create(shm.name(), 1024).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "spsc_async_consumer_gets_a_million_from_a_sync_producer_process",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    runtime().block_on(async {
        for expected in 0..MILLION {
            match within("pop_async", rx.pop_async()).await {
                Ok(v) if v == expected => {}
                other => panic!("item {expected}: got {other:?}"),
            }
        }
        child.success();
        assert_eq!(
            within("pop_async at the end", rx.pop_async()).await,
            Err(PopError::Disconnected)
        );
    });
}

#[test]
fn spsc_async_producer_process_gives_a_million_to_a_sync_consumer() {
    if child_role().is_some() {
        run_child(|| {
            let mut tx = Spsc::<u64>::open(&child_arg("NAME"))
                .and_then(|q| q.producer())
                .map_err(|e| e.to_string())?;
            current_thread().block_on(async {
                for i in 0..MILLION {
                    within("push_async", tx.push_async(i))
                        .await
                        .map_err(|e| format!("push {i}: {e}"))?;
                }
                Ok(())
            })
        });
    }
    let shm = Shm::new("aio-spsc-p");
    let q = Spsc::<u64>::create(shm.name(), 1024).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "spsc_async_producer_process_gives_a_million_to_a_sync_consumer",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    for expected in 0..MILLION {
        match rx.pop_timeout(DEADLINE) {
            Ok(v) if v == expected => {}
            other => panic!("item {expected}: got {other:?}"),
        }
    }
    child.success();
    assert_eq!(rx.pop_timeout(DEADLINE), Err(PopError::Disconnected));
}

#[test]
fn mpmc_stream_gets_a_million_from_a_sync_producer_process_and_back() {
    // The child is a sync consumer of `back`; the parent streams from
    // `fwd` and forwards every item with push_async: both async forms of
    // MPMC, each against a sync peer in another process.
    if child_role().is_some() {
        run_child(|| {
            let fwd = Mpmc::<u64>::open(&child_arg("FWD")).map_err(|e| e.to_string())?;
            let back = Mpmc::<u64>::open(&child_arg("BACK")).map_err(|e| e.to_string())?;
            let mut tx = fwd.producer().map_err(|e| e.to_string())?;
            let mut rx = back.consumer().map_err(|e| e.to_string())?;
            let t = std::thread::spawn(move || {
                for i in 0..MILLION {
                    tx.push(i).map_err(|e| format!("push {i}: {e}"))?;
                }
                Ok::<_, String>(())
            });
            for expected in 0..MILLION {
                match rx.pop_timeout(DEADLINE) {
                    Ok(v) if v == expected => {}
                    other => return Err(format!("back {expected}: got {other:?}")),
                }
            }
            t.join()
                .map_err(|_| "producer thread panicked".to_string())?
        });
    }
    let (fwd, back) = (Shm::new("aio-mpmc-f"), Shm::new("aio-mpmc-b"));
    let qf = Mpmc::<u64>::create(fwd.name(), 256).unwrap();
    let qb = Mpmc::<u64>::create(back.name(), 256).unwrap();
    let mut stream = qf.consumer().unwrap().into_stream();
    let mut tx = qb.producer().unwrap();
    let mut child = spawn(
        "mpmc_stream_gets_a_million_from_a_sync_producer_process_and_back",
        "peer",
        &[("FWD", fwd.0.clone()), ("BACK", back.0.clone())],
    );
    runtime().block_on(async {
        for expected in 0..MILLION {
            match within("stream", next(&mut stream)).await {
                Some(Ok(v)) if v == expected => {}
                other => panic!("item {expected}: got {other:?}"),
            }
            within("push_async", tx.push_async(expected)).await.unwrap();
        }
        child.success();
        // The producer has gone and everything was taken: the stream ends.
        assert!(within("stream end", next(&mut stream)).await.is_none());
        assert!(matches!(
            within("push_async to nobody", tx.push_async(0)).await,
            Err(PushError::Disconnected(0))
        ));
    });
}

#[test]
fn a_thousand_tasks_each_awaiting_its_own_ring_are_all_woken() {
    const TASKS: usize = 1000;
    if child_role().is_some() {
        // In a process of its own, so the census counts only these waits.
        run_child(|| {
            let rings: Vec<Spsc<u64>> = (0..TASKS)
                .map(|_| Spsc::<u64>::builder().capacity(1).create_memfd())
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let mut txs = Vec::new();
            let rt = runtime();
            let mut tasks = Vec::new();
            for (i, q) in rings.iter().enumerate() {
                txs.push(q.producer().map_err(|e| e.to_string())?);
                let mut rx = q.consumer().map_err(|e| e.to_string())?;
                tasks.push(rt.spawn(async move { (i, rx.pop_async().await) }));
            }
            // Every task has returned Pending and registered its wait.
            let end = Instant::now() + DEADLINE;
            while shmqueue::aio::census().1 < TASKS {
                if Instant::now() > end {
                    return Err(format!("registered: {:?}", shmqueue::aio::census()));
                }
                std::thread::yield_now();
            }
            let (threads, waits) = shmqueue::aio::census();
            // One thread per 127 waits (futex_waitv's 128 words, one the
            // doorbell), never one per endpoint.
            if threads != TASKS.div_ceil(127) || waits != TASKS {
                return Err(format!("{threads} waiter threads for {waits} waits"));
            }
            for (i, tx) in txs.iter_mut().enumerate() {
                tx.push(i as u64).map_err(|e| e.to_string())?;
            }
            rt.block_on(async {
                for t in tasks {
                    let (i, got) = within("task", t).await.map_err(|e| e.to_string())?;
                    if got != Ok(i as u64) {
                        return Err(format!("task {i}: {got:?}"));
                    }
                }
                Ok::<_, String>(())
            })?;
            // Woken by their words, so withdrawn: nothing stays listed.
            let end = Instant::now() + DEADLINE;
            while shmqueue::aio::census().1 != 0 {
                if Instant::now() > end {
                    return Err(format!("left listed: {:?}", shmqueue::aio::census()));
                }
                std::thread::yield_now();
            }
            tell_parent(&format!("ok {threads}"));
            Ok(())
        });
    }
    let mut child = spawn(
        "a_thousand_tasks_each_awaiting_its_own_ring_are_all_woken",
        "tasks",
        &[],
    );
    assert_eq!(child.expect_line(), "ok 8");
    child.success();
}

#[test]
fn select_against_a_timer_loses_and_duplicates_nothing() {
    const ROUNDS: u64 = 100_000;
    // Fewer items than rounds: the ring is often empty, so many rounds
    // drop a pop that had armed, registered and returned Pending.
    const ITEMS: u64 = 60_000;
    let q = Spsc::<u64>::builder().capacity(8).create_memfd().unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let producer = std::thread::spawn(move || {
        for i in 0..ITEMS {
            tx.push_timeout(i, DEADLINE).unwrap();
            if i % 4 == 0 {
                std::thread::yield_now();
            }
        }
        // Attached until the consumer has everything: no Disconnected
        // may end a round early.
        done_rx.recv_timeout(DEADLINE).unwrap();
    });
    let (expected, timer_won) = current_thread().block_on(async {
        let mut expected = 0u64;
        let mut timer_won = 0u64;
        // A deadline well in the past: tokio rounds a deadline of "now" up
        // to its next 1 ms tick, and 10^5 of those would take 100 s.
        let past = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        for round in 0..ROUNDS {
            // Mostly an expired timer, so a pop that found the ring empty
            // is dropped at once; now and then 1 ms, long enough for the
            // pop to be woken through the waiter thread.
            let until = if round % 1000 == 0 {
                tokio::time::Instant::now() + Duration::from_millis(1)
            } else {
                past
            };
            tokio::select! {
                biased;
                r = rx.pop_async() => {
                    assert_eq!(r, Ok(expected), "round {round}");
                    expected += 1;
                }
                _ = tokio::time::sleep_until(until) => timer_won += 1,
            }
        }
        // The rest, in order: nothing was taken by a dropped future.
        while expected < ITEMS {
            assert_eq!(within("drain", rx.pop_async()).await, Ok(expected));
            expected += 1;
        }
        (expected, timer_won)
    });
    assert_eq!(expected, ITEMS);
    assert_eq!(
        rx.try_pop(),
        Err(shmqueue::TryPopError::Empty),
        "a duplicate"
    );
    done_tx.send(()).unwrap();
    producer.join().unwrap();
    assert!(
        timer_won >= ROUNDS - ITEMS,
        "the timer won {timer_won} rounds"
    );
    eprintln!("select: the timer won {timer_won} of {ROUNDS} rounds");
}

/// CPU time (user + system) of this whole process so far.
fn process_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
    };
    t(u.user_time()) + t(u.system_time())
}

#[test]
fn a_hundred_idle_awaiting_endpoints_use_under_one_percent_of_a_core() {
    const ENDPOINTS: usize = 100;
    const WINDOW: Duration = Duration::from_secs(2);
    if child_role().is_some() {
        run_child(|| {
            let rings: Vec<Spsc<u64>> = (0..ENDPOINTS)
                .map(|_| Spsc::<u64>::builder().capacity(4).create_memfd())
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let rt = runtime();
            let mut txs = Vec::new();
            let mut tasks = Vec::new();
            for q in &rings {
                txs.push(q.producer().map_err(|e| e.to_string())?);
                let mut rx = q.consumer().map_err(|e| e.to_string())?;
                tasks.push(rt.spawn(async move { rx.pop_async().await }));
            }
            let end = Instant::now() + DEADLINE;
            while shmqueue::aio::census().1 < ENDPOINTS {
                if Instant::now() > end {
                    return Err(format!("registered: {:?}", shmqueue::aio::census()));
                }
                std::thread::yield_now();
            }
            // The measurement window: the process should sleep through it,
            // but for the liveness ticks (every 100 ms each wait re-checks
            // its peer). A sleep here is the thing measured, not a wait for
            // anything.
            let before = process_cpu();
            std::thread::sleep(WINDOW);
            let used = process_cpu() - before;
            // And they are still awake to a push.
            for tx in &mut txs {
                tx.push(1).map_err(|e| e.to_string())?;
            }
            rt.block_on(async {
                for t in tasks {
                    let got = within("task", t).await.map_err(|e| e.to_string())?;
                    if got != Ok(1) {
                        return Err(format!("{got:?}"));
                    }
                }
                Ok::<_, String>(())
            })?;
            tell_parent(&format!("{}", used.as_micros()));
            Ok(())
        });
    }
    let mut child = spawn(
        "a_hundred_idle_awaiting_endpoints_use_under_one_percent_of_a_core",
        "idle",
        &[],
    );
    let used = Duration::from_micros(child.expect_line().parse().unwrap());
    child.success();
    let share = used.as_secs_f64() / WINDOW.as_secs_f64();
    eprintln!(
        "{ENDPOINTS} awaiting endpoints: {used:?} of CPU in {WINDOW:?} ({:.3}% of a core)",
        share * 100.0
    );
    // The bound. Polling (even every 10 ms per endpoint) would be
    // 10 000 wake-ups a second and far above it.
    assert!(share < 0.01, "{:.3}% of a core", share * 100.0);
}

#[test]
fn a_sigkilled_producer_surfaces_as_disconnected_in_the_awaiting_task_within_a_second() {
    if child_role().is_some() {
        run_child(|| {
            let mut tx = Spsc::<u64>::open(&child_arg("NAME"))
                .and_then(|q| q.producer())
                .map_err(|e| e.to_string())?;
            for i in 0..3 {
                tx.push(i).map_err(|e| e.to_string())?;
            }
            tell_parent("pushed");
            // Stay attached until killed (the parent's deadline bounds it).
            loop {
                std::thread::park();
            }
        });
    }
    let shm = Shm::new("aio-kill");
    let q = Spsc::<u64>::create(shm.name(), 16).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "a_sigkilled_producer_surfaces_as_disconnected_in_the_awaiting_task_within_a_second",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    assert_eq!(child.expect_line(), "pushed");
    let rt = runtime();
    let task = rt.spawn(async move {
        for i in 0..3 {
            assert_eq!(rx.pop_async().await, Ok(i));
        }
        let r = rx.pop_async().await;
        (r, Instant::now())
    });
    // Kill it while the task awaits (or is about to: either way the kill
    // must reach it).
    let killed = Instant::now();
    child.sigkill();
    let (r, at) = rt.block_on(async { within("awaiting task", task).await.unwrap() });
    assert_eq!(r, Err(PopError::Disconnected));
    let took = at.saturating_duration_since(killed);
    eprintln!("SIGKILLed producer seen by the awaiting task after {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// Wake-up latency, not a pass/fail test: round trips between a sync
/// thread and a peer that must be woken for every item (spin 0, so every
/// wait sleeps), with the peer (a) a sync thread on the futex, (b) a tokio
/// task woken through the waiter thread, (c) tokio's own mpsc for
/// comparison. Run: `cargo test -p shmqueue --features tokio --release
/// --test aio -- --ignored --nocapture wake_up_latency`.
#[test]
#[ignore = "a latency measurement, not a pass/fail test: run it with --ignored (see above)"]
fn wake_up_latency() {
    const ROUNDS: u64 = 20_000;
    let pair = || {
        let a = Spsc::<u64>::builder()
            .capacity(4)
            .spin(0)
            .create_memfd()
            .unwrap();
        let b = Spsc::<u64>::builder()
            .capacity(4)
            .spin(0)
            .create_memfd()
            .unwrap();
        let ends = (
            a.producer().unwrap(),
            a.consumer().unwrap(),
            b.producer().unwrap(),
            b.consumer().unwrap(),
        );
        (a, b, ends)
    };
    let report = |what: &str, took: Duration| {
        eprintln!(
            "{what}: {:.1} us per round trip (two wake-ups)",
            took.as_secs_f64() * 1e6 / ROUNDS as f64
        );
    };

    // (a) sync thread <-> sync thread.
    let (_a, _b, (mut tx1, mut rx1, mut tx2, mut rx2)) = pair();
    let echo = std::thread::spawn(move || {
        for _ in 0..ROUNDS {
            let v = rx1.pop_timeout(DEADLINE).unwrap();
            tx2.push(v).unwrap();
        }
    });
    let t = Instant::now();
    for i in 0..ROUNDS {
        tx1.push(i).unwrap();
        assert_eq!(rx2.pop_timeout(DEADLINE), Ok(i));
    }
    report("sync futex <-> sync futex", t.elapsed());
    echo.join().unwrap();

    // (b) sync thread <-> tokio task (current-thread runtime on its thread).
    let (_a, _b, (mut tx1, mut rx1, mut tx2, mut rx2)) = pair();
    let echo = std::thread::spawn(move || {
        current_thread().block_on(async {
            for _ in 0..ROUNDS {
                let v = rx1.pop_async().await.unwrap();
                tx2.push_async(v).await.unwrap();
            }
        })
    });
    let t = Instant::now();
    for i in 0..ROUNDS {
        tx1.push(i).unwrap();
        assert_eq!(rx2.pop_timeout(DEADLINE), Ok(i));
    }
    report("sync futex <-> pop_async task", t.elapsed());
    echo.join().unwrap();

    // (c) the same shape over tokio's mpsc.
    let (tx1, mut rx1) = tokio::sync::mpsc::channel::<u64>(4);
    let (tx2, mut rx2) = tokio::sync::mpsc::channel::<u64>(4);
    let echo = std::thread::spawn(move || {
        current_thread().block_on(async {
            for _ in 0..ROUNDS {
                let v = rx1.recv().await.unwrap();
                tx2.send(v).await.unwrap();
            }
        })
    });
    let t = Instant::now();
    for i in 0..ROUNDS {
        tx1.blocking_send(i).unwrap();
        assert_eq!(rx2.blocking_recv(), Some(i));
    }
    report("blocking <-> tokio mpsc task", t.elapsed());
    echo.join().unwrap();
}

/// One wait that really sleeps in this process's waiter thread: a task
/// awaits an empty ring, and a thread pushes once the census lists it.
fn one_woken_wait() -> Result<(), String> {
    let q = Spsc::<u64>::builder()
        .capacity(4)
        .create_memfd()
        .map_err(|e| e.to_string())?;
    let (mut tx, mut rx) = (
        q.producer().map_err(|e| e.to_string())?,
        q.consumer().map_err(|e| e.to_string())?,
    );
    let pusher = std::thread::spawn(move || {
        let end = Instant::now() + DEADLINE;
        while shmqueue::aio::census().1 < 1 {
            if Instant::now() > end {
                return Err("the task never registered".to_string());
            }
            std::thread::yield_now();
        }
        tx.push(7).map_err(|e| e.to_string())
    });
    // A timer that fires re-polls the future, which then finds the item:
    // so "never woken" shows as taking the whole timer, not as a timeout.
    let limit = Duration::from_secs(5);
    let start = Instant::now();
    let got =
        current_thread().block_on(async { tokio::time::timeout(limit, rx.pop_async()).await });
    let took = start.elapsed();
    pusher.join().map_err(|_| "pusher panicked".to_string())??;
    match got {
        Ok(Ok(7)) if took < limit => Ok(()),
        Ok(Ok(7)) => Err(format!("pop_async woken only by the {limit:?} timer")),
        Ok(r) => Err(format!("pop_async gave {r:?}")),
        Err(_) => Err("pop_async was never woken".to_string()),
    }
}

#[test]
fn a_child_forked_after_async_use_gets_waiter_threads_of_its_own() {
    if child_role().is_some() {
        // In a process of its own: start a waiter thread here, then fork.
        // The forked child has this process's shard list but not its
        // threads; its own async wait must still be woken.
        run_child(|| {
            one_woken_wait()?;
            // SAFETY: the child only runs `one_woken_wait` (its own new
            // runtime, ring and threads) and `_exit`s; the parent waits.
            match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
                nix::unistd::ForkResult::Child => {
                    let code = match one_woken_wait() {
                        Ok(()) => 0,
                        Err(e) => {
                            eprintln!("forked child: {e}");
                            1
                        }
                    };
                    // SAFETY: `_exit` ends the process without running the
                    // parent's atexit handlers or destructors twice.
                    unsafe { libc::_exit(code) }
                }
                nix::unistd::ForkResult::Parent { child } => {
                    let st = nix::sys::wait::waitpid(child, None).map_err(|e| e.to_string())?;
                    match st {
                        nix::sys::wait::WaitStatus::Exited(_, 0) => {}
                        s => return Err(format!("forked child: {s:?}")),
                    }
                }
            }
            tell_parent("ok");
            Ok(())
        });
    }
    let mut child = spawn(
        "a_child_forked_after_async_use_gets_waiter_threads_of_its_own",
        "fork",
        &[],
    );
    assert_eq!(child.expect_line(), "ok");
    child.success();
}

// --------------------------------------------------------------------------
// Broadcast
// --------------------------------------------------------------------------

use shmqueue::broadcast::{self, Broadcast, Start};

#[test]
fn broadcast_async_subscriber_gets_a_million_from_a_sync_publisher_process_beside_a_sync_one() {
    const TEST: &str =
        "broadcast_async_subscriber_gets_a_million_from_a_sync_publisher_process_beside_a_sync_one";
    match child_role().as_deref() {
        Some("publisher") => run_child(|| {
            let mut tx = Broadcast::<u64>::open(&child_arg("NAME"))
                .and_then(|q| q.publisher())
                .map_err(|e| e.to_string())?;
            for i in 0..MILLION {
                tx.publish(i).map_err(|e| format!("publish {i}: {e}"))?;
            }
            Ok(())
        }),
        Some("subscriber") => run_child(|| {
            let mut rx = Broadcast::<u64>::open(&child_arg("NAME"))
                .and_then(|q| q.subscribe(Start::Oldest))
                .map_err(|e| e.to_string())?;
            tell_parent("subscribed");
            for expected in 0..MILLION {
                match rx.recv_timeout(DEADLINE) {
                    Ok(v) if v == expected => {}
                    other => return Err(format!("item {expected}: got {other:?}")),
                }
            }
            match rx.recv_timeout(DEADLINE) {
                Err(broadcast::RecvError::Disconnected) => Ok(()),
                other => Err(format!("after the last: {other:?}")),
            }
        }),
        _ => {}
    }
    let shm = Shm::new("aio-bcast");
    // Lossless: both subscribers gate the publisher, so the async one's
    // wake-ups pace it as much as the sync one's do.
    let q = Broadcast::<u64>::builder()
        .capacity(1024)
        .lossless()
        .create(shm.name())
        .unwrap();
    let mut rx = q.subscribe(Start::Oldest).unwrap();
    let mut sub = spawn(TEST, "subscriber", &[("NAME", shm.0.clone())]);
    assert_eq!(sub.expect_line(), "subscribed");
    let mut publisher = spawn(TEST, "publisher", &[("NAME", shm.0.clone())]);
    runtime().block_on(async {
        // Half through recv_async, the rest through the stream.
        for expected in 0..MILLION / 2 {
            match within("recv_async", rx.recv_async()).await {
                Ok(v) if v == expected => {}
                other => panic!("item {expected}: got {other:?}"),
            }
        }
        let mut stream = rx.into_stream();
        for expected in MILLION / 2..MILLION {
            match within("stream", next(&mut stream)).await {
                Some(Ok(v)) if v == expected => {}
                other => panic!("item {expected}: got {other:?}"),
            }
        }
        publisher.success();
        // Everything read and the publisher gone: the stream ends, and a
        // recv_async says Disconnected.
        assert!(within("stream end", next(&mut stream)).await.is_none());
        let mut rx = stream.into_inner();
        assert_eq!(
            within("recv_async at the end", rx.recv_async()).await,
            Err(broadcast::RecvError::Disconnected)
        );
    });
    sub.success();
}

#[test]
fn broadcast_recv_async_reports_lagged_and_evicted_as_recv_does() {
    let q = Broadcast::<u64>::builder()
        .capacity(4)
        .overwrite()
        .create_memfd()
        .unwrap();
    let mut tx = q.publisher().unwrap();
    let mut rx = q.subscribe(Start::Latest).unwrap();
    let mut sync_rx = q.subscribe(Start::Latest).unwrap();
    for i in 0..10 {
        tx.publish(i).unwrap();
    }
    current_thread().block_on(async {
        let got = within("lagged", rx.recv_async()).await;
        assert_eq!(got, sync_rx.recv());
        assert!(matches!(
            got,
            Err(broadcast::RecvError::Lagged { missed: 7 })
        ));
        for _ in 0..3 {
            assert_eq!(
                within("after the lap", rx.recv_async()).await,
                sync_rx.recv()
            );
        }
        // The stream yields the report and goes on.
        for i in 10..20 {
            tx.publish(i).unwrap();
        }
        let mut s = rx.into_stream();
        assert!(matches!(
            within("stream lag", next(&mut s)).await,
            Some(Err(broadcast::RecvError::Lagged { missed: 7 }))
        ));
        assert_eq!(within("stream", next(&mut s)).await, Some(Ok(17)));
    });

    // Lossless with a max_lag: a subscriber that holds the ring full past
    // it is evicted, and recv_async says so with the count.
    let q = Broadcast::<u64>::builder()
        .capacity(4)
        .lossless()
        .max_lag(Duration::from_millis(1))
        .create_memfd()
        .unwrap();
    let mut tx = q.publisher().unwrap();
    let mut rx = q.subscribe(Start::Latest).unwrap();
    current_thread().block_on(async {
        for i in 0..8 {
            // The fifth waits until the subscriber is evicted (after 1 ms
            // of a full ring, noticed at the liveness tick at the latest).
            within("publish_async", tx.publish_async(i)).await.unwrap();
        }
        match within("evicted", rx.recv_async()).await {
            Err(broadcast::RecvError::Evicted { missed }) => assert!(missed > 0),
            other => panic!("{other:?}"),
        }
        let next = within("after eviction", rx.recv_async()).await.unwrap();
        assert!(next < 8);
    });
}

#[test]
fn a_sigkilled_subscriber_stops_gating_an_awaiting_lossless_publisher_within_a_second() {
    const TEST: &str =
        "a_sigkilled_subscriber_stops_gating_an_awaiting_lossless_publisher_within_a_second";
    const CAP: u64 = 16;
    if child_role().is_some() {
        run_child(|| {
            let _rx = Broadcast::<u64>::open(&child_arg("NAME"))
                .and_then(|q| q.subscribe(Start::Latest))
                .map_err(|e| e.to_string())?;
            tell_parent("subscribed");
            // Gate the publisher, reading nothing, until killed (the
            // parent's deadline bounds it).
            loop {
                std::thread::park();
            }
        });
    }
    let shm = Shm::new("aio-bcast-kill");
    let q = Broadcast::<u64>::builder()
        .capacity(CAP as usize)
        .lossless()
        .create(shm.name())
        .unwrap();
    let mut tx = q.publisher().unwrap();
    let mut child = spawn(TEST, "subscriber", &[("NAME", shm.0.clone())]);
    assert_eq!(child.expect_line(), "subscribed");
    for i in 0..CAP {
        tx.try_publish(i).unwrap();
    }
    assert!(tx.try_publish(CAP).is_err(), "the ring should be full");
    let rt = runtime();
    let before = shmqueue::aio::census().1;
    let task = rt.spawn(async move {
        let r = tx.publish_async(CAP).await;
        (r, Instant::now(), tx)
    });
    // The publish has found the ring full and registered its wait.
    let end = Instant::now() + DEADLINE;
    while shmqueue::aio::census().1 <= before {
        assert!(Instant::now() < end, "publish_async never registered");
        std::thread::yield_now();
    }
    assert!(!task.is_finished(), "published into a full ring");
    let killed = Instant::now();
    child.sigkill();
    let (r, at, tx) = rt.block_on(async { within("awaiting publisher", task).await.unwrap() });
    assert!(r.is_ok(), "{r:?}");
    let took = at.saturating_duration_since(killed);
    eprintln!("SIGKILLed subscriber stopped gating the awaiting publisher after {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(tx.position(), CAP + 1);
    assert!(q.stats().subscribers.is_empty(), "{:?}", q.stats());
}
