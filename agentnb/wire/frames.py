"""The wire form of large payloads, on the session stream and GetResult.

A Call or Reply whose payload is large carries only its pickle stream (or
nothing, when the stream is large too) and the sizes of its parts; the parts
follow in Chunk frames (``protos/agentnb.proto``). Session streams and
GetResult use the serializer and deserializers below in place of the
generated ones: chunk frames are written and read by hand, everything else by
protobuf, so that no protobuf message is built around a chunk's bytes (at
hundreds of MiB, every copy counts). Between processes of the same host, the
parts go through a shared-memory file instead (:mod:`agentnb.wire.shm`): the
message then names that file, and no chunks follow. The values themselves are
pickled by :mod:`agentnb.wire.codec`.
"""

from __future__ import annotations

import ctypes
import queue
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from google.protobuf.message import Message

from agentnb._proto import agentnb_pb2 as pb
from agentnb.errors import AgentServerError
from agentnb.wire import buffers
from agentnb.wire.codec import MAX_PAYLOAD_BYTES, Encoded, Payload
from agentnb.wire.shm import MappedSegments, SegmentPool, ShmDir

# The frame type a stream sends (pb.ClientFrame or pb.ServerFrame).
FrameT = TypeVar("FrameT", bound=Message)

# Large payloads travel in chunks of this size: the sender copies one chunk
# while the receiver takes the previous one, and no message is huge.
CHUNK_BYTES = 2**20


class PayloadError(AgentServerError):
    """A payload's chunks do not add up (or it is too large); ``message`` is its Call or Reply."""

    def __init__(self, text: str, message: Any) -> None:
        super().__init__(text)
        self.message = message


class Large:
    """A Call or Reply waiting to be sent, with the parts that follow it in chunks."""

    __slots__ = ("message", "parts")

    def __init__(self, message: Any, parts: list) -> None:
        self.message = message
        self.parts = parts


class Chunk:
    """One chunk: a slice of a part of the payload of call (or reply) ``seq``.

    ``data`` is a view, not a copy: of the part, for one to send; of the
    frame's bytes, for one received, which also has those bytes as
    ``source`` and where ``data`` starts in them as ``offset``.
    """

    __slots__ = ("seq", "data", "source", "offset")

    def __init__(self, seq: int, data: memoryview, source: bytes | None = None, offset: int = 0) -> None:
        self.seq = seq
        self.data = data
        self.source = source
        self.offset = offset


def to_parts(payload: Encoded) -> tuple[bytes, list]:
    """Split a payload for the wire: what the message's ``payload`` field holds, and the parts that follow."""
    if type(payload) is Payload:
        data, parts = payload.data, list(payload.buffers)
    else:
        data, parts = payload, []  # type: ignore[assignment]
    if len(data) > CHUNK_BYTES:  # a large pickle stream (a long list, a long str) is chunked too
        return b"", [data, *parts]
    return data, parts


def from_parts(data: bytes, parts: list) -> Encoded:
    """The payload :func:`to_parts` split (a pickle stream is never empty: an empty field means "first part")."""
    if not data and parts:
        data, parts = parts[0], parts[1:]
    return Payload(data, parts) if parts else data


def outgoing(message: Any, payload: Encoded, shm: SegmentPool | ShmDir | None = None) -> Any:
    """``message`` (a Call or Reply, its other fields set) with ``payload``, to queue for sending:
    a :class:`Large` when it has parts.

    With ``shm`` (the receiver shares the host and can read that directory:
    the stream's pool of segments, or the directory itself for a segment used
    once), the parts are written to a segment and the message, naming it, is
    all there is to send; when no segment can be written, they go in chunks.
    """
    if type(payload) is bytes and len(payload) <= CHUNK_BYTES:  # most calls: no parts
        message.payload = payload
        return message
    data, parts = to_parts(payload)
    message.payload = data
    if not parts:
        return message
    writable = [not memoryview(p).readonly for p in parts]
    message.shm_name = _to_shm(shm, parts)
    message.part_sizes.extend(len(p) for p in parts)
    if any(writable):
        message.part_writable.extend(writable)
    return message if message.shm_name else Large(message, parts)


