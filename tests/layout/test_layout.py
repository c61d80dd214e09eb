"""The house rules of the layout (README "Layout"), kept by reading every import of the source.

Each package imports only the ones below it: wire (shared by both sides) at the bottom,
then launch (processes), rpc (the client), server; cluster and the package's public API
above them; kernel_ext on top, through the public API only.
"""

from __future__ import annotations

from import_graph import cycles, read_modules

import agentnb

MODULES = read_modules()


def _in(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _imports(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{m.name} imports {target}" for m in MODULES.values() if _in(m.name, *packages)
            for target in sorted(m.imports) if _in(target, *forbidden)]


def test_the_graph_reads_the_real_code() -> None:
    """A check that finds nothing must be able to find something: known edges are seen."""
    assert "agentnb.wire.codec" in MODULES["agentnb.rpc.connection"].imports
    assert "agentnb.wire.handshake" in MODULES["agentnb.server.agent_server"].imports
    assert "agentnb" in MODULES["agentnb.server.servicer"].imports  # `from agentnb import __version__`, in GetInfo
    assert "agentnb.launch.child_servers" in MODULES["agentnb.rpc.placement"].imports  # one inside a function


def test_no_client_shared_or_launching_module_imports_the_server() -> None:
    assert _imports(("agentnb.rpc", "agentnb.wire", "agentnb.launch", "agentnb.cluster", "agentnb.progress"),
                    ("agentnb.server",)) == []


def test_the_wire_package_imports_nothing_above_it() -> None:
    above = ("agentnb.rpc", "agentnb.server", "agentnb.launch", "agentnb.cluster", "agentnb.config",
             "agentnb.progress", "agentnb.agents", "agentnb.models", "kernel_ext")
    assert _imports(("agentnb.wire",), above) == []
    assert [m for m in MODULES if _in(m, "agentnb.wire") and "agentnb" in MODULES[m].imports] == []


def test_launching_never_talks_to_a_server() -> None:
    assert _imports(("agentnb.launch",), ("agentnb.rpc", "agentnb.server", "agentnb.cluster", "kernel_ext")) == []


def test_the_library_does_not_import_the_kernel_extension_beyond_the_hand_over() -> None:
    assert _imports(("agentnb",), ("kernel_ext",)) == ["agentnb imports kernel_ext"]


def test_the_kernel_extension_uses_only_public_names() -> None:
    public = set(agentnb.__all__)
    wrong = []
    for module in MODULES.values():
        if not _in(module.name, "kernel_ext"):
            continue
        wrong += [f"{module.name}: imports {target}" for target in module.imports
                  if _in(target, "agentnb") and target != "agentnb"]
        wrong += [f"{module.name}:{line}: from {base} import {name}" for base, name, line in module.names
                  if base == "agentnb" and name not in public]
        wrong += [f"{module.name}:{line}: {base}.{name}" for base, name, line in module.attributes
                  if base == "agentnb" and name not in public]
    assert wrong == []


def test_the_path_of_a_call_has_no_import_cycle() -> None:
    """From the proxy to the servicer, imports point one way. (The notebook hand-over,
    ``agentnb.load_ipython_extension``, and the model configurations are apart.)"""
    path = ("agentnb.wire", "agentnb.launch", "agentnb.rpc", "agentnb.server", "agentnb.cluster",
            "agentnb.progress", "agentnb.runtime_dir", "agentnb.errors", "agentnb.concurrently")
    assert [group for group in cycles(MODULES) if any(_in(name, *path) for name in group)] == []


def test_every_module_says_what_it_is_for() -> None:
    missing = [m.name for m in MODULES.values()
               if m.path.name != "__main__.py" and not (m.path.read_text().lstrip().startswith(('"""', "'''")))]
    assert missing == []
