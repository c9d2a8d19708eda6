"""Artifacts: announce, upload in resumable pieces, verify, de-duplicate, read, delete.

An upload's progress (``received``) is recorded only after its bytes are on disk, so a
resumed upload never skips a byte; the bytes themselves go to the :class:`BlobStore`.
"""

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import ClientDisconnect

from edgecloud_contracts.artifacts import (
    ArtifactKind,
    ArtifactState,
    ArtifactView,
    CreateArtifact,
)
from edgecloud_servicekit.db import exclusive_transaction, transaction, upsert, utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.pagination import newest_first
from edgecloud_servicekit.problems import PayloadTooLarge

from . import blobs
from .backends import BlobStore, TooMuchData
from .exceptions import (
    AlreadyComplete,
    ArtifactNotFound,
    BadContentRange,
    ChecksumMismatch,
    OffsetMismatch,
    QuotaExceeded,
    UploadBusy,
)
from .models import Artifact, TenantQuota

logger = logging.getLogger(__name__)
# An uploader that breaks off mid-body: what arrived is kept, the upload resumes after it.
_BROKEN_UPLOAD = (ClientDisconnect, ConnectionError)
_CONTENT_RANGE = re.compile(r"^bytes (?:(\d{1,15})-(\d{1,15})|\*)/(\d{1,15})$")


@dataclass(frozen=True, slots=True)
class ContentRange:
    start: int
    end: int
    """Exclusive; equal to start for a range with no bytes (``bytes */size``)."""
    total: int


def parse_content_range(header: str | None, *, body_length: int | None) -> ContentRange:
    """``bytes a-b/size`` (inclusive b), or ``bytes */size`` to learn or set the size."""
    match = _CONTENT_RANGE.match(header or "")
    if match is None:
        raise BadContentRange("send Content-Range: bytes <first>-<last>/<size>")
    first, last, total = match.groups()
    if first is None:
        start = end = 0
    else:
        start, end = int(first), int(last) + 1
        if end <= start or end > int(total):
            raise BadContentRange(f"the range {header} is not inside the artifact")
        if body_length is not None and body_length != end - start:
            raise BadContentRange("Content-Length differs from the Content-Range")
    return ContentRange(start=start, end=end, total=int(total))


def to_view(row: Artifact, *, public_prefix: str = "/api/v1/artifacts") -> ArtifactView:
    complete = row.state == ArtifactState.COMPLETE
    return ArtifactView(
        id=row.id,
        name=row.name,
        kind=ArtifactKind(row.kind),
        state=ArtifactState(row.state),
        size=row.size,
        received=row.received,
        sha256=row.sha256,
        owner=row.owner,
        container=row.container_id,
        created_at=row.created_at,
        completed_at=row.completed_at,
        upload_url=None if complete else f"{public_prefix}/{row.id}",
        content_url=f"{public_prefix}/{row.id}/content" if complete else None,
    )


def quota_lock_key(tenant_id: str) -> str:
    """Held while a tenant's usage is checked and the artifact that adds to it stored: two
    uploads never pass the quota together."""
    return f"storage-quota:{tenant_id}"


