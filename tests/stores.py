"""Real file stores on 127.0.0.1 shared by the adapter tests and the flow tests: pyftpdlib and
the sandbox's OCI-speaking object store (fixtures made visible in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from derms_bridge.sandbox.ftp_server import FtpServer
from derms_bridge.sandbox.object_store import (
    ObjectStoreFiles,
    create_object_store_app,
    write_api_signing_key,
)
from derms_bridge.sandbox.servers import ServerThread

USER = "cpmcs"
PASSWORD = "right-pw-7f3a"
WRONG_PASSWORD = "wrong-pw-c41d"
NAMESPACE = "cpmcs"
TENANCY = "ocid1.tenancy.oc1..sandbox"
OCI_USER = "ocid1.user.oc1..sandbox"


@pytest.fixture(scope="session")
def ftp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ftp")


@pytest.fixture(scope="session")
def ftp_server(ftp_root: Path) -> Iterator[FtpServer]:
    with FtpServer(ftp_root, USER, PASSWORD) as server:
        yield server


@dataclass
class OciServer:
    url: str
    files: ObjectStoreFiles
    key_file: Path
    fingerprint: str


@pytest.fixture(scope="session")
def oci_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciServer]:
    folder = tmp_path_factory.mktemp("oci")
    key_file = folder / "api-key.pem"
    fingerprint = write_api_signing_key(key_file)
    root = folder / "objects"
    root.mkdir()
    app = create_object_store_app(root, key_id=f"{TENANCY}/{OCI_USER}/{fingerprint}")
    with ServerThread(app, name="object store") as server:
        yield OciServer(server.url, ObjectStoreFiles(root), key_file, fingerprint)


#: What a dropped connection reads as: aiohttp either sees it break, or waits on it
#: until the upload's read timeout.
DERMS_DOWN = (
    "DERMS default broke the connection during deviceScore",
    "DERMS default did not answer deviceScore within",
)
