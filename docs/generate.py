"""The pages of the site that are made from the repository at each build, so that they never drift.

- The README's ``##`` sections become the guide pages (``guides/``), in the README's order; its
  title, introduction and first section (the set-up commands) open the index page.
- The API reference (``api/``) documents every name of ``agentnb.__all__``, grouped by the part
  of the package it comes from (the groups are the one thing written here by hand).
- The notebooks of ``notebooks/`` are copied beside the pages (rendered, not executed).
- ``CHANGELOG.md``, when the repository has one, becomes the changelog page.

``conf.py`` calls :func:`write_pages` before Sphinx reads the sources; the test of the site calls
the same functions to know which pages to expect. Everything written here is ignored by git.
A file is rewritten only when its text changes, so that Sphinx rebuilds only what changed.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent

# Where each group of the API reference comes from: a name of ``agentnb.__all__`` belongs to the
# first group with a module prefix of the module that defines it (or "Other", so that a new
# public name is never left out of the reference).
API_GROUPS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("agents", "Agents and proxies",
     "The agent base class and message, the metaclass that gives any class ``to_dist()``, the "
     "method markers, the proxy of a distributed object, and where new objects go.",
     ("agentnb.agents", "agentnb.message", "agentnb.rpc.rpc_meta", "agentnb.rpc.methods",
      "agentnb.rpc.rpc_object", "agentnb.rpc.creations", "agentnb.rpc.placement")),
    ("results", "Results, progress and timelines",
     "What an asynchronous call returns, how to wait for many, and how to watch them.",
     ("agentnb.rpc.async_result", "agentnb.progress", "agentnb.timeline", "agentnb.wire.states")),
    ("servers", "Servers",
     "Starting, finding, using and stopping agent servers: daemons, pools and the launcher.",
     ("agentnb.cluster", "agentnb.launch", "agentnb.rpc.server_pool", "agentnb.runtime_dir",
      "agentnb.server")),
    ("models", "Models and configuration",
     "``agentnb.init`` and the model wrappers (the ``models`` extra).",
     ("agentnb.config", "agentnb.models")),
    ("errors", "Errors",
     "Every error agentnb raises derives from :class:`agentnb.AgentnbError`.",
     ("agentnb.errors",)),
    ("notebook", "Notebook extension and version",
     "``%load_ext agentnb`` and the package's version.",
     ("agentnb",)),
]
OTHER_GROUP = ("other", "Other", "Public names of no group above.", ())
# Public constants are described by a ``#:`` comment where they are assigned; these need none.
STANDARD_DESCRIPTIONS = {"__version__": "This agentnb's version."}


@dataclass(frozen=True)
class Guide:
    """One ``##`` section of the README, as a page."""

    slug: str
    title: str
    text: str  # the page's Markdown: its title as ``#``, the section's headings one level up


@dataclass(frozen=True)
class ApiEntry:
    """One public name: where it is defined and how autodoc documents it."""

    name: str
    module: str  # the module that defines it (not ``agentnb``, which re-exports it)
    kind: str  # "function", "class", "exception" or "data"
    comment: str  # a constant's ``#:`` comment in its module ("" for the others)
    value: str  # a constant's repr, when it says what the value is ("" for the others)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _split_sections(markdown: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """The text before the first ``##`` heading, and each ``##`` section as (title, its lines)."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    fence = None
    for line in markdown.splitlines():
        opening = re.match(r"\s*(```|~~~)", line)
        if opening:
            fence = None if fence == opening.group(1) else (fence or opening.group(1))
        heading = None if fence else re.match(r"## (.+)", line)
        if heading:
            sections.append((heading.group(1).strip(), []))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return "\n".join(preamble), sections


def _raise_headings(lines: list[str]) -> str:
    """``### x`` becomes ``## x`` (outside code blocks): the section's title is the page's ``#``."""
    out, fence = [], None
    for line in lines:
        opening = re.match(r"\s*(```|~~~)", line)
        if opening:
            fence = None if fence == opening.group(1) else (fence or opening.group(1))
        out.append(line[1:] if not fence and re.match(r"###+ ", line) else line)
    return "\n".join(out).strip() + "\n"


def readme_intro(readme: Path = REPO / "README.md") -> str:
    """The README up to its second ``##`` section: title, introduction and the set-up commands."""
    preamble, sections = _split_sections(readme.read_text())
    title, lines = sections[0]
    return f"{preamble.rstrip()}\n\n## {title}\n" + "\n".join(lines).rstrip() + "\n"


def readme_guides(readme: Path = REPO / "README.md") -> list[Guide]:
    """Every ``##`` section of the README after the first, one page each, in the README's order."""
    _, sections = _split_sections(readme.read_text())
    return [Guide(_slug(title), title, f"# {title}\n\n" + _raise_headings(lines)) for title, lines in sections[1:]]


def notebooks() -> list[Path]:
    """The notebooks of ``notebooks/`` (each becomes the page ``notebooks/<stem>``)."""
    return sorted((REPO / "notebooks").glob("*.ipynb"))


def _defining_module(name: str, module: str) -> str:
    """Follow ``from x import name`` from ``module`` to the module that assigns ``name``."""
    path = REPO / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = path.with_suffix("") / "__init__.py"
    if not path.exists():
        return module
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and any(a.name == name for a in node.names):
            return _defining_module(name, node.module)
    return module


