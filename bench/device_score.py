"""Benchmark: a device score file (flow 16) from an FTP server to the DERMS simulator through
the hub, beside a plain FTP download followed by a plain HTTP POST of the same file to the
same simulator, in one run; and the hub's peak memory while the file went.

Processes, so that none shares another's GIL:

* the FTP server: the sandbox's pyftpdlib server (``derms_bridge.sandbox.ftp_server``) in a
  process of its own (multiprocessing, spawn), serving a temporary folder;
* the DERMS simulator: uvicorn on ``derms_bridge.sandbox.derms_sim:create_derms_app
  --factory``. It reads each body as it comes and keeps its size and sha256;
* the hub: ``derms-bridge serve`` with a settings YAML in a temporary directory (SQLite
  there, migrated on start; ``file_stores.ftp`` the FTP server above; SMTP to an aiosmtpd
  sink in this process);
* this process: writes the file, starts the hub's run, and is the plain client.

Hub run: a first run sends a 1 MB warm-up file: the first run of a process imports and
opens what every later one reuses (about a quarter of a second here), and its first request
checks the operator's password with argon2 (64 MiB for a moment), which the hub then
remembers. Then the peak resident set (``VmHWM`` in ``/proc/<pid>/status``) is read and
reset (``/proc/<pid>/clear_refs``), so that the peak read at the end is the measured run's,
and the measured file is moved into the folder. The run: ``POST
/ops/schedules/device_score_ftp/run``, as an operator starts it, and ``GET
/ops/instances/{id}`` polled until it is over; the time runs from the POST to then. The run
must have succeeded, DERMS must hold the file (size and sha256), and the file must be
renamed ``Sent-...`` on the FTP server. Last, the file is put back and ``derms-bridge run
device_score_ftp`` sends it again from the command line, a process of its own whose whole
peak resident set ``wait4`` reports.

Plain run: ``ftplib`` downloads the file to disk (``RETR``, 1 MiB blocks), then one aiohttp
POST (the hub's HTTP client) streams it from disk in 1 MiB chunks to the same route of the
simulator; timed from the FTP login to the answer. The plain run takes the two steps one
after the other, as a script would; the hub streams the download into the upload.

Targets: the hub's MB/s at least 0.7 of the plain run's; the hub's peak memory under
150 MB. Nothing is asserted on time or memory: the exit code is 1 only when an answer is
wrong, 0 otherwise, PASS or MISS.

Run it from the repository root:

    .venv/bin/python bench/device_score.py [--size-mb N]
"""

from __future__ import annotations

import argparse
import asyncio
import ftplib
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx

from derms_bridge.lookups import load_lookups
from derms_bridge.sandbox.ftp_server import FtpServer
from derms_bridge.sandbox.servers import LOOPBACK
from derms_bridge.sandbox.smtp_sink import SmtpSink
from harness import BenchmarkFailure, positive, report_or_fail, table, verdict
from processes import (
    DERMS_SIMULATOR,
    LOOKUPS_DIR,
    BenchCaller,
    HubProcess,
    hub_process,
    simulator_process,
    spawned_server,
)

FLOW = "device_score_ftp"
DEVICE_SCORE_ROUTE = "/device-score"
OPERATOR = BenchCaller("operator", "operator", "operator-bench")
FTP_USER, FTP_PASSWORD = "cpmcs", "cpmcs-ftp-bench"

TARGET_RATIO = 0.7
TARGET_PEAK_MB = 150.0

CHUNK_BYTES = 1024 * 1024
RUN_SECONDS = 1800.0
POLL_SECONDS = 0.02
CLIENT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)


@dataclass(frozen=True)
class ScoreFile:
    name: str
    size: int
    sha256: str

    @property
    def mb(self) -> float:
        return self.size / 1e6


