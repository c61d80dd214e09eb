"""Model configs travel with agents: openai_chat and post_api against a real HTTP endpoint on loopback.

The endpoint is a ThreadingHTTPServer in this process; agents call it from real
agent-server processes (child servers, a daemon, servers started with
``--model-config-path``, a launcher's).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import pickle
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import agentnb
from agentnb import AgentBase, DaemonOptions, DaemonRegistry, Msg, RpcAgentServerLauncher
from agentnb.config import ENV_MODEL_CONFIGS, ModelConfigError, clear_model_configs, model_configs
from agentnb.models import ModelCallError, ModelsExtraMissing, OpenAIChatModel, PostAPIModel

SLOW_SECONDS = 1.0
AGENTS = 5
KEY_ENV = "AGENTNB_TEST_LLM_KEY"


# -- a real chat-completions and POST endpoint on loopback ----------------------------------------


@dataclass
class Endpoint:
    """The local HTTP endpoint: its address, the key it wants, and the requests it got."""

    url: str
    api_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def last(self) -> dict[str, Any]:
        with self.lock:
            return self.requests[-1]


def _handler(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server name)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
            with endpoint.lock:
                endpoint.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if self.path.startswith("/slow/"):
                time.sleep(SLOW_SECONDS)  # the model's latency: what distribution hides
            if self.path.endswith("/chat/completions"):
                auth = self.headers.get("Authorization", "")
                if auth != f"Bearer {endpoint.api_key}":
                    # Real APIs quote (part of) a wrong key back; this one quotes all of it.
                    return self._send(401, {"error": {"message": f"Incorrect API key provided: {auth}"}})
                last = body["messages"][-1]["content"]
                return self._send(200, {
                    "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": f"[{body['model']}] {last}"}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                })
            if self.path == "/generate":
                if self.headers.get("X-API-Key") != endpoint.api_key:
                    return self._send(403, {"error": "forbidden"})
                return self._send(200, {"output": {"text": f"generated: {body.get('prompt')}"}})
            return self._send(404, {"error": f"no route {self.path}"})

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A real HTTP server on 127.0.0.1 serving /v1/chat/completions, /slow/v1/chat/completions and /generate."""
    ep = Endpoint(url="", api_key="sk-test-" + secrets.token_hex(16))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ep))
    server.daemon_threads = True
    ep.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ep
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(autouse=True)
def no_model_configs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts, and leaves, with no model configs in this process."""
    monkeypatch.delenv(ENV_MODEL_CONFIGS, raising=False)
    clear_model_configs()
    try:
        yield
    finally:
        clear_model_configs()


def configs(ep: Endpoint, key_in_env: bool = False) -> list[dict[str, Any]]:
    """A chat config (key given, or read from $KEY_ENV), a slow one and a post_api one."""
    key: dict[str, str] = {"api_key_env": KEY_ENV} if key_in_env else {"api_key": ep.api_key}
    return [
        {"config_name": "chat", "model_type": "openai_chat", "base_url": f"{ep.url}/v1", "model": "tiny-llm",
         "generate_args": {"temperature": 0.5, "max_tokens": 32}, **key},
        {"config_name": "slow-chat", "model_type": "openai_chat", "base_url": f"{ep.url}/slow/v1",
         "model": "slow-llm", **key},
        {"config_name": "gen", "model_type": "post_api", "api_url": f"{ep.url}/generate",
         "headers": {"X-API-Key": "{api_key}"}, "body": {"prompt": "{input}", "params": {"n": "{n}"}},
         "response_path": "output.text", **key},
    ]


class ChatAgent(AgentBase):
    """Answers with its model's reply to the message."""

    def reply(self, x: Msg | None = None) -> Msg:
        if isinstance(self.model, PostAPIModel):
            return Msg(self.name, self.model(x.content, n=1).text)
        prompt = [{"role": "system", "content": self.sys_prompt or "Be brief."}, x]
        return Msg(self.name, self.model(prompt).text)

    def describe(self) -> str:
        return repr(self.model)


def _files_text(folder: str) -> bytes:
    return b"".join(p.read_bytes() for p in pathlib.Path(folder).rglob("*") if p.is_file())


# -- in this process ------------------------------------------------------------------------------


def test_openai_chat_sends_model_messages_settings_and_key(endpoint: Endpoint) -> None:
    agentnb.init(model_configs=configs(endpoint))
    model = agentnb.load_model("chat")
    assert isinstance(model, OpenAIChatModel)

    answer = model([Msg("user", "hello", role="user")], max_tokens=8)
    assert answer.text == "[tiny-llm] hello" and str(answer) == answer.text
    assert answer.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    sent = endpoint.last()
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {endpoint.api_key}"
    assert sent["body"] == {"model": "tiny-llm", "temperature": 0.5, "max_tokens": 8,
                            "messages": [{"role": "user", "name": "user", "content": "hello"}]}


