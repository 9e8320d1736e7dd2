"""Items per second from Python, producer and consumer in two processes
(pinned to CPUs 0 and 1), all contenders in one run:

* shmqueue SPSC, batch calls over numpy arrays (push_many / pop_into);
* shmqueue SPSC, one item per call (push / pop);
* multiprocessing.Queue, one item per put/get, and numpy batches pickled
  through it;
* multiprocessing.shared_memory with a multiprocessing.Lock: a one-batch
  mailbox the two sides take turns on (the usual hand-rolled alternative).

Usage: python3 python/bench/ipc.py [--count N] [--batch B] [--json]
The figures and the command go in docs/BENCHMARKS.md ("Python").
"""

import argparse
import json
import multiprocessing as mp
import os
import time

import numpy as np

import shmqueue


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu % os.cpu_count()})
    except (AttributeError, OSError):
        pass


# Each contender: producer(ctx, n, batch) and consumer(ctx, n, batch) ->
# seconds from the start barrier to the last item received and checked.

def shmq_setup(n, batch):
    name = f"/shmq-pybench-{os.getpid()}"
    q = shmqueue.Queue.create(name, np.uint64, capacity=8192)
    return {"name": name, "q": q}


def shmq_batch_producer(ctx, n, batch, barrier):
    q = shmqueue.Queue.open(ctx["name"], np.uint64)
    with q.producer() as tx:
        chunk = np.arange(batch, dtype=np.uint64)
        barrier.wait()
        for start in range(0, n, batch):
            k = min(batch, n - start)
            tx.push_many(chunk[:k] + np.uint64(start))


def shmq_batch_consumer(ctx, n, batch, barrier):
    q = shmqueue.Queue.open(ctx["name"], np.uint64)
    with q.consumer() as rx:
        out = np.empty(batch, dtype=np.uint64)
        barrier.wait()
        t0 = time.perf_counter()
        got = 0
        last = -1
        while got < n:
            k = rx.pop_into(out)
            if k and int(out[0]) != last + 1:
                raise AssertionError(f"item {got} is {out[0]}")
            last = int(out[k - 1]) if k else last
            got += k
        return time.perf_counter() - t0


def shmq_item_producer(ctx, n, batch, barrier):
    q = shmqueue.Queue.open(ctx["name"], np.uint64)
    with q.producer() as tx:
        barrier.wait()
        for i in range(n):
            tx.push(i)


def shmq_item_consumer(ctx, n, batch, barrier):
    q = shmqueue.Queue.open(ctx["name"], np.uint64)
    with q.consumer() as rx:
        barrier.wait()
        t0 = time.perf_counter()
        for i in range(n):
            if rx.pop() != i:
                raise AssertionError(f"item {i}")
        return time.perf_counter() - t0


def mpq_setup(n, batch):
    return {"q": mp.Queue(maxsize=64)}


def mpq_item_producer(ctx, n, batch, barrier):
    barrier.wait()
    for i in range(n):
        ctx["q"].put(i)


def mpq_item_consumer(ctx, n, batch, barrier):
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(n):
        if ctx["q"].get() != i:
            raise AssertionError(f"item {i}")
    return time.perf_counter() - t0


def mpq_batch_producer(ctx, n, batch, barrier):
    chunk = np.arange(batch, dtype=np.uint64)
    barrier.wait()
    for start in range(0, n, batch):
        k = min(batch, n - start)
        ctx["q"].put(chunk[:k] + np.uint64(start))


def mpq_batch_consumer(ctx, n, batch, barrier):
    barrier.wait()
    t0 = time.perf_counter()
    got = 0
    while got < n:
        a = ctx["q"].get()
        if int(a[0]) != got:
            raise AssertionError(f"item {got} is {a[0]}")
        got += len(a)
    return time.perf_counter() - t0


def shm_setup(n, batch):
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(create=True, size=16 + 8 * batch)
    np.ndarray(2, dtype=np.int64, buffer=shm.buf)[:] = 0
    return {"shm": shm, "lock": mp.Lock()}


