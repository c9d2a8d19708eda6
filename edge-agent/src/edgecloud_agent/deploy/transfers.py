"""Moving artifacts between the node and the cloud's storage over HTTP, with the transfer
URLs (carrying short-lived grants) the orchestrator hands out.

Downloads are :mod:`.download`; uploads are here: the file goes up in pieces with
``Content-Range``, and after a broken link the node asks the storage how far it got and
goes on from there.
"""

import asyncio
import hashlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp

from edgecloud_contracts.logs import redact

from . import transfer_urls
from .download import DownloadFailed, DownloadProgress, download

logger = logging.getLogger(__name__)

UPLOAD_CHUNK = 8 << 20
READ_CHUNK = 1 << 20

__all__ = ["CloudFiles", "DownloadFailed", "DownloadProgress", "UploadFailed"]

ProgressCallback = Callable[[DownloadProgress], Awaitable[None] | None]
Gate = Callable[[], Awaitable[None]]


class UploadFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _size_and_sha256(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as source:
        while chunk := source.read(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class CloudFiles:
    """The node's HTTP client for transfers (one connection pool, made on first use)."""

    def __init__(
        self,
        api_url: str,
        *,
        attempts: int = 8,
        read_timeout_s: float = 30.0,
        gate: Gate | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``gate`` is awaited before every request: bulk transfers pause on the slow mesh
        (and resume where they were on the WAN). ``tls`` verifies an ``https://`` api_url
        (None: the system's authorities)."""
        self._tls = tls
        self._api_url = api_url.rstrip("/")
        self._gate = gate
        self._attempts = attempts
        self._read_timeout = read_timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=self._read_timeout),
                connector=aiohttp.TCPConnector(ssl=self._tls if self._tls is not None else True),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def absolute(self, url: str, *, suffix: str = "") -> str:
        """Transfer ``url`` under the node's API address (``suffix`` after its path);
        :class:`transfer_urls.UnsafeUrl` for one that would lead anywhere else."""
        if not self._api_url:
            raise DownloadFailed("download_failed", "the agent has no api_url (AGENT_API_URL)")
        return transfer_urls.resolve(self._api_url, url, suffix=suffix)

    async def download(
        self,
        url: str,
        destination: Path,
        *,
        sha256: str,
        size: int,
        progress: ProgressCallback | None = None,
    ) -> Path:
        try:
            absolute = self.absolute(url)
        except transfer_urls.UnsafeUrl as err:
            raise DownloadFailed("url_refused", str(err)) from err
        return await download(
            self._http(),
            absolute,
            destination,
            sha256=sha256,
            size=size,
            attempts=self._attempts,
            progress=progress,
            read_timeout_s=self._read_timeout,
            before_attempt=self._gate,
        )

    async def upload(self, url: str, source: Path) -> None:
        """Send ``source`` to the artifact behind ``url``, resuming after broken links."""
        try:
            self.absolute(url)
        except transfer_urls.UnsafeUrl as err:
            raise UploadFailed("url_refused", str(err)) from err
        size, sha256 = await asyncio.to_thread(_size_and_sha256, source)
        offset, failures = 0, 0
        while True:
            try:
                if await self._send_from(url, source, offset, size, sha256):
                    return
                failures = 0
            except (aiohttp.ClientError, TimeoutError) as err:
                failures += 1
                if failures >= self._attempts:
                    raise UploadFailed(
                        "upload_failed", f"the upload kept failing: {redact(str(err))}"
                    ) from err
                await asyncio.sleep(min(5.0, 0.2 * 2**failures) * random.uniform(0.5, 1.0))
            offset = await self._where(url)

    async def post_json(self, url: str, body: str, *, suffix: str) -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``suffix`` of transfer ``url``: the answer's status and
        (short) body; :class:`UploadFailed` (``url_refused``) for a URL not allowed."""
        try:
            absolute = self.absolute(url, suffix=suffix)
        except transfer_urls.UnsafeUrl as err:
            raise UploadFailed("url_refused", str(err)) from err
        try:
            async with self._http().post(
                absolute, data=body.encode(), headers={"Content-Type": "application/json"}
            ) as answer:
                return answer.status, await answer.content.read(4096)
        except aiohttp.ClientError as err:
            raise UploadFailed("upload_failed", redact(str(err))) from err

    async def _send_from(self, url: str, source: Path, offset: int, size: int, sha: str) -> bool:
        """Send from ``offset`` to the end, one piece per request; True once complete."""
        while offset < size or size == 0:
            if self._gate is not None:
                await self._gate()
            end = min(size, offset + UPLOAD_CHUNK)
            headers = {
                "Content-Range": f"bytes {offset}-{end - 1}/{size}" if size else f"bytes */{size}",
                "Content-Type": "application/octet-stream",
                # The storage checks the whole upload against it on completion.
                "X-Content-SHA256": sha,
            }
            async with self._http().patch(
                self.absolute(url), data=_read(source, offset, end), headers=headers
            ) as answer:
                body = await answer.read()
                if answer.status == 200:
                    return True
                if answer.status == 204:
                    offset = int(answer.headers.get("Upload-Offset", end))
                    continue
                if answer.status == 409 or answer.status >= 500:
                    return False  # ask where the storage is, and go on from there
                code = "url_expired" if answer.status in (401, 403) else "upload_refused"
                raise UploadFailed(code, f"{answer.status}: {body[:300].decode(errors='replace')}")
        return True

    async def _where(self, url: str) -> int:
        async with self._http().get(self.absolute(url, suffix="/status")) as answer:
            if answer.status != 200:
                raise aiohttp.ClientResponseError(
                    answer.request_info, (), status=answer.status, message="status unavailable"
                )
            received: int = (await answer.json())["received"]
            return received


async def _read(source: Path, start: int, end: int) -> AsyncIterator[bytes]:
    with source.open("rb") as file:
        file.seek(start)
        left = end - start
        while left > 0:
            chunk = file.read(min(READ_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
