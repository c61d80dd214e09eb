"""Many agents at once: created in a batch (``agentnb.create_many``), from a script or from inside an
agent, asked all at once, and a creation that fails in a batch (named, hurting none of the others).

The participants and the moderator are those of ``agentnb/examples/distributed_simulation.py``
(the seed's simulation). Times are the benchmark's (W8 of ``python -m agentnb.bench``), not these tests'.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from helpers_runtime import wait_for

import agentnb
from agentnb.errors import AgentNotFound
from agentnb.examples.distributed_simulation import Moderator, RandomParticipant
from agentnb.rpc.connection import ServerConnection
from agentnb.server.call_events import CREATIONS_LOGGED

PARTICIPANTS = 20_000


def _to_dist(server) -> dict:
    return {"host": server.host, "port": server.port, "token": server.token}


def test_a_moderator_creates_20000_participants_in_its_init_and_a_round_answers_all(start_server) -> None:
    first, second, third = start_server(), start_server(), start_server()
    moderator = Moderator("moderator", PARTICIPANTS, [_to_dist(first), _to_dist(second)],  # type: ignore[call-arg]
                          max_value=100, sleep_time=0.0, to_dist=_to_dist(third))
    assert moderator.created() == PARTICIPANTS
    for _ in range(2):
        outcome = moderator().result(timeout=300).content
        assert outcome["cnt"] == PARTICIPANTS
        assert 0 <= outcome["sum"] <= 100 * PARTICIPANTS
        # Participant i on server i % 2: both answered, and neither is the moderator's.
        assert outcome["participant_pids"] == sorted([first.process.pid, second.process.pid])
        assert outcome["moderator_pid"] == third.process.pid
    counts = [ServerConnection.get(s.host, s.port, s.token).info().agents for s in (first, second)]
    assert counts == [PARTICIPANTS // 2, PARTICIPANTS // 2]


def test_create_many_returns_proxies_in_order_with_common_and_own_arguments(server) -> None:
    proxies = agentnb.create_many(RandomParticipant, [{"name": f"P{i}", "max_value": i} for i in range(50)]
                                  + [("Q", 7)], to_dist=_to_dist(server), sleep_time=0.0)
    agentnb.wait_created(*proxies)
    assert [p.name for p in proxies] == [f"P{i}" for i in range(50)] + ["Q"]
    assert [p.max_value for p in proxies[:3]] == [0, 1, 2]
    assert proxies[50].max_value == 7 and proxies[50].sleep_time == 0.0  # a tuple's positional, plus common
    assert all(p.reply().result(timeout=60).pid == server.process.pid for p in proxies[:5])


def test_a_creation_error_in_a_batch_names_its_agent_and_hurts_no_other(server) -> None:
    inits = [{"name": f"P{i}"} for i in range(200)]
    inits[117] = {"name": "P117", "colour": "red"}  # not an argument of RandomParticipant
    proxies = agentnb.create_many(RandomParticipant, inits, to_dist=_to_dist(server), sleep_time=0.0)
    with pytest.raises(TypeError, match="colour") as raised:
        agentnb.wait_created(*proxies)
    assert any("'P117'" in note and proxies[117].agent_id in note for note in raised.value.__notes__)
    with pytest.raises(TypeError, match="colour"):  # its first use says so too, every time
        proxies[117].reply()
    others = proxies[:117] + proxies[118:]
    agentnb.wait_created(*others)
    answers = [p.reply() for p in others]
    assert {a.result(timeout=60).name for a in answers} == {f"P{i}" for i in range(200)} - {"P117"}
    with pytest.raises(AgentNotFound):  # nothing of it is left on the server
        agentnb.get_agent("P117", server.host, server.port, server.token)


def test_create_many_refuses_bad_items_before_sending_them(server) -> None:
    with pytest.raises(TypeError, match="item 1 is a str"):
        agentnb.create_many(RandomParticipant, [{"name": "A"}, "B"], to_dist=_to_dist(server))
    with pytest.raises(TypeError, match="takes a class"):
        agentnb.create_many(RandomParticipant("local"), [{"name": "A"}], to_dist=_to_dist(server))  # type: ignore[arg-type]


def test_a_server_logs_many_creations_in_a_few_lines(start_server, tmp_path) -> None:
    log = tmp_path / "server.log"
    with open(log, "wb") as output:
        server = start_server(stdout=output, stderr=subprocess.STDOUT)
    count = CREATIONS_LOGGED + 2_000
    proxies = agentnb.create_many(RandomParticipant, [{"name": f"P{i}"} for i in range(count)],
                                  to_dist=_to_dist(server), sleep_time=0.0)
    agentnb.wait_created(*proxies)
    # One line each for the first ones; the rest are counted, in a line at the end of the window.
    summary = re.compile(r"agents created: (\d+) more in the \d+ s from .*: \1 "
                         r"agentnb\.examples\.distributed_simulation\.RandomParticipant$", re.MULTILINE)
    wait_for(lambda: summary.search(log.read_text()), timeout=60, what="the summary of the creations")
    text = log.read_text()
    named = text.count("INFO agent created: ")
    assert named <= CREATIONS_LOGGED, named
    assert named + sum(int(n) for n in summary.findall(text)) == count
    assert os.path.getsize(log) < 200 * CREATIONS_LOGGED + 10_000  # not a line per agent


def test_call_many_calls_every_proxy_with_the_arguments_as_they_were(server) -> None:
    proxies = agentnb.create_many(RandomParticipant, [{"name": f"P{i}"} for i in range(300)],
                                  to_dist=_to_dist(server), sleep_time=0.0)
    ask = agentnb.Msg("moderator", "a number, please", role="user")
    results = agentnb.call_many(proxies, "__call__", ask)
    ask["content"] = "changed after the calls were made"
    assert [r.result(timeout=60).name for r in results] == [f"P{i}" for i in range(300)]
    assert [r.result(timeout=60).pid for r in agentnb.call_many(proxies[:3], "reply")] == [server.process.pid] * 3


def test_call_many_refuses_what_is_not_a_proxy_or_not_a_method(server) -> None:
    proxies = agentnb.create_many(RandomParticipant, [{"name": "A"}], to_dist=_to_dist(server))
    with pytest.raises(TypeError, match="item 1 is a RandomParticipant"):
        agentnb.call_many([proxies[0], RandomParticipant("local")], "reply")
    with pytest.raises(AttributeError, match="'_secret' is not a public method of RandomParticipant"):
        agentnb.call_many(proxies, "_secret")


def test_call_many_over_two_servers_sends_every_call_before_a_bad_proxy_and_none_after(start_server) -> None:
    from agents_for_tests import Counter, CustomError

    servers = [start_server(), start_server()]
    batches = [agentnb.create_many(Counter, [{} for _ in range(400)], to_dist=_to_dist(s)) for s in servers]
    counters = [batches[i % 2][i // 2] for i in range(800)]  # one server, then the other, as a moderator's
    results = agentnb.call_many(counters, "add", 2)
    assert [r.result(timeout=60) for r in results] == [2] * 800

    # A proxy without the method at 500: the 500 calls before it are made, on both servers; none after it.
    stranger = agentnb.create_many(RandomParticipant, [{"name": "stranger"}], to_dist=_to_dist(servers[0]))[0]
    with pytest.raises(AttributeError, match="'add' is not a public method of RandomParticipant"):
        agentnb.call_many(counters[:500] + [stranger] + counters[500:], "add", 1)
    # A proxy whose creation failed, at 300: its error, after the calls before it.
    failed = agentnb.create_many(Counter, [{"fail": True}], to_dist=_to_dist(servers[1]))[0]
    with pytest.raises(CustomError, match="refusing to start"):
        agentnb.call_many(counters[:300] + [failed] + counters[300:], "add", 10)
    totals = [r.result(timeout=60) for r in agentnb.call_many(counters, "add", 0)]
    assert totals == [13] * 300 + [3] * 200 + [2] * 300


def test_call_many_sends_a_large_argument_to_proxies_of_two_servers(start_server) -> None:
    from agents_for_tests import Worker

    servers = [start_server(), start_server()]
    workers = [agentnb.create_many(Worker, [{"name": f"W{s}{i}"} for i in range(3)], to_dist=_to_dist(server))
               for s, server in enumerate(servers)]
    large = bytes(range(256)) * (12 * 2**12)  # 12 MiB: set apart from the pickle, in chunks or shared memory
    results = agentnb.call_many([w for pair in zip(*workers, strict=True) for w in pair], "echo", large)
    assert [r.result(timeout=120) == large for r in results] == [True] * 6
