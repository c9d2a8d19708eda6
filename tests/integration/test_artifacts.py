"""Artifacts through the public API: resumable uploads, one-request uploads, checksums,
quotas, ranged downloads, de-duplication, transfers for nodes, and tenants kept apart."""

import asyncio
import hashlib
import os
import secrets
from urllib.parse import urlsplit

import httpx
import pytest

from edgecloud_servicekit.identity import IDENTITY_HEADER, Identity, sign_identity
from edgecloud_servicekit.transfer_tokens import TransferGrant, sign_transfer
from tests.conftest import eventually
from tests.support.users import Account, register

pytestmark = pytest.mark.stack


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def announce(client: httpx.AsyncClient, data: bytes, name: str = "app.tar", **extra):
    body = {"name": name, "size": len(data), "sha256": sha(data), **extra}
    return await client.post("/api/v1/artifacts", json=body)


async def send(client: httpx.AsyncClient, artifact_id: str, data: bytes, start: int, end: int):
    return await client.patch(
        f"/api/v1/artifacts/{artifact_id}",
        content=data[start:end],
        headers={"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"},
    )


async def half_a_patch(
    stack, tenant: Account, artifact_id: str, data: bytes
) -> asyncio.StreamWriter:
    """A PATCH announcing all of ``data`` whose body stops halfway (by hand: no client
    library sends less than it announced)."""
    address = urlsplit(stack.url("gateway"))
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    head = (
        f"PATCH /api/v1/artifacts/{artifact_id} HTTP/1.1\r\n"
        f"Host: {address.netloc}\r\n"
        f"Authorization: Bearer {tenant.token}\r\n"
        f"Content-Range: bytes 0-{len(data) - 1}/{len(data)}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    writer.write(head.encode() + data[: len(data) // 2])
    await writer.drain()
    return writer


@pytest.fixture
async def tenant(stack) -> Account:
    return await register(stack)


@pytest.fixture
async def as_tenant(stack, tenant):
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), timeout=30, headers=tenant.headers
    ) as client:
        yield client


