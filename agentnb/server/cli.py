"""The agent server's command line: ``as_server start ...`` and ``python -m agentnb.server``."""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import logging
import os
import pathlib
import signal
import sys
import threading

from agentnb.errors import AgentServerError
from agentnb.launch.command import DEFAULT_LOG_LEVEL, ENV_TOKEN, LOG_LEVELS, START_ERROR_PREFIX
from agentnb.launch.launcher_flags import add_launcher_arguments, launcher_options, positive_int
from agentnb.launch.launchers import LOCAL
from agentnb.server.server_log import configure_process_log

_LOGGER = logging.getLogger(__name__)

ENV_SWITCH_INTERVAL = "AGENTNB_SWITCH_INTERVAL"
SERVER_SWITCH_INTERVAL = 0.02  # seconds (Python's default: 0.005); see switch_interval
ENV_GC_THRESHOLDS = "AGENTNB_GC_THRESHOLDS"
SERVER_GC_THRESHOLDS = (20_000, 50, 100)  # (Python's default: 700, 10, 10); see gc_thresholds


def build_parser(prog: str = "as_server") -> argparse.ArgumentParser:
    """The options of a server's command line (those after ``start``)."""
    import agentnb

    parser = argparse.ArgumentParser(prog=prog, description="Run an agentnb agent server.")
    parser.add_argument("--version", action="version", version=f"agentnb {agentnb.__version__}",
                        help="print the agentnb version (a client works with servers of its major.minor)")
    parser.add_argument("--host", default="localhost", help="interface to bind (default: localhost)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--name", default=None, help="the server's name in the runtime directory")
    parser.add_argument("--agent-dir", default=None, help="import every module in this folder")
    parser.add_argument("--agent-module", action="append", default=[], help="import this module (repeatable)")
    parser.add_argument("--model-config-path", default=None, help="JSON file of model configurations")
    parser.add_argument("--capacity", type=int, default=32, help="agent calls running at once (default: 32)")
    parser.add_argument("--pool-type", default="local", choices=("local", "redis"), help="result store")
    parser.add_argument("--redis-url", default=None, help="Redis URL, with --pool-type redis")
    parser.add_argument("--max-expire-time", type=float, default=7200.0, help="seconds results are kept")
    parser.add_argument("--max-len", type=int, default=8192, help="results kept at most (local store)")
    parser.add_argument("--no-local-mode", dest="local_mode", action="store_false",
                        help="allow binding a non-loopback address")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate: serve TLS only")
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    parser.add_argument("--tls-client-ca", default=None, help="PEM CA: require client certificates it signed")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds running calls get on SIGTERM")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=DEFAULT_LOG_LEVEL,
                        help="what the log (standard output) records: INFO has the start and stop, clients, "
                             "agents created and deleted, and failed or cancelled calls; DEBUG adds every "
                             f"call; WARNING and ERROR only problems (default: {DEFAULT_LOG_LEVEL})")
    parser.add_argument("--replicas", type=positive_int, default=1,
                        help="servers acting as one pool, NAME-0 ... (default: 1); with more than one, or a "
                             "cluster launcher, this command starts them and holds them until SIGTERM/Ctrl-C")
    add_launcher_arguments(parser)
    # For agentnb's own launchers.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--record-kind", default="server", help=argparse.SUPPRESS)
    parser.add_argument("--log-path", default="", help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def import_agent_dir(path: str) -> list[str]:
    """Import every module of ``path`` (so that their classes are known); return their names."""
    folder = pathlib.Path(path).resolve()
    if not folder.is_dir():
        raise AgentServerError(f"--agent-dir {path!r} is not a folder")
    sys.path.insert(0, str(folder))
    names = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    for name in names:
        importlib.import_module(name)
    return names


def switch_interval() -> float:
    """The interpreter's switch interval in a server process: ``$AGENTNB_SWITCH_INTERVAL`` seconds, else
    :data:`SERVER_SWITCH_INTERVAL`.

    A server's reader, workers and replier pass calls to each other under a few
    locks. At Python's default 5 ms, a thread woken for the GIL takes it from one
    that holds such a lock so often that the threads fall into step, each waiting
    on the other for every call: 5,000 async calls then ran at half their rate in
    one run of three, with 30 times the context switches. At 20 ms that did not
    happen once. A call that waits for the GIL behind another agent's pure-Python
    work waits up to this long (calls doing I/O release it at once).
    """
    value = os.environ.get(ENV_SWITCH_INTERVAL, "").strip()
    if not value:
        return SERVER_SWITCH_INTERVAL
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"${ENV_SWITCH_INTERVAL} must be a number of seconds, not {value!r}") from None
    if not 0 < seconds <= 1:
        raise ValueError(f"${ENV_SWITCH_INTERVAL} must be above 0 and at most 1 (seconds), not {value}")
    return seconds


