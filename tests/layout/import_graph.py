"""The import graph of agentnb and kernel_ext, read from the source (every import that
runs, also those inside functions; not those for type checkers only), and its cycles.

``python tests/layout/import_graph.py`` prints each module with its lines and what it
imports, then the cycles (strongly connected groups of modules).
"""

from __future__ import annotations

import ast
import pathlib
import sys
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("agentnb", "kernel_ext")
GENERATED = "agentnb._proto"


@dataclass
class Module:
    name: str
    path: pathlib.Path
    lines: int
    imports: set[str] = field(default_factory=set)  # modules of this project it imports
    names: list[tuple[str, str, int]] = field(default_factory=list)  # (module, name, line) of `from M import name`
    attributes: list[tuple[str, str, int]] = field(default_factory=list)  # (module, attr, line) of `import M; M.attr`


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(known: set[str], target: str) -> str | None:
    """The project module ``target`` is, or is inside (``agentnb.rpc.x`` of a name ``x``);
    None for a module outside the project or generated (``agentnb._proto``)."""
    if target == GENERATED or target.startswith(GENERATED + "."):
        return None
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def read_modules() -> dict[str, Module]:
    paths = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "_proto" not in p.parts]
    modules = {module_name(p): Module(module_name(p), p, len(p.read_text().splitlines())) for p in paths}
    known = set(modules)
    for module in modules.values():
        tree = ast.parse(module.path.read_text(), str(module.path))
        package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
        bound: dict[str, str] = {}  # local name -> module, for `import agentnb` / `import agentnb.x as y`
        typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                       for inner in ast.walk(node)}  # imports for type checkers run nothing
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _resolve(known, alias.name)
                    if target:
                        module.imports.add(target)
                        bound[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                            alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                     else []))
                for alias in node.names:
                    target = _resolve(known, f"{base}.{alias.name}") or _resolve(known, base)
                    if target:
                        module.imports.add(target)
                        if _resolve(known, base) == base:
                            module.names.append((base, alias.name, node.lineno))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and bound[node.value.id] in known):
                module.attributes.append((bound[node.value.id], node.attr, node.lineno))
        module.imports.discard(module.name)
    return modules


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """The groups of two or more modules that import each other in a loop (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in modules[name].imports:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == name:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for name in sorted(modules):
        if name not in index:
            visit(name)
    return found


def main() -> None:
    modules = read_modules()
    for name in sorted(modules):
        module = modules[name]
        print(f"{name:38} {module.lines:5}  -> {', '.join(sorted(module.imports)) or '-'}")
    groups = cycles(modules)
    print(f"\n{len(modules)} modules, {sum(m.lines for m in modules.values())} lines; {len(groups)} cycle(s)")
    for group in groups:
        print(f"  cycle of {len(group)}: {', '.join(group)}")


if __name__ == "__main__":
    main()
