"""bench/sqlite_purge_floor.py on a tiny fill of store_scale.py's: each measure on a copy
of its own, reported against the target, the fill left as it was and no copy left behind.
No figure is asserted: the machine is shared."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def bench(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the bench scripts, with the test's own arguments
        [sys.executable, *arguments],
        cwd=REPOSITORY,
        env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_floor_is_measured_on_copies_beside_the_hubs_purge(tmp_path: Path) -> None:
    filled = bench(
        tmp_path,
        "bench/store_scale.py",
        "--backend",
        "sqlite",
        "--instances",
        "3000",
        "--samples",
        "1",
        "--no-purge",
        "--keep",
    )
    assert filled.returncode == 0, filled.stderr
    [database] = tmp_path.glob("store_scale-*/hub.db")
    before = hashlib.sha256(database.read_bytes()).hexdigest()

    done = bench(tmp_path, "bench/sqlite_purge_floor.py", str(database), "--slices", "80")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines[1:5]] == [
        "one transaction",
        "one transaction, log copied",
        "slices of 80",
        "the hub's purge",
    ]
    assert lines[0].startswith("the oldest day")
    assert all(line.rstrip().split("/s  ")[1][:4] in ("PASS", "MISS") for line in lines[1:5])
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    assert sorted(each.name for each in database.parent.iterdir()) == ["hub.db"]


def test_a_file_that_is_not_there_is_named(tmp_path: Path) -> None:
    done = bench(tmp_path, "bench/sqlite_purge_floor.py", str(tmp_path / "none.db"))

    assert done.returncode == 1
    assert f"{tmp_path / 'none.db'} is no file" in done.stderr