async def test_upload_in_pieces_then_download_whole_and_in_ranges(as_tenant) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)
    created = await announce(as_tenant, data, kind="application")
    assert created.status_code == 201, created.text
    artifact = created.json()
    assert artifact["state"] == "uploading"
    assert artifact["received"] == 0
    assert artifact["upload_url"] == f"/api/v1/artifacts/{artifact['id']}"
    first = await send(as_tenant, artifact["id"], data, 0, 1_000_000)
    assert first.status_code == 204, first.text
    assert first.headers["Upload-Offset"] == "1000000"
    last = await send(as_tenant, artifact["id"], data, 1_000_000, len(data))
    assert last.status_code == 200, last.text
    done = last.json()
    assert done["state"] == "complete"
    assert done["sha256"] == sha(data)
    assert done["content_url"] == f"/api/v1/artifacts/{artifact['id']}/content"
    whole = await as_tenant.get(done["content_url"])
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["x-content-sha256"] == sha(data)
    part = await as_tenant.get(done["content_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    beyond = await as_tenant.get(done["content_url"], headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    # A complete artifact cannot change.
    again = await send(as_tenant, artifact["id"], data, 0, 10)
    assert again.status_code == 409
    assert again.json()["code"] == "artifact_complete"


async def test_small_file_in_one_request(as_tenant) -> None:
    script = b"#!/bin/sh\necho hello\n"
    answer = await as_tenant.post(
        "/api/v1/artifacts",
        files={"file": ("run.sh", script, "text/x-sh")},
        data={"kind": "script"},
    )
    assert answer.status_code == 201, answer.text
    artifact = answer.json()
    assert (artifact["name"], artifact["kind"], artifact["state"]) == (
        "run.sh",
        "script",
        "complete",
    )
    assert artifact["sha256"] == sha(script)
    assert artifact["size"] == len(script)
    assert (await as_tenant.get(artifact["content_url"])).content == script
    listed = (await as_tenant.get("/api/v1/artifacts", params={"kind": "script"})).json()
    assert artifact["id"] in [a["id"] for a in listed["items"]]


async def test_wrong_offset_is_refused_with_where_to_continue(as_tenant) -> None:
    data = os.urandom(10_000)
    artifact = (await announce(as_tenant, data)).json()
    assert (await send(as_tenant, artifact["id"], data, 0, 4000)).status_code == 204
    skipped = await send(as_tenant, artifact["id"], data, 5000, 10_000)
    assert skipped.status_code == 409
    assert skipped.json()["code"] == "offset_mismatch"
    assert skipped.json()["received"] == 4000
    asked = await as_tenant.patch(
        f"/api/v1/artifacts/{artifact['id']}", headers={"Content-Range": f"bytes */{len(data)}"}
    )
    assert asked.status_code == 204
    assert asked.headers["Upload-Offset"] == "4000"
    assert (await send(as_tenant, artifact["id"], data, 4000, 10_000)).status_code == 200


async def test_an_upload_cut_in_the_middle_resumes_from_the_last_byte_stored(
    stack, tenant, as_tenant
) -> None:
    data = os.urandom(4 * 1024 * 1024)
    artifact = (await announce(as_tenant, data)).json()
    # Send the headers and half of the body by hand, then drop the connection.
    writer = await half_a_patch(stack, tenant, artifact["id"], data)
    await asyncio.sleep(0.3)
    writer.transport.abort()

    async def stored() -> int:
        received = (await as_tenant.get(f"/api/v1/artifacts/{artifact['id']}")).json()["received"]
        return received if received > 0 else 0

    received = await eventually(stored, timeout=10)
    assert 0 < received <= len(data) // 2
    finished = await send(as_tenant, artifact["id"], data, received, len(data))
    assert finished.status_code == 200, finished.text
    assert finished.json()["sha256"] == sha(data)
    assert (await as_tenant.get(finished.json()["content_url"])).content == data


async def test_a_stalled_upload_holds_nothing_and_resumes(stack, tenant, as_tenant) -> None:
    """A client that stops sending without closing (a half-open link): asking where the
    upload stands answers at once, and once the storage gives up on the stalled body the
    upload goes on from what arrived."""
    data = os.urandom(2 * 1024 * 1024)
    artifact = (await announce(as_tenant, data)).json()
    writer = await half_a_patch(stack, tenant, artifact["id"], data)
    try:
        path = f"/api/v1/artifacts/{artifact['id']}"
        probe = await asyncio.wait_for(
            as_tenant.patch(path, headers={"Content-Range": f"bytes */{len(data)}"}), 5
        )
        assert probe.status_code == 204

        async def stored() -> int:
            return int((await as_tenant.get(path)).json()["received"])

        received = await eventually(stored, timeout=15, interval=0.2)
        assert 0 < received <= len(data) // 2
        finished = await send(as_tenant, artifact["id"], data, received, len(data))
        assert finished.status_code == 200, finished.text
        assert finished.json()["sha256"] == sha(data)
    finally:
        writer.transport.abort()


async def test_a_wrong_sha256_fails_the_upload_and_keeps_nothing(as_tenant) -> None:
    data = os.urandom(50_000)
    body = {"name": "app.tar", "size": len(data), "sha256": sha(b"something else")}
    artifact = (await as_tenant.post("/api/v1/artifacts", json=body)).json()
    answer = await send(as_tenant, artifact["id"], data, 0, len(data))
    assert answer.status_code == 422
    assert answer.json()["code"] == "checksum_mismatch"
    after = (await as_tenant.get(f"/api/v1/artifacts/{artifact['id']}")).json()
    assert after["state"] == "uploading"
    assert after["received"] == 0
    assert (await as_tenant.get(f"/api/v1/artifacts/{artifact['id']}/content")).status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"size": 1, "sha256": "0" * 64}, "name"),
        ({"name": "../etc/passwd", "size": 1, "sha256": "0" * 64}, "name"),
        ({"name": "a\nb", "size": 1, "sha256": "0" * 64}, "name"),
        ({"name": "a.tar", "size": -1, "sha256": "0" * 64}, "size"),
        ({"name": "a.tar", "size": 1, "sha256": "XYZ"}, "sha256"),
        ({"name": "a.tar", "size": 1}, "sha256"),
    ],
)
async def test_bad_announcements_are_422_naming_the_field(as_tenant, body, field) -> None:
    before = (await as_tenant.get("/api/v1/artifacts")).json()["items"]
    answer = await as_tenant.post("/api/v1/artifacts", json=body)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["fields"]
    assert (await as_tenant.get("/api/v1/artifacts")).json()["items"] == before


async def test_bad_content_ranges_are_refused(as_tenant) -> None:
    data = os.urandom(1000)
    artifact = (await announce(as_tenant, data)).json()
    path = f"/api/v1/artifacts/{artifact['id']}"
    for header in ("", "bytes 0-99", "bytes 10-5/1000", "bytes 0-99/2000", "items 0-99/1000"):
        answer = await as_tenant.patch(
            path, content=data[:100], headers={"Content-Range": header} if header else {}
        )
        assert answer.status_code == 400, (header, answer.text)
        assert answer.json()["code"] == "bad_content_range"
    assert (await as_tenant.get(path)).json()["received"] == 0