def gc_thresholds() -> tuple[int, int, int]:
    """The garbage collector's thresholds in a server process (``gc.set_threshold``):
    ``$AGENTNB_GC_THRESHOLDS`` (three numbers, ``20000,50,100``), else :data:`SERVER_GC_THRESHOLDS`.

    A server holding many agents, and making a few short-lived objects for each call, spent a third
    of its time in the collector at Python's defaults, which walk every agent at each full
    collection: a round of 300,000 calls (``python -m agentnb.bench --only W8 --w8-agents 300000``)
    took 20.1 s at Python's thresholds and 13.3 s at these. Garbage in reference cycles waits longer
    to be freed.
    """
    value = os.environ.get(ENV_GC_THRESHOLDS, "").strip()
    if not value:
        return SERVER_GC_THRESHOLDS
    try:
        first, second, third = (int(part) for part in value.split(","))
    except ValueError:
        raise ValueError(f"${ENV_GC_THRESHOLDS} must be three whole numbers (20000,50,100), not {value!r}") from None
    if min(first, second, third) < 1:
        raise ValueError(f"${ENV_GC_THRESHOLDS} must be three numbers of at least 1, not {value}")
    return first, second, third


def serve(args: argparse.Namespace) -> int:
    """Run a server in this process until SIGTERM/SIGINT, a Shutdown call, or the parent's exit;
    or, with ``--replicas`` above 1 or a cluster ``--launcher``, a pool (:func:`hold_pool`)."""
    configure_process_log(args.log_level)
    if args.capacity < 1:
        raise AgentServerError("--capacity must be at least 1")
    options = launcher_options(args)  # (a flag of a launcher that is not the one given: ValueError)
    if args.replicas > 1 or args.launcher != LOCAL:
        return hold_pool(args, options)
    sys.setswitchinterval(switch_interval())
    gc.set_threshold(*gc_thresholds())
    from agentnb.config import init, init_from_environment
    from agentnb.server.agent_server import AgentServer

    # Those handed over by the process that started us first; the file's override them by name.
    init_from_environment()
    if args.model_config_path:
        init(model_configs=args.model_config_path)
    if args.agent_dir:
        import_agent_dir(args.agent_dir)
    for module in args.agent_module:
        importlib.import_module(module)
    token = os.environ.pop(ENV_TOKEN, None) or None
    server = AgentServer(
        args.host, args.port, name=args.name, token=token, capacity=args.capacity, pool_type=args.pool_type,
        redis_url=args.redis_url, max_len=args.max_len, max_expire_time=args.max_expire_time,
        record=not args.child, record_kind=args.record_kind, log_path=args.log_path, local_mode=args.local_mode,
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
    ).start()

    stop_requested = threading.Event()
    signals: list[int] = []  # those received: logged by the main loop (a handler must not take logging's locks)

    def on_signal(signum: int, frame: object) -> None:
        signals.append(signum)
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.child or args.exit_with_parent:
        threading.Thread(target=_exit_when_stdin_closes, args=(server,), daemon=True).start()
    if args.ready_fd is not None:
        os.write(args.ready_fd, f"{server.port}\n".encode())
        os.close(args.ready_fd)
        args.ready_fd = None  # closed: its number may be reused by another file from now on
    def wait_then_stop() -> None:
        server.wait()
        stop_requested.set()

    threading.Thread(target=wait_then_stop, daemon=True).start()
    while not stop_requested.wait(1.0):
        pass
    if signals:
        _LOGGER.info("agent server %s received %s", server.name, signal.Signals(signals[0]).name)
    server.stop(args.grace)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # worker threads still in user code past the grace period must not hold the exit


