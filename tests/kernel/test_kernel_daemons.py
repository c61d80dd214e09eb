"""%agent_server daemons driven from real IPython kernels: start, place, restart, re-attach, stop."""

from __future__ import annotations

import os
import pathlib
import stat
import textwrap
import time

from helpers_runtime import child_server_pids, wait_for
from kernel_fixtures import Kernel

from agentnb import DaemonRegistry
from agentnb.rpc.connection import ServerConnection
from agentnb.runtime_dir import pid_alive, read_record

LOAD = "%load_ext agentnb\nimport agentnb"

TALLY = textwrap.dedent("""
    import math
    import os

    STEP = 1

    def scaled(x):
        return x * STEP

    class Tally(agentnb.AgentBase):
        def __init__(self, name):
            super().__init__(name)
            self.total = 0

        def add(self, x):
            self.total += scaled(x)
            return self.total

        def root(self):
            return math.isqrt(self.total)

        def pid(self):
            return os.getpid()

        def version(self):
            return 1
""")


def mode(path: str | pathlib.Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_daemon_survives_restart_and_agents_reattach(start_kernel, runtime_dir: str) -> None:
    kernel = start_kernel()
    kernel.run(LOAD)
    started = kernel.run("%agent_server start --name lab --capacity 4").stdout
    assert "'lab' running at unix:" in started and "now go to it" in started  # a socket only this user reaches

    record = read_record("lab")
    assert record is not None and record.kind == "daemon" and record.capacity == 4
    assert mode(pathlib.Path(runtime_dir, "servers", "lab.json")) == 0o600
    assert mode(record.log_path) == 0o600
    assert os.getsid(record.pid) == record.pid != os.getsid(kernel.pid)  # its own session

    kernel.run(TALLY)
    kernel.run("w0 = Tally('W0', to_dist=True)\nw0.add(2)\nw0.add(7)")
    assert kernel.run("print(w0.pid(), w0.root())").stdout.split() == [str(record.pid), "3"]
    assert child_server_pids(kernel.pid) == []  # the daemon hosts it, no child server
    listing = kernel.run("%agent_server list").outputs[0]
    assert "<table" in listing["text/html"] and ">lab<" in listing["text/html"]

    # Agents on a daemon belong to it: losing their proxies does not delete them.
    kernel.run("import gc\nrebound = Tally('rebound', to_dist=True)\nrebound = None\ngc.collect()")
    kernel.run("%reset -f")
    kernel.restart()
    assert pid_alive(record.pid)
    kernel.run(LOAD)
    listing = kernel.run("%agent_server list").outputs[0]["text/plain"]
    assert "lab" in listing and str(record.pid) in listing
    kernel.run("%agent_server use lab")
    out = kernel.run("w0 = agentnb.get_agent('W0')\n"
                     "print(w0.total, sorted(a.name for a in agentnb.list_agents()))").stdout
    assert out.strip() == "9 ['W0', 'rebound']"
    assert kernel.run("print(w0.add(16), w0.root())").stdout.split() == ["25", "5"]

    kernel.shutdown()
    assert pid_alive(record.pid), "a kernel shutdown must leave its daemons running"
    # Another process (this test) finds the daemon in the runtime directory and stops it.
    registry = DaemonRegistry()
    assert [r.name for r in registry.records()] == ["lab"]
    assert registry.stop(["lab"]) == ["lab"]
    assert not pid_alive(record.pid)
    assert read_record("lab") is None


def test_cell_defined_classes_redefinition_and_await(kernel: Kernel) -> None:
    kernel.run(LOAD + "\nimport asyncio, time")
    kernel.run("%agent_server start --name cells")
    kernel.run(TALLY)
    kernel.run("old = Tally('old', to_dist=True)")
    kernel.run(TALLY.replace("STEP = 1", "STEP = 10").replace("return 1", "return 2"))
    kernel.run("new = Tally('new', to_dist=True)")
    out = kernel.run("print(old.version(), new.version(), old.add(1), new.add(1))").stdout
    assert out.split() == ["1", "2", "1", "10"], "new agents run the new code; old ones keep theirs"

    kernel.run(textwrap.dedent("""
        class Echo(agentnb.AgentBase):
            @agentnb.async_func
            def echo(self, x, delay=0.2):
                time.sleep(delay)
                return x

        a, b = Echo('a', to_dist=True), Echo('b', to_dist=True)
    """))
    assert kernel.run("print(await a.echo(1))").stdout.strip() == "1"  # top-level await
    out = kernel.run(textwrap.dedent("""
        async def gathered():
            return await asyncio.gather(a.echo(2), b.echo(3))

        async def blocking():
            return a.echo(4).result()

        print(await gathered(), await blocking(), b.echo(5).result())
    """)).stdout
    assert out.strip() == "[2, 3] 4 5"
    assert child_server_pids(kernel.pid) == []


def test_interrupt_while_waiting_raises_keyboard_interrupt(kernel: Kernel) -> None:
    kernel.run(LOAD + "\nimport asyncio, time")
    kernel.run("%agent_server start --name busy --capacity 8")
    kernel.run(textwrap.dedent("""
        class Sleeper(agentnb.AgentBase):
            def nap(self, seconds):
                time.sleep(seconds)
                return seconds

            @agentnb.async_func
            def nap_later(self, seconds):
                time.sleep(seconds)
                return seconds

        s, t, s2, t2, u = (Sleeper(name, to_dist=True) for name in ['s', 't', 's2', 't2', 'u'])
    """))
    record = read_record("busy")
    assert record is not None
    daemon = ServerConnection.get(record.host, record.port, record.token)

    # A blocked wait gets KeyboardInterrupt; an awaiting cell is cancelled (ipykernel's CancelledError).
    waits = [("s.nap(60)", "KeyboardInterrupt"), ("t.nap_later(60).result()", "KeyboardInterrupt"),
             ("await s2.nap_later(60)", "CancelledError"),
             ("async def both():\n    return await asyncio.gather(t2.nap_later(60), u.nap_later(60))\n"
              "await both()", "CancelledError")]
    running = 0
    for code, error in waits:
        msg_id = kernel.submit(code)
        running += code.count("nap")
        wait_for(lambda n=running: daemon.info().busy >= n, 30, what=f"call {code} to run on the daemon")
        interrupted = time.monotonic()
        kernel.manager.interrupt_kernel()
        result = kernel.collect(msg_id, timeout=30)
        assert result.ename == error, result
        assert time.monotonic() - interrupted < 10
    assert pid_alive(record.pid), "the kernel's interrupt must not reach the daemon"
    assert kernel.run("print(Sleeper('v', to_dist=True).nap(0))").stdout.strip() == "0"

    # Its calls still run: SIGTERM alone would wait for them; SIGKILL follows after --grace.
    stopping = time.monotonic()
    assert "Stopped 'busy'" in kernel.run("%agent_server stop busy --grace 0.5").stdout
    assert time.monotonic() - stopping < 4
    assert not pid_alive(record.pid) and read_record("busy") is None
