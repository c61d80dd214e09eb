"""The states of a task, as users see them (:attr:`agentnb.AsyncResult.status`).

A module of its own, with no imports, so that progress displays use them
without loading grpc or protobuf; :func:`agentnb.wire.protocol.state_of` maps a
reply's status to one of them.
"""

#: Sent to its server, not started yet (waiting for a free worker or for the agent's earlier calls).
QUEUED = "queued"
#: Running on its server.
RUNNING = "running"
#: Finished with a value.
DONE = "done"
#: Finished with an exception (the agent's, or the server's or connection's).
FAILED = "failed"
#: Cancelled before it started; it never ran.
CANCELLED = "cancelled"
#: Every state, in the order a call goes through them.
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
#: The states a call does not leave.
FINAL_STATES = frozenset({DONE, FAILED, CANCELLED})
