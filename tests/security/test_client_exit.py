"""A client that dies (SIGKILL) leaves nothing of its own running on a server it does not own.

The agents it created as its own are deleted when its session ends, and the calls it
queued for them are dropped (the one running finishes). Objects it placed as detached
(as a notebook does on its daemon) stay, for a restarted kernel to find.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

from helpers_runtime import wait_for

CLIENT = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    import agentnb
    from agentnb import AgentBase, async_func

    host, port, token, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3], pathlib.Path(sys.argv[4])

    class Writer(AgentBase):
        @async_func
        def write(self, name, seconds=0.0):
            (folder / (name + ".started")).write_text("")
            time.sleep(seconds)
            (folder / name).write_text("ran")
            return name

    owned = Writer("owned", to_dist={"host": host, "port": port, "token": token})
    agentnb.set_default_server(host, port, token, detached=True)
    kept = Writer("kept", to_dist=True)
    agentnb.wait_created(owned, kept)
    running = owned.write("running", 2.0)
    queued = [owned.write(f"queued-{i}") for i in range(5)]
    kept.write("kept").result(30)
    deadline = time.monotonic() + 30  # until the running call has started; the others wait in the agent's mailbox
    while not (folder / "running.started").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_clients_own_agents_and_queued_calls_are_released(start_server, tmp_path: pathlib.Path) -> None:
    server = start_server("--log-level", "INFO")
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    done = subprocess.run([sys.executable, str(script), server.host, str(server.port), server.token, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert "ready" in done.stdout, done.stderr
    conn = server.connection()

    def names() -> list[str]:
        return sorted(agent.name for agent in conn.list_agents())

    wait_for(lambda: names() == ["kept"], 20, what="the killed client's own agent to be deleted")
    wait_for(lambda: not conn.info().busy, 20, what="the server to be idle")
    assert (tmp_path / "running").exists()  # the call that was running when the client died finished
    assert sorted(p.name for p in tmp_path.glob("queued-*")) == []  # the queued ones were dropped (never started)
    assert (tmp_path / "kept").exists()