def write_score_file(folder: Path, name: str, size_mb: int) -> ScoreFile:
    """A device score CSV of `size_mb` MB, written block by block; its size and digest."""
    block = "".join(
        f"NIC-{row:08d},HES-{row % 3 + 1},{(row * 37) % 100}\n" for row in range(40_000)
    ).encode()
    digest = hashlib.sha256()
    remaining = size_mb * 1_000_000
    with (folder / name).open("wb") as file:
        file.write(header := b"nicId,headEndSystem,deviceScore\n")
        digest.update(header)
        remaining -= len(header)
        while remaining > 0:
            part = block[:remaining]
            file.write(part)
            digest.update(part)
            remaining -= len(part)
    return ScoreFile(name, (folder / name).stat().st_size, digest.hexdigest())


# ---------------------------------------------------------------------------------------------
# Processes


def ftp_store(port: int) -> dict[str, Any]:
    """The hub's `file_stores.ftp`: the FTP server `serve_ftp` serves."""
    return {
        "type": "ftp",
        "host": LOOPBACK,
        "port": port,
        "username": FTP_USER,
        "password": FTP_PASSWORD,
    }


def serve_ftp(root: str, port_to: Connection, stop: Event) -> None:
    """The sandbox's FTP server on `root`, in the process `spawned_server` starts."""
    with FtpServer(Path(root), FTP_USER, FTP_PASSWORD) as server:
        port_to.send(server.port)
        stop.wait()


# ---------------------------------------------------------------------------------------------
# The hub's run


@dataclass(frozen=True)
class HubRun:
    seconds: float
    #: VmHWM after start-up and one authenticated request: argon2 verifies with 64 MiB.
    ready_peak_mb: float
    #: VmRSS just before the run.
    rest_mb: float
    #: VmHWM once the run is over: since the reset before it when `peak_reset`, else over
    #: the process's life.
    peak_mb: float
    peak_reset: bool

    @property
    def process_peak_mb(self) -> float:
        return max(self.ready_peak_mb, self.peak_mb)