async def test_quota_overflow_is_413_and_stores_nothing(stack, api, tenant, as_tenant) -> None:
    quota = await api.patch(
        f"/api/v1/tenants/{tenant.tenant_id}/quotas", json={"storage_bytes": 100_000}
    )
    assert quota.status_code == 200, quota.text
    # Quotas travel on the caller's signed identity: sign in again to carry the new one.
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as client:
        fresh = await client.post(
            "/api/v1/auth/login", json={"username": tenant.username, "password": tenant.password}
        )
        as_tenant.headers["Authorization"] = f"Bearer {fresh.json()['access_token']}"
    fits = os.urandom(60_000)
    created = await announce(as_tenant, fits)
    assert created.status_code == 201
    too_much = await announce(as_tenant, os.urandom(50_000))
    assert too_much.status_code == 413
    assert too_much.json()["code"] == "quota_exceeded"
    small = await as_tenant.post(
        "/api/v1/artifacts", files={"file": ("big.bin", os.urandom(50_000))}
    )
    assert small.status_code == 413
    assert small.json()["code"] == "quota_exceeded"
    items = (await as_tenant.get("/api/v1/artifacts")).json()["items"]
    assert [a["id"] for a in items] == [created.json()["id"]]
    usage = (await as_tenant.get("/api/v1/artifacts/usage")).json()
    assert usage == {"used_bytes": 60_000, "quota_bytes": 100_000}


async def test_oversized_one_request_upload_is_refused_before_it_is_read(stack, as_tenant) -> None:
    # 40 MiB announced: refused on the headers, the body is never read (the limit is 32 MiB).
    address = urlsplit(stack.url("gateway"))
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    head = (
        "POST /api/v1/artifacts HTTP/1.1\r\n"
        f"Host: {address.netloc}\r\n"
        f"Authorization: {as_tenant.headers['Authorization']}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {40 << 20}\r\n\r\n"
    )
    writer.write(head.encode() + b"--xyz\r\n")
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert b" 413 " in status_line, status_line


async def test_identical_content_is_stored_once(stack, as_tenant) -> None:
    data = os.urandom(200_000)
    other = await register(stack)
    ids = []
    for client_headers in (as_tenant.headers, other.headers):
        async with httpx.AsyncClient(
            base_url=stack.url("gateway"), timeout=30, headers=client_headers
        ) as client:
            artifact = (await announce(client, data)).json()
            assert (await send(client, artifact["id"], data, 0, len(data))).status_code == 200
            ids.append(artifact["id"])
    blobs = stack.workdir / "var" / "artifacts" / "blobs" / sha(data)[:2] / sha(data)
    assert blobs.read_bytes() == data
    parts = list((stack.workdir / "var" / "artifacts" / "parts").iterdir())
    assert not [p for p in parts if p.name in ids]
    # Deleting one keeps the bytes for the other; deleting both frees them.
    assert (await as_tenant.delete(f"/api/v1/artifacts/{ids[0]}")).status_code == 204
    assert blobs.exists()
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), timeout=30, headers=other.headers
    ) as client:
        assert (await client.get(f"/api/v1/artifacts/{ids[1]}/content")).content == data
        assert (await client.delete(f"/api/v1/artifacts/{ids[1]}")).status_code == 204
    assert not blobs.exists()


async def test_another_tenant_reaches_none_of_it(stack, as_tenant) -> None:
    data = os.urandom(1000)
    artifact = (await announce(as_tenant, data)).json()
    await send(as_tenant, artifact["id"], data, 0, len(data))
    intruder = await register(stack)
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), timeout=30, headers=intruder.headers
    ) as client:
        path = f"/api/v1/artifacts/{artifact['id']}"
        assert (await client.get(path)).status_code == 404
        assert (await client.get(f"{path}/content")).status_code == 404
        assert (await send(client, artifact["id"], data, 0, 10)).status_code == 404
        assert (await client.delete(path)).status_code == 404
        listed = (await client.get("/api/v1/artifacts")).json()["items"]
        assert artifact["id"] not in [a["id"] for a in listed]
    assert (await as_tenant.get(f"{path}/content")).content == data


async def test_transfers_need_a_current_grant_for_that_artifact(stack, tenant, as_tenant) -> None:
    data = os.urandom(5000)
    artifact = (await announce(as_tenant, data)).json()
    await send(as_tenant, artifact["id"], data, 0, len(data))
    other = (await announce(as_tenant, b"x", name="other.txt")).json()

    def grant(artifact_id: str, *, ttl: float = 60, tenant_id: str = tenant.tenant_id) -> str:
        return sign_transfer(
            TransferGrant(
                artifact_id=artifact_id,
                tenant_id=tenant_id,
                device_key="node_1",
                direction="download",
            ),
            secret=stack.internal_secret,
            ttl_s=ttl,
        )

    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as node:
        path = f"/api/v1/transfers/{artifact['id']}"
        ok = await node.get(path, params={"grant": grant(artifact["id"])})
        assert ok.status_code == 200
        assert ok.content == data
        ranged = await node.get(
            path, params={"grant": grant(artifact["id"])}, headers={"Range": "bytes=4000-"}
        )
        assert ranged.status_code == 206
        assert ranged.content == data[4000:]
        for token, code in (
            (grant(artifact["id"], ttl=-5), "grant_expired"),
            (grant(other["id"]), "grant_invalid"),
            ("not-a-grant", "grant_invalid"),
            (
                sign_transfer(
                    TransferGrant(artifact["id"], tenant.tenant_id, "node_1", "download"),
                    secret=secrets.token_urlsafe(48),
                ),
                "grant_invalid",
            ),
        ):
            refused = await node.get(path, params={"grant": token})
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == code
        # A genuine grant naming another tenant finds nothing.
        foreign = await node.get(path, params={"grant": grant(artifact["id"], tenant_id="t-x")})
        assert foreign.status_code == 404
        assert (await node.get(path)).status_code == 422


