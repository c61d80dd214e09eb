"""agentnb as a user installs it: the sdist and the wheel that ``python -m build`` makes, installed
in fresh venvs outside the checkout (no PYTHONPATH, no editable install) and used from there: the
seed's example in child mode and against ``as_server``, and ``%load_ext agentnb`` with a round
trip in a real kernel that runs the venv's Python.

Slow (a build and two venvs, about a minute): ``-m "not slow"`` leaves it out.
"""

from __future__ import annotations

import email.parser
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import nbformat
import pytest
from helpers_runtime import REPO, Script, check_dist_main_output, free_port
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from kernel_fixtures import Kernel
from nbclient import NotebookClient

from agentnb.runtime_dir import iter_records

pytestmark = pytest.mark.slow

PACKAGES = ("agentnb", "kernel_ext")  # what the wheel installs
# What a build or a test run leaves in a checkout: never part of a release.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                     ".pytest_cache", ".ruff_cache", ".hypothesis", "_build", "artifacts")
INSTALL_TIMEOUT = 240


@dataclass
class Dists:
    sdist: pathlib.Path
    wheel: pathlib.Path


@dataclass
class Venv:
    """A fresh virtual environment, outside the checkout."""

    path: pathlib.Path

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def site_packages(self) -> str:
        return str(self.path / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages")

    def env(self) -> dict[str, str]:
        """A user's environment with this venv activated: nothing of the checkout on the import path.
        The test's runtime directory (AGENTNB_RUNTIME_DIR) is kept, so the reaper sees its servers."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["PATH"] = os.pathsep.join([str(self.path / "bin"), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.path)
        return env

    def run(self, *args: str, cwd: pathlib.Path, timeout: float = 90.0) -> subprocess.CompletedProcess:
        """Run this venv's Python with ``args`` to its end, output captured; fail on a non-zero exit."""
        done = subprocess.run([self.python, *args], cwd=cwd, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done


def make_venv(path: pathlib.Path, *install: str) -> Venv:
    """A new venv (no system site-packages) at ``path``, with ``pip install *install`` done in it."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    venv = Venv(path)
    venv.run("-m", "pip", "install", "--quiet", *install, cwd=path, timeout=INSTALL_TIMEOUT)
    return venv


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist and the wheel, as ``python -m build`` makes them (the wheel from the sdist), from a
    copy of the checkout's sources, so the build leaves nothing in the checkout."""
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCES)
    out = work / "dist"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], capture_output=True,
                          text=True, timeout=INSTALL_TIMEOUT, env=env, cwd=work, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    [sdist], [wheel] = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    return Dists(sdist, wheel)


@pytest.fixture(scope="module")
def installed(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv with the wheel installed (its dependencies from the package index), as a user does."""
    return make_venv(tmp_path_factory.mktemp("venv") / "venv", str(dists.wheel))


@pytest.fixture
def elsewhere(tmp_path: pathlib.Path) -> pathlib.Path:
    """An empty folder outside the checkout, to run from."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert not str(folder).startswith(REPO)
    return folder


def test_the_wheel_has_every_module_and_what_an_index_shows(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
        [metadata_name] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(wheel.read(metadata_name).decode())
        entry_points = wheel.read(metadata_name.replace("METADATA", "entry_points.txt")).decode()
    # Every module and data file of the packages (generated _proto code, examples, py.typed, stubs), and
    # nothing else at the top: no tests, no notebooks.
    sources = {str(p.relative_to(REPO)) for package in PACKAGES for p in pathlib.Path(REPO, package).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert sources <= names, f"missing from the wheel: {sorted(sources - names)}"
    assert {"agentnb/_proto/agentnb_pb2.py", "agentnb/_proto/agentnb_pb2_grpc.py",
            "agentnb/examples/dist_main.py", "kernel_ext/magics.py"} <= names
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == set(PACKAGES)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "as_server = agentnb.server.cli:as_server_main" in entry_points

    assert metadata["Name"] == "agentnb"
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Summary"] and metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().startswith("# agentnb")  # the README is the project's page
    classifiers = metadata.get_all("Classifier")
    tested = f"Programming Language :: Python :: {sys.version_info.major}.{sys.version_info.minor}"
    assert {tested, "Framework :: Jupyter", "Operating System :: POSIX :: Linux"} <= set(classifiers), classifiers
    assert {"grpcio", "protobuf", "cloudpickle", "ipykernel", "ipywidgets"} <= {
        re.split(r"[ <>=!;\[]", req)[0] for req in metadata.get_all("Requires-Dist") if "extra ==" not in req}


def test_the_sdist_has_the_sources_and_installs_in_a_fresh_venv(dists: Dists, tmp_path: pathlib.Path,
                                                               elsewhere: pathlib.Path) -> None:
    with tarfile.open(dists.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    wanted = {"LICENSE", "README.md", "pyproject.toml", "protos/agentnb.proto", "protos/generate.py",
              "tests/conftest.py", "agentnb/_proto/agentnb_pb2.py", "kernel_ext/__init__.py"}
    wanted |= {str(p.relative_to(REPO)) for p in pathlib.Path(REPO, "notebooks").glob("*.ipynb")}
    wanted |= {"CHANGELOG.md"} if os.path.exists(os.path.join(REPO, "CHANGELOG.md")) else set()
    assert wanted <= names, f"missing from the sdist: {sorted(wanted - names)}"
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    # pip builds it (the wheel then comes from the sdist alone) and installs it with its dependencies.
    venv = make_venv(tmp_path / "venv", str(dists.sdist))
    done = venv.run("-c", "import importlib.metadata as m, agentnb, kernel_ext; "
                          "print(m.version('agentnb'), agentnb.__version__, agentnb.__file__, kernel_ext.__file__)",
                    cwd=elsewhere)
    dist_version, version, agentnb_file, kernel_ext_file = done.stdout.split()
    assert dist_version == version
    assert agentnb_file.startswith(venv.site_packages) and kernel_ext_file.startswith(venv.site_packages)
    # An example with sync and async calls on a child server: the installed package works.
    done = venv.run("-m", "agentnb.examples.example_class", "--sleep", "0.2", cwd=elsewhere)
    assert done.stdout.strip().endswith("all assertions passed"), done.stdout


def test_the_seed_example_runs_from_the_installed_package(installed: Venv, elsewhere: pathlib.Path) -> None:
    done = installed.run("-c", "import agentnb, kernel_ext; print(agentnb.__file__, kernel_ext.__file__)",
                         cwd=elsewhere)
    assert all(path.startswith(installed.site_packages) for path in done.stdout.split()), done.stdout
    done = installed.run("-m", "agentnb.examples.dist_main", "--sleep", "1", cwd=elsewhere)
    check_dist_main_output(done.stdout, 1.0)


def test_as_server_of_the_venv_serves_the_example(installed: Venv, elsewhere: pathlib.Path) -> None:
    port = free_port()
    server = Script(str(installed.path / "bin" / "as_server"), "start", "--port", str(port), python=None,
                    cwd=str(elsewhere), env=installed.env())
    try:
        assert f"listening on 127.0.0.1:{port}" in server.readline(60)
        done = installed.run("-m", "agentnb.examples.dist_main", "--sleep", "0.5", "--host", "localhost",
                             "--port", str(port), cwd=elsewhere)
        check_dist_main_output(done.stdout, 0.5)
        server.process.send_signal(signal.SIGTERM)
        rc, _, stderr = server.wait(30)
        assert rc == 0, stderr
    finally:
        server.kill()


def venv_kernel_manager(installed: Venv, tmp_path: pathlib.Path) -> KernelManager:
    """A manager (not started) of a kernel whose argv is the venv's Python, not this one's."""
    spec_dir = tmp_path / "kernels" / "agentnb-venv"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [installed.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "agentnb (installed wheel)", "language": "python",
    }))
    specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)], ensure_native_kernel=False)
    return KernelManager(kernel_name="agentnb-venv", kernel_spec_manager=specs)