def _public_origins() -> dict[str, str]:
    """Each name of ``agentnb.__all__`` and the module ``agentnb/__init__.py`` takes it from."""
    tree = ast.parse((REPO / "agentnb" / "__init__.py").read_text())
    origins: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agentnb"):
            origins.update((alias.asname or alias.name, node.module) for alias in node.names)
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            origins.update(ast.literal_eval(node.value))
    return origins


def _attribute_comment(module: str, name: str) -> str:
    from sphinx.pycode import ModuleAnalyzer

    docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    return "\n".join(docs.get(("", name), [])).strip()


def api_entries() -> list[ApiEntry]:
    """Every name of ``agentnb.__all__``, with its defining module and kind."""
    import inspect

    import agentnb

    origins = _public_origins()
    entries = []
    for name in agentnb.__all__:
        value = getattr(agentnb, name)
        module = _defining_module(name, origins.get(name, "agentnb"))
        if inspect.isclass(value):
            kind = "exception" if issubclass(value, BaseException) else "class"
        elif inspect.isfunction(value):
            kind = "function"
        else:
            kind = "data"
        data = kind == "data"
        shown = repr(value) if data and type(value) in (str, int, float, tuple, frozenset, dict) else ""
        comment = (_attribute_comment(module, name) or STANDARD_DESCRIPTIONS.get(name, "")) if data else ""
        entries.append(ApiEntry(name, module, kind, comment, shown))
    return entries


def api_groups(entries: list[ApiEntry]) -> list[tuple[tuple[str, str, str, tuple[str, ...]], list[ApiEntry]]]:
    """The entries by group (groups with no entry left out), functions then classes then data."""
    order = {"function": 0, "class": 1, "exception": 2, "data": 3}
    grouped: dict[str, list[ApiEntry]] = {}
    for entry in entries:
        group = next((g for g in API_GROUPS if any(entry.module == p or entry.module.startswith(p + ".")
                                                   for p in g[3])), OTHER_GROUP)
        grouped.setdefault(group[0], []).append(entry)
    return [(group, sorted(grouped[group[0]], key=lambda e: (order[e.kind], e.name.lower())))
            for group in [*API_GROUPS, OTHER_GROUP] if group[0] in grouped]


def _api_page(group: tuple[str, str, str, tuple[str, ...]], entries: list[ApiEntry]) -> str:
    _, title, about, _ = group
    lines = [title, "=" * len(title), "", about, "", ".. currentmodule:: agentnb", ""]
    for entry in entries:
        if entry.kind == "function":
            lines += [f".. autofunction:: agentnb.{entry.name}", ""]
        elif entry.kind in ("class", "exception"):
            lines += [f".. autoclass:: agentnb.{entry.name}", "   :members:"]
            lines += ["   :show-inheritance:", ""] if entry.kind == "exception" else [""]
        else:
            # A constant: its description is the ``#:`` comment where it is assigned (autodoc would
            # look in ``agentnb/__init__.py``, which only imports it, and fall back to the
            # docstring of its type), and its value when that reads as one.
            lines += [f".. py:data:: {entry.name}"]
            lines += [f"   :value: {entry.value}"] if entry.value else []
            lines += [""] + ["   " + line for line in entry.comment.splitlines()] + [""]
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def _remove_others(folder: Path, keep: set[str]) -> None:
    """Pages of sections, notebooks or groups that no longer exist go (their files were generated)."""
    for path in folder.glob("*"):
        if path.is_file() and path.name not in keep:
            path.unlink()


def write_pages() -> None:
    """Write every generated page under ``docs/``."""
    _write(DOCS / "_generated" / "readme_intro.md", readme_intro())

    guides = readme_guides()
    for guide in guides:
        _write(DOCS / "guides" / f"{guide.slug}.md", guide.text)
    guide_toc = "\n".join(f"guides/{g.slug}" for g in guides)

    groups = api_groups(api_entries())
    for group, entries in groups:
        _write(DOCS / "api" / f"{group[0]}.rst", _api_page(group, entries))
    _write(DOCS / "api" / "index.rst", "\n".join([
        "API reference", "=============", "",
        "Every public name of agentnb (``agentnb.__all__``), from its docstring. Import them from",
        "the package itself: ``from agentnb import AgentBase, AsyncResult``.", "",
        ".. toctree::", "   :maxdepth: 2", "", *[f"   {group[0]}" for group, _ in groups], ""]))

    for notebook in notebooks():
        _write_bytes(DOCS / "notebooks" / notebook.name, notebook.read_bytes())

    changelog = REPO / "CHANGELOG.md"
    if changelog.exists():
        _write(DOCS / "changelog.md", "```{include} ../CHANGELOG.md\n```\n")
    elif (DOCS / "changelog.md").exists():
        (DOCS / "changelog.md").unlink()

    # The index's table of contents (included by index.md): the guides in the README's order,
    # then the reference, the notebooks and, if there is one, the changelog.
    _write(DOCS / "_generated" / "contents.md", "\n".join([
        "```{toctree}", ":caption: Guides", ":maxdepth: 1", "", guide_toc, "```", "",
        "```{toctree}", ":caption: Reference", ":maxdepth: 1", "", "api/index", "notebooks",
        *(["changelog"] if changelog.exists() else []), "```", ""]))

    _remove_others(DOCS / "guides", {f"{g.slug}.md" for g in guides})
    _remove_others(DOCS / "api", {"index.rst", *(f"{group[0]}.rst" for group, _ in groups)})
    _remove_others(DOCS / "notebooks", {n.name for n in notebooks()})
