"""The benchmark runs and reports every workload (so that it cannot rot).

Only that figures are there is checked, never what they are: timings on a
shared machine are reported, not tested.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from agentnb.bench.report import ISSUE2_FIGURES, compare

WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"]
# Figures measured once a run, not once a repetition (W8 creates its 10,000 participants once).
ONCE = {"W8.create", "W8.moderator"}
FLOOR_FIGURES = {"W3.p50", "W3.p99", "W3.p50_stream", "W3.p99_stream", "W4.rate", "W5.echo64"}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_quick_benchmark_reports_every_workload(tmp_path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "agentnb.bench", "--quick", "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"

    table = run.stdout
    assert "FAILED" not in table, table
    for workload in WORKLOADS:
        assert f"\n{workload}." in table, f"{workload} is missing from the table:\n{table}"
    for _, label in ISSUE2_FIGURES:
        assert label in table, f"issue 2 figure {label!r} is missing:\n{table}"

    data = json.loads(out.read_text())
    machine = data["machine"]
    assert machine["cpu_count"] >= 1 and machine["python"] and machine["grpcio"]
    assert data["settings"]["quick"] is True
    metrics = {m["key"]: m for m in data["metrics"]}
    assert {key.split(".")[0] for key in metrics} == set(WORKLOADS)
    for key, metric in metrics.items():
        assert metric["error"] is None, (key, metric["error"])
        assert len(metric["values"]) >= (1 if key in ONCE else 2 if key in {"W8.rss", "W8.idle"} else 3), key
        assert all(_number(v) for v in metric["values"]), (key, metric["values"])
        assert all(_number(metric[stat]) for stat in ("median", "min", "max")), key
        assert metric["min"] <= metric["median"] <= metric["max"], key
        assert metric["key"] in table, key
    for key in FLOOR_FIGURES:
        assert len(metrics[key]["floor"]) >= 3 and _number(metrics[key]["ratio"]), key

    # A later run compares itself with this one.
    compared = compare(data, json.loads(out.read_text()))
    for key in metrics:
        assert key in compared
    assert "worse" not in compared and "better" not in compared


def test_cluster_start_times_a_local_pool_and_refuses_a_ray_comparison_without_ray(tmp_path) -> None:
    run = subprocess.run([sys.executable, "-m", "agentnb.bench.cluster_start", "--replicas", "2", "--trials", "1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "local 2 replicas: median " in run.stdout and "from start_pool to the first answered call" in run.stdout
    wrong = subprocess.run([sys.executable, "-m", "agentnb.bench.cluster_start", "--plain-actors"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "--plain-actors compares with Ray actors" in wrong.stderr
