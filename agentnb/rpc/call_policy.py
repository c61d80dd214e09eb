"""Per-agent call settings given to ``to_dist``: a default time limit, and retries of reads.

``to_dist={..., "max_timeout_seconds": 30, "retry_strategy": {...}}`` (the seed's option
names) make a :class:`CallPolicy` that the proxy, and every AsyncResult of its calls,
carry. The time limit bounds each wait of the caller: a synchronous call, an attribute
read, ``AsyncResult.result()`` without a timeout of its own. The retries apply only to
reads that cannot change anything when repeated (an attribute read, fetching a stored
result) and only when the server could not be reached; a method call is never sent twice.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from agentnb.errors import ServerUnavailable

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

# The seed's names of its two strategies ("expential" is how the seed spells it).
_FIXED = ("fixed",)
_EXPONENTIAL = ("exponential", "expential")


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and after how long, a read whose server could not be reached is tried again.

    Args:
        max_retries: tries after the first one.
        delay: seconds before the first retry.
        backoff: each later delay is the previous one times this (1: a fixed delay).
        max_delay: the longest delay.

    ``to_dist`` also takes the seed's dicts: ``{"type": "fixed", "max_retries": 10,
    "delay": 5}`` and ``{"type": "exponential", "max_retries": 10, "base_delay": 5,
    "max_delay": 300}``.
    """

    max_retries: int = 10
    delay: float = 5.0
    backoff: float = 1.0
    max_delay: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"retry max_retries must be a whole number of at least 0; got {self.max_retries!r}")
        for name in ("delay", "backoff", "max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
                raise ValueError(f"retry {name} must be a number of at least 0; got {value!r}")

    @classmethod
    def parse(cls, value: Any) -> RetryPolicy:
        """A RetryPolicy, or one made from the seed's dict form (see the class)."""
        if isinstance(value, RetryPolicy):
            return value
        if not isinstance(value, Mapping):
            raise TypeError("retry_strategy must be an agentnb.RetryPolicy or a dict such as "
                            f"{{'type': 'fixed', 'max_retries': 3, 'delay': 1}}; got {value!r}")
        settings = dict(value)
        kind = settings.pop("type", None)
        try:
            if kind in _FIXED:
                return cls(**_only(settings, ("max_retries", "delay"), kind))
            if kind in _EXPONENTIAL:
                settings = _only(settings, ("max_retries", "base_delay", "max_delay"), kind)
                if "base_delay" in settings:
                    settings["delay"] = settings.pop("base_delay")
                return cls(backoff=2.0, **settings)
        except TypeError as exc:
            raise TypeError(f"retry_strategy: {exc}") from None
        raise ValueError(f"retry_strategy type must be 'fixed' or 'exponential'; got {kind!r}")

    def delays(self) -> Iterator[float]:
        """The delays before each retry, in order."""
        delay = self.delay
        for _ in range(self.max_retries):
            yield min(delay, self.max_delay)
            delay *= self.backoff


def _only(settings: dict[str, Any], names: tuple[str, ...], kind: str) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise TypeError(f"a {kind!r} retry_strategy takes {', '.join(names)}; not {', '.join(map(repr, unknown))}")
    return settings


@dataclass(frozen=True)
class CallPolicy:
    """What ``to_dist``'s ``max_timeout_seconds`` and ``retry_strategy`` asked for one agent."""

    timeout: float | None = None
    retry: RetryPolicy | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> CallPolicy | None:
        """The policy of a ``to_dist`` dict; None when it sets neither option."""
        timeout, retry = options.get("max_timeout_seconds"), options.get("retry_strategy")
        if timeout is None and retry is None:
            return None
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
                raise ValueError(f"to_dist max_timeout_seconds must be a number above 0; got {timeout!r}")
            timeout = float(timeout)
        return cls(timeout, RetryPolicy.parse(retry) if retry is not None else None)


def retried(policy: CallPolicy | None, read: Callable[[float | None], T], what: str,
            timeout: float | None = None) -> T:
    """``read(timeout)``, tried again by ``policy.retry`` while its server cannot be reached.

    ``read`` must be safe to repeat (it reads; it changes nothing). ``timeout``
    bounds the whole, retries and delays included: each try gets what is left.
    """
    __tracebackhide__ = True
    retry = policy.retry if policy is not None else None
    if retry is None:
        return read(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    delays = retry.delays()
    attempt = 1
    while True:
        left = None if deadline is None else max(0.001, deadline - time.monotonic())
        try:
            return read(left)
        except ServerUnavailable as exc:
            delay = next(delays, None)
            if delay is None or (deadline is not None and time.monotonic() + delay >= deadline):
                raise
            attempt += 1
            _LOGGER.info("%s: %s; trying again in %.2f s (attempt %d of %d)", what, exc, delay, attempt,
                         retry.max_retries + 1)
            time.sleep(delay)  # the pause between tries the retry policy asks for
