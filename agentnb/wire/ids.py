"""Random ids for agents, tasks and messages, made without a system call each.

``uuid.uuid4()`` reads ``os.urandom`` at every call, which costs tens of
microseconds on some machines, a large part of an asynchronous call's
client-side cost. Ids here come from a generator
seeded once from ``os.urandom`` (and seeded again in a forked child, so that
parent and child never make the same ids). They are unique, not secret: what
guards an agent server is its token, not the names of its agents and tasks.
"""

from __future__ import annotations

import os
import random

_generator = random.Random(os.urandom(32))


def _reseed() -> None:
    _generator.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def random_hex(digits: int = 32) -> str:
    """``digits`` random hexadecimal digits (32: as many bits as a uuid4)."""
    return f"{_generator.getrandbits(4 * digits):0{digits}x}"
