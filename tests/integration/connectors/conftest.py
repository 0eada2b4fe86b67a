"""Real file stores on 127.0.0.1 for the store adapters: pyftpdlib (plain and explicit
FTPS), an asyncssh SFTP server, the sandbox's OCI-speaking object store, moto's S3
(the plain FTP server and the object store are in tests/stores.py, shared with the flows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import boto3
import httpx
import pytest
import trustme
from pydantic import SecretStr

from derms_bridge.connectors.file_storage import open_storage
from derms_bridge.connectors.file_storage.interface import FileStorage, Folder
from derms_bridge.sandbox.ftp_server import FtpServer
from derms_bridge.sandbox.servers import LOOPBACK
from derms_bridge.settings.file_storage import (
    FtpSettings,
    LocalFolderSettings,
    OciObjectStorageSettings,
    S3Settings,
    SftpSettings,
)
from tests.ports import ports_to_bind
from tests.stores import (
    NAMESPACE,
    OCI_USER,
    PASSWORD,
    TENANCY,
    USER,
    WRONG_PASSWORD,
    OciServer,
)


@dataclass
class StoreUnderTest:
    """One store and what the shared behaviour tests need of it."""

    kind: str
    storage: FileStorage
    #: An empty folder (or bucket) of its own for this test.
    folder: Folder
    missing_folder: Folder
    #: The same store, logged in with WRONG_PASSWORD (or a key it does not know); None
    #: where there is no login (a local folder).
    refused: FileStorage | None
    #: Puts a sub-folder (or, in a bucket, an object under "name/") beside the files.
    add_subfolder: Callable[[str], object]


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A CA file for the client and a certificate-and-key file for the server."""
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("tls")
    ca_file, server_file = folder / "ca.pem", folder / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert(LOOPBACK).private_key_and_cert_chain_pem.write_to_path(str(server_file))
    return ca_file, server_file


@pytest.fixture(scope="session")
def ftps_server(ftp_root: Path, tls_ca: tuple[Path, Path]) -> Iterator[FtpServer]:
    with FtpServer(ftp_root, USER, PASSWORD, tls_cert=tls_ca[1]) as server:
        yield server


class _PasswordServer(asyncssh.SSHServer):
    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == USER and password == PASSWORD


@dataclass
class SftpServer:
    port: int
    root: Path
    host_key: asyncssh.SSHKey
    client_key_file: Path
    known_hosts_file: Path


@pytest.fixture(scope="session")
async def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SftpServer]:
    folder = tmp_path_factory.mktemp("sftp")
    root = folder / "root"
    root.mkdir()
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key_file = folder / "id_ed25519"
    client_key.write_private_key(client_key_file)
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
    listener = await asyncssh.listen(
        LOOPBACK,
        0,
        server_host_keys=[host_key],
        server_factory=_PasswordServer,
        authorized_client_keys=authorized,
        sftp_factory=lambda channel: asyncssh.SFTPServer(channel, chroot=os.fsencode(root)),
        allow_scp=False,
    )
    port = listener.get_port()
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[{LOOPBACK}]:{port} {host_key.export_public_key().decode()}")
    yield SftpServer(port, root, host_key, client_key_file, known_hosts)
    listener.close()
    await listener.wait_closed()


