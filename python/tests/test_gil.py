"""A blocking call releases the GIL: another Python thread runs, and can
be the one that unblocks it."""

import sys
import threading
import time

import numpy as np

import shmqueue


def test_blocking_pop_releases_the_gil():
    q = shmqueue.Queue.create_memfd(np.uint64, capacity=4)
    tx, rx = q.producer(), q.consumer()
    result = {}

    def waiter():
        try:
            result["value"] = rx.pop(timeout=5)
        except Exception as e:  # reported below
            result["error"] = e

    t = threading.Thread(target=waiter)
    t.start()
    # Wait (with a deadline) until the waiter has been inside pop() at two
    # looks 1 ms apart, so it is in the native call. Were the GIL held
    # there, this thread could not look again (nor push) until the 5 s
    # timeout had made pop() raise.
    deadline = time.monotonic() + 5
    seen = 0
    while seen < 2:
        f = sys._current_frames().get(t.ident)
        seen = seen + 1 if f is not None and f.f_code.co_name == "pop" else 0
        assert time.monotonic() < deadline, "the waiter never blocked in pop()"
        time.sleep(0.001)
    tx.push(42)
    t.join(10)
    assert not t.is_alive()
    assert result == {"value": 42}, result
