"""Flow 15's engine: the file kept as it came, then a worker passes it on.

1. Intake: the message is checked, then the instance is written and the file kept in
   the database in chunks, in one transaction, before DERMS hears 202. A message whose
   messageId was seen answers with that instance, running its transfer again if it
   failed.
2. A worker (in any hub process) claims the transfer under a lease, renewed while it
   runs, and runs the flow on the instance. A process that dies leaves a lease that
   runs out, and another worker takes the transfer up; one that never claimed it
   leaves it queued for the next worker that starts. One that stops (its Shutdown) lets
   the transfer end within the grace, or cuts it short and gives it back, queued at once.
3. A file stored where it was going is no longer kept; a failed one is, for a resend
   or `POST /ops/instances/{id}/resubmit`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import IO

from pydantic import ValidationError

from derms_bridge import tracing
from derms_bridge.engine.background import BackgroundTask, CutShort, Shutdown, renewing
from derms_bridge.engine.polling import PollingLoop, worker_name
from derms_bridge.engine.run_context import instance_span
from derms_bridge.engine.runner import FlowEngine
from derms_bridge.engine.uploads import FileRefused, Received, drain, message_refused
from derms_bridge.flows import sp_network_location_transfer
from derms_bridge.flows.registry import TRANSFER_FLOWS
from derms_bridge.ids import new_instance_id
from derms_bridge.schemas.network_location import NetworkLocationTransfer, NetworkModelMessage
from derms_bridge.schemas.ops import InstanceFilter
from derms_bridge.settings import Segments
from derms_bridge.store.instances import InstanceStore
from derms_bridge.store.staged_transfers import EmptyFile, StagedTransferStore

log = logging.getLogger(__name__)


class TransferIntake:
    """DERMS's POST /network-model-to-dacs: the message checked, the file kept."""

    def __init__(
        self,
        instances: InstanceStore,
        staged: StagedTransferStore,
        max_file_bytes: int,
        wake: Callable[[], None],
    ) -> None:
        self._instances = instances
        self._staged = staged
        self._max_file_bytes = max_file_bytes
        self._wake = wake

    async def receive(
        self, message_text: str | bytes, upload: IO[bytes], *, caller: str | None
    ) -> Received:
        """FileRefused (nothing written) for a message that does not fit or an empty
        file; FileTooLarge past the limit. `upload` is read by threads, and its reads may
        wait for the bytes to arrive; one that raises leaves nothing written."""
        flow = sp_network_location_transfer.FLOW
        try:
            message = NetworkModelMessage.model_validate_json(message_text)
        except ValidationError as exc:
            raise message_refused(exc) from None
        earlier = await self._earlier(flow.info.key, message.messageId)
        if earlier is not None:
            # DERMS's resend: the file kept the first time goes again if it failed; one
            # that is going, or went, is not sent twice. Acted on once the resend has
            # come whole.
            await asyncio.to_thread(drain, upload)
            resumed = await self._staged.resume(earlier)
            if resumed:
                self._wake()
            return Received(earlier, resumed=resumed)
        received = await self._keep(message, upload, caller)
        self._wake()
        return received

    async def _earlier(self, flow: str, message_id: str) -> str | None:
        found = await self._instances.search(
            InstanceFilter(flows=(flow,), business_key=message_id, limit=10)
        )
        for instance in found.items:
            if any(k.kind == "messageId" and k.value == message_id for k in instance.business_keys):
                return instance.id
        return None

    async def _keep(
        self, message: NetworkModelMessage, upload: IO[bytes], caller: str | None
    ) -> Received:
        flow = sp_network_location_transfer.FLOW
        instance_id = new_instance_id()
        transfer = NetworkLocationTransfer(**message.model_dump(), fileReference=instance_id)
        try:
            with instance_span(flow.info.key, instance_id, caller=caller) as span:
                await self._staged.receive(
                    instance_id=instance_id,
                    flow=flow.info.key,
                    caller=caller,
                    payload=transfer.model_dump(mode="json"),
                    keys=flow.business_keys(transfer),
                    file_name=transfer.fileName,
                    upload=upload,
                    max_bytes=self._max_file_bytes,
                    trace=tracing.ref_of(span),
                )
        except EmptyFile:
            raise FileRefused([{"field": "file", "message": "the file is empty"}]) from None
        return Received(instance_id, resumed=False)


class TransferWorker:
    """Claims due transfers and runs their flow, in every hub process that runs workers."""

    def __init__(
        self,
        *,
        engine: FlowEngine,
        staged: StagedTransferStore,
        settings: Segments,
        shutdown: Shutdown,
    ) -> None:
        self.name = worker_name()
        self._engine = engine
        self._staged = staged
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._shutdown = shutdown
        self._polling = PollingLoop("transfer worker", settings.poll_seconds, self.step)
        self._loop = BackgroundTask("transfer worker", self.run, shutdown.begun)

    def wake(self) -> None:
        self._polling.wake()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def run(self, stop: asyncio.Event) -> None:
        await self._polling.run(stop)

    async def step(self) -> bool:
        """Run one due transfer; True when there was one."""
        if self._shutdown.begun.is_set():
            return False
        claimed = await self._staged.claim(self.name, self._lease)
        if claimed is None:
            return False
        flow = TRANSFER_FLOWS[claimed.flow]
        message = flow.message_model.model_validate(claimed.payload)
        # Renewed while the file goes: a large file can outlast a lease.
        async with renewing(
            lambda: self._staged.renew(claimed.instance_id, self.name, self._lease),
            self._lease.total_seconds() / 3,
        ):
            try:
                result = await self._shutdown.within_grace(
                    self._engine.run_written(
                        flow, message, instance_id=claimed.instance_id, caller=claimed.caller
                    )
                )
            except CutShort:
                await self._staged.give_back(claimed.instance_id, self.name)
                return False
        await self._staged.finished(
            claimed.instance_id, self.name, succeeded=result.status == "succeeded"
        )
        return True
