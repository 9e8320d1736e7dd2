"""Broadcast rings from Python: every subscriber gets every item, across
languages and processes; lossless backpressure survives a killed
subscriber; overwrite reports the exact number missed."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import shmqueue
from test_interop import DEADLINE, finish, run_peer

N = 1_000_000


def test_python_publisher_rust_subscriber(name, peer):
    b = shmqueue.Broadcast.create(name, np.uint64, capacity=4096)
    rust = run_peer(peer, "bcast-subscribe", name, N)
    try:
        assert rust.stdout.readline().strip() == "ready"
        with b.publisher() as tx:
            for i in range(N):
                tx.publish(i, timeout=DEADLINE)
        finish(rust)  # it checked 0..N in order, then saw the publisher go
    finally:
        rust.kill()
        rust.wait()


def test_rust_publisher_python_subscriber(name, peer):
    b = shmqueue.Broadcast.create(name, np.uint64, capacity=4096)
    rx = b.subscribe("latest")
    local = b.subscribe(0)  # a second subscriber in this process, by sequence
    rust = run_peer(peer, "bcast-publish", name, N)
    try:
        for i in range(N):
            assert rx.recv(timeout=DEADLINE) == i
            assert local.recv(timeout=DEADLINE) == i
        finish(rust)
        with pytest.raises(shmqueue.Disconnected):
            rx.recv(timeout=10)
        with pytest.raises(shmqueue.Disconnected):
            local.recv(timeout=10)
    finally:
        rust.kill()
        rust.wait()


def test_overwrite_lag_is_exact():
    cap = 8
    b = shmqueue.Broadcast.create_memfd(np.uint64, capacity=cap, policy="overwrite")
    rx = b.subscribe("latest")
    with b.publisher() as tx:
        for i in range(100):
            assert tx.try_publish(i), "an overwrite ring is never full"
        with pytest.raises(shmqueue.Lagged) as e:
            rx.recv(timeout=1)
        # Of 100 published from position 0, the last cap - 1 are still valid.
        assert e.value.missed == 100 - (cap - 1)
        assert rx.info()["missed"] == e.value.missed
        assert [rx.recv(timeout=1) for _ in range(cap - 1)] == list(range(100 - (cap - 1), 100))
        assert rx.try_recv() is None
    assert b.stats()["laps"] >= 1


CHILD = textwrap.dedent("""
    import sys, time, numpy as np, shmqueue
    b = shmqueue.Broadcast.open(sys.argv[1], np.uint64)
    s = b.subscribe("latest")
    print("ready", flush=True)
    time.sleep(3600)  # until SIGKILLed; the test's deadline bounds it
""")


def test_killed_subscriber_stops_gating_a_lossless_publisher(name):
    b = shmqueue.Broadcast.create(name, np.uint64, capacity=8)
    child = subprocess.Popen([sys.executable, "-c", CHILD, name], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with b.publisher() as tx:
            k = 0
            while tx.try_publish(k):
                k += 1
                assert k < 100, "the ring never filled: the subscriber does not gate"
            assert b.stats()["subscribers_alive"] == 1
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=DEADLINE)
            t0 = time.monotonic()
            tx.publish(k, timeout=10)
            elapsed = time.monotonic() - t0
        assert elapsed < 1.0, f"the publisher waited {elapsed:.3f} s for a dead subscriber"
    finally:
        child.kill()
        child.wait()


def test_max_lag_evicts_and_counts():
    b = shmqueue.Broadcast.create_memfd(np.uint64, capacity=4, max_lag=0.05)
    rx = b.subscribe("latest")
    with b.publisher() as tx:
        for i in range(20):
            tx.publish(i, timeout=10)  # a stalled subscriber is cut loose
        assert b.stats()["evictions"] >= 1
        with pytest.raises(shmqueue.Evicted) as e:
            rx.recv(timeout=1)
        assert isinstance(e.value, shmqueue.Lagged) and e.value.missed > 0
        rest = []
        while (v := rx.try_recv()) is not None:
            rest.append(v)
        # Nothing lost beyond what it was told: missed + received = published.
        assert e.value.missed + len(rest) == 20
        assert rest == list(range(20 - len(rest), 20))


def test_broadcast_errors(name):
    b = shmqueue.Broadcast.create(name, np.uint64, capacity=16, schema=3)
    with pytest.raises(shmqueue.StartGone):
        b.subscribe(1000)
    with pytest.raises(shmqueue.InvalidArgument):
        b.subscribe("newest")
    with pytest.raises(shmqueue.KindMismatch):
        shmqueue.Queue.open(name, np.uint64, schema=3)
    with pytest.raises(shmqueue.ElemSizeMismatch):
        shmqueue.Broadcast.open(name, np.uint32, schema=3)
    with pytest.raises(shmqueue.SchemaMismatch):
        shmqueue.Broadcast.open(name, np.uint64, schema=4)
    with pytest.raises(shmqueue.InvalidArgument):
        shmqueue.Broadcast.create_memfd(np.uint64, policy="lossy")
    tx = b.publisher()
    with pytest.raises(shmqueue.RoleTaken):
        b.publisher()
    rx = b.subscribe("latest")
    with pytest.raises(shmqueue.Timeout):
        rx.recv(timeout=0.05)
    tx.close()
    with pytest.raises(shmqueue.InvalidHandle):
        tx.publish(1)
