"""Where artifact bytes live. The service talks to a :class:`BlobStore`: partial uploads
(one per artifact, appended to at an offset) and complete blobs (named by SHA-256).

The filesystem store is the default. It hashes and writes each megabyte in a worker
thread while the next one arrives (both let go of the GIL), and syncs before it
acknowledges.
"""

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

READ_CHUNK = 1 << 20
BLOB_NAME = re.compile(r"^[0-9a-f]{64}$")


class BlobStore(Protocol):
    async def write_part(
        self,
        artifact_id: str,
        offset: int,
        chunks: AsyncIterator[bytes],
        *,
        limit: int,
        digest: "hashlib._Hash | None" = None,
    ) -> int:
        """Write ``chunks`` into the partial upload at ``offset`` (dropping anything stored
        past it), feeding them to ``digest`` too; stop with :class:`TooMuchData` past
        ``limit`` bytes. Returns the bytes written, also when ``chunks`` breaks off
        (those bytes are kept)."""
        ...

    async def part_sha256(self, artifact_id: str) -> str: ...

    async def promote(self, artifact_id: str, sha256: str) -> bool:
        """Make the partial upload the blob ``sha256``; False when that blob existed
        already (the partial upload is then dropped: de-duplication)."""
        ...

    async def drop_part(self, artifact_id: str) -> None: ...

    async def drop_blob(self, sha256: str) -> None: ...

    def blob_names(self) -> AsyncIterator[str]:
        """The SHA-256 of every stored blob (for collecting those no row refers to)."""
        ...

    def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive) of a blob, in chunks."""
        ...

    def local_path(self, sha256: str) -> Path | None:
        """The blob as a local file, when the store has one (served with sendfile)."""
        ...


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _names_in(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


def _directories_in(directory: Path) -> list[Path]:
    return sorted(entry for entry in directory.iterdir() if entry.is_dir())


class TooMuchData(Exception):
    def __init__(self, written: int) -> None:
        super().__init__(f"more bytes than announced after {written}")
        self.written = written


class FilesystemStore:
    def __init__(self, root: Path) -> None:
        self._parts = root / "parts"
        self._blobs = root / "blobs"
        self._parts.mkdir(parents=True, exist_ok=True)
        self._blobs.mkdir(parents=True, exist_ok=True)

    def _part(self, artifact_id: str) -> Path:
        return self._parts / artifact_id

    def _blob(self, sha256: str) -> Path:
        return self._blobs / sha256[:2] / sha256

    async def write_part(
        self,
        artifact_id: str,
        offset: int,
        chunks: AsyncIterator[bytes],
        *,
        limit: int,
        digest: "hashlib._Hash | None" = None,
    ) -> int:
        written = 0
        fd = os.open(self._part(artifact_id), os.O_WRONLY | os.O_CREAT, 0o600)
        pending: asyncio.Future[None] | None = None
        batch = bytearray()

        def store(data: bytes) -> None:
            # In a worker thread: hashing and writing let go of the GIL, so the next
            # megabyte arrives while this one is hashed and written.
            if digest is not None:
                digest.update(data)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

        async def hand_over() -> None:
            nonlocal pending
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(asyncio.to_thread(store, bytes(batch)))
            batch.clear()

        try:
            # A chunk the uploader sends again (its acknowledgement was lost) overwrites.
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
            async for chunk in chunks:
                if written + len(chunk) > limit:
                    raise TooMuchData(written)
                batch += chunk
                written += len(chunk)
                if len(batch) >= READ_CHUNK:
                    await hand_over()
            if batch:
                await hand_over()
        finally:
            if pending is not None:
                await asyncio.shield(pending)
            # What was acknowledged must survive a crash: a resumed upload starts after it.
            await asyncio.to_thread(os.fsync, fd)
            os.close(fd)
        return written

    async def part_sha256(self, artifact_id: str) -> str:
        # Reading a whole upload back is slow work: off the event loop.
        return await asyncio.to_thread(_sha256_of, self._part(artifact_id))

    async def promote(self, artifact_id: str, sha256: str) -> bool:
        blob = self._blob(sha256)
        if blob.exists():
            self._part(artifact_id).unlink(missing_ok=True)
            return False
        blob.parent.mkdir(exist_ok=True)
        os.replace(self._part(artifact_id), blob)
        return True

    async def drop_part(self, artifact_id: str) -> None:
        self._part(artifact_id).unlink(missing_ok=True)

    async def drop_blob(self, sha256: str) -> None:
        self._blob(sha256).unlink(missing_ok=True)

    async def blob_names(self) -> AsyncIterator[str]:
        # One directory (a 256th of the blobs) listed at a time, off the event loop.
        for directory in await asyncio.to_thread(_directories_in, self._blobs):
            for name in await asyncio.to_thread(_names_in, directory):
                if BLOB_NAME.match(name):
                    yield name

    async def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        with self._blob(sha256).open("rb") as blob:
            blob.seek(start)
            left = end - start
            while left > 0:
                chunk = blob.read(min(READ_CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def local_path(self, sha256: str) -> Path | None:
        return self._blob(sha256)