class Artifacts:
    """The artifact operations, with the state they share: the blob store, the lock per
    upload, and the running hash of uploads that arrive in order at this replica."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        store: BlobStore,
        max_artifact_bytes: int,
        idle_timeout_s: float = 60.0,
        lock_wait_s: float = 10.0,
    ) -> None:
        self._sessions = sessions
        self.store = store
        self.max_artifact_bytes = max_artifact_bytes
        self.idle_timeout_s = idle_timeout_s
        self.lock_wait_s = lock_wait_s
        self._locks: dict[str, asyncio.Lock] = {}
        # artifact id -> (bytes hashed, hash so far). Saves reading the whole upload back
        # on completion; lost on restart or on another replica, then the file is re-read.
        self._hashing: dict[str, tuple[int, hashlib._Hash]] = {}

    # Quotas

    async def remember_quota(self, identity: Identity) -> None:
        """Keep the tenant's quota from a user's identity, for uploads coming from nodes
        (written only when it changed: one read per call, and no cache that another
        replica's write could make stale)."""
        quota = identity.quotas.get("storage_bytes")
        if quota is None:
            return
        async with transaction(self._sessions) as session:
            if await self.quota(session, identity.tenant_id) == quota:
                return
            table = cast(Table, TenantQuota.__table__)
            statement = upsert(
                session,
                table,
                index_elements=["tenant_id"],
                update={"storage_bytes": quota, "updated_at": utcnow()},
            )
            await session.execute(
                statement,
                {"tenant_id": identity.tenant_id, "storage_bytes": quota, "updated_at": utcnow()},
            )

    async def usage(self, session: AsyncSession, tenant_id: str) -> int:
        """Bytes the tenant's artifacts take or have announced."""
        used = await session.scalar(
            select(
                func.coalesce(func.sum(func.coalesce(Artifact.size, Artifact.received)), 0)
            ).where(Artifact.tenant_id == tenant_id)
        )
        return int(used or 0)

    async def quota(self, session: AsyncSession, tenant_id: str) -> int | None:
        return await session.scalar(
            select(TenantQuota.storage_bytes).where(TenantQuota.tenant_id == tenant_id)
        )

    async def _check_room(self, session: AsyncSession, tenant_id: str, needed: int) -> None:
        """Refuse ``needed`` more bytes beyond the quota; ``session`` must hold
        :func:`quota_lock_key` until what it checked for is committed."""
        if needed > self.max_artifact_bytes:
            raise PayloadTooLarge(
                f"artifacts are limited to {self.max_artifact_bytes} bytes",
                code="artifact_too_large",
                limit=self.max_artifact_bytes,
            )
        quota = await self.quota(session, tenant_id)
        if quota is None:
            return
        used = await self.usage(session, tenant_id)
        if used + needed > quota:
            raise QuotaExceeded(needed=needed, used=used, quota=quota)

    # Creating and reading

    async def create(
        self,
        *,
        tenant_id: str,
        owner: str,
        name: str,
        kind: ArtifactKind,
        size: int | None,
        sha256: str | None,
        container_id: str | None = None,
        device_key: str | None = None,
    ) -> Artifact:
        """Announce an artifact; its bytes follow. The quota is checked now for an
        announced size, otherwise when the first bytes tell the size."""
        now = utcnow()
        row = Artifact(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            owner=owner,
            name=name,
            kind=kind.value,
            state=ArtifactState.UPLOADING.value,
            size=size,
            sha256=sha256,
            received=0,
            container_id=container_id,
            device_key=device_key,
            created_at=now,
        )
        async with exclusive_transaction(self._sessions, quota_lock_key(tenant_id)) as session:
            if size is not None:
                await self._check_room(session, tenant_id, size)
            session.add(row)
        if size == 0:
            # Nothing will follow: an empty artifact is complete at once.
            await self.store.write_part(row.id, 0, _nothing(), limit=0)
            return await self._complete(row.id)
        return row

    async def create_from_request(self, identity: Identity, body: CreateArtifact) -> Artifact:
        await self.remember_quota(identity)
        return await self.create(
            tenant_id=identity.tenant_id,
            owner=identity.username,
            name=body.name,
            kind=body.kind,
            size=body.size,
            sha256=body.sha256,
        )

    async def get(self, session: AsyncSession, *, tenant_id: str, artifact_id: str) -> Artifact:
        row = await session.get(Artifact, artifact_id)
        if row is None or row.tenant_id != tenant_id:
            raise ArtifactNotFound(artifact_id)
        return row

    async def list_for(
        self,
        session: AsyncSession,
        *,
        tenant_id: str,
        limit: int,
        cursor: str | None,
        kind: ArtifactKind | None,
        container_id: str | None,
    ) -> tuple[list[Artifact], str | None]:
        query = select(Artifact).where(Artifact.tenant_id == tenant_id)
        if kind is not None:
            query = query.where(Artifact.kind == kind.value)
        if container_id is not None:
            query = query.where(Artifact.container_id == container_id)
        return await newest_first(
            session,
            query,
            at=Artifact.created_at,
            id_=Artifact.id,
            limit=limit,
            cursor=cursor,
            scope=f"artifacts:{tenant_id}",
        )

    # Uploading

    async def append(
        self,
        *,
        tenant_id: str,
        artifact_id: str,
        content_range: ContentRange,
        chunks: AsyncIterator[bytes],
        declared_sha256: str | None = None,
    ) -> Artifact:
        """Store one piece of an upload. Returns the artifact: complete once its last
        byte is in and its SHA-256 checked (the one announced, or one sent with the
        pieces by an uploader that could not announce it)."""
        if content_range.end == content_range.start:  # "where are we?": no need to wait
            return await self._append_locked(
                tenant_id, artifact_id, content_range, chunks, declared_sha256
            )
        lock = self._locks.setdefault(artifact_id, asyncio.Lock())
        try:
            try:
                await asyncio.wait_for(lock.acquire(), self.lock_wait_s)
            except TimeoutError as err:
                raise UploadBusy(artifact_id) from err
            try:
                return await self._append_locked(
                    tenant_id, artifact_id, content_range, chunks, declared_sha256
                )
            finally:
                lock.release()
        finally:
            if not lock.locked() and self._locks.get(artifact_id) is lock:
                del self._locks[artifact_id]

    async def _append_locked(
        self,
        tenant_id: str,
        artifact_id: str,
        content_range: ContentRange,
        chunks: AsyncIterator[bytes],
        declared_sha256: str | None,
    ) -> Artifact:
        async with exclusive_transaction(self._sessions, quota_lock_key(tenant_id)) as session:
            row = await self.get(session, tenant_id=tenant_id, artifact_id=artifact_id)
            if row.state == ArtifactState.COMPLETE:
                raise AlreadyComplete(artifact_id)
            if row.sha256 is None and declared_sha256 is not None:
                row.sha256 = declared_sha256
            if row.size is None:
                await self._check_room(session, tenant_id, content_range.total)
                row.size = content_range.total
            elif content_range.total != row.size:
                raise BadContentRange(
                    f"the artifact has {row.size} bytes, not {content_range.total}"
                )
            received = row.received
        if content_range.end == content_range.start:  # "bytes */size": where are we?
            return row
        if content_range.start != received:
            raise OffsetMismatch(expected=received, given=content_range.start)
        expected = content_range.end - content_range.start
        # The hash kept here goes on only if this piece continues it.
        hashed, digest = self._hashing.pop(artifact_id, (0, hashlib.sha256()))
        keep_hashing = hashed == received
        try:
            written = await self.store.write_part(
                artifact_id,
                received,
                self._received(artifact_id, chunks),
                limit=expected,
                digest=digest if keep_hashing else None,
            )
        except TooMuchData as err:
            raise BadContentRange(
                f"more bytes than the Content-Range announced ({expected})"
            ) from err
        if keep_hashing:
            self._hashing[artifact_id] = (received + written, digest)
        async with transaction(self._sessions) as session:
            counted = await session.scalar(
                update(Artifact)
                .where(Artifact.id == artifact_id, Artifact.received == received)
                .values(received=received + written)
                .returning(Artifact.id)
            )
            gone = counted is None and await session.get(Artifact, artifact_id) is None
        if gone:  # deleted while its bytes came: they belong to nobody
            await self.store.drop_part(artifact_id)
            raise ArtifactNotFound(artifact_id)
        if received + written == row.size:
            return await self._complete(artifact_id)
        row.received = received + written
        return row

    async def _received(
        self, artifact_id: str, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """Pass chunks through; stop quietly where the uploader broke off or stalled (what
        arrived is kept, and the upload resumes after it)."""
        stream = aiter(chunks)
        position = 0
        try:
            while True:
                try:
                    # An uploader that stops sending without closing (a half-open link)
                    # must not hold the upload forever. (asyncio.timeout: no task per chunk.)
                    async with asyncio.timeout(self.idle_timeout_s):
                        chunk = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    logger.info("upload of %s stalled after %d bytes", artifact_id, position)
                    return
                position += len(chunk)
                yield chunk
        except _BROKEN_UPLOAD:
            return

    async def _complete(self, artifact_id: str) -> Artifact:
        hashed = self._hashing.pop(artifact_id, None)
        async with self._sessions() as session:
            row = await session.get(Artifact, artifact_id)
        if row is None:
            await self.store.drop_part(artifact_id)
            raise ArtifactNotFound(artifact_id)
        assert row.size is not None
        if hashed is not None and hashed[0] == row.size:
            actual = hashed[1].hexdigest()
        else:
            actual = await self.store.part_sha256(artifact_id)
        if row.sha256 is not None and actual != row.sha256:
            await self.store.drop_part(artifact_id)
            async with transaction(self._sessions) as session:
                await session.execute(
                    update(Artifact).where(Artifact.id == artifact_id).values(received=0)
                )
            raise ChecksumMismatch(declared=row.sha256, actual=actual)
        # One transaction under the blob's lock: the artifact turns complete, the blob's
        # count goes up and its bytes are put in place, all seen at once or not at all.
        async with exclusive_transaction(self._sessions, blobs.lock_key(actual)) as session:
            completed = await session.scalar(
                update(Artifact)
                .where(
                    Artifact.id == artifact_id,
                    Artifact.state == ArtifactState.UPLOADING.value,
                )
                .values(
                    state=ArtifactState.COMPLETE.value,
                    sha256=actual,
                    received=row.size,
                    completed_at=utcnow(),
                )
                .returning(Artifact.id)
            )
            if completed is not None:
                await blobs.take(
                    session=session,
                    store=self.store,
                    artifact_id=artifact_id,
                    sha256=actual,
                    size=row.size,
                )
        if completed is None:  # deleted meanwhile, or completed by another request
            async with self._sessions() as session:
                stored = await session.get(Artifact, artifact_id)
            if stored is None:
                await self.store.drop_part(artifact_id)
                raise ArtifactNotFound(artifact_id)
            raise AlreadyComplete(artifact_id)
        async with self._sessions() as session:
            stored = await session.get(Artifact, artifact_id)
        if stored is None:  # deleted right after: its reference went with it
            raise ArtifactNotFound(artifact_id)
        return stored

    # Removing

    async def delete(self, *, tenant_id: str, artifact_id: str) -> None:
        if not await self._forget(artifact_id, tenant_id=tenant_id):
            raise ArtifactNotFound(artifact_id)

    async def _forget(
        self, artifact_id: str, *, tenant_id: str | None = None, uploading_only: bool = False
    ) -> bool:
        """Delete the artifact and its reference to its blob, then (after that commit) the
        blob if no other artifact refers to it, or its partial upload. False when there
        was no such artifact (of ``tenant_id``, if given; still uploading, if asked)."""
        condition = Artifact.id == artifact_id
        if tenant_id is not None:
            condition &= Artifact.tenant_id == tenant_id
        if uploading_only:
            condition &= Artifact.state == ArtifactState.UPLOADING.value
        unreferenced: str | None = None
        async with transaction(self._sessions) as session:
            # As it is when deleted: a completion that committed first counts.
            gone = (
                await session.execute(
                    delete(Artifact).where(condition).returning(Artifact.state, Artifact.sha256)
                )
            ).one_or_none()
            if gone is None:
                return False
            state, sha256 = gone
            complete = state == ArtifactState.COMPLETE.value
            if (
                complete
                and sha256 is not None
                and await blobs.drop_reference(session=session, sha256=sha256)
            ):
                unreferenced = sha256
        if not complete:
            await self.store.drop_part(artifact_id)
        elif unreferenced is not None:
            await blobs.release(sessions=self._sessions, store=self.store, sha256=unreferenced)
        return True

    async def expire_uploads(self, *, older_than: timedelta) -> int:
        """Discard uploads left incomplete for too long (their bytes count to the quota)."""
        cutoff = utcnow() - older_than
        async with self._sessions() as session:
            stale = (
                await session.scalars(
                    select(Artifact.id).where(
                        Artifact.state == ArtifactState.UPLOADING.value,
                        Artifact.created_at < cutoff,
                    )
                )
            ).all()
        expired = 0
        for artifact_id in stale:
            # Unless it completed since it was found.
            expired += await self._forget(artifact_id, uploading_only=True)
        return expired

    async def collect_blobs(self) -> int:
        """Remove blobs nothing refers to any more that a crash left behind."""
        return await blobs.collect(sessions=self._sessions, store=self.store)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""
