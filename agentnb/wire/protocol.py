"""The agent protocol's constants: what a client and a server must agree on.

The messages themselves are in ``protos/agentnb.proto``; this module holds the
rest of the contract: the service name, how large a frame grows, and the one
table from a reply's status to the state a user sees
(:attr:`agentnb.AsyncResult.status`). How each side proves it holds the token
is :mod:`agentnb.wire.handshake`'s part; how a server process is started and
reports that it listens, :mod:`agentnb.launch.command`'s.
"""

from __future__ import annotations

from agentnb._proto import agentnb_pb2 as pb
from agentnb.wire.states import CANCELLED, DONE, FAILED, QUEUED, RUNNING

SERVICE = "agentnb.AgentServer"
# A Session's metadata names its client process: "<client id> <host id> <pid>" (see agentnb.server.ownership).
CLIENT_METADATA_KEY = "agentnb-client"
ENV_TLS_CA = "AGENTNB_TLS_CA"

# Small calls (or replies) share a frame; a large payload follows its message in chunk frames.
MAX_FRAME_BYTES = 4 * 2**20
# The largest message a server reads: a frame of calls (MAX_FRAME_BYTES, plus the inline payload
# of 1 MiB that may end it, and the calls' other fields), or a chunk. Anything larger is refused
# by gRPC before it is read whole, with or without a proof of the token.
MAX_MESSAGE_BYTES = 16 * 2**20

# The one table from a reply's status to a task state (an unknown status is a failure).
STATE_OF_STATUS: dict[int, str] = {pb.QUEUED: QUEUED, pb.RUNNING: RUNNING, pb.OK: DONE, pb.ERROR: FAILED,
                                   pb.CANCELLED: CANCELLED}


def state_of(status: int) -> str:
    """The task state a reply with ``status`` (an ``agentnb_pb2.ReplyStatus``) puts its task in."""
    return STATE_OF_STATUS.get(status, FAILED)


# The statuses of the replies that report progress; any other ends its task. (Tested as
# ``status in PROGRESS`` where every reply passes: that spares a call of is_final.)
PROGRESS = frozenset((pb.QUEUED, pb.RUNNING))


def is_final(status: int) -> bool:
    """Whether a reply with ``status`` ends its task (the others report progress)."""
    return status not in PROGRESS
