"""agentnb.init: process-wide settings (model configurations, child servers).

Model configurations are known per process. A process that called
``init(model_configs=...)`` hands them to the agent servers it starts (child
servers, notebook daemons, launchers) through the server's environment
(:data:`ENV_MODEL_CONFIGS`), never on its command line; a server reads them
once at start-up, and ``--model-config-path`` adds to (and overrides) them.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

from agentnb.errors import AgentnbError

ENV_MODEL_CONFIGS = "AGENTNB_MODEL_CONFIGS"
ENV_CHILD_SERVERS = "AGENTNB_CHILD_SERVERS"
DEFAULT_CHILD_SERVERS = 1
# Environment strings above ~128 KiB are refused by exec(); stay well below.
MAX_ENV_CONFIG_BYTES = 100_000
REDACTED = "***"
# Setting names whose values are secrets (api_key, x-api-key, Authorization, access_token, ...);
# anchored so that max_tokens or api_key_env (the *name* of a variable) are not caught.
_SECRET_NAME = re.compile(r"^(?:.*[-_])?(?:api[-_]?key|apikey|token|secret|password|authorization|auth)$",
                          re.IGNORECASE)

_lock = threading.Lock()
_model_configs: dict[str, ModelConfig] = {}
_digest: str | None = None  # configs_digest() of _model_configs; None when they changed since
_process_role = "process"  # how errors name this process: "process" or "agent server"
_child_servers: int | None = None  # set by init(child_servers=...); None: the environment or the default


class ModelConfigError(AgentnbError, ValueError):
    """A model configuration is missing, malformed or names an unknown model type."""


def is_secret_name(name: object) -> bool:
    """Whether a setting called ``name`` holds a secret (its value is never shown)."""
    return isinstance(name, str) and bool(_SECRET_NAME.match(name))


def redact(value: Any) -> Any:
    """A copy of ``value`` (nested dicts and lists) with every secret setting replaced by ``***``."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_name(k) and v else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


class ModelConfig(dict[str, Any]):
    """One model configuration: a dict whose ``repr`` hides its secrets.

    It has at least ``config_name`` and ``model_type``; the other keys are the
    settings of that model type (see :func:`agentnb.load_model`).
    """

    @property
    def config_name(self) -> str:
        """The name agents and :func:`agentnb.load_model` know it by."""
        return self["config_name"]

    @property
    def model_type(self) -> str:
        """``openai_chat`` or ``post_api``."""
        return self["model_type"]

    def __repr__(self) -> str:
        return f"ModelConfig({redact(dict(self))!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        return (ModelConfig, (dict(self),))


