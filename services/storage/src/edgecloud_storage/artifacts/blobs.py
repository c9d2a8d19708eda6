"""References to blobs, which artifacts of every tenant share by content.

The guarantee: a blob's bytes are removed only when no committed artifact refers to it.

- Counts change in SQL (``refs = refs + 1`` / ``refs - 1 ... RETURNING``), never read,
  changed and written back.
- Taking a reference (:func:`take`) and removing an unreferenced blob (:func:`release`) run
  under one lock per blob (:func:`~edgecloud_servicekit.db.exclusive_transaction`): the
  bytes are put in place and the count raised in one transaction that holds it, and the
  bytes are removed only by a transaction that holds it, re-reads the count and finds none.
- A blob's bytes are removed only after the commit that dropped its last reference
  (:func:`drop_reference`, then :func:`release` in a transaction of its own). A crash in
  between leaves a blob counted zero, which :func:`collect` removes later; an upload of the
  same content meanwhile revives it instead. A crash between putting a first reference's
  bytes in place and that commit leaves bytes with no row: :func:`collect` removes those
  too (under the lock, so never the bytes of a completion still under way).
"""

from typing import cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.db import exclusive_transaction, upsert, utcnow

from .backends import BlobStore
from .models import Blob


def lock_key(sha256: str) -> str:
    return f"storage-blob:{sha256}"


async def take(
    *, session: AsyncSession, store: BlobStore, artifact_id: str, sha256: str, size: int
) -> None:
    """Count one more reference to the blob ``sha256`` and make the upload of
    ``artifact_id`` its bytes (or drop it, when they are stored already). ``session`` must
    be an exclusive transaction on :func:`lock_key`; the reference shows once it commits."""
    table = cast(Table, Blob.__table__)
    statement = upsert(session, table, index_elements=["sha256"], update={"refs": table.c.refs + 1})
    await session.execute(
        statement, {"sha256": sha256, "size": size, "refs": 1, "created_at": utcnow()}
    )
    await store.promote(artifact_id, sha256)


async def drop_reference(*, session: AsyncSession, sha256: str) -> bool:
    """Count one reference fewer; True when none is left (call :func:`release` after the
    commit)."""
    left = await session.scalar(
        update(Blob).where(Blob.sha256 == sha256).values(refs=Blob.refs - 1).returning(Blob.refs)
    )
    return left is not None and left <= 0


async def release(
    *, sessions: async_sessionmaker[AsyncSession], store: BlobStore, sha256: str
) -> bool:
    """Remove the blob if nothing refers to it now (an upload of the same content may have
    revived it since its last reference went). True when it was removed."""
    async with exclusive_transaction(sessions, lock_key(sha256)) as session:
        refs = await session.scalar(select(Blob.refs).where(Blob.sha256 == sha256))
        if refs is not None and refs > 0:
            return False
        await session.execute(delete(Blob).where(Blob.sha256 == sha256))
        # Before the commit, under the lock: should the commit fail, the row left behind
        # (counted zero) is collected again; its missing bytes are put back by the next
        # upload of that content.
        await store.drop_blob(sha256)
    return True


async def collect(*, sessions: async_sessionmaker[AsyncSession], store: BlobStore) -> int:
    """Remove the blobs a crash left behind: counted zero (between a last reference's
    commit and :func:`release`), or stored with no row at all (between a first reference's
    bytes put in place and its commit). Returns how many went."""
    async with sessions() as session:
        unreferenced = list(
            (await session.scalars(select(Blob.sha256).where(Blob.refs <= 0))).all()
        )
    batch: list[str] = []
    async for name in store.blob_names():
        batch.append(name)
        if len(batch) == COLLECT_BATCH:
            unreferenced += await _without_row(sessions, batch)
            batch = []
    unreferenced += await _without_row(sessions, batch)
    removed = 0
    for sha256 in unreferenced:
        removed += await release(sessions=sessions, store=store, sha256=sha256)
    return removed


COLLECT_BATCH = 500


async def _without_row(sessions: async_sessionmaker[AsyncSession], names: list[str]) -> list[str]:
    if not names:
        return []
    async with sessions() as session:
        known = set(
            (await session.scalars(select(Blob.sha256).where(Blob.sha256.in_(names)))).all()
        )
    return [name for name in names if name not in known]
