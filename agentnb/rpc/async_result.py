"""AsyncResult: the value of an asynchronous call, on its way."""

from __future__ import annotations

import asyncio
import collections
import operator
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, NamedTuple, TypeVar

from agentnb._proto import agentnb_pb2 as pb
from agentnb.errors import AgentnbError, AgentServerError, ServerUnavailable
from agentnb.progress import as_results, register_result_type
from agentnb.progress import wait as wait_for_results
from agentnb.rpc.call_policy import CallPolicy, retried
from agentnb.rpc.connection import ServerConnection, StoredReply
from agentnb.rpc.future import CallFuture, decode_final
from agentnb.wire import codec
from agentnb.wire.protocol import state_of
from agentnb.wire.states import CANCELLED, DONE, FAILED, FINAL_STATES, QUEUED
from agentnb.wire.tracebacks import user_part

T = TypeVar("T")

_UNSET = object()
# How long done() lets the server look for a result it does not hold yet, in seconds.
_DONE_POLL_TIMEOUT = 0.01
# Seconds cancel() waits for its servers to answer, at most.
CANCEL_TIMEOUT = 10.0

# The AsyncResults of the calls made since the last new_results(), while watch_results()
# is on (a notebook: the calls of the cell that runs, which an interrupt cancels); None
# otherwise, so that a script's calls pay one test for it.
_made: list[AsyncResult[Any]] | None = None
_made_lock = threading.Lock()


class CallInfo(NamedTuple):
    """Which call an :class:`AsyncResult` stands for."""

    agent: str  # the agent's name, or its class name
    method: str
    address: str  # the agent server's address: unix:<path>, or host:port
    task_id: str
    # What a person calls the server: the name given to it ("lab", "farm-1"),
    # "child server of this kernel", or its address when it has no name.
    server: str = ""


