"""Sphinx configuration of agentnb's documentation site (``make docs``; built into ``docs/_build``).

The README's sections, the API reference and the notebooks' pages are generated from the
repository by ``generate.py`` before each build (see there); the pages written by hand are
``index.md`` and ``notebooks.md``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS)]  # agentnb itself, and generate.py

import generate  # noqa: E402

import agentnb  # noqa: E402

_LOGGER = logging.getLogger(__name__)

generate.write_pages()

project = "agentnb"
release = version = agentnb.__version__
copyright = "the agentnb authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings' Args: / Returns: / Raises: sections
    "myst_nb",  # Markdown pages (through myst-parser) and the notebooks
]
exclude_patterns = ["_build", "_generated", "**/.ipynb_checkpoints"]

# The notebooks are shown as they are committed (without outputs): running them needs agent
# servers and takes minutes; the test suite executes each of them (tests/notebooks).
nb_execution_mode = "off"
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"agentnb {release}"


def _property_summary_reads_as_a_type(app, what, name, obj, options, lines) -> None:  # noqa: ANN001
    """Napoleon reads the first line of a property's (or attribute's) docstring as ``type: description`` when it
    has a colon outside code, and shows the words before it as its type. Say so."""
    if what not in ("property", "attribute", "data") or not lines:
        return
    prose = re.sub(r"``.*?``|:\w+:`[^`]*`|`[^`]*`", "", lines[0])
    if re.search(r"(?<!:):(?!:)", prose):
        _LOGGER.warning("%s: the first line of its docstring has a colon outside code, which "
                        "napoleon shows as its type; reword it: %r", name, lines[0])


def setup(app) -> None:  # noqa: ANN001
    app.connect("autodoc-process-docstring", _property_summary_reads_as_a_type, priority=400)  # before napoleon
