"""agentnb.init: process-wide settings (model configurations)."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

_lock = threading.Lock()
_model_configs: dict[str, dict[str, Any]] = {}


def _read_configs(model_configs: Any) -> list[dict[str, Any]]:
    if isinstance(model_configs, (str, os.PathLike)):
        try:
            with open(model_configs) as f:
                model_configs = json.load(f)
        except OSError as exc:
            raise ValueError(f"cannot read model configs from {os.fspath(model_configs)!r}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"model config file {os.fspath(model_configs)!r} is not valid JSON: {exc}") from exc
    if isinstance(model_configs, dict):
        model_configs = [model_configs]
    if not isinstance(model_configs, list):
        raise TypeError("model_configs must be a dict, a list of dicts or the path of a JSON file")
    for i, config in enumerate(model_configs):
        if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
            raise ValueError(f"model config #{i} needs a string 'config_name'")
        if not isinstance(config.get("model_type"), str):
            raise ValueError(f"model config {config['config_name']!r} needs a string 'model_type'")
    return model_configs


def init(model_configs: Any = None, **_ignored: Any) -> None:
    """Set up agentnb for this process. Calling it is optional.

    Args:
        model_configs: model configurations (a dict, a list of dicts, or the
            path of a JSON file holding either); each has ``config_name`` and
            ``model_type``.
    """
    if model_configs is None:
        return
    configs = _read_configs(model_configs)
    with _lock:
        for config in configs:
            _model_configs[config["config_name"]] = dict(config)


def model_configs() -> dict[str, dict[str, Any]]:
    """The model configurations known to this process, by name."""
    with _lock:
        return {name: dict(config) for name, config in _model_configs.items()}
