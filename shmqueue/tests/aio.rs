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
    let start = Instant::now();
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
    eprintln!(
        "broadcast: {MILLION} items to recv_async and the stream in {:?}",
        start.elapsed()
    );
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

// --------------------------------------------------------------------------
// Byte ring
// --------------------------------------------------------------------------

use shmqueue::ByteRing;

/// A small deterministic generator (xorshift64*), so the producer and the
/// consumer process derive the same message sizes without sharing state.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const MIB: usize = 1 << 20;

/// The size of message `i`: up to 1 MiB, log-uniform (each power of two
/// as likely as the next, so one-record messages and ones of up to 33
/// fragments of a 64 KiB ring are all common), with the edges forced at
/// fixed indices: empty, exactly one record of the ring's fragment size
/// and one more, and 1 MiB itself.
fn message_size(rng: &mut Rng, i: usize) -> usize {
    let r = rng.next();
    match i % 1000 {
        0 => 0,
        1 => (64 << 10) / 2 - 8,
        2 => (64 << 10) / 2 - 7,
        3 => MIB,
        _ => {
            let bits = (r % 21) as u32; // 2^0 .. 2^20
            let base = 1usize << bits;
            (base + (r >> 8) as usize % base).min(MIB)
        }
    }
}

/// Byte `j` of message `i`: every byte depends on both, so a lost,
/// duplicated, reordered or torn fragment fails the check.
fn message_byte(i: usize, j: usize) -> u8 {
    (j.wrapping_mul(0x9e37_79b1) ^ i.wrapping_mul(0x85eb_ca6b) ^ (j >> 8)) as u8
}

fn fill_message(i: usize, len: usize, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend((0..len).map(|j| message_byte(i, j)));
}

fn check_message(i: usize, len: usize, got: &[u8]) {
    assert_eq!(got.len(), len, "message {i}: length");
    if let Some(j) = (0..len).find(|&j| got[j] != message_byte(i, j)) {
        panic!("message {i} of {len} bytes: byte {j} differs");
    }
}