def test_post_api_fills_its_body_template_and_headers(endpoint: Endpoint) -> None:
    agentnb.init(model_configs=configs(endpoint))
    model = agentnb.load_model("gen")
    assert isinstance(model, PostAPIModel)

    assert model("a haiku", n=2).text == "generated: a haiku"
    sent = endpoint.last()
    assert sent["path"] == "/generate" and sent["headers"]["X-API-Key"] == endpoint.api_key
    assert sent["body"] == {"prompt": "a haiku", "params": {"n": 2}}  # a lone placeholder keeps the type
    with pytest.raises(TypeError, match="'n'"):
        model("no n")


def test_configs_come_as_a_list_a_dict_or_a_json_file(endpoint: Endpoint, tmp_path: pathlib.Path) -> None:
    chat, slow, gen = configs(endpoint)
    agentnb.init(model_configs=chat)
    agentnb.init(model_configs=[slow])
    path = tmp_path / "models.json"
    path.write_text(json.dumps([gen]))
    agentnb.init(model_configs=str(path))
    assert sorted(model_configs()) == ["chat", "gen", "slow-chat"]


@pytest.mark.parametrize(("config", "message"), [
    ({"config_name": "c", "model_type": "openai_chat", "base_url": "http://127.0.0.1:1/v1"}, "needs 'model'"),
    ({"config_name": "c", "model_type": "openai_chat", "model": "m", "temprature": 1}, "'temprature'"),
    ({"config_name": "c", "model_type": "post_api"}, "needs 'api_url'"),
    ({"config_name": "c", "model_type": "post_api", "api_url": "u", "headers": {"A": "{who}"}}, "{who}"),
])
def test_a_malformed_config_is_refused_naming_it(config: dict, message: str) -> None:
    with pytest.raises(ModelConfigError, match="'c'") as info:
        agentnb.init(model_configs=config)
    assert message in str(info.value)


