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
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
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
    # A first notebook shows a live result and a progress bar, which its saved state shows full.
    shown = [out.data["text/plain"] for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
             if WIDGET_MIME in out.get("data", {})]
    assert [line.split()[0] for line in shown] == ["<AsyncResult", "<Progress"], shown
    assert "10 answers: 10/10 done" in text, text
    labels = widget_texts(nb, "HTMLModel")
    assert "100%" in labels and any(label.startswith("10/10 done") for label in labels), labels


def check_daemons(nb: nbformat.NotebookNode) -> None:
    text = stream_text(nb)
    assert "state kept: 16" in text and "still counting: 20" in text, text


def check_llm_agents(nb: nbformat.NotebookNode) -> None:
    """Five agents on a daemon ask the notebook's local model at once: each gets the answer to its own
    question, together in about one model call's time; an unknown config is told; no key is shown."""
    text = stream_text(nb)
    source = "".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    answers = re.findall(r"^A(\d): \(tiny-local-model, t=0\.2\) (.+)$", text, re.MULTILINE)
    assert [index for index, _ in answers] == ["0", "1", "2", "3", "4"], text
    assert all(f'"{answer[::-1]}"' in source for _, answer in answers), answers  # the model reverses them
    calls, latency, elapsed = re.search(r"(\d+) model calls of ([\d.]+) s each took ([\d.]+) s in all", text).groups()
    assert float(elapsed) < 0.6 * int(calls) * float(latency), text
    assert "Analyst was not created" in text and "unknown model config 'no-such-model'" in text, text
    assert "sk-local-" not in text, "the API key was shown"


def widget_texts(nb: nbformat.NotebookNode, model_name: str) -> list[str]:
    """The ``value`` of every widget model ``model_name`` in the state nbclient saved, without markup."""
    return [re.sub(r"<[^>]+>", "", value) for value in _widget_values(nb, model_name)]


def check_progress(nb: nbformat.NotebookNode) -> None:
    """The fan-out finished with its failures counted, in the text and in the saved bars; the
    timeline drew every call; the failed call raised last reads as a local error of its cell."""
    text = stream_text(nb)
    assert "43 answers, 7 failures" in text and "out of my depth" in text, text
    assert "done ['submitted', 'queued', 'running', 'done']" in text, text
    labels = widget_texts(nb, "HTMLModel")
    assert sum(label.startswith("50/50 done, 7 failed") for label in labels) == 1, labels  # one bar, full
    assert "'done': 43, 'failed': 7" in text, text  # the timeline's counts
    svgs = [m for m in _widget_values(nb, "HTMLModel") if "<svg" in m]
    assert len(svgs) == 1 and all(f">R{k}<" in svgs[0] for k in range(5)), "one timeline, a row per researcher"
    [error] = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
               if out.output_type == "error"]
    assert (error.ename, error.evalue) == ("ValueError", "topic 6 is out of my depth")
    trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error.traceback))
    assert re.search(r"Cell In\[\d+\], line \d+, in study", trace), trace
    assert 'raise ValueError(f"topic {topic} is out of my depth")' in trace and "rpc_object" not in trace, trace


def _widget_values(nb: nbformat.NotebookNode, model_name: str) -> list[str]:
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return [str(m["state"].get("value", "")) for m in state.values() if m["model_name"] == model_name]


def check_on_a_cluster(nb: nbformat.NotebookNode) -> None:
    """The web agents on a Ray pool of one server per node: well under the sequential time, and
    the agents on both nodes of the test cluster."""
    text = stream_text(nb)
    sequential = float(re.search(r"without distributed mode: ([\d.]+) s", text).group(1))
    distributed = float(re.search(r"with distributed mode: ([\d.]+) s", text).group(1))
    assert distributed < 0.6 * sequential, text
    assert text.count("Answer from page_") == 10, text
    assert "agents on 2 nodes" in text, text
    assert re.search(r"web-0 at \S+ on .*\(ray actor agentnb-web-0\): \['W", text), text


CHECKS: dict[str, Callable[[nbformat.NotebookNode], None]] = {
    "quickstart": check_quickstart,
    "daemons": check_daemons,
    "llm_agents": check_llm_agents,
    "progress": check_progress,
    "on_a_cluster": check_on_a_cluster,
}
# Notebooks that need an engine: the session fixture that starts it, and how the notebook is told
# where it is (an environment variable the kernel inherits).
ENGINES = {"on_a_cluster": "ray_cluster"}


def test_every_notebook_is_checked_and_stored_ready_to_run() -> None:
    """Each notebook has a check of what it printed (none runs unverified, none checked is missing),
    and is stored as a user opens it: valid nbformat 4, the python3 kernel, no outputs, the extension
    loaded by its first code cell."""
    assert sorted(path.stem for path in NOTEBOOKS) == sorted(CHECKS)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3", path.name
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert code and code[0].source.startswith("%load_ext agentnb"), path.name
        assert all(not cell.outputs and cell.execution_count is None for cell in code), f"{path.name} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs(path: pathlib.Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if path.stem in ENGINES:
        cluster = request.getfixturevalue(ENGINES[path.stem])
        monkeypatch.setenv("AGENTNB_RAY_ADDRESS", cluster.address)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    CHECKS[path.stem](nb)
    left = [record.name for record in iter_records()]
    assert not left, f"{path.name} left agent servers running: {left}"
