"""`derms-bridge check-config` as a user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SHIPPED_LOOKUPS = ROOT / "config" / "lookups"
PREFIX = "OUTL-BRT-DACS_DRMS_"


def console_script() -> Path:
    """The derms-bridge next to the running interpreter, else the repository's venv."""
    beside = Path(sys.executable).parent / "derms-bridge"
    return beside if beside.is_file() else ROOT / ".venv" / "bin" / "derms-bridge"


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error ")]


def check_config(config: Path, cwd: Path) -> Run:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DERMS_BRIDGE_")}
    done = subprocess.run(  # noqa: S603
        [str(console_script()), "check-config", "--config", str(config)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def settings_yaml(lookups_dir: Path | str, *, cpmcs_url: str = "https://cpmcs.example/") -> str:
    return f"""\
connections:
  cpmcs:
    base_url: {cpmcs_url}
  derms:
    default:
      base_url: https://derms.example/
callers:
  cpmcs:
    role: cpmcs
    token_sha256: "{hashlib.sha256(b"the cpmcs caller's token").hexdigest()}"
smtp:
  port: 587
lookups_dir: {lookups_dir}
"""


def line_of(text: str, fragment: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} is not in the text")


@pytest.fixture
def lookups(tmp_path: Path) -> Path:
    """A copy of the shipped lookups that a test may break."""
    copy = tmp_path / "lookups"
    shutil.copytree(SHIPPED_LOOKUPS, copy)
    return copy


def lookup_file(directory: Path, name: str) -> Path:
    return directory / f"{PREFIX}{name}.csv"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_config_prints_ok_and_exits_0(tmp_path: Path, lookups: Path) -> None:
    config = write(tmp_path / "bridge.yaml", settings_yaml(lookups))

    run = check_config(config, tmp_path)

    assert run.code == 0, run.stderr
    assert run.stdout.startswith(f"ok {config}: 2 connections, 1 callers; 13 lookups in {lookups}")
    assert run.stderr == ""


EXAMPLE = ROOT / "config" / "derms-bridge.example.yaml"
EXAMPLE_PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$REPLACE$WITH-derms-bridge-hash-password"


def example_settings(tmp_path: Path, text: str) -> Path:
    return write(
        tmp_path / "example.yaml",
        text.replace("lookups_dir: config/lookups", f"lookups_dir: {SHIPPED_LOOKUPS}"),
    )


def test_the_shipped_example_settings_are_refused_until_each_placeholder_is_replaced(
    tmp_path: Path,
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    config = example_settings(tmp_path, text)

    run = check_config(config, tmp_path)

    assert run.code == 2
    placeholders = [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if "change-me" in line or "0" * 64 in line
    ]
    assert len(placeholders) == 5
    for number in placeholders:
        assert any(
            error.startswith(f"error {config}:{number}: ") and "placeholder" in error
            for error in run.errors
        ), (number, run.stderr)
    assert sum("password_hash must be an argon2 hash" in error for error in run.errors) == 2


def test_the_shipped_example_settings_pass_with_real_secrets(tmp_path: Path) -> None:
    from argon2 import PasswordHasher

    # The example's key file is where a deployment keeps it; here, a file of the test's own.
    oci_key = write(tmp_path / "oci_api_key.pem", "a PEM private key")
    text = (
        EXAMPLE.read_text(encoding="utf-8")
        .replace("change-me", "a-secret-of-the-utility")
        .replace(EXAMPLE_PASSWORD_HASH, PasswordHasher().hash("a caller's password"))
        .replace("0" * 64, hashlib.sha256(b"a scraper's token").hexdigest())
        .replace("/etc/derms-bridge/oci_api_key.pem", str(oci_key))
    )
    config = example_settings(tmp_path, text)

    run = check_config(config, tmp_path)

    assert run.code == 0, run.stderr
    assert run.stdout.startswith(f"ok {config}: 2 connections, 3 callers; 13 lookups")
    # STARTTLS to the mail server, FTPS to CPMCS's FTP: no password goes in the clear.
    assert run.stderr == ""


def test_a_password_sent_without_tls_is_warned_of_by_its_setting_never_its_value(
    tmp_path: Path, lookups: Path
) -> None:
    text = settings_yaml(lookups).replace(
        "smtp:\n  port: 587\n",
        "smtp:\n  host: mail.example\n  port: 587\n  username: hub\n  password: smtp-s3cret\n",
    )
    text += """\
file_stores:
  ftp:
    type: ftp
    host: ftp.example
    username: dacs
    password: ftp-s3cret
"""
    config = write(tmp_path / "bridge.yaml", text)

    run = check_config(config, tmp_path)

    assert run.code == 0, run.stderr
    assert run.stdout.startswith(f"ok {config}: ")
    assert run.stderr.splitlines() == [
        f"warning {config}: smtp: a password is set but security is none, so it goes to the "
        "mail server unencrypted (set smtp.security to starttls or tls)",
        f"warning {config}: file_stores.ftp: a password is set but tls is off, so it goes to "
        "the FTP server unencrypted (set file_stores.ftp.tls to true, or use sftp)",
    ]
    assert "s3cret" not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("smtp", "ftp"),
    [
        ("  security: tls\n", "    type: ftp\n    host: ftp.example\n    tls: true\n"),
        ("  security: starttls\n", "    type: sftp\n    host: sftp.example\n"),
        ("  host: localhost\n", "    type: ftp\n    host: 127.0.0.1\n"),
    ],
    ids=["tls and ftps", "starttls and sftp", "servers on this machine's loopback"],
)
def test_a_password_that_never_crosses_a_network_in_the_clear_is_not_warned_of(
    tmp_path: Path, lookups: Path, smtp: str, ftp: str
) -> None:
    text = settings_yaml(lookups).replace(
        "smtp:\n  port: 587\n", f"smtp:\n  port: 587\n  username: hub\n  password: s3cret\n{smtp}"
    )
    text += f"file_stores:\n  ftp:\n{ftp}    username: dacs\n    password: s3cret\n"
    config = write(tmp_path / "bridge.yaml", text)

    run = check_config(config, tmp_path)

    assert run.code == 0, run.stderr
    assert run.stderr == ""


def test_two_mistakes_are_both_reported_with_file_line_and_field(
    tmp_path: Path, lookups: Path
) -> None:
    # A deployment's layout: the lookups under the working directory, as the default says.
    shutil.copytree(lookups, tmp_path / "config" / "lookups")
    text = settings_yaml("config/lookups", cpmcs_url="not a url").replace(
        "port: 587", "port: 99999"
    )
    config = write(tmp_path / "bad.yaml", text)

    run = check_config(config, tmp_path)

    assert run.code == 2
    assert run.stdout == ""
    assert len(run.errors) == 2, run.stderr
    url_line, port_line = line_of(text, "not a url"), line_of(text, "99999")
    assert run.errors[0].startswith(f"error {config}:{url_line}: connections.cpmcs.base_url: ")
    assert run.errors[1].startswith(f"error {config}:{port_line}: smtp.port: ")
    assert "65535" in run.errors[1]


def test_a_config_that_is_not_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    text = "connections:\n  cpmcs: a: b\n"
    config = write(tmp_path / "broken.yaml", text)

    run = check_config(config, ROOT)

    assert run.code == 2
    assert run.errors[0].startswith(f"error {config}:2:")
    assert "not valid YAML" in run.errors[0]


def test_a_yaml_mistake_on_a_secret_line_names_the_place_never_the_secret(
    tmp_path: Path,
) -> None:
    config = write(tmp_path / "broken.yaml", "smtp:\n  password: s3cret: oops\n")

    run = check_config(config, tmp_path)

    assert run.code == 2
    assert run.errors[0] == (
        f"error {config}:2:19: not valid YAML: mapping values are not allowed here"
    )
    assert "s3cret" not in run.stdout + run.stderr


def test_every_broken_lookup_is_reported_with_its_file_and_line(
    tmp_path: Path, lookups: Path
) -> None:
    asset_spec = lookup_file(lookups, "AssetSpec")
    spec_text = asset_spec.read_text(encoding="utf-8") + "ECOBEE!SMART5,X1OTHER\n"
    write(asset_spec, spec_text)
    duplicate_line = len(spec_text.splitlines())
    lookup_file(lookups, "WeekDay").unlink()
    props = lookup_file(lookups, "ConfigProps")
    write(
        props,
        "".join(
            line
            for line in props.read_text(encoding="utf-8").splitlines(keepends=True)
            if not line.startswith("notification.type.email,")
        ),
    )
    event_type = lookup_file(lookups, "EventType")
    write(event_type, "DERMS\nECONOMIC\n")
    config = write(tmp_path / "bridge.yaml", settings_yaml(lookups))

    run = check_config(config, tmp_path)

    assert run.code == 2
    assert run.stdout == ""
    errors = run.errors
    assert f"error {asset_spec}:{duplicate_line}: DERMS 'ECOBEE!SMART5' appears twice" in errors
    assert f"error {lookup_file(lookups, 'WeekDay')}: missing" in errors
    assert f"error {props}: property notification.type.email is missing" in errors
    assert f"error {event_type}:1: the header needs two columns or more" in errors
    assert len(errors) == 4, run.stderr


def test_a_routing_file_without_a_default_row_is_reported(tmp_path: Path, lookups: Path) -> None:
    routing = write(lookup_file(lookups, "Routing"), "division,connection\nNORTH,default\n")
    config = write(tmp_path / "bridge.yaml", settings_yaml(lookups))

    run = check_config(config, tmp_path)

    assert run.code == 2
    assert run.errors == [f"error {routing}: no '*' row for other divisions"]


def test_a_route_to_an_undefined_derms_connection_is_reported(
    tmp_path: Path, lookups: Path
) -> None:
    routing = write(
        lookup_file(lookups, "Routing"), "division,connection\n*,default\nNORTH,north\n"
    )
    config = write(tmp_path / "bridge.yaml", settings_yaml(lookups))

    run = check_config(config, tmp_path)

    assert run.code == 2
    [error] = run.errors
    assert error.startswith(f"error {routing}")
    assert "'NORTH'" in error
    assert "'north'" in error
    assert str(config) in error


def test_a_route_to_an_undefined_derms_connection_names_its_line(
    tmp_path: Path, lookups: Path
) -> None:
    routing = write(
        lookup_file(lookups, "Routing"), "division,connection\n*,default\nNORTH,north\n"
    )
    config = write(tmp_path / "bridge.yaml", settings_yaml(lookups))

    run = check_config(config, tmp_path)

    assert run.errors[0].startswith(f"error {routing}:3: ")


def test_a_settings_mistake_does_not_hide_the_lookup_mistakes(
    tmp_path: Path, lookups: Path
) -> None:
    asset_spec = lookup_file(lookups, "AssetSpec")
    write(asset_spec, asset_spec.read_text(encoding="utf-8") + "ECOBEE!SMART5,X1OTHER\n")
    text = settings_yaml(lookups).replace("port: 587", "port: 99999")
    config = write(tmp_path / "bad.yaml", text)

    run = check_config(config, tmp_path)

    assert run.code == 2
    assert any(e.startswith(f"error {config}:") and "smtp.port" in e for e in run.errors)
    assert any(str(asset_spec) in e and "appears twice" in e for e in run.errors), run.stderr
    assert len(run.errors) == 2, run.stderr


def test_a_segment_over_cpmcs_list_limit_is_refused_naming_field_and_limit(
    tmp_path: Path, lookups: Path
) -> None:
    text = settings_yaml(lookups) + "segments:\n  size: 2001\n"
    config = write(tmp_path / "bridge.yaml", text)

    run = check_config(config, tmp_path)

    assert run.code == 2
    [error] = run.errors
    assert error.startswith(f"error {config}:{line_of(text, 'size: 2001')}: segments.size: ")
    assert "2000" in error


def test_a_segment_of_cpmcs_whole_list_limit_is_accepted(tmp_path: Path, lookups: Path) -> None:
    config = write(tmp_path / "bridge.yaml", settings_yaml(lookups) + "segments:\n  size: 2000\n")

    assert check_config(config, tmp_path).code == 0


@pytest.mark.parametrize("value", ["true", "email", "TRUE", "false"])
def test_the_email_type_may_be_true_email_or_false(
    tmp_path: Path, lookups: Path, value: str
) -> None:
    props = lookup_file(lookups, "ConfigProps")
    text = props.read_text(encoding="utf-8")
    write(props, text.replace("notification.type.email,email", f"notification.type.email,{value}"))
    config = write(tmp_path / "bridge.yaml", settings_yaml(lookups))

    run = check_config(config, tmp_path)

    assert run.code == 0, run.stderr


def test_another_email_type_is_refused_naming_its_row(tmp_path: Path, lookups: Path) -> None:
    props = lookup_file(lookups, "ConfigProps")
    text = props.read_text(encoding="utf-8").replace(
        "notification.type.email,email", "notification.type.email,sms"
    )
    write(props, text)
    config = write(tmp_path / "bridge.yaml", settings_yaml(lookups))

    run = check_config(config, tmp_path)

    assert run.code == 2
    assert run.errors == [
        f"error {props}:{line_of(text, 'notification.type.email')}: notification.type.email "
        "is 'sms'; it must be true or email (error emails go) or false (they do not)"
    ]
