"""Every notebook in notebooks/ runs from top to bottom in a real kernel (nbclient).

The kernel inherits the test's environment, so its daemons are recorded in the
test's own runtime directory and the reaper stops whatever a notebook leaves.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable

import nbformat
import pytest
from helpers_runtime import REPO
from nbclient import NotebookClient

from agentnb.runtime_dir import iter_records

NOTEBOOKS = sorted(pathlib.Path(REPO, "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 180


def stream_text(nb: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []) if out.output_type == "stream")


def check_quickstart(nb: nbformat.NotebookNode) -> None:
    """The seed's promise, with a wide margin: distributed takes well under the sequential time."""
    text = stream_text(nb)
    sequential = float(re.search(r"without distributed mode: ([\d.]+) s", text).group(1))
    distributed = float(re.search(r"with distributed mode: ([\d.]+) s", text).group(1))
    assert distributed < 0.6 * sequential, text
    assert text.count("Answer from W") == 10
    assert "agentnb: Picky was not created" in text and "first use raised: P cannot crawl" in text, text


def check_daemons(nb: nbformat.NotebookNode) -> None:
    text = stream_text(nb)
    assert "state kept: 16" in text and "still counting: 20" in text, text


def widget_texts(nb: nbformat.NotebookNode, model_name: str) -> list[str]:
    """The ``value`` of every widget model ``model_name`` in the state nbclient saved."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return [m["state"].get("value", "") for m in state.values() if m["model_name"] == model_name]


def check_progress(nb: nbformat.NotebookNode) -> None:
    """The fan-out finished with its failures counted, in the text and in the saved bars."""
    text = stream_text(nb)
    assert "43 answers, 7 failures" in text and "out of my depth" in text, text
    assert "done ['submitted', 'queued', 'running', 'done']" in text, text
    labels = widget_texts(nb, "HTMLModel")
    assert sum(label.startswith("50/50 done, 7 failed") for label in labels) == 1, labels  # one bar, full


CHECKS: dict[str, Callable[[nbformat.NotebookNode], None]] = {
    "quickstart": check_quickstart,
    "daemons": check_daemons,
    "progress": check_progress,
}


def test_there_are_notebooks() -> None:
    assert {"quickstart", "daemons", "progress"} <= {path.stem for path in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs(path: pathlib.Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    check = CHECKS.get(path.stem)
    if check is not None:
        check(nb)
    left = [record.name for record in iter_records()]
    assert not left, f"{path.name} left agent servers running: {left}"
