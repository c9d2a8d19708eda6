"""Deployments on the node: the end of one is kept until the cloud has it."""

import asyncio
import json
from pathlib import Path
from typing import Any

from edgecloud_agent.deploy.applications import Deployments
from edgecloud_contracts.artifacts import (
    DeploymentOrder,
    DeploymentReport,
    DeploymentState,
    TransferRef,
)


class Untouchable:
    """Neither Docker nor the network may be used when only the end is left to send."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} used")


def order() -> DeploymentOrder:
    ref = TransferRef(
        artifact_id="a",
        name="app.tar",
        size=1,
        sha256="0" * 64,
        url="/api/v1/transfers/a-1?grant=g",
    )
    return DeploymentOrder(
        deployment_id="d-1", container_id="c-1", docker_name="u-app", archive=ref, script=ref
    )


async def test_an_undelivered_end_is_sent_again_after_a_restart(tmp_path: Path) -> None:
    work = tmp_path / "deployments" / "d-1"
    work.mkdir(parents=True)
    (work / "order.json").write_text(order().model_dump_json())
    end = DeploymentReport(deployment_id="d-1", state=DeploymentState.SUCCEEDED, exit_code=0)
    (work / "progress.json").write_text(json.dumps({"final": end.model_dump_json()}))
    delivered: list[DeploymentReport] = []
    attempts = 0

    async def deliver(report: DeploymentReport) -> None:
        nonlocal attempts
        attempts += 1
        delivered.append(report)

    deployments = Deployments(
        runtime=Untouchable(),  # type: ignore[arg-type]
        files=Untouchable(),  # type: ignore[arg-type]
        report=lambda _: None,
        deliver=deliver,
        state_dir=tmp_path,
    )
    deployments.resume_unfinished()
    for _ in range(100):
        if not work.exists():
            break
        await asyncio.sleep(0.01)
    assert delivered == [end]
    assert not work.exists()
