"""bench/store_scale.py at a tiny size on SQLite, as an operator runs it: it fills, measures
each page and query, purges the oldest day beside a trigger load, reports against the
targets, and removes what it made. No figure is asserted: the machine is shared."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
MEASURES = (
    "dashboard 1 h",
    "dashboard 7 d",
    "search: business key (enrollmentId)",
    "search: flow + failed + 24 h window",
    "instances, no filter, offset 100,000",
    "instances, no filter, by cursor",
    "instance page (a file's)",
    "bulk resubmit selection: 7 d",
    "storage page",
    "/metrics scrape",
    "purge of the oldest day",
)


def test_the_bench_fills_measures_reports_and_cleans_up(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "bench/store_scale.py",
            "--backend",
            "sqlite",
            "--instances",
            "3000",
            "--samples",
            "1",
            "--baseline-seconds",
            "0.5",
            "--trigger-rate",
            "10",
        ],
        cwd=REPOSITORY,
        env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    report = done.stdout
    assert [measure for measure in MEASURES if measure not in report] == []
    assert "p50 / p95 (target p95 <= 300 ms)" in report
    assert report.count("PASS") + report.count("MISS") >= len(MEASURES)
    assert list(tmp_path.iterdir()) == []
