"""How values travel: cloudpickle, with agentnb's own error reporting.

Classes and functions defined in ``__main__`` (a script, a notebook cell) are
pickled by value, so a server runs them without any registration; importable
ones travel by reference. Proxies (RpcObject) and AsyncResults pickle as
references to where they live (see their ``__reduce__``).

Large buffers (``bytes`` and ``bytearray`` arguments or results, NumPy arrays)
are pickled out of band (pickle protocol 5): they are not copied into the
pickle stream, and travel as the parts of a :class:`Payload`, in chunks
(see :mod:`agentnb.wire.frames`).
"""

from __future__ import annotations

import contextlib
import io
import operator
import pickle
import traceback
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle
from cloudpickle import cloudpickle as _cloudpickle_internals

from agentnb.errors import RemoteError, SerializationError
from agentnb.wire import tracebacks
from agentnb.wire.buffers import copy_out

PROTOCOL = 5
# The most a call's argument or result may take, pickled (a limit of the seed's
# unary messages, kept so that one call cannot take all of a server's memory).
MAX_PAYLOAD_BYTES = 2**31 - 2**20
# A bytes, bytearray or array this large is pickled out of band (see Payload).
OUT_OF_BAND_BYTES = 256 * 2**10
# How many items of an argument's lists, tuples and dicts are searched for large buffers.
_SEARCH_LIMIT = 256


class Payload:
    """A pickled value whose large buffers are kept apart from its pickle stream.

    ``data`` is the pickle stream; ``buffers`` are the out-of-band buffers it
    refers to, in order: flat byte buffers (``bytes``, ``bytearray`` or
    ``memoryview``), writable where the value they rebuild must be.
    """

    __slots__ = ("data", "buffers")

    def __init__(self, data: bytes, buffers: list) -> None:
        self.data = data
        self.buffers = buffers

    @property
    def nbytes(self) -> int:
        """Its size: the pickle stream and all buffers."""
        return len(self.data) + sum(len(b) for b in self.buffers)

    def __repr__(self) -> str:
        return f"<Payload {len(self.data)} bytes + {len(self.buffers)} buffers, {self.nbytes} bytes in all>"


# What dumps returns and loads takes: plain bytes unless the value had large buffers.
Encoded = bytes | Payload


class _OutOfBand:
    """Stands in for a large bytes or bytearray while pickling, so that it goes out of band.

    Exact ``bytes`` and ``bytearray`` never reach a pickler's hooks (they are
    written in band by the C pickler), so :class:`_Scan` swaps them for
    this before pickling. Unpickled with a ``bytes`` buffer, a ``bytes`` value
    is that very object: no copy. From any other buffer (a view of a
    shared-memory mapping), it is copied out once (without the GIL, into
    memory that faults in huge pages: see :mod:`agentnb.wire.buffers`), since
    a ``bytes`` or ``bytearray`` owns its memory and cannot be a view.
    """

    __slots__ = ("obj",)

    def __init__(self, obj: bytes | bytearray) -> None:
        self.obj = obj

    def __reduce__(self) -> tuple:
        rebuild = _bytes_of if type(self.obj) is bytes else _bytearray_of
        return rebuild, (pickle.PickleBuffer(self.obj),)


def _bytes_of(buffer: Any) -> bytes:
    """A bytes unpickled from its out-of-band buffer: that buffer itself when it is one (no copy)."""
    return buffer if type(buffer) is bytes else copy_out(buffer, bytes)  # type: ignore[return-value]


def _bytearray_of(buffer: Any) -> bytearray:
    """A bytearray unpickled from its out-of-band buffer: that buffer itself when it is one (no copy)."""
    return buffer if type(buffer) is bytearray else copy_out(buffer, bytearray)  # type: ignore[return-value]


