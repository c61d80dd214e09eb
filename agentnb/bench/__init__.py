"""agentnb's benchmark: ``python -m agentnb.bench`` runs workloads W1-W7 of issue 7.

Each workload runs against real agent-server processes and, where the same
work can be done without agentnb, beside a bare grpcio echo server that the
benchmark starts itself (the floor). The result is one table and a JSON file
that a later run can be compared with (``--compare OLD.json``).

Modules: :mod:`~agentnb.bench.agents` (the classes the workloads distribute),
:mod:`~agentnb.bench.floor` (the bare grpcio server and its client),
:mod:`~agentnb.bench.servers` (server processes that always stop),
:mod:`~agentnb.bench.workloads` (W1-W7), :mod:`~agentnb.bench.report` (the
table, the JSON and the comparison).
"""
