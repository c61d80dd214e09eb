"""What repr() tells about an AsyncResult (its state) and an RpcObject (class, id, server)."""

from __future__ import annotations

import uuid

import pytest
from agents_for_tests import Worker


def test_async_result_repr_says_pending_done_or_failed(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    gate = uuid.uuid4().hex
    pending = worker.hold(gate, "value")
    text = repr(pending)
    assert "pending" in text and "W0.hold" in text
    assert "done" not in text and "failed" not in text
    Worker("opener", to_dist=server.to_dist).release(gate)
    pending.result(timeout=30)
    text = repr(pending)
    assert "done" in text and "pending" not in text
    assert "'value'" in text

    failed = worker.fail_later("nope")
    with pytest.raises(ValueError):
        failed.result(timeout=30)
    text = repr(failed)
    assert "failed" in text and "ValueError" in text


def test_rpc_object_repr_names_class_agent_id_and_server(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    text = repr(worker)
    assert "Worker" in text
    assert worker.agent_id in text
    assert f"{server.port}" in text and "127.0.0.1" in text
    assert "W0" in text
