"""End to end in a real browser: notebooks/progress.ipynb run in JupyterLab shows its bar filling to
50/50 (red: calls failed), the timeline of the calls, and a failed call's traceback as a local one.

JupyterLab serves a copy of the notebook on 127.0.0.1; Debian's headless
chromium, driven by Playwright, opens it, runs every cell from the Run menu as
a user would, and watches the rendered ipywidgets (not their text repr) until
the progress bar reads 50/50 with its failed count, the timeline is drawn, and
the last cell shows the agent's error at its line of the cell. The notebook, as
the browser ran it, is then saved and read back to check that no other cell
raised. Screenshots are kept in tests/artifacts/ (their paths are printed): the
page, the progress bar, the timeline and the traceback.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and the test extra
(``jupyterlab``, ``playwright``); see browser_fixtures for when it skips.
"""

from __future__ import annotations

import contextlib
import pathlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import browser_fixtures
import nbformat
import pytest
from helpers_runtime import REPO, wait_for

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip the test (fail it under CI), naming what is missing
    pass
if TYPE_CHECKING:
    from playwright.sync_api import Page

NOTEBOOK = pathlib.Path(REPO, "notebooks", "progress.ipynb")
TOTAL = 50  # the notebook's fan-out: study(i) for i in range(50) ...
FAILED = 7  # ... which raises for i % 7 == 6
RUN_TIMEOUT_MS = 120_000  # the whole notebook, on a loaded 2-core machine
SAVE_TIMEOUT = 30.0
KERNEL_START_TIMEOUT_MS = 90_000

# The visible notebook (JupyterLab keeps hidden panels in the page too).
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
PROGRESS = f"{PANEL} .jupyter-widgets.agentnb-progress"  # the class is on widget views only, never in a text repr
RESULT = f"{PANEL} .jupyter-widgets.agentnb-result"
TIMELINE = f"{PANEL} .jupyter-widgets.agentnb-timeline"
# The notebook's last cell raises on purpose (a failed call's value); its traceback is this output.
FAILING_CELL_SOURCE = "results[6].result()"
STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
EXPECTED_ERROR = "ValueError: topic 6 is out of my depth"
# True once no code cell is queued or running ([*]) in the visible notebook.
NO_CELL_RUNNING_JS = f"""() => {{
  const prompts = [...document.querySelectorAll('{PANEL} .jp-CodeCell .jp-InputPrompt')];
  return prompts.length > 0 && prompts.every(p => !p.textContent.includes('*'));
}}"""
# True once the progress widget's bar (an IntProgress) is drawn filled across its track.
BAR_FULL_JS = f"""() => {{
  const bar = document.querySelector('{PROGRESS} .progress-bar');
  const track = document.querySelector('{PROGRESS} .progress');
  return !!bar && !!track && track.getBoundingClientRect().width > 0
    && bar.getBoundingClientRect().width >= 0.99 * track.getBoundingClientRect().width;
}}"""


def open_notebook(page: Page, lab: browser_fixtures.JupyterLab, name: str) -> None:
    """Open notebook ``name`` and wait until its kernel has started and is idle."""
    page.goto(lab.notebook_url(name))
    # Cells run before the kernel is there are dropped. The status bar tells
    # (the toolbar's indicator says "idle" while there is no kernel yet).
    kernel_status = page.locator(f"#jp-main-statusbar [title='Change kernel for {name}']")
    expect(kernel_status).to_have_text(re.compile(r"\| Idle$"), timeout=KERNEL_START_TIMEOUT_MS)


def click_menu(page: Page, menu: str, item: str) -> None:
    """Choose ``menu`` > ``item`` in JupyterLab's menu bar."""
    page.get_by_role("menuitem", name=menu, exact=True).click()
    # By the label alone: an item's accessible name also holds its shortcut.
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")).click()


@contextlib.contextmanager
def awaiting(what: str) -> Iterator[None]:
    """Turn a Playwright time-out inside the block into a test failure naming what was awaited."""
    try:
        yield
    except PlaywrightTimeout as error:
        raise AssertionError(f"timed out waiting for {what}: {error}") from error


