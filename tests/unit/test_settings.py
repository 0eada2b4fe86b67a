"""load_settings: a YAML file, DERMS_BRIDGE_* variables over it, and errors that point into it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from derms_bridge.credentials import hash_password
from derms_bridge.settings import Settings, SettingsError, load_settings
from derms_bridge.settings.connections import BasicAuth, OAuth2ClientCredentials

CPMCS_PASSWORD = "cpmcs-Basic-pw-7781"
CLIENT_SECRET = "oauth-Client-secret-9932"
SMTP_PASSWORD = "smtp-Mailbox-pw-4410"
OPERATOR_PASSWORD = "operator-login-pw"
DATABASE_PASSWORD = "db-Pass-word-5521"


def full_yaml(operator_hash: str) -> str:
    return f"""\
server:
  host: 10.0.0.5
  port: 9090
database:
  url: postgresql://bridge:{DATABASE_PASSWORD}@db.example/bridge
  migrate_on_start: false
connections:
  cpmcs:
    base_url: https://cpmcs.example/
    timeouts:
      connect: 3
      read: 20
    auth:
      type: basic
      username: hub
      password: {CPMCS_PASSWORD}
  derms:
    default:
      base_url: https://derms.example/
      auth:
        type: oauth2
        token_url: https://idp.example/oauth2/token
        client_id: derms-bridge
        client_secret: {CLIENT_SECRET}
        scope: derms.write
    north:
      base_url: https://derms-north.example/
      max_connections: 10
callers:
  derms:
    role: derms
    token_sha256: {"ab" * 32}
  ops:
    role: operator
    username: ops
    password_hash: "{operator_hash}"
smtp:
  host: smtp.example
  port: 587
  username: bridge
  password: {SMTP_PASSWORD}
  security: starttls
limits:
  enrollment_concurrency: 8
"""


def minimal_yaml() -> str:
    return """\
connections:
  cpmcs:
    base_url: https://cpmcs.example/
  derms:
    default:
      base_url: https://derms.example/
"""


def line_of(text: str, fragment: str) -> int:
    """The 1-based line of the first line of `text` that holds `fragment`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} is not in the text")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DERMS_BRIDGE_* variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.upper().startswith("DERMS_BRIDGE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def operator_hash() -> str:
    return hash_password(OPERATOR_PASSWORD)


def write(tmp_path: Path, text: str, name: str = "derms-bridge.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert caught.value.source == str(path)
    return caught.value.problems


def test_a_full_file_loads(tmp_path: Path, operator_hash: str) -> None:
    settings = load_settings(write(tmp_path, full_yaml(operator_hash)))

    assert (settings.server.host, settings.server.port) == ("10.0.0.5", 9090)
    assert settings.database.migrate_on_start is False
    cpmcs = settings.connections.cpmcs
    assert str(cpmcs.base_url) == "https://cpmcs.example/"
    assert (cpmcs.timeouts.connect, cpmcs.timeouts.read) == (3, 20)
    assert isinstance(cpmcs.auth, BasicAuth)
    assert cpmcs.auth.password.get_secret_value() == CPMCS_PASSWORD
    assert sorted(settings.connections.derms) == ["default", "north"]
    default = settings.connections.derms["default"].auth
    assert isinstance(default, OAuth2ClientCredentials)
    assert str(default.token_url) == "https://idp.example/oauth2/token"
    assert default.client_secret.get_secret_value() == CLIENT_SECRET
    assert default.scope == "derms.write"
    assert settings.connections.derms["north"].max_connections == 10
    assert settings.connections.derms["north"].auth is None
    assert settings.callers["ops"].role == "operator"
    assert settings.callers["ops"].username == "ops"
    assert settings.callers["derms"].token_sha256 is not None
    assert settings.smtp.host == "smtp.example"
    assert settings.smtp.port == 587
    assert settings.smtp.security == "starttls"
    assert settings.smtp.password is not None
    assert settings.smtp.password.get_secret_value() == SMTP_PASSWORD
    assert settings.limits.enrollment_concurrency == 8
    assert settings.limits.max_json_body_bytes == 50 * 1024 * 1024


def test_a_minimal_file_takes_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, minimal_yaml()))

    assert settings.limits.max_json_body_bytes == 50 * 1024 * 1024
    assert settings.limits.enrollment_concurrency == 32
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.connections.cpmcs.timeouts.read == 30
    assert settings.callers == {}
    assert settings.lookups_dir == Path("config/lookups")