# Types plain pickle writes exactly as cloudpickle does (no code, no classes).
_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes, bytearray})
_SMALL_SCALARS = _SCALARS - {bytes, bytearray}  # never set apart, whatever their size
# cloudpickle's own test of whether a class travels by reference (an importable
# class, not in __main__ nor in a module registered to travel by value); such
# a class is written by plain pickle exactly as cloudpickle writes it.
_by_reference = getattr(_cloudpickle_internals, "_should_pickle_by_reference", lambda obj: False)


class _Scan:
    """One look over a value before it is pickled.

    It wraps large bytes and bytearrays (in lists, tuples and dicts) in
    :class:`_OutOfBand`, rebuilding containers only where it wrapped one, and
    tells whether the value is made of builtin scalars, containers and
    importable classes only (``plain``): such a value needs none of
    cloudpickle's work, and the C pickler alone is several times faster for
    the small arguments and results of most calls (and for the class of an
    agent being created). At most ``_SEARCH_LIMIT`` items are looked at in all; a
    container longer than what is left is not searched (and not plain).
    """

    __slots__ = ("budget", "seen", "plain")

    def __init__(self) -> None:
        self.budget = _SEARCH_LIMIT
        self.seen: dict[int, _OutOfBand] = {}
        self.plain = True

    def visit(self, value: Any) -> Any:
        kind = type(value)
        if kind in _SCALARS:
            if (kind is bytes or kind is bytearray) and len(value) >= OUT_OF_BAND_BYTES:
                return self._wrap(value)
            return value
        if kind is tuple or kind is list:
            if not value or not self._searched(value):
                return value
            items = [self.visit(item) for item in value]
            if all(map(operator.is_, items, value)):
                return value
            return kind(items)
        if kind is dict:
            if not value or not self._searched(value):
                return value
            for key in value:
                if type(key) not in _SCALARS:
                    self.plain = False
            changed = {}
            for key, item in value.items():
                new = self.visit(item)
                if new is not item:
                    changed[key] = new
            return {**value, **changed} if changed else value
        if self.plain and isinstance(value, type) and _class_by_reference(value):
            return value
        if (self.plain and isinstance(value, dict) and _class_by_reference(kind)
                and not getattr(value, "__dict__", None) and hosted_reduction(value) is None):
            # A dict of an importable class (a Msg) with no attributes of its own: plain when its keys
            # and values are (its own reduction may still need cloudpickle: see dumps). It is kept
            # whole: a large bytes in it goes in band (plain=False), as cloudpickle would send it.
            if value and not self._searched(value):
                return value
            for key, item in value.items():
                if type(key) not in _SCALARS:
                    self.plain = False
                elif type(item) in _SMALL_SCALARS:  # (most of a message: spares a call of visit)
                    continue
                if self.visit(item) is not item:
                    self.plain = False
            return value
        self.plain = False
        return value

    def _searched(self, container: tuple | list | dict) -> bool:
        """Whether ``container`` is searched: it fits in what is left of the budget (and takes it)."""
        if len(container) > self.budget:
            self.plain = False
            return False
        self.budget -= len(container)
        return True

    def _wrap(self, value: bytes | bytearray) -> _OutOfBand:
        wrapper = self.seen.get(id(value))
        if wrapper is None:
            wrapper = self.seen[id(value)] = _OutOfBand(value)
        return wrapper


# Classes seen (an agent's class at its creation, a Msg's), and whether each travels by reference:
# asked once per class, since cloudpickle's test looks the class up in its module each time (several
# us, on every creation and every message). Forgotten when a module is registered to travel by value.
_by_reference_known: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()
_by_value_modules: set[str] | frozenset[str] = getattr(_cloudpickle_internals, "_PICKLE_BY_VALUE_MODULES", frozenset())
_known_with = len(_by_value_modules)


def _class_by_reference(cls: type) -> bool:
    global _known_with
    if len(_by_value_modules) != _known_with:
        _by_reference_known.clear()
        _known_with = len(_by_value_modules)
    try:
        known = _by_reference_known.get(cls)
    except TypeError:  # a class that cannot be weakly referenced
        return bool(_by_reference(cls))
    if known is None:
        known = bool(_by_reference(cls))
        with contextlib.suppress(TypeError):
            _by_reference_known[cls] = known
    return known


