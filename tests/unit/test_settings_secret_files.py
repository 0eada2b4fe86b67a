"""Secrets given as files (`<secret>_file`), in the settings file or in the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from derms_bridge.credentials import hash_password
from derms_bridge.settings import SettingsError, load_settings
from derms_bridge.settings.connections import BasicAuth, OAuth2ClientCredentials
from derms_bridge.settings.file_storage import S3Settings, SftpSettings

BASE = """\
connections:
  cpmcs:
    base_url: https://cpmcs.example/
    auth:
      type: oauth2
      token_url: https://idp.example/oauth2/token
      client_id: derms-bridge
      client_secret_file: {client_secret_file}
  derms:
    default:
      base_url: https://derms.example/
      auth:
        type: basic
        username: hub
        password: derms-Basic-pw-1180
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("DERMS_BRIDGE_"):
            monkeypatch.delenv(name)


def secret_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def settings_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "derms-bridge.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    return caught.value.problems


def test_a_secret_file_named_in_the_settings_file_gives_the_secret(tmp_path: Path) -> None:
    # As Docker and Kubernetes write them: the secret, then a line break that is no part of it.
    secret = secret_file(tmp_path, "client_secret", "oauth-From-file-7781\n")

    settings = load_settings(settings_file(tmp_path, BASE.format(client_secret_file=secret)))

    auth = settings.connections.cpmcs.auth
    assert isinstance(auth, OAuth2ClientCredentials)
    assert auth.client_secret.get_secret_value() == "oauth-From-file-7781"
    assert "oauth-From-file-7781" not in repr(settings) + settings.model_dump_json()


def test_a_secret_file_named_in_the_environment_wins_over_the_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_file = secret_file(tmp_path, "from-yaml", "yaml-secret")
    from_env = secret_file(tmp_path, "from-env", "env-Secret-3310\r\n")
    monkeypatch.setenv("DERMS_BRIDGE_CONNECTIONS__CPMCS__AUTH__CLIENT_SECRET_FILE", str(from_env))
    monkeypatch.setenv(
        "DERMS_BRIDGE_CONNECTIONS__DERMS__DEFAULT__AUTH__PASSWORD_FILE", str(in_file)
    )

    settings = load_settings(settings_file(tmp_path, BASE.format(client_secret_file=in_file)))

    cpmcs = settings.connections.cpmcs.auth
    derms = settings.connections.derms["default"].auth
    assert isinstance(cpmcs, OAuth2ClientCredentials) and isinstance(derms, BasicAuth)
    assert cpmcs.client_secret.get_secret_value() == "env-Secret-3310"
    # The variable's file replaces the password the settings file wrote out.
    assert derms.password.get_secret_value() == "yaml-secret"


def test_every_kind_of_secret_can_be_a_file(tmp_path: Path) -> None:
    operator_hash = hash_password("operator-login-pw")
    files = {
        name: secret_file(tmp_path, name, value)
        for name, value in {
            "db": "postgresql://hub:db-Pw-1@db.internal/derms_bridge\n",
            "hash": operator_hash + "\n",
            "token": "ab" * 32 + "\n",
            "metrics": "cd" * 32,
            "smtp": "smtp-Pw-2\n",
            "session": "s" * 40 + "\n",
            "ftp": "ftp-Pw-3\n",
            "passphrase": "key-Passphrase-4\n",
            "s3": "s3-Secret-5\n",
        }.items()
    }
    key = secret_file(tmp_path, "id_ed25519", "not read by the settings\n")
    text = BASE.format(client_secret_file=secret_file(tmp_path, "cs", "x")) + (
        f"database:\n  url_file: {files['db']}\n"
        f"callers:\n"
        f"  ops:\n    role: operator\n    username: ops\n    password_hash_file: {files['hash']}\n"
        f"  derms:\n    role: derms\n    token_sha256_file: {files['token']}\n"
        f"metrics:\n  token_sha256_file: {files['metrics']}\n"
        f"smtp:\n  password_file: {files['smtp']}\n"
        f"console:\n  session_secret_file: {files['session']}\n"
        f"file_stores:\n"
        f"  ftp:\n    type: sftp\n    host: sftp.example\n    username: cpmcs\n"
        f"    password_file: {files['ftp']}\n"
        f"    private_key: {key}\n    private_key_passphrase_file: {files['passphrase']}\n"
        f"  object_storage:\n    type: s3\n    access_key_id: AKIA1\n"
        f"    secret_access_key_file: {files['s3']}\n"
    )

    settings = load_settings(settings_file(tmp_path, text))

    assert settings.database.url.get_secret_value().startswith("postgresql://hub:db-Pw-1@")
    assert settings.callers["ops"].password_hash is not None
    assert settings.callers["ops"].password_hash.get_secret_value() == operator_hash
    assert settings.callers["derms"].token_sha256 is not None
    assert settings.callers["derms"].token_sha256.get_secret_value() == "ab" * 32
    assert settings.metrics.token_sha256 is not None
    assert settings.metrics.token_sha256.get_secret_value() == "cd" * 32
    assert settings.smtp.password is not None
    assert settings.smtp.password.get_secret_value() == "smtp-Pw-2"
    assert settings.console.session_secret is not None
    assert settings.console.session_secret.get_secret_value() == "s" * 40
    sftp, s3 = settings.file_stores.ftp, settings.file_stores.object_storage
    assert isinstance(sftp, SftpSettings) and isinstance(s3, S3Settings)
    assert sftp.password is not None
    assert sftp.password.get_secret_value() == "ftp-Pw-3"
    assert s3.secret_access_key.get_secret_value() == "s3-Secret-5"
    assert sftp.private_key_passphrase is not None
    assert sftp.private_key_passphrase.get_secret_value() == "key-Passphrase-4"


