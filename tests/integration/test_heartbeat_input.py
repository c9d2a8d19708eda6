"""Malformed heartbeats get a WAMP error URI, change nothing, and the registry keeps serving."""

import httpx
import pytest

from edgecloud_agent.uplink.errors import CallFailed
from edgecloud_contracts import errors
from tests.support.beats import heartbeat
from tests.support.wamp import device_session, probe_key

pytestmark = pytest.mark.stack

HEARTBEAT = "edge.registry.heartbeat"


@pytest.fixture
async def device(stack, enrol):
    key = probe_key()
    async with device_session(stack, key=key, token=await enrol()) as uplink:
        yield key, uplink


async def refused(uplink, *args) -> CallFailed:
    with pytest.raises(CallFailed) as failure:
        await uplink.call(HEARTBEAT, *args, timeout=5)
    return failure.value


async def test_valid_heartbeat_is_acknowledged(device, api: httpx.AsyncClient) -> None:
    key, uplink = device
    ack = await uplink.call(HEARTBEAT, heartbeat(key), timeout=5)
    assert ack == {"status": "online", "interval_s": 5.0}
    seen = (await api.get(f"/api/v1/devices/{key}")).json()
    assert seen["arch"] == "aarch64"
    assert seen["location"] == "lab"


@pytest.mark.parametrize(
    ("case", "args"),
    [
        ("no argument", ()),
        ("not a map", ("hello",)),
        ("empty map", ({},)),
    ],
)
async def test_shapeless_heartbeats_are_invalid(device, api, case, args) -> None:
    key, uplink = device
    failure = await refused(uplink, *args)
    assert failure.error == errors.INVALID_ARGUMENT, case
    assert (await api.get(f"/api/v1/devices/{key}")).status_code == 404


async def test_missing_and_mistyped_fields_are_named(device, api) -> None:
    key, uplink = device
    beat = heartbeat(key)
    del beat["metrics"]
    beat["device"]["cpu_count"] = "many"
    failure = await refused(uplink, beat)
    assert failure.error == errors.INVALID_ARGUMENT
    locations = {problem["loc"] for problem in failure.error_kwargs["errors"]}
    assert {"metrics", "device.cpu_count"} <= locations
    assert (await api.get(f"/api/v1/devices/{key}")).status_code == 404


async def test_out_of_range_values_are_invalid(device) -> None:
    key, uplink = device
    beat = heartbeat(key)
    beat["metrics"]["cpu_percent"] = 250
    assert (await refused(uplink, beat)).error == errors.INVALID_ARGUMENT


async def test_reporting_for_another_device_is_not_authorized(device, api) -> None:
    _, uplink = device
    victim = probe_key()
    assert (await refused(uplink, heartbeat(victim))).error == errors.NOT_AUTHORIZED
    assert (await api.get(f"/api/v1/devices/{victim}")).status_code == 404


async def test_oversized_heartbeat_is_refused(device) -> None:
    key, uplink = device
    assert key
    beat = heartbeat(key, padding="x" * 100_000)
    failure = await refused(uplink, beat)
    assert failure.error == errors.PAYLOAD_TOO_LARGE


async def test_bad_heartbeat_changes_nothing_and_registry_keeps_serving(device, api) -> None:
    key, uplink = device
    await uplink.call(HEARTBEAT, heartbeat(key, seq=1, location="first"), timeout=5)
    before = (await api.get(f"/api/v1/devices/{key}")).json()

    bad = heartbeat(key, seq=2, location="second")
    bad["device"]["mac"] = "not-a-mac"
    await refused(uplink, bad)
    after = (await api.get(f"/api/v1/devices/{key}")).json()
    assert after["location"] == "first"
    assert after["heartbeats"] == before["heartbeats"]

    ack = await uplink.call(HEARTBEAT, heartbeat(key, seq=3, location="third"), timeout=5)
    assert ack["status"] == "online"
    assert (await api.get(f"/api/v1/devices/{key}")).json()["location"] == "third"


COMPACT = "edge.registry.beat"


async def test_compact_beats_need_a_full_one_first_and_keep_what_it_said(device, api) -> None:
    key, uplink = device
    compact = {"s": 2, "i": 30, "m": [55.5, 1.5, 2 << 30, 10 << 30]}
    with pytest.raises(CallFailed) as failure:
        await uplink.call(COMPACT, compact, timeout=5)
    assert failure.value.error == errors.FULL_HEARTBEAT_NEEDED
    assert (await api.get(f"/api/v1/devices/{key}")).status_code == 404

    containers = [{"id": "c1", "name": "ann-web", "image": "busybox", "state": "running"}]
    await uplink.call(HEARTBEAT, heartbeat(key, containers=containers), timeout=5)
    ack = await uplink.call(COMPACT, compact, timeout=5)
    assert ack == {"status": "degraded", "interval_s": 30.0}
    seen = (await api.get(f"/api/v1/devices/{key}")).json()
    assert (seen["status"], seen["link"], seen["arch"]) == ("degraded", "lowpan", "aarch64")
    assert seen["metrics"]["cpu_percent"] == 55.5
    assert [c["name"] for c in seen["containers"]] == ["ann-web"]  # unchanged: not sent
    await uplink.call(COMPACT, {**compact, "s": 3, "c": []}, timeout=5)
    assert (await api.get(f"/api/v1/devices/{key}")).json()["containers"] == []


@pytest.mark.parametrize(
    "compact",
    [
        {"s": 2, "i": 30, "m": [101, 0, 0, 0]},  # cpu above 100 %
        {"s": 2, "i": 30, "m": [1, 0, 0]},  # a metric missing
        {"s": 2, "i": 30, "m": [1, 0, 0, 0], "device": {"key": "someone_else"}},
        {"s": -1, "i": 30, "m": [1, 0, 0, 0]},
    ],
)
async def test_malformed_compact_beats_are_refused(device, api, compact) -> None:
    key, uplink = device
    await uplink.call(HEARTBEAT, heartbeat(key), timeout=5)
    with pytest.raises(CallFailed) as failure:
        await uplink.call(COMPACT, compact, timeout=5)
    assert failure.value.error == errors.INVALID_ARGUMENT
    assert (await api.get(f"/api/v1/devices/{key}")).json()["status"] == "online"
