"""The exceptions of shmqueue, one per status code of the C API.

Each carries the Rust error's message (what went wrong and what to do) and
``status``, the C status code. They also derive from the built-in exception
a Python user would reach for (``TimeoutError``, ``FileNotFoundError``,
``ValueError`` ...), so ordinary ``except`` clauses work.
"""


class ShmqError(Exception):
    """Base class of every shmqueue error; ``status`` is the C status code."""

    status = None

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status


class Full(ShmqError):
    """A non-blocking push or send found no room."""


class Empty(ShmqError):
    """A non-blocking pop or receive found nothing."""


class Timeout(ShmqError, TimeoutError):
    """A timed call's deadline passed."""


class Disconnected(ShmqError):
    """The peer has gone (closed, or its process died) and, for a consumer,
    the ring is drained. Final for this endpoint."""


class InvalidHandle(ShmqError, ValueError):
    """The object was closed (or never valid)."""


class InvalidName(ShmqError, ValueError):
    """Not a valid segment name (one '/', then 1-250 portable characters)."""


class InvalidArgument(ShmqError, ValueError):
    """A size, capacity, timeout or buffer that cannot be used."""


class UnsupportedElement(ShmqError, TypeError):
    """No ring type for this element size and alignment."""


class AlreadyExists(ShmqError, FileExistsError):
    """A segment of that name exists already."""


class NotFound(ShmqError, FileNotFoundError):
    """No segment of that name."""


class PermissionDenied(ShmqError, PermissionError):
    """The segment is not this user's to open."""


class Foreign(ShmqError):
    """The name holds something that is not a shmqueue segment."""


class Incompatible(ShmqError, TypeError):
    """The segment's header does not match what the opener asked for."""


class ElemSizeMismatch(Incompatible):
    """The ring's element size is not the dtype's."""


class ElemAlignMismatch(Incompatible):
    """The ring's element alignment is not the dtype's."""


class SchemaMismatch(Incompatible):
    """The ring's schema tag is not the one given."""


class KindMismatch(Incompatible):
    """The segment is another kind of ring."""


class Corrupt(ShmqError):
    """The segment's contents break an invariant (a peer wrote garbage)."""


class NotReady(ShmqError):
    """The segment is still being set up by its creator; retry shortly."""


class RoleTaken(ShmqError):
    """Another live process holds this endpoint's role."""


class RegistryFull(ShmqError):
    """Every endpoint entry of the ring is taken by a live process."""


class NoSpace(ShmqError, OSError):
    """/dev/shm (or the memory limit) has no room for the segment."""


class TooLarge(ShmqError, ValueError):
    """The message is larger than the ring's message limit."""


class BufferTooSmall(ShmqError, ValueError):
    """The buffer cannot hold the next message, which stays queued."""


class Panic(ShmqError):
    """A bug in the bindings; the process is intact."""


class Lagged(ShmqError):
    """A broadcast subscriber was lapped by an overwrite publisher:
    ``missed`` items are lost to it; its next receive returns the oldest
    item still in the ring."""

    missed = 0


class Evicted(Lagged):
    """A broadcast subscriber kept a lossless publisher waiting past its
    ``max_lag`` and was cut loose (``missed`` as for ``Lagged``); it has
    rejoined at the oldest item still in the ring."""


class StartGone(ShmqError, ValueError):
    """The start sequence number is no longer (or not yet) in the ring; the
    message names the range that is."""


_BY_STATUS = {
    1: Full,
    2: Empty,
    3: Timeout,
    4: Disconnected,
    10: InvalidArgument,
    11: InvalidHandle,
    12: InvalidName,
    13: InvalidArgument,
    14: UnsupportedElement,
    15: AlreadyExists,
    16: NotFound,
    17: PermissionDenied,
    18: Foreign,
    19: ElemSizeMismatch,
    20: ElemAlignMismatch,
    21: SchemaMismatch,
    22: KindMismatch,
    23: Incompatible,
    24: Corrupt,
    25: NotReady,
    26: RoleTaken,
    27: RegistryFull,
    28: NoSpace,
    29: TooLarge,
    30: BufferTooSmall,
    31: ShmqError,
    32: Panic,
    33: Lagged,
    34: Evicted,
    35: StartGone,
}


def from_status(status, message):
    """The exception for a C status code (used by the extension)."""
    return _BY_STATUS.get(status, ShmqError)(message, status)
