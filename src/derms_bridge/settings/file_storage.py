"""CPMCS's file storage: FTP (or FTPS), SFTP, OCI Object Storage, S3, a local folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    field_validator,
    model_validator,
)

from derms_bridge.settings.common import Secret, Strict, Timeouts, readable_ca_bundle


class LocalFolderSettings(Strict):
    """A folder on the hub's own disk; for object storage, namespace and bucket are folders."""

    type: Literal["local"] = "local"
    root: Path


class FtpSettings(Strict):
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

    _ca_bundle_readable = field_validator("ca_bundle")(readable_ca_bundle)


class SftpSettings(Strict):
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


class OciObjectStorageSettings(Strict):
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


class S3Settings(Strict):
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


class FileStorageSettings(Strict):
    """CPMCS's two file stores: the reference's "OU FTP CPMCS" and its object storage."""

    ftp: FtpRoleSettings = LocalFolderSettings(root=Path("var/files/ftp"))
    object_storage: ObjectStorageRoleSettings = LocalFolderSettings(root=Path("var/files/os"))
