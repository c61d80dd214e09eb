"""A forked helper of a client (a multiprocessing worker) must not keep the client's child servers alive.

Child servers end when their parent's end of a pipe closes. A fork inherits that
end: unless the fork closes it, a helper still running after the client was killed
keeps the child server (and the agents and secrets in it) running.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

from helpers_runtime import wait_for

CLIENT = textwrap.dedent("""
    import multiprocessing, sys, time
    from agentnb import AgentBase

    class Echo(AgentBase):
        def echo(self, x):
            return x

    assert Echo("e", to_dist=True).echo(1) == 1
    helper = multiprocessing.get_context("fork").Process(target=time.sleep, args=(300,))
    helper.start()
    print(helper.pid, flush=True)
    time.sleep(300)
""")


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _is_server(pid: int) -> bool:
    try:
        return b"agentnb.server" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_clients_child_server_ends_though_its_forked_helper_lives(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    client = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    helper = server = None
    try:
        helper = int(client.stdout.readline())
        [server] = [pid for pid in _children_of(client.pid) if _is_server(pid)]
        client.send_signal(signal.SIGKILL)
        client.wait(10)
        assert _alive(helper)
        wait_for(lambda: not _alive(server), 20, what="the child server to end with its client")
    finally:
        for pid in (helper, server):
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        client.kill()
        client.wait(10)
