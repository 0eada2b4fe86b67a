"""One validated settings object: a YAML file, then DERMS_BRIDGE_* environment variables.

Environment variables use ``__`` between levels, e.g.
``DERMS_BRIDGE_DATABASE__URL`` or ``DERMS_BRIDGE_CONNECTIONS__CPMCS__BASE_URL``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from cronsim import CronSim, CronSimError
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "DERMS_BRIDGE_"
DEFAULT_SETTINGS_FILE = Path("config/derms-bridge.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _readable_ca_bundle(value: Path | None) -> Path | None:
    """A CA bundle is read when the settings are, so that a bad one stops the hub at start-up
    instead of failing its first call to the system."""
    if value is None:
        return None
    if not value.is_file():
        raise ValueError(f"CA bundle {value} does not exist")
    try:
        ssl.create_default_context(cafile=str(value))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"CA bundle {value} cannot be read as PEM certificates: {exc}") from None
    return value


#: Words the example settings hold where a secret must go.
_PLACEHOLDER_WORDS = ("change-me", "changeme", "replace")


def _not_placeholder(value: SecretStr) -> SecretStr:
    words = value.get_secret_value().strip().lower()
    if any(word in words for word in _PLACEHOLDER_WORDS):
        raise ValueError("still the example's placeholder: put the real secret here")
    return value


#: A secret that the settings refuse to start with while it is the example's placeholder.
Secret = Annotated[SecretStr, AfterValidator(_not_placeholder)]


class Timeouts(_Strict):
    connect: float = Field(5.0, gt=0, description="seconds to open a connection")
    read: float = Field(30.0, gt=0, description="seconds to wait for each answer")


class BasicAuth(_Strict):
    type: Literal["basic"] = "basic"
    username: str = Field(min_length=1)
    password: Secret


class OAuth2ClientCredentials(_Strict):
    type: Literal["oauth2"] = "oauth2"
    token_url: AnyHttpUrl
    client_id: str = Field(min_length=1)
    client_secret: Secret
    scope: str | None = None


OutboundAuth = Annotated[BasicAuth | OAuth2ClientCredentials, Field(discriminator="type")]


class Connection(_Strict):
    """One outside system the hub calls."""

    base_url: AnyHttpUrl
    timeouts: Timeouts = Timeouts()
    auth: OutboundAuth | None = None
    ca_bundle: Path | None = Field(
        None, description="PEM file of the CA that signs this system's certificate"
    )
    max_connections: int = Field(100, ge=1)

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_url(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if value.username or value.password:
            raise ValueError("put credentials under auth, not in base_url")
        return value

    _ca_bundle_readable = field_validator("ca_bundle")(_readable_ca_bundle)


class Connections(_Strict):
    cpmcs: Connection
    derms: dict[str, Connection] = Field(
        description="named DERMS connections; the Routing lookup picks one by division",
    )

    @field_validator("derms")
    @classmethod
    def _derms_not_empty(cls, value: dict[str, Connection]) -> dict[str, Connection]:
        if not value:
            raise ValueError("at least one DERMS connection is needed")
        return value


Role = Literal["derms", "cpmcs", "operator"]


def _sha256_hex(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        digest = value.get_secret_value()
        if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise ValueError("token_sha256 must be 64 hex digits (derms-bridge hash-token)")
        if set(digest) == {"0"}:
            raise ValueError(
                "token_sha256 is the example's placeholder: put the hash that "
                "`derms-bridge hash-token` prints"
            )
    return value


#: An argon2 hash as `derms-bridge hash-password` writes it (PHC string format).
_ARGON2_HASH = re.compile(
    r"\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{16,}"
)


class Caller(_Strict):
    """A system or person allowed to call the hub."""

    role: Role
    username: str | None = Field(None, min_length=1)
    password_hash: SecretStr | None = Field(
        None, description="argon2 hash, made with `derms-bridge hash-password`"
    )
    token_sha256: SecretStr | None = Field(
        None, description="hex SHA-256 of a bearer token, made with `derms-bridge hash-token`"
    )
    derms_connection: str | None = Field(
        None,
        description="for a DERMS caller: the `derms` connection that the acknowledgements of "
        "the files it sends (flows 7, 8) go back to; unset: the Routing lookup's `*` row",
    )

    _is_sha256_hex = field_validator("token_sha256")(_sha256_hex)

    @model_validator(mode="after")
    def _only_derms_sends_files(self) -> Caller:
        if self.derms_connection is not None and self.role != "derms":
            raise ValueError(
                "derms_connection: only a caller of role derms sends files to acknowledge"
            )
        return self

    @model_validator(mode="after")
    def _has_a_credential(self) -> Caller:
        basic = self.username is not None and self.password_hash is not None
        if not basic and self.token_sha256 is None:
            raise ValueError("a caller needs username and password_hash, or token_sha256")
        if (self.username is None) != (self.password_hash is None):
            raise ValueError("username and password_hash go together")
        if self.password_hash is not None and not _ARGON2_HASH.fullmatch(
            self.password_hash.get_secret_value()
        ):
            raise ValueError(
                "password_hash must be an argon2 hash as `derms-bridge hash-password` prints "
                "it, not a plain password or the example's placeholder"
            )
        return self


class Smtp(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    username: str | None = None
    password: Secret | None = None
    security: Literal["none", "starttls", "tls"] = "none"
    timeout: float = Field(10.0, gt=0)


class Database(_Strict):
    url: SecretStr = Field(
        SecretStr("sqlite:///var/derms-bridge.db"),
        description="SQLAlchemy URL: sqlite:///path or postgresql://user@host/db",
    )
    migrate_on_start: bool = True


class Limits(_Strict):
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


class SegmentRetry(_Strict):
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


class Segments(_Strict):
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


class Processes(_Strict):
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


class Metrics(_Strict):
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

    _is_sha256_hex = field_validator("token_sha256")(_sha256_hex)


class Schedule(_Strict):
    """When a scheduled flow runs: a cron expression read in a time zone."""

    cron: str = Field(
        description="five fields (minute hour day month weekday), or six with seconds first"
    )
    timezone: str = Field("UTC", description="an IANA time zone, e.g. Europe/Paris")
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _is_cron(cls, value: str) -> str:
        try:
            CronSim(value, datetime.now(UTC))
        except CronSimError as exc:
            raise ValueError(f"{value!r} is not a cron expression: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _is_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)") from None
        return value


#: The flows a schedule starts (flows/registry.py SCHEDULED_FLOWS).
ScheduledFlowKey = Literal["device_score_ftp", "device_score_os"]


class LocalFolderSettings(_Strict):
    """A folder on the hub's own disk; for object storage, namespace and bucket are folders."""

    type: Literal["local"] = "local"
    root: Path


