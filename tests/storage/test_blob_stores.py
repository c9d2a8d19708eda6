"""Both blob stores keep the same contract: pieces written at offsets (a resumed piece
replaces what followed), hashed, joined into a blob named by its SHA-256 (once per
content), read back in ranges, dropped.

The S3 store runs against moto's S3 server on loopback: no real S3-compatible server can
run on this machine (MinIO is in no registry we may use), so this is the one mock here.
"""

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

from edgecloud_storage.artifacts.backends import BlobStore, FilesystemStore, TooMuchData
from edgecloud_storage.artifacts.s3 import PIECE, S3Store
from tests.support.processes import free_port


@pytest.fixture(scope="module")
def moto_url():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(params=["filesystem", "s3"])
async def store(request, tmp_path: Path, moto_url: str) -> AsyncIterator[BlobStore]:
    if request.param == "filesystem":
        yield FilesystemStore(tmp_path)
        return
    async with get_session().create_client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ) as client:
        s3 = S3Store(client, f"bucket-{os.urandom(4).hex()}")
        await s3.ensure_bucket()
        yield s3


async def pieces(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(store: BlobStore, sha: str, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in store.read(sha, start, end)])


async def test_pieces_resume_hash_join_and_read(store: BlobStore) -> None:
    data = os.urandom(PIECE + 3 * 1024 * 1024)  # more than one stored piece in S3
    digest = hashlib.sha256()
    assert await store.write_part("a1", 0, pieces(data[:5_000_000]), limit=len(data)) == 5_000_000
    # The uploader resends from 4,000,000 (its acknowledgement was lost): that part is replaced.
    written = await store.write_part(
        "a1", 4_000_000, pieces(data[4_000_000:]), limit=len(data) - 4_000_000, digest=digest
    )
    assert written == len(data) - 4_000_000
    assert digest.hexdigest() == hashlib.sha256(data[4_000_000:]).hexdigest()
    sha = hashlib.sha256(data).hexdigest()
    assert await store.part_sha256("a1") == sha
    assert await store.promote("a1", sha) is True
    assert await read_all(store, sha, 0, len(data)) == data
    assert await read_all(store, sha, 123, 456_789) == data[123:456_789]
    # The same content again is not stored twice.
    await store.write_part("a2", 0, pieces(data), limit=len(data))
    assert await store.promote("a2", sha) is False
    assert await read_all(store, sha, len(data) - 10, len(data)) == data[-10:]
    await store.drop_blob(sha)


async def test_more_than_announced_is_refused(store: BlobStore) -> None:
    with pytest.raises(TooMuchData):
        await store.write_part("a3", 0, pieces(os.urandom(1000), 100), limit=500)
    await store.drop_part("a3")


async def test_an_empty_blob(store: BlobStore) -> None:
    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""

    assert await store.write_part("a4", 0, nothing(), limit=0) == 0
    sha = hashlib.sha256(b"").hexdigest()
    assert await store.promote("a4", sha) is True
    # It is stored: the same (empty) content is not stored again.
    assert await store.write_part("a5", 0, nothing(), limit=0) == 0
    assert await store.promote("a5", sha) is False


async def test_blob_names_are_the_complete_blobs(store: BlobStore) -> None:
    assert [name async for name in store.blob_names()] == []
    contents = [os.urandom(1000), os.urandom(2000)]
    for n, data in enumerate(contents):
        await store.write_part(f"b{n}", 0, pieces(data), limit=len(data))
        assert await store.promote(f"b{n}", hashlib.sha256(data).hexdigest())
    await store.write_part("still-uploading", 0, pieces(b"partial"), limit=100)
    names = [name async for name in store.blob_names()]
    assert sorted(names) == sorted(hashlib.sha256(data).hexdigest() for data in contents)
    for name in names:
        await store.drop_blob(name)
    assert [name async for name in store.blob_names()] == []
