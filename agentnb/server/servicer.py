"""AgentServicer: what an agent server does with the calls it receives.

Each object (agent) has a mailbox: its calls run one at a time, in the order
they arrived. Different agents run concurrently on a thread pool of
``capacity`` threads. Replies are pushed on the caller's session stream as the
calls complete (while other calls run, small final replies are sent by one
replier thread: see ``HAND_OVER_BYTES``); results of asynchronous calls also go
to the result store.
Large payloads of clients on the same host come and go through the server's
shared-memory directory (``shm``, see :mod:`agentnb.wire.shm`).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator

import grpc

from agentnb._proto import agentnb_pb2 as pb
from agentnb._proto import agentnb_pb2_grpc as pb_grpc
from agentnb.errors import AgentNotFound, AgentServerError, DeadlockError, TaskNotFound
from agentnb.rpc.async_result import resolve_results
from agentnb.rpc.context import set_waiting_chain
from agentnb.rpc.methods import ASYNC, class_methods, qualified_name
from agentnb.rpc.rpc_object import _rebuild_rpc_object
from agentnb.server.late_removals import remove_later
from agentnb.server.result_store import LocalResultStore, ResultStore, StoredResult
from agentnb.server.session import ClientSession, Task, server_frame
from agentnb.server.workers import WorkerThreads
from agentnb.wire import codec, frames, shm
from agentnb.wire.protocol import is_final

_LOGGER = logging.getLogger(__name__)

# While other calls run, a final reply this small is sent by the replier thread, not by the
# worker that made it: the replier, busy with one reply after another, does it several
# times faster than a worker thread just woken up (200 naps ending together: see W6).
HAND_OVER_BYTES = 64 * 2**10
_END = object()


# How long a GetResult's shared-memory file waits for its client after the RPC ended.
UNCLAIMED_FILE_SECONDS = 30.0


class _Agent:
    """One hosted object and its mailbox."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.obj: object | None = None
        self.name = ""
        self.class_name = ""
        self.methods: dict[str, str] = {}
        self.created = time.time()
        self.deleted = False
        self.mailbox: deque[Task] = deque()
        self.running = False
        self.handed_over = 0  # its replies the replier thread has yet to send
        self.lock = threading.Lock()

    def describe(self) -> pb.AgentDescription:
        return pb.AgentDescription(
            agent_id=self.agent_id, name=self.name, class_name=self.class_name,
            sync_methods=[m for m, k in self.methods.items() if k != ASYNC],
            async_methods=[m for m, k in self.methods.items() if k == ASYNC],
            pending=len(self.mailbox) + (1 if self.running else 0), created=self.created,
        )


# The agents hosted in this process, by id() of their object: when one of them
# is pickled (an agent handing ``self`` to another agent, or returning it), it
# travels as a proxy to itself, not as a copy (see codec.set_hosted_reducer).
_HOSTED: dict[int, tuple[AgentServicer, _Agent]] = {}
_WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


def _host(obj: object, servicer: AgentServicer, agent: _Agent) -> None:
    if not _HOSTED:
        codec.set_hosted_reducer(_proxy_reduction)
    _HOSTED[id(obj)] = (servicer, agent)


def _proxy_reduction(obj: object) -> tuple | None:
    """The reduction of a proxy to ``obj`` if it is an agent hosted here, else None."""
    entry = _HOSTED.get(id(obj))
    if entry is None:
        return None
    servicer, agent = entry
    if agent.obj is not obj or agent.deleted or not servicer.port:
        return None
    # A server bound to every interface is reached by its host name from elsewhere.
    host = socket.gethostname() if servicer.host in _WILDCARD_HOSTS else servicer.host
    return (_rebuild_rpc_object, (host, servicer.port, servicer.token, agent.agent_id, agent.class_name,
                                  agent.methods, agent.name or None, None))


