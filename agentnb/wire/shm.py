"""The same-host fast path for large payloads: segments of shared memory in a server's private directory.

Between processes of one machine, gRPC Python's own copies limit a stream of
chunks to a few hundred MiB/s. When a client and its server share the host,
the large parts of a payload are instead copied (once, without the GIL) into a
*segment*, a file of the server's private directory on ``/dev/shm``, and only
its name and sizes travel in the Call or Reply. The receiver maps the segment,
removes its name at once, and hands the parts on as views of the mapping: a
value that can be rebuilt from a buffer (a NumPy array, a ``PickleBuffer``) is
rebuilt on the mapping itself, with no copy, and a ``bytes`` or ``bytearray``
value is copied out of it once (see codec).

Segments are kept and reused, one pool per stream and direction
(:class:`SegmentPool` on the writer's side, :class:`MappedSegments` on the
reader's): the costly part of a large copy between processes is not the copy
but the first touch of fresh memory (a page fault per 4 KiB for the new file's
pages and for the reader's mapping of them), and a segment used again has its
pages and both mappings already in place. A segment's first page is its
header: the writer numbers each payload it writes there (its *generation*), and
the reader writes back the generation it is done with once no view of it is
left (the value rebuilt on it, if any, is gone); only then does the writer
write into it again. So a value that still uses a segment's memory is never
overwritten: the writer takes another segment meanwhile. A writer retires a
segment (a flag in the header) when its stream ends, when it was idle for
:data:`IDLE_SECONDS`, or when its pool is full; the reader then lets go of its
mapping too, and the memory is freed with the last mapping (or value) using it.

Safety: the directory is made by the server with a random name and mode 0700,
so only its user can put files in it or read them; files are 0600 with random
128-bit names; a receiver opens only a name of that form, inside that one
directory, without following links, checks it is a segment (a regular file,
its header, large enough), and unlinks it as soon as it is open: a segment has
no name once its reader has it, and its memory goes when both processes let go
of it, or die. A reader looks a segment up by name only among those its own
stream announced. Nothing is read from a caller before its token was checked
(the token interceptor runs first). A server removes its directory when it
stops, and directories of servers that died, when one starts.

``AGENTNB_SHM=0`` turns the fast path off (in a client: always stream; in a
server: make no directory); chunked streaming is also used across hosts, with
TLS, and whenever a segment cannot be written (``/dev/shm`` missing or full).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import re
import secrets
import shutil
import stat
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from functools import cache

from agentnb.runtime_dir import pid_alive
from agentnb.wire import buffers

ENV_SHM = "AGENTNB_SHM"
SHM_ROOT = "/dev/shm"
_DIR_PREFIX = "agentnb-"
_DIR_NAME = re.compile(r"agentnb-(\d+)-[A-Za-z0-9_]{4,}\Z")
_FILE_NAME = re.compile(r"[0-9a-f]{32}\Z")
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux >= 5.14; older ones refuse it (EINVAL)
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)

# A segment's header, its first page (so that its data is page-aligned): a mark, then three counters.
HEADER_BYTES = 4096
_MAGIC = b"agnbseg1"
_GENERATION = 8  # the payload in it now (written by its writer before it names the segment in a message)
_RELEASED = 16  # the last payload its reader is done with (written by the reader)
_RETIRED = 24  # nonzero: the writer will not write into it again (written by the writer)
_U64 = struct.Struct("=Q")
# A segment is made this much larger than the payload that needs it (rounded up), for the next one to fit.
_SEGMENT_STEP = 2**20
# How much a stream's writer keeps for reuse, at most: beyond, a payload gets a segment of its own, used once.
POOL_BYTES = 2**30
POOL_SEGMENTS = 4
ENV_IDLE = "AGENTNB_SHM_IDLE"


def _idle_seconds() -> float:
    raw = os.environ.get(ENV_IDLE, "").strip()
    try:
        return float(raw) if raw else 10.0
    except ValueError:
        raise ValueError(f"${ENV_IDLE} must be a number of seconds, not {raw!r}") from None


# A segment not used for this long is retired: an idle connection does not hold on to memory ($AGENTNB_SHM_IDLE).
IDLE_SECONDS = _idle_seconds()
_SWEEP_SECONDS = 2.0


class ShmError(OSError):
    """A shared-memory payload that cannot be read: a bad name, a missing or wrong-sized file."""


def enabled() -> bool:
    """Whether the fast path is on in this process (``$AGENTNB_SHM`` is not 0/false/no/off)."""
    return os.environ.get(ENV_SHM, "1").strip().lower() not in ("0", "false", "no", "off")


@cache
def host_id() -> str:
    """This machine and boot (``/etc/machine-id`` and the kernel's boot id); empty when unknown."""
    try:
        with open("/etc/machine-id") as f:
            machine = f.read().strip()
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        return ""
    return f"{machine}/{boot}" if machine and boot else ""


def _sweep_dead(root: str) -> None:
    """Remove this user's directories left by servers that died without stopping."""
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            match = _DIR_NAME.match(entry.name)
            if match is None or not entry.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == os.getuid() and not pid_alive(int(match[1])):
                    shutil.rmtree(entry.path, ignore_errors=True)


class ShmDir:
    """A server's private shared-memory directory, as its server or a client on the same host sees it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<ShmDir {self.path}>"

    @classmethod
    def create(cls, root: str = SHM_ROOT) -> ShmDir | None:
        """Make a new private directory for a server; None when shared memory is off or unusable."""
        if not enabled():
            return None
        try:
            _sweep_dead(root)
            return cls(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-", dir=root))
        except OSError:
            return None

    @classmethod
    def adopt(cls, path: str, root: str = SHM_ROOT) -> ShmDir | None:
        """The directory a server announced, if it is one of ours: None unless it is a server
        directory right under ``root``, a real directory (no link), owned by this user, mode 0700."""
        if not path or os.path.dirname(path) != root or not _DIR_NAME.match(os.path.basename(path)):
            return None
        try:
            info = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            return None
        return cls(path)

    def write(self, parts: list) -> str:
        """Write ``parts`` back to back to a new segment, used once; return its name.

        Raises OSError (nothing left behind).
        """
        segment = _Segment.create(self, sum(len(memoryview(p).cast("B")) for p in parts))
        try:
            segment.fill(parts)
            segment.retire()  # it is this payload's alone: its reader lets go of it when done
        except BaseException:
            self.remove(segment.name)
            raise
        finally:
            segment.close()
        return segment.name

    def read(self, name: str, sizes: list[int], writable: Sequence[bool] = ()) -> list[memoryview]:
        """The parts of segment ``name`` (used once), as views of a mapping of it; its name is removed at once.

        See :meth:`MappedSegments.read`, which this is for a segment read once (a GetResult).
        Raises ShmError naming what was wrong.
        """
        return MappedSegments(self).read(name, sizes, writable)

    def open_segment(self, name: str) -> mmap.mmap:
        """Map segment ``name`` (shared, read-write) and remove its name. Raises ShmError naming what was wrong."""
        if not _FILE_NAME.match(name):
            raise ShmError(f"refused the shared-memory name {name!r}: not a payload file name")
        path = os.path.join(self.path, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self.remove(name)  # whatever it is (a link is removed, never followed): it was announced, it goes
            raise ShmError(f"the shared-memory payload {name} cannot be opened: {exc.strerror}") from None
        try:
            self.remove(name)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size < HEADER_BYTES:
                raise ShmError(f"the shared-memory payload {name} is not a segment")
            mapping = mmap.mmap(fd, info.st_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)  # the mapping holds the file
        if mapping[:len(_MAGIC)] != _MAGIC:
            mapping.close()
            raise ShmError(f"the shared-memory payload {name} is not a segment")
        # Its pages mapped in one call rather than one fault each (read-only: its writer made them).
        with contextlib.suppress(OSError):
            mapping.madvise(_MADV_POPULATE_READ)
        return mapping

    def remove(self, name: str) -> None:
        """Remove file ``name`` if it is still there (a payload never delivered)."""
        if _FILE_NAME.match(name):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.path, name))

    def remove_stale(self, age: float) -> list[str]:
        """Remove the payload files not written to for ``age`` seconds; return their names.

        A file is read (and removed) as soon as its message arrives: one left this
        long was never announced, as when its writer was killed while writing it.
        """
        cutoff = time.time() - age
        stale = []
        for name in self.files():
            with contextlib.suppress(OSError):
                if os.lstat(os.path.join(self.path, name)).st_mtime < cutoff:
                    self.remove(name)
                    stale.append(name)
        return stale

    def files(self) -> list[str]:
        """The payload files in the directory now."""
        try:
            return [n for n in os.listdir(self.path) if _FILE_NAME.match(n)]
        except OSError:
            return []

    def close(self) -> None:
        """Remove the directory and everything in it (its server stops)."""
        shutil.rmtree(self.path, ignore_errors=True)


def _capacity(size: int) -> int:
    """The data size of a segment made for a payload of ``size`` bytes."""
    return max(-(-size // _SEGMENT_STEP), 1) * _SEGMENT_STEP


class _Segment:
    """One segment as its writer holds it: mapped shared and read-write, with where its data starts.

    Memory ordering: its reader writes ``released`` only after it is done with
    the data (the interpreter runs a great deal between the two), and its writer
    reads ``released`` before it writes data again.
    """

    __slots__ = ("name", "mapping", "capacity", "generation", "used_at", "busy", "_anchor", "_data")

    def __init__(self, name: str, mapping: mmap.mmap) -> None:
        self.name = name
        self.mapping = mapping
        self.capacity = len(mapping) - HEADER_BYTES
        self.generation = 0
        self.used_at = time.monotonic()
        self.busy = False  # a thread is writing a payload into it
        self._anchor: ctypes.c_char | None = ctypes.c_char.from_buffer(mapping)  # (holds the mapping open)
        self._data = ctypes.addressof(self._anchor) + HEADER_BYTES  # where its data starts in memory

    @classmethod
    def create(cls, shm_dir: ShmDir, size: int) -> _Segment:
        """A new segment in ``shm_dir`` for payloads of up to ``size`` bytes (and a little more).

        Its memory is allocated now (fallocate), so that a full ``/dev/shm`` is an
        OSError here rather than a SIGBUS on first touch. Raises OSError (nothing left behind).
        """
        name = secrets.token_hex(16)
        path = os.path.join(shm_dir.path, name)
        length = HEADER_BYTES + _capacity(size)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, length)
            mapping = mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            shm_dir.remove(name)
            raise
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):  # its pages mapped in one call rather than one fault each
            mapping.madvise(_MADV_POPULATE_WRITE)
        mapping[:len(_MAGIC)] = _MAGIC
        return cls(name, mapping)

    def free(self) -> bool:
        """Whether its reader is done with the last payload written in it (and it is not retired)."""
        return (_U64.unpack_from(self.mapping, _RELEASED)[0] == self.generation
                and not _U64.unpack_from(self.mapping, _RETIRED)[0])

    def fill(self, parts: list) -> None:
        """Write ``parts`` back to back (copies without the GIL), as the next payload of the segment."""
        address = self._data
        for part in parts:
            address += buffers.copy_into(address, part)
        self.generation += 1
        _U64.pack_into(self.mapping, _GENERATION, self.generation)

    def retire(self) -> None:
        """Tell the reader that nothing more is written into it (it lets go of it when done)."""
        _U64.pack_into(self.mapping, _RETIRED, 1)

    def close(self) -> None:
        """Unmap it here (its reader's mapping, and values using it, keep its memory as long as they live)."""
        self._anchor = None
        self.mapping.close()


class SegmentPool:
    """The segments a stream's writer keeps for reuse (one pool per stream and direction).

    A payload goes into the smallest segment its reader is done with that is
    large enough; when there is none, into a new one, kept for the next
    payloads up to :data:`POOL_SEGMENTS` segments and :data:`POOL_BYTES` in
    all (the least recently used make room; past that, a payload gets a
    segment of its own, retired at once). Segments idle for
    :data:`IDLE_SECONDS` are retired. Thread-safe: payloads written at once
    take different segments.
    """

    def __init__(self, shm_dir: ShmDir, max_bytes: int = POOL_BYTES, max_segments: int = POOL_SEGMENTS) -> None:
        self.shm_dir = shm_dir
        self.max_bytes = max_bytes
        self.max_segments = max_segments
        self._segments: list[_Segment] = []
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"<SegmentPool of {self.shm_dir.path}: {len(self._segments)} segments, {self.nbytes} bytes>"

    @property
    def nbytes(self) -> int:
        """The data size of the segments it keeps."""
        return sum(segment.capacity for segment in self._segments)

    def names(self) -> list[str]:
        """The names of the segments it keeps."""
        return [segment.name for segment in self._segments]

    def write(self, parts: list) -> str:
        """Write ``parts`` back to back into a segment; return its name. Raises OSError (nothing left behind)."""
        size = sum(memoryview(part).nbytes for part in parts)
        segment = self._take(size)
        if segment is None:
            return self.shm_dir.write(parts)
        try:
            segment.fill(parts)
        finally:
            with self._lock:
                segment.busy = False
                segment.used_at = time.monotonic()
                if self._closed:
                    self._drop(segment)
        return segment.name

    def _take(self, size: int) -> _Segment | None:
        """A segment for ``size`` bytes, marked busy; None when the pool has no room for one."""
        with self._lock:
            if self._closed:
                raise OSError("the stream of these shared-memory segments has ended")
            best = None
            for segment in self._segments:
                if (not segment.busy and segment.capacity >= size and segment.free()
                        and (best is None or segment.capacity < best.capacity)):
                    best = segment
            if best is not None:
                best.busy = True
                return best
            capacity = _capacity(size)
            if capacity > self.max_bytes:
                return None
            while len(self._segments) >= self.max_segments or self.nbytes + capacity > self.max_bytes:
                idle = [segment for segment in self._segments if not segment.busy]
                if not idle:
                    return None
                self._drop(min(idle, key=lambda segment: segment.used_at))
            segment = _Segment.create(self.shm_dir, size)
            segment.busy = True
            self._segments.append(segment)
        _SWEEPER.watch(self)
        return segment

    def _drop(self, segment: _Segment) -> None:
        """Retire ``segment`` and let go of it (under the lock; not while it is being written)."""
        if segment in self._segments:
            self._segments.remove(segment)
        if os.getpid() == self._pid:  # a forked child must not retire its parent's segments
            segment.retire()
        segment.close()

    def sweep(self, now: float) -> None:
        """Retire the segments not used for :data:`IDLE_SECONDS`."""
        with self._lock:
            for segment in list(self._segments):
                if not segment.busy and now - segment.used_at >= IDLE_SECONDS:
                    self._drop(segment)

    def close(self) -> None:
        """Retire every segment (the stream ended); one being written is retired when its write ends."""
        with self._lock:
            self._closed = True
            for segment in list(self._segments):
                if not segment.busy:
                    self._drop(segment)


class MappedSegments:
    """The segments a stream's reader was sent, each mapped once and kept while its writer uses it.

    Each payload is handed on as views of its segment; when the last of them
    (and the last value rebuilt on them) is gone, the segment is marked done
    with that payload, for its writer to reuse. A segment its writer retired is
    let go of (by a thread that looks every few seconds), its memory freed
    once no value uses it. Thread-safe.
    """

    def __init__(self, shm_dir: ShmDir) -> None:
        self.shm_dir = shm_dir
        self._mapped: dict[str, mmap.mmap] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MappedSegments of {self.shm_dir.path}: {len(self._mapped)} segments>"

    def names(self) -> list[str]:
        """The names of the segments it keeps mapped."""
        with self._lock:
            return list(self._mapped)

    def read(self, name: str, sizes: list[int], writable: Sequence[bool] = ()) -> list[memoryview]:
        """The parts of the payload in segment ``name``, as views of it; a new segment's name is removed at once.

        Part ``i`` is a writable view when ``writable[i]``, else a read-only one.
        Until the views (and every value or view made from one) are gone, the
        segment's writer does not write into it again. Raises ShmError naming what was wrong.
        """
        with self._lock:
            mapping = self._mapped.get(name)
        if mapping is None:
            mapping = self.shm_dir.open_segment(name)
            if not _U64.unpack_from(mapping, _RETIRED)[0]:
                with self._lock:
                    self._mapped[name] = mapping
                _SWEEPER.watch(self)
        total = sum(sizes)
        if HEADER_BYTES + total > len(mapping):
            raise ShmError(f"the shared-memory payload {name} is smaller than the {total} bytes announced")
        generation = _U64.unpack_from(mapping, _GENERATION)[0]
        # One object holds this payload's part of the mapping: every view of it (and every view or
        # array made from one) keeps it alive, and its end is the reader's end with the payload.
        holder = (ctypes.c_ubyte * (len(mapping) - HEADER_BYTES)).from_buffer(mapping, HEADER_BYTES)
        _lease(holder, mapping, generation)
        whole = memoryview(holder).cast("B")
        parts = []
        start = 0
        for index, size in enumerate(sizes):
            part = whole[start:start + size]
            parts.append(part if index < len(writable) and writable[index] else part.toreadonly())
            start += size
        return parts

    def sweep(self, now: float = 0.0) -> None:
        """Let go of the segments their writer retired."""
        with self._lock:
            retired = [name for name, mapping in self._mapped.items() if _U64.unpack_from(mapping, _RETIRED)[0]]
            dropped = [self._mapped.pop(name) for name in retired]
        for mapping in dropped:
            _unmap(mapping)

    def close(self) -> None:
        """Let go of every segment (the stream ended); those a value uses go with the last such value."""
        with self._lock:
            dropped, self._mapped = list(self._mapped.values()), {}
        for mapping in dropped:
            _unmap(mapping)


def _unmap(mapping: mmap.mmap) -> None:
    """Unmap ``mapping`` now, or, while some value uses it, when the last one goes."""
    with contextlib.suppress(BufferError):
        mapping.close()


# The payloads handed on as views and not yet done with (weak references whose callbacks say so).
_LEASES: dict[int, weakref.ref] = {}


def _lease(holder: ctypes.Array, mapping: mmap.mmap, generation: int) -> None:
    """When ``holder`` goes, mark payload ``generation`` of the segment ``mapping`` as done with."""

    def done(ref: weakref.ref) -> None:
        _LEASES.pop(id(ref), None)
        if not mapping.closed:  # (open: the dying holder still holds it)
            _U64.pack_into(mapping, _RELEASED, generation)

    ref = weakref.ref(holder, done)
    _LEASES[id(ref)] = ref


class _Sweeper:
    """One thread per process that retires idle segments and lets go of retired ones, every few seconds."""

    def __init__(self) -> None:
        self._watched: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.Lock()
        self._pid = 0  # the process whose thread runs (a forked child starts its own)

    def watch(self, pools: SegmentPool | MappedSegments) -> None:
        """Sweep ``pools`` while it lives."""
        with self._lock:
            self._watched.add(pools)
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="agentnb-shm-sweeper", daemon=True).start()

    def _run(self) -> None:
        pause = threading.Event()  # never set: a wait that lets other threads run
        while True:
            pause.wait(_SWEEP_SECONDS)
            now = time.monotonic()
            with self._lock:
                watched = list(self._watched)
                if not watched:  # nothing left to sweep: the next watch starts a thread again
                    self._pid = 0
                    return
            for pools in watched:
                pools.sweep(now)


_SWEEPER = _Sweeper()
