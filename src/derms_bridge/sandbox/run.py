"""`derms-bridge sandbox`: the hub with everything it talks to simulated on loopback."""

from __future__ import annotations

import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape

from derms_bridge.credentials import hash_password
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.cpmcs_sim import create_cpmcs_app
from derms_bridge.sandbox.demo import DayOfTraffic, DemoEndpoints, DemoRun, DemoScale, start_demo
from derms_bridge.sandbox.derms_sim import RetrySetting, create_derms_app
from derms_bridge.sandbox.ftp_server import FtpServer
from derms_bridge.sandbox.object_store import (
    ObjectStoreFiles,
    create_object_store_app,
    write_api_signing_key,
)
from derms_bridge.sandbox.servers import LOOPBACK, ServerThread
from derms_bridge.sandbox.smtp_sink import ReceivedMail, SmtpSink
from derms_bridge.settings import Database, Schedule, Server, Settings, Smtp, WebConsole
from derms_bridge.settings.connections import Caller, Connection, Connections
from derms_bridge.settings.file_storage import (
    FileStorageSettings,
    FtpSettings,
    OciObjectStorageSettings,
)

#: The sandbox's callers: fixed, documented, and never valid outside the sandbox.
SANDBOX_CALLERS = {
    "derms": ("derms", "derms-sandbox"),
    "cpmcs": ("cpmcs", "cpmcs-sandbox"),
    "operator": ("operator", "operator-sandbox"),
}
#: The login of the sandbox's FTP server, standing in for CPMCS's "OU FTP CPMCS".
SANDBOX_FTP_LOGIN = ("cpmcs", "cpmcs-ftp-sandbox")
#: The sandbox's made-up OCI identity; its API key is made afresh at each start.
SANDBOX_TENANCY = "ocid1.tenancy.oc1..sandbox"
SANDBOX_OCI_USER = "ocid1.user.oc1..sandbox"
SANDBOX_REGION = "us-ashburn-1"
DEVICE_SCORE_ROWS = 120


@dataclass(frozen=True)
class SandboxPorts:
    hub: int = 8080
    cpmcs: int | None = None
    derms: int | None = None
    smtp: int | None = None
    ftp: int | None = None
    object_store: int | None = None

    @property
    def cpmcs_port(self) -> int:
        return self.cpmcs if self.cpmcs is not None else self.hub + 1

    @property
    def derms_port(self) -> int:
        return self.derms if self.derms is not None else self.hub + 2

    @property
    def smtp_port(self) -> int:
        return self.smtp if self.smtp is not None else self.hub + 3

    @property
    def ftp_port(self) -> int:
        return self.ftp if self.ftp is not None else self.hub + 4

    @property
    def object_store_port(self) -> int:
        return self.object_store if self.object_store is not None else self.hub + 5


@dataclass(frozen=True)
class SandboxFiles:
    """The file stores' folders under var/, the folders and buckets ConfigProps names,
    and the device score files placed in them."""

    ftp_root: Path
    object_root: Path
    api_key: Path
    fingerprint: str
    namespace: str
    ftp_folders: tuple[str, ...]
    buckets: tuple[str, ...]
    device_score_ftp: str
    device_score_bucket: str
    device_score_files: tuple[str, ...]


def _device_score_csv(seed: int) -> bytes:
    rows = ["nicId,headEndSystem,deviceScore"]
    rows += [
        f"NIC-{seed:02d}{row:05d},HES-{row % 3 + 1},{(row * 37 + seed) % 100}"
        for row in range(DEVICE_SCORE_ROWS)
    ]
    return ("\n".join(rows) + "\n").encode()


def prepare_sandbox_files(var_dir: Path, lookups: Lookups) -> SandboxFiles:
    """Creates what the file flows look for, by the names ConfigProps gives them."""
    ftp_root, object_root = var_dir / "sandbox-ftp", var_dir / "sandbox-object-store"
    namespace = lookups.prop("dacs.os.namespace")
    ftp_folders = (
        lookups.prop("dacs.dvcScore.ftp.input.directory"),
        lookups.prop("dacs.spNtwkLoc.ftp.input.directory"),
    )
    buckets = (
        lookups.prop("dacs.os.dvcScore.bucketname"),
        lookups.prop("dacs.spNtwkLoc.os.bucketname"),
    )
    for folder in ftp_folders:
        (ftp_root / folder.strip("/")).mkdir(parents=True, exist_ok=True)
    objects = ObjectStoreFiles(object_root)
    for bucket in buckets:
        objects.create_bucket(namespace, bucket)
    prefix = lookups.prop("dacs.dvcScore.extract.filename.prefix")
    names = tuple(f"{prefix}_20261126_{part}.csv" for part in (1, 2, 3))
    score_folder = ftp_root / ftp_folders[0].strip("/")
    for seed, name in enumerate(names):
        content = _device_score_csv(seed)
        (score_folder / name).write_bytes(content)
        objects.object_path(namespace, buckets[0], name).write_bytes(content)
    api_key = var_dir / "sandbox-oci-api-key.pem"
    return SandboxFiles(
        ftp_root=ftp_root,
        object_root=object_root,
        api_key=api_key,
        fingerprint=write_api_signing_key(api_key),
        namespace=namespace,
        ftp_folders=ftp_folders,
        buckets=buckets,
        device_score_ftp=ftp_folders[0],
        device_score_bucket=buckets[0],
        device_score_files=names,
    )