def saved_notebook(page: Page, path: pathlib.Path) -> nbformat.NotebookNode:
    """Save the open notebook from the File menu; the saved file, once it holds this run's outputs."""
    before = path.stat().st_mtime_ns
    click_menu(page, "File", "Save Notebook")
    wait_for(lambda: path.stat().st_mtime_ns != before, SAVE_TIMEOUT,
                               f"JupyterLab to save {path.name}")
    return wait_for(lambda: _read_if_complete(path), SAVE_TIMEOUT,
                                      f"a complete save of {path.name}")


def _read_if_complete(path: pathlib.Path) -> nbformat.NotebookNode | None:
    try:
        return nbformat.read(path, as_version=4)
    except ValueError:  # caught mid-write
        return None


def cell_errors(nb: nbformat.NotebookNode) -> list[str]:
    """``ename: evalue`` of every error output in ``nb``."""
    return [f"{out.ename}: {out.evalue}" for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.output_type == "error"]


def unexecuted_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Indexes of the code cells of ``nb`` that did not run."""
    return [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.execution_count is None]


@pytest.mark.timeout(240)
def test_progress_notebook_fills_its_bar_in_jupyterlab(jupyterlab: browser_fixtures.JupyterLab,
                                                       browser_page: Page) -> None:
    page = browser_page
    assert NOTEBOOK.exists(), f"{NOTEBOOK} is missing"
    name = browser_fixtures.copy_notebook(NOTEBOOK, jupyterlab)
    progress = page.locator(PROGRESS)
    try:
        open_notebook(page, jupyterlab, name)
        click_menu(page, "Run", "Run All Cells")
        with awaiting("the progress widget to render"):
            progress.wait_for(timeout=RUN_TIMEOUT_MS)
        expect(progress).to_contain_text(re.compile(rf"\b{TOTAL}/{TOTAL}\b"), timeout=RUN_TIMEOUT_MS)
        expect(progress).to_contain_text(re.compile(rf"\b{FAILED} failed\b"))
        with awaiting("the progress bar to be drawn full"):
            page.wait_for_function(BAR_FULL_JS, timeout=RUN_TIMEOUT_MS)
        # Failures show as they happen: the bar is red, not the blue of a run going well.
        expect(progress.locator(".progress-bar")).to_have_class(re.compile(r"progress-bar-danger"))
        expect(progress).to_contain_text("100%")
        expect(page.locator(RESULT).first).to_contain_text("done")
        with awaiting("every cell to finish"):
            page.wait_for_function(NO_CELL_RUNNING_JS, timeout=RUN_TIMEOUT_MS)
        timeline = page.locator(TIMELINE)
        expect(timeline).to_be_visible()
        expect(timeline.locator("svg")).to_contain_text("R4")  # one row per researcher
        assert timeline.locator("svg rect").count() >= 50, "a bar per call"
        failing_cell = page.locator(f"{PANEL} .jp-CodeCell").filter(has_text=FAILING_CELL_SOURCE)
        traceback = failing_cell.locator(STDERR)
        expect(traceback).to_contain_text(EXPECTED_ERROR, timeout=RUN_TIMEOUT_MS)
        expect(traceback).to_contain_text(re.compile(r"Cell In\[\d+\], line \d+, in study"))
        expect(traceback).to_contain_text('raise ValueError(f"topic {topic} is out of my depth")')
        expect(traceback).not_to_contain_text("rpc_object")
    except BaseException:
        browser_fixtures.keep_screenshot(page, "browser_e2e_progress_failed", best_effort=True)
        raise
    progress.scroll_into_view_if_needed()
    browser_fixtures.keep_screenshot(page, "browser_e2e_page")
    browser_fixtures.keep_screenshot(progress, "browser_e2e_progress")
    browser_fixtures.keep_screenshot(timeline, "browser_e2e_timeline")
    browser_fixtures.keep_screenshot(failing_cell, "browser_e2e_traceback")

    nb = saved_notebook(page, jupyterlab.root / name)
    assert cell_errors(nb) == [EXPECTED_ERROR], f"cells raised in the browser run: {cell_errors(nb)}"
    assert not unexecuted_cells(nb), f"code cells that did not run: {unexecuted_cells(nb)}"
