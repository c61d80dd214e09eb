"""The same-host fast path for large payloads: files in a server's private shared-memory directory.

Between processes of one machine, gRPC Python's own copies limit a stream of
chunks to a few hundred MiB/s. When a client and its server share the host,
the large parts of a payload are instead written (one copy) to a file of the
server's private directory on ``/dev/shm``, and only its name and sizes travel
in the Call or Reply; the receiver maps the file, removes its name at once, and
hands the parts on as views of the mapping: a value that can be rebuilt from a
buffer (a NumPy array, a ``PickleBuffer``) is rebuilt on the mapping itself, with
no copy, and the mapping (the file's memory) lives as long as some value uses it;
a ``bytes`` or ``bytearray`` value is copied out of it once (see codec).

Safety: the directory is made by the server with a random name and mode 0700,
so only its user can put files in it or read them; files are 0600 with random
128-bit names; a receiver opens only a name of that form, inside that one
directory, without following links, and unlinks the file as soon as it is
open. Nothing is read from a caller before its token was checked (the token
interceptor runs first). A server removes its directory when it stops, and
directories of servers that died, when one starts.

``AGENTNB_SHM=0`` turns the fast path off (in a client: always stream; in a
server: make no directory); chunked streaming is also used across hosts, with
TLS, and whenever a file cannot be written (``/dev/shm`` missing or full).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from functools import cache

from agentnb.runtime_dir import pid_alive

ENV_SHM = "AGENTNB_SHM"
SHM_ROOT = "/dev/shm"
_DIR_PREFIX = "agentnb-"
_DIR_NAME = re.compile(r"agentnb-(\d+)-[A-Za-z0-9_]{4,}\Z")
_FILE_NAME = re.compile(r"[0-9a-f]{32}\Z")
# os.write takes at most this much at a time (Linux caps one call near 2 GiB).
_IO_BYTES = 2**30
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux >= 5.14; older ones refuse it (EINVAL)


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


def _write_all(fd: int, parts: list) -> None:
    for part in parts:
        view = memoryview(part).cast("B")
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:done + _IO_BYTES])


def _views(mapping: mmap.mmap | None, sizes: list[int], writable: list[bool]) -> list[memoryview]:
    """The parts of a mapped payload file: back-to-back views of it, read-only unless ``writable[i]``."""
    whole = memoryview(mapping if mapping is not None else bytearray())
    parts = []
    start = 0
    for index, size in enumerate(sizes):
        part = whole[start:start + size]
        parts.append(part if index < len(writable) and writable[index] else part.toreadonly())
        start += size
    return parts


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
        """Write ``parts`` back to back to a new file; return its name. Raises OSError (nothing left behind)."""
        name = secrets.token_hex(16)
        path = os.path.join(self.path, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, parts)
        except BaseException:
            self.remove(name)
            raise
        finally:
            os.close(fd)
        return name

    def read(self, name: str, sizes: list[int], writable: Sequence[bool] = ()) -> list[memoryview]:
        """The parts of file ``name``, as views of a private mapping of it; its name is removed at once.

        Part ``i`` is a writable view when ``writable[i]`` (copy on write: the
        file never changes), else a read-only one. The mapping stays as long as
        one of the views (or a view or value made from one) does, and goes with
        the last: the file's memory is freed then, its name being gone already.
        Raises ShmError naming what was wrong.
        """
        if not _FILE_NAME.match(name):
            raise ShmError(f"refused the shared-memory name {name!r}: not a payload file name")
        path = os.path.join(self.path, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self.remove(name)  # whatever it is (a link is removed, never followed): it was announced, it goes
            raise ShmError(f"the shared-memory payload {name} cannot be opened: {exc.strerror}") from None
        try:
            self.remove(name)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size != sum(sizes):
                raise ShmError(f"the shared-memory payload {name} is not the {sum(sizes)} bytes announced")
            # MAP_PRIVATE: a writable part's value may change without reaching the file.
            mapping = mmap.mmap(fd, info.st_size, flags=mmap.MAP_PRIVATE,
                                prot=mmap.PROT_READ | mmap.PROT_WRITE) if info.st_size else None
            if mapping is not None:
                # The file's pages mapped in one call rather than one fault each; read-only (MAP_POPULATE
                # would fault a writable private mapping for writing: a private copy of every page).
                with contextlib.suppress(OSError):
                    mapping.madvise(_MADV_POPULATE_READ)
        finally:
            os.close(fd)  # the mapping holds the file
        return _views(mapping, sizes, list(writable))

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