def hold_pool(args: argparse.Namespace, options: dict[str, object]) -> int:
    """Start ``--replicas`` servers through ``--launcher`` (with its ``options``) as one pool, print where they run,
    and stop them at SIGTERM or SIGINT (running calls get ``--grace`` seconds).

    They are recorded as the pool NAME in the runtime directory, so that the same user's
    notebooks and scripts find them (``%agent_server use NAME``, ``agentnb.find_server``).
    Their token is ``$AGENTNB_TOKEN`` if set (hand it to clients on other hosts), else a new
    one, kept in those records only.
    """
    import agentnb
    from agentnb.runtime_dir import recorded_pools

    refused = [flag for flag, given in (("--port", args.port), ("--tls-cert", args.tls_cert),
                                        ("--tls-client-ca", args.tls_client_ca),
                                        ("--agent-module", args.agent_module)) if given]
    if refused:
        raise ValueError(f"{', '.join(refused)} apply to one server: a pool's replicas each take a free port, "
                         "serve without TLS, and import the modules of --agent-dir")
    token = os.environ.pop(ENV_TOKEN, None) or None
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop_requested.set())
    pool = agentnb.start_pool(
        args.replicas, name=args.name, capacity=args.capacity, host=args.host, token=token,
        pool_type=args.pool_type, redis_url=args.redis_url, max_len=args.max_len,
        max_expire_time=args.max_expire_time, local_mode=args.local_mode, agent_dir=args.agent_dir,
        model_config_path=args.model_config_path, launcher=args.launcher, launcher_options=options or None,
    )
    where = {record.name: record.where for record in recorded_pools().get(pool.name, [])}
    print(f"server pool {pool.name} of {len(pool.replicas)} replicas ({args.launcher}), capacity {args.capacity} "
          f"each; token {'from $AGENTNB_TOKEN' if token else 'in their records (agentnb.find_server)'}:", flush=True)
    for replica in pool.replicas:
        print(f"  {replica.name} at {replica.address} ({where.get(replica.name or '', '?')})", flush=True)
    print("stop with Ctrl-C or SIGTERM", flush=True)
    while not stop_requested.wait(1.0):
        pass
    _LOGGER.info("server pool %s stopping (running calls get a grace of %g s)", pool.name, args.grace)
    pool.stop(grace=args.grace)
    print(f"server pool {pool.name} stopped", flush=True)
    return 0


def _exit_when_stdin_closes(server: object) -> None:
    """The parent holds our stdin open; when it is gone, so are we, at once."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    from agentnb.runtime_dir import remove_record

    name = getattr(server, "name", None)
    _LOGGER.info("agent server %s exits at once: the process that started it ended (or closed its stdin)", name)
    if getattr(server, "record", False) and name:
        remove_record(name, os.getpid())
    os._exit(0)


def main(argv: list[str] | None = None, prog: str = "as_server") -> int:
    """Run a server with the options ``argv`` (``start`` first or not); 2 when it could not start."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "start":
        argv = argv[1:]
    args = build_parser(prog).parse_args(argv)
    try:
        return serve(args)
    except (AgentServerError, ValueError, ImportError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        report_start_failure(args.ready_fd, str(exc))
        return 2


def report_start_failure(ready_fd: int | None, message: str) -> None:
    """Tell the process waiting on ``ready_fd`` why this server did not start.

    It reads one line: the port, or ``error`` and the message as JSON (see
    :func:`agentnb.launch.command.read_port`), so that the error it raises
    names the cause (e.g. the Redis URL that could not be reached).
    """
    if ready_fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(ready_fd, f"{START_ERROR_PREFIX}{json.dumps(message)}\n".encode())
        os.close(ready_fd)


def as_server_main() -> int:
    """Entry point of the ``as_server`` script (``as_server start --port ...``)."""
    argv = sys.argv[1:]
    if not argv or argv[0] not in ("start", "-h", "--help", "--version"):
        print("usage: as_server start [options]   (as_server start --help for the options)", file=sys.stderr)
        return 2
    return main(argv)
