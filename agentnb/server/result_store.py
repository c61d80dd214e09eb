"""Result stores: where the results of asynchronous calls wait to be fetched.

A store maps task ids to final replies (status and payload). Tasks are
registered as pending when accepted, so that a reader can wait for one that is
still running. The local store is a dict bounded by ``max_len`` and
``max_expire_time``. The Redis store keeps them in Redis, where they outlive
the server that made them and where several servers can share one Redis.
A server's ``pool_type`` option (``--pool-type``) names the kind it uses.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import operator
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agentnb.errors import AgentServerError, IntegrityError, TaskNotFound
from agentnb.wire.codec import Encoded, Payload
from agentnb.wire.ids import random_hex

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

# How long a reader waits for a task id the store has never seen: an AsyncResult
# handed to another server can reach it before its own call reaches this one.
UNKNOWN_TASK_GRACE = 5.0
# The shape of the task ids clients make (client id, sequence number, random part);
# any other id cannot appear later, so it is not waited for.
TASK_ID_PATTERN = re.compile(r"[0-9a-f]{12}-[0-9]+-[0-9a-f]{8}")


class StoredResult(NamedTuple):
    """The final reply of one task, as the store keeps it (a tuple: made for every asynchronous call,
    several times faster than a frozen dataclass)."""

    status: int   # an agentnb_pb2.ReplyStatus
    payload: Encoded  # bytes, or a Payload whose large buffers are kept as they are (no copy)
    timestamp: float


class ResultStoreUnavailable(AgentServerError):
    """The result store (Redis) cannot be reached; the server itself is up."""


def _unknown_deadline(task_id: str) -> float:
    """Until when a task this store does not know yet is waited for: a well-formed id may
    still be on its way in (UNKNOWN_TASK_GRACE); anything else is unknown at once."""
    return time.monotonic() + (UNKNOWN_TASK_GRACE if TASK_ID_PATTERN.fullmatch(task_id) else 0.0)


class ResultStore(ABC):
    """The results of asynchronous calls, by task id."""

    @abstractmethod
    def add_pending(self, task_id: str) -> None:
        """Record that ``task_id`` was accepted and will have a result."""

    @abstractmethod
    def put(self, task_id: str, result: StoredResult) -> None:
        """Store the final result of ``task_id`` and wake its readers."""

    @abstractmethod
    def get(self, task_id: str, timeout: float | None = None) -> StoredResult:
        """Wait for the result of ``task_id``.

        Raises:
            TimeoutError: it did not finish within ``timeout`` seconds.
            TaskNotFound: the store does not know the task (never sent, or expired).
        """

    @abstractmethod
    def __len__(self) -> int:
        """How many results (and pending tasks) are held."""

    def close(self) -> None:  # noqa: B027 -- an optional hook, not an abstract method
        """Release what the store holds (connections, threads); the server is stopping."""


class LocalResultStore(ResultStore):
    """An in-memory store; the oldest results go first when ``max_len`` is exceeded,
    and any result goes after ``max_expire_time`` seconds."""

    def __init__(self, max_len: int = 8192, max_expire_time: float = 7200.0) -> None:
        if max_len < 1:
            raise ValueError("max_len must be at least 1")
        if max_expire_time <= 0:
            raise ValueError("max_expire_time must be positive")
        self.max_len = max_len
        self.max_expire_time = max_expire_time
        self._results: OrderedDict[str, tuple[float, StoredResult]] = OrderedDict()
        self._pending: set[str] = set()
        self._sweep_interval = min(1.0, max_expire_time / 4)
        self._next_sweep = 0.0  # (time.monotonic)
        # Taken directly on the path of every call (a Condition's own __enter__ is Python code).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Readers waiting in get(): a call's add_pending and put notify only when there are some
        # (notify_all costs a few us of Python on every call otherwise).
        self._readers = 0

    def add_pending(self, task_id: str) -> None:
        # Without the lock (a set's add is atomic under the GIL; this is the path of every call): a
        # reader in get() counts itself before it looks, so either it sees the task or it is woken here.
        self._pending.add(task_id)
        if self._readers:
            with self._lock:
                self._cond.notify_all()

    def put(self, task_id: str, result: StoredResult) -> None:
        now = time.monotonic()
        results = self._results
        with self._lock:
            self._pending.discard(task_id)
            if task_id in results:  # (a result put again goes last)
                del results[task_id]
            results[task_id] = (now + self.max_expire_time, result)
            while len(results) > self.max_len:
                results.popitem(last=False)
            # Expired results are swept a few times per expiry time, not at every put (get() refuses
            # one that expired meanwhile).
            if now >= self._next_sweep:
                self._sweep(now)
            if self._readers:
                self._cond.notify_all()

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self._sweep_interval
        results = self._results
        while results:
            task_id, (expires, _) = next(iter(results.items()))
            if expires > now:
                break
            del results[task_id]

    def get(self, task_id: str, timeout: float | None = None) -> StoredResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        unknown_deadline = _unknown_deadline(task_id)
        with self._cond:
            self._readers += 1  # (before it looks: see add_pending)
            try:
                return self._wait_for(task_id, timeout, deadline, unknown_deadline)
            finally:
                self._readers -= 1

    def _wait_for(self, task_id: str, timeout: float | None, deadline: float | None,
                  unknown_deadline: float) -> StoredResult:
        """get(), with the lock held and this reader counted."""
        while True:
            now = time.monotonic()
            entry = self._results.get(task_id)
            if entry is not None:
                if entry[0] > now:
                    return entry[1]
                del self._results[task_id]
                raise TaskNotFound(f"the result of task {task_id} expired")
            if task_id not in self._pending and now >= unknown_deadline:
                raise TaskNotFound(f"no task {task_id} on this server (never sent, or its result was evicted)")
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"task {task_id} did not finish within {timeout} s")
            waits = [1.0]
            if deadline is not None:
                waits.append(deadline - now)
            if task_id not in self._pending:
                waits.append(unknown_deadline - now)
            self._cond.wait(max(0.0, min(waits)))

    def __len__(self) -> int:
        with self._cond:
            return len(self._results) + len(self._pending)


class RedisResultStore(ResultStore):
    """Results and task states in Redis, kept ``max_expire_time`` seconds (the keys' TTL).

    Keys are ``agentnb:<namespace>:task:<task id>`` (a hash: state, owner, status,
    payload, timestamp, and for a payload with out-of-band buffers, ``buffers``
    (their number) and ``buffer:0``, ``buffer:1``...) and ``agentnb:<namespace>:done:<task id>`` (a list that
    gets one item when the task is done). Task ids are unique across clients, so
    servers may share a namespace; a separate namespace (or Redis database) keeps
    separate deployments apart.

    A reader waits for a pending task by blocking on its ``done`` list with
    BRPOPLPUSH onto the same list: the item goes back at once, so every reader
    wakes, and a late reader finds it there. The wait is cut into slices of
    :data:`WAIT_SLICE` seconds so that the reader notices the end of its deadline
    and a task whose server died.

    Each store writes a heartbeat key with a short TTL; a pending task records the
    store (server) that runs it. A task whose server's heartbeat is gone will
    never finish, and its readers get :class:`TaskNotFound` instead of waiting.

    When Redis cannot be reached, calls that need it raise
    :class:`ResultStoreUnavailable`; a result that cannot be written is held in
    memory (at most ``max_len`` of them), served from there, and written when
    Redis is back. The connection is re-made by itself.

    Args:
        redis_url: e.g. ``redis://localhost:6379/0``; a ``namespace`` query
            parameter (``redis://host:6379/0?namespace=team-a``) sets the namespace.
        namespace: the key namespace, when the URL does not set one.
        max_expire_time: seconds a result (or pending task) is kept.
        max_len: results held in memory at most while Redis is unreachable.
        socket_timeout: seconds a Redis command may take before Redis counts as lost.
        integrity_key: the key of the MAC each stored result carries (servers that
            read each other's results share it: agent servers derive it from their token).
            A result whose MAC does not match is refused (:class:`agentnb.IntegrityError`),
            unread: whoever can write to the Redis cannot make a reader unpickle anything.
    Raises:
        ValueError: the URL or namespace is malformed.
        ResultStoreUnavailable: Redis cannot be reached now.
    """

    WAIT_SLICE = 1.0
    HEARTBEAT_INTERVAL = 2.0
    HEARTBEAT_TTL = 6.0
    # A missing heartbeat must stay missing this long before its tasks count as
    # lost: after a Redis outage, live servers need a moment to write theirs again.
    ORPHAN_CONFIRM = 3.0

    def __init__(self, redis_url: str, *, namespace: str | None = None, max_expire_time: float = 7200.0,
                 max_len: int = 8192, socket_timeout: float = 5.0, integrity_key: bytes | None = None) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if max_expire_time <= 0:
            raise ValueError("max_expire_time must be positive")
        url, url_namespace = _split_namespace(redis_url)
        namespace = url_namespace or namespace or DEFAULT_NAMESPACE
        if not NAMESPACE_PATTERN.fullmatch(namespace):
            raise ValueError(f"Redis namespace {namespace!r} must be letters, digits, '_', '.' or '-'")
        self.namespace = namespace
        self.max_expire_time = max_expire_time
        self.max_len = max(1, max_len)
        self.url = _masked(url)
        self.instance = random_hex()
        # Results are MACed under this key (made up when not given: then only this store can read them back).
        self._integrity_key = integrity_key or os.urandom(32)
        self._ttl_ms = max(1, int(max_expire_time * 1000))
        self._prefix = f"agentnb:{namespace}:"
        self._redis_errors = (redis.exceptions.RedisError, OSError)
        try:
            # One retry, at once, on a broken connection (Redis restarted: it is re-made);
            # none on a timeout (Redis frozen: a second wait would only double the first).
            self._redis = redis.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=min(socket_timeout, 3.0),
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
                health_check_interval=30)
        except ValueError as exc:
            raise ValueError(f"bad redis_url {self.url!r}: {exc}") from None
        self._unsaved: OrderedDict[str, tuple[float, StoredResult]] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._call("reach Redis", lambda r: r.ping())
        self._beat()
        threading.Thread(target=self._keep_beating, name="agentnb-redis-heartbeat", daemon=True).start()
        _LOGGER.info("Redis result pool at %s, namespace %r", self.url, namespace)

    # -- keys and calls ----------------------------------------------------------------

    def _task_key(self, task_id: str) -> str:
        return f"{self._prefix}task:{task_id}"

    def _done_key(self, task_id: str) -> str:
        return f"{self._prefix}done:{task_id}"

    def _server_key(self, instance: str) -> str:
        return f"{self._prefix}server:{instance}"

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(redis_client)``; a Redis failure becomes ResultStoreUnavailable."""
        try:
            return fn(self._redis)
        except self._redis_errors as exc:
            raise ResultStoreUnavailable(
                f"the Redis result pool at {self.url} is unavailable (could not {what}): {exc}") from None

    # -- the ResultStore interface --------------------------------------------------------

    def add_pending(self, task_id: str) -> None:
        key = self._task_key(task_id)

        def register(r: Any) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.hset(key, mapping={"state": "pending", "owner": self.instance})
            pipe.pexpire(key, self._ttl_ms)
            pipe.execute()

        self._call(f"register task {task_id}", register)

    def put(self, task_id: str, result: StoredResult) -> None:
        try:
            self._store(task_id, result)
        except ResultStoreUnavailable as exc:
            _LOGGER.warning("%s; the result of task %s waits in memory until Redis is back", exc, task_id)
            with self._lock:
                self._unsaved[task_id] = (time.monotonic() + self.max_expire_time, result)
                while len(self._unsaved) > self.max_len:
                    lost, _ = self._unsaved.popitem(last=False)
                    _LOGGER.error("the result of task %s is dropped: Redis is still unreachable", lost)

    def _store(self, task_id: str, result: StoredResult) -> None:
        key, done = self._task_key(task_id), self._done_key(task_id)

        payload = result.payload
        stamp = repr(result.timestamp)
        fields: dict[str, Any] = {"state": "done", "status": result.status, "timestamp": stamp,
                                  "mac": self._mac(task_id, result.status, stamp, payload)}
        if type(payload) is Payload:
            fields.update({"payload": payload.data, "buffers": len(payload.buffers)})
            fields.update({f"buffer:{i}": buffer for i, buffer in enumerate(payload.buffers)})
        else:
            fields["payload"] = payload

        def store(r: Any) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, self._ttl_ms)
            pipe.rpush(done, b"1")
            pipe.pexpire(done, self._ttl_ms)
            pipe.execute()

        self._call(f"store the result of task {task_id}", store)

    def get(self, task_id: str, timeout: float | None = None) -> StoredResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        unknown_deadline = _unknown_deadline(task_id)
        key, done = self._task_key(task_id), self._done_key(task_id)
        owner_missing_since: float | None = None
        while True:
            with self._lock:
                held = self._unsaved.get(task_id)
            if held is not None:
                return held[1]
            state, owner, status, payload, stamp, buffers, mac = self._call(
                f"read task {task_id}",
                lambda r: r.hmget(key, "state", "owner", "status", "payload", "timestamp", "buffers", "mac"))
            now = time.monotonic()
            if state == b"done":
                return self._checked(task_id, status, payload, stamp, buffers, mac)
            if state is None and now >= unknown_deadline:
                raise TaskNotFound(f"no task {task_id} in the Redis result pool {self.namespace!r} "
                                   "(never sent, or its result expired)")
            if state is not None and owner is not None and owner.decode() != self.instance:
                beat = self._server_key(owner.decode())
                if self._call("read a heartbeat", operator.methodcaller("exists", beat)):
                    owner_missing_since = None
                elif owner_missing_since is None:
                    owner_missing_since = now
                elif now - owner_missing_since >= self.ORPHAN_CONFIRM:
                    raise TaskNotFound(f"task {task_id} will never finish: the agent server that ran it "
                                       "stopped before it was done")
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"task {task_id} did not finish within {timeout} s")
            waits = [self.WAIT_SLICE]
            if deadline is not None:
                waits.append(deadline - now)
            if state is None:
                waits.append(unknown_deadline - now)
            # Redis reads a block timeout of 0 as "forever": never send one.
            block = max(0.01, min(waits))
            self._call(f"wait for task {task_id}", operator.methodcaller("brpoplpush", done, done, block))

    def _mac(self, task_id: str, status: int, stamp: str, payload: Encoded) -> bytes:
        """The MAC of a stored result: every field a reader uses, each part length-prefixed."""
        mac = hmac.new(self._integrity_key, digestmod=hashlib.sha256)
        parts = [payload.data, *payload.buffers] if isinstance(payload, Payload) else [payload]
        for part in (task_id.encode(), str(int(status)).encode(), stamp.encode(), *parts):
            view = memoryview(part).cast("B")
            mac.update(len(view).to_bytes(8, "big"))
            mac.update(view)
        return mac.digest()

    def _checked(self, task_id: str, status: bytes | None, payload: bytes | None, stamp: bytes | None,
                 buffers: bytes | None, mac: bytes | None) -> StoredResult:
        """The stored result read back, once its MAC matches; IntegrityError (nothing unpickled) if not."""
        try:
            code, when = int(status or b""), (stamp or b"").decode()
            value: Encoded = payload or b""
            if buffers:
                value = self._with_buffers(task_id, payload or b"", int(buffers))
            intact = mac is not None and hmac.compare_digest(mac, self._mac(task_id, code, when, value))
        except (ValueError, UnicodeDecodeError):
            intact = False
        if not intact:
            _LOGGER.error("refused the result of task %s from Redis: its integrity check failed", task_id)
            raise IntegrityError(
                f"the result of task {task_id} in the Redis result store {self.url} (namespace "
                f"{self.namespace!r}) failed its integrity check: it was not written by an agent server holding "
                "this server's key; someone else can write to that Redis (give it a password), or servers "
                "with different tokens share the namespace. It was not unpickled.")
        return StoredResult(code, value, float(when or 0.0))

    def _with_buffers(self, task_id: str, data: bytes, count: int) -> Payload:
        """The Payload of a stored result with ``count`` out-of-band buffers."""
        names = [f"buffer:{i}" for i in range(count)]
        buffers = self._call(f"read the result of task {task_id}", lambda r: r.hmget(self._task_key(task_id), names))
        if any(buffer is None for buffer in buffers):  # expired between the two reads
            raise TaskNotFound(f"the result of task {task_id} expired")
        return Payload(data, buffers)

    def __len__(self) -> int:
        """How many results and pending tasks the namespace holds (all servers sharing it)."""
        pattern = f"{self._prefix}task:*"
        stored = self._call("count results", lambda r: sum(1 for _ in r.scan_iter(match=pattern, count=1000)))
        with self._lock:
            return stored + len(self._unsaved)

    def close(self) -> None:
        """Stop the heartbeat, write what waits in memory if possible, and drop the connections."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._flush_unsaved()
            self._call("remove the heartbeat", lambda r: r.delete(self._server_key(self.instance)))
        except ResultStoreUnavailable as exc:
            _LOGGER.warning("%s", exc)
        self._redis.close()

    # -- the heartbeat, which also writes held results once Redis is back -----------------

    def _beat(self) -> None:
        ttl_ms = int(self.HEARTBEAT_TTL * 1000)
        self._call("write the heartbeat", lambda r: r.set(self._server_key(self.instance), os.getpid(), px=ttl_ms))

    def _keep_beating(self) -> None:
        interval = self.HEARTBEAT_INTERVAL
        while not self._closed.wait(interval):
            try:
                self._beat()
                self._flush_unsaved()
                interval = self.HEARTBEAT_INTERVAL
            except ResultStoreUnavailable as exc:
                _LOGGER.debug("heartbeat: %s", exc)
                interval = min(0.5, self.HEARTBEAT_INTERVAL)  # be seen again soon after Redis returns
            except Exception:  # the heartbeat must outlive any surprise
                _LOGGER.exception("the Redis pool's heartbeat failed")

    def _flush_unsaved(self) -> None:
        while True:
            with self._lock:
                if not self._unsaved:
                    return
                task_id, (expires, result) = next(iter(self._unsaved.items()))
            if expires > time.monotonic():
                self._store(task_id, result)
                _LOGGER.info("the result of task %s is now in Redis", task_id)
            with self._lock:
                if self._unsaved.get(task_id, (0.0, None))[1] is result:
                    del self._unsaved[task_id]


DEFAULT_NAMESPACE = "default"
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


def _split_namespace(url: str) -> tuple[str, str | None]:
    """``url`` without its ``namespace`` query parameter, and that parameter."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    namespaces = [value for name, value in query if name == "namespace"]
    rest = urlencode([(name, value) for name, value in query if name != "namespace"])
    return urlunsplit(parts._replace(query=rest)), (namespaces[-1] if namespaces else None)


def _masked(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def make_store(pool_type: str = "local", *, max_len: int = 8192, max_expire_time: float = 7200.0,
               redis_url: str | None = None, namespace: str | None = None,
               integrity_key: bytes | None = None) -> ResultStore:
    """The result store a server was asked for (``pool_type``: ``local`` or ``redis``).

    Raises:
        ValueError: unknown ``pool_type``, or ``redis`` without ``redis_url``.
        ResultStoreUnavailable: ``redis`` and the Redis server cannot be reached.
    """
    if pool_type == "local":
        return LocalResultStore(max_len=max_len, max_expire_time=max_expire_time)
    if pool_type == "redis":
        if not redis_url:
            raise ValueError("pool_type 'redis' needs a redis_url (--redis-url), e.g. redis://localhost:6379/0")
        return RedisResultStore(redis_url, namespace=namespace, max_expire_time=max_expire_time, max_len=max_len,
                                integrity_key=integrity_key)
    raise ValueError(f"unknown pool_type {pool_type!r}; expected 'local' or 'redis'")