#[test]
fn bytes_async_consumer_gets_ten_thousand_messages_up_to_a_mib_through_64_kib_from_a_sync_producer_process(
) {
    const MESSAGES: usize = 10_000;
    const SEED: u64 = 0x05ee_d0fb_17e5;
    if child_role().is_some() {
        run_child(|| {
            let mut tx = ByteRing::open(&child_arg("NAME"))
                .and_then(|q| q.producer())
                .map_err(|e| e.to_string())?;
            let mut rng = Rng(SEED);
            let mut buf = Vec::with_capacity(MIB);
            for i in 0..MESSAGES {
                let len = message_size(&mut rng, i);
                fill_message(i, len, &mut buf);
                tx.send(&buf).map_err(|e| format!("send {i}: {e}"))?;
            }
            Ok(())
        });
    }
    let shm = Shm::new("aio-bytes");
    let q = ByteRing::create(shm.name(), 64 << 10).unwrap();
    let mut rx = q.consumer().unwrap();
    let mut child = spawn(
        "bytes_async_consumer_gets_ten_thousand_messages_up_to_a_mib_through_64_kib_from_a_sync_producer_process",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    let start = Instant::now();
    let total = runtime().block_on(async {
        let mut rng = Rng(SEED);
        let mut buf = Vec::new();
        let mut total = 0usize;
        for i in 0..MESSAGES {
            let len = message_size(&mut rng, i);
            within("recv_async", rx.recv_async(&mut buf))
                .await
                .unwrap_or_else(|e| panic!("message {i}: {e}"));
            check_message(i, len, &buf);
            total += len;
        }
        child.success();
        assert_eq!(
            within("recv_async at the end", rx.recv_async(&mut buf)).await,
            Err(shmqueue::RecvError::Disconnected)
        );
        total
    });
    eprintln!(
        "{MESSAGES} messages, {:.0} MiB, through a 64 KiB ring to recv_async in {:?}",
        total as f64 / MIB as f64,
        start.elapsed()
    );
}

/// The 8-byte index at the front of every message of the select test, and
/// then a pattern: small messages (one record) and, every seventh, one
/// larger than the ring (fragments), so that dropped futures are caught
/// both between messages and in the middle of reassembling one.
fn select_message(i: u64, buf: &mut Vec<u8>) {
    let len = if i % 7 == 0 {
        10_000
    } else {
        8 + (i % 64) as usize
    };
    buf.clear();
    buf.extend_from_slice(&i.to_le_bytes());
    buf.extend((8..len).map(|j| message_byte(i as usize, j)));
}

#[test]
fn bytes_select_against_a_timer_loses_and_duplicates_nothing() {
    const ROUNDS: u64 = 10_000;
    const MESSAGES: u64 = 6_000;
    let q = ByteRing::builder().capacity(4096).create_memfd().unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let producer = std::thread::spawn(move || {
        use std::io::Write;
        let mut buf = Vec::new();
        for i in 0..MESSAGES {
            select_message(i, &mut buf);
            if buf.len() > 4096 {
                // Written in pieces with a yield between them, so the
                // consumer often finds the ring empty in the middle of the
                // message and its future is dropped holding fragments.
                let mut w = tx.write_message_timeout(DEADLINE);
                for piece in buf.chunks(500) {
                    w.write_all(piece).unwrap();
                    std::thread::yield_now();
                }
                w.finish().unwrap();
            } else {
                tx.send_timeout(&buf, DEADLINE).unwrap();
            }
            if i % 4 == 0 {
                std::thread::yield_now();
            }
        }
        // Attached until the consumer has everything.
        done_rx.recv_timeout(DEADLINE).unwrap();
    });
    let mut want = Vec::new();
    let mut mid_message = 0u64;
    let (expected, timer_won) = current_thread().block_on(async {
        let mut expected = 0u64;
        let mut timer_won = 0u64;
        let mut buf = Vec::new();
        // A deadline in the past (see the SPSC select test).
        let past = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        for round in 0..ROUNDS {
            // Every tenth round 1 ms: time for the producer to send, and
            // for the wait to be woken through the waiter thread.
            let until = if round % 10 == 0 {
                tokio::time::Instant::now() + Duration::from_millis(1)
            } else {
                past
            };
            // A recognisable filler: a dropped future must leave it alone.
            buf.clear();
            buf.extend_from_slice(b"untouched");
            tokio::select! {
                biased;
                r = rx.recv_async(&mut buf) => {
                    r.unwrap_or_else(|e| panic!("round {round}: {e}"));
                    select_message(expected, &mut want);
                    assert!(buf == want, "round {round}: message {expected} differs");
                    expected += 1;
                }
                _ = tokio::time::sleep_until(until) => {
                    assert_eq!(buf, b"untouched", "round {round}: a dropped recv wrote");
                    timer_won += 1;
                    // The consumer's Debug shows its reassembly state: this
                    // dropped future had taken fragments of a message.
                    if format!("{rx:?}").contains("Assembling") {
                        mid_message += 1;
                    }
                }
            }
        }
        while expected < MESSAGES {
            within("drain", rx.recv_async(&mut buf)).await.unwrap();
            select_message(expected, &mut want);
            assert!(buf == want, "drain: message {expected} differs");
            expected += 1;
        }
        (expected, timer_won)
    });
    assert_eq!(expected, MESSAGES);
    let mut buf = Vec::new();
    assert_eq!(
        rx.try_recv(&mut buf),
        Err(shmqueue::RecvError::Empty),
        "a duplicate"
    );
    done_tx.send(()).unwrap();
    producer.join().unwrap();
    assert!(
        timer_won >= ROUNDS - MESSAGES,
        "the timer won {timer_won} rounds"
    );
    eprintln!(
        "bytes select: the timer won {timer_won} of {ROUNDS} rounds, \
         {mid_message} of them holding part of a message"
    );
}

/// Poll `fut` once with a waker that does nothing, then drop it: a
/// cancellation at the first `Pending`.
fn poll_once_and_drop<F: std::future::Future>(fut: F) -> bool {
    struct Nop;
    impl std::task::Wake for Nop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let w = std::task::Waker::from(std::sync::Arc::new(Nop));
    let mut cx = std::task::Context::from_waker(&w);
    let fut = std::pin::pin!(fut);
    fut.poll(&mut cx).is_pending()
}

#[test]
fn a_dropped_send_async_never_publishes_half_a_message() {
    use shmqueue::RecvError;
    let q = ByteRing::builder().capacity(4096).create_memfd().unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    // Fragments of this ring carry 2040 bytes (a 2048-byte record).
    let big = |tag: u8| vec![tag; 10_000];
    let mut buf = Vec::new();

    // 1. A one-record message into a full ring: the dropped future has
    //    published nothing.
    tx.try_send(&[1; 4088]).unwrap();
    assert!(poll_once_and_drop(tx.send_async(b"never")));
    rx.recv(&mut buf).unwrap();
    assert_eq!(buf.len(), 4088);
    assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Empty));

    // 2. A fragmented message dropped with room left for an ABORT record.
    //    With the tail at 24: fragment one at 24..2072, a PAD to the end
    //    (2024 bytes), and then only 24 bytes free at 0: too few for the
    //    next fragment, enough for the 8-byte ABORT the drop publishes.
    tx.try_send(&[2; 16]).unwrap();
    rx.recv(&mut buf).unwrap();
    assert_eq!(buf, [2; 16]);
    assert!(poll_once_and_drop(tx.send_async(&big(3))));
    assert_eq!(
        q.len(),
        2048 + 2024 + 8,
        "one fragment, a PAD and the ABORT"
    );
    assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Truncated));
    assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Empty));
    assert_eq!(buf, [2; 16], "a truncated message never reaches the buffer");

    // 3. A fragmented message dropped with the ring exactly full (two
    //    fragments from offset 0, no room for an ABORT): the next
    //    message's first record says the previous one was abandoned.
    //    First realign the ring to offset 0 (the head is at 8).
    tx.try_send(&[6; 4080]).unwrap();
    rx.recv(&mut buf).unwrap();
    assert!(poll_once_and_drop(tx.send_async(&big(4))));
    assert_eq!(q.len(), 4096, "two fragments should fill the ring");
    current_thread().block_on(async {
        let (sent, got) = tokio::join!(
            async { within("send_async after", tx.send_async(b"after")).await },
            async {
                let mut buf = Vec::new();
                // Draining the fragments frees room for "after"; the
                // consumer then sees it start without CONT.
                let first = within("recv", rx.recv_async(&mut buf)).await;
                let second = within("recv", rx.recv_async(&mut buf)).await;
                (first, second, buf)
            }
        );
        sent.unwrap();
        let (first, second, buf) = got;
        assert_eq!(first, Err(RecvError::Truncated));
        assert_eq!(second, Ok(()));
        assert_eq!(buf, b"after");
    });

    // 4. And a fragmented send_async that is not dropped arrives whole.
    current_thread().block_on(async {
        let msg = big(5);
        let (sent, got) = tokio::join!(
            async { within("send_async", tx.send_async(&msg)).await },
            async {
                let mut buf = Vec::new();
                within("recv", rx.recv_async(&mut buf)).await.map(|_| buf)
            }
        );
        sent.unwrap();
        assert_eq!(got.unwrap(), msg);
    });
}

