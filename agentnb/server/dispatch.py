"""What each kind of call does: its checks as it arrives, and the handler that runs it.

A call is admitted as it arrives (:func:`admit`): a CREATE adds its agent to
the registry; any other call needs an agent that is there and is not itself
waiting on the caller. The call then waits in its agent's mailbox until a
worker runs it (:func:`execute`) with the handler ``HANDLERS`` has for its
kind: adding a kind is one entry there and one function here.

A call of a method marked ``@concurrent`` (:func:`runs_beside`) skips the
mailbox: it runs on a free worker beside the agent's other calls.

A CANCEL is neither admitted nor run: the servicer answers it as it arrives,
since it acts on the queued calls, not on an agent.
"""

from __future__ import annotations

from collections.abc import Callable

from agentnb._proto import agentnb_pb2 as pb
from agentnb.errors import AgentNotFound, AgentServerError, DeadlockError
from agentnb.rpc import context
from agentnb.rpc.async_result import UNPICKLED, resolve_results
from agentnb.server.hosted import HostedAgent, HostedAgents, class_name
from agentnb.server.session import Task
from agentnb.wire import codec
from agentnb.wire.frames import PayloadError


def admit(agents: HostedAgents, call: pb.Call) -> HostedAgent:
    """The agent ``call`` is for, now that it may be queued: a new one for a CREATE.

    Called with ``agents.lock`` held.

    Raises:
        AgentServerError: a CREATE's agent id is taken.
        AgentNotFound: no agent has that id (never created, or deleted).
        DeadlockError: the agent is itself waiting synchronously on the caller
            (unless the call runs beside the agent's other calls: it can run then).
    """
    if call.kind == pb.CREATE:
        agent = agents.add(call.agent_id)
        if agent is None:
            raise AgentServerError(f"an agent with id {call.agent_id} already exists")
        return agent
    agent = agents.get(call.agent_id)
    if agent is None or agent.deleted:
        raise AgentNotFound(f"no agent with id {call.agent_id} on the agent server {agents.server.name}")
    if call.agent_id in call.waiting_chain and not runs_beside(agent, call):
        raise DeadlockError(
            f"deadlock: the synchronous call {agent.name or agent.class_name}.{call.method} can never run, "
            "because that agent is itself waiting synchronously on the caller (directly or through other "
            "agents); make one of the calls asynchronous (@async_func) or break the cycle")
    return agent


def runs_beside(agent: HostedAgent, call: pb.Call) -> bool:
    """Whether ``call`` runs beside the agent's other calls instead of in its mailbox:
    a CALL of a method marked ``@concurrent`` (known once the agent's object is made;
    before, the call waits in the mailbox behind the creation), or a DESCRIBE of an
    agent that exists (one still being made is described once it is)."""
    if call.kind == pb.CALL:
        return call.method in agent.concurrent
    return call.kind == pb.DESCRIBE and agent.obj is not None


def execute(agents: HostedAgents, agent: HostedAgent, task: Task) -> tuple[int, codec.Encoded]:
    """Run ``task`` on ``agent``: the status and payload of its final reply.

    An agent's failure is its caller's, never the server's: whatever the
    handler raises becomes an ERROR reply.
    """
    call, payload = task.call, task.payload
    assert not isinstance(payload, PayloadError)  # a call whose payload could not be taken is refused on arrival
    # The agents blocked on this call, this one last: its own synchronous calls carry them (see admit).
    context.current.task = (call, agent.agent_id)
    try:
        value = HANDLERS.get(call.kind, _unknown_kind)(agents, agent, call, payload)
        return pb.OK, codec.dumps(value, lambda: f"the result of {_label(agent, call)}")
    except BaseException as exc:
        who = agent.name or agent.class_name.rsplit(".", 1)[-1] or "agent"
        where = f"(in {who} {agent.agent_id} on agent server {agents.server.name})"
        return pb.ERROR, codec.encode_error(exc, where)
    finally:
        context.current.task = None


