"""A Python process and a Rust process on one ring, each direction: 10^6
items in order, byte messages larger than the ring, and a SIGKILLed peer of
either language noticed by the other within a second."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import shmqueue

N = 1_000_000
BATCH = 4096
# Bound on every wait for a child: a hang fails the test instead of CI.
DEADLINE = 120


def run_peer(peer, *args):
    return subprocess.Popen([peer, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=DEADLINE):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{proc.args} did not finish within {timeout} s")
    assert proc.returncode == 0, f"{proc.args}: exit {proc.returncode}: {err}"
    return out


@pytest.mark.parametrize("kind", ["spsc", "mpmc"])
def test_python_producer_rust_consumer(name, peer, kind):
    q = shmqueue.Queue.create(name, np.uint64, capacity=4096, kind=kind)
    tx = q.producer()
    rust = run_peer(peer, "consume", kind, name, N)
    try:
        for start in range(0, N, BATCH):
            chunk = np.arange(start, min(start + BATCH, N), dtype=np.uint64)
            assert tx.push_many(chunk, timeout=DEADLINE) == len(chunk)
        tx.close()  # the Rust side expects Disconnected after the last item
        finish(rust)
    finally:
        rust.kill()
        rust.wait()


@pytest.mark.parametrize("kind", ["spsc", "mpmc"])
def test_rust_producer_python_consumer(name, peer, kind):
    q = shmqueue.Queue.create(name, np.uint64, capacity=4096, kind=kind)
    rust = run_peer(peer, "produce", kind, name, N)
    try:
        with q.consumer() as rx:
            out = np.empty(N, dtype=np.uint64)
            got = 0
            deadline = time.monotonic() + DEADLINE
            while got < N:
                assert time.monotonic() < deadline, f"only {got} of {N} items"
                got += rx.pop_into(out[got:], timeout=DEADLINE)
            assert np.array_equal(out, np.arange(N, dtype=np.uint64))
            finish(rust)
            with pytest.raises(shmqueue.Disconnected):
                rx.pop(timeout=10)
    finally:
        rust.kill()
        rust.wait()


def message(i, maximum):
    """Message i of the Rust peer's sequence (the same LCG and pattern)."""
    x = (i * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    length = (x >> 33) % (maximum + 1)
    return ((i * 31 + np.arange(length, dtype=np.uint64)) % 251).astype(np.uint8).tobytes()


MESSAGES = 200
MAX = 1 << 20  # up to 1 MiB, through a 64 KiB ring


def test_bytes_python_to_rust(name, peer):
    ring = shmqueue.ByteRing.create(name, capacity=64 * 1024)
    tx = ring.producer()
    rust = run_peer(peer, "bytes-consume", name, MESSAGES, MAX)
    try:
        for i in range(MESSAGES):
            tx.send(message(i, MAX), timeout=DEADLINE)
        tx.close()
        finish(rust)
    finally:
        rust.kill()
        rust.wait()


def test_bytes_rust_to_python(name, peer):
    ring = shmqueue.ByteRing.create(name, capacity=64 * 1024)
    rust = run_peer(peer, "bytes-produce", name, MESSAGES, MAX)
    try:
        with ring.consumer() as rx:
            got = list(rx)  # until the producer has gone
            finish(rust)
        assert len(got) == MESSAGES
        for i, m in enumerate(got):
            assert m == message(i, MAX), f"message {i}"
        assert max(map(len, got)) > 64 * 1024, "no message was larger than the ring"
    finally:
        rust.kill()
        rust.wait()


CHILD = textwrap.dedent("""
    import sys, time, numpy as np, shmqueue
    q = shmqueue.Queue.open(sys.argv[1], np.uint64, kind=sys.argv[2])
    tx = q.producer()
    tx.push_many(np.arange(10, dtype=np.uint64))
    print("ready", flush=True)
    time.sleep(3600)  # until SIGKILLed; the test's deadline bounds it
""")


def wait_until(cond, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


@pytest.mark.parametrize("kind", ["spsc", "mpmc"])
def test_killed_python_producer_is_noticed_by_rust(name, peer, kind):
    q = shmqueue.Queue.create(name, np.uint64, capacity=64, kind=kind)
    child = subprocess.Popen([sys.executable, "-c", CHILD, name, kind],
                             stdout=subprocess.PIPE, text=True)
    rust = None
    try:
        assert child.stdout.readline().strip() == "ready"
        rust = run_peer(peer, "drain", kind, name)
        wait_until(lambda: len(q) == 0, "the Rust consumer to drain the ring")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=DEADLINE)
        t0 = time.monotonic()
        out = finish(rust, timeout=10)
        elapsed = time.monotonic() - t0
        assert out.strip() == "10"
        assert elapsed < 1.0, f"the Rust consumer took {elapsed:.3f} s to notice"
    finally:
        child.kill()
        child.wait()
        if rust is not None:
            rust.kill()
            rust.wait()


@pytest.mark.parametrize("kind", ["spsc", "mpmc"])
def test_killed_rust_producer_is_noticed_by_python(name, peer, kind):
    q = shmqueue.Queue.create(name, np.uint64, capacity=64, kind=kind)
    rust = run_peer(peer, "hold", kind, name)
    try:
        assert rust.stdout.readline().strip() == "ready"
        rx = q.consumer()
        os.kill(rust.pid, signal.SIGKILL)
        rust.wait(timeout=DEADLINE)
        t0 = time.monotonic()
        with pytest.raises(shmqueue.Disconnected):
            rx.pop(timeout=10)
        elapsed = time.monotonic() - t0
        assert elapsed < 1.0, f"Python took {elapsed:.3f} s to notice"
    finally:
        rust.kill()
        rust.wait()


def test_memfd_ring_shared_with_a_child_by_descriptor():
    q = shmqueue.Queue.create_memfd(np.uint64, capacity=1024)
    fd = q.dup_fd()
    os.set_inheritable(fd, True)
    child_src = textwrap.dedent("""
        import sys, numpy as np, shmqueue
        q = shmqueue.Queue.open_fd(int(sys.argv[1]), np.uint64)
        with q.producer() as tx:
            tx.push_many(np.arange(100_000, dtype=np.uint64))
    """)
    child = subprocess.Popen([sys.executable, "-c", child_src, str(fd)], pass_fds=(fd,))
    os.close(fd)
    try:
        with q.consumer() as rx:
            got = np.concatenate(_drain(rx))
        assert child.wait(timeout=DEADLINE) == 0
        assert np.array_equal(got, np.arange(100_000, dtype=np.uint64))
    finally:
        child.kill()
        child.wait()


def _drain(rx):
    parts = []
    while True:
        try:
            part = rx.pop_many(8192, timeout=DEADLINE)
        except shmqueue.Disconnected:
            return parts
        assert len(part) > 0, "timed out"
        parts.append(part)
