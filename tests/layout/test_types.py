"""Types: mypy is clean on the package, and a user's checker sees the public API's types.

mypy comes with the ``test`` extra. Without it the mypy tests are skipped, except in CI
(``CI=true``), where a missing checker is a failure.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import agentnb

REPO = Path(__file__).resolve().parents[2]
TYPED_USER = Path(__file__).with_name("typed_user.py")
LAZY_PACKAGES = ("agentnb/__init__.py", "agentnb/rpc/__init__.py", "agentnb/server/__init__.py")


def _mypy(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec("mypy") is None:
        message = "mypy is not installed: `make lint` or `pip install -e '.[test]'` installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: CI must install it)")
        pytest.skip(message)
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_mypy_is_clean_on_the_package() -> None:
    """The check `make lint` runs: [tool.mypy] of pyproject.toml, on agentnb and kernel_ext."""
    checked = _mypy(cwd=REPO)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_user_program_sees_the_public_types(tmp_path: Path) -> None:
    """typed_user.py, checked with --strict as a user's program: agentnb is found as an installed
    package (through its py.typed), not as source of the user's, and its assert_type calls hold."""
    shutil.copy(TYPED_USER, tmp_path / TYPED_USER.name)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    checked = _mypy("--strict", "--python-version", "3.11", "--cache-dir", str(tmp_path / ".mypy_cache"),
                    TYPED_USER.name, cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_packages_ship_their_types() -> None:
    """PEP 561: py.typed in each package, and named as package data (of each package, or of all:
    "*") so that it lands in the wheel (tests/launch/test_wheel.py checks the wheel itself)."""
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package in ("agentnb", "kernel_ext"):
        assert (REPO / package / "py.typed").is_file()
        assert "py.typed" in package_data.get(package, package_data.get("*", []))


@pytest.mark.parametrize("path", LAZY_PACKAGES)
def test_a_checker_sees_every_name_imported_on_first_use(path: str) -> None:
    """A package that imports names on first use (``_LAZY``) imports each of them under
    TYPE_CHECKING as well: a checker does not run its ``__getattr__``, and would see Any."""
    tree = ast.parse((REPO / path).read_text())
    lazy: dict[str, str] = {}
    seen: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            lazy = ast.literal_eval(node.value)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imported in node.body:
                assert isinstance(imported, ast.ImportFrom) and imported.module is not None
                seen.update({alias.name: imported.module for alias in imported.names})
    assert lazy, f"no _LAZY table in {path}"
    # The same name from the module that defines it, or from a package that re-exports it.
    assert {name: module for name, module in lazy.items()
            if not seen.get(name, "").startswith(module) and not module.startswith(seen.get(name, "-"))} == {}
    assert set(seen) == set(lazy)


def _unannotated(func: object, where: str) -> list[str]:
    try:
        signature = inspect.signature(func)  # type: ignore[arg-type]  # a callable, checked by the caller
    except (TypeError, ValueError):  # a builtin without a signature
        return []
    missing = [f"{where}({name})" for name, param in signature.parameters.items()
               if name not in ("self", "cls") and param.annotation is inspect.Parameter.empty]
    if signature.return_annotation is inspect.Signature.empty and not where.endswith("__init__"):
        missing.append(f"{where} -> ?")
    return missing


def test_every_public_name_is_annotated() -> None:
    """Every function of agentnb.__all__, and every public method of its classes, has annotations
    (mypy's disallow_untyped_defs says so for the whole package; this names what users call)."""
    missing: list[str] = []
    for name in agentnb.__all__:
        obj = getattr(agentnb, name)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if inspect.isfunction(value) and (not attr.startswith("_") or attr in ("__init__", "__call__")):
                    missing += _unannotated(value, f"{name}.{attr}")
        elif inspect.isfunction(obj):
            missing += _unannotated(obj, name)
    assert missing == []