class AgentServicer(pb_grpc.AgentServerServicer):
    """The gRPC service of one agent server."""

    def __init__(self, *, name: str, capacity: int, results: ResultStore, pool_type: str = "local",
                 on_shutdown: Callable[[float], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.name = name
        self.host = ""
        self.port = 0
        self.token = ""  # set with host and port when the server listens (for proxies to its agents)
        self.capacity = capacity
        self.results = results
        self.pool_type = pool_type
        self.started = time.time()
        self.shm: shm.ShmDir | None = None  # the private shared-memory directory, while serving
        self._on_shutdown = on_shutdown
        self._executor = WorkerThreads(capacity, "agentnb-worker")
        self._agents: dict[str, _Agent] = {}
        self._tasks: dict[str, Task] = {}  # task id -> queued async task, for cancel
        self._sessions: weakref.WeakSet[ClientSession] = weakref.WeakSet()  # open Session streams
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self._replies: queue.SimpleQueue = queue.SimpleQueue()  # replies the replier thread sends
        self._replier: threading.Thread | None = None
        self._replier_stopped = False
        self._store_is_local = isinstance(results, LocalResultStore)  # storing a result costs no round trip
        self._queued = 0
        self._completed = 0
        self.accepting = True

    # -- the session stream ------------------------------------------------------------

    def Session(self, request_iterator: Iterator[tuple],
                context: grpc.ServicerContext) -> Iterator[pb.ServerFrame | frames.Chunk]:
        """Frames come in as decoded by ``frames.decode_client_frame`` and go out
        through ``frames.encode_frame`` (see :func:`agentnb.server.agent_server.service_handlers`)."""
        session = ClientSession(self.shm)
        self._sessions.add(session)
        context.add_callback(session.close)
        session.start_reading(request_iterator, self._accept)
        return session.replies()

    def _accept(self, call: pb.Call, payload: codec.Encoded | frames.PayloadError, session: ClientSession) -> None:
        task = Task(call, payload, session)
        if type(payload) is frames.PayloadError:  # too large, or chunks not adding up: refuse that one
            self._fail(task, payload)
            return
        if not self.accepting:
            self._fail(task, AgentServerError(f"the agent server {self.name} is shutting down"))
            return
        kind = call.kind
        if kind == pb.CANCEL:
            self._reply(task, pb.OK, codec.dumps(self._cancel(call.task_id)))
            return
        if call.task_id:
            try:
                self.results.add_pending(call.task_id)
            except Exception as exc:  # the result store is lost (Redis): refuse the call, keep the session
                self._reply(task, pb.ERROR, codec.encode_error(AgentServerError(
                    f"the agent server {self.name} cannot take asynchronous calls now: {exc}")), store=False)
                return
        with self._lock:
            agent = self._agents.get(call.agent_id)
            if kind == pb.CREATE:
                if agent is not None:
                    agent = None
                    error: Exception = AgentServerError(f"an agent with id {call.agent_id} already exists")
                else:
                    agent = self._agents[call.agent_id] = _Agent(call.agent_id)
            elif agent is None or agent.deleted:
                agent = None
                error = AgentNotFound(f"no agent with id {call.agent_id} on the agent server {self.name}")
            elif call.agent_id in call.waiting_chain:
                error = DeadlockError(
                    f"deadlock: the synchronous call {agent.name or agent.class_name}.{call.method} can never run, "
                    "because that agent is itself waiting synchronously on the caller (directly or through other "
                    "agents); make one of the calls asynchronous (@async_func) or break the cycle")
                agent = None
            if agent is not None:
                self._queued += 1
                if call.task_id:
                    self._tasks[call.task_id] = task
        if agent is None:
            self._fail(task, error)
            return
        if call.watch:
            self._reply(task, pb.QUEUED, b"")
        with agent.lock:
            agent.mailbox.append(task)
            if agent.running:
                return
            agent.running = True
        self._executor.submit(self._drain, agent)

    # -- running tasks -----------------------------------------------------------------

    def _drain(self, agent: _Agent) -> None:
        while True:
            with agent.lock:
                if not agent.mailbox:
                    agent.running = False
                    return
                task = agent.mailbox.popleft()
            with self._lock:
                self._queued -= 1
                if task.call.task_id:
                    self._tasks.pop(task.call.task_id, None)
                if task.cancelled:
                    if not self.accepting:  # drain() may be waiting
                        self._idle.notify_all()
                    continue
                self._busy += 1
            handed_over = False
            try:
                # An agent's replies leave in order: behind its replies still with the replier, a reply goes there too.
                if task.call.watch and not (agent.handed_over and self._hand_over(agent, task, pb.RUNNING, b"")):
                    self._reply(task, pb.RUNNING, b"")
                status, payload = self._execute(agent, task)
                if agent.handed_over or self._may_hand_over(task, payload):
                    handed_over = self._hand_over(agent, task, status, payload)
                if not handed_over:
                    self._reply(task, status, payload)
            finally:
                if not handed_over:
                    self._finished()

    def _may_hand_over(self, task: Task, payload: codec.Encoded) -> bool:
        """Whether the replier should send this final reply: a small one, while other calls run.

        Not while the server stops (speed no longer matters), nor when storing the
        result means a round trip to another store (Redis): the replier would make
        every caller wait for the round trips of the others, one after another.
        """
        return (self._busy > 1 and type(payload) is bytes and len(payload) <= HAND_OVER_BYTES and self.accepting
                and (self._store_is_local or not task.call.task_id))

    def _finished(self) -> None:
        with self._lock:
            self._busy -= 1
            self._completed += 1
            if not self.accepting:  # drain() may be waiting
                self._idle.notify_all()

    def _hand_over(self, agent: _Agent, task: Task, status: int, payload: codec.Encoded) -> bool:
        """Leave a reply to the replier thread, which counts the task finished once its final
        reply is sent. False when there is no replier to take it (the caller sends it itself)."""
        if self._replier is None and not self._start_replier():
            return False
        if self._replier_stopped:
            return False
        with agent.lock:
            agent.handed_over += 1
        self._replies.put((agent, task, status, payload))
        return True

    def _start_replier(self) -> bool:
        with self._lock:
            if self._replier is None:
                replier = threading.Thread(target=self._send_replies, name="agentnb-replier", daemon=True)
                try:
                    replier.start()
                except RuntimeError as exc:  # no thread to be had: each worker sends its own replies
                    _LOGGER.warning("the agent server %s sends replies without its replier thread: %s", self.name, exc)
                    return False
                self._replier = replier
        return True

    def _send_replies(self) -> None:
        while True:
            item = self._replies.get()
            if item is _END:
                return
            agent, task, status, payload = item
            try:
                self._reply(task, status, payload)
            except Exception:
                _LOGGER.exception("a reply could not be sent")
            finally:
                with agent.lock:
                    agent.handed_over -= 1
                if is_final(status):
                    self._finished()

    def _execute(self, agent: _Agent, task: Task) -> tuple[int, codec.Encoded]:
        call = task.call
        set_waiting_chain((*call.waiting_chain, agent.agent_id))
        try:
            value = self._run(agent, call, task.payload)
            label = f"{agent.name or agent.class_name}.{call.method}" if call.method else "the call"
            return pb.OK, codec.dumps(value, f"the result of {label}")
        except BaseException as exc:  # an agent's failure is its caller's, never the server's
            where = f"(in {agent.name or agent.class_name or 'agent'} {agent.agent_id} on agent server {self.name})"
            return pb.ERROR, codec.encode_error(exc, where)
        finally:
            set_waiting_chain(None)

    def _run(self, agent: _Agent, call: pb.Call, payload: codec.Encoded) -> object:
        kind = call.kind
        if kind == pb.CREATE:
            return self._create(agent, payload)
        if agent.obj is None:
            raise AgentNotFound(f"agent {agent.agent_id} failed to initialise on agent server {self.name}")
        name = call.method
        if kind == pb.CALL:
            if name.startswith("_") and name != "__call__":
                raise AttributeError(f"{name!r} is private: it cannot be called on a distributed object")
            if name not in agent.methods:
                raise AttributeError(f"{agent.class_name} has no public method {name!r}")
            args, kwargs = codec.loads(payload, f"the arguments of {name}()")
            return getattr(agent.obj, name)(*resolve_results(args), **resolve_results(kwargs))
        if kind == pb.GETATTR:
            if name.startswith("_"):
                raise AttributeError(f"{name!r} is private: it cannot be read on a distributed object")
            return getattr(agent.obj, name)
        if kind == pb.DELETE:
            with self._lock:
                agent.deleted = True
                self._agents.pop(agent.agent_id, None)
            _HOSTED.pop(id(agent.obj), None)
            agent.obj = None
            return True
        raise AgentServerError(f"unknown call kind {kind}")

    def _create(self, agent: _Agent, payload: codec.Encoded) -> dict:
        try:
            cls, args, kwargs = codec.loads(payload, "the class or its constructor arguments")
            obj = cls(*resolve_results(args), **resolve_results(kwargs))
        except BaseException:
            with self._lock:
                agent.deleted = True
                self._agents.pop(agent.agent_id, None)
            raise
        agent.obj = obj
        name = getattr(obj, "name", "")
        agent.name = name if isinstance(name, str) else ""
        agent.class_name = qualified_name(cls)
        agent.methods = class_methods(cls)
        _host(obj, self, agent)
        return {"class_name": agent.class_name, "methods": agent.methods, "name": agent.name or None}

    def _cancel(self, task_id: str) -> bool:
        with self._lock:
            task = self._tasks.pop(task_id, None)
            if task is None:
                return False
            task.cancelled = True
        self._reply(task, pb.CANCELLED, b"")
        return True

    def _fail(self, task: Task, error: Exception) -> None:
        self._reply(task, pb.ERROR, codec.encode_error(error))

    def _reply(self, task: Task, status: int, payload: codec.Encoded, store: bool = True) -> None:
        call = task.call
        now = time.time()
        task_id = call.task_id
        final = is_final(status)
        if store and task_id and final:
            try:
                self.results.put(task_id, StoredResult(status, payload, now))
            except Exception:  # the caller still gets its reply on the session
                _LOGGER.exception("the result store could not keep the result of task %s", task_id)
        task.session.send(frames.outgoing(pb.Reply, payload, self.shm if call.shm_reply else None, seq=call.seq,
                                         status=status, task_id=task_id, timestamp=now),
                          final=final)

    # -- requests of their own -------------------------------------------------------------

    def GetResult(self, request: pb.ResultRequest,
                  context: grpc.ServicerContext) -> Iterator[pb.ServerFrame | frames.Chunk]:
        """The frame of the stored Reply, then the chunks of its payload (written by ``frames.encode_frame``)."""
        try:
            stored = self.results.get(request.task_id, request.timeout or None)
        except TaskNotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except TimeoutError as exc:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        except Exception as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the result pool failed: {exc}")
        shm_dir = self.shm if request.shm_reply else None
        item = frames.outgoing(pb.Reply, stored.payload, shm_dir, status=stored.status, task_id=request.task_id,
                              timestamp=stored.timestamp)
        if shm_dir is not None and type(item) is pb.Reply and item.shm_name:
            # The RPC may end before its client took the file: remove it a while later, if still there.
            context.add_callback(lambda: remove_later(shm_dir, item.shm_name, UNCLAIMED_FILE_SECONDS))
        return frames.of_item(item, server_frame)

    def GetInfo(self, request: pb.InfoRequest, context: grpc.ServicerContext) -> pb.ServerInfo:
        import os

        from agentnb import __version__

        with self._lock:
            return pb.ServerInfo(
                name=self.name, host=self.host, port=self.port, pid=os.getpid(), started=self.started,
                capacity=self.capacity, busy=self._busy, queued=self._queued, agents=len(self._agents),
                pool_type=self.pool_type, version=__version__, completed=self._completed,
                host_id=shm.host_id() if self.shm is not None else "",
                shm_dir=self.shm.path if self.shm is not None else "",
            )

    def ListAgents(self, request: pb.ListAgentsRequest, context: grpc.ServicerContext) -> pb.AgentList:
        with self._lock:
            agents = [a for a in self._agents.values() if a.obj is not None and not a.deleted]
        return pb.AgentList(agents=[a.describe() for a in agents])

    def Shutdown(self, request: pb.ShutdownRequest, context: grpc.ServicerContext) -> pb.ShutdownReply:
        if self._on_shutdown is not None:
            grace = request.grace if request.grace > 0 else 0.0
            stopper = threading.Thread(target=self._on_shutdown, args=(grace,), daemon=True)
            # Stop once this reply has gone out: a stop(0) racing the reply would cancel it,
            # and the caller would see its own successful shutdown as a dead server.
            if not context.add_callback(stopper.start):
                stopper.start()
        return pb.ShutdownReply()

    # -- stopping ------------------------------------------------------------------------

    def stop_replier(self) -> None:
        """End the replier thread after the replies already handed to it (the server has stopped)."""
        self._replier_stopped = True
        self._replies.put(_END)

    def end_sessions(self) -> None:
        """End every Session stream once the replies already made have gone out."""
        for session in list(self._sessions):
            session.end()

    def drain(self, grace: float) -> bool:
        """Refuse new work and wait up to ``grace`` s for accepted work to finish."""
        self.accepting = False
        deadline = time.monotonic() + grace
        with self._idle:
            while self._busy or self._queued:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True
