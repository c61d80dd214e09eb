"""How values travel: cloudpickle, with agentnb's own error reporting.

Classes and functions defined in ``__main__`` (a script, a notebook cell) are
pickled by value, so a server runs them without any registration; importable
ones travel by reference. Proxies (RpcObject) and AsyncResults pickle as
references to where they live (see their ``__reduce__``).
"""

from __future__ import annotations

import pickle
import traceback
from dataclasses import dataclass
from typing import Any

import cloudpickle

from agentnb.errors import RemoteError, SerializationError

PROTOCOL = 5
# gRPC cannot carry a message of 2 GiB or more; keep room for the envelope.
MAX_PAYLOAD_BYTES = 2**31 - 2**20


def dumps(value: Any, what: str = "value") -> bytes:
    """Pickle ``value``; raise SerializationError naming ``what`` when it cannot be."""
    try:
        data = cloudpickle.dumps(value, protocol=PROTOCOL)
    except Exception as exc:  # pickling raises many types: TypeError, PicklingError, AttributeError...
        raise SerializationError(f"{what} cannot be pickled ({type(exc).__name__}: {exc})") from exc
    if len(data) > MAX_PAYLOAD_BYTES:
        raise SerializationError(f"{what} is {len(data)} bytes pickled, above the limit of "
                                 f"{MAX_PAYLOAD_BYTES} bytes (MAX_PAYLOAD_BYTES) per call")
    return data


def loads(data: bytes, what: str = "value") -> Any:
    """Unpickle ``data``; raise SerializationError naming ``what`` when it cannot be."""
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise SerializationError(f"{what} cannot be unpickled ({type(exc).__name__}: {exc})") from exc


@dataclass
class RemoteErrorInfo:
    """An exception raised on a server, as it travels back to the caller."""

    type_name: str
    message: str
    traceback: str
    pickled: bytes | None  # the exception itself, when it could be pickled


def encode_error(exc: BaseException, where: str = "") -> bytes:
    """Pickle ``exc`` with its traceback text for the trip back to the caller."""
    tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickled: bytes | None = cloudpickle.dumps(exc, protocol=PROTOCOL)
        pickle.loads(pickled)  # an exception that pickles may still fail to rebuild
    except Exception:
        pickled = None
    type_name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    info = RemoteErrorInfo(type_name, str(exc), f"{where}\n{tb_text}" if where else tb_text, pickled)
    return pickle.dumps(info, protocol=PROTOCOL)


def decode_error(payload: bytes, address: str) -> BaseException:
    """Rebuild the remote exception, as its own type where possible.

    The remote traceback is attached as ``remote_traceback`` and as a note, so
    that it appears under the local traceback when the exception is printed.
    """
    try:
        info: RemoteErrorInfo = pickle.loads(payload)
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
    exc_obj.add_note(f"\n--- remote traceback (agent server {address}) ---\n{info.traceback.rstrip()}")
    return exc_obj