def test_environment_variables_override_nested_values(
    tmp_path: Path, operator_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DERMS_BRIDGE_CONNECTIONS__CPMCS__BASE_URL", "http://cpmcs.internal:8443/")
    monkeypatch.setenv("DERMS_BRIDGE_LIMITS__ENROLLMENT_CONCURRENCY", "32")
    monkeypatch.setenv("DERMS_BRIDGE_SMTP__PASSWORD", "smtp-from-env")
    monkeypatch.setenv("DERMS_BRIDGE_SERVER__PORT", "9191")

    settings = load_settings(write(tmp_path, full_yaml(operator_hash)))

    assert str(settings.connections.cpmcs.base_url) == "http://cpmcs.internal:8443/"
    assert settings.limits.enrollment_concurrency == 32
    assert settings.server.port == 9191
    assert settings.smtp.password is not None
    assert settings.smtp.password.get_secret_value() == "smtp-from-env"
    # What the variables leave alone still comes from the file.
    assert isinstance(settings.connections.cpmcs.auth, BasicAuth)
    assert settings.connections.cpmcs.auth.password.get_secret_value() == CPMCS_PASSWORD
    assert settings.connections.cpmcs.timeouts.read == 20
    assert settings.smtp.host == "smtp.example"
    assert settings.server.host == "10.0.0.5"


def test_environment_variables_alone_can_supply_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DERMS_BRIDGE_CONNECTIONS__CPMCS__BASE_URL", "http://cpmcs.env/")
    monkeypatch.setenv("DERMS_BRIDGE_CONNECTIONS__DERMS__DEFAULT__BASE_URL", "http://derms.env/")
    monkeypatch.setenv("DERMS_BRIDGE_DATABASE__URL", "sqlite:///env.db")

    settings = load_settings(tmp_path / "absent.yaml")

    assert str(settings.connections.cpmcs.base_url) == "http://cpmcs.env/"
    assert str(settings.connections.derms["default"].base_url) == "http://derms.env/"
    assert settings.database.url.get_secret_value() == "sqlite:///env.db"


def test_a_secret_can_come_from_the_environment_alone(
    tmp_path: Path, operator_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As docs/configuration.md advises: the file names the auth, the variable holds the secret.
    text = full_yaml(operator_hash).replace(f"        client_secret: {CLIENT_SECRET}\n", "")
    monkeypatch.setenv("DERMS_BRIDGE_CONNECTIONS__DERMS__DEFAULT__AUTH__CLIENT_SECRET", "from-env")

    settings = load_settings(write(tmp_path, text))

    auth = settings.connections.derms["default"].auth
    assert isinstance(auth, OAuth2ClientCredentials)
    assert auth.client_secret.get_secret_value() == "from-env"
    assert auth.client_id == "derms-bridge"


def test_the_cli_config_variable_is_not_taken_for_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `derms-bridge --config` reads DERMS_BRIDGE_CONFIG; the settings must not refuse it.
    path = write(tmp_path, minimal_yaml())
    monkeypatch.setenv("DERMS_BRIDGE_CONFIG", str(path))

    assert str(load_settings(path).connections.cpmcs.base_url) == "https://cpmcs.example/"


def test_a_bad_base_url_names_file_line_and_field(tmp_path: Path) -> None:
    text = minimal_yaml().replace("base_url: https://cpmcs.example/", "base_url: not a url")
    path = write(tmp_path, text)

    [problem] = problems_of(path)

    assert problem.startswith(f"{path}:{line_of(text, 'not a url')}: connections.cpmcs.base_url: ")
    assert "URL" in problem


def test_every_mistake_is_reported_with_its_line(tmp_path: Path) -> None:
    text = minimal_yaml() + "smtp:\n  port: 99999\nlimits:\n  enrollment_concurrency: 0\n"
    text = text.replace("https://derms.example/", "ftp://derms.example/")
    path = write(tmp_path, text)

    problems = problems_of(path)

    assert len(problems) == 3, problems
    expected = [
        (line_of(text, "ftp://"), "connections.derms.default.base_url"),
        (line_of(text, "99999"), "smtp.port"),
        (line_of(text, "enrollment_concurrency"), "limits.enrollment_concurrency"),
    ]
    for line, field in expected:
        assert any(p.startswith(f"{path}:{line}: {field}: ") for p in problems), (field, problems)


@pytest.mark.parametrize(
    ("addition", "field"),
    [
        ("bogus: 1\n", "bogus"),
        ("limits:\n  max_body: 10\n", "limits.max_body"),
    ],
)
def test_an_unknown_key_is_refused(tmp_path: Path, addition: str, field: str) -> None:
    text = minimal_yaml() + addition
    path = write(tmp_path, text)

    [problem] = problems_of(path)

    line = line_of(text, field.rsplit(".", 1)[-1] + ":")
    assert problem.startswith(f"{path}:{line}: {field}: ")
    assert "not permitted" in problem


def test_an_unknown_key_in_a_connection_is_refused(tmp_path: Path) -> None:
    text = minimal_yaml() + "      retries: 3\n"
    path = write(tmp_path, text)

    [problem] = problems_of(path)

    assert problem.startswith(
        f"{path}:{line_of(text, 'retries')}: connections.derms.default.retries"
    )


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    text = minimal_yaml().replace("  derms:\n", "  derms: oops: here\n")
    path = write(tmp_path, text)

    [problem] = problems_of(path)

    assert problem.startswith(f"{path}:{line_of(text, 'oops')}:")
    assert "not valid YAML" in problem


def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "- cpmcs\n- derms\n")

    assert problems_of(path) == [f"{path}: the top level must be a mapping"]


def test_a_missing_file_and_no_variables_asks_for_the_connections(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    problems = problems_of(path)

    assert problems == [f"{path}: connections: Field required"]


def test_no_derms_connection_is_refused(tmp_path: Path) -> None:
    text = minimal_yaml().split("  derms:")[0] + "  derms: {}\n"
    path = write(tmp_path, text)

    [problem] = problems_of(path)

    assert problem.startswith(f"{path}:{line_of(text, 'derms: {}')}: connections.derms: ")
    assert "at least one DERMS connection" in problem


def test_a_plain_password_instead_of_a_hash_is_refused(tmp_path: Path) -> None:
    text = minimal_yaml() + (
        "callers:\n  ops:\n    role: operator\n    username: ops\n"
        f"    password_hash: {OPERATOR_PASSWORD}\n"
    )
    path = write(tmp_path, text)

    [problem] = problems_of(path)

    assert problem.startswith(f"{path}:")
    assert "callers.ops" in problem
    assert "argon2" in problem
    assert OPERATOR_PASSWORD not in problem


def test_credentials_in_a_base_url_are_refused_without_showing_them(tmp_path: Path) -> None:
    text = minimal_yaml().replace(
        "https://cpmcs.example/", f"https://hub:{CPMCS_PASSWORD}@cpmcs.example/"
    )
    path = write(tmp_path, text)

    [problem] = problems_of(path)

    assert problem.startswith(f"{path}:{line_of(text, '@cpmcs')}: connections.cpmcs.base_url: ")
    assert "auth" in problem
    assert CPMCS_PASSWORD not in problem


def test_an_unknown_auth_type_is_refused(tmp_path: Path) -> None:
    text = minimal_yaml().replace(
        "base_url: https://cpmcs.example/",
        "base_url: https://cpmcs.example/\n    auth:\n      type: kerberos",
    )
    path = write(tmp_path, text)

    [problem] = problems_of(path)

    assert f"{path}:" in problem
    assert "connections.cpmcs.auth" in problem
    assert "kerberos" in problem or "basic" in problem


def test_a_missing_auth_field_names_the_field_as_written_in_the_file(tmp_path: Path) -> None:
    text = minimal_yaml().replace(
        "base_url: https://cpmcs.example/",
        "base_url: https://cpmcs.example/\n    auth:\n      type: basic\n      username: hub",
    )
    path = write(tmp_path, text)

    [problem] = problems_of(path)

    assert ": connections.cpmcs.auth.password: " in problem


def test_a_bad_environment_value_names_the_variable(
    tmp_path: Path, operator_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DERMS_BRIDGE_LIMITS__ENROLLMENT_CONCURRENCY", "0")
    path = write(tmp_path, full_yaml(operator_hash))

    [problem] = problems_of(path)

    assert "limits.enrollment_concurrency" in problem
    assert "DERMS_BRIDGE_LIMITS__ENROLLMENT_CONCURRENCY" in problem


def test_secrets_never_appear_when_the_settings_are_shown(
    tmp_path: Path, operator_hash: str
) -> None:
    settings = load_settings(write(tmp_path, full_yaml(operator_hash)))

    shown = [repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())]

    for text in shown:
        for secret in (CPMCS_PASSWORD, CLIENT_SECRET, SMTP_PASSWORD, DATABASE_PASSWORD):
            assert secret not in text
        assert operator_hash not in text
    # They are still there for the code that needs them.
    assert isinstance(settings.connections.cpmcs.auth, BasicAuth)
    assert settings.connections.cpmcs.auth.password.get_secret_value() == CPMCS_PASSWORD


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, minimal_yaml()))

    with pytest.raises(ValueError, match="frozen"):
        settings.limits.enrollment_concurrency = 1  # type: ignore[misc]
    assert isinstance(settings, Settings)