def sandbox_file_stores(ports: SandboxPorts, files: SandboxFiles) -> FileStorageSettings:
    user, password = SANDBOX_FTP_LOGIN
    return FileStorageSettings(
        ftp=FtpSettings(
            host=LOOPBACK, port=ports.ftp_port, username=user, password=SecretStr(password)
        ),
        object_storage=OciObjectStorageSettings(
            region=SANDBOX_REGION,
            tenancy=SANDBOX_TENANCY,
            user=SANDBOX_OCI_USER,
            fingerprint=files.fingerprint,
            key_file=files.api_key,
            endpoint=f"http://{LOOPBACK}:{ports.object_store_port}",
        ),
    )


def sandbox_settings(
    ports: SandboxPorts, database_url: str, lookups_dir: Path, files: SandboxFiles | None = None
) -> Settings:
    """The hub's settings in the sandbox; without `files` (the benchmarks), its file
    stores stay the default local folders."""
    callers = {
        role: Caller(role=role, username=user, password_hash=hash_password(password))
        for role, (user, password) in SANDBOX_CALLERS.items()
    }
    return Settings(
        server=Server(host=LOOPBACK, port=ports.hub),
        database=Database(url=database_url),
        connections=Connections(
            cpmcs=Connection(base_url=f"http://{LOOPBACK}:{ports.cpmcs_port}"),
            derms={"default": Connection(base_url=f"http://{LOOPBACK}:{ports.derms_port}")},
        ),
        callers=callers,
        smtp=Smtp(host=LOOPBACK, port=ports.smtp_port),
        file_stores=sandbox_file_stores(ports, files) if files else FileStorageSettings(),
        lookups_dir=lookups_dir,
        # A new secret each run: a sandbox restart logs the operator out, which is harmless.
        console=WebConsole(session_secret=secrets.token_urlsafe(32)),
        # Nightly, as a utility would run them after CPMCS's X1-SDCSE batch: the schedules
        # page shows their next run, and Run now sends the files at once.
        schedules={
            "device_score_ftp": Schedule(cron="0 2 * * *", timezone="Europe/Paris"),
            "device_score_os": Schedule(cron="30 2 * * *", timezone="Europe/Paris"),
        },
    )


@dataclass
class Simulators:
    cpmcs: ServerThread
    derms: ServerThread
    smtp: SmtpSink
    ftp: FtpServer
    object_store: ServerThread

    def stop(self) -> None:
        self.cpmcs.stop()
        self.derms.stop()
        self.smtp.stop()
        self.ftp.stop()
        self.object_store.stop()


def start_simulators(
    ports: SandboxPorts, files: SandboxFiles, console: Console, derms_retries: RetrySetting
) -> Simulators:
    def show_mail(mail: ReceivedMail) -> None:
        recipients = escape(", ".join(mail.rcpt_tos))
        console.print(f"[bold magenta]mail[/] to {recipients}: {escape(mail.subject)}")

    cpmcs = ServerThread(create_cpmcs_app(), port=ports.cpmcs_port, name="CPMCS simulator")
    derms_app = create_derms_app(
        hub_url=f"http://{LOOPBACK}:{ports.hub}",
        hub_credentials=SANDBOX_CALLERS["derms"],
        retries=derms_retries,
    )
    derms = ServerThread(derms_app, port=ports.derms_port, name="DERMS simulator")
    smtp = SmtpSink(port=ports.smtp_port, on_message=show_mail)
    user, password = SANDBOX_FTP_LOGIN
    ftp = FtpServer(files.ftp_root, user, password, port=ports.ftp_port)
    key_id = f"{SANDBOX_TENANCY}/{SANDBOX_OCI_USER}/{files.fingerprint}"
    object_store = ServerThread(
        create_object_store_app(files.object_root, key_id=key_id),
        port=ports.object_store_port,
        name="object store",
    )
    cpmcs.start()
    derms.start()
    smtp.start()
    ftp.start()
    object_store.start()
    return Simulators(cpmcs=cpmcs, derms=derms, smtp=smtp, ftp=ftp, object_store=object_store)


