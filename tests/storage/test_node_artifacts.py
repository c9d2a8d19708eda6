"""Artifacts a node is expected to upload (a container's files, a job's log), in the storage
service (both databases): only the node's transfer grant writes into them; their tenant
is refused any write and reads them once complete."""

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from edgecloud_servicekit.identity import IDENTITY_HEADER, Identity, sign_identity
from edgecloud_servicekit.transfer_tokens import TransferGrant, sign_transfer
from tests.support.stack import Stack

pytestmark = pytest.mark.stack

TENANT = "t-results"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest) -> Iterator[Stack]:
    stack = Stack(
        backend=request.param,
        workdir=Path(tempfile.mkdtemp(prefix="node-artifacts-")),
        only=("storage",),
    )
    try:
        yield stack.start()
    finally:
        stack.stop()
        stack.cleanup()


@pytest.fixture
async def client(storage: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=storage.url("storage"), timeout=30) as client:
        yield client


def member(stack: Stack) -> dict[str, str]:
    identity = Identity(user_id="u-member", username="member", tenant_id=TENANT)
    return {
        IDENTITY_HEADER: sign_identity(identity, secret=stack.internal_secret, audience="storage")
    }


def upload_grant(stack: Stack, artifact_id: str, device_key: str = "node_a") -> str:
    return sign_transfer(
        TransferGrant(artifact_id, TENANT, device_key, "upload"), secret=stack.internal_secret
    )


async def expect(client: httpx.AsyncClient, stack: Stack, kind: str = "result") -> str:
    """What the orchestrator does before it orders a node to send a container's files."""
    answer = await client.post(
        "/v1/artifacts/expected",
        json={"name": "out.tar", "kind": kind, "container_id": "c-1", "device_key": "node_a"},
        headers=member(stack),
    )
    assert answer.status_code == 201, answer.text
    artifact_id: str = answer.json()["id"]
    return artifact_id


def whole(data: bytes) -> dict[str, str]:
    return {"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"}


@pytest.mark.parametrize("kind", ["result", "log"])
async def test_the_tenant_cannot_write_into_what_its_node_uploads(
    storage: Stack, client: httpx.AsyncClient, kind: str
) -> None:
    artifact_id = await expect(client, storage, kind)
    forged = os.urandom(4096)
    path = f"/v1/artifacts/{artifact_id}"
    for headers in (
        whole(forged),
        # Not even "where are we", which fixes the size and hash the node must then match.
        {"Content-Range": f"bytes */{len(forged)}", "X-Content-SHA256": "0" * 64},
    ):
        body = forged if headers["Content-Range"].startswith("bytes 0") else b""
        refused = await client.patch(path, content=body, headers={**member(storage), **headers})
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "artifact_node_only"
    untouched = (await client.get(path, headers=member(storage))).json()
    assert (untouched["state"], untouched["received"], untouched["size"]) == ("uploading", 0, None)
    assert untouched["sha256"] is None

    # The node sends the real bytes with its grant; the tenant reads them.
    real = os.urandom(5000)
    transfer = f"/v1/transfers/{artifact_id}"
    stranger = await client.patch(
        transfer,
        params={"grant": upload_grant(storage, artifact_id, "node_b")},
        content=real,
        headers=whole(real),
    )
    assert (stranger.status_code, stranger.json()["code"]) == (403, "grant_invalid")
    sent = await client.patch(
        transfer,
        params={"grant": upload_grant(storage, artifact_id)},
        content=real,
        headers={**whole(real), "X-Content-SHA256": hashlib.sha256(real).hexdigest()},
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["state"] == "complete"
    content = await client.get(f"{path}/content", headers=member(storage))
    assert content.status_code == 200
    assert content.content == real
    assert (await client.delete(path, headers=member(storage))).status_code == 204


async def test_the_tenant_still_writes_its_own_uploads(
    storage: Stack, client: httpx.AsyncClient
) -> None:
    data = os.urandom(3000)
    announced = await client.post(
        "/v1/artifacts",
        json={
            "name": "mine.bin",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "kind": "result",
        },
        headers=member(storage),
    )
    assert announced.status_code == 201, announced.text
    sent = await client.patch(
        f"/v1/artifacts/{announced.json()['id']}",
        content=data,
        headers={**member(storage), **whole(data)},
    )
    assert sent.status_code == 200, sent.text
