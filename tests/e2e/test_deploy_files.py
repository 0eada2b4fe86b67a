"""deploy/ checked by the tools that will read it: promtool (Debian's prometheus package,
installed by `make test`) for the alert rules, their tests, the dashboard's queries and the
scrape configuration; systemd-analyze for the units."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promql import DEPLOY, RULES, dashboard_expressions, rule_expressions

PROMTOOL = "/usr/bin/promtool"
#: Debian's nginx, which `make test` installs; its package starts no server where the
#: system's policy denies it (a container), and the test starts none either.
NGINX = "/usr/sbin/nginx"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # Fixed tools on the checkout's own files.
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)  # noqa: S603


def test_the_alert_rules_are_valid() -> None:
    checked = run(PROMTOOL, "check", "rules", str(RULES))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in checked.stdout


def test_each_alert_fires_on_its_series_and_stays_quiet_beside_them() -> None:
    tested = run(PROMTOOL, "test", "rules", "tests.yml", cwd=DEPLOY / "prometheus")

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not() -> None:
    tests: list[dict[str, Any]] = yaml.safe_load(
        (DEPLOY / "prometheus" / "tests.yml").read_text(encoding="utf-8")
    )["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]

    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}

    assert fired == set(rule_expressions())
    assert quiet == set(rule_expressions())


def test_the_dashboards_queries_are_promql(tmp_path: Path) -> None:
    # promtool parses an expression only as part of a rule: each query becomes one.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{number}", "expr": expr}
                    for number, expr in enumerate(dashboard_expressions().values())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")

    checked = run(PROMTOOL, "check", "rules", str(path))

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_scrape_configuration_is_valid() -> None:
    # --syntax-only: the bearer token file it names is the deployment's, not here.
    checked = run(
        PROMTOOL, "check", "config", "--syntax-only", str(DEPLOY / "prometheus" / "prometheus.yml")
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def units_here(tmp_path: Path) -> list[Path]:
    """The units as shipped, their ExecStart pointed at this checkout's derms-bridge (what
    systemd-analyze checks is there)."""
    installed = str(Path(sys.executable).parent / "derms-bridge")
    copies = []
    for unit in UNITS:
        copy = tmp_path / unit.name
        text = unit.read_text(encoding="utf-8")
        copy.write_text(text.replace("/opt/derms-bridge/bin/derms-bridge", installed))
        copies.append(copy)
    return copies


def instance_of(unit: Path) -> str:
    """The unit as systemctl starts it: a template's instance on port 8080."""
    return str(unit).replace("@.service", "@8080.service")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_units_verify(units_here: list[Path]) -> None:
    verified = run("systemd-analyze", "verify", *map(instance_of, units_here))

    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("unit", [unit.name for unit in UNITS])
def test_the_systemd_units_expose_little(units_here: list[Path], unit: str) -> None:
    # systemd's own score of a service's sandbox, 0 to 10 (0 to 100 for --threshold).
    here = instance_of(units_here[0].parent / unit)
    assessed = run("systemd-analyze", "security", "--offline=true", "--threshold=25", here)

    assert assessed.returncode == 0, assessed.stdout[-400:]
    assert "Overall exposure level" in assessed.stdout


def test_the_nginx_example_is_accepted_by_nginx(tmp_path: Path) -> None:
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is missing; `make test` installs it (apt-get install nginx)")
    # The example as shipped, its certificate and key a throwaway pair made here.
    made = run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=hub.utility.example",
        "-keyout", str(tmp_path / "privkey.pem"), "-out", str(tmp_path / "fullchain.pem"),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    site = (DEPLOY / "nginx" / "derms-bridge.conf").read_text(encoding="utf-8")
    (tmp_path / "site.conf").write_text(site.replace("/etc/ssl/derms-bridge/", f"{tmp_path}/"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ access_log off; include {tmp_path}/site.conf; }}\n"
    )

    checked = run(NGINX, "-t", "-c", str(tmp_path / "nginx.conf"))

    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