def _to_shm(shm: SegmentPool | ShmDir | None, parts: list) -> str:
    """The name of a shared-memory file holding ``parts``; empty when they are to be streamed."""
    if shm is None:
        return ""
    try:
        return shm.write(parts)
    except OSError:  # /dev/shm full or gone: stream
        return ""


def chunks(seq: int, parts: list) -> Iterator[Chunk]:
    """The chunks of ``parts``, in order; none spans two parts."""
    for part in parts:
        view = memoryview(part).cast("B")
        for start in range(0, len(view), CHUNK_BYTES):
            yield Chunk(seq, view[start:start + CHUNK_BYTES])


def from_outbox(outbox: queue.SimpleQueue, make_frame: Callable[[list], FrameT], close: object,
                max_messages: int, max_bytes: int) -> Iterator[FrameT | Chunk]:
    """The frames to send for the Calls (or Replies) put in ``outbox``, until ``close`` is put.

    Messages waiting together share a frame (up to ``max_messages`` messages
    or ``max_bytes`` of payload); a large message ends its frame, and its
    chunks follow it at once, so that the stream never interleaves two
    payloads and messages stay in the order they were put.
    """
    while True:
        item = outbox.get()
        if item is close:
            return
        batch: list = []
        size = 0
        while True:
            if type(item) is Large:
                batch.append(item.message)
                break
            batch.append(item)
            size += len(item.payload)
            if len(batch) >= max_messages or size >= max_bytes:
                break
            try:
                item = outbox.get_nowait()
            except queue.Empty:
                break
            if item is close:
                yield make_frame(batch)
                return
        yield make_frame(batch)
        if type(item) is Large:
            yield from chunks(item.message.seq, item.parts)


