"""shmqueue from Python: lock-free rings in POSIX shared memory, shared with
Rust and C processes on the same host.

A Python process is a full peer: the segment header is checked at open
(element size and alignment, kind, schema tag), a killed peer is noticed
within a second, and every failure is an exception with the Rust message.

Typed rings (SPSC and MPMC ``Queue``, ``Broadcast``) carry fixed-size
elements described by a numpy dtype or a ``struct`` format; the byte ring
carries ``bytes`` messages of any size.

>>> import numpy as np, shmqueue
>>> q = shmqueue.Queue.create_memfd(np.uint64, capacity=1024)
>>> with q.producer() as tx, q.consumer() as rx:
...     tx.push(7)
...     n = tx.push_many(np.arange(3, dtype=np.uint64))
...     rx.pop(), rx.pop_many(10).tolist()
(7, [0, 1, 2])

Blocking calls release the GIL and can be interrupted by Ctrl-C (byte-ring
calls only between messages: see ``BytesProducer.send``).
"""

import struct as _struct

from . import _errors, _native
from ._errors import *  # noqa: F401,F403  (the public exception classes)
from ._errors import Disconnected, InvalidArgument, Timeout

__all__ = [
    "Queue",
    "Producer",
    "Consumer",
    "ByteRing",
    "BytesProducer",
    "BytesConsumer",
    "Broadcast",
    "Publisher",
    "Subscriber",
    "unlink",
    "inspect",
] + [n for n in dir(_errors) if n[:1].isupper()]  # noqa: F405

# Natural sizes of struct codes, for the alignment of a struct format.
_CODE_ALIGN = {
    "x": 1, "c": 1, "b": 1, "B": 1, "?": 1, "s": 1, "p": 1,
    "h": 2, "H": 2, "e": 2,
    "i": 4, "I": 4, "l": 4, "L": 4, "f": 4,
    "q": 8, "Q": 8, "n": 8, "N": 8, "d": 8, "P": 8,
}


class _Elem:
    """What the rings need of an element type: size, alignment, and the
    conversions between Python values and bytes."""

    def __init__(self, dtype, align=None):
        self.np = None
        if isinstance(dtype, str):
            self.struct = _struct.Struct(dtype)
            self.size = self.struct.size
            self.align = align or _struct_align(dtype)
        else:
            import numpy as np

            self.np = np
            self.dtype = np.dtype(dtype)
            self.size = self.dtype.itemsize
            self.align = align or self.dtype.alignment
            # One value at a time, a plain scalar dtype packs through struct:
            # several times cheaper per call than a numpy round trip.
            d = self.dtype
            if d.fields is None and d.subdtype is None and d.char in "bBhHiIlLqQefd?":
                order = {">": ">", "<": "<"}.get(d.byteorder, "@")
                st = _struct.Struct(order + d.char)
                if st.size == self.size:  # '<L' is 4 bytes, numpy's 'L' 8
                    self.scalar = st
        if self.size == 0:
            raise InvalidArgument("an element of 0 bytes cannot be queued", 13)

    scalar = None

    def pack(self, value):
        if self.scalar is not None:
            return self.scalar.pack(value)
        if self.np is not None:
            return self.np.asarray(value, dtype=self.dtype).tobytes()
        if isinstance(value, tuple):
            return self.struct.pack(*value)
        return self.struct.pack(value)

    def unpack(self, buf):
        if self.scalar is not None:
            return self.scalar.unpack(buf)[0]
        if self.np is not None:
            return self.np.frombuffer(buf, dtype=self.dtype)[0].item()
        v = self.struct.unpack(buf)
        return v[0] if len(v) == 1 else v

    def buffer_of(self, items):
        """A C-contiguous byte view of a batch of items."""
        if self.np is not None:
            a = self.np.ascontiguousarray(items, dtype=self.dtype)
            return memoryview(a.reshape(-1).view(self.np.uint8))
        if isinstance(items, (bytes, bytearray, memoryview)):
            return memoryview(items).cast("B")
        return b"".join(self.pack(v) for v in items)

    def alloc(self, n):
        """An output array of n elements, and its byte view."""
        if self.np is not None:
            a = self.np.empty(n, dtype=self.dtype)
            return a, memoryview(a.view(self.np.uint8))
        b = bytearray(n * self.size)
        return b, memoryview(b)

    def trim(self, out, n):
        if self.np is not None:
            return out[:n]
        return [v[0] if len(v) == 1 else v for v in self.struct.iter_unpack(out[: n * self.size])]