def banner(ports: SandboxPorts, database_url: str, files: SandboxFiles, lookups_dir: Path) -> str:
    hub = f"http://{LOOPBACK}:{ports.hub}"
    user, password = SANDBOX_CALLERS["derms"]
    operator = SANDBOX_CALLERS["operator"]
    cpmcs_caller = SANDBOX_CALLERS["cpmcs"]
    return "\n".join(
        [
            "derms-bridge sandbox: everything on loopback, nothing real is called",
            f"  hub              {hub}   (OpenAPI docs: {hub}/docs)",
            f"  CPMCS simulator  http://{LOOPBACK}:{ports.cpmcs_port}   (faults: PUT /_sim/faults)",
            f"  DERMS simulator  http://{LOOPBACK}:{ports.derms_port}"
            "   (received: GET /_sim/state/received; sent: GET /_sim/state/sent;"
            " retries: PUT /_sim/retries)",
            f"  SMTP sink        {LOOPBACK}:{ports.smtp_port}   (each mail is printed here)",
            f"  FTP server       ftp://{LOOPBACK}:{ports.ftp_port}   "
            f"(login {SANDBOX_FTP_LOGIN[0]} / {SANDBOX_FTP_LOGIN[1]}; files in {files.ftp_root})",
            f"  object store     http://{LOOPBACK}:{ports.object_store_port}   (OCI Object "
            f"Storage API, namespace {files.namespace}; objects in {files.object_root})",
            f"  database         {database_url}",
            f"  lookups          {lookups_dir}   (edit them on the console's Lookups page)",
            "device score files waiting:",
            f"  FTP {files.device_score_ftp}: {', '.join(files.device_score_files)}",
            f"  bucket {files.device_score_bucket}: {', '.join(files.device_score_files)}",
            "callers (sandbox only):",
            f"  DERMS     {user} / {password}",
            f"  CPMCS     {cpmcs_caller[0]} / {cpmcs_caller[1]}",
            f"  operator  {operator[0]} / {operator[1]}",
            "try:",
            f"  curl -u {user}:{password} -H 'Content-Type: application/json' "
            f"-d @examples/enrollment-request.json {hub}/enroll-to-dacs",
            f"  curl -u {user}:{password} -F 'message=<examples/network-model.json' "
            f"-F 'file=@examples/network-model.csv;type=text/csv' {hub}/network-model-to-dacs",
            "  curl -F 'message=<examples/device-reservation.json' "
            "-F 'file=@examples/device-reservation.csv;type=text/csv' "
            f"http://{LOOPBACK}:{ports.derms_port}/_sim/send/device-reservation",
            f"  curl -u {operator[0]}:{operator[1]} -X POST "
            f"{hub}/ops/schedules/device_score_ftp/run",
            f"  curl -u {operator[0]}:{operator[1]} {hub}/ops/instances",
            f"  the console: {hub}/console (operator / {operator[1]})",
            "Ctrl-C stops the sandbox.",
        ]
    )


def start_demo_day(
    ports: SandboxPorts,
    settings: Settings,
    lookups: Lookups,
    simulators: Simulators,
    console: Console,
    seed: int,
    scale: float,
) -> DemoRun:
    """`sandbox --demo`: the day plays in a thread once the hub answers; at its end the
    sandbox stops as at Ctrl-C."""
    endpoints = DemoEndpoints(
        hub=f"http://{LOOPBACK}:{ports.hub}",
        cpmcs=f"http://{LOOPBACK}:{ports.cpmcs_port}",
        derms=f"http://{LOOPBACK}:{ports.derms_port}",
        derms_caller=SANDBOX_CALLERS["derms"],
        cpmcs_caller=SANDBOX_CALLERS["cpmcs"],
        operator=SANDBOX_CALLERS["operator"],
    )
    day = DayOfTraffic(
        DemoScale(seed=seed, scale=scale),
        endpoints,
        console,
        simulators.smtp,
        settings.file_stores,
        lookups,
    )
    return start_demo(day, stop_sandbox=lambda: os.kill(os.getpid(), signal.SIGINT))