# Set by an agent server (see set_hosted_reducer): how an object it hosts pickles.
_hosted_reducer: Callable[[object], Any] | None = None


def set_hosted_reducer(reducer: Callable[[object], Any] | None) -> None:
    """Make the objects this process hosts as agents pickle as proxies to themselves.

    ``reducer(obj)`` returns the reduction of a proxy (as ``__reduce__``
    would) when ``obj`` is a hosted agent, else None. An agent server sets it,
    so that an agent handing ``self`` to another agent (or returning it)
    hands over a reference to itself, not a copy that would live apart.
    """
    global _hosted_reducer
    _hosted_reducer = reducer


def hosted_reduction(obj: object) -> Any:
    """The reduction of a proxy to ``obj`` when this process hosts it as an agent
    (see :func:`set_hosted_reducer`), else None."""
    reducer = _hosted_reducer
    return None if reducer is None else reducer(obj)


# cloudpickle names the file of the code it pickles by value "<dynamic-code>".
_ANONYMOUS_FILE = "<dynamic-code>"
_reduce_code = getattr(_cloudpickle_internals, "_code_reduce", None)


def _code_with_its_file(code: types.CodeType) -> Any:
    """cloudpickle's reduction of ``code``, keeping the name of the file it was defined in.

    The server then reports a failure in it at its real place (a notebook cell's
    file, a script), which the caller can show with its source (see
    :mod:`agentnb.wire.tracebacks`).
    """
    rebuild, args = _reduce_code(code)  # type: ignore[misc]
    if _ANONYMOUS_FILE in args:
        args = list(args)
        args[args.index(_ANONYMOUS_FILE)] = code.co_filename
    return rebuild, tuple(args)