def _struct_align(fmt):
    """Alignment of a struct format: its largest member's natural size (as
    a C compiler lays out a struct of those members)."""
    body = fmt.lstrip("@=<>!")
    codes = [c for c in body if not c.isdigit() and not c.isspace()]
    return max((_CODE_ALIGN.get(c, 1) for c in codes), default=1)


_KINDS = {"spsc": _native.KIND_SPSC, "mpmc": _native.KIND_MPMC}


def _kind(kind):
    try:
        return _KINDS[kind]
    except KeyError:
        raise InvalidArgument(f"kind must be 'spsc' or 'mpmc', not {kind!r}", 13) from None


class _Handle:
    """An id in the bindings' handle table, freed once."""

    _free = None

    def __init__(self, hid):
        self._id = hid

    @property
    def closed(self):
        return self._id is None

    def close(self):
        """Release the handle (idempotent). Using it afterwards raises
        ``InvalidHandle``."""
        hid, self._id = self._id, None
        if hid is not None:
            type(self)._free(hid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def _h(self):
        # 0 is never a valid id: a closed handle gets InvalidHandle from
        # the bindings, with their message.
        return 0 if self._id is None else self._id


class Queue(_Handle):
    """An SPSC or MPMC ring of fixed-size elements.

    ``dtype`` is a numpy dtype (``np.uint64``, a structured dtype ...) or a
    ``struct`` format (``"<Qd"``); its size and alignment must match the
    Rust or C peer's element type, and are checked against the segment's
    header at open. ``align`` overrides the alignment a struct format
    implies.
    """

    _free = staticmethod(_native.queue_free)

    def __init__(self, hid, elem):
        super().__init__(hid)
        self._elem = elem

    @classmethod
    def create(cls, name, dtype, capacity=1024, kind="spsc", schema=0,
               max_producers=0, max_consumers=0, align=None):
        """Create the named ring (``AlreadyExists`` if the name is taken).
        The segment stays until ``shmqueue.unlink(name)``."""
        e = _Elem(dtype, align)
        return cls(_native.queue_create(name, _kind(kind), e.size, e.align, capacity,
                                        schema, max_producers, max_consumers), e)

    @classmethod
    def open(cls, name, dtype, kind="spsc", schema=0, align=None):
        """Open the named ring, checking its header against ``dtype``,
        ``kind`` and ``schema``."""
        e = _Elem(dtype, align)
        return cls(_native.queue_open(name, _kind(kind), e.size, e.align, schema), e)

    @classmethod
    def create_memfd(cls, dtype, capacity=1024, kind="spsc", schema=0,
                     max_producers=0, max_consumers=0, align=None):
        """Create a ring in an unnamed, sealed memfd: hand ``fileno()`` to a
        child or over a Unix socket; nothing appears in /dev/shm."""
        e = _Elem(dtype, align)
        return cls(_native.queue_create_memfd(_kind(kind), e.size, e.align, capacity,
                                              schema, max_producers, max_consumers), e)

    @classmethod
    def open_fd(cls, fd, dtype, kind="spsc", schema=0, align=None):
        """Open a memfd ring from a descriptor, which stays the caller's."""
        e = _Elem(dtype, align)
        return cls(_native.queue_open_fd(fd, _kind(kind), e.size, e.align, schema), e)

    def dup_fd(self):
        """A new close-on-exec descriptor for the segment, the caller's to
        close (``os.set_inheritable`` it to pass it to a child)."""
        return _native.queue_dup_fd(self._h)

    def stats(self):
        """A snapshot: geometry, fill and, for MPMC, endpoints and recovery
        counters."""
        return _native.queue_stats(self._h)

    @property
    def capacity(self):
        return self.stats()["capacity"]

    def __len__(self):
        return self.stats()["len"]

    def producer(self):
        """Claim a producer endpoint (``RoleTaken`` if SPSC and another lives)."""
        return Producer(_native.producer(self._h), self._elem)

    def consumer(self):
        """Claim a consumer endpoint; a new SPSC consumer resumes where the
        last one stopped."""
        return Consumer(_native.consumer(self._h), self._elem)


class Producer(_Handle):
    """A producer endpoint; a context manager that gives the role back."""

    _free = staticmethod(_native.producer_free)

    def __init__(self, hid, elem):
        super().__init__(hid)
        self._elem = elem

    def push(self, value, timeout=None):
        """Push one value, waiting for room (``Timeout`` after ``timeout``
        seconds). ``Disconnected`` if the consumer side has gone."""
        if _native.push_many(self._h, self._elem.pack(value), True, timeout) == 0:
            raise Timeout(f"no room within {timeout} s", 3)

    def try_push(self, value):
        """Push one value if there is room now; whether it was pushed."""
        return _native.push_many(self._h, self._elem.pack(value), False) == 1

    def push_many(self, items, timeout=None):
        """Push a batch (a numpy array, or a sequence of values) in order,
        waiting for room; the number pushed: all of them, unless
        ``timeout`` passed first or the consumer went away after some."""
        return _native.push_many(self._h, self._elem.buffer_of(items), True, timeout)

    def try_push_many(self, items):
        """Push what fits of a batch now; the number pushed."""
        return _native.push_many(self._h, self._elem.buffer_of(items), False)


class Consumer(_Handle):
    """A consumer endpoint; iterating it pops until the producer side has
    gone and the ring is drained."""

    _free = staticmethod(_native.consumer_free)

    def __init__(self, hid, elem):
        super().__init__(hid)
        self._elem = elem
        self._one = bytearray(elem.size)

    def pop(self, timeout=None):
        """Pop one value, waiting for it (``Timeout`` after ``timeout``
        seconds); ``Disconnected`` once drained and the producer has gone."""
        if _native.pop_many(self._h, self._one, True, timeout) == 0:
            raise Timeout(f"nothing within {timeout} s", 3)
        return self._elem.unpack(self._one)

    def try_pop(self):
        """Pop one value if there is one; ``None`` otherwise."""
        if _native.pop_many(self._h, self._one, False) == 0:
            return None
        return self._elem.unpack(self._one)

    def pop_many(self, n, timeout=None):
        """Wait for at least one value (up to ``timeout`` seconds), then take
        up to ``n`` that are there: a numpy array (or a list, for a struct
        format), empty if the deadline passed."""
        out, view = self._elem.alloc(n)
        k = _native.pop_many(self._h, view, True, timeout)
        return self._elem.trim(out, k)

    def try_pop_many(self, n):
        """Up to ``n`` values that are there now (maybe none)."""
        out, view = self._elem.alloc(n)
        k = _native.pop_many(self._h, view, False)
        return self._elem.trim(out, k)

    def pop_into(self, out, timeout=None):
        """Pop into a writable, C-contiguous array of the element type (no
        allocation): the count, as ``pop_many``."""
        if self._elem.np is not None:
            np = self._elem.np
            if not isinstance(out, np.ndarray) or out.dtype != self._elem.dtype:
                raise InvalidArgument(f"pop_into needs a numpy array of {self._elem.dtype}", 13)
            if not (out.flags.c_contiguous and out.flags.writeable):
                raise InvalidArgument("pop_into needs a writable, C-contiguous array", 13)
            out = out.reshape(-1).view(np.uint8)
        return _native.pop_many(self._h, memoryview(out).cast("B"), True, timeout)

    def __iter__(self):
        while True:
            try:
                yield self.pop()
            except Disconnected:
                return


class ByteRing(_Handle):
    """A ring of byte messages of any size (larger than the ring too, sent
    in fragments); one producer and one consumer at a time."""

    _free = staticmethod(_native.bytes_free)

    @classmethod
    def create(cls, name, capacity=1 << 20, max_message_size=0, schema=0):
        """Create the named ring with ``capacity`` bytes of data area; a
        non-zero ``max_message_size`` limits messages (default 64 MiB)."""
        return cls(_native.bytes_create(name, capacity, max_message_size, schema))

    @classmethod
    def open(cls, name, max_message_size=0, schema=0):
        return cls(_native.bytes_open(name, max_message_size, schema))

    @classmethod
    def create_memfd(cls, capacity=1 << 20, max_message_size=0, schema=0):
        return cls(_native.bytes_create_memfd(capacity, max_message_size, schema))

    @classmethod
    def open_fd(cls, fd, max_message_size=0, schema=0):
        return cls(_native.bytes_open_fd(fd, max_message_size, schema))

    def dup_fd(self):
        return _native.bytes_dup_fd(self._h)

    def stats(self):
        return _native.bytes_stats(self._h)

    def producer(self):
        return BytesProducer(_native.bytes_producer(self._h))

    def consumer(self):
        return BytesConsumer(_native.bytes_consumer(self._h))


class BytesProducer(_Handle):
    _free = staticmethod(_native.bytes_producer_free)

    def send(self, data, timeout=None):
        """Send ``data`` (any bytes-like object) as one message, waiting for
        room. The wait is one piece: a timeout inside a fragmented message
        would abandon it, so Ctrl-C is seen once the call returns."""
        _native.bytes_send(self._h, data, True, timeout)

    def try_send(self, data):
        """Send if there is room now (one record: at most the ring's largest
        record); whether it was sent."""
        return _native.bytes_send(self._h, data, False)


class BytesConsumer(_Handle):
    _free = staticmethod(_native.bytes_consumer_free)

    def recv(self, timeout=None):
        """The next message as ``bytes``, waiting for it."""
        return _native.bytes_recv(self._h, True, timeout)

    def try_recv(self):
        """The next message if a whole one is there; ``None`` otherwise."""
        return _native.bytes_recv(self._h, False)

    def recv_into(self, buffer, timeout=None):
        """Receive the next message straight into a writable buffer (one
        copy, from the ring into it): its length. ``BufferTooSmall`` leaves
        the message queued. (The ring's memory is never lent out as a
        memoryview: another process can rewrite it.)"""
        return _native.bytes_recv_into(self._h, buffer, True, timeout)

    def __iter__(self):
        while True:
            try:
                yield self.recv()
            except Disconnected:
                return


_POLICIES = {"lossless": 1, "overwrite": 2}


class Broadcast(_Handle):
    """A broadcast ring: one publisher, any number of subscriber processes,
    each of which receives every item in order.

    ``policy="lossless"`` (default): the publisher waits for the slowest
    live subscriber; a killed one stops holding it within a second, a live
    one only past ``max_lag`` seconds (then it is evicted: ``Evicted``).
    ``policy="overwrite"``: the publisher never waits; a lapped subscriber
    gets ``Lagged`` with the exact ``missed`` count, never a torn item.

    >>> import numpy as np, shmqueue
    >>> b = shmqueue.Broadcast.create_memfd(np.uint64, capacity=64)
    >>> a, c = b.subscribe(), b.subscribe()
    >>> with b.publisher() as tx:
    ...     tx.publish(5)
    >>> a.recv(timeout=1), c.recv(timeout=1)
    (5, 5)
    """

    _free = staticmethod(_native.bcast_free)

    def __init__(self, hid, elem):
        super().__init__(hid)
        self._elem = elem

    @classmethod
    def _config(cls, name, dtype, capacity, policy, max_subscribers, max_lag, schema, align):
        e = _Elem(dtype, align)
        try:
            pol = _POLICIES[policy]
        except KeyError:
            raise InvalidArgument(f"policy must be 'lossless' or 'overwrite', not {policy!r}", 13) from None
        lag_ns = 0 if max_lag is None else max(1, int(max_lag * 1e9))
        return cls(_native.bcast_create(name, e.size, e.align, capacity, schema, pol,
                                        max_subscribers, lag_ns), e)

    @classmethod
    def create(cls, name, dtype, capacity=1024, policy="lossless", max_subscribers=0,
               max_lag=None, schema=0, align=None):
        """Create the named ring (``AlreadyExists`` if taken);
        ``max_subscribers`` 0 is the library's default (64)."""
        return cls._config(name, dtype, capacity, policy, max_subscribers, max_lag, schema, align)

    @classmethod
    def create_memfd(cls, dtype, capacity=1024, policy="lossless", max_subscribers=0,
                     max_lag=None, schema=0, align=None):
        """Create a ring in an unnamed, sealed memfd (see ``Queue.create_memfd``)."""
        return cls._config(None, dtype, capacity, policy, max_subscribers, max_lag, schema, align)

    @classmethod
    def open(cls, name, dtype, schema=0, align=None):
        """Open the named ring, checking its header against ``dtype`` and
        ``schema``; the policy and limits are the creator's."""
        e = _Elem(dtype, align)
        return cls(_native.bcast_open(name, e.size, e.align, schema), e)

    @classmethod
    def open_fd(cls, fd, dtype, schema=0, align=None):
        e = _Elem(dtype, align)
        return cls(_native.bcast_open_fd(fd, e.size, e.align, schema), e)

    def dup_fd(self):
        return _native.bcast_dup_fd(self._h)

    def stats(self):
        """A snapshot: policy, items published, publisher and subscriber
        liveness, the largest lag, evictions and laps."""
        return _native.bcast_stats(self._h)

    def publisher(self):
        """Claim the publisher role (``RoleTaken`` while a live one holds it)."""
        return Publisher(_native.publisher(self._h), self._elem)

    def subscribe(self, start="latest"):
        """A new subscriber starting at ``"latest"`` (what is published
        after it joins), ``"oldest"`` (everything still in the ring) or a
        sequence number (``StartGone`` if that is no longer there)."""
        if start == "latest":
            mode, seq = 1, 0
        elif start == "oldest":
            mode, seq = 2, 0
        elif isinstance(start, int) and start >= 0:
            mode, seq = 3, start
        else:
            raise InvalidArgument(f"start must be 'latest', 'oldest' or a sequence number, not {start!r}", 13)
        return Subscriber(_native.subscribe(self._h, mode, seq), self._elem)


class Publisher(_Handle):
    """The publisher endpoint of a broadcast ring."""

    _free = staticmethod(_native.publisher_free)

    def __init__(self, hid, elem):
        super().__init__(hid)
        self._elem = elem

    def publish(self, value, timeout=None):
        """Publish one value; a lossless ring waits while its slowest live
        subscriber is a whole ring behind (``Timeout`` after ``timeout``)."""
        if not _native.publish(self._h, self._elem.pack(value), self._elem.size, True, timeout):
            raise Timeout(f"the ring stayed full for {timeout} s", 3)

    def try_publish(self, value):
        """Publish if a lossless ring has room now; whether it was published."""
        return _native.publish(self._h, self._elem.pack(value), self._elem.size, False)

    @property
    def position(self):
        """The sequence number the next item gets."""
        return _native.publisher_position(self._h)


class Subscriber(_Handle):
    """A subscriber of a broadcast ring; iterating it receives until the
    publisher has gone and everything is read (``Lagged`` propagates)."""

    _free = staticmethod(_native.subscriber_free)

    def __init__(self, hid, elem):
        super().__init__(hid)
        self._elem = elem
        self._one = bytearray(elem.size)

    def recv(self, timeout=None):
        """The next item, waiting for it (``Timeout`` after ``timeout``).
        ``Lagged``/``Evicted`` carry ``missed``; the call after them returns
        the oldest item still in the ring. ``Disconnected``: everything is
        read and the publisher has gone (a new one may attach)."""
        if not _native.recv(self._h, self._one, self._elem.size, True, timeout):
            raise Timeout(f"nothing published within {timeout} s", 3)
        return self._elem.unpack(self._one)

    def try_recv(self):
        """The next item if there is one; ``None`` otherwise."""
        if not _native.recv(self._h, self._one, self._elem.size, False):
            return None
        return self._elem.unpack(self._one)

    def info(self):
        """Position (next sequence number), lag, and items missed so far."""
        return _native.subscriber_info(self._h)

    def __iter__(self):
        while True:
            try:
                yield self.recv()
            except Disconnected:
                return


def unlink(name):
    """Remove the named segment; processes that have it open keep it."""
    _native.unlink(name)


def inspect(name):
    """Describe the named segment without attaching to it (any kind)."""
    return _native.inspect(name)
