"""AgentServicer: the gRPC service of an agent server, a thin layer over its parts.

A call goes through the server in four hops, one function each:

1. its client's Session stream (:mod:`agentnb.server.session`) reads it and
   hands it to :meth:`AgentServicer._accept`;
2. which answers a CANCEL at once, and admits any other call
   (:func:`agentnb.server.dispatch.admit`, against the registry of
   :mod:`agentnb.server.hosted`), counts it and posts it to its agent's mailbox
   (:mod:`agentnb.server.mailbox`), or, for a method marked ``@concurrent``,
   hands it to a worker at once (:meth:`AgentServicer._run`);
3. a worker thread (:mod:`agentnb.server.workers`) runs that mailbox's calls one
   after another (:meth:`AgentServicer._run_mailbox`), each with the handler of
   its kind (:func:`agentnb.server.dispatch.execute`);
4. :meth:`AgentServicer._reply` keeps the final result of an asynchronous call
   in the result store (:mod:`agentnb.server.result_store`) and sends the reply
   on the session: from the worker, or, for a small one while other calls run,
   from the replier thread (:mod:`agentnb.server.replier`).

The unary RPCs read the result store (GetResult) and the server's state
(GetInfo, ListAgents, GetCalls: its recent calls, kept by
:mod:`agentnb.server.call_history`), or stop the server (Shutdown). Large payloads of clients
on the same host come and go through the server's shared-memory directory
(``shm``, see :mod:`agentnb.wire.shm`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator

import grpc

from agentnb._proto import agentnb_pb2 as pb
from agentnb._proto import agentnb_pb2_grpc as pb_grpc
from agentnb.errors import AgentServerError, DeadlockError, IntegrityError, TaskNotFound
from agentnb.server import call_events, dispatch
from agentnb.server.call_history import CallHistory
from agentnb.server.hosted import HostedAgent, HostedAgents
from agentnb.server.late_removals import remove_later
from agentnb.server.mailbox import Mailbox
from agentnb.server.ownership import Client, Owners
from agentnb.server.replier import HAND_OVER_BYTES, ReplyQueue
from agentnb.server.result_store import LocalResultStore, ResultStore, StoredResult
from agentnb.server.session import ClientSession, Task, server_frame
from agentnb.server.workers import WorkerThreads
from agentnb.wire import codec, frames, shm
from agentnb.wire.protocol import PROGRESS

_LOGGER = logging.getLogger(__name__)

# Agents a release names in the log (a moderator's million participants make one short line).
_RELEASES_NAMED = 20
# How long a GetResult's shared-memory file waits for its client after the RPC ended.
UNCLAIMED_FILE_SECONDS = 30.0


class AgentServicer(pb_grpc.AgentServerServicer):
    """The gRPC service of one agent server.

    Args:
        name: the server's name, in messages and in GetInfo.
        capacity: worker threads: how many agents run a call at once.
        results: where the results of asynchronous calls wait to be fetched.
        pool_type: the kind of ``results`` the server was asked for, as GetInfo reports it.
        on_shutdown: ``on_shutdown(grace)`` stops the server (the Shutdown RPC).
    """

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
        self.session_socket = ""  # the Unix socket of same-host clients' sessions, if any (agentnb.wire.local_socket)
        self.accepting = True
        self._on_shutdown = on_shutdown
        self._store_is_local = isinstance(results, LocalResultStore)  # storing a result costs no round trip
        # One lock for the registry and the counts of calls: a call is looked up and counted at once.
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified as calls end while the server drains
        self._agents = HostedAgents(self._lock, self)
        self._queued = 0  # calls waiting in mailboxes
        self._busy = 0  # calls running, or whose final reply is with the replier
        self._completed = 0
        self._tasks: dict[str, Task] = {}  # task id -> queued asynchronous call, for CANCEL
        self._workers = WorkerThreads(capacity, "agentnb-worker")
        self._replies = ReplyQueue(self._reply, self._finished)
        self._sessions: weakref.WeakSet[ClientSession] = weakref.WeakSet()  # open Session streams
        self._owners = Owners(self._release)  # agents of clients whose session ended
        self.calls = CallHistory()  # recent calls, for GetCalls (a timeline of the run)

    # -- the Session stream: a call's way through the server ---------------------------------

    def Session(self, request_iterator: Iterator[tuple],
                context: grpc.ServicerContext) -> Iterator[pb.ServerFrame | frames.Chunk]:
        """A client's calls in, their replies out. Frames come in as decoded by
        ``frames.decode_client_frame`` and go out through ``frames.encode_frame``
        (see :func:`agentnb.server.agent_server.service_handlers`)."""
        client = Client.of(context.invocation_metadata())
        session, who = self.open_session(client, context.peer())
        context.add_callback(lambda: self.session_ended(session, client, who))
        self.read_calls(session, request_iterator)
        return session.replies()

    def open_session(self, client: Client | None, peer: str) -> tuple[ClientSession, str]:
        """A session of ``client`` (connected from ``peer``) opens: on gRPC's stream, or on the session
        socket (:mod:`agentnb.server.local_sessions`); it takes over the agents its client left waiting.
        Returns the session and how the log names its client."""
        session = ClientSession(self.shm)
        self._sessions.add(session)
        who = _describe_client(client, peer)
        _LOGGER.info("client connected: %s", who)
        self._owners.reclaim(client, session)
        return session, who

    def read_calls(self, session: ClientSession, requests: Iterator[tuple]) -> None:
        """Take the calls of ``session`` from ``requests`` (decoded frames), on a thread of the session."""
        session.start_reading(requests, self._accept, self._workers.submit_many)

    def session_ended(self, session: ClientSession, client: Client | None, who: str) -> None:
        """The stream of ``session`` ended: the files of its replies not taken go, and so do its
        client's agents, unless the client comes back (see :mod:`agentnb.server.ownership`)."""
        session.close()
        _LOGGER.info("client left: %s", who)
        if self.accepting:
            self._owners.ended(session, client)

    def _accept(self, call: pb.Call, payload: codec.Encoded | frames.PayloadError, session: ClientSession) -> None:
        """Take a call read from ``session``: answer it at once (a CANCEL, or a refusal),
        or post it to its agent's mailbox."""
        task = Task(call, payload, session)
        if type(payload) is frames.PayloadError:  # too large, or chunks not adding up: refuse that one
            self._fail(task, payload)
            return
        if not self.accepting:
            self._fail(task, AgentServerError(f"the agent server {self.name} is shutting down"))
            return
        if call.kind == pb.CANCEL:
            self._reply(task, pb.OK, codec.dumps(self._cancel(call.task_id)))
            return
        if call.task_id:
            try:
                self.results.add_pending(call.task_id)
            except Exception as exc:  # the result store is lost (Redis): refuse the call, keep the session
                error = AgentServerError(f"the agent server {self.name} cannot take asynchronous calls now: {exc}")
                call_events.call_refused(None, call, error)
                self._reply(task, pb.ERROR, codec.encode_error(error), store=False)
                return
        try:
            with self._lock:
                agent = dispatch.admit(self._agents, call)
                mailbox = agent.box()
                self._queued += 1
                if call.task_id:
                    self._tasks[call.task_id] = task
                self.calls.queued(task, agent)
        except (AgentServerError, DeadlockError) as error:
            self._fail(task, error)
            return
        if call.owned and call.kind == pb.CREATE:
            session.owned.append(agent)
        if call.watch:
            self._reply(task, pb.QUEUED, b"")
        if dispatch.runs_beside(agent, call):
            session.starts.append((self._run, (agent, task, None)))
        elif mailbox.post(task):
            session.starts.append((self._run_mailbox, (agent,)))

    def _release(self, session: ClientSession, owned: list[HostedAgent]) -> None:
        """A client is gone: cancel the calls queued for the agents it owned and delete those
        agents once their running call, if any, ends (see :mod:`agentnb.server.ownership`)."""
        for agent in owned:
            with self._lock:
                mailbox = agent.box()
            queued = [task for task in mailbox.waiting() if not task.cancelled]
            for task in queued:
                self._cancel_task(task, agent, "its client is gone")
            delete = Task(pb.Call(kind=pb.DELETE, agent_id=agent.agent_id), b"", session, read=False)
            with self._lock:
                self._queued += 1
            if mailbox.post(delete):
                self._workers.submit(self._run_mailbox, agent)
        named = ", ".join(a.name or a.agent_id for a in owned[:_RELEASES_NAMED])
        more = f" and {len(owned) - _RELEASES_NAMED} more" if len(owned) > _RELEASES_NAMED else ""
        _LOGGER.info("a client is gone: released its %d agent(s), %s%s", len(owned), named, more)

    def _run_mailbox(self, agent: HostedAgent) -> None:
        """A worker's job: run the calls in ``agent``'s mailbox, one after another, until none is left."""
        mailbox = agent.mailbox  # (made by the call that had this job submitted)
        assert mailbox is not None
        while True:
            task = mailbox.next()
            if task is None:
                return
            self._run(agent, task, mailbox)

    def _run(self, agent: HostedAgent, task: Task, mailbox: Mailbox | None) -> None:
        """Run one call of ``agent`` and reply: a call from its mailbox, or (``mailbox`` None)
        one of a ``@concurrent`` method, beside the agent's other calls."""
        with self._lock:
            self._queued -= 1
            if task.call.task_id:
                self._tasks.pop(task.call.task_id, None)
            if task.cancelled:
                if not self.accepting:  # drain() may be waiting
                    self._idle.notify_all()
                return
            task.started = True
            self._busy += 1
            self.calls.started(task)
        handed_over = False
        try:
            # An agent's replies leave in order: behind its replies still with the replier, a reply goes there too.
            # (A call beside the others has no place in that order: it replies itself.)
            if task.call.watch and not (mailbox is not None and mailbox.handed - mailbox.sent
                                        and self._replies.hand_over(mailbox, task, pb.RUNNING, b"")):
                self._reply(task, pb.RUNNING, b"")
            started = time.perf_counter()
            status, payload = dispatch.execute(self._agents, agent, task)
            # The replier sends a small final reply while other calls run. Not while the server stops
            # (speed no longer matters), nor when storing the result means a round trip to another store
            # (Redis): the replier would make every caller wait for the round trips of the others.
            if mailbox is not None and (mailbox.handed - mailbox.sent or (
                    self._busy > 1 and type(payload) is bytes and len(payload) <= HAND_OVER_BYTES
                    and self.accepting and (self._store_is_local or not task.call.task_id))):
                handed_over = self._replies.hand_over(mailbox, task, status, payload)
            if not handed_over:
                self._reply(task, status, payload)
            call_events.call_ended(agent, task.call, status, payload, started)
        finally:
            if not handed_over:
                self._finished()

    def _finished(self, count: int = 1) -> None:
        """Count ``count`` calls done, their final replies sent."""
        with self._lock:
            self._busy -= count
            self._completed += count
            if not self.accepting:  # drain() may be waiting
                self._idle.notify_all()

    def _cancel(self, task_id: str) -> bool:
        """Cancel the queued call ``task_id``; False when it is not queued (running, done, or unknown)."""
        with self._lock:
            task = self._tasks.get(task_id)
            agent = self._agents.get(task.call.agent_id) if task is not None else None
        if task is None:
            _LOGGER.info("cancel of task %s: not queued (running, done or unknown), nothing to cancel", task_id)
            return False
        return self._cancel_task(task, agent, "by its caller")

    def _cancel_task(self, task: Task, agent: HostedAgent | None, why: str) -> bool:
        """Cancel ``task`` (a call for ``agent``) if it is still queued (its worker then skips it),
        replying so; whether it was. ``why`` is for the log."""
        with self._lock:
            if task.started or task.cancelled:
                return False
            if task.call.task_id:
                self._tasks.pop(task.call.task_id, None)
            task.cancelled = True
        self._reply(task, pb.CANCELLED, b"")
        call_events.call_cancelled(agent, task.call, why)
        return True

    def _fail(self, task: Task, error: Exception) -> None:
        """Refuse ``task`` with ``error``."""
        with self._lock:
            agent = self._agents.get(task.call.agent_id)
        call_events.call_refused(agent, task.call, error)
        self._reply(task, pb.ERROR, codec.encode_error(error))

    def _reply(self, task: Task, status: int, payload: codec.Encoded, store: bool = True) -> None:
        """Send a reply of ``task`` on its session; a final one of an asynchronous call
        first goes to the result store (unless ``store`` is False)."""
        call = task.call
        now = time.time()
        task_id = call.task_id
        final = status not in PROGRESS
        if final:
            self.calls.ended(task, status, payload, now)
        if store and task_id and final:
            try:
                self.results.put(task_id, StoredResult(status, payload, now))
            except Exception:  # the caller still gets its reply on the session
                _LOGGER.exception("the result store could not keep the result of task %s", task_id)
        reply = pb.Reply(seq=call.seq, status=status, task_id=task_id, timestamp=now)  # type: ignore[arg-type]
        task.session.send(frames.outgoing(reply, payload, task.session.shm_pool if call.shm_reply else None),
                          final=final)

    # -- the unary RPCs ------------------------------------------------------------------------

    def GetResult(self, request: pb.ResultRequest,
                  context: grpc.ServicerContext) -> Iterator[pb.ServerFrame | frames.Chunk]:
        """The frame of the stored Reply, then the chunks of its payload (written by ``frames.encode_frame``)."""
        try:
            stored = self.results.get(request.task_id, request.timeout or None)
        except TaskNotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except TimeoutError as exc:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        except IntegrityError as exc:
            context.abort(grpc.StatusCode.DATA_LOSS, str(exc))
        except Exception as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the result pool failed: {exc}")
        shm_dir = self.shm if request.shm_reply else None
        item = frames.outgoing(pb.Reply(status=stored.status, task_id=request.task_id,  # type: ignore[arg-type]
                                        timestamp=stored.timestamp), stored.payload, shm_dir)
        if shm_dir is not None and type(item) is pb.Reply and item.shm_name:
            # The RPC may end before its client took the file: remove it a while later, if still there.
            context.add_callback(lambda: remove_later(shm_dir, item.shm_name, UNCLAIMED_FILE_SECONDS))
        return frames.of_item(item, server_frame)

    def GetInfo(self, request: pb.InfoRequest, context: grpc.ServicerContext) -> pb.ServerInfo:
        """The server's identity, capacity and load."""
        from agentnb import __version__

        with self._lock:
            return pb.ServerInfo(
                name=self.name, host=self.host, port=self.port, pid=os.getpid(), started=self.started,
                capacity=self.capacity, busy=self._busy, queued=self._queued, agents=len(self._agents),
                pool_type=self.pool_type, version=__version__, completed=self._completed,
                host_id=shm.host_id() if self.shm is not None else "",
                shm_dir=self.shm.path if self.shm is not None else "",
                session_socket=self.session_socket,
            )

    def ListAgents(self, request: pb.ListAgentsRequest, context: grpc.ServicerContext) -> pb.AgentList:
        """The agents hosted here."""
        return pb.AgentList(agents=[a.describe() for a in self._agents.listing()])

    def GetCalls(self, request: pb.CallsRequest, context: grpc.ServicerContext) -> pb.CallList:
        """The recent calls of the server's agents, oldest first (see :mod:`agentnb.server.call_history`)."""
        return self.calls.listing(request.limit)

    def Shutdown(self, request: pb.ShutdownRequest, context: grpc.ServicerContext) -> pb.ShutdownReply:
        """Stop the server, letting running calls finish for up to ``request.grace`` s."""
        if self._on_shutdown is not None:
            grace = request.grace if request.grace > 0 else 0.0
            _LOGGER.info("shutdown asked by a client (Shutdown RPC, grace %g s)", grace)
            stopper = threading.Thread(target=self._on_shutdown, args=(grace,), daemon=True)
            # Stop once this reply has gone out: a stop(0) racing the reply would cancel it,
            # and the caller would see its own successful shutdown as a dead server.
            if not context.add_callback(stopper.start):
                stopper.start()
        return pb.ShutdownReply()

    # -- stopping (see AgentServer.stop) ---------------------------------------------------------

    def drain(self, grace: float) -> bool:
        """Refuse new calls and wait up to ``grace`` s for the calls taken to finish."""
        self.accepting = False
        deadline = time.monotonic() + grace
        with self._idle:
            while self._busy or self._queued:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def end_sessions(self) -> None:
        """End every Session stream once the replies already made have gone out."""
        for session in list(self._sessions):
            session.end()

    def stop_replier(self) -> None:
        """End the replier thread after the replies already handed to it (the server has stopped)."""
        self._replies.stop()


def _describe_client(client: Client | None, peer: str) -> str:
    """A client in the log: its process and where it connects from."""
    where = "" if peer.startswith("unix:") else f" from {peer}"
    if client is None:
        return f"a client without an id{where or ' (on a Unix socket)'}"
    host = "" if not client.host_id or client.host_id == shm.host_id() else " on another host"
    return f"pid {client.pid}{host} (client {client.client_id}){where}"
