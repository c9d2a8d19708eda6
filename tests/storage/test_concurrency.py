"""The storage under concurrency (both databases): parallel uploads of one tenant never pass
its quota together; parallel uploads and deletions of identical content by several tenants
(the content is stored once for all of them) never lose a blob an artifact still uses,
never keep one none uses, and leave each tenant's usage the sum of its artifacts."""

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecloud_servicekit.identity import IDENTITY_HEADER, Identity, sign_identity
from edgecloud_servicekit.transfer_tokens import TransferGrant, sign_transfer
from tests.support.stack import Stack

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest) -> Iterator[Stack]:
    stack = Stack(
        backend=request.param,
        workdir=Path(tempfile.mkdtemp(prefix="storage-races-")),
        only=("storage",),
    )
    try:
        yield stack.start()
    finally:
        stack.stop()
        stack.cleanup()


@pytest.fixture
async def client(storage: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=storage.url("storage"),
        timeout=60,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    ) as client:
        yield client


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def caller(stack: Stack, tenant_id: str, *, quota: int | None = None) -> dict[str, str]:
    identity = Identity(
        user_id=f"u-{tenant_id}",
        username=f"user-{tenant_id}",
        tenant_id=tenant_id,
        quotas={} if quota is None else {"storage_bytes": quota},
    )
    return {
        IDENTITY_HEADER: sign_identity(identity, secret=stack.internal_secret, audience="storage")
    }


def blob_path(stack: Stack, data: bytes) -> Path:
    digest = sha(data)
    return stack.workdir / "var" / "artifacts" / "blobs" / digest[:2] / digest


