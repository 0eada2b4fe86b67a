"""`derms-bridge sandbox --demo` as a user runs it: a short day through a real sandbox process,
its summary read from its output."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_sandbox_process import (
    STARTUP_SECONDS,
    Output,
    console_script,
    listens,
    start_demo,
)
from tests.ports import ports_to_bind

#: Start-up, then the short day itself (about 30 s on an idle machine).
DEMO_SECONDS = STARTUP_SECONDS + 240.0
SEED = 7
SCALE = 0.02


def test_a_short_demo_day_loses_nothing_and_recovers_from_the_cpmcs_outage(
    tmp_path: Path,
) -> None:
    port = ports_to_bind(6)
    process = start_demo(tmp_path, port, seed=SEED, scale=str(SCALE))
    assert process.stdout is not None
    assert process.stderr is not None
    stdout, stderr = Output(), Output()
    readers = [stdout.follow(process.stdout), stderr.follow(process.stderr)]
    try:
        code = process.wait(timeout=DEMO_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the demo still ran after {DEMO_SECONDS} s\nstdout:\n{stdout.text}")
    finally:
        process.wait(timeout=10)
        for reader in readers:
            reader.join(timeout=5)
    output = stdout.text
    described = f"stdout:\n{output}\nstderr:\n{stderr.text}"

    assert code == 0, described
    assert "demo: nothing lost" in output, described
    checks = re.findall(r"^(ok  |LOST) ([^:]+):", output, flags=re.MULTILINE)
    assert checks, described
    assert [what for mark, what in checks if mark != "ok  "] == [], described
    summary = output[output.index("demo summary") :]
    # The day's traffic is the seed's: the reservation and outcome files of 2,000 devices went
    # whole to CPMCS, the outcomes only once CPMCS was back.
    assert "ok   reservation file: 2,000 rows sent, 2,000 devices reserved in CPMCS" in summary
    assert "ok   outcome file: 2,000 rows sent, 2,000 device outcomes in CPMCS" in summary
    recovered = re.search(
        r"^ok   CPMCS outage recovered: OUT-0007-1 delivered \d+ times by DERMS: "
        r"FAILURE( FAILURE)* SUCCESS$",
        summary,
        flags=re.MULTILINE,
    )
    assert recovered, described
    assert "Event Device Outcome complete: SUCCESS" in summary
    assert re.search(r"^ok   device score files \(FTP\): (\d+) waiting, \1 received", summary, re.M)
    # The demo stopped the sandbox behind it.
    for offset in range(6):
        assert not listens(port + offset), offset


def test_a_seed_without_the_demo_is_refused_by_name(tmp_path: Path) -> None:
    refused = subprocess.run(  # noqa: S603
        [str(console_script()), "sandbox", "--seed", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )

    assert refused.returncode == 2, refused.stderr
    assert "--seed and --demo-scale go with --demo" in refused.stderr
    # Nothing was started, so nothing was written.
    assert not (tmp_path / "var").exists()
