"""Bad input gives a clear exception of its own class (also the built-in
class a user would catch), never a crash or a hang."""

import numpy as np
import pytest

import shmqueue


def test_wrong_dtype_kind_or_schema_at_open(name):
    shmqueue.Queue.create(name, np.uint64, capacity=16, schema=7)
    with pytest.raises(shmqueue.ElemSizeMismatch, match="size") as e:
        shmqueue.Queue.open(name, np.uint32, schema=7)
    assert isinstance(e.value, TypeError)
    with pytest.raises(shmqueue.ElemAlignMismatch):
        shmqueue.Queue.open(name, "8s", schema=7)  # 8 bytes, alignment 1
    with pytest.raises(shmqueue.KindMismatch):
        shmqueue.Queue.open(name, np.uint64, kind="mpmc", schema=7)
    with pytest.raises(shmqueue.SchemaMismatch):
        shmqueue.Queue.open(name, np.uint64, schema=8)
    with pytest.raises(shmqueue.KindMismatch):
        shmqueue.ByteRing.open(name, schema=7)
    # The right type opens, and a Rust-compatible struct format does too.
    shmqueue.Queue.open(name, np.uint64, schema=7).close()
    shmqueue.Queue.open(name, "Q", schema=7).close()


def test_closed_handles_raise():
    q = shmqueue.Queue.create_memfd(np.uint64)
    tx = q.producer()
    tx.close()
    tx.close()  # idempotent
    with pytest.raises(shmqueue.InvalidHandle) as e:
        tx.push(1)
    assert isinstance(e.value, ValueError)
    q.close()
    with pytest.raises(shmqueue.InvalidHandle):
        q.consumer()
    with pytest.raises(shmqueue.InvalidHandle):
        q.stats()


@pytest.mark.parametrize("bad", ["", "/", "/a/b", "/bad\0name", "/" + "x" * 300])
def test_bad_names(bad):
    with pytest.raises(shmqueue.InvalidName) as e:
        shmqueue.Queue.create(bad, np.uint64)
    assert isinstance(e.value, ValueError)
    assert str(e.value)


def test_missing_and_existing_names(name):
    with pytest.raises(shmqueue.NotFound) as e:
        shmqueue.Queue.open(name, np.uint64)
    assert isinstance(e.value, FileNotFoundError)
    shmqueue.Queue.create(name, np.uint64)
    with pytest.raises(shmqueue.AlreadyExists) as e:
        shmqueue.Queue.create(name, np.uint64)
    assert isinstance(e.value, FileExistsError)


def test_unsupported_element_and_arguments():
    with pytest.raises(shmqueue.UnsupportedElement):
        shmqueue.Queue.create_memfd(np.dtype("S9"))
    with pytest.raises(shmqueue.InvalidArgument):
        shmqueue.Queue.create_memfd(np.uint64, kind="fifo")
    with pytest.raises(shmqueue.InvalidArgument):
        shmqueue.Queue.create_memfd(np.uint64, capacity=0)
    q = shmqueue.Queue.create_memfd(np.uint64)
    with q.producer() as tx, pytest.raises(ValueError):
        tx.push(1, timeout=-1)
    with q.consumer() as rx, pytest.raises(shmqueue.InvalidArgument):
        rx.pop_into(np.empty(4, dtype=np.uint32))


def test_timeouts_and_roles():
    q = shmqueue.Queue.create_memfd(np.uint64, capacity=2)
    with q.producer() as tx, q.consumer() as rx:
        with pytest.raises(shmqueue.RoleTaken):
            q.producer()
        assert rx.try_pop() is None
        with pytest.raises(shmqueue.Timeout) as e:
            rx.pop(timeout=0.05)
        assert isinstance(e.value, TimeoutError)
        assert len(rx.pop_many(4, timeout=0.01)) == 0
        n = tx.try_push_many(np.arange(10, dtype=np.uint64))
        assert n == q.capacity
        assert not tx.try_push(99)
        with pytest.raises(shmqueue.Timeout):
            tx.push(99, timeout=0.05)
        assert rx.try_pop_many(10).tolist() == list(range(n))


def test_byte_ring_errors():
    ring = shmqueue.ByteRing.create_memfd(capacity=4096, max_message_size=100)
    with ring.producer() as tx, ring.consumer() as rx:
        with pytest.raises(shmqueue.TooLarge):
            tx.send(b"x" * 200)
        tx.send(b"hello, world")
        small = bytearray(4)
        with pytest.raises(shmqueue.BufferTooSmall, match="12 bytes"):
            rx.recv_into(small)
        assert rx.recv(timeout=1) == b"hello, world"  # it stayed queued
        tx.send(memoryview(b"abc"))
        big = bytearray(64)
        assert rx.recv_into(big, timeout=1) == 3 and big[:3] == b"abc"
        assert rx.try_recv() is None
        with pytest.raises(shmqueue.Timeout):
            rx.recv(timeout=0.05)
        tx.close()
        with pytest.raises(shmqueue.Disconnected):
            rx.recv(timeout=1)


def test_inspect_and_stats(name):
    q = shmqueue.Queue.create(name, np.uint64, capacity=64, kind="mpmc")
    with q.producer() as tx:
        tx.push_many(np.arange(5, dtype=np.uint64))
        info = shmqueue.inspect(name)
        assert info["kind"] == "mpmc" and info["healthy"] and info["in_use"]
        assert info["elem_size"] == 8 and info["fill"] == 5
        s = q.stats()
        assert s["len"] == 5 and s["producers_alive"] == 1
    q.close()
    assert shmqueue.inspect(name)["stale"]
