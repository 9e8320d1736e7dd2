"""Fixtures: unique segment names removed even when a test fails, and the
Rust peer process (shmqueue/examples/interop_peer.rs), built once."""

import itertools
import os
import pathlib
import subprocess

import pytest

import shmqueue

ROOT = pathlib.Path(__file__).resolve().parents[2]
_counter = itertools.count()


@pytest.fixture
def name():
    """A segment name of this test's own; unlinked afterwards if present."""
    n = f"/shmq-py-{os.getpid()}-{next(_counter)}"
    yield n
    try:
        shmqueue.unlink(n)
    except shmqueue.NotFound:
        pass


@pytest.fixture(scope="session")
def peer():
    """The path of the Rust peer, built with cargo unless SHMQ_INTEROP_PEER
    names one."""
    given = os.environ.get("SHMQ_INTEROP_PEER")
    if given:
        return given
    subprocess.run(
        ["cargo", "build", "-q", "-p", "shmqueue", "--example", "interop_peer"],
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    exe = target / "debug" / "examples" / "interop_peer"
    assert exe.exists(), exe
    return str(exe)