def shm_views(ctx, batch):
    buf = ctx["shm"].buf
    head = np.ndarray(2, dtype=np.int64, buffer=buf)  # [full, count]
    data = np.ndarray(batch, dtype=np.uint64, buffer=buf, offset=16)
    return head, data


def shm_producer(ctx, n, batch, barrier):
    head, data = shm_views(ctx, batch)
    lock = ctx["lock"]
    chunk = np.arange(batch, dtype=np.uint64)
    barrier.wait()
    start = 0
    while start < n:
        k = min(batch, n - start)
        with lock:
            if head[0] == 0:
                data[:k] = chunk[:k] + np.uint64(start)
                head[1] = k
                head[0] = 1
                start += k


def shm_consumer(ctx, n, batch, barrier):
    head, data = shm_views(ctx, batch)
    lock = ctx["lock"]
    out = np.empty(batch, dtype=np.uint64)
    barrier.wait()
    t0 = time.perf_counter()
    got = 0
    while got < n:
        with lock:
            if head[0] == 1:
                k = int(head[1])
                out[:k] = data[:k]
                head[0] = 0
            else:
                continue
        if int(out[0]) != got:
            raise AssertionError(f"item {got} is {out[0]}")
        got += k
    return time.perf_counter() - t0


def _consumer_main(fn, ctx, n, batch, barrier, result):
    pin(1)
    result.put(fn(ctx, n, batch, barrier))


def _producer_main(fn, ctx, n, batch, barrier):
    pin(0)
    fn(ctx, n, batch, barrier)


def run(setup, producer, consumer, n, batch):
    ctx = setup(n, batch)
    barrier = mp.Barrier(2)
    result = mp.Queue()
    c = mp.Process(target=_consumer_main, args=(consumer, ctx, n, batch, barrier, result))
    p = mp.Process(target=_producer_main, args=(producer, ctx, n, batch, barrier))
    c.start()
    p.start()
    try:
        secs = result.get(timeout=600)
        p.join(600)
        c.join(600)
        if p.exitcode != 0 or c.exitcode != 0:
            raise RuntimeError(f"exit codes {p.exitcode}, {c.exitcode}")
    finally:
        for proc in (p, c):
            if proc.is_alive():
                proc.kill()
        if "name" in ctx:
            ctx["q"].close()
            shmqueue.unlink(ctx["name"])
        if "shm" in ctx:
            ctx["shm"].close()
            ctx["shm"].unlink()
    return n / secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10_000_000, help="items for the batch cases")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    mp.set_start_method("fork")
    per_item = max(a.count // 50, 1000)  # the one-item-per-call cases are slow
    cases = [
        ("shmqueue SPSC, numpy batches", shmq_setup, shmq_batch_producer, shmq_batch_consumer, a.count),
        ("shmqueue SPSC, one item per call", shmq_setup, shmq_item_producer, shmq_item_consumer, per_item),
        ("multiprocessing.Queue, numpy batches", mpq_setup, mpq_batch_producer, mpq_batch_consumer, a.count),
        ("multiprocessing.Queue, one item per call", mpq_setup, mpq_item_producer, mpq_item_consumer, per_item),
        ("shared_memory + Lock, numpy batches", shm_setup, shm_producer, shm_consumer, a.count),
    ]
    rows = []
    for label, setup, prod, cons, n in cases:
        rate = run(setup, prod, cons, n, a.batch)
        rows.append({"case": label, "items": n, "items_per_s": rate})
    base = rows[0]["items_per_s"]
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'case':44} {'items':>10} {'M items/s':>10} {'shmqueue batch / this':>22}")
    for r in rows:
        print(f"{r['case']:44} {r['items']:>10} {r['items_per_s'] / 1e6:>10.2f} {base / r['items_per_s']:>21.1f}x")


if __name__ == "__main__":
    main()