def _label(agent: HostedAgent, call: pb.Call) -> str:
    """A call in an error message: ``Counter.add``."""
    return f"{agent.name or agent.class_name}.{call.method}" if call.method else "the call"


# -- the handlers: (registry, agent, call, payload) -> the call's value --------------------------


def _create(agents: HostedAgents, agent: HostedAgent, call: pb.Call, payload: codec.Encoded) -> dict:
    """CREATE: make the agent's object, of the class and with the arguments in the payload.

    The value tells the new proxy what it needs: class name, method kinds, name.
    A class or constructor that fails leaves no agent behind.
    """
    try:
        cls, args, kwargs = codec.loads(payload, "the class or its constructor arguments")
        agent.class_name = class_name(cls)  # named in the log even if its constructor fails
        obj = cls(*resolve_results(args), **resolve_results(kwargs))
    except BaseException:
        agents.remove(agent)
        raise
    # Hosted as what it is: an object that travelled whole was "made" by placement.adopt.
    agents.host(agent, obj, type(obj))
    return _description(agent)


def _describe(agents: HostedAgents, agent: HostedAgent, call: pb.Call, payload: codec.Encoded) -> dict:
    """DESCRIBE: what a CREATE answers, for a proxy whose creation's answer was lost with its connection."""
    _object_of(agents, agent)
    return _description(agent)


def _description(agent: HostedAgent) -> dict:
    """What a new proxy needs to know of its agent: class name, method kinds, name."""
    return {"class_name": agent.class_name, "methods": agent.methods, "name": agent.name or None}


def _call(agents: HostedAgents, agent: HostedAgent, call: pb.Call, payload: codec.Encoded) -> object:
    """CALL: a public method of the object, with the arguments in the payload."""
    obj = _object_of(agents, agent)
    name = call.method
    if name.startswith("_") and name != "__call__":
        raise AttributeError(f"{name!r} is private: it cannot be called on a distributed object")
    if name not in agent.methods:
        raise AttributeError(f"{agent.class_name} has no public method {name!r}")
    made = UNPICKLED.count
    args, kwargs = codec.loads(payload, lambda: f"the arguments of {name}()")
    if UNPICKLED.count != made:  # AsyncResults among the arguments: their values go instead
        args, kwargs = resolve_results(args), resolve_results(kwargs)
    return getattr(obj, name)(*args, **kwargs)


def _getattr(agents: HostedAgents, agent: HostedAgent, call: pb.Call, payload: codec.Encoded) -> object:
    """GETATTR: a public attribute of the object."""
    obj = _object_of(agents, agent)
    name = call.method
    if name.startswith("_"):
        raise AttributeError(f"{name!r} is private: it cannot be read on a distributed object")
    return getattr(obj, name)


def _delete(agents: HostedAgents, agent: HostedAgent, call: pb.Call, payload: codec.Encoded) -> bool:
    """DELETE: forget the agent; the calls queued behind this one find it gone."""
    _object_of(agents, agent)
    agents.remove(agent)
    return True


def _unknown_kind(agents: HostedAgents, agent: HostedAgent, call: pb.Call, payload: codec.Encoded) -> object:
    """A kind this server does not know (an agent that is gone says so first, as for any kind)."""
    _object_of(agents, agent)
    raise AgentServerError(f"unknown call kind {call.kind}")


def _object_of(agents: HostedAgents, agent: HostedAgent) -> object:
    """The agent's object; AgentNotFound when it has none (its creation failed, or it was deleted)."""
    obj = agent.obj
    if obj is None:
        raise AgentNotFound(f"agent {agent.agent_id} failed to initialise on agent server {agents.server.name}")
    return obj


HANDLERS: dict[int, Callable[[HostedAgents, HostedAgent, pb.Call, codec.Encoded], object]] = {
    pb.CREATE: _create,
    pb.CALL: _call,
    pb.GETATTR: _getattr,
    pb.DELETE: _delete,
    pb.DESCRIBE: _describe,
}
