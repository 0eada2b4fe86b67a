"""Flows 18 and 19, Common FTP Transfer (OUTL-BA-DACS_FTP_TRANSFER) and Common OS Transfer
(OUTL-BA-DACS_OS_TRANSFER).

Child flows: the flow that received a file (15) runs one of them, as the transfer
preference says, with where the file goes and a reference to the file. The file goes
to the store unchanged, streamed, never whole in memory. A transfer that fails ends
this instance failed; the flow that ran it reports the error and sends the emails,
so one failure is emailed once.
"""

from __future__ import annotations

from derms_bridge.catalog import BY_KEY
from derms_bridge.connectors.file_storage.interface import FileStorage, Folder
from derms_bridge.errors import FlowError
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow
from derms_bridge.schemas.network_location import (
    FtpTransferRequest,
    ObjectStorageTransferRequest,
    TransferReport,
)


async def _put(
    ctx: FlowContext, store: FileStorage, folder: Folder, name: str, reference: str, target: str
) -> FlowResult[TransferReport]:
    try:
        written = await store.write(folder, name, ctx.received_files.read(reference))
    except FlowError as error:
        return FlowResult.failed(None, str(error))
    return FlowResult.ok(TransferReport(fileName=name, target=target, bytes=written))


async def put_on_ftp(request: FtpTransferRequest, ctx: FlowContext) -> FlowResult[TransferReport]:
    # Step 1: triggered by the parent flow with the file's reference and its directory.
    # Step 2: the FTP adapter's write, the file streamed as it came.
    return await _put(
        ctx,
        ctx.stores.ftp,
        Folder(request.directory),
        request.fileName,
        request.fileReference,
        f"FTP directory {request.directory}",
    )


async def put_in_object_storage(
    request: ObjectStorageTransferRequest, ctx: FlowContext
) -> FlowResult[TransferReport]:
    # Step 1: triggered by the parent flow with the file's reference, namespace and bucket.
    # Step 2: the object storage PutObject, the file streamed as it came.
    return await _put(
        ctx,
        ctx.stores.object_storage,
        Folder(request.bucketName, namespace=request.namespaceName),
        request.objectName,
        request.fileReference,
        f"object storage bucket {request.bucketName} of namespace {request.namespaceName}",
    )


def _no_reply(_request: object, _error: str) -> TransferReport | None:
    return None


FTP_TRANSFER_FLOW = SyncFlow(
    info=BY_KEY["common_ftp_transfer"],
    message_model=FtpTransferRequest,
    reply_model=TransferReport,
    business_keys=lambda request: [("fileName", request.fileName)],
    run=put_on_ftp,
    crash_reply=_no_reply,
)

OS_TRANSFER_FLOW = SyncFlow(
    info=BY_KEY["common_os_transfer"],
    message_model=ObjectStorageTransferRequest,
    reply_model=TransferReport,
    business_keys=lambda request: [("fileName", request.objectName)],
    run=put_in_object_storage,
    crash_reply=_no_reply,
)
