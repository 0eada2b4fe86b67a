"""Flow 15, SP Network Location Transfer (OUTL-BA-DERMS_DACS_SPNWLOC_TRNFR).

DERMS sends the network location of each service point (transformer, feeder,
substation) as a CSV with a JSON message. The hub keeps the file as it came
(engine/transfers.py) and answers 202; this flow then passes it on unchanged to
CPMCS's object storage (flow 19) or FTP server (flow 18), as ConfigProps
`dacs.file.target.transfer.pref` says, and emails what happened either way.
"""

from __future__ import annotations

from typing import Any

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import LookupMiss
from derms_bridge.flows.common_transfer import FTP_TRANSFER_FLOW, OS_TRANSFER_FLOW
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.network_location import (
    FtpTransferRequest,
    NetworkLocationTransfer,
    ObjectStorageTransferRequest,
    TransferReport,
)

PREFERENCE = "dacs.file.target.transfer.pref"


def business_keys(message: NetworkLocationTransfer) -> list[tuple[str, str]]:
    return [("messageId", message.messageId), ("fileName", message.fileName)]


class UnknownPreference(Exception):
    pass


def child_transfer(
    message: NetworkLocationTransfer, lookups: Lookups
) -> tuple[SyncFlow[Any, TransferReport], FtpTransferRequest | ObjectStorageTransferRequest]:
    """Step 2: the child flow the preference names, and its request; LookupMiss or
    UnknownPreference when the configuration does not say where the file goes."""
    preference = lookups.prop(PREFERENCE).strip().lower()
    if preference == "os":
        return OS_TRANSFER_FLOW, ObjectStorageTransferRequest(
            objectName=message.fileName,
            namespaceName=lookups.prop("dacs.os.namespace"),
            bucketName=lookups.prop("dacs.spNtwkLoc.os.bucketname"),
            fileReference=message.fileReference,
        )
    if preference == "ftp":
        return FTP_TRANSFER_FLOW, FtpTransferRequest(
            fileName=message.fileName,
            directory=lookups.prop("dacs.spNtwkLoc.ftp.input.directory"),
            fileReference=message.fileReference,
        )
    raise UnknownPreference(f"ConfigProps {PREFERENCE} is {preference!r}; it must be 'os' or 'ftp'")


async def run(message: NetworkLocationTransfer, ctx: FlowContext) -> FlowResult[TransferReport]:
    # Step 1: triggered by DERMS's message with the file, kept by the hub.
    try:
        # Step 2: the preference picks the child flow that takes the file.
        child, request = child_transfer(message, ctx.lookups)
    except (LookupMiss, UnknownPreference) as problem:
        result: FlowResult[TransferReport] = FlowResult.failed(None, str(problem))
    else:
        # Step 2b: the child runs as its own instance; its success is the file stored.
        result = await ctx.children.run(child, request)
    # Step 3: the process-complete email, on success and on error.
    if result.reply is not None and result.status == "succeeded":
        report = result.reply
        await ctx.notices.process_complete(
            "SUCCESS",
            f"{message.loadType} load {message.fileName} ({report.bytes} bytes) "
            f"transferred to {report.target}.",
            failed=False,
        )
        return FlowResult.ok(report)
    error = f"{message.fileName} not transferred: {result.error or 'the transfer failed'}"
    await ctx.notices.process_complete("ERROR", f"{message.loadType} load {error}", failed=True)
    # Step 4: the error through the common error handler; step 5: processing stops.
    await ctx.errors.report(error)
    return FlowResult.failed(None, error)


FLOW = SyncFlow(
    info=BY_KEY["sp_network_location_transfer"],
    message_model=NetworkLocationTransfer,
    reply_model=TransferReport,
    business_keys=business_keys,
    run=run,
    crash_reply=lambda _message, _error: None,
)

#: The route DERMS sends the message and the file to (multipart, answered 202).
ROUTE = "/network-model-to-dacs"