def _read_configs(model_configs: Any) -> list[ModelConfig]:
    if isinstance(model_configs, (str, os.PathLike)):
        path = os.fspath(model_configs)
        try:
            with open(path) as f:
                model_configs = json.load(f)
        except OSError as exc:
            raise ModelConfigError(f"cannot read model configs from {path!r}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ModelConfigError(f"model config file {path!r} is not valid JSON: {exc}") from exc
    if isinstance(model_configs, dict):
        model_configs = [model_configs]
    if not isinstance(model_configs, (list, tuple)):
        raise TypeError("model_configs must be a dict, a list of dicts or the path of a JSON file")
    from agentnb.models.registry import check_config

    configs = []
    for i, config in enumerate(model_configs):
        if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
            raise ModelConfigError(f"model config #{i} needs a string 'config_name'")
        if not isinstance(config.get("model_type"), str):
            raise ModelConfigError(f"model config {config['config_name']!r} needs a string 'model_type'")
        configs.append(check_config(ModelConfig(config)))
    return configs


def init(model_configs: Any = None, child_servers: int | str | None = None, **seed_options: Any) -> None:
    """Set up agentnb for this process. Calling it is optional.

    Args:
        model_configs: model configurations (a dict, a list of dicts, or the
            path of a JSON file holding either); each has ``config_name``,
            ``model_type`` (``openai_chat`` or ``post_api``) and that type's
            settings. A later config of the same name replaces the earlier one.
            Agent servers started by this process afterwards (child servers,
            ``%agent_server start`` daemons) receive them too.
        child_servers: in child mode (``to_dist=True`` with no server set), spread
            agents over up to this many child servers (``"auto"``: one per CPU);
            capped at ``os.cpu_count()``. Default 1 (or ``$AGENTNB_CHILD_SERVERS``):
            one child starts fastest, and agents that wait on I/O share it well;
            CPU-bound agents need several to use several cores.

    Raises:
        ModelConfigError: a config is malformed (the message names it).
        ValueError: ``child_servers`` is not a whole number of at least 1 or ``"auto"``.
        TypeError: any other option (the seed's ``project``, ``save_log``, ...: agentnb
            has none of them).
    """
    global _child_servers, _digest
    if seed_options:
        raise TypeError(f"agentnb.init() takes model_configs and child_servers, not "
                        f"{', '.join(map(repr, sorted(seed_options)))}: agentnb has no such setting (the seed's "
                        "project, run names, saving, logging and studio options); remove them. A server's log "
                        "level is set where it starts: as_server start --log-level, or start_server(log_level=)")
    if child_servers is not None:
        _child_servers = _read_child_servers(child_servers, "child_servers")
    if model_configs is None:
        return
    configs = _read_configs(model_configs)
    with _lock:
        for config in configs:
            _model_configs[config.config_name] = config
        _digest = None


def _read_child_servers(value: int | str, what: str) -> int:
    cpus = os.cpu_count() or 1
    if isinstance(value, str) and value.strip().lower() == "auto":
        return cpus
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if isinstance(value, bool) or count < 1 or (isinstance(value, float) and value != count):
        raise ValueError(f"{what} must be a whole number of at least 1 or 'auto'; got {value!r}")
    return min(count, cpus)


def child_server_count() -> int:
    """How many child servers child mode may spread agents over (see :func:`init`)."""
    if _child_servers is not None:
        return _child_servers
    value = os.environ.get(ENV_CHILD_SERVERS, "").strip()
    return _read_child_servers(value, f"${ENV_CHILD_SERVERS}") if value else DEFAULT_CHILD_SERVERS


def model_configs() -> dict[str, ModelConfig]:
    """The model configurations known to this process, by name."""
    with _lock:
        return {name: ModelConfig(config) for name, config in _model_configs.items()}


def get_model_config(config_name: str) -> ModelConfig:
    """The configuration called ``config_name``.

    Raises:
        ModelConfigError: this process knows no such configuration; the
            message names it and lists the known ones.
    """
    with _lock:
        config = _model_configs.get(config_name)
        known = sorted(_model_configs)
    if config is None:
        listed = ", ".join(map(repr, known)) or "none"
        raise ModelConfigError(
            f"unknown model config {config_name!r} on this {_process_role} (pid {os.getpid()}; known here: "
            f"{listed}); call agentnb.init(model_configs=...) before the agent server starts, or start the "
            "server with --model-config-path"
        )
    return ModelConfig(config)


def clear_model_configs() -> None:
    """Forget every model configuration of this process (servers already started keep theirs)."""
    global _digest
    with _lock:
        _model_configs.clear()
        _digest = None


def configs_digest() -> str:
    """A string that changes whenever this process's configurations do (worked
    out once per change: child-mode placement asks at every creation)."""
    global _digest
    with _lock:
        if _digest is None:
            _digest = json.dumps(_model_configs, sort_keys=True, default=str)
        return _digest


def server_environment() -> dict[str, str]:
    """Environment variables that hand this process's configurations to a server it starts.

    Empty when there are none. The configurations travel in the environment
    (readable only by this user), not on the command line (readable by all).
    """
    with _lock:
        if not _model_configs:
            return {}
        data = json.dumps(list(_model_configs.values()))
    if len(data.encode()) > MAX_ENV_CONFIG_BYTES:
        raise ModelConfigError(
            f"the model configs of this process are {len(data)} bytes of JSON, too many to hand to an agent "
            "server: put them in a file and start the server with --model-config-path"
        )
    return {ENV_MODEL_CONFIGS: data}


def init_from_environment() -> None:
    """In an agent server: take the configurations its parent handed over (and
    remove them from ``os.environ``, where agent code would see them)."""
    global _process_role
    _process_role = "agent server"
    data = os.environ.pop(ENV_MODEL_CONFIGS, None)
    if not data:
        return
    try:
        configs = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ModelConfigError(f"${ENV_MODEL_CONFIGS} is not valid JSON: {exc.msg}") from None
    init(model_configs=configs)