def test_a_missing_secret_file_names_the_setting_its_line_and_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"

    path = settings_file(tmp_path, BASE.format(client_secret_file=missing))

    assert problems_of(path) == [
        f"{path}:8: connections.cpmcs.auth.client_secret_file: {missing} does not exist"
    ]


def test_a_missing_secret_file_named_in_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = secret_file(tmp_path, "cs", "x")
    monkeypatch.setenv("DERMS_BRIDGE_SMTP__PASSWORD_FILE", "/run/secrets/absent")

    problems = problems_of(settings_file(tmp_path, BASE.format(client_secret_file=good)))

    assert problems == [
        "DERMS_BRIDGE_SMTP__PASSWORD_FILE (environment): smtp.password_file: "
        "/run/secrets/absent does not exist"
    ]


def test_an_unreadable_or_empty_secret_file_is_refused(tmp_path: Path) -> None:
    empty = secret_file(tmp_path, "empty", "\n")
    directory = tmp_path / "a-directory"
    directory.mkdir()

    [empty_problem] = problems_of(settings_file(tmp_path, BASE.format(client_secret_file=empty)))
    [dir_problem] = problems_of(settings_file(tmp_path, BASE.format(client_secret_file=directory)))

    assert empty_problem.endswith(f"connections.cpmcs.auth.client_secret_file: {empty} is empty")
    assert dir_problem.endswith(
        f"connections.cpmcs.auth.client_secret_file: {directory} cannot be read (Is a directory)"
    )


def test_a_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    secret = secret_file(tmp_path, "cs", "from-file")
    text = BASE.format(client_secret_file=secret).replace(
        "client_id: derms-bridge", "client_id: derms-bridge\n      client_secret: written-Out-5512"
    )

    [problem] = problems_of(settings_file(tmp_path, text))

    assert "client_secret_file: give client_secret or client_secret_file, not both" in problem
    assert "written-Out-5512" not in problem


def test_a_file_for_a_setting_that_is_no_secret_is_an_unknown_key(tmp_path: Path) -> None:
    text = BASE.format(client_secret_file=secret_file(tmp_path, "cs", "x")).replace(
        "client_id: derms-bridge", f"client_id_file: {tmp_path / 'cs'}"
    )

    problems = problems_of(settings_file(tmp_path, text))

    assert any("client_id_file: Extra inputs are not permitted" in p for p in problems)


def test_the_deploy_settings_load_with_their_secret_files(tmp_path: Path) -> None:
    deploy = Path(__file__).resolve().parents[2] / "deploy" / "derms-bridge.yaml"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    operator_hash = hash_password("operator-login-pw")
    for name, value in {
        "cpmcs-client-secret": "oauth-Secret-1",
        "derms-password": "derms-Basic-1",
        "caller-derms.hash": operator_hash,
        "caller-operator.hash": operator_hash,
        "caller-cpmcs.sha256": "ab" * 32,
        "smtp-password": "smtp-Pw-1",
        "metrics-token.sha256": "cd" * 32,
        "console-session-secret": "s" * 48,
    }.items():
        secret_file(credentials, name, value + "\n")
    text = deploy.read_text(encoding="utf-8").replace(
        "/etc/derms-bridge/credentials/", f"{credentials}/"
    )

    settings = load_settings(settings_file(tmp_path, text))

    assert settings.server.trusted_proxies == ["127.0.0.1"]
    assert settings.console.behind_proxy is True
    assert settings.smtp.password is not None
    assert settings.smtp.password.get_secret_value() == "smtp-Pw-1"


def test_a_tracing_header_can_be_a_file_in_the_settings_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_yaml = secret_file(tmp_path, "api-key", "otlp-Key-From-yaml-1\n")
    from_env = secret_file(tmp_path, "authorization", "Bearer otlp-Token-From-env-2\n")
    text = BASE.format(client_secret_file=secret_file(tmp_path, "cs", "x")) + (
        "tracing:\n"
        "  endpoint: http://collector.internal:4318/v1/traces\n"
        f"  headers:\n    x-api-key:\n      value_file: {in_yaml}\n"
    )
    monkeypatch.setenv("DERMS_BRIDGE_TRACING__HEADERS__AUTHORIZATION__VALUE_FILE", str(from_env))

    settings = load_settings(settings_file(tmp_path, text))

    assert settings.tracing is not None
    values = {name: h.value.get_secret_value() for name, h in settings.tracing.headers.items()}
    assert values == {
        "x-api-key": "otlp-Key-From-yaml-1",
        "authorization": "Bearer otlp-Token-From-env-2",
    }
    shown = repr(settings) + settings.model_dump_json()
    assert "otlp-Key" not in shown and "otlp-Token" not in shown
