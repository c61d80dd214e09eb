"""The Redis result pool: against a real redis-server, in-process and behind real agent servers."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time

import pytest
from agents_for_tests import Worker
from helpers_runtime import free_port, script_env, wait_for
from network_cut import proxy_to
from redis_fixtures import RedisServer

from agentnb import AgentServerError, ServerUnavailable, TaskNotFound
from agentnb.server.launcher import RpcAgentServerLauncher
from agentnb.server.result_store import (
    UNKNOWN_TASK_GRACE,
    RedisResultStore,
    ResultStoreUnavailable,
    StoredResult,
    make_store,
)
from agentnb.wire import local_socket

OK, ERROR = 1, 2  # agentnb_pb2.ReplyStatus


def task_id(n: int) -> str:
    """A task id of the shape clients make."""
    return f"{n:012x}-{n}-{n:08x}"


@pytest.fixture
def pool(redis_server: RedisServer):
    pools: list[RedisResultStore] = []

    def make(namespace: str = "t", **kwargs) -> RedisResultStore:
        kwargs.setdefault("integrity_key", b"the key servers sharing a namespace share")
        made = RedisResultStore(redis_server.url, namespace=namespace, **kwargs)
        pools.append(made)
        return made

    yield make
    for made in pools:
        made.close()


def redis_args(redis: RedisServer) -> tuple[str, ...]:
    return ("--pool-type", "redis", "--redis-url", redis.url)


# -- the pool itself ---------------------------------------------------------------------


def test_result_is_stored_with_the_expire_time_as_ttl(pool, redis_server: RedisServer) -> None:
    p = pool(max_expire_time=60.0)
    p.add_pending(task_id(1))
    p.put(task_id(1), StoredResult(OK, b"value", 123.5))
    assert p.get(task_id(1), 5.0) == StoredResult(OK, b"value", 123.5)
    ttl = redis_server.client().pttl(f"agentnb:t:task:{task_id(1)}")
    assert 55_000 < ttl <= 60_000
    assert len(p) == 1


def test_every_waiting_reader_wakes_when_the_result_comes(pool) -> None:
    p = pool()
    p.add_pending(task_id(2))
    got: list[StoredResult] = []
    started = threading.Barrier(9)

    def read() -> None:
        started.wait(10)
        got.append(p.get(task_id(2), 30.0))

    readers = [threading.Thread(target=read) for _ in range(8)]
    for reader in readers:
        reader.start()
    started.wait(10)
    put_at = time.monotonic()
    p.put(task_id(2), StoredResult(OK, b"x", 1.0))
    for reader in readers:
        reader.join(30)
    # Woken by Redis, not by the end of a wait slice.
    assert len(got) == 8 and time.monotonic() - put_at < p.WAIT_SLICE
    assert p.get(task_id(2), 0.1).payload == b"x"  # and the result stays for later readers


def test_unknown_timed_out_and_expired_tasks(pool) -> None:
    p = pool(max_expire_time=0.5)
    with pytest.raises(TaskNotFound):
        p.get("not-a-task-id", None)  # an id no client makes is not waited for
    p.add_pending(task_id(3))
    with pytest.raises(TimeoutError):
        p.get(task_id(3), 0.2)
    p.put("short-lived", StoredResult(OK, b"short-lived", 1.0))
    assert p.get("short-lived", 0.01).payload == b"short-lived"
    wait_for(lambda: _not_found(p, "short-lived"), timeout=10.0, what="the result to expire")
    start = time.monotonic()
    with pytest.raises(TaskNotFound):  # an unknown task of a client's shape gets a grace period
        p.get(task_id(4), 60.0)
    assert UNKNOWN_TASK_GRACE <= time.monotonic() - start < UNKNOWN_TASK_GRACE + 2 * p.WAIT_SLICE


def _not_found(p: RedisResultStore, task: str) -> bool:
    try:
        p.get(task, 0.01)
    except TaskNotFound:
        return True
    return False


def test_namespaces_keep_servers_apart_and_the_same_namespace_is_shared(pool) -> None:
    team_a, team_a_too, team_b = pool("team-a"), pool("team-a"), pool("team-b")
    team_a.put(task_id(5), StoredResult(OK, b"a", 1.0))
    assert team_a_too.get(task_id(5), 1.0).payload == b"a"
    with pytest.raises((TaskNotFound, TimeoutError)):
        team_b.get(task_id(5), 0.2)


def test_namespace_from_the_url(redis_server: RedisServer) -> None:
    p = make_store("redis", redis_url=redis_server.url + "?namespace=from-url", max_expire_time=10.0)
    try:
        assert isinstance(p, RedisResultStore) and p.namespace == "from-url"
        p.put(task_id(6), StoredResult(OK, b"u", 1.0))
        assert redis_server.client().exists(f"agentnb:from-url:task:{task_id(6)}")
    finally:
        p.close()


def test_a_task_whose_server_died_is_not_waited_for_forever(pool, monkeypatch) -> None:
    monkeypatch.setattr(RedisResultStore, "ORPHAN_CONFIRM", 0.3)
    dead, alive = pool(), pool()
    dead.add_pending(task_id(7))
    alive.add_pending(task_id(8))
    dead.close()  # its heartbeat goes with it
    start = time.monotonic()
    with pytest.raises(TaskNotFound, match="stopped before it was done"):
        alive.get(task_id(7), 30.0)
    assert time.monotonic() - start < 10.0
    with pytest.raises(TimeoutError):  # a live server's pending task is waited for
        dead_reader = pool()
        dead_reader.get(task_id(8), 1.5)


def test_redis_pool_needs_a_url_and_a_reachable_redis() -> None:
    with pytest.raises(ValueError, match="redis_url"):
        make_store("redis")
    with pytest.raises(ResultStoreUnavailable, match="Redis result pool at redis://127.0.0.1"):
        make_store("redis", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ValueError, match="namespace"):
        make_store("redis", redis_url="redis://127.0.0.1:1/0?namespace=bad name")


def test_the_password_of_the_url_stays_out_of_messages() -> None:
    with pytest.raises(ResultStoreUnavailable) as info:
        make_store("redis", redis_url=f"redis://user:s3cret@127.0.0.1:{free_port()}/0")
    assert "s3cret" not in str(info.value) and "user:***@" in str(info.value)


def test_results_written_while_redis_is_lost_wait_in_memory(pool, redis_server: RedisServer,
                                                            monkeypatch) -> None:
    monkeypatch.setattr(RedisResultStore, "HEARTBEAT_INTERVAL", 0.2)
    p = pool()
    p.add_pending(task_id(9))
    redis_server.stop()
    p.put(task_id(9), StoredResult(OK, b"kept", 1.0))  # does not raise
    assert p.get(task_id(9), 1.0).payload == b"kept"  # served from memory
    with pytest.raises(ResultStoreUnavailable, match="unavailable"):
        p.add_pending(task_id(10))
    redis_server.start()
    wait_for(lambda: redis_server.client().hget(f"agentnb:t:task:{task_id(9)}", "payload") == b"kept",
             what="the held result to reach Redis")


# -- agent servers with the Redis pool ------------------------------------------------------


def test_server_with_redis_pool(start_server, redis_server: RedisServer) -> None:
    server = start_server(*redis_args(redis_server), "--max-expire-time", "120")
    assert server.connection().info().pool_type == "redis"
    agent = Worker("W0", to_dist=server.to_dist)
    res = agent.sleep_for(0.01)
    assert res.result(30) == 0.01
    ttl = redis_server.client().pttl(f"agentnb:default:task:{res.task_id}")
    assert 100_000 < ttl <= 120_000
    failed = agent.fail_later("stored failure")
    with pytest.raises(Exception, match="stored failure"):
        failed.result(30)
    with pytest.raises(Exception, match="stored failure"):  # a reference reads it from Redis
        pickle.loads(pickle.dumps(failed.as_reference())).result(30)


def test_a_result_survives_its_server(start_server, redis_server: RedisServer, tmp_path) -> None:
    """SIGKILL the server after the task finished, restart it on the same address: the value is there."""
    server = start_server(*redis_args(redis_server))
    agent = Worker("W0", to_dist=server.to_dist)
    fetched = agent.sleep_for(0.01)
    assert fetched.result(30) == 0.01
    unfetched = agent.reply()  # done, but nobody asked for its value yet
    wait_for(unfetched.done, what="the reply")
    reference = pickle.dumps(fetched.as_reference())  # what travels to other processes, or is saved
    reference_file = tmp_path / "reference.pickle"
    reference_file.write_bytes(pickle.dumps(unfetched))
    held = agent.hold("never-released", 1)  # still running when the server dies
    running = pickle.dumps(held)
    wait_for(lambda: redis_server.client().hget(f"agentnb:default:task:{held.task_id}", "state") == b"pending",
             what="the held task in Redis")

    server.kill()  # SIGKILL
    start_server(*redis_args(redis_server), token=server.token, port=server.port)

    assert fetched.result(30) == 0.01
    assert unfetched.result(30).content == "W0(None)"
    # This process's connection to the address lived through the restart.
    assert wait_for(lambda: _value_or_none(reference), timeout=30.0, what="the reference's value") == 0.01
    with pytest.raises(TaskNotFound, match="never finish"):
        pickle.loads(running).result(60)
    # A new process, with nothing but the reference.
    code = ("import pickle, sys; res = pickle.loads(open(sys.argv[1], 'rb').read()); "
            "print(res.result(30).content)")
    done = subprocess.run([sys.executable, "-c", code, str(reference_file)], capture_output=True, text=True,
                          timeout=120, env=script_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "W0(None)"


def _value_or_none(reference: bytes) -> object:
    try:
        return pickle.loads(reference).result(30)
    except ServerUnavailable:  # the connection is still reconnecting
        return None


def test_redis_lost_while_running(start_server, redis_server: RedisServer) -> None:
    """Calls needing Redis fail clearly; the server stays up and recovers; nothing stored is lost."""
    server = start_server(*redis_args(redis_server))
    agent = Worker("W0", to_dist=server.to_dist)
    before = agent.sleep_for(0.02)
    assert before.result(30) == 0.02
    reference = pickle.dumps(before.as_reference())

    redis_server.stop()
    with pytest.raises(AgentServerError, match="Redis result pool at redis://127.0.0.1.*unavailable"):
        agent.sleep_for(0.01).result(30)
    with pytest.raises(ServerUnavailable, match="Redis result pool"):
        pickle.loads(reference).result(30)
    assert agent.echo("sync calls need no Redis") == "sync calls need no Redis"
    assert server.process.poll() is None

    redis_server.start()
    assert wait_for(lambda: _call_or_none(agent), timeout=30.0, what="async calls to work again") == 0.03
    assert pickle.loads(reference).result(30) == 0.02  # stored before the loss, still there


def _call_or_none(agent: Worker) -> object:
    try:
        return agent.sleep_for(0.03).result(30)
    except AgentServerError:
        return None


def test_redis_frozen_while_running(start_server, redis_server: RedisServer) -> None:
    """A Redis that stops answering (SIGSTOP) fails calls after the socket timeout, not never."""
    server = start_server(*redis_args(redis_server))
    agent = Worker("W0", to_dist=server.to_dist)
    assert agent.sleep_for(0.01).result(30) == 0.01
    redis_server.pause()
    try:
        start = time.monotonic()
        with pytest.raises(AgentServerError, match="unavailable"):
            agent.sleep_for(0.01).result(60)
        assert time.monotonic() - start < 30.0
        assert agent.echo("still here") == "still here"
    finally:
        redis_server.resume()
    assert wait_for(lambda: _call_or_none(agent), timeout=30.0, what="async calls to work again") == 0.03


# -- refusing to start without Redis ----------------------------------------------------------


def test_cli_refuses_to_start_without_redis() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run([sys.executable, "-m", "agentnb.server", "--port", "0", "--pool-type", "redis",
                           "--redis-url", url], capture_output=True, text=True, timeout=60, env=script_env(),
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert f"Redis result pool at {url} is unavailable" in done.stderr
    done = subprocess.run([sys.executable, "-m", "agentnb.server", "--port", "0", "--pool-type", "redis"],
                          capture_output=True, text=True, timeout=60, env=script_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "redis_url" in done.stderr


@pytest.mark.parametrize("in_subprocess", [True, False])
def test_launcher_refuses_to_start_without_redis(in_subprocess: bool) -> None:
    launcher = RpcAgentServerLauncher(port=0, pool_type="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(AgentServerError):
        launcher.launch(in_subprocess=in_subprocess)
    launcher.shutdown(0)


def test_launcher_with_redis(redis_server: RedisServer) -> None:
    launcher = RpcAgentServerLauncher(port=0, pool_type="redis", redis_url=redis_server.url)
    launcher.launch()
    try:
        agent = Worker("W0", to_dist={"host": "localhost", "port": launcher.port, "token": launcher.token})
        res = agent.sleep_for(0.01)
        assert res.result(30) == 0.01
        assert redis_server.client().exists(f"agentnb:default:task:{res.task_id}")
    finally:
        launcher.shutdown(1.0)


# -- the session lost while the call ran ----------------------------------------------------


def test_a_reply_lost_with_the_session_is_fetched_from_the_pool(start_server, redis_server, monkeypatch) -> None:
    """The connection breaks while the call runs; the call finishes; result() still gets its value."""
    # The proxy plays the network between two hosts: a client on the server's host would go round it,
    # on the server's session socket.
    monkeypatch.setenv(local_socket.ENV_LOCAL_SOCKET, "0")
    server = start_server(*redis_args(redis_server))
    with proxy_to(server.port) as proxy:
        address = {"host": "127.0.0.1", "port": proxy.port, "token": server.token}
        agent, releaser = Worker("W0", to_dist=address), Worker("W1", to_dist=address)
        held = agent.hold("gate", "finished after the cut")
        wait_for(lambda: redis_server.client().hget(f"agentnb:default:task:{held.task_id}", "state") == b"pending",
                 what="the task in Redis")
        proxy.cut()
        wait_for(held.done, what="the lost session to fail the call")
        with pytest.raises(TimeoutError):  # the server says: still running
            held.result(0.5)
        releaser.release("gate")  # a new session, through the proxy again
        assert held.result(30) == "finished after the cut"