def test_unknown_names_and_types_fail_naming_them(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelConfigError, match="'nope'"):
        agentnb.load_model("nope")
    agentnb.init(model_configs={"config_name": "odd", "model_type": "carrier-pigeon"})
    with pytest.raises(ModelConfigError, match="'carrier-pigeon'.*openai_chat, post_api"):
        agentnb.load_model("odd")
    agentnb.init(model_configs={"config_name": "env", "model_type": "openai_chat", "model": "m",
                                "api_key_env": "AGENTNB_TEST_UNSET_KEY"})
    monkeypatch.delenv("AGENTNB_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ModelConfigError, match=r"\$AGENTNB_TEST_UNSET_KEY"):
        agentnb.load_model("env")


def test_without_the_models_extra_the_error_says_what_to_install(endpoint: Endpoint,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    agentnb.init(model_configs=configs(endpoint))
    monkeypatch.setitem(sys.modules, "httpx", None)  # what `import httpx` meets when it is not installed
    with pytest.raises(ModelsExtraMissing, match=r"pip install 'agentnb\[models\]'"):
        agentnb.load_model("chat")


def test_keys_stay_out_of_reprs_errors_pickles_and_logs(endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    key = endpoint.api_key
    agentnb.init(model_configs=configs(endpoint))
    model = agentnb.load_model("chat")
    agent = ChatAgent("local", model_config_name="chat")
    shown = [repr(model), str(model), repr(vars(model)), repr(model_configs()), str(model_configs()["chat"]),
             repr(agent), repr(vars(agent))]
    assert all(key not in text for text in shown), shown
    assert "***" in repr(model_configs()["chat"])

    pickled = pickle.dumps(model)  # by config name: rebuilt from the configs where it lands
    assert key.encode() not in pickled
    assert repr(pickle.loads(pickled)) == repr(model)

    with caplog.at_level(logging.DEBUG):
        assert model("logged?").text == "[tiny-llm] logged?"
        bad = {**configs(endpoint)[0], "config_name": "bad", "api_key": key + "-wrong", "max_retries": 0}
        agentnb.init(model_configs=bad)
        with pytest.raises(ModelCallError) as info:
            agentnb.load_model("bad")("hi")  # the endpoint quotes the wrong key back
    assert info.value.status_code == 401 and "Incorrect API key" in str(info.value)
    assert key not in str(info.value)
    assert caplog.records and key not in caplog.text


# -- on agent servers -----------------------------------------------------------------------------


def test_an_agent_on_a_child_server_calls_its_model(endpoint: Endpoint) -> None:
    agentnb.init(model_configs=configs(endpoint))
    agent = ChatAgent("C0", model_config_name="chat", to_dist=True)
    assert agent.reply(Msg("user", "ping", role="user")).content == "[tiny-llm] ping"
    assert endpoint.last()["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert endpoint.api_key not in agent.describe()
    # Read through the proxy, the wrapper comes back by name and is rebuilt here.
    assert isinstance(agent.model, OpenAIChatModel)


def test_five_agents_calling_a_slow_model_finish_together(endpoint: Endpoint) -> None:
    agentnb.init(model_configs=configs(endpoint))
    agents = [ChatAgent(f"S{i}", model_config_name="slow-chat", to_dist=True) for i in range(AGENTS)]
    start = time.monotonic()
    results = [a.reply(Msg("user", f"q{i}", role="user")) for i, a in enumerate(agents)]
    answers = [r.content for r in results]
    elapsed = time.monotonic() - start
    assert answers == [f"[slow-llm] q{i}" for i in range(AGENTS)]
    sequential = AGENTS * SLOW_SECONDS
    assert elapsed < 0.6 * sequential, f"{AGENTS} model calls took {elapsed:.2f} s (one after another: {sequential} s)"


def test_configs_given_after_a_child_server_started_still_reach_new_agents(endpoint: Endpoint) -> None:
    chat, _, gen = configs(endpoint)
    agentnb.init(model_configs=chat)
    first = ChatAgent("F", model_config_name="chat", to_dist=True)
    agentnb.init(model_configs=gen)
    second = ChatAgent("G", model_config_name="gen", to_dist=True)
    assert first.describe().startswith("<OpenAIChatModel") and second.describe().startswith("<PostAPIModel")


def test_an_unknown_config_fails_at_creation_naming_it(endpoint: Endpoint) -> None:
    agentnb.init(model_configs=configs(endpoint))
    with pytest.raises(ModelConfigError, match="'ghost' on this agent server.*known here: 'chat', 'gen', 'slow-chat'"):
        agentnb.wait_created(ChatAgent("X", model_config_name="ghost", to_dist=True))


def test_a_daemon_gets_the_configs_of_the_process_that_starts_it(
        endpoint: Endpoint, registry: DaemonRegistry, runtime_dir: str, tmp_path: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    chat, _, gen = configs(endpoint)
    agentnb.init(model_configs=gen)  # its key is in the config itself: it travels, privately
    path = tmp_path / "models.json"  # and --model-config-path (here with the key in the environment)
    path.write_text(json.dumps({**configs(endpoint, key_in_env=True)[0], "config_name": "file-chat"}))
    monkeypatch.setenv(KEY_ENV, endpoint.api_key)
    # At DEBUG its log has the model client's requests too: the key must not be in them.
    record = registry.start(DaemonOptions(name="llm", model_config_path=str(path), log_level="DEBUG"))

    # The daemon is now this process's default server.
    by_init = ChatAgent("D0", model_config_name="gen", to_dist=True)
    by_file = ChatAgent("D1", model_config_name="file-chat", to_dist=True)
    assert by_init.reply(Msg("user", "on a daemon", role="user")).content == "generated: on a daemon"
    assert by_file.reply(Msg("user", "from its file", role="user")).content == "[tiny-llm] from its file"
    with pytest.raises(ModelConfigError, match="'chat'"):
        agentnb.wait_created(ChatAgent("D2", model_config_name=chat["config_name"], to_dist=True))

    key = endpoint.api_key.encode()
    assert key not in pathlib.Path(f"/proc/{record.pid}/cmdline").read_bytes()
    assert b"HTTP Request: POST" in pathlib.Path(record.log_path).read_bytes()  # logged...
    assert key not in _files_text(runtime_dir)  # ...but no key in its log or its record


def test_a_server_started_with_model_config_path(endpoint: Endpoint, start_server: Callable[..., Any],
                                                 tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(configs(endpoint, key_in_env=True)))  # the key itself is only in the environment
    monkeypatch.setenv(KEY_ENV, endpoint.api_key)
    server = start_server("--model-config-path", str(path))
    agent = ChatAgent("P0", model_config_name="chat", to_dist=server.to_dist)
    assert agent.reply(Msg("user", "from a file", role="user")).content == "[tiny-llm] from a file"
    with pytest.raises(ModelConfigError, match="'ghost'"):
        agentnb.wait_created(ChatAgent("P1", model_config_name="ghost", to_dist=server.to_dist))
    with pytest.raises(ModelConfigError, match="'chat'"):  # configs are the server's, not the caller's
        ChatAgent("P2", model_config_name="chat")


def test_a_launcher_passes_its_model_config_path(endpoint: Endpoint, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(configs(endpoint)))
    os.chmod(path, 0o600)
    launcher = RpcAgentServerLauncher(host="127.0.0.1", model_config_path=str(path), capacity=4)
    launcher.launch(in_subprocess=True)
    try:
        to_dist = {"host": "127.0.0.1", "port": launcher.port, "token": launcher.token}
        agent = ChatAgent("L0", model_config_name="chat", to_dist=to_dist)
        assert agent.reply(Msg("user", "launched", role="user")).content == "[tiny-llm] launched"
        with contextlib.suppress(Exception):
            agent.close()
    finally:
        launcher.shutdown(grace=1)


# -- the seed's configs and speaker names ---------------------------------------------------------


def seed_config(ep: Endpoint, **extra: Any) -> dict[str, Any]:
    """An openai_chat config as the seed's framework writes one: model_name, client_args, generate_args."""
    return {"config_name": "seed-gpt", "model_type": "openai_chat", "model_name": "tiny-llm",
            "api_key": ep.api_key, "organization": "org-1",
            "client_args": {"base_url": f"{ep.url}/v1", "timeout": 10, "max_retries": 0,
                            "default_headers": {"X-Seed": "yes"}},
            "generate_args": {"temperature": 0.3}, **extra}


def test_a_seed_config_with_client_args_is_honoured(endpoint: Endpoint) -> None:
    agentnb.init(model_configs=seed_config(endpoint))
    model = agentnb.load_model("seed-gpt")
    assert model.timeout == 10 and model.max_retries == 0
    assert model("hi").text == "[tiny-llm] hi"
    sent = endpoint.last()
    assert sent["path"] == "/v1/chat/completions"  # client_args' base_url
    assert sent["headers"]["X-Seed"] == "yes" and sent["headers"]["OpenAI-Organization"] == "org-1"
    assert sent["body"]["temperature"] == 0.3
    assert endpoint.api_key not in repr(model_configs()["seed-gpt"])


@pytest.mark.parametrize(("extra", "message"), [
    ({"client_args": {"http_client": None}}, "client_args 'http_client' are not supported.*base_url"),
    ({"client_args": "http://x"}, "'client_args' must be a dict"),
    ({"base_url": "http://elsewhere/v1"}, "'base_url' is given twice"),
])
def test_client_args_that_cannot_be_honoured_are_refused(endpoint: Endpoint, extra: dict, message: str) -> None:
    with pytest.raises(ModelConfigError, match=message):
        agentnb.init(model_configs=seed_config(endpoint, **extra))


def test_a_server_loads_a_seed_model_config_file(endpoint: Endpoint, start_server: Callable[..., Any],
                                                 tmp_path: pathlib.Path) -> None:
    path = tmp_path / "model_configs.json"
    path.write_text(json.dumps([seed_config(endpoint)]))
    os.chmod(path, 0o600)
    server = start_server("--model-config-path", str(path))
    agent = ChatAgent("S0", model_config_name="seed-gpt", to_dist=server.to_dist)
    assert agent.reply(Msg("user", "from the seed", role="user")).content == "[tiny-llm] from the seed"
    assert endpoint.last()["headers"]["X-Seed"] == "yes"


class Debater(AgentBase):
    """Answers with its model, given the whole debate so far."""

    def reply(self, x: Any = None) -> Msg:
        return Msg(self.name, self.model(x).text)


def test_speaker_names_reach_the_model(endpoint: Endpoint) -> None:
    agentnb.init(model_configs=configs(endpoint))
    judge = Debater("judge", model_config_name="chat", to_dist=True)
    debate = [Msg("system", "Judge the debate.", role="system"),
              Msg("Alice", "Actors are simpler.", role="assistant"),
              Msg("Bob Smith (con)", "Locks are faster.", role="assistant"),
              Msg("user", "Who wins?", role="user")]
    assert judge.reply(debate).content == "[tiny-llm] Who wins?"
    assert endpoint.last()["body"]["messages"] == [
        {"role": "system", "name": "system", "content": "Judge the debate."},
        {"role": "assistant", "name": "Alice", "content": "Actors are simpler."},
        {"role": "assistant", "name": "Bob_Smith_con_", "content": "Locks are faster."},  # what OpenAI accepts
        {"role": "user", "name": "user", "content": "Who wins?"},
    ]


def test_names_can_be_left_out_and_dicts_go_as_they_are(endpoint: Endpoint) -> None:
    agentnb.init(model_configs=[configs(endpoint)[0], {**configs(endpoint)[0], "config_name": "nameless",
                                                       "send_names": False}])
    model = agentnb.load_model("nameless")
    model([Msg("Alice", "hi", role="assistant"), {"role": "user", "name": "Bob", "content": "yo"}])
    assert endpoint.last()["body"]["messages"] == [{"role": "assistant", "content": "hi"},
                                                   {"role": "user", "name": "Bob", "content": "yo"}]
    model = agentnb.load_model("chat")
    model([Msg("名前", "hi", role="assistant"), Msg("W" * 80, "long", role="assistant")])
    sent = endpoint.last()["body"]["messages"]
    assert "name" not in sent[0]  # nothing OpenAI accepts is left of it
    assert sent[1]["name"] == "W" * 64
