"""RpcObject: the caller's proxy for an object that lives on an agent server."""

from __future__ import annotations

import time
from typing import Any

from agentnb._proto import agentnb_pb2 as pb
from agentnb.errors import AgentNotFound
from agentnb.rpc import audience
from agentnb.rpc.async_result import AsyncResult
from agentnb.rpc.call_policy import CallPolicy, retried
from agentnb.rpc.connection import ServerConnection
from agentnb.rpc.context import waiting_chain
from agentnb.rpc.future import CallFuture
from agentnb.rpc.methods import ASYNC
from agentnb.runtime_home import server_address
from agentnb.wire import codec

# Whether async calls ask their server to report QUEUED and RUNNING as well as the
# final state (two more replies per call). Off in scripts, where nobody watches and
# the throughput of async calls matters; ``%load_ext agentnb`` turns it on.
WATCH_STATES = False

# Seconds a repr waits for an object being created, to show its name (a repr
# must not hang on a slow ``__init__`` or a stuck server).
REPR_WAIT = 0.25


def set_watch(enabled: bool = True) -> bool:
    """Have later ``@async_func`` calls report when they are queued and start running.

    With it on, ``AsyncResult.status`` passes through ``queued`` and ``running``
    (with their times in ``AsyncResult.times``) and the notebook widgets show
    it; with it off, only the final state (done, failed, cancelled) is known.
    Each watched call costs two more replies from its server. Off by default,
    on in a notebook once ``%load_ext agentnb`` ran. Calls already made keep
    the setting they were made with.

    Returns:
        The previous setting.
    """
    global WATCH_STATES
    previous, WATCH_STATES = WATCH_STATES, bool(enabled)
    return previous


def wait_value(future: CallFuture, connection: ServerConnection, what: str, timeout: float | None = None) -> Any:
    """Wait for a call's reply and return its value (or raise its error).

    Raises:
        TimeoutError: no reply within ``timeout`` seconds (the call goes on on its server).
    """
    __tracebackhide__ = True
    if not future.wait(timeout):
        raise TimeoutError(f"{what} did not finish within {timeout:g} s (the max_timeout_seconds given to to_dist); "
                           f"it may still be running on the {connection.display}, and the agent's later calls "
                           "wait until it ends")
    return future.outcome(connection.address, what)


