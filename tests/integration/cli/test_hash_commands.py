"""`derms-bridge hash-password` and `hash-token` print the hash alone on standard output, so
that it can go straight into a secret file (`password_hash_file`, `token_sha256_file`)."""

from __future__ import annotations

import hashlib
import subprocess

from argon2 import PasswordHasher

from tests.integration.cli.test_check_config import console_script


def hashed(command: str, secret: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [str(console_script()), command],
        input=f"{secret}\n{secret}\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_the_password_hash_alone_goes_to_standard_output() -> None:
    done = hashed("hash-password", "derms-Caller-pw-1")

    [line] = done.stdout.splitlines()
    assert PasswordHasher().verify(line, "derms-Caller-pw-1")
    assert "password" in done.stderr


def test_the_token_hash_alone_goes_to_standard_output() -> None:
    done = hashed("hash-token", "scraper-Token-1")

    assert done.stdout == hashlib.sha256(b"scraper-Token-1").hexdigest() + "\n"