class AsyncResult(Generic[T]):
    """The result of an ``@async_func`` call on a distributed object.

    It is returned at once; the server pushes the value when the call is done.
    ``result()`` waits for it. For a composite value (dict, Msg, list, object),
    item and attribute access wait by themselves: ``res["a"]``, ``res.content``.
    ``await res`` works in a coroutine (and at a notebook's top level).

    An AsyncResult can be passed as an argument to another distributed agent:
    the receiving server fetches the value itself.
    """

    # Until set on the instance (a million results a round: each with a smaller __dict__).
    _value: Any = _UNSET
    _error: BaseException | None = None
    _error_tb: TracebackType | None = None  # the remote part of its traceback
    _policy: CallPolicy | None = None  # its agent's max_timeout_seconds and retry_strategy, if given

    def __init__(self, connection: ServerConnection, task_id: str, future: CallFuture | None = None,
                 *, agent: str = "", method: str = "", policy: CallPolicy | None = None) -> None:
        # Straight into __dict__: __setattr__ is the value's (see there), and one AsyncResult
        # is made per async call.
        attrs = self.__dict__
        attrs["_conn"] = connection
        attrs["_task_id"] = task_id
        attrs["_future"] = future
        attrs["_agent"] = agent
        attrs["_method"] = method
        if policy is not None:  # (the others start as the class's: see below)
            attrs["_policy"] = policy
        self._conn: ServerConnection
        self._task_id: str
        self._future: CallFuture | None
        self._agent: str
        self._method: str
        if _made is not None and future is not None:
            _note(self)

    # -- the value -------------------------------------------------------------------------

    def result(self, timeout: float | None = None) -> T:
        """Wait for the value and return it (or raise the remote exception).

        Args:
            timeout: seconds to wait; None waits as long as the call takes, or
                the agent's ``max_timeout_seconds`` if ``to_dist`` was given one.
        Raises:
            TimeoutError: the value did not arrive within ``timeout`` (the call
                goes on on its server; a later ``result()`` may still get it).
            ServerUnavailable: the server was lost before the call finished.
            TaskCancelled: the call was cancelled before it ran.
            Exception: whatever the remote method raised, as its own type where
                possible, with the remote traceback attached.
        """
        __tracebackhide__ = True  # (IPython and pytest show the caller's frame and the agent's, not agentnb's)
        if self._value is _UNSET and self._error is None:
            future = self._future
            if future is not None and future._finished and future.error is None:
                self._decode(future.state, future.payload)  # the reply is here (most results of a round)
            else:
                self._settle_within(timeout)
        if self._error is not None:
            # Raised again with the traceback it came with (the agent's frames): the
            # same short trace each time, not one that grows with every raise.
            raise self._error.with_traceback(self._error_tb)
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the call to end; return the exception :meth:`result` would raise, or None if it has a value.

        The exception's ``__traceback__`` is the agent's part (its frames on the
        server), as :meth:`result` raises it.

        Raises:
            TimeoutError: the call did not finish within ``timeout``.
        """
        if self._value is _UNSET and self._error is None:
            try:
                self._settle_within(timeout)
            except TimeoutError:
                raise
            except AgentnbError as exc:  # the server was lost before the call ended
                return exc
        if self._error is None:
            return None
        return self._error.with_traceback(self._error_tb)

    def _settle_within(self, timeout: float | None) -> None:
        """:meth:`_settle`, within ``timeout`` or else the agent's max_timeout_seconds."""
        __tracebackhide__ = True
        policy = self._policy
        if timeout is not None or policy is None or policy.timeout is None:
            self._settle(timeout)
            return
        try:
            self._settle(policy.timeout)
        except TimeoutError:
            raise TimeoutError(f"{self._describe()} did not finish within {policy.timeout:g} s (the "
                               "max_timeout_seconds given to to_dist); it goes on on its server: result() again "
                               "waits once more, result(timeout=...) as long as you say") from None

    def _settle(self, timeout: float | None, retry: bool = True) -> None:
        """Wait for the final reply and decode it; ``retry``: as the agent's retry_strategy says."""
        __tracebackhide__ = True
        future = self._future
        policy = self._policy if retry else None
        if future is None:  # a reference that travelled here: ask the server that holds it
            reply = retried(policy, self._stored, self._describe(), timeout)
            self._decode(state_of(reply.status), reply.payload)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        if not future.wait(timeout):
            raise TimeoutError(f"{self._describe()} did not finish within {timeout} s")
        if isinstance(future.error, ServerUnavailable):
            # The session was lost before the reply came. The call may run on, or
            # have finished, and a pool that outlives its server (Redis) may hold
            # the result: ask the server, restarted or not. If it cannot say, the
            # loss stands, and is not cached, so that a later result() asks again.
            try:
                remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
                reply = retried(policy, self._stored, self._describe(), remaining)
            except TimeoutError:
                raise TimeoutError(f"{self._describe()} did not finish within {timeout} s") from None
            except AgentServerError:
                raise future.error from None
            self._decode(state_of(reply.status), reply.payload)
            return
        self._decode(future.state, future.payload, future.error)

    def _stored(self, timeout: float | None) -> StoredReply:
        """The call's final reply, as its server keeps it (GetResult)."""
        return self._conn.get_result(self._task_id, timeout)

    def _decode(self, state: str, payload: codec.Encoded, error: BaseException | None = None) -> None:
        try:
            if error is not None:
                raise error
            # Into __dict__ directly: __setattr__ is Python code (a million values decoded a round).
            self.__dict__["_value"] = decode_final(state, payload, self._conn.address, self._describe)
        except BaseException as exc:  # the call's own error, kept to be raised by result()
            self._error = exc
            self._error_tb = user_part(exc.__traceback__)

    def done(self) -> bool:
        """Whether the call has finished (successfully or not)."""
        if self._future is None:
            if self._value is _UNSET and self._error is None:
                # A reference that travelled here gets no pushed reply: without
                # asking its server, done() stayed False forever.
                try:
                    self._settle(_DONE_POLL_TIMEOUT, retry=False)
                except TimeoutError:
                    return False
                except AgentnbError as exc:  # no such task, server gone: finished, as a failure
                    self._error = exc
            return True
        return self._future.done()

    @property
    def status(self) -> str:
        """``queued``, ``running``, ``done``, ``failed`` or ``cancelled``."""
        if self._future is None:
            if self._error is not None:
                return FAILED
            return DONE if self._value is not _UNSET else QUEUED
        return self._future.state

    @property
    def task_id(self) -> str:
        return self._task_id

    @property
    def call_info(self) -> CallInfo:
        """The agent, method, server address, task id and server name of the call."""
        conn = self._conn
        return CallInfo(self._agent, self._method, conn.address, self._task_id, conn.label)

    @property
    def times(self) -> dict[str, float]:
        """When the call reached each state, by state name (seconds since the epoch).

        ``submitted`` (client clock), then ``queued`` and ``running`` (server clock;
        only for calls made with :func:`agentnb.set_watch` on), then the final
        state: ``done``, ``failed`` or ``cancelled``. Empty for a result that
        travelled here from another process.
        """
        return dict(self._future.times) if self._future is not None else {}

    @property
    def history(self) -> list[tuple[str, float]]:
        """The states the call went through, oldest first, as ``[("submitted", t0), ("queued", t1), ...]``."""
        return sorted(self.times.items(), key=lambda item: item[1])

    def add_status_callback(self, fn: Callable[[AsyncResult[T]], None]) -> None:
        """Call ``fn(self)`` on each change of :attr:`status`, the final one included.

        ``fn`` runs on a background thread, must be quick and must not block
        (it runs on the thread that receives every reply of the server). It is
        called at once if the call has already finished. Only the final state
        is reported for calls made without :func:`agentnb.set_watch`, and for
        a result that travelled here from another process.
        """
        if self._future is not None:
            self._future.add_callback(lambda _: fn(self))
        elif self._value is not _UNSET or self._error is not None:
            fn(self)
        else:
            _REFERENCE_WATCHER.add(self, fn)

    def add_done_callback(self, fn: Callable[[AsyncResult[T]], None]) -> None:
        """Call ``fn(self)`` (on a background thread) once the call has finished."""
        self.add_status_callback(lambda res: fn(res) if res.status in FINAL_STATES else None)

    def wait_interactive(self, timeout: float | None = None) -> T:
        """Wait for the value while showing the call's status, and return the value.

        In a notebook the status is a live widget (state, call, server, elapsed
        time) and the value appears once, as what the cell returns; elsewhere
        the status is a text line on stderr. Raises what :meth:`result` raises.
        """
        __tracebackhide__ = True
        return wait_for_results(self, show=True, timeout=timeout)

    def _settle_reference(self) -> None:
        """Wait for a result that travelled here, recording a lost server as its failure."""
        try:
            self.result()
        except AgentnbError as exc:
            if self._value is _UNSET and self._error is None:
                self._error = exc
        except Exception:  # the call's own failure: recorded by result()
            pass

    def cancel(self) -> bool:
        """Cancel the call if it has not started. Returns whether it was cancelled."""
        return bool(cancel(self))

    # -- await -------------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, T]:
        __tracebackhide__ = True
        if not self.done() and self._future is not None:
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()

            def settle() -> None:
                if not waiter.done():
                    waiter.set_result(None)

            def wake(_: CallFuture) -> None:
                if _.done():
                    loop.call_soon_threadsafe(settle)

            self._future.add_callback(wake)
            yield from waiter.__await__()
        elif not self.done():
            return (yield from asyncio.to_thread(self.result).__await__())
        return self.result()

    # -- the value's own items and attributes -----------------------------------------

    def __getattr__(self, name: str) -> Any:
        __tracebackhide__ = True
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.result(), name)

    def __getitem__(self, key: Any) -> Any:
        __tracebackhide__ = True
        value: Any = self.result()
        return value[key]

    def __setattr__(self, name: str, value: Any) -> None:
        # ``res.content += "!"`` reads the value's attribute, then sets it: on the value,
        # which is what travels on (see __reduce__), not on this AsyncResult.
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.result(), name, value)

    def __setitem__(self, key: Any, value: Any) -> None:
        target: Any = self.result()
        target[key] = value

    # -- travel and display --------------------------------------------------------------

    def __reduce__(self) -> Any:
        # A value (or error) already here travels as it is now, changes made to it here
        # included; one not fetched yet travels as a reference its server answers for.
        conn = self._conn
        where = (conn.host, conn.port, conn.token, self._task_id, self._agent, self._method, conn.tls_ca,
                 self._policy)
        if self._error is not None:
            return (_rebuild_settled, (*where, None, self._error))
        if self._value is not _UNSET:
            return (_rebuild_settled, (*where, self._value, None))
        return (_rebuild_async_result, where)

    def as_reference(self) -> AsyncResult[T]:
        """This call's result as a reference, without its value: it travels (is pickled) as
        such, and whoever uses it asks the agent's server for the value, as in another process.

        A result whose value is here travels as that value (changes made to it here
        included); pass ``res.as_reference()`` instead to have a large value go from its
        server to the next one directly, or to read the value as the server stored it.
        """
        conn = self._conn
        return _rebuild_async_result(conn.host, conn.port, conn.token, self._task_id, self._agent, self._method,
                                     conn.tls_ca, self._policy)

    def _describe(self) -> str:
        call = f"{self._agent}.{self._method}()" if self._method else "the call"
        return f"{call} [task {self._task_id}]"

    def __repr__(self) -> str:
        state = {DONE: "done", FAILED: "failed", CANCELLED: "cancelled"}.get(self.status, "pending")
        extra = ""
        if state == "done" and self._value is not _UNSET:
            extra = f" value={self._value!r:.60}"
        elif state == "failed" and self._error is not None:
            extra = f" error={type(self._error).__name__}"
        call = f"{self._agent}.{self._method}" if self._method else self._task_id
        return f"<AsyncResult {call} {state}{extra} on {self._conn.display}>"


