"""Figures, and how they are shown: the table, the JSON file, the comparison.

A :class:`Metric` holds every repetition of one figure (and of the same work
on the floor server, when there is such work); the table shows median, min
and max of each, the ratio of the medians, and the target of issue 7.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = 1


@dataclass(frozen=True)
class Target:
    """A goal of issue 7: ``value`` compared with ``op`` to the median or to the floor ratio."""

    op: str  # "<", "<=" or ">="
    value: float
    basis: str = "value"  # "value" (the median, in the metric's unit) or "ratio" (median / floor median)

    def met(self, median: float | None, ratio: float | None) -> bool | None:
        """Whether the figure meets the goal (None when it cannot be told)."""
        subject = ratio if self.basis == "ratio" else median
        if subject is None:
            return None
        if self.op == "<":
            return subject < self.value
        if self.op == "<=":
            return subject <= self.value
        return subject >= self.value

    def describe(self, unit: str) -> str:
        suffix = "x floor" if self.basis == "ratio" else f" {unit}"
        return f"{self.op} {self.value:g}{suffix}"


@dataclass
class Metric:
    """One figure of a workload, over its repetitions."""

    key: str  # "W3.p50": workload and figure, stable across runs (the comparison joins on it)
    label: str
    unit: str
    better: str  # "lower" or "higher"
    values: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    has_floor: bool = False
    target: Target | None = None
    note: str = ""
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def floor_median(self) -> float | None:
        return statistics.median(self.floor) if self.floor else None

    @property
    def ratio(self) -> float | None:
        """agentnb's median over the floor's (> 1 is slower for a time, faster for a rate)."""
        median, floor = self.median, self.floor_median
        if median is None or not floor:
            return None
        return median / floor

    def fail(self, reason: str) -> None:
        """Record why the figure is missing or incomplete (the first reason is kept)."""
        if self.error is None:
            self.error = reason

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = asdict(self.target) if self.target else None
        data.update(median=self.median, min=min(self.values, default=None), max=max(self.values, default=None),
                    floor_median=self.floor_median, ratio=self.ratio,
                    target_met=self.target.met(self.median, self.ratio) if self.target else None)
        return data


def machine_info() -> dict[str, Any]:
    """What a figure depends on besides agentnb: the machine and the versions."""
    import cloudpickle
    import grpc

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "grpcio": grpc.__version__,
        "cloudpickle": cloudpickle.__version__,
        "loadavg_at_start": load,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def fmt(value: float | None) -> str:
    """A figure with as many digits as it deserves."""
    if value is None:
        return "-"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}-{fmt(max(values))}]"


def _render(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(out)


def table(metrics: list[Metric]) -> str:
    """The benchmark table: one row per figure, median [min-max] of the repetitions."""
    header = ["id", "figure", "agentnb median [min-max]", "floor median [min-max]", "ratio", "target", "met", "n"]
    rows = []
    for m in metrics:
        ratio = m.ratio
        met = m.target.met(m.median, ratio) if m.target else None
        if m.error is not None and not m.values:
            agentnb = f"FAILED: {m.error}"
        else:
            agentnb = _spread(m.values)
            if m.error is not None:
                agentnb += f" (FAILED after {len(m.values)}: {m.error})"
        rows.append([
            m.key,
            f"{m.label} ({m.unit})" + (f" [{m.note}]" if m.note else ""),
            agentnb,
            _spread(m.floor) if m.has_floor else "",
            f"{ratio:.2f}x" if ratio is not None else "",
            m.target.describe(m.unit) if m.target else "",
            {True: "yes", False: "NO", None: ""}[met] if m.target else "",
            str(len(m.values)),
        ])
    return _render(header, rows)


# The figures issue 2 asks for, taken from the workloads that measure them.
ISSUE2_FIGURES = [
    ("W1.start", "child-mode start, 5 agents (seed: 12.9 s)"),
    ("W2.create", "create 100 agents on a running server, per agent"),
    ("W3.p50", "sync no-op call latency p50"),
    ("W3.p99", "sync no-op call latency p99"),
    ("W4.rate", "async calls per second from 4 agents"),
]


def issue2_table(metrics: list[Metric]) -> str:
    """The figures of issue 2 (medians of the same runs)."""
    by_key = {m.key: m for m in metrics}
    rows = []
    for key, label in ISSUE2_FIGURES:
        m = by_key.get(key)
        if m is None:
            continue
        value = f"FAILED: {m.error}" if m.median is None else f"{fmt(m.median)} {m.unit}"
        rows.append([label + (f" [{m.note}]" if m.note else ""), value])
    return _render(["issue 2 figure", "median"], rows)


def results_json(metrics: list[Metric], settings: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    """Everything a later run needs to compare itself with this one."""
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m agentnb.bench", *argv]),
        "machine": machine_info(),
        "settings": settings,
        "metrics": [m.to_json() for m in metrics],
    }


def write_json(data: dict[str, Any], path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as out:
        json.dump(data, out, indent=2)
        out.write("\n")


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The change of every figure from ``old`` to ``new`` (both as written by :func:`results_json`)."""
    lines = []
    old_machine, new_machine = old.get("machine", {}), new.get("machine", {})
    for key in ("cpu_count", "python", "grpcio"):
        if old_machine.get(key) != new_machine.get(key):
            lines.append(f"note: {key} differs: {old_machine.get(key)} then, {new_machine.get(key)} now")
    if old.get("settings", {}).get("quick") != new.get("settings", {}).get("quick"):
        lines.append("note: one run is --quick and the other is not: sizes and repetitions differ")
    old_by_key = {m["key"]: m for m in old.get("metrics", [])}
    rows = []
    for m in new.get("metrics", []):
        before = old_by_key.get(m["key"])
        if before is None:
            continue
        was, now = before.get("median"), m.get("median")
        change = ""
        if was and now is not None:
            delta = (now - was) / was
            improved = delta < 0 if m["better"] == "lower" else delta > 0
            change = f"{delta:+.0%} ({'better' if improved else 'worse'})" if abs(delta) >= 0.005 else "same"
        ratio_was, ratio_now = before.get("ratio"), m.get("ratio")
        ratios = f"{ratio_was:.2f}x -> {ratio_now:.2f}x" if ratio_was and ratio_now else ""
        rows.append([m["key"], f"{m['label']} ({m['unit']})", fmt(was), fmt(now), change, ratios])
    header = ["id", "figure", f"then ({old.get('created', '?')})", "now", "change", "ratio to floor"]
    lines.append(_render(header, rows))
    return "\n".join(lines)