async def upload(client: httpx.AsyncClient, headers: dict[str, str], data: bytes) -> str | None:
    """Announce and send ``data`` in one piece: the artifact's id, or None when the quota
    refused it (any other answer fails the test)."""
    body = {"name": "same.bin", "size": len(data), "sha256": sha(data), "kind": "file"}
    announced = await client.post("/v1/artifacts", json=body, headers=headers)
    if announced.status_code == 413:
        assert announced.json()["code"] == "quota_exceeded", announced.text
        return None
    assert announced.status_code == 201, announced.text
    artifact_id: str = announced.json()["id"]
    sent = await client.patch(
        f"/v1/artifacts/{artifact_id}",
        content=data,
        headers={**headers, "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["state"] == "complete"
    return artifact_id


async def remove(client: httpx.AsyncClient, headers: dict[str, str], artifact_id: str) -> None:
    answer = await client.delete(f"/v1/artifacts/{artifact_id}", headers=headers)
    assert answer.status_code == 204, answer.text


async def listed(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = await client.get("/v1/artifacts", params={"limit": 1000}, headers=headers)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def assert_intact(
    client: httpx.AsyncClient, headers: dict[str, str], data: bytes
) -> list[dict[str, Any]]:
    """Every artifact of the caller's tenant reads back as ``data``, and its usage is the
    sum of their sizes; returns the artifacts."""
    items = await listed(client, headers)
    for item in items:
        assert item["state"] == "complete", item
        content = await client.get(f"/v1/artifacts/{item['id']}/content", headers=headers)
        assert content.status_code == 200, (item["id"], content.text)
        assert content.content == data, item["id"]
    usage = (await client.get("/v1/artifacts/usage", headers=headers)).json()
    assert usage["used_bytes"] == sum(item["size"] for item in items)
    return items


async def test_parallel_uploads_never_pass_the_quota_together(
    storage: Stack, client: httpx.AsyncClient
) -> None:
    size = 10_000
    tenants = [
        caller(storage, f"t-quota-{name}-{storage.backend}", quota=5 * size + size - 1)
        for name in ("a", "b")
    ]
    contents = {(n, i): os.urandom(size) for n in range(len(tenants)) for i in range(30)}
    results = await asyncio.gather(
        *(upload(client, tenants[n], data) for (n, _), data in contents.items())
    )
    stored = {key: id_ for key, id_ in zip(contents, results, strict=True) if id_ is not None}
    for n, headers in enumerate(tenants):
        # Room for five, not six: exactly five of the thirty got in, whatever the order.
        ours = {id_: contents[key] for key, id_ in stored.items() if key[0] == n}
        assert len(ours) == 5
        usage = (await client.get("/v1/artifacts/usage", headers=headers)).json()
        assert usage["used_bytes"] == 5 * size <= usage["quota_bytes"]
        assert {item["id"] for item in await listed(client, headers)} == set(ours)
        for artifact_id, data in ours.items():
            content = await client.get(f"/v1/artifacts/{artifact_id}/content", headers=headers)
            assert content.content == data


async def test_parallel_node_uploads_never_pass_the_quota_together(
    storage: Stack, client: httpx.AsyncClient
) -> None:
    """Artifacts a node uploads are announced without a size: their quota check comes with
    the first bytes, and must be as exclusive."""
    size = 8_000
    tenant_id = f"t-node-quota-{storage.backend}"
    headers = caller(storage, tenant_id, quota=4 * size + size - 1)
    # The tenant's quota reaches the storage on a user's request.
    assert (await client.get("/v1/artifacts/usage", headers=headers)).status_code == 200

    async def expect() -> str:
        expected = await client.post(
            "/v1/artifacts/expected",
            json={"name": "out.tar", "kind": "result", "container_id": "c-1", "device_key": "n"},
            headers=headers,
        )
        assert expected.status_code == 201, expected.text
        artifact_id: str = expected.json()["id"]
        return artifact_id

    async def node_upload(artifact_id: str, data: bytes) -> str | None:
        grant = sign_transfer(
            TransferGrant(artifact_id, tenant_id, "n", "upload"), secret=storage.internal_secret
        )
        sent = await client.patch(
            f"/v1/transfers/{artifact_id}",
            params={"grant": grant},
            content=data,
            headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
        )
        if sent.status_code == 413:
            assert sent.json()["code"] == "quota_exceeded", sent.text
            await remove(client, headers, artifact_id)
            return None
        assert sent.status_code == 200, sent.text
        return artifact_id

    contents = [os.urandom(size) for _ in range(40)]
    announced = await asyncio.gather(*(expect() for _ in contents))
    results = await asyncio.gather(
        *(node_upload(a, data) for a, data in zip(announced, contents, strict=True))
    )
    assert sum(r is not None for r in results) == 4
    usage = (await client.get("/v1/artifacts/usage", headers=headers)).json()
    assert usage["used_bytes"] == 4 * size <= usage["quota_bytes"]
    for artifact_id, data in zip(results, contents, strict=True):
        if artifact_id is not None:
            content = await client.get(f"/v1/artifacts/{artifact_id}/content", headers=headers)
            assert content.content == data


async def test_parallel_uploads_and_deletions_of_identical_content_lose_no_bytes(
    storage: Stack, client: httpx.AsyncClient
) -> None:
    data = os.urandom(64 * 1024)
    tenants = [caller(storage, f"t-same-{n}-{storage.backend}") for n in range(3)]
    # Each tenant keeps a few artifacts of the content and churns the rest: uploads and
    # deletions of the same bytes interleave across tenants, round after round.
    kept = await asyncio.gather(*(upload(client, headers, data) for headers in tenants))
    churned: list[tuple[dict[str, str], str]] = []
    for _ in range(4):
        uploads = [headers for headers in tenants for _ in range(8)]
        deletions = [remove(client, headers, artifact_id) for headers, artifact_id in churned]
        outcome = await asyncio.gather(
            *(upload(client, headers, data) for headers in uploads), *deletions
        )
        churned = [
            (headers, artifact_id)
            for headers, artifact_id in zip(uploads, outcome[: len(uploads)], strict=True)
            if artifact_id is not None
        ]
        assert len(churned) == len(uploads)
    await asyncio.gather(
        *(remove(client, headers, artifact_id) for headers, artifact_id in churned)
    )
    for headers, artifact_id in zip(tenants, kept, strict=True):
        assert [item["id"] for item in await assert_intact(client, headers, data)] == [artifact_id]
    assert blob_path(storage, data).read_bytes() == data
    # The last references go: the bytes go with them (no count was lost on the way up).
    await asyncio.gather(
        *(
            remove(client, headers, artifact_id)
            for headers, artifact_id in zip(tenants, kept, strict=True)
            if artifact_id is not None
        )
    )
    assert not blob_path(storage, data).exists()


async def test_an_upload_racing_the_deletion_of_the_last_reference_stays_readable(
    storage: Stack, client: httpx.AsyncClient
) -> None:
    first, second = (caller(storage, f"t-race-{n}-{storage.backend}") for n in (1, 2))

    async def race() -> None:
        data = os.urandom(128 * 1024)
        only_reference = await upload(client, first, data)
        assert only_reference is not None
        body = {"name": "again.bin", "size": len(data), "sha256": sha(data), "kind": "file"}
        announced = await client.post("/v1/artifacts", json=body, headers=second)
        assert announced.status_code == 201, announced.text
        again = announced.json()["id"]
        last = len(data) - 1
        first_part = await client.patch(
            f"/v1/artifacts/{again}",
            content=data[:last],
            headers={**second, "Content-Range": f"bytes 0-{last - 1}/{len(data)}"},
        )
        assert first_part.status_code == 204, first_part.text
        # The last byte of the second tenant's copy arrives as the first one's goes.
        sent, _ = await asyncio.gather(
            client.patch(
                f"/v1/artifacts/{again}",
                content=data[last:],
                headers={**second, "Content-Range": f"bytes {last}-{last}/{len(data)}"},
            ),
            remove(client, first, only_reference),
        )
        assert sent.status_code == 200, sent.text
        content = await client.get(f"/v1/artifacts/{again}/content", headers=second)
        assert content.status_code == 200, content.text
        assert content.content == data
        await remove(client, second, again)
        assert not blob_path(storage, data).exists()

    # Many at once, each of its own content: some land in the narrow window.
    for _ in range(10):
        await asyncio.gather(*(race() for _ in range(12)))