def test_a_process_silence_shorter_than_two_heartbeats_is_refused(tmp_path: Path) -> None:
    text = minimal_yaml() + "processes:\n  heartbeat_seconds: 10\n  stopped_after_seconds: 15\n"

    [problem] = problems_of(write(tmp_path, text))

    assert "processes" in problem
    assert "stopped_after_seconds must be at least twice heartbeat_seconds" in problem


def test_a_missing_object_storage_key_file_is_named_before_anything_starts(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "oci_api_key.pem"
    text = minimal_yaml() + (
        "file_stores:\n"
        "  object_storage:\n"
        "    type: oci\n"
        "    region: us-ashburn-1\n"
        "    tenancy: ocid1.tenancy.oc1..a\n"
        "    user: ocid1.user.oc1..a\n"
        '    fingerprint: "12:34"\n'
        f"    key_file: {missing}\n"
    )
    path = write(tmp_path, text)

    [problem] = problems_of(path)

    assert problem.startswith(f"{path}:{line_of(text, 'key_file')}: ")
    assert (
        f"file_stores.object_storage.key_file: Value error, key file {missing} does not exist"
        in (problem)
    )


def derms_caller_yaml(role: str, connection: str) -> str:
    return minimal_yaml() + (
        f"callers:\n  north:\n    role: {role}\n    token_sha256: {'ab' * 32}\n"
        f"    derms_connection: {connection}\n"
    )


def test_a_derms_caller_names_where_its_files_acknowledgements_go(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, derms_caller_yaml("derms", "default")))

    assert settings.callers["north"].derms_connection == "default"


