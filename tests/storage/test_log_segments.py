"""Containers' log segments in the storage service (both databases): stored once each,
read back in time order, only by their tenant, refused when malformed, oversized or not
of the granted container, and swept after the operator's retention."""

import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecloud_contracts.log_segments import MAX_SEGMENT_BYTES
from edgecloud_servicekit.identity import IDENTITY_HEADER, Identity, sign_identity
from edgecloud_servicekit.transfer_tokens import Direction, TransferGrant, sign_transfer
from tests.conftest import eventually
from tests.support.stack import Stack

pytestmark = pytest.mark.stack

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest) -> Iterator[Stack]:
    stack = Stack(
        backend=request.param, workdir=Path(tempfile.mkdtemp(prefix="logs-")), only=("storage",)
    )
    try:
        yield stack.start()
    finally:
        stack.stop()
        stack.cleanup()


def grant(
    stack: Stack,
    container_id: str,
    *,
    tenant_id: str = "t-1",
    device_key: str = "node_a",
    direction: Direction = "logs",
) -> str:
    return sign_transfer(
        TransferGrant(container_id, tenant_id, device_key, direction),
        secret=stack.internal_secret,
    )


def reader(stack: Stack, tenant_id: str) -> dict[str, str]:
    identity = Identity(user_id=f"u-{tenant_id}", username="u", tenant_id=tenant_id)
    return {
        IDENTITY_HEADER: sign_identity(identity, secret=stack.internal_secret, audience="storage")
    }


def segment(container_id: str, texts: list[str], *, start: datetime, skip: int = 0) -> dict:
    return {
        "container_id": container_id,
        "start_skip": skip,
        "lines": [
            {
                "at": (start + timedelta(milliseconds=i)).isoformat(),
                "stream": "stdout",
                "text": t,
            }
            for i, t in enumerate(texts)
        ],
    }


async def ship(
    client: httpx.AsyncClient, stack: Stack, container_id: str, body: Any, **grant_of: Any
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(
        f"/v1/transfers/{container_id}/logs",
        params={"grant": grant(stack, container_id, **grant_of)},
        content=content,
        headers={"Content-Type": "application/json"},
    )


async def read(
    client: httpx.AsyncClient, stack: Stack, container_id: str, tenant_id: str = "t-1", **params
) -> list[dict]:
    answer = await client.get(
        f"/v1/logs/{container_id}", params=params, headers=reader(stack, tenant_id)
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["lines"]


async def test_segments_are_stored_once_and_read_in_time_order(storage: Stack) -> None:
    cid = "c-order"
    first = segment(cid, ["one", "two"], start=T0)
    second = segment(cid, ["three"], start=T0 + timedelta(seconds=1))
    # From the new node after a migration: its own device, later lines.
    third = segment(cid, ["four", "five"], start=T0 + timedelta(seconds=2))
    async with httpx.AsyncClient(base_url=storage.url("storage"), timeout=10) as client:
        answers = [
            await ship(client, storage, cid, second),
            await ship(client, storage, cid, first),
            await ship(client, storage, cid, third, device_key="node_b"),
            await ship(client, storage, cid, first),  # again, its answer lost
        ]
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        assert [a.json()["stored"] for a in answers] == [True, True, True, False]
        lines = await read(client, storage, cid)
        assert [line["text"] for line in lines] == ["one", "two", "three", "four", "five"]
        assert [line["device"] for line in lines] == ["node_a"] * 3 + ["node_b"] * 2
        tail = await read(client, storage, cid, tail=2)
        assert [line["text"] for line in tail] == ["four", "five"]
        before = await read(
            client, storage, cid, tail=2, before=(T0 + timedelta(seconds=2)).isoformat()
        )
        assert [line["text"] for line in before] == ["two", "three"]


async def test_lines_of_one_instant_in_two_segments_are_both_kept(storage: Stack) -> None:
    cid = "c-instant"
    async with httpx.AsyncClient(base_url=storage.url("storage"), timeout=10) as client:
        for skip, text in enumerate(["a", "b"]):
            one = segment(cid, [text], start=T0, skip=skip)
            assert (await ship(client, storage, cid, one)).json()["stored"] is True
        assert [line["text"] for line in await read(client, storage, cid)] == ["a", "b"]


async def test_another_tenant_reads_nothing(storage: Stack) -> None:
    cid = "c-private"
    async with httpx.AsyncClient(base_url=storage.url("storage"), timeout=10) as client:
        shipped = await ship(client, storage, cid, segment(cid, ["secret"], start=T0))
        assert shipped.status_code == 200, shipped.text
        assert [line["text"] for line in await read(client, storage, cid)] == ["secret"]
        assert await read(client, storage, cid, tenant_id="t-2") == []
        # Not without an identity either.
        anonymous = await client.get(f"/v1/logs/{cid}")
        assert anonymous.status_code == 401


async def test_bad_segments_are_refused_and_leave_nothing(storage: Stack) -> None:
    cid = "c-bad"
    good = segment(cid, ["fine"], start=T0)
    huge = segment(cid, ["x" * 16000] * 40, start=T0)
    assert len(json.dumps(huge)) > MAX_SEGMENT_BYTES
    backwards = segment(cid, ["late", "early"], start=T0)
    backwards["lines"].reverse()
    cases: list[tuple[Any, dict, int, str]] = [
        (huge, {}, 413, "segment_too_large"),
        (b"{not json", {}, 422, "segment_malformed"),
        ({**good, "lines": []}, {}, 422, "segment_malformed"),
        ({**good, "tenant_id": "t-2"}, {}, 422, "segment_malformed"),
        (backwards, {}, 422, "segment_malformed"),
        ({**good, "container_id": "c-of-another-tenant"}, {}, 403, "segment_not_granted"),
        (good, {"direction": "upload"}, 403, "grant_invalid"),
    ]
    async with httpx.AsyncClient(base_url=storage.url("storage"), timeout=10) as client:
        for body, grant_of, status, code in cases:
            refused = await ship(client, storage, cid, body, **grant_of)
            assert refused.status_code == status, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["code"] == code
        # A grant for one container does not ship another's.
        elsewhere = await client.post(
            f"/v1/transfers/{cid}/logs",
            params={"grant": grant(storage, "c-other")},
            content=json.dumps(good),
        )
        assert (elsewhere.status_code, elsewhere.json()["code"]) == (403, "grant_invalid")
        missing = await client.post(f"/v1/transfers/{cid}/logs", content=json.dumps(good))
        assert (missing.status_code, missing.json()["code"]) == (401, "grant_missing")
        assert await read(client, storage, cid) == []
        assert await read(client, storage, "c-of-another-tenant") == []


async def test_segments_are_swept_after_the_retention() -> None:
    stack = Stack(
        backend="sqlite",
        workdir=Path(tempfile.mkdtemp(prefix="logs-retention-")),
        only=("storage",),
        extra_env={"STORAGE_LOG_RETENTION_H": "0.0005", "STORAGE_LOG_SWEEP_INTERVAL_S": "0.5"},
    )
    try:
        stack.start()
        async with httpx.AsyncClient(base_url=stack.url("storage"), timeout=10) as client:
            cid = "c-old"
            shipped = await ship(client, stack, cid, segment(cid, ["soon gone"], start=T0))
            assert shipped.status_code == 200, shipped.text
            assert len(await read(client, stack, cid)) == 1

            async def swept() -> bool:
                return await read(client, stack, cid) == []

            await eventually(swept, timeout=15, interval=0.5)
    finally:
        stack.stop()
        stack.cleanup()