#[test]
fn a_dropped_recv_async_keeps_the_fragments_it_took() {
    use std::io::Write;
    let q = ByteRing::builder().capacity(4096).create_memfd().unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    let msg: Vec<u8> = (0..10_000).map(|j| message_byte(7, j)).collect();
    let mut buf = b"untouched".to_vec();
    let mut w = tx.write_message();
    // Published a fragment at a time (flush), with a recv_async dropped
    // after each: it takes the fragment out of the ring (so the producer
    // can go on) and keeps it in the consumer, and leaves `buf` alone.
    for (k, piece) in msg.chunks(1500).enumerate() {
        w.write_all(piece).unwrap();
        w.flush().unwrap();
        assert!(poll_once_and_drop(rx.recv_async(&mut buf)), "piece {k}");
        assert_eq!(buf, b"untouched", "piece {k}");
        assert_eq!(q.len(), 0, "piece {k}: the fragment left the ring");
    }
    w.finish().unwrap();
    current_thread().block_on(async {
        within("recv_async", rx.recv_async(&mut buf)).await.unwrap();
    });
    assert!(buf == msg, "the message, whole and once");
    assert_eq!(rx.try_recv(&mut buf), Err(shmqueue::RecvError::Empty));
}

// --------------------------------------------------------------------------
// Byte ring as AsyncRead / AsyncWrite (feature tokio-io)
// --------------------------------------------------------------------------

