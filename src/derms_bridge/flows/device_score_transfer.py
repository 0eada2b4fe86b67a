"""Flows 16 and 17, Device Score Transfer (OUTL-BA-DRMS_DACS_SEND_DVCSCORE, from CPMCS's FTP
server, and OUTL-BA-DRMS_DACS_SEND_DVCSCOREC, from its OCI Object Storage bucket).

CPMCS's batch X1-SDCSE leaves device score files in a store; a schedule or an operator
starts the flow, which sends each file to DERMS /device-score/{file-name} and renames it
with the ConfigProps tag that says whether DERMS took it. The two flows differ only in
the store and the folder they read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from derms_bridge.catalog import BY_KEY
from derms_bridge.connectors.file_storage.interface import FileStorage, Folder
from derms_bridge.errors import BadFileName, FlowError
from derms_bridge.flows.ports import FlowContext, FlowResult, ScheduledFlow
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.device_score import DeviceScoreTransferReport, FileNotSent
from derms_bridge.schemas.file_names import checked_file_name

#: The DERMS statuses that mean it took the file (the reference's "HTTP 200 or 202").
ACCEPTED = frozenset({200, 202})


def ftp_folder(lookups: Lookups) -> Folder:
    return Folder(lookups.prop("dacs.dvcScore.ftp.input.directory"))


def object_storage_folder(lookups: Lookups) -> Folder:
    return Folder(
        lookups.prop("dacs.os.dvcScore.bucketname"), namespace=lookups.prop("dacs.os.namespace")
    )


def where(store: FileStorage, folder: Folder) -> str:
    namespace = f" (namespace {folder.namespace})" if folder.namespace else ""
    return f"{folder.path}{namespace} on {store.description}"


def summary_of(report: DeviceScoreTransferReport) -> str:
    """The process-complete email's list of the files transferred and not transferred."""
    lines = [f"Files sent to DERMS ({len(report.sent)}):"]
    lines += [f"  {name}" for name in report.sent] or ["  (none)"]
    lines.append(f"Files not sent ({len(report.notSent)}):")
    lines += [f"  {failed.fileName}: {failed.reason}" for failed in report.notSent] or ["  (none)"]
    return "\n".join(lines)


async def send_file(ctx: FlowContext, store: FileStorage, folder: Folder, name: str) -> str | None:
    """Step 3 for one file: download it, send it to DERMS, rename it by the outcome.

    None when DERMS took it whole and it is renamed as sent; otherwise why not.
    """
    sent_tag = ctx.lookups.prop("dacs.prefixtag.fileuploaded")
    not_sent_tag = ctx.lookups.prop("dacs.prefixtag.filenotuploaded")
    try:
        checked_file_name(name)
        checked_file_name(sent_tag + name)
        checked_file_name(not_sent_tag + name)
    except BadFileName as refused:
        # Nothing is asked of the store for a name that could address another file.
        return f"refused before any store call: {refused}"

    read_failure: list[FlowError] = []

    async def download() -> AsyncIterator[bytes]:
        try:
            async for chunk in store.read(folder, name):
                yield chunk
        except FlowError as exc:
            read_failure.append(exc)
            raise

    problem: str | None = None
    try:
        # 3a and 3b: the download streams straight into DERMS's request body.
        status = await ctx.derms.upload("deviceScore", name, download(), division=None)
        if not read_failure and status not in ACCEPTED:
            problem = f"DERMS answered HTTP {status} to deviceScore"
    except FlowError as exc:
        problem = str(exc)
    if read_failure:
        # Whatever DERMS said, it cannot have had the whole file.
        problem = f"reading the file failed part-way: {read_failure[0]}"
    if problem is None:
        try:
            # 3c: DERMS took it; the file is renamed so that no later run sends it again.
            await store.rename(folder, name, sent_tag + name)
        except FlowError as exc:
            return (
                f"DERMS took the file but renaming it to {sent_tag + name!r} failed ({exc}); "
                "the next run sends it again unless it is renamed by hand"
            )
        return None
    try:
        # Step 5: the source file is renamed as not uploaded.
        await store.rename(folder, name, not_sent_tag + name)
    except FlowError as exc:
        problem += f"; renaming it to {not_sent_tag + name!r} failed too: {exc}"
    return problem


async def transfer(
    ctx: FlowContext, store: FileStorage, folder: Folder
) -> FlowResult[DeviceScoreTransferReport]:
    # Step 1: started by a schedule or by an operator (engine/schedules.py).
    report = DeviceScoreTransferReport(store=store.description, folder=folder.path)
    prefix = ctx.lookups.prop("dacs.dvcScore.extract.filename.prefix")
    # Step 2: the files whose names begin with the X1-SDCSE prefix.
    try:
        files = await store.list(folder, prefix)
    except FlowError as exc:
        error = f"cannot list the device score files in {where(store, folder)}: {exc}"
        await ctx.errors.report(error)
        return FlowResult.failed(report, error)
    if not files:
        why = f"no file beginning with {prefix!r} in {where(store, folder)}"
        if ctx.lookups.flag("notification.email.process.nofile.flag"):
            await ctx.notices.no_file(why)
        return FlowResult.skipped(report, why)
    for stored in files:
        ctx.run.add_business_key("fileName", stored.name)
    # Step 3: each file in turn; one that fails does not stop the others.
    for stored in files:
        problem = await send_file(ctx, store, folder, stored.name)
        if problem is None:
            report.sent.append(stored.name)
            continue
        report.notSent.append(FileNotSent(fileName=stored.name, reason=problem))
        # Step 5: the error email, through the common error handler.
        await ctx.errors.report(f"device score file {stored.name!r} not sent: {problem}")
    # Step 4 (and step 5's summary when a file failed): the process-complete email.
    failed = bool(report.notSent)
    outcome = f"{len(report.sent)} sent, {len(report.notSent)} not sent"
    await ctx.notices.process_complete(outcome, summary_of(report), failed=failed)
    if failed:
        return FlowResult.failed(report, f"{outcome} from {where(store, folder)}")
    return FlowResult.ok(report)


def _flow(
    key: str, store_of: Callable[[FlowContext], FileStorage], folder_of: Callable[[Lookups], Folder]
) -> ScheduledFlow[DeviceScoreTransferReport]:
    async def run(ctx: FlowContext) -> FlowResult[DeviceScoreTransferReport]:
        return await transfer(ctx, store_of(ctx), folder_of(ctx.lookups))

    return ScheduledFlow(info=BY_KEY[key], reply_model=DeviceScoreTransferReport, run=run)


FTP_FLOW = _flow("device_score_ftp", lambda ctx: ctx.stores.ftp, ftp_folder)
OBJECT_STORAGE_FLOW = _flow(
    "device_score_os", lambda ctx: ctx.stores.object_storage, object_storage_folder
)
