"""The HTTP benchmark runs end to end at a tiny size: gunicorn, wrk, both measures, the last line."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_tiny_http_benchmark_prints_the_ratio_line():
    """Both endpoints answer as expected under wrk and the run ends with ratio=... order_rps=... insert_rps=..."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.http", "--households", "40", "--producers", "6", "--products", "30",
         "--duration", "1", "--connections", "2", "--rounds", "3"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    match = re.fullmatch(r"ratio=([\d.]+) order_rps=([\d.]+) insert_rps=([\d.]+)", lines[-1])
    assert match, lines[-1]
    assert float(match.group(2)) > 0 and float(match.group(3)) > 0
    assert "insert: " in result.stdout and "(0 unexpected statuses)" in result.stdout
    assert result.stdout.count("(0 unexpected statuses)") == 6
    rounds = sorted(float(r) for r in re.findall(r"^round: ratio=([\d.]+)$", result.stdout, re.M))
    assert len(rounds) == 3 and float(match.group(1)) == rounds[1]
    cpu = re.findall(r"^server CPU per request: order ([\d.]+) ms, insert ([\d.]+) ms \(cpu_ratio=[\d.]+\)$",
                     result.stdout, re.M)
    assert len(cpu) == 3 and all(float(order) > 0 and float(insert) > 0 for order, insert in cpu)
    assert "# server CPU per request, insert/order, median of 3 rounds: " in result.stdout
