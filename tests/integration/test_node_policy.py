"""A node's policy (what its operator allows tenant containers) as the registry keeps it: from
each full heartbeat, kept through the compact beats of the slow mesh (which describe no
device), shown in the device views."""

import pytest

from edgecloud_contracts import uris
from tests.support.beats import heartbeat
from tests.support.wamp import device_session, probe_key

pytestmark = pytest.mark.stack

POLICY = {"pids_per_container": 512, "pids_total": 4096, "ports": [30000, 30099], "internet": False}


async def test_the_policy_of_the_last_full_heartbeat_is_shown(stack, api, enrol) -> None:
    key = probe_key()
    async with device_session(stack, key=key, token=await enrol()) as uplink:

        async def beat(policy: dict | None, seq: int) -> None:
            device = heartbeat(key)["device"] | {"policy": policy}
            await uplink.call(uris.HEARTBEAT, heartbeat(key, seq=seq, device=device), timeout=5)

        async def shown() -> object:
            answer = await api.get(f"/api/v1/devices/{key}")
            assert answer.status_code == 200, answer.text
            [listed] = [
                d for d in (await api.get("/api/v1/devices")).json()["items"] if d["key"] == key
            ]
            assert listed["policy"] == answer.json()["policy"]
            return answer.json()["policy"]

        await beat(POLICY, 1)
        assert await shown() == POLICY
        compact = {"s": 2, "i": 30, "m": [5.0, 0.1, 1 << 30, 1 << 30]}
        await uplink.call(uris.COMPACT_BEAT, compact, timeout=5)
        assert await shown() == POLICY
        await beat(None, 3)  # the node's agent went back to a release without policies
        assert await shown() is None