class RpcObject:
    """Forwards method calls and attribute reads to the object on its server.

    Sync methods and attribute reads wait for the value; ``@async_func``
    methods return an :class:`AsyncResult` at once. Names starting with ``_``
    are refused before anything is sent.

    The proxy that ``to_dist`` returns owns its object: when it is closed or
    garbage-collected, the object is deleted on the server. Copies (a proxy
    passed to another agent, or found again with ``agentnb.get_agent``) do not
    own it.

    Two proxies are equal (and hash alike) when they stand for the same agent:
    the same agent id on the same server, whichever way each was obtained. On
    the agent's own server, the agent's object equals a proxy to it too (see
    :func:`agent_identity`).

    ``to_dist`` returns as soon as the creation is sent (creating many objects
    costs one round trip, not one each). The first use of the proxy waits until
    the object exists, and raises the error of its ``__init__`` if that failed
    (so does every later use); :func:`wait_created` waits for that explicitly.
    """

    def __init__(self, connection: ServerConnection, agent_id: str, class_name: str,
                 methods: dict[str, str], name: str | None = None, owner: bool = False,
                 creating: CallFuture | None = None, policy: CallPolicy | None = None,
                 method_kinds: dict[str, str] | None = None) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_conn", connection)
        if owner:
            connection.start_janitor()
        object.__setattr__(self, "_agent_id", agent_id)
        object.__setattr__(self, "_class_name", class_name)
        object.__setattr__(self, "_methods", methods)
        object.__setattr__(self, "_name", name)
        # The CREATE call while its reply is unread; None once the object is known to exist.
        object.__setattr__(self, "_creating", creating)
        # to_dist's max_timeout_seconds and retry_strategy (None: wait as long as calls take).
        object.__setattr__(self, "_policy", policy)
        # Kinds the caller chose for some methods (agentnb.to_dist(obj, async_methods=...)):
        # they outrank those the server reads from the class.
        object.__setattr__(self, "_method_kinds", method_kinds)
        if method_kinds:
            object.__setattr__(self, "_methods", {**methods, **method_kinds})

    @property
    def agent_id(self) -> str:
        return self._agent_id

    def _created(self, timeout: float | None = None) -> None:
        """Wait until the object exists on its server; raise what its creation raised."""
        __tracebackhide__ = True
        creating = self._creating
        if creating is None:
            return
        if not creating.wait(timeout):
            raise TimeoutError(f"{self._short_class()} {self._agent_id} was not created "
                               f"on {self._conn.address} within {timeout} s")
        if creating.failed:
            self._conn.creations.seen(creating)
            if creating.error is not None:  # the transport's: the object may exist
                self._adopt(self._ask_created(creating.error, timeout))
                return
            try:
                creating.outcome(self._conn.address, f"the creation of {self._short_class()}")
            except Exception as error:
                named = f" {self._name!r}" if self._name else ""
                error.add_note(f"(raised when {self._short_class()}{named} {self._agent_id} was created on "
                               f"{self._conn.address} by to_dist(); the object does not exist)")
                raise
        self._adopt(creating.outcome(self._conn.address, f"the creation of {self._short_class()}"))

    def _ask_created(self, lost: BaseException, timeout: float | None) -> dict[str, Any]:
        """The creation's answer was lost with the connection (``lost``): ask the server for the
        object (DESCRIBE). If it cannot say, or has no such object, ``lost`` is raised and the
        next use asks again: a creation still on its way may arrive later."""
        __tracebackhide__ = True
        what = f"the creation of {self._short_class()}"
        try:
            return wait_value(self._conn.submit(pb.DESCRIBE, self._agent_id), self._conn, what, timeout)
        except AgentNotFound:
            note = (f"(the answer to {what} {self._agent_id} was lost with the connection, "
                    f"and the {self._conn.display} has no such object)")
            if note not in getattr(lost, "__notes__", ()):
                lost.add_note(note)
            raise lost from None

    def _adopt(self, created: dict[str, Any]) -> None:
        """Take what the server says of the object it made: its name and its methods' kinds."""
        object.__setattr__(self, "_name", created["name"])
        methods = created["methods"]  # the server's class has the last word, but for the caller's choices
        if self._method_kinds:
            methods = {**methods, **self._method_kinds}
        elif methods == self._methods:
            methods = self._methods  # (the dict every proxy of its class shares, not one more per proxy)
        object.__setattr__(self, "_methods", methods)
        object.__setattr__(self, "_creating", None)

    def _creation_failed(self) -> bool:
        """Whether the server refused to create the object (it does not exist)."""
        creating = self._creating
        return creating is not None and creating.failed and creating.error is None

    def __getattr__(self, name: str) -> Any:
        __tracebackhide__ = True
        if name.startswith("_"):
            raise AttributeError(
                f"{name!r} is private: only public methods and attributes of {self._short_class()} "
                "can be used on a distributed object"
            )
        kind = self._methods.get(name)
        if kind is not None:
            return _RemoteMethod(self, name, kind)
        self._created()
        what = f"attribute {name!r} of {self._short_class()}"
        policy = self._policy
        if policy is None:
            future = self._conn.submit(pb.GETATTR, self._agent_id, name, waiting_chain=waiting_chain() or ())
            return wait_value(future, self._conn, what)

        def read(timeout: float | None) -> Any:  # a read: safe to try again when the server was not reached
            future = self._conn.submit(pb.GETATTR, self._agent_id, name, waiting_chain=waiting_chain() or ())
            return wait_value(future, self._conn, what, timeout)

        return retried(policy, read, what, policy.timeout)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot set {name!r} on a distributed {self._short_class()}: call one of its methods")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        kind = self._methods.get("__call__")
        if kind is None:
            raise TypeError(f"distributed {self._short_class()} object is not callable")
        reply = self._invoke("__call__", kind, args, kwargs)
        if audience.LISTENERS:  # a message hub of this process may hear this agent speak
            audience.spoke(self._identity(), self, reply)
        return reply

    def _invoke(self, method: str, kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        __tracebackhide__ = True
        if self._creating is not None:
            self._created()
        label = f"{self._label()}.{method}"
        payload = codec.dumps((args, kwargs), f"an argument of {label}()")
        if kind == ASYNC:
            return self._call_async(method, payload)
        future = self._conn.submit(pb.CALL, self._agent_id, method, payload, waiting_chain=waiting_chain() or ())
        policy = self._policy
        return wait_value(future, self._conn, f"{label}()", policy.timeout if policy is not None else None)

    def _call_async(self, method: str, payload: codec.Encoded) -> AsyncResult[Any]:
        """Send a call of ``method`` with pickled arguments ``payload`` (the object exists); its AsyncResult."""
        task_id = self._conn.new_task_id()
        future = self._conn.submit(pb.CALL, self._agent_id, method, payload, task_id=task_id,
                                   watch=WATCH_STATES, nudge=True)
        return AsyncResult(self._conn, task_id, future, agent=self._label(), method=method, policy=self._policy)

    def to_dist(self, *args: Any, **kwargs: Any) -> RpcObject:
        """Refused: the object is already distributed.

        Without this, ``to_dist`` was read from the remote object like any
        attribute, and calling it silently built a second object from the
        original constructor arguments (losing the first one's state).
        """
        raise TypeError(f"{self._label()} is already distributed (on {self._conn.address}); "
                        "call to_dist() on a local object, or pass to_dist= to its constructor, once")

    def close(self) -> None:
        """Delete the object on its server (after the calls already sent to it).
        Any proxy to it fails with AgentNotFound afterwards."""
        object.__setattr__(self, "_owner", False)
        # Without waiting for the creation: the server runs the DELETE after it.
        future = self._conn.submit(pb.DELETE, self._agent_id)
        try:
            wait_value(future, self._conn, "delete")
        except AgentNotFound:
            if not self._creation_failed():  # never created: nothing to delete
                raise

    def __del__(self) -> None:
        if getattr(self, "_owner", False):
            self._conn.drop_agent(self._agent_id)
        creating = getattr(self, "_creating", None)
        if creating is not None and creating.done():  # (a pending one is told at exit, if it fails)
            self._conn.creations.report_unseen([creating])

    def _identity(self) -> tuple[str, str]:
        return self._conn.address, self._agent_id

    def __eq__(self, other: object) -> bool:
        identity = agent_identity(other)
        return NotImplemented if identity is None else identity == self._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def _short_class(self) -> str:
        return self._class_name.rsplit(".", 1)[-1]

    def _label(self) -> str:
        return self._name or self._short_class()

    def __reduce__(self) -> Any:
        try:
            self._created()  # another process may use the copy on another connection: the object must exist
        except Exception as exc:
            if not self._creation_failed():
                raise
            raise AgentNotFound(f"{self._short_class()} {self._agent_id} cannot be passed on: it does not exist, "
                                f"its creation on {self._conn.address} raised {type(exc).__name__}: {exc}") from exc
        conn = self._conn
        return (rebuild_rpc_object, (conn.host, conn.port, conn.token, self._agent_id, self._class_name,
                                      self._methods, self._name, conn.tls_ca, self._policy))

    def __repr__(self) -> str:
        try:
            self._created(REPR_WAIT)
        except Exception:  # a repr never raises: it says so below
            pass
        creating = self._creating
        name = f" name={self._name!r}" if self._name else ""
        if creating is not None:
            name += " (creation failed: using it raises why)" if creating.failed else " (being created)"
        return f"<RpcObject {self._short_class()}{name} id={self._agent_id} on {self._conn.display}>"

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._methods))


