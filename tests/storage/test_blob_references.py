"""A blob's last reference and the removal of its bytes, step by step (both databases):
the bytes go only after the commit that dropped the last reference and only if nothing
refers to them then; a blob a crash left unreferenced is collected later."""

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import SessionTransaction

from edgecloud_contracts.artifacts import ArtifactKind
from edgecloud_servicekit import migrations
from edgecloud_servicekit.db import transaction
from edgecloud_storage.artifacts import blobs
from edgecloud_storage.artifacts.backends import FilesystemStore
from edgecloud_storage.artifacts.models import Artifact, Blob
from edgecloud_storage.artifacts.service import Artifacts, ContentRange
from tests.support.databases import migrated_sessions, session_factory
from tests.support.stack import PG_PORT, create_pg_database, drop_pg_database

PACKAGE = "edgecloud_storage"


@pytest.fixture(params=["sqlite", "postgresql"])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    if request.param == "sqlite":
        async with migrated_sessions(tmp_path, PACKAGE) as factory:
            yield factory
        return
    name = await asyncio.to_thread(create_pg_database)
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{PG_PORT}/{name}"
    try:
        await asyncio.to_thread(migrations.upgrade, package=PACKAGE, database_url=url)
        async with session_factory(url) as factory:
            yield factory
    finally:
        await asyncio.to_thread(drop_pg_database, name)


@pytest.fixture
def artifacts(sessions: async_sessionmaker[AsyncSession], tmp_path: Path) -> Artifacts:
    return Artifacts(
        sessions=sessions, store=FilesystemStore(tmp_path / "blobs"), max_artifact_bytes=1 << 20
    )


async def one_piece(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def stored(artifacts: Artifacts, tenant_id: str, data: bytes) -> str:
    row = await artifacts.create(
        tenant_id=tenant_id,
        owner="someone",
        name="same.bin",
        kind=ArtifactKind.FILE,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    done = await artifacts.append(
        tenant_id=tenant_id,
        artifact_id=row.id,
        content_range=ContentRange(start=0, end=len(data), total=len(data)),
        chunks=one_piece(data),
    )
    assert done.state == "complete"
    return str(row.id)


async def drop_without_releasing(artifacts: Artifacts, artifact_id: str, sha256: str) -> None:
    """The first half of a deletion: its commit, and then nothing (the process died, or
    another request ran before the release)."""
    async with transaction(artifacts._sessions) as session:
        await session.execute(delete(Artifact).where(Artifact.id == artifact_id))
        assert await blobs.drop_reference(session=session, sha256=sha256)


async def content(artifacts: Artifacts, sha256: str) -> bytes:
    return b"".join([chunk async for chunk in artifacts.store.read(sha256, 0, 1 << 20)])


async def test_a_blob_revived_before_its_release_is_kept(artifacts: Artifacts) -> None:
    data = os.urandom(50_000)
    digest = hashlib.sha256(data).hexdigest()
    path = artifacts.store.local_path(digest)
    assert path is not None
    first = await stored(artifacts, "t-1", data)
    await drop_without_releasing(artifacts, first, digest)
    # Another tenant's upload of the same bytes completes in between: it refers to them.
    second = await stored(artifacts, "t-2", data)
    released = await blobs.release(
        sessions=artifacts._sessions, store=artifacts.store, sha256=digest
    )
    assert not released
    assert await content(artifacts, digest) == data
    assert await artifacts.collect_blobs() == 0
    assert await content(artifacts, digest) == data
    await artifacts.delete(tenant_id="t-2", artifact_id=second)
    assert not path.exists()


async def test_a_blob_a_crash_left_unreferenced_is_collected(artifacts: Artifacts) -> None:
    data = os.urandom(40_000)
    digest = hashlib.sha256(data).hexdigest()
    path = artifacts.store.local_path(digest)
    assert path is not None
    await drop_without_releasing(artifacts, await stored(artifacts, "t-1", data), digest)
    assert path.exists()
    assert await artifacts.collect_blobs() == 1
    assert not path.exists()
    async with artifacts._sessions() as session:
        assert (await session.scalars(select(Blob))).all() == []
    # The same bytes uploaded again are stored anew.
    again = await stored(artifacts, "t-2", data)
    assert await content(artifacts, digest) == data
    await artifacts.delete(tenant_id="t-2", artifact_id=again)
    assert not path.exists()


class CommitFailed(Exception):
    pass


async def test_a_deletion_that_fails_to_commit_keeps_the_bytes(
    artifacts: Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(30_000)
    digest = hashlib.sha256(data).hexdigest()
    only = await stored(artifacts, "t-1", data)
    commit = SessionTransaction.commit

    def fail_once(self: SessionTransaction, *args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(SessionTransaction, "commit", commit)
        raise CommitFailed

    # The database refuses the commit that drops the last reference (it went away, or a
    # serialisation failure): the reference stays, and so must the bytes.
    monkeypatch.setattr(SessionTransaction, "commit", fail_once)
    with pytest.raises(CommitFailed):
        await artifacts.delete(tenant_id="t-1", artifact_id=only)
    async with artifacts._sessions() as session:
        assert await session.get(Artifact, only) is not None
    assert await content(artifacts, digest) == data


async def test_bytes_a_crash_left_without_a_row_are_collected(artifacts: Artifacts) -> None:
    kept, orphan = os.urandom(20_000), os.urandom(25_000)
    kept_id = await stored(artifacts, "t-1", kept)
    # A completion that put the bytes in place and died before its commit: no row.
    await artifacts.store.write_part("lost", 0, one_piece(orphan), limit=len(orphan))
    orphan_digest = hashlib.sha256(orphan).hexdigest()
    assert await artifacts.store.promote("lost", orphan_digest)
    assert await artifacts.collect_blobs() == 1
    assert [name async for name in artifacts.store.blob_names()] == [
        hashlib.sha256(kept).hexdigest()
    ]
    assert await content(artifacts, hashlib.sha256(kept).hexdigest()) == kept
    await artifacts.delete(tenant_id="t-1", artifact_id=kept_id)
    assert [name async for name in artifacts.store.blob_names()] == []


class PausingStore(FilesystemStore):
    """Holds a completion between putting the bytes in place and its commit."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.promoted = asyncio.Event()
        self.proceed = asyncio.Event()

    async def promote(self, artifact_id: str, sha256: str) -> bool:
        first = await super().promote(artifact_id, sha256)
        self.promoted.set()
        await self.proceed.wait()
        return first


async def test_the_sweep_waits_for_a_completion_under_way(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    store = PausingStore(tmp_path / "paused")
    artifacts = Artifacts(sessions=sessions, store=store, max_artifact_bytes=1 << 20)
    data = os.urandom(10_000)
    path = store.local_path(hashlib.sha256(data).hexdigest())
    assert path is not None
    completing = asyncio.create_task(stored(artifacts, "t-1", data))
    await store.promoted.wait()
    # The bytes are in place, their row not yet committed: the sweep must not take them.
    sweep = asyncio.create_task(artifacts.collect_blobs())
    # Time for a sweep that does not wait to do its harm (none is needed to pass).
    await asyncio.wait({sweep}, timeout=1)
    store.proceed.set()
    await completing
    assert await sweep == 0
    assert path.read_bytes() == data
