"""A client killed while it writes a large argument into its server's shared memory leaves no
file there for long: what nobody announced is removed once it is stale (not only when the
server stops, which may be days later, holding hundreds of MiB of RAM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from agents_for_tests import Counter
from helpers_runtime import wait_for

from agentnb.server import late_removals
from agentnb.wire.shm import ShmDir

CLIENT = textwrap.dedent("""
    import sys
    from agents_for_tests import Counter
    counter = Counter(to_dist={"host": sys.argv[1], "port": int(sys.argv[2]), "token": sys.argv[3]})
    counter.add(1)
    print("ready", flush=True)
    counter.add(bytearray(1500 * 2**20))  # written to the server's shared memory, then sent
""")


def test_the_file_of_a_writer_killed_mid_write_is_removed(start_server, tmp_path) -> None:
    server = start_server()
    directory = ShmDir(server.connection().info().shm_dir)
    assert directory.files() == []
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    client = subprocess.Popen([sys.executable, str(script), server.host, str(server.port), server.token],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert client.stdout.readline().strip() == "ready"
        wait_for(lambda: directory.files(), 30, what="the client to start writing its argument")
        client.send_signal(signal.SIGKILL)
        client.wait(10)
    finally:
        client.kill()
    [left] = directory.files()  # killed while writing: never announced, never read
    path = os.path.join(directory.path, left)
    stale = time.time() - late_removals.STALE_FILE_SECONDS - 1
    os.utime(path, (stale, stale))  # as if it had been left that long
    wait_for(lambda: not directory.files(), 3 * late_removals.SWEEP_INTERVAL, what="the stale file to be removed")
    assert Counter(to_dist=server.to_dist).add(2) == 2  # the server carries on