def test_a_caller_naming_an_unknown_derms_connection_is_refused(tmp_path: Path) -> None:
    [problem] = problems_of(write(tmp_path, derms_caller_yaml("derms", "south")))

    assert "callers.north.derms_connection" in problem
    assert "'south' is not a DERMS connection (connections.derms: default)" in problem


def test_only_a_derms_caller_names_a_derms_connection(tmp_path: Path) -> None:
    [problem] = problems_of(write(tmp_path, derms_caller_yaml("operator", "default")))

    assert "callers.north" in problem
    assert "only a caller of role derms sends files" in problem


@pytest.mark.parametrize("ratio", ["0", "1.5", "-0.1"])
def test_a_sample_ratio_outside_0_to_1_is_refused(tmp_path: Path, ratio: str) -> None:
    text = (
        minimal_yaml()
        + f"tracing:\n  endpoint: http://127.0.0.1:4318/v1/traces\n  sample_ratio: {ratio}\n"
    )

    [problem] = problems_of(write(tmp_path, text))

    assert "tracing.sample_ratio" in problem


def test_the_sample_ratio_defaults_to_every_trace(tmp_path: Path) -> None:
    text = minimal_yaml() + "tracing:\n  endpoint: http://127.0.0.1:4318/v1/traces\n"

    settings = load_settings(write(tmp_path, text))

    assert settings.tracing is not None
    assert settings.tracing.sample_ratio == 1.0
