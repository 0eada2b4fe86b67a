"""The systemd units of deploy/ stop the hub gracefully and keep it in a sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from derms_bridge.settings import Processes

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def service_section(name: str) -> dict[str, list[str]]:
    """The [Service] settings of a unit, each key with every value it is given."""
    found: dict[str, list[str]] = {}
    section = None
    for line in (UNITS / name).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize(
    ("unit", "command"),
    [("derms-bridge-serve@.service", "serve --port %i"), ("derms-bridge-worker.service", "worker")],
)
def test_a_unit_stops_its_process_gracefully_and_runs_it_hardened(unit: str, command: str) -> None:
    service = service_section(unit)

    assert service["ExecStart"] == [
        "/opt/derms-bridge/bin/derms-bridge "
        + command.replace(" --port %i", "")
        + " --config /etc/derms-bridge/derms-bridge.yaml"
        + (" --port %i" if "%i" in command else "")
    ]
    assert service["KillSignal"] == ["SIGTERM"]
    # systemd kills the process after TimeoutStopSec: more than the hub's own grace, so the
    # process ends its calls in flight and gives back its claims before that.
    [timeout] = service["TimeoutStopSec"]
    assert int(timeout) >= Processes().stop_grace_seconds + 5
    assert service["StateDirectory"] == ["derms-bridge"]
    for hardened in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "RestrictSUIDSGID"):
        assert service[hardened] == ["yes"], hardened
    assert service["ProtectSystem"] == ["strict"]
    assert service["CapabilityBoundingSet"] == [""]
