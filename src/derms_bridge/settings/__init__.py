"""One validated settings object: a YAML file, then DERMS_BRIDGE_* environment variables.

Environment variables use ``__`` between levels, e.g.
``DERMS_BRIDGE_DATABASE__URL`` or ``DERMS_BRIDGE_CONNECTIONS__CPMCS__BASE_URL``. Any secret
may be given as a file instead, in either: ``<secret>_file`` (secret_files.py).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# Schedule lives beside Strict so that retention's settings can use it too.
from derms_bridge.settings.common import Schedule as Schedule
from derms_bridge.settings.common import Secret, Strict
from derms_bridge.settings.connections import Caller, Connections, sha256_hex
from derms_bridge.settings.file_storage import FileStorageSettings, FtpSettings
from derms_bridge.settings.retention import Retention
from derms_bridge.settings.secret_files import SecretFileError, resolve_secret_files
from derms_bridge.settings.tracing import Tracing

ENV_PREFIX = "DERMS_BRIDGE_"
DEFAULT_SETTINGS_FILE = Path("config/derms-bridge.yaml")


class Smtp(Strict):
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    username: str | None = None
    password: Secret | None = None
    security: Literal["none", "starttls", "tls"] = "none"
    timeout: float = Field(10.0, gt=0)


class Database(Strict):
    url: SecretStr = Field(
        SecretStr("sqlite:///var/derms-bridge.db"),
        description="SQLAlchemy URL: sqlite:///path or postgresql://user@host/db",
    )
    migrate_on_start: bool = True


class Limits(Strict):
    max_json_body_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    enrollment_concurrency: int = Field(
        32, ge=1, le=256, description="enrollProgram calls in flight for one batch"
    )
    rejected_body_bytes: int = Field(
        64 * 1024,
        ge=0,
        description="how much of a refused message's body its rejected instance keeps; "
        "past it the body is kept cut, marked truncated",
    )
    rejection_email_minutes: int = Field(
        15,
        ge=0,
        description="one error email per caller in this time, however many of its messages "
        "are rejected meanwhile",
    )


#: The most items CPMCS takes in one list (a segment's deviceList or postOutcomeList).
CPMCS_LIST_LIMIT = 2000


class SegmentRetry(Strict):
    """How a segment whose call fails for a passing reason (no answer, 429, 5xx) is tried
    again, with backoff and jitter, before its file fails."""

    attempts: int = Field(
        5, ge=1, le=20, description="tries of a segment's call, the first included (1: none again)"
    )
    seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="no try starts later than this after the first one failed",
    )


class Segments(Strict):
    """How the file flows (7, 8) cut a file and send it."""

    size: int = Field(
        1000,
        ge=1,
        le=CPMCS_LIST_LIMIT,
        description="rows per segment, as in OIC; CPMCS takes at most 2,000 items in a list",
    )
    parallelism: int = Field(8, ge=1, le=128, description="segments in flight per worker")
    lease_seconds: float = Field(
        60.0, gt=0, description="a claimed segment or file is taken up again after this"
    )
    poll_seconds: float = Field(1.0, gt=0, description="how often an idle worker looks for work")
    ack_attempts: int = Field(5, ge=1, le=20, description="tries of DERMS's acknowledgement")
    retry: SegmentRetry = Field(default_factory=SegmentRetry)
    max_file_bytes: int = Field(2 * 1024**3, ge=1024, description="the largest CSV accepted")


class Processes(Strict):
    """How hub processes sharing a database tell they are alive, so that the runs of one
    that stopped mid-run are given up as failed instead of staying in progress."""

    heartbeat_seconds: float = Field(
        10.0, gt=0, description="how often a hub process says it is alive"
    )
    stopped_after_seconds: float = Field(
        60.0,
        gt=0,
        description="a process not heard from for this long has stopped; its runs in "
        "progress are failed and emailed about",
    )
    stop_grace_seconds: float = Field(
        20.0,
        gt=0,
        description="at SIGTERM or SIGINT, how long a hub process lets the calls it has in "
        "flight end before it cuts them short; it claims nothing more meanwhile, and gives "
        "back what it has not sent",
    )

    @model_validator(mode="after")
    def _heard_several_times(self) -> Processes:
        if self.stopped_after_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                "stopped_after_seconds must be at least twice heartbeat_seconds: a process "
                "between two heartbeats would be taken for stopped"
            )
        return self


class Metrics(Strict):
    """The Prometheus scrape at /metrics."""

    dir: Path = Field(
        Path("var/metrics"),
        description="where the hub processes of this machine keep their counts, to be summed",
    )
    token_sha256: SecretStr | None = Field(
        None,
        description="hex SHA-256 of a bearer token that may read /metrics and nothing else "
        "(`derms-bridge hash-token`); operator callers may read it too",
    )

    _is_sha256_hex = field_validator("token_sha256")(sha256_hex)


#: The flows a schedule starts (flows/registry.py SCHEDULED_FLOWS).
ScheduledFlowKey = Literal["device_score_ftp", "device_score_os"]


class Server(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks (CIDR) of the reverse proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto the hub believes; none by default",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or network") from None
        return proxies


class LoginLimits(Strict):
    """Failed logins allowed in any window, on every way in: the API's Basic auth and bearer
    tokens, /metrics and the console's login."""

    window_seconds: float = Field(
        300.0, gt=0, le=24 * 3600, description="failures older than this are forgotten"
    )
    per_user_and_address: int = Field(
        5, ge=1, description="failures of one user from one address before that pair waits"
    )
    per_address: int = Field(
        20, ge=1, description="failures from one address, whatever the user, before it waits"
    )
    per_user: int = Field(
        50, ge=1, description="failures of one user, from any address, before it waits"
    )


