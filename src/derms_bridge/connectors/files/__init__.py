"""CPMCS's file stores: FTP/FTPS, SFTP, OCI and S3-compatible object storage, a local folder."""

from __future__ import annotations

from derms_bridge.flows.ports import FileStorage
from derms_bridge.settings import (
    FileStoreSettings,
    FtpFileStore,
    LocalFileStore,
    OciObjectStore,
    S3ObjectStore,
    SftpFileStore,
)


def open_storage(settings: FileStoreSettings) -> FileStorage:
    """The store the settings describe. The object storage SDKs are optional extras,
    imported only when their store is configured."""
    match settings:
        case LocalFileStore():
            from derms_bridge.connectors.files.local import LocalFolderStorage

            return LocalFolderStorage(settings.root)
        case FtpFileStore():
            from derms_bridge.connectors.files.ftp import FtpStorage

            return FtpStorage(settings)
        case SftpFileStore():
            from derms_bridge.connectors.files.sftp import SftpStorage

            return SftpStorage(settings)
        case OciObjectStore():
            from derms_bridge.connectors.files.oci import OciObjectStorage

            return OciObjectStorage(settings)
        case S3ObjectStore():
            from derms_bridge.connectors.files.s3 import S3Storage

            return S3Storage(settings)
