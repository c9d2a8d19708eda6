"""The agent, with every module it runs listed in one place.

identity      state/credentials.py    the node's key pair and enrolment state
telemetry     telemetry/              device info, load, heartbeats
runtime       runtime/docker.py       the node's Docker engine
uplink        uplink/wamp.py          the WAMP session to the cloud
"""

import asyncio
import logging
from contextlib import AsyncExitStack

from .runtime.docker import DockerRuntime
from .settings import AgentSettings
from .state import credentials
from .telemetry.heartbeat import HeartbeatReporter
from .telemetry.system import SystemProbe
from .uplink.wamp import Backoff, Login, Uplink

logger = logging.getLogger(__name__)


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.probe = SystemProbe(settings)
        self.credential = credentials.load_or_create(settings.state_dir, self.probe.key)
        token = settings.enrolment_token.get_secret_value() if settings.enrolment_token else None
        self._presents_token = bool(token) and not self.credential.enrolled
        self.uplink = Uplink(
            url=settings.router_url,
            realm=settings.realm,
            login=Login(
                device_key=self.credential.device_key,
                private_key=self.credential.private_key,
                enrolment_token=token if self._presents_token else None,
            ),
            backoff=Backoff(settings.reconnect_initial_s, settings.reconnect_max_s),
            ping_interval_s=settings.ping_interval_s,
            ping_timeout_s=settings.ping_timeout_s,
            on_join=self._on_join,
        )
        self._stop = asyncio.Event()

    async def _on_join(self) -> None:
        self.uplink.enrolment_done()
        if not self.credential.enrolled:
            self.credential = credentials.mark_enrolled(self.settings.state_dir, self.credential)
            logger.info("enrolled as %s (%s)", self.probe.id, self.probe.key)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        logger.info(
            "agent for %s (%s) starting, router %s",
            self.probe.id,
            self.probe.key,
            self.settings.router_url,
        )
        if not self.credential.enrolled and not self._presents_token:
            logger.warning("this node is not enrolled yet: start the agent with --enrol TOKEN")
        async with AsyncExitStack() as stack:
            runtime = await stack.enter_async_context(
                DockerRuntime(url=self.settings.docker_url, timeout_s=self.settings.call_timeout_s)
            )
            reporter = HeartbeatReporter(
                uplink=self.uplink,
                probe=self.probe,
                runtime=runtime,
                interval_s=self.settings.heartbeat_interval_s,
                timeout_s=self.settings.call_timeout_s,
            )
            async with asyncio.TaskGroup() as tasks:
                uplink_task = tasks.create_task(self.uplink.run(), name="uplink")
                reporter_task = tasks.create_task(reporter.run(), name="heartbeat")
                stop_task = tasks.create_task(self._stop.wait(), name="stop")
                await asyncio.wait({uplink_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                # Finish the beat in flight, then leave: the cloud hears the leave last.
                reporter.stop()
                await reporter_task
                await self.uplink.close()
                stop_task.cancel()
        logger.info("agent stopped")