#[cfg(feature = "tokio-io")]
#[test]
fn bytes_async_reader_streams_every_byte_from_a_sync_producer_process() {
    use tokio::io::AsyncReadExt;
    const MESSAGES: usize = 1_000;
    const SEED: u64 = 0x00a5_7ead;
    if child_role().is_some() {
        run_child(|| {
            let mut tx = ByteRing::open(&child_arg("NAME"))
                .and_then(|q| q.producer())
                .map_err(|e| e.to_string())?;
            let mut rng = Rng(SEED);
            let mut buf = Vec::with_capacity(MIB);
            for i in 0..MESSAGES {
                let len = message_size(&mut rng, i);
                fill_message(i, len, &mut buf);
                tx.send(&buf).map_err(|e| format!("send {i}: {e}"))?;
            }
            Ok(())
        });
    }
    let shm = Shm::new("aio-bytes-read");
    let q = ByteRing::create(shm.name(), 64 << 10).unwrap();
    let mut reader = q.consumer().unwrap().into_async_read();
    let mut child = spawn(
        "bytes_async_reader_streams_every_byte_from_a_sync_producer_process",
        "producer",
        &[("NAME", shm.0.clone())],
    );
    runtime().block_on(async {
        // The messages' bytes back to back, read in odd-sized pieces so
        // reads end inside records and records end inside reads.
        let mut rng = Rng(SEED);
        let mut piece = vec![0u8; 7919];
        for i in 0..MESSAGES {
            let len = message_size(&mut rng, i);
            let mut j = 0;
            while j < len {
                let want = (len - j).min(piece.len());
                let n = within("read", reader.read(&mut piece[..want]))
                    .await
                    .unwrap();
                assert!(n > 0, "message {i}: end of file at byte {j}");
                for (k, &b) in piece[..n].iter().enumerate() {
                    assert_eq!(b, message_byte(i, j + k), "message {i} byte {}", j + k);
                }
                j += n;
            }
        }
        child.success();
        // Everything read and the producer gone: end of file.
        assert_eq!(within("eof", reader.read(&mut piece)).await.unwrap(), 0);
    });
}

#[cfg(feature = "tokio-io")]
#[test]
fn bytes_async_writer_to_async_reader_with_shutdown_as_end_of_file() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let q = ByteRing::builder().capacity(4096).create_memfd().unwrap();
    let mut w = q.producer().unwrap().into_async_write();
    let mut r = q.consumer().unwrap().into_async_read();
    let data: Vec<u8> = (0..3 * MIB).map(|j| message_byte(1, j)).collect();
    current_thread().block_on(async {
        let (wrote, read) = tokio::join!(
            async {
                // Writes of every size from 1 byte to more than the ring.
                let mut at = 0;
                let mut size = 1;
                while at < data.len() {
                    let end = data.len().min(at + size);
                    w.write_all(&data[at..end]).await?;
                    at = end;
                    size = size % 9000 + 97;
                }
                w.flush().await?;
                w.shutdown().await
            },
            async {
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.map(|_| got)
            }
        );
        wrote.unwrap();
        assert!(
            read.unwrap() == data,
            "the bytes, in order, then end of file"
        );
    });
}

