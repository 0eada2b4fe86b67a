"""Flow 15's trigger route: a JSON `message` and the file to pass on, multipart.

The body is parsed as it streams in (api/uploads.py), so the file is kept while it
arrives. The answer is 202 with the instance id once the file is kept; the
process-complete email says how its transfer went.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from derms_bridge import metrics
from derms_bridge.api.deps import DOCUMENTED_AUTH, HubDep, PrincipalDep
from derms_bridge.api.guard import guarded
from derms_bridge.api.problems import refused
from derms_bridge.api.refusals import KEPT
from derms_bridge.api.uploads import BadUpload, multipart_upload, openapi_form
from derms_bridge.engine.uploads import FileRefused
from derms_bridge.errors import FileTooLarge
from derms_bridge.flows import sp_network_location_transfer

router = APIRouter(
    route_class=guarded("derms", body="multipart"),
    dependencies=DOCUMENTED_AUTH,
    tags=["Triggers from DERMS"],
)

_INFO = sp_network_location_transfer.FLOW.info


@router.post(
    sp_network_location_transfer.ROUTE,
    status_code=202,
    summary=f"Flow {_INFO.number}, {_INFO.title}",
    operation_id=_INFO.key,
    openapi_extra=openapi_form(
        'the JSON message: {"messageId", "fileName", "loadType"}', "the CSV, passed on unchanged"
    ),
    responses={
        400: {"description": "the body is not readable as multipart/form-data" + KEPT},
        401: {"description": "no credential, or not DERMS's: nothing is kept"},
        413: {"description": "the file is over segments.max_file_bytes" + KEPT},
        415: {"description": "the body is not multipart/form-data" + KEPT},
        422: {"description": "the message does not fit the contract, or the file is empty" + KEPT},
    },
)
async def network_model_to_dacs(
    request: Request, principal: PrincipalDep, hub: HubDep
) -> JSONResponse:
    """Flow 15, SP Network Location Transfer (OUTL-BA-DERMS_DACS_SPNWLOC_TRNFR): the file
    is kept as it came and passed on to CPMCS's object storage or FTP server, as
    ConfigProps dacs.file.target.transfer.pref says."""
    try:
        async with multipart_upload(request, request.app.state.max_file_bytes) as upload:
            received = await hub.transfer_intake.receive(
                upload.message, upload.file, caller=principal.name
            )
    except BadUpload as bad:
        return await refused(request, bad.status, bad.detail, errors=bad.errors)
    except FileRefused as refusal:
        return await refused(request, 422, str(refusal), errors=refusal.errors)
    except FileTooLarge as too_large:
        return await refused(request, 413, str(too_large))
    if not received.resumed:
        metrics.instance_received(sp_network_location_transfer.FLOW.info.key)
    return JSONResponse(
        {"instanceId": received.instance_id, "resumed": received.resumed},
        status_code=202,
        headers={"X-Instance-Id": received.instance_id},
    )
