"""The S3-compatible blob store, for storage replicas on several machines.

Partial uploads are objects too (``parts/<artifact>/<offset>``, at most 8 MiB each), so any
replica can take the next piece of an upload; resuming at an offset drops the objects from
there on. On completion they are joined into ``blobs/<sha256>`` with a multipart upload
(parts of at least 5 MiB, as S3 requires), or one put when small, and removed.
"""

import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from .backends import BLOB_NAME, READ_CHUNK, TooMuchData

PIECE = 8 << 20
"""Largest object a partial upload is stored in (memory held per upload while writing)."""
MIN_PART = 5 << 20
"""S3's smallest multipart-upload part (but the last)."""


class S3Store:
    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self._bucket = bucket

    async def ensure_bucket(self) -> None:
        try:
            await self._s3.head_bucket(Bucket=self._bucket)
        except ClientError:
            await self._s3.create_bucket(Bucket=self._bucket)

    def _prefix(self, artifact_id: str) -> str:
        return f"parts/{artifact_id}/"

    async def _pieces(self, artifact_id: str) -> list[tuple[int, int, str]]:
        """(offset, size, key) of the stored pieces of an upload, in order."""
        found: list[tuple[int, int, str]] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix(artifact_id)):
            for item in page.get("Contents", []):
                key = str(item["Key"])
                found.append((int(key.rsplit("/", 1)[-1]), int(item["Size"]), key))
        return sorted(found)

    async def write_part(
        self,
        artifact_id: str,
        offset: int,
        chunks: AsyncIterator[bytes],
        *,
        limit: int,
        digest: "hashlib._Hash | None" = None,
    ) -> int:
        # A piece sent again (its acknowledgement was lost) replaces what was stored from there.
        for start, size, key in await self._pieces(artifact_id):
            if start >= offset:
                await self._s3.delete_object(Bucket=self._bucket, Key=key)
            elif start + size > offset:  # straddles the offset: keep its head only
                answer = await self._s3.get_object(
                    Bucket=self._bucket, Key=key, Range=f"bytes=0-{offset - start - 1}"
                )
                async with answer["Body"] as body:
                    head = await body.read()
                await self._s3.put_object(Bucket=self._bucket, Key=key, Body=head)
        written, batch = 0, bytearray()

        async def store() -> None:
            key = f"{self._prefix(artifact_id)}{offset + written - len(batch):020d}"
            await self._s3.put_object(Bucket=self._bucket, Key=key, Body=bytes(batch))
            batch.clear()

        async for chunk in chunks:
            if written + len(chunk) > limit:
                raise TooMuchData(written)
            if digest is not None:
                digest.update(chunk)
            batch += chunk
            written += len(chunk)
            if len(batch) >= PIECE:
                await store()
        if batch:
            await store()
        return written

    async def _read_pieces(self, artifact_id: str) -> AsyncIterator[bytes]:
        for _, _, key in await self._pieces(artifact_id):
            answer = await self._s3.get_object(Bucket=self._bucket, Key=key)
            async with answer["Body"] as body:
                while chunk := await body.read(READ_CHUNK):
                    yield chunk

    async def part_sha256(self, artifact_id: str) -> str:
        digest = hashlib.sha256()
        async for chunk in self._read_pieces(artifact_id):
            digest.update(chunk)
        return digest.hexdigest()

    async def promote(self, artifact_id: str, sha256: str) -> bool:
        key = f"blobs/{sha256}"
        exists = True
        try:
            await self._s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError:
            exists = False
        if not exists:
            await self._join(artifact_id, key)
        await self.drop_part(artifact_id)
        return not exists

    async def _join(self, artifact_id: str, key: str) -> None:
        upload = await self._s3.create_multipart_upload(Bucket=self._bucket, Key=key)
        upload_id, pending = upload["UploadId"], bytearray()
        parts: list[dict[str, Any]] = []

        async def send(data: bytes) -> None:
            number = len(parts) + 1
            answer = await self._s3.upload_part(
                Bucket=self._bucket, Key=key, PartNumber=number, UploadId=upload_id, Body=data
            )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})

        try:
            async for chunk in self._read_pieces(artifact_id):
                pending += chunk
                if len(pending) >= MIN_PART:
                    await send(bytes(pending))
                    pending.clear()
            if pending or not parts:
                await send(bytes(pending))
            await self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(ClientError):
                await self._s3.abort_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id
                )
            raise

    async def drop_part(self, artifact_id: str) -> None:
        for _, _, key in await self._pieces(artifact_id):
            await self._s3.delete_object(Bucket=self._bucket, Key=key)

    async def drop_blob(self, sha256: str) -> None:
        await self._s3.delete_object(Bucket=self._bucket, Key=f"blobs/{sha256}")

    async def blob_names(self) -> AsyncIterator[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix="blobs/"):
            for item in page.get("Contents", []):
                name = str(item["Key"]).removeprefix("blobs/")
                if BLOB_NAME.match(name):
                    yield name

    async def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        if start >= end:  # nothing to read, and S3 has no empty range to ask for
            return
        answer = await self._s3.get_object(
            Bucket=self._bucket, Key=f"blobs/{sha256}", Range=f"bytes={start}-{end - 1}"
        )
        async with answer["Body"] as body:
            while chunk := await body.read(READ_CHUNK):
                yield chunk

    def local_path(self, sha256: str) -> Path | None:
        return None