async def test_what_a_node_uploads_its_tenant_reads_but_cannot_write(
    stack, tenant, as_tenant
) -> None:
    # As the orchestrator asks for it before ordering the node to send a container's files.
    acting = Identity(user_id=tenant.user_id, username=tenant.username, tenant_id=tenant.tenant_id)
    async with httpx.AsyncClient(base_url=stack.url("storage"), timeout=30) as storage:
        expected = await storage.post(
            "/v1/artifacts/expected",
            json={"name": "out.tar", "kind": "result", "container_id": "c-1", "device_key": "n_1"},
            headers={
                IDENTITY_HEADER: sign_identity(
                    acting, secret=stack.internal_secret, audience="storage"
                )
            },
        )
    assert expected.status_code == 201, expected.text
    artifact_id = expected.json()["id"]
    forged, real = os.urandom(2000), os.urandom(3000)
    refused = await send(as_tenant, artifact_id, forged, 0, len(forged))
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "artifact_node_only"
    grant = sign_transfer(
        TransferGrant(artifact_id, tenant.tenant_id, "n_1", "upload"), secret=stack.internal_secret
    )
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as node:
        sent = await node.patch(
            f"/api/v1/transfers/{artifact_id}",
            params={"grant": grant},
            content=real,
            headers={"Content-Range": f"bytes 0-{len(real) - 1}/{len(real)}"},
        )
    assert sent.status_code == 200, sent.text
    content = await as_tenant.get(f"/api/v1/artifacts/{artifact_id}/content")
    assert (content.status_code, content.content) == (200, real)


class CuttingProxy:
    """A TCP proxy to the gateway that breaks the first answer after ``cut_after`` bytes,
    as a lossy link would; later connections pass whole."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> "CuttingProxy":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter):
        self.connections += 1
        limit = self.cut_after if self.connections == 1 else None
        upstream_in, upstream_out = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(source, sink, limit: int | None) -> None:
            passed = 0
            try:
                while chunk := await source.read(65536):
                    if limit is not None and passed + len(chunk) > limit:
                        sink.write(chunk[: limit - passed])
                        await sink.drain()
                        sink.transport.abort()
                        return
                    passed += len(chunk)
                    sink.write(chunk)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(
            pipe(client_in, upstream_out, None),
            pipe(upstream_in, client_out, limit),
            return_exceptions=True,
        )


async def test_the_agent_download_resumes_after_the_link_breaks(stack, tenant, as_tenant) -> None:
    import aiohttp

    from edgecloud_agent.deploy.download import DownloadProgress, download

    data = os.urandom(3 * 1024 * 1024)
    artifact = (await announce(as_tenant, data)).json()
    assert (await send(as_tenant, artifact["id"], data, 0, len(data))).status_code == 200
    grant = sign_transfer(
        TransferGrant(artifact["id"], tenant.tenant_id, "node_1", "download"),
        secret=stack.internal_secret,
    )
    resumed_from: list[int] = []

    def progress(done: DownloadProgress) -> None:
        if done.resumed_from and done.resumed_from not in resumed_from:
            resumed_from.append(done.resumed_from)

    port = urlsplit(stack.url("gateway")).port
    assert port is not None
    async with CuttingProxy(port, cut_after=1024 * 1024) as proxy, aiohttp.ClientSession() as http:
        target = stack.workdir / f"download-{artifact['id']}"
        await download(
            http,
            f"{proxy.url}/api/v1/transfers/{artifact['id']}?grant={grant}",
            target,
            sha256=sha(data),
            size=len(data),
            progress=progress,
            backoff_s=0.05,
            chunk_bytes=64 * 1024,  # pieces land on disk as they come, before the cut
        )
        assert proxy.connections >= 2  # the broken one, then the resumed one
    assert await asyncio.to_thread(target.read_bytes) == data
    assert resumed_from
    assert 0 < resumed_from[0] < 1024 * 1024  # went on from what had arrived
