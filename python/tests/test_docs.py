"""The package's docstring examples run."""

import doctest

import shmqueue


def test_docstring_examples():
    failed, attempted = doctest.testmod(shmqueue)
    assert attempted > 0 and failed == 0