class _HostPickler(cloudpickle.Pickler):
    """cloudpickle, keeping code's file names, and with the agents of this server replaced by proxies to them."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType and _reduce_code is not None:
            return _code_with_its_file(obj)
        reducer = _hosted_reducer
        if reducer is not None:
            reduced = reducer(obj)
            if reduced is not None:
                return reduced
        return super().reducer_override(obj)


def dumps(value: Any, what: str | Callable[[], str] = "value") -> Encoded:
    """Pickle ``value``; raise SerializationError naming ``what`` when it cannot be (a callable
    ``what`` is asked for the name then only, as by :func:`loads`).

    Returns the pickle's bytes, or a :class:`Payload` when large buffers were
    set apart.
    """
    buffers: list[memoryview | bytearray] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < OUT_OF_BAND_BYTES:
            return True  # in band
        # A read-only buffer (bytes) is sent as it is. A writable one (bytearray,
        # array) is copied now, as pickling in band would: its owner may change
        # it before its chunks are sent (an async call, an agent's own buffer).
        buffers.append(raw if raw.readonly else bytearray(raw))
        return False

    scan = _Scan()
    try:
        value = scan.visit(value)
        data = None
        if scan.plain:
            try:
                data = pickle.dumps(value, protocol=PROTOCOL, buffer_callback=out_of_band)
            except Exception:  # a dict subclass whose own reduction needs cloudpickle: let it try
                if not _dict_subclass_in(value):
                    raise
                buffers.clear()
        if data is None:  # cloudpickle (plus, in a server, its agents as proxies: see set_hosted_reducer)
            file = io.BytesIO()
            _HostPickler(file, protocol=PROTOCOL, buffer_callback=out_of_band).dump(value)
            data = file.getvalue()
    except Exception as exc:  # pickling raises many types: TypeError, PicklingError, AttributeError...
        raise SerializationError(f"{named(what)} cannot be pickled ({type(exc).__name__}: {exc})") from exc
    if not buffers:
        if len(data) > MAX_PAYLOAD_BYTES:
            raise _too_large(what, len(data))
        return data
    payload = Payload(data, buffers)
    if payload.nbytes > MAX_PAYLOAD_BYTES:
        raise _too_large(what, payload.nbytes)
    return payload


def _dict_subclass_in(value: Any) -> bool:
    """Whether a value the scan found plain holds a dict subclass (only those may fail plain pickling)."""
    kind = type(value)
    if kind is tuple or kind is list:
        return any(_dict_subclass_in(item) for item in value)
    if kind is dict:
        return any(_dict_subclass_in(item) for item in value.values())
    return isinstance(value, dict)


def named(what: str | Callable[[], str]) -> str:
    """What :func:`dumps` and :func:`loads` (and their callers) name in an error: ``what``, or what it makes."""
    return what if type(what) is str else what()  # type: ignore[operator]


def _too_large(what: str | Callable[[], str], size: int) -> SerializationError:
    return SerializationError(f"{named(what)} is {size} bytes pickled, above the limit of "
                              f"{MAX_PAYLOAD_BYTES} bytes (MAX_PAYLOAD_BYTES) per call")


def loads(data: Encoded, what: str | Callable[[], str] = "value") -> Any:
    """Unpickle ``data`` (bytes or a Payload); raise SerializationError naming ``what`` when it cannot be
    (a callable ``what`` is asked for the name then only: a million results need no name made)."""
    try:
        if type(data) is Payload:
            return pickle.loads(data.data, buffers=data.buffers)
        return pickle.loads(data)  # type: ignore[arg-type]
    except Exception as exc:
        raise SerializationError(f"{named(what)} cannot be unpickled ({type(exc).__name__}: {exc})") from exc


@dataclass
class RemoteErrorInfo:
    """An exception raised on a server, as it travels back to the caller."""

    type_name: str
    message: str
    traceback: str  # the server's whole traceback, as text
    pickled: bytes | None  # the exception itself, when it could be pickled
    # The frames it went through outside agentnb (tracebacks.RemoteFrame tuples), outermost first.
    frames: tuple = ()
    where: str = ""  # which agent on which server raised it


def encode_error(exc: BaseException, where: str = "") -> bytes:
    """Pickle ``exc`` with its traceback (as text and as frames) for the trip back to the caller."""
    tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    pickled: bytes | None
    try:
        dumped: bytes = cloudpickle.dumps(exc, protocol=PROTOCOL)
        pickle.loads(dumped)  # an exception that pickles may still fail to rebuild
        pickled = dumped
    except Exception:
        pickled = None
    type_name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    frames = tuple(tuple(frame) for frame in tracebacks.remote_frames(exc.__traceback__))
    info = RemoteErrorInfo(type_name, str(exc), f"{where}\n{tb_text}" if where else tb_text, pickled,
                           frames, where)
    return pickle.dumps(info, protocol=PROTOCOL)


def decode_error(payload: Encoded, address: str) -> BaseException:
    """Rebuild the remote exception, as its own type where possible.

    Its traceback holds the frames of the agent's code on the server
    (agentnb's own left out), so that, raised here, it reads as a local error
    would; a note says which agent and server raised it. The server's whole
    traceback text is kept as the ``remote_traceback`` attribute.
    """
    try:
        # A Payload (encode_error never makes one) fails here, as any undecodable error does.
        info: RemoteErrorInfo = pickle.loads(payload)  # type: ignore[arg-type]
    except Exception as exc:
        return RemoteError("unknown", f"undecodable error from the agent server at {address}: {exc}")
    exc_obj: BaseException | None = None
    if info.pickled is not None:
        try:
            exc_obj = pickle.loads(info.pickled)
        except Exception:
            exc_obj = None
    if not isinstance(exc_obj, BaseException):
        exc_obj = RemoteError(info.type_name, info.message, info.traceback)
    try:
        exc_obj.remote_traceback = info.traceback  # type: ignore[attr-defined]
    except AttributeError:  # exceptions with __slots__
        pass
    where = getattr(info, "where", "").strip("()") or "on the agent server"
    exc_obj.add_note(f"(raised {where} at {address})")
    return exc_obj.with_traceback(tracebacks.rebuild(getattr(info, "frames", ())))
