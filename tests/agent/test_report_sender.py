"""Node reports: the ones that must arrive wait out an outage, in order."""

import asyncio
from pathlib import Path

from edgecloud_agent.deploy.outbox import Outbox
from edgecloud_agent.deploy.reports import ReportSender
from edgecloud_agent.uplink.errors import NotConnected
from edgecloud_contracts.artifacts import DeploymentReport, DeploymentState


class FlakyUplink:
    link = "wan"

    def __init__(self) -> None:
        self.connected = True
        self.sessions_joined = 1
        self.failures = 0
        self.calls: list[str] = []

    async def call(self, uri: str, *args: object, timeout: float) -> object:
        if self.failures:
            self.failures -= 1
            raise NotConnected("link lost")
        report = args[0]
        assert isinstance(report, dict)
        self.calls.append(report["deployment"]["state"])
        return None


def deployment(state: DeploymentState) -> DeploymentReport:
    return DeploymentReport(deployment_id="d", state=state)


async def test_an_end_waits_for_the_link_and_keeps_its_order(tmp_path: Path) -> None:
    uplink = FlakyUplink()
    outbox = Outbox(tmp_path)
    sender = ReportSender(uplink=uplink, outbox=outbox, timeout_s=1)
    runner = asyncio.create_task(sender.run())
    try:
        sender.deployment(deployment(DeploymentState.DOWNLOADING))
        await asyncio.sleep(0.05)
        uplink.connected = False
        sender.deployment(deployment(DeploymentState.EXTRACTING))  # kept in the outbox
        end = asyncio.create_task(sender.deliver_deployment(deployment(DeploymentState.FAILED)))
        await asyncio.sleep(0.3)
        assert not end.done()
        uplink.connected, uplink.failures = True, 1  # back, but the first try fails
        await asyncio.wait_for(end, 5)
        assert uplink.calls == ["downloading", "extracting", "failed"]
        assert (sender.dropped, sender.pending) == (0, 0)
    finally:
        runner.cancel()
        outbox.close()
