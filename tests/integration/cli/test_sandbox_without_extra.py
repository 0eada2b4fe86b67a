"""`derms-bridge sandbox` where the sandbox extra is not installed names the extra to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The runtime install as `pip install derms-bridge` leaves it: the extra's packages absent.
WITHOUT_THE_EXTRA = """
import sys
for package in ("aiosmtpd", "pyftpdlib", "oci"):
    sys.modules[package] = None
sys.argv = ["derms-bridge", "sandbox"]
from derms_bridge.cli import main
main()
"""


def test_the_sandbox_without_its_extra_names_the_extra_and_shows_no_traceback(
    tmp_path: Path,
) -> None:
    done = subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-c", WITHOUT_THE_EXTRA],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "the sandbox needs" in done.stderr
    assert "pip install 'derms-bridge[sandbox]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "var").exists()