class FtpSettings(_Strict):
    """An FTP server, plain or with explicit FTPS (AUTH TLS, then a protected data channel)."""

    type: Literal["ftp"] = "ftp"
    host: str = Field(min_length=1)
    port: int = Field(21, ge=1, le=65535)
    username: str = Field(min_length=1)
    password: Secret
    tls: bool = Field(False, description="explicit FTPS; the server's certificate is verified")
    ca_bundle: Path | None = Field(
        None, description="PEM file of the CA that signs the server's certificate"
    )
    timeout: float = Field(30.0, gt=0, description="seconds to connect and for each answer")

    _ca_bundle_readable = field_validator("ca_bundle")(_readable_ca_bundle)


class SftpSettings(_Strict):
    """An SSH server's SFTP subsystem, logged in with a password or a private key."""

    type: Literal["sftp"] = "sftp"
    host: str = Field(min_length=1)
    port: int = Field(22, ge=1, le=65535)
    username: str = Field(min_length=1)
    password: Secret | None = None
    private_key: Path | None = Field(None, description="OpenSSH or PEM private key file")
    private_key_passphrase: Secret | None = None
    known_hosts: Path | None = Field(
        None, description="known_hosts file naming the server; default ~/.ssh/known_hosts"
    )
    host_key: str | None = Field(
        None, description="the server's public key, as one known_hosts line without the host"
    )
    accept_unknown_host_key: bool = Field(
        False, description="trust any server key: only for a sandbox on loopback"
    )
    timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _has_a_credential(self) -> SftpSettings:
        if self.password is None and self.private_key is None:
            raise ValueError("an SFTP store needs a password or a private_key")
        if self.private_key is not None and not self.private_key.is_file():
            raise ValueError(f"private key {self.private_key} does not exist")
        if self.known_hosts is not None and not self.known_hosts.is_file():
            raise ValueError(f"known_hosts file {self.known_hosts} does not exist")
        if self.host_key is not None and self.known_hosts is not None:
            raise ValueError("give known_hosts or host_key, not both")
        return self


class OciObjectStorageSettings(_Strict):
    """OCI Object Storage's native API, signed with an API signing key."""

    type: Literal["oci"] = "oci"
    region: str = Field(min_length=1, description="e.g. us-ashburn-1")
    tenancy: str = Field(min_length=1, description="the tenancy's OCID")
    user: str = Field(min_length=1, description="the user's OCID")
    fingerprint: str = Field(min_length=1, description="the API key's fingerprint")
    key_file: Path = Field(description="the API signing key, a PEM private key")
    key_passphrase: Secret | None = None
    endpoint: AnyHttpUrl | None = Field(
        None, description="instead of the region's endpoint (a private endpoint, the sandbox)"
    )
    timeouts: Timeouts = Timeouts()

    @field_validator("key_file")
    @classmethod
    def _key_file_readable(cls, key_file: Path) -> Path:
        if not key_file.is_file():
            raise ValueError(f"key file {key_file} does not exist")
        return key_file


class S3Settings(_Strict):
    """An S3-compatible object store: MinIO, AWS S3, OCI's S3 compatibility endpoint."""

    type: Literal["s3"] = "s3"
    endpoint: AnyHttpUrl | None = Field(None, description="default: AWS S3 of the region")
    region: str = "us-east-1"
    access_key_id: str = Field(min_length=1)
    secret_access_key: Secret
    path_style: bool = Field(True, description="bucket in the path, as MinIO and OCI want it")
    ca_bundle: Path | None = None
    timeouts: Timeouts = Timeouts()


FtpRoleSettings = Annotated[
    FtpSettings | SftpSettings | LocalFolderSettings, Field(discriminator="type")
]
ObjectStorageRoleSettings = Annotated[
    OciObjectStorageSettings | S3Settings | LocalFolderSettings, Field(discriminator="type")
]
StorageSettings = (
    FtpSettings | SftpSettings | OciObjectStorageSettings | S3Settings | LocalFolderSettings
)


class FileStorageSettings(_Strict):
    """CPMCS's two file stores: the reference's "OU FTP CPMCS" and its object storage."""

    ftp: FtpRoleSettings = LocalFolderSettings(root=Path("var/files/ftp"))
    object_storage: ObjectStorageRoleSettings = LocalFolderSettings(root=Path("var/files/os"))


class Server(_Strict):
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


class WebConsole(_Strict):
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
    failed_logins_allowed: int = Field(
        5, ge=1, description="failed logins per user or address before a pause"
    )
    failed_login_pause_seconds: float = Field(300.0, gt=0)


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
        return (env_settings, init_settings)


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
        return Settings(**data)
    except ValidationError as exc:
        raise SettingsError(str(path), _describe(path, exc)) from None
