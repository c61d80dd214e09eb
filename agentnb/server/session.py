"""One client's Session stream, as the server sees it: its calls in, its replies out.

A thread of the session reads the client's frames (decoded by
``frames.decode_client_frame``), puts large payloads back together from their
chunks or shared-memory files (:class:`agentnb.wire.frames.Reassembly`) and
hands each call to the servicer. Replies are put in the session's outbox by
whichever thread made them, and leave it several to a frame
(:func:`agentnb.wire.frames.from_outbox`), a large one followed by its chunks.

The stream ends when the client went away, when the client sent its last call
and every call taken has its final reply, or when the server stops.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

import grpc

from agentnb._proto import agentnb_pb2 as pb
from agentnb.wire import codec, frames, shm
from agentnb.wire.protocol import MAX_FRAME_BYTES

_LOGGER = logging.getLogger(__name__)

MAX_REPLIES_PER_FRAME = 512
# A session keeps the names of the shared-memory files it sent; past this many, those already taken are forgotten.
_MAX_TRACKED_FILES = 256
_END = object()  # put in an outbox: the stream ends after the replies before it


def server_frame(replies: list) -> pb.ServerFrame:
    """The frame carrying ``replies`` (for :func:`frames.from_outbox` and :func:`frames.of_item`)."""
    return pb.ServerFrame(replies=replies)


class ClientSession:
    """The server's side of one client's Session stream.

    It counts the calls it took and their final replies sent, so that a client
    that half-closes its side still gets every reply. The reader thread counts
    the calls it reads without a lock (it alone writes that count, and reads its
    last value when it half-closes): a reader blocked on a lock that a worker
    holds while waiting for the GIL would stall every call behind it. It remembers the
    shared-memory files of the replies it sent, and removes those its client
    did not take when the stream ends (a client killed before reading its
    reply leaves nothing behind); its pool of segments for large replies is
    retired then too.
    """

    __slots__ = ("outbox", "closed", "shm_dir", "shm_pool", "files", "lock", "read", "added", "finals", "draining",
                 "owned", "starts",
                 "__weakref__")

    def __init__(self, shm_dir: shm.ShmDir | None = None) -> None:
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = False
        self.shm_dir = shm_dir
        self.shm_pool = shm.SegmentPool(shm_dir) if shm_dir is not None else None  # segments for large replies
        self.files: set[str] = set()
        self.lock = threading.Lock()
        self.read = 0  # calls read from the client (written by the reader thread only)
        self.added = 0  # calls made here for it (deletions of its agents once it is gone), under the lock
        self.finals = 0  # final replies sent, under the lock
        self.draining = False  # the client sent its last call
        self.owned: list = []  # the agents its client created as its own (HostedAgent), released at its end
        self.starts: list = []  # the jobs the calls of the frame being read need, handed to workers after it

    # -- calls in --------------------------------------------------------------------------

    def start_reading(self, requests: Iterator[tuple],
                      accept: Callable[[pb.Call, codec.Encoded | frames.PayloadError, ClientSession], None],
                      start: Callable[[list], None]) -> None:
        """Read the client's frames on a thread of their own, handing each call to
        ``accept(call, payload, session)``; the payload is a PayloadError when the
        call's payload was refused (too large, or chunks not adding up).

        After each frame, ``start(jobs)`` hands the jobs its calls left in
        ``starts`` to the workers: all at once, so that no worker woken for a call
        of the frame contends for the GIL (or a mailbox's lock) with the reader
        while it takes the next ones (which would leave them a call at a time).
        """
        threading.Thread(target=self._read, args=(requests, accept, start), name="agentnb-session-reader",
                         daemon=True).start()

    def _read(self, requests: Iterator[tuple],
              accept: Callable[[pb.Call, codec.Encoded | frames.PayloadError, ClientSession], None],
              start: Callable[[list], None]) -> None:
        incoming = frames.Reassembly(shm=self.shm_dir)  # large calls whose chunks are on their way
        try:
            for calls, chunk in requests:
                for call, payload in incoming.receive(calls, chunk):
                    accept(call, payload, self)
                # Not held here until the next frame: a payload may hold a segment its writer waits for.
                call = payload = None  # type: ignore[assignment]
                if self.starts:
                    jobs, self.starts = self.starts, []
                    start(jobs)
        except (grpc.RpcError, OSError):
            self.close()  # the client went away
        except Exception:
            _LOGGER.exception("session reader failed")
            self.close()
        else:  # the client sent its last call: its replies still go out
            self.drain()
        finally:
            incoming.close()

    # -- replies out -----------------------------------------------------------------------

    def replies(self) -> Iterator[pb.ServerFrame | frames.Chunk]:
        """The frames of the replies put in the outbox, until the stream ends
        (written by ``frames.encode_frame``)."""
        return frames.from_outbox(self.outbox, server_frame, _END, MAX_REPLIES_PER_FRAME, MAX_FRAME_BYTES)

    def opened(self, read: bool = True) -> None:
        """A call was taken: it will get one final reply. ``read``: by the reader thread, from the client."""
        if read:
            self.read += 1
            return
        with self.lock:
            self.added += 1

    def send(self, reply: pb.Reply | frames.Large, final: bool = True) -> None:
        """Queue ``reply`` (made by ``frames.outgoing``); a final one ends its call's count."""
        if type(reply) is pb.Reply and reply.shm_name:
            self._send_file(reply)
        elif not self.closed:
            self.outbox.put(reply)
        if final:
            with self.lock:
                self.finals += 1
                done = self.draining and self.finals >= self.read + self.added
            if done:
                self.close()

    def _send_file(self, reply: pb.Reply) -> None:
        """Queue a reply whose payload is in a shared-memory file, remembering the file;
        once the stream is closed, remove the file instead."""
        with self.lock:
            if not self.closed:
                if len(self.files) >= _MAX_TRACKED_FILES:
                    self.files.intersection_update(self.shm_dir.files())  # type: ignore[union-attr]
                self.files.add(reply.shm_name)
                self.outbox.put(reply)
                return
        self.shm_dir.remove(reply.shm_name)  # type: ignore[union-attr]

    # -- the end ---------------------------------------------------------------------------

    def drain(self) -> None:
        """The client half-closed its side: end the stream once every call taken has its reply."""
        with self.lock:
            self.draining = True
            done = self.finals >= self.read + self.added
        if done:
            self.close()

    def end(self) -> None:
        """End the stream after the replies already queued (the server is stopping)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        self.outbox.put(_END)

    def close(self) -> None:
        """End the stream, and remove the files of replies sent on it that the client did not take."""
        with self.lock:
            self.closed = True
            files, self.files = self.files, set()
        self.outbox.put(_END)
        for name in files:
            self.shm_dir.remove(name)  # type: ignore[union-attr]
        if self.shm_pool is not None:
            self.shm_pool.close()


class Task:
    """A call taken from a session, until its final reply is sent there."""

    __slots__ = ("call", "payload", "session", "cancelled", "started")

    def __init__(self, call: pb.Call, payload: codec.Encoded | frames.PayloadError, session: ClientSession,
                 read: bool = True) -> None:
        self.call = call
        self.payload = payload  # the call's payload, with its parts when it came in chunks
        self.session = session
        self.cancelled = False  # a CANCEL took it out of its mailbox before it ran
        self.started = False  # a worker took it to run (then it can no longer be cancelled)
        session.opened(read)
