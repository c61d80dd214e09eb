"""What both sides of the agent protocol share: a client and a server import it alike.

- :mod:`~agentnb.wire.protocol`: the contract's constants and the status-to-state table;
- :mod:`~agentnb.wire.states`: the task states users see;
- :mod:`~agentnb.wire.codec`: pickling of values, and of remote errors;
- :mod:`~agentnb.wire.frames`: frames on the session stream, chunks of large payloads, reassembly;
- :mod:`~agentnb.wire.shm`: the same-host shared-memory path for large payloads;
- :mod:`~agentnb.wire.ids`: ids for agents, tasks and messages.

Nothing here knows of a connection, a server or a process.
"""
