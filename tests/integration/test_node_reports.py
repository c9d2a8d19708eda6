"""Node reports carrying an id are applied once, however often the node sends them."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from edgecloud_contracts import uris
from edgecloud_contracts.containers import DataBatch, DataPoint, NodeReport
from tests.support.beats import heartbeat
from tests.support.users import register
from tests.support.wamp import device_session, probe_key

pytestmark = pytest.mark.stack


def data_report(container_id: str, value: float, at: datetime, report_id: str | None) -> dict:
    batch = DataBatch(container_id=container_id, points=[DataPoint(at=at, name="t", value=value)])
    report = NodeReport(id=report_id, kind="data", data=[batch], at=at)
    # Without an id, exactly what an agent from before the outbox sends.
    return report.model_dump(mode="json", exclude={"id"} if report_id is None else None)


async def test_a_repeated_report_is_stored_once(stack, client, api, enrol) -> None:
    user = await register(stack)
    key = probe_key()
    async with device_session(stack, key=key, token=await enrol()) as uplink:
        await uplink.call("edge.registry.heartbeat", heartbeat(key), timeout=5)
        granted = await api.post(f"/api/v1/devices/{key}/grants", json={"tenant": user.tenant_id})
        assert granted.status_code == 201, granted.text
        # The record is what matters here: this node never runs the container.
        created = await client.post(
            "/api/v1/containers",
            json={"device": key, "name": "sensor", "image": "edgecloud/busybox:latest"},
            headers=user.headers,
        )
        assert created.status_code in (201, 202), created.text
        container_id = created.json()["id"]
        at = datetime.now(UTC).replace(microsecond=0)
        repeated = data_report(container_id, 1.5, at, uuid.uuid4().hex)
        for _ in range(3):  # sent, the acknowledgement lost, sent again after a reconnect
            assert await uplink.call(uris.NODE_REPORT, repeated, timeout=5) is None
        for second in (1, 2):  # no id: applied each time, as before
            legacy = data_report(container_id, 2.5, at + timedelta(seconds=second), None)
            await uplink.call(uris.NODE_REPORT, legacy, timeout=5)
    answer = await client.get(f"/api/v1/containers/{container_id}/data", headers=user.headers)
    assert answer.status_code == 200, answer.text
    assert [value for _, value in answer.json()["series"]["t"]] == [1.5, 2.5, 2.5]
