"""The suite's one summary line, and skips under CI (a pytest plugin, registered in conftest.py).

Every test skips only for want of something on the machine (redis-server, chromium, root, ...).
So a run ends with one line that says how it went and what it skipped, grouped by reason::

    agentnb: 305 passed; skipped 3: 2 in test_redis_pool.py (no redis-server: ...); 1 in test_browser_e2e.py (...)

and under ``CI=true``, where everything the tests need is installed (``make test`` as root), a skip
is a failure that names what was missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

FILES_SHOWN = 3  # test files named per reason; more are counted


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason a skipped report gives, without pytest's ``Skipped: `` prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _fail_if_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and under_ci() and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (f"skipped under CI=true, where every test must run: {skip_reason(report)} "
                           "(make test installs what the tests need: tests/system_requirements.py)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    _fail_if_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    report = yield
    _fail_if_ci(report)
    return report


def summary_line(stats: dict[str, list]) -> str:
    """``agentnb: N passed[, N failed][, N errors]; skipped N: ...`` or ``...; nothing skipped``."""
    counts = {what: len(stats.get(what, [])) for what in ("passed", "failed", "error", "xfailed", "xpassed")}
    outcome = ", ".join(f"{n} {what}{'s' if what == 'error' and n > 1 else ''}" for what, n in counts.items()
                        if n or what == "passed")
    skipped = [r for r in stats.get("skipped", []) if not hasattr(r, "wasxfail")]
    if not skipped:
        return f"agentnb: {outcome}; nothing skipped"
    by_reason: dict[str, list[str]] = {}
    for report in skipped:
        by_reason.setdefault(skip_reason(report), []).append(report.nodeid.split("::")[0].rsplit("/", 1)[-1])
    groups = []
    for reason, files in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        names = list(dict.fromkeys(files))
        shown = ", ".join(names[:FILES_SHOWN]) + (f" and {len(names) - FILES_SHOWN} more" if len(names) > FILES_SHOWN
                                                  else "")
        groups.append(f"{len(files)} in {shown} ({reason})")
    return f"agentnb: {outcome}; skipped {len(skipped)}: " + "; ".join(groups)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    terminalreporter.write_line(summary_line(terminalreporter.stats))
