"""Without a timeout, a long call is simply waited for: no hidden deadline."""

from __future__ import annotations

import json

import pytest
from helpers_runtime import LONG_CALL_SECONDS


@pytest.mark.long_call
@pytest.mark.timeout(LONG_CALL_SECONDS + 240)
def test_async_call_of_150_seconds_returns_its_value(long_call):
    # Started when collection finished (see conftest.py), so it mostly overlaps the suite.
    stdout, stderr = long_call.communicate(timeout=LONG_CALL_SECONDS + 180)
    assert long_call.returncode == 0, stderr
    outcome = json.loads(stdout.strip().splitlines()[-1])
    assert outcome["value"] == f"woke after {LONG_CALL_SECONDS} s"
    assert outcome["elapsed"] >= LONG_CALL_SECONDS
