"""Msg: the message agents exchange."""

from __future__ import annotations

import copyreg
import time
from typing import Any

from agentnb.wire.ids import random_hex

# The second of the last timestamp made, and its text: a million messages a round need it
# formatted once a second, not once each (time.strftime is most of a message's making).
_last_stamp: tuple[int, str] = (-1, "")


def _timestamp() -> str:
    """The local time now, to the second (``2026-12-04 10:37:46``)."""
    global _last_stamp
    second = int(time.time())
    stamp = _last_stamp
    if stamp[0] != second:
        stamp = _last_stamp = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
    return stamp[1]


class Msg(dict[str, Any]):
    """A message: a dict whose keys also read as attributes.

    ``Msg(name="W0", role="assistant", content="hi")`` has ``msg.content`` and
    ``msg["content"]``; extra keyword arguments become further keys. Every
    message gets an ``id`` and a ``timestamp``.
    """

    def __init__(self, name: str, content: Any = None, role: str = "assistant", **kwargs: Any) -> None:
        if "id" not in kwargs:
            kwargs["id"] = random_hex()
        if "timestamp" not in kwargs:
            kwargs["timestamp"] = _timestamp()
        super().__init__(name=name, role=role, content=content, **kwargs)

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"'Msg' object has no attribute {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __reduce__(self) -> Any:
        # Made again as its own class (a subclass of Msg comes back as itself), then its items set:
        # the pickle's own opcodes (NEWOBJ, SETITEMS), no Python function run and no copy of the items.
        return (copyreg.__newobj__, (type(self),), None, None,  # type: ignore[attr-defined]  # (not in its stubs)
                iter(self.items()))

    def __repr__(self) -> str:
        return f"Msg(name={self.get('name')!r}, role={self.get('role')!r}, content={self.get('content')!r})"


def _rebuild_msg(data: dict[str, Any], cls: type[Msg] = Msg) -> Msg:
    """A message as agentnb 0.2 pickled it (kept so that such pickles still load)."""
    msg = cls.__new__(cls)
    dict.update(msg, data)
    return msg
