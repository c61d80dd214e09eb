"""The documentation site (``make docs``) builds without a warning and has every page it promises:
the README's guides, the notebooks, the changelog if there is one, and every public name.

The site is built once, into a temporary folder, by Sphinx in its own process, as ``make docs``
builds it. It needs the ``docs`` extra: without it the test is skipped, except in CI (``CI=true``),
where ``make test`` installs it and its absence is a failure.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers_runtime import REPO

import agentnb

DOCS = Path(REPO) / "docs"
DOC_TOOLS = ("sphinx", "myst_nb", "furo")


def _load_generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


generate = _load_generate()


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site's folder (the build's warnings, if any, fail here)."""
    missing = [tool for tool in DOC_TOOLS if importlib.util.find_spec(tool) is None]
    if missing:
        message = (f"the docs extra is not installed ({', '.join(missing)} missing): "
                   f"`make docs` or `pip install -e '.[docs]'` installs it")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                            "-d", str(out / ".doctrees"), str(DOCS), str(out / "html")],
                           capture_output=True, text=True, timeout=600)
    problems = [line for line in (build.stdout + build.stderr).splitlines()
                if "WARNING" in line or "ERROR" in line or "CRITICAL" in line]
    assert build.returncode == 0 and problems == [], "\n".join(problems) or build.stderr
    return out / "html"


def test_the_readme_splits_at_its_sections_not_in_code_blocks(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# tool\n\nWhat it is.\n\n## Set up\n\n```bash\nmake run\n```\n\n"
                      "## First guide\n\nText.\n\n```python\n## not a heading in a code block\n```\n\n"
                      "### A part\n\n  ```bash\n  ### nor this, in an indented block\n  ```\n\n"
                      "## Second guide\n\nMore.\n")
    assert generate.readme_intro(readme) == "# tool\n\nWhat it is.\n\n## Set up\n\n```bash\nmake run\n```\n"
    first, second = generate.readme_guides(readme)
    assert (first.slug, first.title, second.slug) == ("first-guide", "First guide", "second-guide")
    assert first.text == ("# First guide\n\nText.\n\n```python\n## not a heading in a code block\n```\n\n"
                          "## A part\n\n  ```bash\n  ### nor this, in an indented block\n  ```\n")
    assert second.text == "# Second guide\n\nMore.\n"


def test_the_index_says_what_agentnb_is_and_gives_the_two_commands(site: Path) -> None:
    index = _text((site / "index.html").read_text())
    assert "Actors for Python agent programs" in index
    assert "make run" in index and "make test" in index


def test_each_readme_guide_is_a_page(site: Path) -> None:
    guides = generate.readme_guides()
    headings = [line[3:].strip() for line in (Path(REPO) / "README.md").read_text().splitlines()
                if line.startswith("## ")]
    assert [g.title for g in guides] == headings[1:]  # every section but the set-up one (the index's)
    index = (site / "index.html").read_text()
    for guide in guides:
        page = site / "guides" / f"{guide.slug}.html"
        assert page.exists(), f"no page for the README's section {guide.title!r}"
        assert re.search(rf"<h1>{re.escape(html.escape(guide.title, quote=False))}", page.read_text())
        assert f'href="guides/{guide.slug}.html"' in index, f"{guide.title!r} is not in the index's contents"


def test_each_notebook_is_a_page_with_its_cells(site: Path) -> None:
    import json

    notebooks = sorted((Path(REPO) / "notebooks").glob("*.ipynb"))
    assert notebooks
    for notebook in notebooks:
        page = site / "notebooks" / f"{notebook.stem}.html"
        assert page.exists(), f"no page for {notebook.name}"
        text = _text(page.read_text())
        cells = json.loads(notebook.read_text())["cells"]
        title = next(line for cell in cells if cell["cell_type"] == "markdown"
                     for line in "".join(cell["source"]).splitlines() if line.startswith("# "))
        code = next("".join(cell["source"]).splitlines()[0] for cell in cells if cell["cell_type"] == "code")
        assert title[2:].strip() in text and code.strip() in text, notebook.name


def test_every_public_name_is_documented_in_the_api_reference(site: Path) -> None:
    pages = "".join(path.read_text() for path in sorted((site / "api").glob("*.html")))
    undocumented = []
    for name in agentnb.__all__:
        entry = re.search(rf'<dt class="sig sig-object py" id="agentnb\.{re.escape(name)}">.*?</dt>\s*<dd>(.*?)</dd>',
                          pages, re.S)
        description = re.sub(r"Bases:.*", "", _text(entry.group(1))).strip() if entry else ""
        if not description:
            undocumented.append(name)
    assert undocumented == [], f"public names missing from the API reference or without a description: {undocumented}"


def test_the_changelog_is_a_page_when_there_is_one(site: Path) -> None:
    if not (Path(REPO) / "CHANGELOG.md").exists():
        assert not (site / "changelog.html").exists()
        pytest.skip("the repository has no CHANGELOG.md")
    assert (site / "changelog.html").exists()
    assert 'href="changelog.html"' in (site / "index.html").read_text()