class WebConsole(Strict):
    """The operations web console at /console."""

    session_secret: Secret | None = Field(
        None,
        min_length=32,
        description="signs the console's session cookies; the console is off without it",
    )
    session_hours: float = Field(8.0, gt=0, le=24 * 30, description="a login lasts this long")
    behind_proxy: bool = Field(
        False,
        description="trust X-Forwarded-Proto, set by a proxy that ends TLS in front of the hub",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    server: Server = Server()
    database: Database = Database()
    connections: Connections
    callers: dict[str, Caller] = Field(default_factory=dict)
    smtp: Smtp = Smtp()
    limits: Limits = Limits()
    segments: Segments = Segments()
    metrics: Metrics = Metrics()
    processes: Processes = Processes()
    schedules: dict[ScheduledFlowKey, Schedule] = Field(default_factory=dict)
    file_stores: FileStorageSettings = FileStorageSettings()
    lookups_dir: Path = Path("config/lookups")
    console: WebConsole = WebConsole()
    login_throttle: LoginLimits = LoginLimits()
    retention: Retention = Retention()
    tracing: Tracing | None = None

    @model_validator(mode="after")
    def _callers_name_known_derms_connections(self) -> Settings:
        known = self.connections.derms
        for name, caller in self.callers.items():
            if caller.derms_connection is not None and caller.derms_connection not in known:
                raise ValueError(
                    f"callers.{name}.derms_connection: {caller.derms_connection!r} is not a "
                    f"DERMS connection (connections.derms: {', '.join(known)})"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables win over the YAML file, which arrives as init values.
        return (_SecretFilesRead(settings_cls, env_settings), init_settings)


class _SecretFilesRead(PydanticBaseSettingsSource):
    """A source's values with each `<secret>_file` replaced by the secret the file holds."""

    def __init__(self, settings_cls: type[BaseSettings], source: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._source = source

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._source.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        resolved: dict[str, Any] = resolve_secret_files([self.settings_cls], self._source())
        return resolved


def _on_this_machine(host: str) -> bool:
    """A loopback host: what is sent to it never crosses a network (the sandbox's servers)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unsafe_settings(settings: Settings) -> list[str]:
    """What the settings allow though they should not: each names the setting, never its
    value. The hub runs all the same, as a test or a closed network may want. A server on
    this machine's loopback is no risk: nothing sent to it crosses a network."""
    unsafe = []
    smtp = settings.smtp
    if smtp.password is not None and smtp.security == "none" and not _on_this_machine(smtp.host):
        unsafe.append(
            "smtp: a password is set but security is none, so it goes to the mail server "
            "unencrypted (set smtp.security to starttls or tls)"
        )
    ftp = settings.file_stores.ftp
    if isinstance(ftp, FtpSettings) and not ftp.tls and not _on_this_machine(ftp.host):
        unsafe.append(
            "file_stores.ftp: a password is set but tls is off, so it goes to the FTP server "
            "unencrypted (set file_stores.ftp.tls to true, or use sftp)"
        )
    return unsafe


class SettingsError(Exception):
    """A settings file or variable that cannot be used; `problems` name each one."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _line_of(path: Path, location: tuple[int | str, ...]) -> int | None:
    """The line of the YAML node at `location`, so an error points into the file."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None
    line = None
    for part in location:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return line
            line = match.start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


#: Tags pydantic puts in an error's location for a discriminated union; not in the file.
_UNION_TAGS = {
    ("auth", "basic"),
    ("auth", "oauth2"),
    *(("ftp", kind) for kind in ("ftp", "sftp", "local")),
    *(("object_storage", kind) for kind in ("oci", "s3", "local")),
}


def _as_written(location: tuple[int | str, ...]) -> tuple[int | str, ...]:
    kept: list[int | str] = []
    for part in location:
        if kept and (str(kept[-1]), str(part)) in _UNION_TAGS:
            continue
        # pydantic's marker of a mapping's key (rich would also read it as markup).
        if part == "[key]":
            continue
        kept.append(part)
    return tuple(kept)


def _variable_for(location: tuple[int | str, ...]) -> str | None:
    """The DERMS_BRIDGE_* variable that set this value, or one of its parents, if any."""
    present = {name.upper() for name in os.environ}
    for depth in range(len(location), 0, -1):
        name = ENV_PREFIX + "__".join(str(part).upper() for part in location[:depth])
        if name in present:
            return name
    return None


def _describe(path: Path, exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        location = _as_written(tuple(error["loc"]))
        field = ".".join(str(p) for p in location) or "(top level)"
        variable = _variable_for(location)
        if variable is not None:
            where = f"{variable} (environment)"
        else:
            line = _line_of(path, location) if path.is_file() else None
            where = f"{path}:{line}" if line else str(path)
        problems.append(f"{where}: {field}: {error['msg']}")
    return problems


def lookups_dir_of(path: Path) -> Path:
    """The lookups directory a settings file names, even when the rest of it is wrong."""
    variable = os.environ.get(ENV_PREFIX + "LOOKUPS_DIR")
    if variable:
        return Path(variable)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except yaml.YAMLError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("lookups_dir"), str):
        return Path(data["lookups_dir"])
    default: Path = Settings.model_fields["lookups_dir"].default
    return default


def load_settings(path: Path | None = None) -> Settings:
    """Read the YAML file (if any) and the environment; raise SettingsError naming every mistake."""
    path = path or DEFAULT_SETTINGS_FILE
    data: Any = {}
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            # The error's own text quotes the offending line, which may hold a secret:
            # where it is and what is wrong, never what is written there.
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
            problem = getattr(exc, "problem", None) or "cannot be read"
            raise SettingsError(str(path), [f"{where}: not valid YAML: {problem}"]) from None
        if not isinstance(data, dict):
            raise SettingsError(str(path), [f"{path}: the top level must be a mapping"])
    try:
        data = resolve_secret_files([Settings], data)
    except SecretFileError as exc:
        line = _line_of(path, exc.location)
        raise SettingsError(
            str(path), [f"{path}:{line}: {exc}" if line else f"{path}: {exc}"]
        ) from None
    try:
        return Settings(**data)
    except SecretFileError as exc:
        variable = _variable_for(exc.location) or "environment"
        raise SettingsError(str(path), [f"{variable} (environment): {exc}"]) from None
    except ValidationError as exc:
        raise SettingsError(str(path), _describe(path, exc)) from None