@pytest.fixture
def venv_kernel(installed: Venv, tmp_path: pathlib.Path, elsewhere: pathlib.Path) -> Iterator[Kernel]:
    """A real kernel running the venv's Python (its ipykernel), started in ``elsewhere``; shut down at the end."""
    manager = venv_kernel_manager(installed, tmp_path)
    kernel = None
    try:
        kernel = Kernel(installed.env(), str(elsewhere), manager=manager)
        yield kernel
    finally:
        if kernel is not None:
            kernel.shutdown(now=True)
        elif manager.has_kernel:  # started, but never answered
            manager.shutdown_kernel(now=True)


def test_load_ext_and_a_round_trip_in_a_kernel_of_the_venv(installed: Venv, venv_kernel: Kernel) -> None:
    kernel = venv_kernel
    kernel.run("%load_ext agentnb")
    here = kernel.run("import os, sys, agentnb, kernel_ext\n"
                      "print(os.getpid(), sys.executable, agentnb.__file__, kernel_ext.__file__)").stdout.split()
    assert here[1] == installed.python and all(p.startswith(installed.site_packages) for p in here[2:]), here
    kernel.run("%agent_server list")  # the extension's magic is there
    cell = kernel.run(textwrap.dedent("""
        from agentnb import AgentBase

        class Where(AgentBase):                   # defined in a cell: it travels by value
            def where(self, x):
                import os, sys, agentnb
                return os.getpid(), sys.executable, agentnb.__file__, x * 2

        remote = Where("W").to_dist()             # a child server of the kernel
        print(*remote.where(21))
    """))
    pid, executable, agentnb_file, answer = cell.stdout.split()
    assert answer == "42"
    assert int(pid) != int(here[0])  # it ran on another process: the child server ...
    assert executable == installed.python and agentnb_file.startswith(installed.site_packages)  # ... of the venv


def test_the_quickstart_notebook_of_the_sdist_runs_on_the_installed_package(
        installed: Venv, dists: Dists, tmp_path: pathlib.Path, elsewhere: pathlib.Path) -> None:
    """As a user who downloaded the sdist opens its first notebook: a daemon, widgets, the speed-up."""
    with tarfile.open(dists.sdist) as sdist:
        [member] = [m for m in sdist.getmembers() if m.name.endswith("/notebooks/quickstart.ipynb")]
        nb = nbformat.read(sdist.extractfile(member), as_version=4)
    manager = venv_kernel_manager(installed, tmp_path)
    client = NotebookClient(nb, km=manager, timeout=120, resources={"metadata": {"path": str(elsewhere)}})
    try:
        client.execute(env=installed.env())  # raises the first cell that fails
    finally:
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
    sequential = float(re.search(r"without distributed mode: ([\d.]+) s", text).group(1))
    distributed = float(re.search(r"with distributed mode: ([\d.]+) s", text).group(1))
    assert distributed < 0.6 * sequential, text
    assert "10 answers: 10/10 done" in text, text
    widgets = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
               if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
    assert len(widgets) == 2, "the AsyncResult and the progress bar are live widgets"
    assert not [record.name for record in iter_records()], "the notebook's daemon was left running"
