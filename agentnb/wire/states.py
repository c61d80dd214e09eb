"""The states of a task, as users see them (:attr:`agentnb.AsyncResult.status`).

A module of its own, with no imports, so that progress displays use them
without loading grpc or protobuf; :func:`agentnb.wire.protocol.state_of` maps a
reply's status to one of them.
"""

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINAL_STATES = frozenset({DONE, FAILED, CANCELLED})