@dataclass
class S3Server:
    url: str
    access_key_id: str
    secret_access_key: str

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    # moto's server in a process of its own (rather than ThreadedMotoServer), so that the
    # memory the streaming test measures is the adapter's, not moto's copy of the objects.
    port = ports_to_bind()
    server = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-m", "moto.server", "--host", LOOPBACK, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{LOOPBACK}:{port}"
    # Generous: under a full suite on two cores moto's first answer (it loads every service's
    # backend for data.json) once took longer than 30 s.
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"{url}/moto-api/data.json", timeout=30).raise_for_status()
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.1)
    # moto takes any key until told to check them; a user with a key of its own, then
    # checks on, so that a wrong secret is refused as S3 refuses it.
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam.create_user(UserName=USER)
    iam.put_user_policy(
        UserName=USER,
        PolicyName="all-of-s3",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    httpx.post(f"{url}/moto-api/reset-auth", content=b"0").raise_for_status()
    yield S3Server(url, key["AccessKeyId"], key["SecretAccessKey"])
    server.terminate()
    server.wait(timeout=10)


def _unique(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}"


def _ftp_store(server: FtpServer, password: str, ca: Path | None) -> FileStorage:
    return open_storage(
        FtpSettings(
            host=LOOPBACK,
            port=server.port,
            username=USER,
            password=SecretStr(password),
            tls=ca is not None,
            ca_bundle=ca,
            timeout=10,
        )
    )


def _local_kind(root: Path) -> StoreUnderTest:
    (root / "inbound").mkdir()
    return StoreUnderTest(
        kind="local",
        storage=open_storage(LocalFolderSettings(root=root)),
        folder=Folder("inbound"),
        missing_folder=Folder("missing"),
        refused=None,
        add_subfolder=lambda name: (root / "inbound" / name).mkdir(),
    )


def _ftp_kind(request: pytest.FixtureRequest, tls: bool) -> StoreUnderTest:
    server: FtpServer = request.getfixturevalue("ftps_server" if tls else "ftp_server")
    ca = request.getfixturevalue("tls_ca")[0] if tls else None
    name = _unique("ftp")
    (server.root / name).mkdir()
    return StoreUnderTest(
        kind="ftps" if tls else "ftp",
        storage=_ftp_store(server, PASSWORD, ca),
        folder=Folder(f"/{name}"),
        missing_folder=Folder(f"/{name}-missing"),
        refused=_ftp_store(server, WRONG_PASSWORD, ca),
        add_subfolder=lambda sub: (server.root / name / sub).mkdir(),
    )


def _sftp_kind(request: pytest.FixtureRequest, with_key: bool) -> StoreUnderTest:
    server: SftpServer = request.getfixturevalue("sftp_server")
    name = _unique("sftp")
    (server.root / name).mkdir()

    def store(password: str) -> FileStorage:
        if with_key:
            return open_storage(
                SftpSettings(
                    host=LOOPBACK,
                    port=server.port,
                    username=USER,
                    private_key=server.client_key_file,
                    known_hosts=server.known_hosts_file,
                    password=SecretStr(password) if password == WRONG_PASSWORD else None,
                )
            )
        return open_storage(
            SftpSettings(
                host=LOOPBACK,
                port=server.port,
                username=USER,
                password=SecretStr(password),
                host_key=server.host_key.export_public_key().decode(),
            )
        )

    refused = store(WRONG_PASSWORD)
    if with_key:
        # A key the server does not know, so that neither credential is accepted.
        other_key = asyncssh.generate_private_key("ssh-ed25519")
        other_file = server.client_key_file.with_name(_unique("other-key"))
        other_key.write_private_key(other_file)
        refused = open_storage(
            SftpSettings(
                host=LOOPBACK,
                port=server.port,
                username=USER,
                private_key=other_file,
                known_hosts=server.known_hosts_file,
            )
        )
    return StoreUnderTest(
        kind="sftp-key" if with_key else "sftp-password",
        storage=store(PASSWORD),
        folder=Folder(f"/{name}"),
        missing_folder=Folder(f"/{name}-missing"),
        refused=refused,
        add_subfolder=lambda sub: (server.root / name / sub).mkdir(),
    )


def _oci_kind(request: pytest.FixtureRequest) -> StoreUnderTest:
    server: OciServer = request.getfixturevalue("oci_server")
    bucket = _unique("oci")
    server.files.create_bucket(NAMESPACE, bucket)

    def store(fingerprint: str) -> FileStorage:
        return open_storage(
            OciObjectStorageSettings(
                region="us-ashburn-1",
                tenancy=TENANCY,
                user=OCI_USER,
                fingerprint=fingerprint,
                key_file=server.key_file,
                endpoint=server.url,
            )
        )

    return StoreUnderTest(
        kind="oci",
        storage=store(server.fingerprint),
        folder=Folder(bucket, NAMESPACE),
        missing_folder=Folder(f"{bucket}-missing", NAMESPACE),
        refused=store(":".join(["00"] * 16)),
        add_subfolder=lambda sub: server.files.object_path(
            NAMESPACE, bucket, f"{sub}/x"
        ).write_bytes(b"x"),
    )


def _s3_kind(request: pytest.FixtureRequest) -> StoreUnderTest:
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = _unique("s3")
    server.client().create_bucket(Bucket=bucket)

    def store(secret: str) -> FileStorage:
        return open_storage(
            S3Settings(
                endpoint=server.url,
                access_key_id=server.access_key_id,
                secret_access_key=SecretStr(secret),
            )
        )

    return StoreUnderTest(
        kind="s3",
        storage=store(server.secret_access_key),
        folder=Folder(bucket),
        missing_folder=Folder(f"{bucket}-missing"),
        refused=store(WRONG_PASSWORD),
        add_subfolder=lambda sub: server.client().put_object(
            Bucket=bucket, Key=f"{sub}/x", Body=b"x"
        ),
    )


STORE_KINDS = ["local", "ftp", "ftps", "sftp-password", "sftp-key", "oci", "s3"]


@pytest.fixture(params=STORE_KINDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> StoreUnderTest:
    kinds: dict[str, Callable[[], StoreUnderTest]] = {
        "local": lambda: _local_kind(tmp_path_factory.mktemp("local")),
        "ftp": lambda: _ftp_kind(request, tls=False),
        "ftps": lambda: _ftp_kind(request, tls=True),
        "sftp-password": lambda: _sftp_kind(request, with_key=False),
        "sftp-key": lambda: _sftp_kind(request, with_key=True),
        "oci": lambda: _oci_kind(request),
        "s3": lambda: _s3_kind(request),
    }
    return kinds[request.param]()