def wait_created(*proxies: object, timeout: float | None = None) -> None:
    """Wait until the objects behind ``proxies`` exist on their servers.

    ``to_dist`` does not wait for the object's ``__init__``; this does, and
    raises the first error an ``__init__`` raised (the proxies are
    checked in order). Any use of a proxy waits the same way.

    Raises:
        TimeoutError: the objects were not all created within ``timeout`` seconds.
    """
    # (Typed ``object``: a type checker sees a proxy as the class of its object, see to_dist.)
    checked: list[RpcObject] = []
    for proxy in proxies:
        if not isinstance(proxy, RpcObject):
            raise TypeError(f"wait_created() takes proxies returned by to_dist(), not {type(proxy).__name__}")
        checked.append(proxy)
    deadline = None if timeout is None else time.monotonic() + timeout
    for proxy in checked:
        proxy._created(None if deadline is None else max(0.0, deadline - time.monotonic()))


def agent_identity(obj: object) -> tuple[str, str] | None:
    """Which agent ``obj`` is: its server's address and its agent id, for a proxy
    or for an object this process hosts as an agent (the agent's own object, on
    its server); None for any other object.

    So, on its server, an agent equals a proxy to itself (``proxy == self`` and
    ``self == proxy``), though the two hash differently: compare them with
    ``==``, not by putting both in one set. In the process that called
    ``to_dist()``, the local object and the proxy it returned are different
    agents (the proxy's object was built anew on the server) and are not equal.
    """
    if isinstance(obj, RpcObject):
        return obj._identity()
    reduced = codec.hosted_reduction(obj)
    if reduced is None:
        return None
    host, port, _token, agent_id = reduced[1][:4]
    return server_address(host, port), agent_id


class _RemoteMethod:
    __slots__ = ("_obj", "_name", "_kind")

    def __init__(self, obj: RpcObject, name: str, kind: str) -> None:
        self._obj = obj
        self._name = name
        self._kind = kind

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        return self._obj._invoke(self._name, self._kind, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote {self._kind} method {self._name} of {self._obj!r}>"


def rebuild_rpc_object(host: str, port: int, token: str, agent_id: str, class_name: str,
                        methods: dict[str, str], name: str | None, tls_ca: str | None = None,
                        policy: CallPolicy | None = None) -> RpcObject:
    """A proxy (not owning its object) to agent ``agent_id`` on the server at ``host:port``:
    what a pickled proxy becomes where it is unpickled, and how a server hands over one of
    its own agents (see :mod:`agentnb.server.hosted`)."""
    return RpcObject(ServerConnection.get(host, port, token, tls_ca), agent_id, class_name, methods, name,
                     policy=policy)
