"""The storage service on its S3 backend (moto's S3 server on loopback stands in for an
S3-compatible store: none can run on this machine): an upload in pieces, a ranged
download, and de-duplication, through the service's own API."""

import hashlib
import os
import tempfile
from pathlib import Path

import httpx
import pytest
from moto.server import ThreadedMotoServer

from edgecloud_servicekit.identity import IDENTITY_HEADER, Identity, sign_identity
from tests.support.processes import free_port
from tests.support.stack import Stack

pytestmark = pytest.mark.stack


class S3Stack(Stack):
    s3_url: str = ""

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "STORAGE_BACKEND": "s3",
            "STORAGE_S3_ENDPOINT_URL": self.s3_url,
            "STORAGE_S3_ACCESS_KEY": "test",
            "STORAGE_S3_SECRET_KEY": "test",
        }


@pytest.fixture(scope="module")
def s3_storage():
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    stack = S3Stack(
        backend="sqlite", workdir=Path(tempfile.mkdtemp(prefix="s3-")), only=("storage",)
    )
    stack.s3_url = f"http://127.0.0.1:{port}"
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        moto.stop()
        stack.cleanup()


async def test_upload_download_and_dedupe_on_s3(s3_storage) -> None:
    identity = Identity(user_id="u-1", username="alice", tenant_id="t-1", roles=frozenset())
    headers = {
        IDENTITY_HEADER: sign_identity(
            identity, secret=s3_storage.internal_secret, audience="storage"
        )
    }
    data = os.urandom(9 * 1024 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    async with httpx.AsyncClient(
        base_url=s3_storage.url("storage"), timeout=60, headers=headers
    ) as client:
        ids = []
        for _ in range(2):
            created = await client.post(
                "/v1/artifacts", json={"name": "app.tar", "size": len(data), "sha256": sha}
            )
            assert created.status_code == 201, created.text
            artifact_id = created.json()["id"]
            half = len(data) // 2
            first = await client.patch(
                f"/v1/artifacts/{artifact_id}",
                content=data[:half],
                headers={"Content-Range": f"bytes 0-{half - 1}/{len(data)}"},
            )
            assert first.status_code == 204, first.text
            last = await client.patch(
                f"/v1/artifacts/{artifact_id}",
                content=data[half:],
                headers={"Content-Range": f"bytes {half}-{len(data) - 1}/{len(data)}"},
            )
            assert last.status_code == 200, last.text
            ids.append(artifact_id)
        whole = await client.get(f"/v1/artifacts/{ids[0]}/content")
        assert whole.content == data
        part = await client.get(f"/v1/artifacts/{ids[1]}/content", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206
        assert part.content == data[10:20]
        for artifact_id in ids:
            assert (await client.delete(f"/v1/artifacts/{artifact_id}")).status_code == 204
