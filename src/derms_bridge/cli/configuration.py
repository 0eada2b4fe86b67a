"""The commands that help write the settings: check-config, hash-password, hash-token."""

from __future__ import annotations

import typer

from derms_bridge.cli.common import EXIT_REFUSED, ConfigOption, err, out, print_problems
from derms_bridge.lookups import LookupFileError, load_lookups
from derms_bridge.settings import (
    DEFAULT_SETTINGS_FILE,
    SettingsError,
    load_settings,
    lookups_dir_of,
    unsafe_settings,
)


def check_config(config: ConfigOption = DEFAULT_SETTINGS_FILE) -> None:
    """Load the settings and every lookup; report each mistake with its file, line and field,
    and warn of a setting that is unsafe (a password sent without TLS)."""
    problems: list[str] = []
    settings = None
    try:
        settings = load_settings(config)
    except SettingsError as exc:
        problems.extend(exc.problems)
    lookups_dir = settings.lookups_dir if settings else lookups_dir_of(config)
    try:
        lookups = load_lookups(lookups_dir)
    except LookupFileError as exc:
        problems.extend(exc.problems)
        lookups = None
    if settings is not None and lookups is not None:
        routing = lookups.tables["Routing"]
        for division, name in routing.rows.items():
            if name not in settings.connections.derms:
                problems.append(
                    f"{lookups_dir / routing.full_name}.csv:{routing.lines[division]}: "
                    f"division {division!r} goes to DERMS connection {name!r}, "
                    f"which {config} does not define"
                )
    if problems:
        print_problems(problems)
        raise typer.Exit(EXIT_REFUSED)
    assert settings is not None
    assert lookups is not None
    for unsafe in unsafe_settings(settings):
        err.print(f"[yellow]warning[/] {config}: {unsafe}", highlight=False)
    out.print(
        f"[green]ok[/] {config}: {1 + len(settings.connections.derms)} connections, "
        f"{len(settings.callers)} callers; {len(lookups.tables)} lookups in {lookups_dir}",
        highlight=False,
    )


def hash_password_command() -> None:
    """Print the argon2 hash of a caller's password, for `callers.<name>.password_hash`."""
    from derms_bridge.credentials import hash_password

    password = typer.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
    out.print(hash_password(password), highlight=False)


def hash_token_command() -> None:
    """Print the SHA-256 of a bearer token, for `callers.<name>.token_sha256`."""
    from derms_bridge.credentials import hash_token

    token = typer.prompt("token", hide_input=True, confirmation_prompt=True, err=True)
    out.print(hash_token(token), highlight=False)
