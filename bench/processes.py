"""The processes the benchmarks start beside their own: the simulators under uvicorn, servers
in spawned processes, and the hub as ``derms-bridge serve``, whose memory and CPU time are
read from ``/proc``.

Each benchmark runs the pieces in processes of their own so that none shares another's GIL.
The scripts import this module as ``processes``: run as ``python bench/<script>.py``, their
folder is first on ``sys.path``, and mypy, given the files, searches their folder too.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx
import yaml

from derms_bridge.credentials import hash_password
from derms_bridge.sandbox.servers import LOOPBACK, free_port

LOOKUPS_DIR = Path(__file__).resolve().parent.parent / "config" / "lookups"
CPMCS_SIMULATOR = "derms_bridge.sandbox.cpmcs_sim:create_cpmcs_app"
DERMS_SIMULATOR = "derms_bridge.sandbox.derms_sim:create_derms_app"
STARTUP_SECONDS = 60.0


def wait_until_serving(url: str, path: str, alive: Callable[[], bool], what: str) -> None:
    """Returns once `path` answers below 500; raises if the process exits or is too slow."""
    deadline = time.monotonic() + STARTUP_SECONDS
    with httpx.Client(base_url=url, timeout=1.0) as probe:
        while True:
            try:
                if probe.get(path).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            if not alive():
                raise RuntimeError(f"{what} exited before it served")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not serve within {STARTUP_SECONDS:g} s")
            time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def simulator_process(factory: str, what: str) -> Iterator[str]:
    """A simulator app `factory` served by uvicorn in a process of its own; its base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    process = subprocess.Popen(command)  # noqa: S603 - our own interpreter and module
    try:
        url = f"http://{LOOPBACK}:{port}"
        wait_until_serving(url, "/_sim/faults", lambda: process.poll() is None, what)
        yield url
    finally:
        stop_process(process)


@contextmanager
def spawned_server(serve: Callable[[Connection, Event], None], what: str) -> Iterator[int]:
    """`serve` in a spawned process of its own; the port it serves on.

    `serve` must be picklable (a module's function, or a partial of one), send its port
    through the connection once it serves, then serve until the event is set.
    """
    spawn = multiprocessing.get_context("spawn")
    port_from, port_to = spawn.Pipe(duplex=False)
    stop = spawn.Event()
    process = spawn.Process(target=serve, args=(port_to, stop), daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not port_from.poll(0.1):
            if not process.is_alive():
                raise RuntimeError(f"{what} exited before it served")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not serve within {STARTUP_SECONDS:g} s")
        port: int = port_from.recv()
        yield port
    finally:
        stop.set()
        process.join(timeout=15)
        if process.is_alive():
            process.kill()
            process.join()


@dataclass(frozen=True)
class BenchCaller:
    """The caller a benchmark plays: its entry in the hub's settings, the password hashed
    there (unlike derms_bridge.settings.Caller, this keeps it in clear to send it)."""

    role: str
    username: str
    password: str

    @property
    def auth(self) -> tuple[str, str]:
        return self.username, self.password


@dataclass(frozen=True)
class HubProcess:
    url: str
    pid: int
    alive: Callable[[], bool]
    config: Path

    def memory_mb(self, field: str) -> float:
        """A memory line of /proc/<pid>/status (VmHWM: the peak resident set), in MB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # kB
        raise RuntimeError(f"/proc/{self.pid}/status has no {field}")

    def cpu_seconds(self) -> float:
        """The CPU time the process has used so far, its threads' included."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        # utime and stime, the 14th and 15th fields of the line (the 12th and 13th after
        # the command's closing parenthesis), in clock ticks.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_seconds_with_children(self) -> float:
        """The CPU time of the process and of its children alive now (`serve --processes`'s
        hub processes), their threads' included."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return self.cpu_seconds() + sum(
            HubProcess(self.url, int(child), self.alive, self.config).cpu_seconds()
            for child in children
        )

    def reset_peak(self) -> bool:
        """VmHWM back to the present resident set (Linux 4.0+); False when not allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True


def hub_settings(
    directory: Path,
    port: int,
    database_url: str | None,
    cpmcs_url: str,
    derms_url: str,
    smtp_port: int,
    callers: Sequence[BenchCaller],
    flow_settings: Mapping[str, Any],
) -> Path:
    """The hub's settings YAML, written to `directory`; its path."""
    settings = {
        "server": {"host": LOOPBACK, "port": port},
        "database": {
            "url": database_url or f"sqlite:///{directory / 'hub.db'}",
            "migrate_on_start": True,
        },
        "connections": {
            "cpmcs": {"base_url": cpmcs_url},
            "derms": {"default": {"base_url": derms_url}},
        },
        "callers": {
            caller.role: {
                "role": caller.role,
                "username": caller.username,
                "password_hash": hash_password(caller.password),
            }
            for caller in callers
        },
        "smtp": {"host": LOOPBACK, "port": smtp_port},
        "lookups_dir": str(LOOKUPS_DIR),
        **flow_settings,
    }
    path = directory / "derms-bridge.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


@contextmanager
def hub_process(
    *,
    cpmcs_url: str,
    derms_url: str,
    smtp_port: int,
    caller: BenchCaller,
    flow_settings: Mapping[str, Any],
    database_url: str | None = None,
    other_callers: Sequence[BenchCaller] = (),
    processes: int = 1,
) -> Iterator[HubProcess]:
    """A fresh `derms-bridge serve` in a temporary directory, with a SQLite database there
    unless given one. `flow_settings` are the settings only the benchmark's flow needs;
    `processes` above 1 is `serve --processes`, whose pid is the processes' parent."""
    with tempfile.TemporaryDirectory(prefix="derms-bridge-bench-hub-") as tmp:
        port = free_port()
        config = hub_settings(
            Path(tmp),
            port,
            database_url,
            cpmcs_url,
            derms_url,
            smtp_port,
            [caller, *other_callers],
            flow_settings,
        )
        command = [
            str(Path(sys.executable).parent / "derms-bridge"),
            "serve",
            "--config",
            str(config),
            "--log-level",
            "warning",
            *(["--processes", str(processes)] if processes > 1 else []),
        ]
        process = subprocess.Popen(command, cwd=tmp)  # noqa: S603 - the project's own command
        try:
            url = f"http://{LOOPBACK}:{port}"
            alive: Callable[[], bool] = lambda: process.poll() is None  # noqa: E731
            wait_until_serving(url, "/healthz", alive, "the hub")
            yield HubProcess(url=url, pid=process.pid, alive=alive, config=config)
        finally:
            stop_process(process)
