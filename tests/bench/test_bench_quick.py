"""The benchmark harness keeps working: its smallest mode, two cases, on SQLite, writes a report
with numbers (the timings themselves are not asserted; they are for `make bench`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_writes_a_report_with_numbers(tmp_path):
    report, results = tmp_path / "BENCHMARKS.md", tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if k != "BENCH_DATABASE_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--repeats", "1", "--only", "rankings", "center",
         "--databases", "sqlite", "--output", str(report), "--json", str(results)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]

    data = json.loads(results.read_text())
    by_case = {r["case"]: r for r in data["results"]}
    assert set(by_case) == {"rankings", "center"}
    for r in by_case.values():
        assert r["status"] == "ok" and r["database"] == "sqlite", r
        assert r["ratio"] > 0 and r["met"] in (True, False)
        assert r["ours"]["statements"] > 0 and r["baseline"]["statements"] > 0
    rankings = by_case["rankings"]
    assert len(rankings["ours"]["seconds"]) == 1 and rankings["ours"]["seconds"][0] > 0
    assert rankings["baseline"]["statements"] == 1  # the one aggregate statement
    assert any("(constant)" in note for note in rankings["notes"])
    assert any("(same)" in note for note in by_case["center"]["notes"])

    text = report.read_text()
    assert "## Machine" in text and "## SQLite (temp file)" in text and "## PostgreSQL" not in text
    assert "| rankings | 200 teams, 4,000 completed matches |" in text
    assert "| center |" in text