async def wait_for_instance(
    client: httpx.AsyncClient, hub: HubProcess, instance_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_SECONDS
    while True:
        answer = await client.get(f"{hub.url}/ops/instances/{instance_id}", auth=OPERATOR.auth)
        instance: dict[str, Any] = answer.json()
        if answer.status_code == 200 and instance["status"] != "in_progress":
            return instance
        if not hub.alive():
            raise BenchmarkFailure("the hub exited before the run was over")
        if time.monotonic() > deadline:
            raise BenchmarkFailure(f"the run was not over within {RUN_SECONDS:g} s")
        await asyncio.sleep(POLL_SECONDS)


async def received_by_derms(client: httpx.AsyncClient, derms_url: str) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = (
        (await client.get(derms_url + "/_sim/state/received")).json().get(DEVICE_SCORE_ROUTE, [])
    )
    return received


def check_received(received: list[dict[str, Any]], score: ScoreFile, arm: str) -> None:
    expected = [(score.name, score.size, score.sha256)]
    got = [(r["fileName"], r["size"], r["sha256"]) for r in received]
    if got != expected:
        raise BenchmarkFailure(f"after the {arm} run DERMS holds {got}, not {expected}")


async def start_run(client: httpx.AsyncClient, hub: HubProcess) -> dict[str, Any]:
    """Flow 16 started as an operator starts it, and its instance once the run is over."""
    answer = await client.post(f"{hub.url}/ops/schedules/{FLOW}/run", auth=OPERATOR.auth)
    if answer.status_code != 202:
        raise BenchmarkFailure(f"the run was not started: HTTP {answer.status_code}")
    instance = await wait_for_instance(client, hub, answer.json()["instanceId"])
    if instance["status"] != "succeeded":
        raise BenchmarkFailure(f"the run {instance['status']}: {instance['error']}")
    return instance


async def hub_run(
    hub: HubProcess, derms_url: str, score: ScoreFile, put_in_place: Callable[[], object]
) -> HubRun:
    """A first run sends the small warm-up file; then `put_in_place` moves the measured file
    into the folder, and a second run sends it."""
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        # The first run of a process imports and opens what every later one reuses (about a
        # quarter of a second here); a hub serves for days, so that is left out.
        await start_run(client, hub)
        (await client.delete(derms_url + "/_sim/state")).raise_for_status()
        put_in_place()
        # The operator's argon2 check (64 MiB for a moment) came with the first request.
        ready_peak_mb = hub.memory_mb("VmHWM")
        rest_mb = hub.memory_mb("VmRSS")
        peak_reset = hub.reset_peak()
        started = time.perf_counter()
        await start_run(client, hub)
        seconds = time.perf_counter() - started
        peak_mb = hub.memory_mb("VmHWM")
        check_received(await received_by_derms(client, derms_url), score, "hub")
    return HubRun(seconds, ready_peak_mb, rest_mb, peak_mb, peak_reset)


def cli_run(config: Path, derms_url: str, score: ScoreFile) -> tuple[float, float]:
    """`derms-bridge run device_score_ftp`, the whole process timed and its peak resident set
    (from wait4, so nothing is missed between samples) in MB."""
    httpx.delete(derms_url + "/_sim/state").raise_for_status()
    command = [
        str(Path(sys.executable).parent / "derms-bridge"),
        "run",
        FLOW,
        "--config",
        str(config),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - the project's own command
        command, cwd=config.parent, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    # Popen must not wait for a child that wait4 has reaped already.
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise BenchmarkFailure(f"derms-bridge run exited {process.returncode}")
    received = httpx.get(derms_url + "/_sim/state/received").json()[DEVICE_SCORE_ROUTE]
    check_received(received, score, "derms-bridge run")
    return seconds, usage.ru_maxrss / 1024  # kB on Linux


# ---------------------------------------------------------------------------------------------
# The plain run


def ftp_download(port: int, folder: str, name: str, target: Path) -> None:
    # Plain FTP on loopback, as the hub's store is configured here.
    with ftplib.FTP() as ftp, target.open("wb") as file:  # noqa: S321
        ftp.connect(LOOPBACK, port)
        ftp.login(FTP_USER, FTP_PASSWORD)
        ftp.cwd(folder)
        ftp.retrbinary(f"RETR {name}", file.write, blocksize=CHUNK_BYTES)


async def http_post(derms_url: str, name: str, source: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        with source.open("rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                yield chunk

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{derms_url}{DEVICE_SCORE_ROUTE}/{quote(name, safe='')}",
            data=chunks(),
            headers={"Content-Type": "application/octet-stream"},
        ) as answer,
    ):
        await answer.read()
        if answer.status != 202:
            raise BenchmarkFailure(f"DERMS answered the plain POST HTTP {answer.status}")


def plain_run(derms_url: str, ftp_port: int, folder: str, score: ScoreFile, spool: Path) -> float:
    """Seconds from the FTP login to DERMS's answer to the POST."""
    httpx.delete(derms_url + "/_sim/state").raise_for_status()
    started = time.perf_counter()
    ftp_download(ftp_port, folder, score.name, spool)
    asyncio.run(http_post(derms_url, score.name, spool))
    seconds = time.perf_counter() - started
    check_received(
        httpx.get(derms_url + "/_sim/state/received").json()[DEVICE_SCORE_ROUTE], score, "plain"
    )
    return seconds


# ---------------------------------------------------------------------------------------------
# The whole run


@dataclass(frozen=True)
class Result:
    score: ScoreFile
    hub: HubRun
    plain_seconds: float
    cli_seconds: float
    cli_peak_mb: float

    @property
    def hub_mb_per_second(self) -> float:
        return self.score.mb / self.hub.seconds

    @property
    def plain_mb_per_second(self) -> float:
        return self.score.mb / self.plain_seconds

    @property
    def ratio(self) -> float:
        return self.hub_mb_per_second / self.plain_mb_per_second


def run(size_mb: int) -> Result:
    lookups = load_lookups(LOOKUPS_DIR)
    prefix = lookups.prop("dacs.dvcScore.extract.filename.prefix")
    folder = lookups.prop("dacs.dvcScore.ftp.input.directory")
    with (
        tempfile.TemporaryDirectory(prefix="derms-bridge-bench-ftp-") as ftp_root,
        tempfile.TemporaryDirectory(prefix="derms-bridge-bench-spool-") as spool,
        spawned_server(partial(serve_ftp, ftp_root), "the FTP server") as ftp_port,
        simulator_process(DERMS_SIMULATOR, "DERMS") as derms_url,
        SmtpSink() as mailbox,
    ):
        ftp_folder = Path(ftp_root) / folder.strip("/")
        ftp_folder.mkdir(parents=True)
        score = write_score_file(ftp_folder, f"{prefix}_20261126_bench.csv", size_mb)
        plain_seconds = plain_run(derms_url, ftp_port, folder, score, Path(spool) / score.name)
        # Out of the folder while the warm-up run goes, on the same disk to be moved back.
        waiting = Path(ftp_root) / score.name
        (ftp_folder / score.name).rename(waiting)
        warm_up = write_score_file(ftp_folder, f"{prefix}_20261126_warm-up.csv", 1)
        with hub_process(
            # Flow 16 never calls CPMCS: port 9 (discard) stands in for it.
            cpmcs_url=f"http://{LOOPBACK}:9",
            derms_url=derms_url,
            smtp_port=mailbox.port,
            caller=OPERATOR,
            flow_settings={"file_stores": {"ftp": ftp_store(ftp_port)}},
        ) as hub:
            hub_result = asyncio.run(
                hub_run(hub, derms_url, score, lambda: waiting.rename(ftp_folder / score.name))
            )
            sent = ftp_folder / f"Sent-{score.name}"
            left = sorted(path.name for path in ftp_folder.iterdir())
            if left != sorted([sent.name, f"Sent-{warm_up.name}"]):
                raise BenchmarkFailure(f"after the hub runs the FTP folder holds {left}")
            # Put back, for the same run by the command line.
            sent.rename(ftp_folder / score.name)
            cli_seconds, cli_peak_mb = cli_run(hub.config, derms_url, score)
    return Result(score, hub_result, plain_seconds, cli_seconds, cli_peak_mb)


def report(result: Result) -> str:
    hub = result.hub
    file_peak = (
        "while the file went (VmHWM reset just before the run)"
        if hub.peak_reset
        else "over the process's life (/proc/<pid>/clear_refs refused a reset)"
    )
    lines = [
        ("hub", "derms-bridge serve; flow 16 started by POST /ops/schedules/device_score_ftp/run"),
        ("FTP server, DERMS simulator", "processes of their own"),
        ("plain", "ftplib RETR to disk, then one aiohttp POST streamed from disk"),
        ("file", f"{result.score.mb:,.1f} MB"),
        ("", ""),
        (
            "hub",
            f"{result.hub_mb_per_second:,.1f} MB/s ({hub.seconds:.2f} s, from the POST to the "
            "instance's end: list, download streamed into the upload, rename, email)",
        ),
        ("plain", f"{result.plain_mb_per_second:,.1f} MB/s ({result.plain_seconds:.2f} s)"),
        ("ratio (hub/plain)", f"{result.ratio:.3f}"),
        ("", ""),
        ("hub peak memory", f"{hub.peak_mb:,.1f} MB {file_peak}"),
        ("hub at rest before the run", f"{hub.rest_mb:,.1f} MB"),
        (
            "process peak, whole life",
            f"{hub.process_peak_mb:,.1f} MB (start-up, then argon2's 64 MiB at the first "
            "authenticated request)",
        ),
        (
            "derms-bridge run, whole process",
            f"{result.cli_peak_mb:,.1f} MB peak, {result.cli_seconds:.2f} s with its start-up "
            "(the same run from the command line: no argon2)",
        ),
        ("", ""),
        ("targets", ""),
        (f"ratio >= {TARGET_RATIO:g}", verdict(result.ratio >= TARGET_RATIO)),
        (f"peak < {TARGET_PEAK_MB:g} MB", verdict(hub.peak_mb < TARGET_PEAK_MB)),
    ]
    return table(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A device score file from FTP to the DERMS simulator through the hub, "
        "against a plain FTP download and HTTP POST; and the hub's peak memory."
    )
    parser.add_argument(
        "--size-mb", type=positive, default=200, help="the file's size in MB (default 200)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_or_fail("device_score", lambda: run(args.size_mb), report)


if __name__ == "__main__":
    sys.exit(main())