def cancel(results: AsyncResult[Any] | Iterable[AsyncResult[Any]] | Mapping[Any, AsyncResult[Any]],
           timeout: float = CANCEL_TIMEOUT) -> list[AsyncResult[Any]]:
    """Cancel the calls of ``results`` that have not started yet, all at once.

    The cancellations are sent together and answered in about one round trip
    (not one per call). A call already running is not stopped: it finishes
    on its server (stopping the server stops it).

    Args:
        results: AsyncResults: one, a list or any iterable, a dict (its values),
            or a :class:`~agentnb.Progress`.
        timeout: seconds to wait for the servers' answers.
    Returns:
        The results cancelled (their ``status`` is ``cancelled`` and their
        ``result()`` raises TaskCancelled).
    """
    sent = [(res, res._conn.submit(pb.CANCEL, "", task_id=res._task_id))
            for res in as_results(results) if not res.done()]
    deadline = time.monotonic() + timeout
    return [res for res, reply in sent
            if reply.wait(max(0.0, deadline - time.monotonic())) and reply.state == DONE
            and codec.loads(reply.payload) is True]


def watch_results(enabled: bool = True) -> None:
    """Remember the AsyncResults of the calls made from now on (until turned off),
    for :func:`new_results`. A notebook turns it on, to cancel the calls of an
    interrupted cell."""
    global _made
    with _made_lock:
        if not enabled:
            _made = None
        elif _made is None:
            _made = []