def of_item(item: Any, make_frame: Callable[[list], FrameT]) -> Iterator[FrameT | Chunk]:
    """The frames of one message made by :func:`outgoing`: its frame, then its chunks."""
    if type(item) is Large:
        yield make_frame([item.message])
        yield from chunks(item.message.seq, item.parts)
    else:
        yield make_frame([item])


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(raw: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[pos]  # IndexError at the end: the caller's fallback
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


# The tag of field 2 (chunk, in ClientFrame and ServerFrame; data, in Chunk), length-delimited.
_TAG_2_BYTES = b"\x12"
_TAG_1_VARINT = 0x08


def encode_frame(item: Message | Chunk) -> bytes:
    """Serialize a frame for the session stream; a chunk is written by hand, with one copy of its data.

    The bytes are exactly what protobuf makes of a ClientFrame (or ServerFrame)
    holding only that chunk.
    """
    if type(item) is not Chunk:
        return item.SerializeToString()  # type: ignore[union-attr]
    data = item.data
    body = (bytes((_TAG_1_VARINT,)) + _varint(item.seq) if item.seq else b"") + _TAG_2_BYTES + _varint(len(data))
    return b"".join((_TAG_2_BYTES, _varint(len(body) + len(data)), body, data))


def _read_chunk(raw: bytes) -> Chunk | None:
    """The chunk of a frame that holds only a chunk, read without copying; None for any other frame."""
    view = memoryview(raw)
    try:
        length, pos = _read_varint(view, 1)
        if pos + length != len(view):
            return None
        seq = 0
        data = None
        while pos < len(view):
            tag = view[pos]
            if tag == _TAG_1_VARINT:
                seq, pos = _read_varint(view, pos + 1)
            elif tag == _TAG_2_BYTES[0]:
                size, pos = _read_varint(view, pos + 1)
                if pos + size > len(view):
                    return None
                data, offset, pos = view[pos:pos + size], pos, pos + size
            else:
                return None  # anything unusual: protobuf reads it
    except (IndexError, ValueError):
        return None
    if data is None:
        return Chunk(seq, view[0:0], raw, 0)
    return Chunk(seq, data, raw, offset)


def _frame_decoder(frame_type: type[pb.ClientFrame] | type[pb.ServerFrame],
                   field: str) -> Callable[[bytes], tuple[Any, Chunk | None]]:
    def decode(raw: bytes) -> tuple[Any, Chunk | None]:
        if raw[:1] == _TAG_2_BYTES:
            chunk = _read_chunk(raw)
            if chunk is not None:
                return (), chunk
        frame = frame_type.FromString(raw)
        if frame.HasField("chunk"):
            data = frame.chunk.data
            return getattr(frame, field), Chunk(frame.chunk.seq, memoryview(data), data, 0)
        return getattr(frame, field), None

    decode.__doc__ = f"Parse a {frame_type.__name__}: its {field}, and its chunk (or None)."
    return decode


# Deserializers of the two directions of a session stream (and of GetResult).
decode_client_frame = _frame_decoder(pb.ClientFrame, "calls")
decode_server_frame = _frame_decoder(pb.ServerFrame, "replies")


def _address(data: bytes) -> int:
    """Where the bytes of a ``bytes`` object are in memory."""
    return buffers.address(data)


def _blank_part(size: int, writable: bool) -> tuple[bytes | bytearray, int]:
    """A buffer of ``size`` bytes to receive a part into, and the address to write it at.

    A read-only part becomes a ``bytes`` object filled in place while its
    chunks arrive (``PyBytes_FromStringAndSize(NULL, size)``: the C API's way
    to build a bytes object, written only before anyone else sees it; see
    :func:`agentnb.wire.buffers.fresh`). So the one copy the receiver makes
    overlaps the transfer, and the bytes value a caller gets is that object
    (see codec._OutOfBand), not a copy of it. Chunks are copied in with
    ``ctypes.memmove``, which lets go of the GIL: gRPC's thread takes in the
    next chunk meanwhile.
    """
    if size == 0:
        return (bytearray() if writable else b""), 0
    target = buffers.fresh(size, bytearray if writable else bytes)
    return target, buffers.address(target)


class _Incoming:
    __slots__ = ("message", "data", "sizes", "writable", "parts", "target", "address", "size", "filled")

    def __init__(self, message: Any, sizes: list[int]) -> None:
        self.message = message
        self.data = message.payload
        self.sizes = sizes
        self.writable = list(message.part_writable)
        self.parts: list[bytes | bytearray] = []
        self.target: bytes | bytearray | None = None  # the part being filled, where it is, its size
        self.address = 0
        self.size = 0
        self.filled = 0

    def next_part(self) -> None:
        index = len(self.parts)
        writable = index < len(self.writable) and self.writable[index]
        self.size = self.sizes[index]
        try:
            self.target, self.address = _blank_part(self.size, writable)
        except MemoryError:
            raise PayloadError(f"no memory for a payload part of {self.sizes[index]} bytes", self.message) from None
        self.filled = 0


class Reassembly:
    """Payloads arriving in chunks, by the seq of the Call or Reply that announced them.

    Each part is received into its final buffer: one copy per chunk, as it
    arrives, and no join at the end.
    """

    def __init__(self, max_bytes: int = MAX_PAYLOAD_BYTES, shm: ShmDir | None = None) -> None:
        self._open: dict[int, _Incoming] = {}
        self._max_bytes = max_bytes
        # Where payloads naming a shared-memory segment are read from (the segments of this stream).
        self._segments = MappedSegments(shm) if shm is not None else None

    def __len__(self) -> int:
        return len(self._open)

    def close(self) -> None:
        """Let go of the stream's shared-memory segments (it ended); values using one keep it."""
        if self._segments is not None:
            self._segments.close()

    def start(self, message: Any) -> tuple[Any, Encoded] | None:
        """Expect the parts of ``message`` (a Call or Reply with ``part_sizes``).

        Returns ``(message, payload)`` at once if no bytes are to come (also
        when the parts are in a shared-memory file: they are read now).
        Raises PayloadError if the announced payload is too large, or its
        shared-memory file cannot be read.
        """
        sizes = list(message.part_sizes)
        total = sum(sizes)
        if total > self._max_bytes:
            raise PayloadError(f"a payload of {total} bytes is above the limit of {self._max_bytes} bytes "
                               "(MAX_PAYLOAD_BYTES) per call", message)
        awaited = sum(sum(incoming.sizes) for incoming in self._open.values())
        if awaited + total > self._max_bytes:  # a stream sends one payload's chunks at a time
            raise PayloadError(f"a payload of {total} bytes announced while {awaited} bytes of others are still "
                               f"awaited: above the limit of {self._max_bytes} bytes (MAX_PAYLOAD_BYTES) at once",
                               message)
        if message.shm_name:
            return message, from_parts(message.payload, self._read_shm(message, sizes))
        incoming = _Incoming(message, sizes)
        self._open[message.seq] = incoming
        return self._advance(incoming)

    def receive(self, messages: Iterable[Any], chunk: Chunk | None) -> Iterator[tuple[Any, Encoded | PayloadError]]:
        """The Calls (or Replies) that one frame completes, in order, each with its payload.

        A message without parts is complete at once; one with parts, when its
        last chunk is in (or at once, when they are in a shared-memory file).
        A message refused (too large, chunks that do not fit its sizes, a file
        that cannot be read) comes with its PayloadError in place of its
        payload: the frame's other messages still come, and so do later ones.
        """
        for message in messages:
            done = self._step(self.start, message) if message.part_sizes else (message, message.payload)
            if done is not None:
                yield done
        if chunk is not None:
            done = self._step(self.add, chunk)
            if done is not None:
                yield done

    @staticmethod
    def _step(step: Callable[[Any], tuple[Any, Encoded] | None],
              arg: Any) -> tuple[Any, Encoded | PayloadError] | None:
        """``step(arg)``, with a PayloadError returned beside its message instead of raised."""
        try:
            return step(arg)
        except PayloadError as exc:
            return exc.message, exc

    def _read_shm(self, message: Any, sizes: list[int]) -> list:
        """The parts of ``message``: views of the shared-memory file it names (whose name is removed)."""
        if self._segments is None:
            raise PayloadError(f"refused the shared-memory payload {message.shm_name!r}: this stream does "
                               "not take shared-memory payloads", message)
        try:
            return self._segments.read(message.shm_name, sizes, message.part_writable)
        except MemoryError:
            raise PayloadError(f"no memory for a payload of {sum(sizes)} bytes", message) from None
        except OSError as exc:
            raise PayloadError(str(exc), message) from None

    def add(self, chunk: Chunk) -> tuple[Any, Encoded] | None:
        """Take one chunk; return ``(message, payload)`` when it was the last one of its message.

        A chunk of a message that was not announced (or was refused) is
        dropped. Raises PayloadError, and forgets the message, when a chunk
        does not fit the announced sizes.
        """
        incoming = self._open.get(chunk.seq)
        if incoming is None:
            return None
        length = len(chunk.data)
        if incoming.target is None or incoming.filled + length > incoming.size:
            del self._open[chunk.seq]
            raise PayloadError(f"the chunks of payload {chunk.seq} do not match the sizes it announced "
                               f"({incoming.sizes})", incoming.message)
        assert chunk.source is not None  # a received chunk keeps its frame's bytes
        ctypes.memmove(incoming.address + incoming.filled, _address(chunk.source) + chunk.offset, length)
        incoming.filled += length
        return self._advance(incoming)

    def _advance(self, incoming: _Incoming) -> tuple[Any, Encoded] | None:
        """Close the parts that are full and open the next; the message and its payload once all are."""
        sizes, parts = incoming.sizes, incoming.parts
        while True:
            if incoming.target is not None:
                if incoming.filled < incoming.size:
                    return None
                parts.append(incoming.target)
                incoming.target = None
            if len(parts) == len(sizes):
                break
            try:
                incoming.next_part()
            except PayloadError:
                del self._open[incoming.message.seq]
                raise
        del self._open[incoming.message.seq]
        return incoming.message, from_parts(incoming.data, parts)