#[test]
fn broadcast_messages_async_both_ways_and_a_dropped_publish_is_abandoned() {
    use shmqueue::broadcast::messages::{self, MessageError};
    // Lossless, 8 chunks of 96 bytes: a 2000-byte message is 21 chunks
    // and must stream through.
    let q = messages::builder().capacity(8).create_memfd().unwrap();
    let mut tx = q.message_publisher().unwrap();
    let mut rx = q.message_subscriber(Start::Latest).unwrap();
    let msg: Vec<u8> = (0..2000).map(|j| message_byte(3, j)).collect();

    // Async publisher, sync subscriber; then the reverse.
    let t = std::thread::spawn(move || {
        let a = rx.recv().unwrap();
        let b = rx.recv().unwrap();
        (rx, a, b)
    });
    current_thread().block_on(async {
        within("publish_async", tx.publish_async(&msg))
            .await
            .unwrap();
        within("publish_async", tx.publish_async(b""))
            .await
            .unwrap();
    });
    let (mut rx, a, b) = t.join().unwrap();
    assert!(a == msg);
    assert!(b.is_empty());
    let m = msg.clone();
    let t = std::thread::spawn(move || {
        tx.publish(&m).unwrap();
        tx
    });
    current_thread().block_on(async {
        assert!(within("recv_async", rx.recv_async()).await.unwrap() == msg);
    });
    let mut tx = t.join().unwrap();

    // A publish_async dropped part-way (the ring holds 8 chunks, nobody
    // reads): the subscriber reports Abandoned when the next message
    // starts, then gets that message whole.
    assert!(poll_once_and_drop(tx.publish_async(&msg)));
    let t = std::thread::spawn(move || {
        tx.publish(b"next").unwrap();
        tx
    });
    current_thread().block_on(async {
        match within("abandoned", rx.recv_async()).await {
            Err(MessageError::Abandoned { received, len }) => {
                assert_eq!(len, 2000);
                assert!(received > 0 && received < 2000, "{received}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(within("next", rx.recv_async()).await.unwrap(), b"next");
        drop(t.join().unwrap());
        assert_eq!(
            within("disconnected", rx.recv_async()).await,
            Err(MessageError::Disconnected)
        );
    });
}

// ---------------------------------------------------------------------------
// Producers' Sink (`into_sink`, futures_sink::Sink)
// ---------------------------------------------------------------------------

const SINK_ITEMS: u64 = 100_000;

#[test]
fn spsc_sink_send_all_gives_every_item_in_order_to_a_sync_consumer_process_and_close_ends_it() {
    if child_role().is_some() {
        run_child(|| {
            let mut rx = Spsc::<u64>::open(&child_arg("NAME"))
                .and_then(|q| q.consumer())
                .map_err(|e| e.to_string())?;
            for expected in 0..SINK_ITEMS {
                match rx.pop_timeout(DEADLINE) {
                    Ok(v) if v == expected => {}
                    other => return Err(format!("item {expected}: got {other:?}")),
                }
            }
            // The parent's close detached the producer: nothing more.
            match rx.pop_timeout(DEADLINE) {
                Err(PopError::Disconnected) => Ok(()),
                other => Err(format!("after the last item: {other:?}")),
            }
        });
    }
    use futures::SinkExt;
    let shm = Shm::new("aio-sink-spsc");
    // A small ring, so that the sink often keeps an item and waits.
    let q = Spsc::<u64>::create(shm.name(), 64).unwrap();
    let mut sink = q.producer().unwrap().into_sink();
    let mut child = spawn(
        "spsc_sink_send_all_gives_every_item_in_order_to_a_sync_consumer_process_and_close_ends_it",
        "consumer",
        &[("NAME", shm.0.clone())],
    );
    current_thread().block_on(async {
        let mut items = futures::stream::iter((0..SINK_ITEMS).map(Ok));
        within("send_all", sink.send_all(&mut items)).await.unwrap();
        within("close", sink.close()).await.unwrap();
    });
    child.success();
    // After close: refused, with the item back.
    match current_thread().block_on(within("send after close", sink.send(5))) {
        Err(PushError::Disconnected(5)) => {}
        other => panic!("send after close: {other:?}"),
    }
    assert!(sink.into_inner().0.is_none(), "close dropped the producer");
}

#[test]
fn mpmc_sinks_of_two_tasks_give_every_item_in_each_ones_order_to_a_sync_consumer_process() {
    if child_role().is_some() {
        run_child(|| {
            let mut rx = Mpmc::<u64>::open(&child_arg("NAME"))
                .and_then(|q| q.consumer())
                .map_err(|e| e.to_string())?;
            let mut next = [0u64; 2];
            for n in 0..2 * SINK_ITEMS {
                let v = rx
                    .pop_timeout(DEADLINE)
                    .map_err(|e| format!("pop {n}: {e}"))?;
                let (who, i) = ((v >> 32) as usize, v & 0xFFFF_FFFF);
                if who > 1 || i != next[who] {
                    return Err(format!("pop {n}: got {who}:{i}, expected {next:?}"));
                }
                next[who] += 1;
            }
            // Both sinks closed: every producer has gone.
            match rx.pop_timeout(DEADLINE) {
                Err(PopError::Disconnected) => Ok(()),
                other => Err(format!("after the last item: {other:?}")),
            }
        });
    }
    use futures::SinkExt;
    let shm = Shm::new("aio-sink-mpmc");
    let q = Mpmc::<u64>::create(shm.name(), 64).unwrap();
    let sinks = [q.producer().unwrap(), q.producer().unwrap()].map(|p| p.into_sink());
    let mut child = spawn(
        "mpmc_sinks_of_two_tasks_give_every_item_in_each_ones_order_to_a_sync_consumer_process",
        "consumer",
        &[("NAME", shm.0.clone())],
    );
    runtime().block_on(async {
        let tasks: Vec<_> = sinks
            .into_iter()
            .enumerate()
            .map(|(who, mut sink)| {
                tokio::spawn(async move {
                    let tag = (who as u64) << 32;
                    let mut items = futures::stream::iter((0..SINK_ITEMS).map(|i| Ok(tag | i)));
                    within("send_all", sink.send_all(&mut items)).await.unwrap();
                    within("close", sink.close()).await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    child.success();
}

/// Fill a ring of capacity 4 through `sink`, then cancel a `send(4)` at its
/// first `Pending`: the sink keeps 4 (not in the ring, not lost), and a
/// flush once there is room pushes it, once. Then cancel a `send(9)` the
/// same way and drop the sink: the consumer gets 5..=8 and then
/// `Disconnected`, never 9 or any part of it.
macro_rules! dropped_sink_case {
    ($sink:expr, $rx:expr) => {{
        use futures::SinkExt;
        let mut sink = $sink;
        let mut rx = $rx;
        current_thread().block_on(async {
            for i in 0..4u64 {
                within("feed", sink.feed(i)).await.unwrap();
            }
        });
        assert_eq!(rx.len(), 4);
        assert!(poll_once_and_drop(sink.send(4)), "send(4) into a full ring");
        assert_eq!(rx.len(), 4, "a cancelled send published nothing");
        assert_eq!(rx.try_pop(), Ok(0));
        current_thread()
            .block_on(within("flush", sink.flush()))
            .unwrap();
        for i in 1..=4 {
            assert_eq!(rx.try_pop(), Ok(i), "the kept item once, in order");
        }
        assert!(rx.try_pop().is_err(), "nothing twice");
        current_thread().block_on(async {
            for i in 5..9u64 {
                within("feed", sink.feed(i)).await.unwrap();
            }
        });
        assert!(poll_once_and_drop(sink.send(9)), "send(9) into a full ring");
        drop(sink);
        for i in 5..9 {
            assert_eq!(rx.pop_timeout(DEADLINE), Ok(i));
        }
        assert_eq!(rx.pop_timeout(DEADLINE), Err(PopError::Disconnected));
    }};
}

#[test]
fn a_cancelled_sink_send_loses_nothing_and_a_dropped_sink_publishes_nothing_half() {
    let shm = Shm::new("aio-sink-drop-s");
    let q = Spsc::<u64>::create(shm.name(), 4).unwrap();
    dropped_sink_case!(q.producer().unwrap().into_sink(), q.consumer().unwrap());
    let shm = Shm::new("aio-sink-drop-m");
    let q = Mpmc::<u64>::create(shm.name(), 4).unwrap();
    dropped_sink_case!(q.producer().unwrap().into_sink(), q.consumer().unwrap());
}

#[test]
fn a_sink_error_hands_back_the_item_and_into_inner_the_kept_one() {
    use futures::SinkExt;
    let shm = Shm::new("aio-sink-err");
    let q = Spsc::<u64>::create(shm.name(), 2).unwrap();
    let mut sink = q.producer().unwrap().into_sink();
    let rx = q.consumer().unwrap();
    current_thread().block_on(async {
        within("feed", sink.feed(1)).await.unwrap();
        within("feed", sink.feed(2)).await.unwrap();
    });
    assert!(poll_once_and_drop(sink.send(3)), "send(3) into a full ring");
    let (tx, kept) = sink.into_inner();
    assert_eq!(kept, Some(3), "the accepted item that is not in the ring");
    let mut sink = tx.unwrap().into_sink();
    drop(rx);
    // The ring is full and the consumer has gone: the send that waited for
    // room is told Disconnected, with its item.
    match current_thread().block_on(within("send", sink.send(4))) {
        Err(PushError::Disconnected(4)) => {}
        other => panic!("send to nobody: {other:?}"),
    }
}