def new_results() -> list[AsyncResult[Any]]:
    """The AsyncResults of the calls made since the last call (with :func:`watch_results` on), oldest first."""
    global _made
    with _made_lock:
        if _made is None:
            return []
        taken, _made = _made, []
        return taken


def _note(result: AsyncResult[Any]) -> None:
    with _made_lock:
        if _made is not None:  # (turned off since the caller looked)
            _made.append(result)


class _Unpickled(threading.local):
    count = 0


# ``UNPICKLED.count``: how many AsyncResults this thread has unpickled so far. A server resolves the
# results in a call's arguments (:func:`resolve_results`) only when unpickling them made some (read as
# an attribute, not through a function: it is looked at twice in every call a server runs).
UNPICKLED = _Unpickled()


def _rebuild_async_result(host: str, port: int, token: str, task_id: str, agent: str, method: str,
                          tls_ca: str | None = None, policy: CallPolicy | None = None) -> AsyncResult[Any]:
    UNPICKLED.count += 1
    return AsyncResult(ServerConnection.get(host, port, token, tls_ca), task_id, None, agent=agent, method=method,
                       policy=policy)


def _rebuild_settled(host: str, port: int, token: str, task_id: str, agent: str, method: str,
                     tls_ca: str | None, policy: CallPolicy | None, value: Any,
                     error: BaseException | None) -> AsyncResult[Any]:
    """An AsyncResult whose value (or error) travelled with it: nobody needs to ask its server."""
    result: AsyncResult[Any] = _rebuild_async_result(host, port, token, task_id, agent, method, tls_ca, policy)
    if error is not None:
        result._error = error
        result._error_tb = error.__traceback__
    else:
        result._value = value
    return result


_LEAVES = frozenset({type(None), bool, int, float, str, bytes})


def resolve_results(value: Any) -> Any:
    """Replace AsyncResults in ``value`` (and in its lists, tuples, dicts) by their values.

    A container holding none is returned as it is (an argument is a fresh unpickled value)."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is tuple or kind is list:
        items = [resolve_results(v) for v in value]
        return value if all(map(operator.is_, items, value)) else kind(items)
    if kind is dict:
        resolved = {k: resolve_results(v) for k, v in value.items()}
        return value if all(map(operator.is_, resolved.values(), value.values())) else resolved
    if isinstance(value, AsyncResult):
        return value.result()
    return value


class _ReferenceWatcher:
    """Waits for results that travelled here, on one thread, and runs their callbacks.

    Their server pushes nothing to this process, so someone must ask it; one
    thread asks for each in turn and ends when none is left.
    """

    def __init__(self) -> None:
        self._queue: collections.deque[tuple[AsyncResult[Any], Callable[[AsyncResult[Any]], None]]] = (
            collections.deque())
        self._lock = threading.Lock()
        self._running = False

    def add(self, result: AsyncResult[Any], fn: Callable[[AsyncResult[Any]], None]) -> None:
        with self._lock:
            self._queue.append((result, fn))
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="agentnb-reference-watcher", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                result, fn = self._queue.popleft()
            result._settle_reference()
            try:
                fn(result)
            except Exception:  # a broken callback must not stop the others
                pass


_REFERENCE_WATCHER = _ReferenceWatcher()

register_result_type(AsyncResult)
