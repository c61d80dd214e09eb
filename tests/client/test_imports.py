"""Start-up cost: what ``import agentnb`` loads, and the child server started early.

``import agentnb`` (and defining an agent class) must not load grpc, the
protocol, the model wrappers, the server side or any notebook package: a
child-mode script starts its child server first and loads the client side
while that server boots (see ``prestart_child_server``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from helpers_runtime import child_server_pids, wait_pid_gone

import agentnb
from agentnb import AgentBase, config
from agentnb.config import ENV_MODEL_CONFIGS, clear_model_configs
from agentnb.launch import child_servers
from agentnb.rpc.placement import clear_default_server, set_default_server

HEAVY = ("grpc", "google.protobuf", "agentnb._proto", "agentnb.rpc.connection", "agentnb.models",
         "agentnb.server.agent_server", "agentnb.server.launcher", "ipywidgets", "IPython", "redis", "httpx",
         "kernel_ext")


def loaded_after(code: str) -> list[str]:
    """The HEAVY modules (or their submodules) a fresh interpreter has loaded after running ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             f"heavy = {HEAVY!r}\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy) and "
             "any(m == h or m.startswith(h + '.') for h in heavy))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import agentnb",
    "from agentnb import AgentBase, Msg\n"
    "class Echo(AgentBase):\n"
    "    def reply(self, x=None):\n"
    "        return x\n"
    "Echo('local').reply(Msg(name='u', role='user', content='hi'))",
    "import agentnb.server",
])
def test_import_and_local_agents_load_no_grpc_models_or_notebook_packages(code: str) -> None:
    assert loaded_after(code) == []


def test_the_client_side_is_loaded_on_first_use() -> None:
    assert "agentnb.rpc.connection" in loaded_after("import agentnb\nagentnb.ServerPool")


def test_every_public_name_is_the_object_its_module_defines() -> None:
    # `from agentnb import *` binds exactly __all__ (each name once), all listed by dir() for completion.
    star = subprocess.run([sys.executable, "-c", "before = set(globals()) | {'before'}\nfrom agentnb import *\n"
                           "import json\nprint(json.dumps(sorted(set(globals()) - before - {'json'})))"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(star.stdout) == sorted(agentnb.__all__) == sorted(set(agentnb.__all__))
    assert set(agentnb.__all__) <= set(dir(agentnb))
    # Each class and function is agentnb's own, under its own name, the one its module defines.
    defined = {name: getattr(agentnb, name) for name in agentnb.__all__}
    for name, value in defined.items():
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("agentnb") and value.__name__ == name, (name, value)
            assert getattr(importlib.import_module(value.__module__), name) is value, name
    # One `except agentnb.AgentnbError` catches every error agentnb raises.
    errors = {name for name, value in defined.items() if inspect.isclass(value) and issubclass(value, BaseException)}
    assert {"AgentServerError", "RemoteError", "SerializationError", "ModelConfigError", "DaemonError"} <= errors
    assert all(issubclass(defined[name], agentnb.AgentnbError) for name in errors), errors
    # The states an AsyncResult's status takes, and the ticker of the progress views.
    assert agentnb.FINAL_STATES == {agentnb.DONE, agentnb.FAILED, agentnb.CANCELLED}
    assert agentnb.STATES == (agentnb.QUEUED, agentnb.RUNNING, agentnb.DONE, agentnb.FAILED, agentnb.CANCELLED)
    assert isinstance(agentnb.TICKER, agentnb.Ticker)
    assert callable(agentnb.progress) and agentnb.progress.__module__ == "agentnb.progress"
    from agentnb.rpc import AsyncResult
    from agentnb.server import RpcAgentServerLauncher

    assert agentnb.AsyncResult is AsyncResult and agentnb.RpcAgentServerLauncher is RpcAgentServerLauncher
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        agentnb.NoSuchName  # noqa: B018


def test_progress_stays_the_function_when_its_module_is_imported_first() -> None:
    out = subprocess.run([sys.executable, "-c", "import agentnb.progress, agentnb\nprint(callable(agentnb.progress))"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "True"


# -- the child server started before the client side loads --------------------------------------


class Pid(AgentBase):
    def reply(self, x=None):
        import os

        return os.getpid()


@pytest.fixture
def child_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Child mode with one child and no model configs; the children are stopped after (conftest)."""
    monkeypatch.setattr(config, "_child_servers", None)
    monkeypatch.delenv(config.ENV_CHILD_SERVERS, raising=False)
    monkeypatch.delenv(ENV_MODEL_CONFIGS, raising=False)
    clear_default_server()
    clear_model_configs()
    try:
        yield
    finally:
        clear_model_configs()


def own_child_servers() -> list[int]:
    """The pids of this process's child servers (started or starting), from the process listing."""
    return child_server_pids(os.getpid())


def test_the_prestarted_child_is_the_one_that_hosts_the_agent(child_mode: None) -> None:
    assert own_child_servers() == []
    child_servers.prestart_child_server()
    [started] = own_child_servers()
    child_servers.prestart_child_server()  # one is starting already: no second
    assert own_child_servers() == [started]
    agent = Pid("p", to_dist=True)
    assert agent.reply().result() == started
    child_servers.prestart_child_server()  # the live child can take more agents: none started
    assert own_child_servers() == [started]


def test_a_prestarted_child_without_new_model_configs_is_replaced(child_mode: None) -> None:
    child_servers.prestart_child_server()
    [stale] = own_child_servers()
    agentnb.init(model_configs=[{"config_name": "late", "model_type": "post_api", "api_url": "http://127.0.0.1:9/x"}])
    child = child_servers.child_server()
    assert child.process.pid != stale
    wait_pid_gone(stale, timeout=10)  # the stale one was stopped
    assert own_child_servers() == [child.process.pid] and child.alive()


def test_a_prestarted_child_never_used_ends_with_the_others(child_mode: None) -> None:
    child_servers.prestart_child_server()
    [started] = own_child_servers()
    child_servers.stop_child_servers()
    wait_pid_gone(started, timeout=10)
    assert own_child_servers() == []


def test_no_child_is_started_when_a_default_server_takes_the_agents(child_mode: None, server) -> None:
    set_default_server(server.host, server.port, server.token)
    try:
        agent = Pid("on-default", to_dist=True)
        assert agent.reply().result() == server.process.pid
        assert own_child_servers() == []
    finally:
        clear_default_server()
