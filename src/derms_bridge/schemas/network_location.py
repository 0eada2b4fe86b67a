"""Flow 15, SP Network Location Transfer, and the common transfers it runs (18, 19).

DERMS's `message` part is fixed by the contract; the children's requests keep the
fields the reference lists for them (Object Name, Namespace and Bucket Name, Stream
Reference; File Name, Directory, File Reference).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from derms_bridge.schemas.common import Wire
from derms_bridge.schemas.file_names import checked_file_name

#: A name a store can take as one file: no separator, no `..`, no control character.
FileName = Annotated[str, AfterValidator(checked_file_name)]


class NetworkModelMessage(Wire):
    """The `message` part of DERMS's POST /network-model-to-dacs."""

    messageId: str = Field(min_length=1, max_length=120)
    fileName: FileName
    loadType: Literal["INITIAL", "INCREMENTAL"]


class NetworkLocationTransfer(NetworkModelMessage):
    """DERMS's message with where the hub keeps the file until it is passed on."""

    fileReference: str = Field(min_length=1)


class FtpTransferRequest(Wire):
    """Flow 18's request: the file to put in a directory of CPMCS's FTP server."""

    fileName: FileName
    directory: str = Field(min_length=1)
    fileReference: str = Field(min_length=1)


class ObjectStorageTransferRequest(Wire):
    """Flow 19's request: the object to put in a bucket of CPMCS's object storage."""

    objectName: FileName
    namespaceName: str = Field(min_length=1)
    bucketName: str = Field(min_length=1)
    fileReference: str = Field(min_length=1)


class TransferReport(Wire):
    """What a transfer did, kept as its instance's reply."""

    fileName: str
    target: str
    bytes: int
