"""Ids of agents, tasks and messages: unique, in the forms the servers expect, also after a fork."""

from __future__ import annotations

import os

from agentnb import Msg
from agentnb.server.result_store import TASK_ID_PATTERN
from agentnb.wire.ids import random_hex


def test_ids_are_unique_and_of_the_asked_length() -> None:
    ids = {random_hex() for _ in range(100_000)}
    assert len(ids) == 100_000
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)  # lowercase hex
    assert len(random_hex(8)) == 8 and len(random_hex(12)) == 12
    assert Msg("user", content="a").id != Msg("user", content="b").id


def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids and leave at once
        try:
            os.write(write, " ".join(random_hex() for _ in range(5)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_ids = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent_ids = {random_hex() for _ in range(5)}
    assert len(child_ids) == 5 and not child_ids & parent_ids


def test_task_ids_have_the_form_the_result_pools_know(server) -> None:
    conn = server.connection()
    task_ids = {conn.new_task_id() for _ in range(1000)}
    assert len(task_ids) == 1000
    assert all(TASK_ID_PATTERN.fullmatch(t) for t in task_ids)
