"""CPMCS's file stores: FTP/FTPS, SFTP, OCI and S3-compatible object storage, a local folder."""

from __future__ import annotations

from derms_bridge.connectors.file_storage.interface import FileStorage
from derms_bridge.settings.file_storage import (
    FtpSettings,
    LocalFolderSettings,
    OciObjectStorageSettings,
    S3Settings,
    SftpSettings,
    StorageSettings,
)


def open_storage(settings: StorageSettings) -> FileStorage:
    """The store the settings describe. The object storage SDKs are optional extras,
    imported only when their store is configured."""
    match settings:
        case LocalFolderSettings():
            from derms_bridge.connectors.file_storage.local import LocalFolderStorage

            return LocalFolderStorage(settings.root)
        case FtpSettings():
            from derms_bridge.connectors.file_storage.ftp import FtpStorage

            return FtpStorage(settings)
        case SftpSettings():
            from derms_bridge.connectors.file_storage.sftp import SftpStorage

            return SftpStorage(settings)
        case OciObjectStorageSettings():
            from derms_bridge.connectors.file_storage.oci import OciObjectStorage

            return OciObjectStorage(settings)
        case S3Settings():
            from derms_bridge.connectors.file_storage.s3 import S3Storage

            return S3Storage(settings)
