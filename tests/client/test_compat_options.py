"""The seed's options: each is honoured, or refused naming what agentnb takes instead.

``to_dist``'s ``max_timeout_seconds`` (a per-agent limit on the caller's waits) and
``retry_strategy`` (retries of reads whose server could not be reached), the launcher's
``max_pool_size`` and ``server_id``, and the options agentnb does not have.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import uuid
from typing import Any

import pytest
from agents_for_tests import WAIT_LIMIT, Worker, _gate
from helpers_runtime import wait_for

import agentnb
from agentnb import AsyncResult, Msg, RpcAgentServerLauncher, RpcMeta, ServerUnavailable, TaskNotFound, async_func
from agentnb.rpc.call_policy import RetryPolicy

LIMIT = 1.0


class Gated(metaclass=RpcMeta):
    """Calls that wait until another object of the same server opens their gate."""

    def wait_sync(self, gate: str) -> str:
        if not _gate(gate).wait(WAIT_LIMIT):
            raise TimeoutError(f"gate {gate!r} was never released")
        return gate

    @async_func
    def wait_async(self, gate: str) -> str:
        return self.wait_sync(gate)

    def ping(self) -> str:
        return "pong"


# -- max_timeout_seconds ------------------------------------------------------------------------


def test_a_sync_call_longer_than_max_timeout_seconds_raises_naming_the_call(server) -> None:
    agent = Gated(to_dist={**server.to_dist, "max_timeout_seconds": LIMIT})
    opener = Worker("opener", to_dist=server.to_dist)
    gate = uuid.uuid4().hex
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"Gated\.wait_sync\(\) did not finish within 1 s .*max_timeout_seconds"
                                           r".*may still be running") as info:
        agent.wait_sync(gate)
    assert time.monotonic() - start < 10 * LIMIT
    assert "agent server" in str(info.value)
    # A copy of the proxy (as another agent gets it) keeps the limit.
    copy = pickle.loads(pickle.dumps(agent))
    with pytest.raises(TimeoutError, match="within 1 s"):
        copy.wait_sync(gate)
    opener.release(gate)
    assert agent.ping() == "pong"  # the calls that timed out ended on the server; the agent goes on


def test_an_async_result_waits_max_timeout_seconds_by_default(server) -> None:
    agent = Gated(to_dist={**server.to_dist, "max_timeout_seconds": LIMIT})
    gate = uuid.uuid4().hex
    res = agent.wait_async(gate)
    assert isinstance(res, AsyncResult)
    with pytest.raises(TimeoutError, match=r"wait_async\(\).*within 1 s \(the max_timeout_seconds"):
        res.result()
    with pytest.raises(TimeoutError):  # reading the value waits as result() does
        res.upper()
    Worker("opener", to_dist=server.to_dist).release(gate)
    assert res.result(timeout=30) == gate  # an explicit timeout wins; the call went on meanwhile


def test_without_the_option_a_call_is_waited_for_however_long(server) -> None:
    agent = Gated(to_dist=server.to_dist)
    gate = uuid.uuid4().hex
    res = agent.wait_async(gate)
    opener = Worker("opener", to_dist=server.to_dist)
    releaser = threading.Timer(2 * LIMIT, opener.release, args=(gate,))
    releaser.start()
    try:
        assert res.result() == gate
    finally:
        releaser.cancel()


# -- retry_strategy -----------------------------------------------------------------------------


def test_retry_strategy_fetches_a_result_across_a_server_restart(start_server, redis_server,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    redis = ("--pool-type", "redis", "--redis-url", redis_server.url)
    server = start_server(*redis)
    patient = Worker("patient", to_dist={**server.to_dist,
                                         "retry_strategy": {"type": "fixed", "max_retries": 300, "delay": 0.1}})
    plain = Worker("plain", to_dist=server.to_dist)
    waiting, unprotected = patient.reply(Msg("user", "kept")), plain.reply(Msg("user", "kept"))
    wait_for(lambda: waiting.done() and unprotected.done(), what="both replies")
    # References, as another process holds them: their value is fetched from the server.
    reference, plain_reference = waiting.as_reference(), unprotected.as_reference()
    server.kill()

    with pytest.raises(ServerUnavailable):  # no retry_strategy: the loss is raised at once
        plain_reference.result(timeout=30)

    caplog.set_level(logging.INFO, logger="agentnb.rpc.call_policy")
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            outcome["value"] = reference.result(timeout=120)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    fetcher = threading.Thread(target=fetch)
    fetcher.start()
    try:
        wait_for(lambda: "trying again" in caplog.text or outcome, what="a retry of the fetch")
        assert not outcome, outcome
        start_server(*redis, token=server.token, port=server.port)  # the same address, Redis and token
    finally:
        fetcher.join(150)
    assert outcome.get("value") is not None, outcome
    assert outcome["value"].content == "patient(kept)"


def test_retry_strategy_forms() -> None:
    assert RetryPolicy.parse({"type": "fixed", "max_retries": 3, "delay": 1}) == RetryPolicy(3, 1.0)
    expo = RetryPolicy.parse({"type": "expential", "max_retries": 4, "base_delay": 1, "max_delay": 3})
    assert list(expo.delays()) == [1, 2, 3, 3]
    assert RetryPolicy.parse(expo) is expo
    with pytest.raises(ValueError, match="'fixed' or 'exponential'"):
        RetryPolicy.parse({"type": "random"})
    with pytest.raises(TypeError, match="takes max_retries, delay; not 'base_delay'"):
        RetryPolicy.parse({"type": "fixed", "base_delay": 1})
    with pytest.raises(TypeError, match="RetryPolicy or a dict"):
        RetryPolicy.parse("fixed")


# -- refused to_dist options --------------------------------------------------------------------


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"max_timeout_seconds": 0}, ValueError, "above 0"),
    ({"max_timeout_seconds": "5"}, ValueError, "above 0"),
    ({"retry_strategy": {"type": "random"}}, ValueError, "'fixed' or 'exponential'"),
    ({"max_expire_time": 7200}, TypeError, "where the server starts.*--max-expire-time"),
    ({"max_pool_size": 10}, TypeError, r"max_pool_size \(there: max_len\)"),
    ({"local_mode": False}, TypeError, "--no-local-mode"),
    ({"max_timout_seconds": 1}, TypeError, "unknown to_dist option.*max_timeout_seconds, retry_strategy"),
])
def test_to_dist_options_that_cannot_be_honoured_are_refused(options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Gated(to_dist=options)


def test_local_mode_true_is_what_child_servers_do(server) -> None:
    assert Gated(to_dist={**server.to_dist, "local_mode": True}).ping() == "pong"


# -- the launcher and init ------------------------------------------------------------------------


def test_the_launcher_honours_max_pool_size_and_server_id() -> None:
    launcher = RpcAgentServerLauncher(host="127.0.0.1", port=None, max_pool_size=2, server_id="seed-server",
                                      capacity=4)
    assert launcher.max_len == 2 and launcher.name == "seed-server"
    launcher.launch(in_subprocess=True)
    try:
        worker = Worker("W0", to_dist={"host": "127.0.0.1", "port": launcher.port, "token": launcher.token})
        results = [worker.make_box(i) for i in range(3)]
        assert [r.result(timeout=30).value for r in results] == [0, 1, 2]
        assert pickle.loads(pickle.dumps(results[2].as_reference())).result(timeout=30).value == 2
        with pytest.raises(TaskNotFound):  # only the last 2 results are kept
            pickle.loads(pickle.dumps(results[0].as_reference())).result(timeout=30)
        assert agentnb.find_server("seed-server").replicas[0].port == launcher.port
    finally:
        launcher.shutdown(grace=1)


@pytest.mark.parametrize(("options", "message"), [
    ({"max_timeout_seconds": 5}, r"to_dist=\{\.\.\., 'max_timeout_seconds': N\}"),
    ({"studio_url": "http://localhost:5000"}, "no AgentScope Studio"),
    ({"capacty": 4}, "unknown option.*'capacty'.*capacity"),
    ({"max_len": 10, "max_pool_size": 20}, "same option"),
])
def test_the_launcher_refuses_what_it_cannot_honour(options: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        RpcAgentServerLauncher(host="127.0.0.1", **options)


def test_init_refuses_the_seed_s_other_settings() -> None:
    with pytest.raises(TypeError, match="takes model_configs and child_servers, not 'project', 'save_log'"):
        agentnb.init(project="debate", save_log=True)
