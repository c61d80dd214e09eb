"""The seed's examples, as runnable files, run the way a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers_runtime import REPO, Script, check_dist_main_output, free_port, run_script, script_env

EXAMPLES = os.path.join(REPO, "agentnb", "examples")
SLEEP = "1"  # seconds per agent: five agents take about 1 s distributed, 5 s sequential


@pytest.mark.parametrize("init_style, cwd, sleep", [("method", REPO, SLEEP), ("arg", EXAMPLES, "0.5")],
                         ids=["to_dist-method-from-repo-root", "to_dist-arg-from-examples-folder"])
def test_dist_main_child_mode(init_style, cwd, sleep) -> None:
    path = "agentnb/examples/dist_main.py" if cwd == REPO else "dist_main.py"
    done = run_script(path, "--sleep", sleep, "--init-style", init_style, cwd=cwd)
    assert done.returncode == 0, done.stderr
    check_dist_main_output(done.stdout, float(sleep))


def test_dist_main_with_dist_server_independent_mode() -> None:
    port = str(free_port())
    server = Script(os.path.join(EXAMPLES, "dist_server.py"), "--port", port)
    try:
        assert server.readline() == f"agent server listening on localhost:{port}"
        for style, sleep in (("arg", SLEEP), ("method", "0.5")):
            done = run_script(os.path.join(EXAMPLES, "dist_main.py"), "--sleep", sleep,
                              "--host", "localhost", "--port", port, "--init-style", style)
            assert done.returncode == 0, done.stderr
            check_dist_main_output(done.stdout, float(sleep))
        assert server.process.poll() is None  # still serving after its clients left
        server.process.send_signal(signal.SIGINT)  # Ctrl-C stops it cleanly
        rc, _, stderr = server.wait(30)
        assert rc == 0, stderr
    finally:
        server.kill()


def test_dist_main_refuses_host_without_port() -> None:
    done = run_script(os.path.join(EXAMPLES, "dist_main.py"), "--host", "localhost")
    assert done.returncode == 2 and "--host and --port go together" in done.stderr


def test_example_class() -> None:
    done = run_script(os.path.join(EXAMPLES, "example_class.py"), "--sleep", "0.5")
    assert done.returncode == 0, done.stderr
    sync_cost = float(re.search(r"Sync func cost: ([0-9.e-]+) s", done.stdout).group(1))
    async_cost = float(re.search(r"Async func cost: ([0-9.e-]+) s", done.stdout).group(1))
    assert sync_cost >= 0.45  # the caller waited for sync_method
    assert async_cost < 0.6 * sync_cost  # but not for the async methods
    assert done.stdout.strip().endswith("all assertions passed")


def test_distributed_simulation() -> None:
    participants, sleep = 8, 0.5
    done = run_script(os.path.join(EXAMPLES, "distributed_simulation.py"), "--participants", str(participants),
                      "--rounds", "2", "--sleep", str(sleep))
    assert done.returncode == 0, done.stderr
    rounds = re.findall(r"^round (\d): (\d+) participants answered from (\d+) server processes, "
                        r"average ([0-9.]+) \(([0-9.]+) s\)$", done.stdout, re.MULTILINE)
    assert [r[:3] for r in rounds] == [("1", "8", "2"), ("2", "8", "2")], done.stdout
    for *_, average, elapsed in rounds:
        assert 0 <= float(average) <= 100
        assert float(elapsed) < 0.6 * participants * sleep  # the participants thought at once
    # The moderator on a third server, the participants on two others, none of them this script.
    pids = re.search(r"^moderator process (\d+), participant processes (\d+) (\d+), this process (\d+)$",
                     done.stdout, re.MULTILINE)
    assert pids and len(set(pids.groups())) == 4, done.stdout


class _ChatModel(BaseHTTPRequestHandler):
    """A local OpenAI-compatible chat endpoint: it answers who spoke last and how much it was told."""

    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (the http.server name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"auth": self.headers.get("Authorization"), "body": body})
        speaker = body["messages"][0]["content"].split(",")[0].removeprefix("You are ")
        text = f"{speaker} speaks after {len(body['messages']) - 1} messages"
        data = json.dumps({"object": "chat.completion", "model": body["model"],
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def chat_endpoint() -> Iterator[str]:
    """The fake chat endpoint on loopback, for the test's length; its base URL."""
    _ChatModel.requests = []
    endpoint = ThreadingHTTPServer(("127.0.0.1", 0), _ChatModel)
    endpoint.daemon_threads = True
    thread = threading.Thread(target=endpoint.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{endpoint.server_address[1]}/v1"
    finally:
        endpoint.shutdown()
        endpoint.server_close()


def test_distributed_debate(tmp_path, chat_endpoint) -> None:
    config = tmp_path / "models.json"
    config.write_text(json.dumps([{"config_name": "debate", "model_type": "openai_chat", "base_url": chat_endpoint,
                                   "model": "tiny", "api_key_env": "DEBATE_KEY"}]))
    done = run_script(os.path.join(EXAMPLES, "distributed_debate.py"), "--model-config-path", str(config),
                      "--rounds", "2", env=script_env(DEBATE_KEY="sk-debate"))
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if line.startswith("[")]
    # Rules and round 1 heard by all; Pro speaks first, Con has also heard Pro, the Judge both...
    assert said == ["[Pro] Pro speaks after 2 messages", "[Con] Con speaks after 3 messages",
                    "[Judge] Judge speaks after 4 messages",
                    # ... then round 2: each has heard the others' turns, its own and the new announcement.
                    "[Pro] Pro speaks after 6 messages", "[Con] Con speaks after 7 messages",
                    "[Judge] Judge speaks after 8 messages", "[Judge] Judge speaks after 10 messages"], done.stdout
    assert "Pro on agent server" in done.stdout and "the Judge in this process" in done.stdout
    requests = _ChatModel.requests
    assert len(requests) == 7 and {r["auth"] for r in requests} == {"Bearer sk-debate"}
    con_first = [m["content"] for m in requests[1]["body"]["messages"]]
    assert con_first[-1] == "Pro: Pro speaks after 2 messages"  # Con heard Pro (on another server) before it spoke
    judge_last = [m["content"] for m in requests[-1]["body"]["messages"]]
    assert judge_last[-1].startswith("host: Judge, please declare the overall winner")
    assert "Con: Con speaks after 7 messages" in judge_last  # the local judge heard the distributed Con
