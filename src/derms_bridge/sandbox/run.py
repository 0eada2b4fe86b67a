"""`derms-bridge sandbox`: the hub with everything it talks to simulated on loopback."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from derms_bridge.api.security import hash_password
from derms_bridge.errors import LookupMiss
from derms_bridge.lookups import load_lookups
from derms_bridge.sandbox.cpmcs_sim import create_cpmcs_app
from derms_bridge.sandbox.derms_sim import create_derms_app
from derms_bridge.sandbox.servers import LOOPBACK, ServerThread
from derms_bridge.sandbox.smtp_sink import ReceivedMail, SmtpSink
from derms_bridge.settings import (
    Caller,
    Connection,
    Connections,
    Database,
    Server,
    Settings,
    Smtp,
    WebConsole,
)

#: The sandbox's callers: fixed, documented, and never valid outside the sandbox.
SANDBOX_CALLERS = {
    "derms": ("derms", "derms-sandbox"),
    "cpmcs": ("cpmcs", "cpmcs-sandbox"),
    "operator": ("operator", "operator-sandbox"),
}


@dataclass(frozen=True)
class SandboxPorts:
    hub: int = 8080
    cpmcs: int | None = None
    derms: int | None = None
    smtp: int | None = None

    @property
    def cpmcs_port(self) -> int:
        return self.cpmcs if self.cpmcs is not None else self.hub + 1

    @property
    def derms_port(self) -> int:
        return self.derms if self.derms is not None else self.hub + 2

    @property
    def smtp_port(self) -> int:
        return self.smtp if self.smtp is not None else self.hub + 3


def sandbox_settings(ports: SandboxPorts, database_url: str, lookups_dir: Path) -> Settings:
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
        lookups_dir=lookups_dir,
        local_stores=Path("var/sandbox-stores"),
        # A new secret each run: a sandbox restart logs the operator out, which is harmless.
        console=WebConsole(session_secret=secrets.token_urlsafe(32)),
    )


#: The ConfigProps that name an FTP directory, and those that name an object storage bucket.
FTP_DIRECTORIES = ("dacs.spNtwkLoc.ftp.input.directory", "dacs.dvcScore.ftp.input.directory")
BUCKETS = ("dacs.spNtwkLoc.os.bucketname", "dacs.os.dvcScore.bucketname")


def make_store_folders(settings: Settings) -> list[Path]:
    """The folders of the local stand-ins for CPMCS's file stores that ConfigProps names,
    so that the file transfers work from the sandbox's first start."""
    lookups = load_lookups(settings.lookups_dir)
    folders = []
    for prop in FTP_DIRECTORIES:
        with contextlib.suppress(LookupMiss):
            folders.append(settings.local_stores / "ftp" / lookups.prop(prop).strip("/"))
    for prop in BUCKETS:
        with contextlib.suppress(LookupMiss):
            namespace = lookups.prop("dacs.os.namespace")
            bucket = lookups.prop(prop)
            folders.append(settings.local_stores / "object-storage" / namespace / bucket)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


@dataclass
class Simulators:
    cpmcs: ServerThread
    derms: ServerThread
    smtp: SmtpSink

    def stop(self) -> None:
        self.cpmcs.stop()
        self.derms.stop()
        self.smtp.stop()


def start_simulators(ports: SandboxPorts, console: Console) -> Simulators:
    def show_mail(mail: ReceivedMail) -> None:
        recipients = escape(", ".join(mail.rcpt_tos))
        console.print(f"[bold magenta]mail[/] to {recipients}: {escape(mail.subject)}")

    cpmcs = ServerThread(create_cpmcs_app(), port=ports.cpmcs_port, name="CPMCS simulator")
    derms = ServerThread(create_derms_app(), port=ports.derms_port, name="DERMS simulator")
    smtp = SmtpSink(port=ports.smtp_port, on_message=show_mail)
    cpmcs.start()
    derms.start()
    smtp.start()
    return Simulators(cpmcs=cpmcs, derms=derms, smtp=smtp)


def banner(ports: SandboxPorts, database_url: str) -> str:
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
            "   (received: GET /_sim/state/received)",
            f"  SMTP sink        {LOOPBACK}:{ports.smtp_port}   (each mail is printed here)",
            f"  database         {database_url}",
            "  file stores      var/sandbox-stores/ftp, var/sandbox-stores/object-storage"
            "   (local folders)",
            "callers (sandbox only):",
            f"  DERMS     {user} / {password}",
            f"  CPMCS     {cpmcs_caller[0]} / {cpmcs_caller[1]}",
            f"  operator  {operator[0]} / {operator[1]}",
            "try:",
            f"  curl -u {user}:{password} -H 'Content-Type: application/json' "
            f"-d @examples/enrollment-request.json {hub}/enroll-to-dacs",
            f"  curl -u {user}:{password} -F 'message=<examples/network-model.json' "
            f"-F 'file=@examples/network-model.csv;type=text/csv' {hub}/network-model-to-dacs",
            f"  curl -u {operator[0]}:{operator[1]} {hub}/ops/instances",
            f"  the console: {hub}/console (operator / {operator[1]})",
            "Ctrl-C stops the sandbox.",
        ]
    )
