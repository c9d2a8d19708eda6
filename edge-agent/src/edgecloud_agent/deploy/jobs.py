"""Job-style containers (``auto_remove``): when one ends, its output is shipped to the
cloud's storage and only then is the container removed, so its logs can still be read
after the node goes offline or the container is gone.

Docker's own auto-remove would take the logs with it, so the agent does the removing.
A job that ends while the node is offline waits, stopped, until its logs can go.
"""

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edgecloud_contracts import errors, uris
from edgecloud_contracts.containers import ContainerReport

from ..isolation.node_paths import child
from ..isolation.provision import Provisioner
from ..runtime.errors import RuntimeFailure
from ..runtime.reports import REMOVED
from ..state.desired import DesiredState
from ..uplink.errors import CallFailed, UplinkError
from .transfers import CloudFiles, UploadFailed

logger = logging.getLogger(__name__)

FINISHED = ("exited", "dead")
_RETRY_S = (1.0, 30.0)


class Caller(Protocol):
    async def call(self, uri: str, *args: object, timeout: float) -> Any: ...


class Jobs:
    def __init__(
        self,
        *,
        node: Provisioner,
        desired: DesiredState,
        uplink: Caller,
        files: CloudFiles,
        outgoing_dir: Path,
        on_removed: Callable[[ContainerReport], None],
        timeout_s: float = 10.0,
    ) -> None:
        self._node = node
        self._runtime = node.runtime
        self._desired = desired
        self._uplink = uplink
        self._files = files
        self._outgoing = outgoing_dir
        self._on_removed = on_removed
        self._timeout = timeout_s
        self._shipping: dict[str, asyncio.Task[None]] = {}

    def observe(self, report: ContainerReport) -> None:
        """Watch container reports: a finished job of ours gets its logs shipped."""
        container_id = report.container_id
        if container_id is None or report.state not in FINISHED:
            return
        if container_id in self._shipping:
            return
        wanted = self._desired.get(container_id)
        if wanted is None or not wanted.spec.auto_remove:
            return
        task = asyncio.create_task(self._ship_then_remove(report), name=f"job {container_id}")
        self._shipping[container_id] = task
        task.add_done_callback(lambda _: self._shipping.pop(container_id, None))

    async def close(self) -> None:
        tasks = list(self._shipping.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _ship_then_remove(self, report: ContainerReport) -> None:
        assert report.container_id is not None
        delay = _RETRY_S[0]
        while True:
            try:
                await self._ship(report)
                break
            except CallFailed as err:
                if err.error == errors.NOT_FOUND:
                    # The cloud does not know this container: nobody to ship its logs to.
                    logger.warning("no log slot for %s: %s", report.docker_name, err)
                    break
                logger.info("logs of %s not shipped yet: %s", report.docker_name, err)
            except (RuntimeFailure, UplinkError, UploadFailed, OSError) as err:
                logger.info("logs of %s not shipped yet: %s", report.docker_name, err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_S[1])
        wanted = self._desired.get(report.container_id)
        self._desired.remove(report.container_id)
        try:
            await self._node.remove(
                report.docker_name,
                container_id=report.container_id,
                tenant_id=wanted.spec.tenant_id if wanted is not None else None,
            )
        except RuntimeFailure as err:
            logger.warning("finished job %s not removed: %s", report.docker_name, err)
            return
        self._on_removed(report.model_copy(update={"state": REMOVED}))

    async def _ship(self, report: ContainerReport) -> None:
        assert report.container_id is not None
        self._outgoing.mkdir(parents=True, exist_ok=True)
        log = child(self._outgoing, report.container_id, suffix=".log")
        try:
            await self._runtime.write_logs(report.docker_id, log)
            slot = await self._uplink.call(
                uris.LOG_SLOT, report.container_id, timeout=self._timeout
            )
            await self._files.upload(str(slot["url"]), log)
        finally:
            log.unlink(missing_ok=True)
        logger.info("shipped the logs of finished job %s", report.docker_name)
