"""Artifact downloads from the cloud's storage service, over links that break.

An artifact (application archive, script, image archive) comes through a short-lived
signed URL. Its bytes land in ``<destination>.part`` and are hashed as they arrive; a
broken transfer resumes with a Range request from what is on disk, also after an agent
restart. Only a file of the announced size and SHA-256 is renamed to ``destination``.
"""

import asyncio
import hashlib
import inspect
import os
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import aiohttp

from edgecloud_contracts.logs import redact

__all__ = ["DownloadFailed", "DownloadProgress", "download"]

_PROGRESS_EVERY = 256 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")
_DISCARD = {"checksum_mismatch", "too_large"}  # the .part is wrong, not merely short


class DownloadFailed(Exception):
    """The artifact could not be had.

    ``code`` is ``download_failed`` (the link kept failing), ``url_expired`` (401/403: ask
    for a fresh URL), ``url_refused`` (not a transfer under the node's API address),
    ``not_found``, ``checksum_mismatch`` or ``too_large``.
    """

    code: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes on disk of ``total``; this attempt's body started at ``resumed_from``."""

    received: int
    total: int
    resumed_from: int
    attempt: int


class _Broken(Exception):
    """This attempt ended early; what is on disk stays and the next attempt resumes."""


_RETRYABLE = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError, _Broken)


@dataclass
class _Part:
    """The ``.part`` file and the SHA-256 of what is in it, kept in step."""

    file: BinaryIO
    size: int
    hasher: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    received: int = 0

    @classmethod
    def open(cls, path: Path, size: int, chunk_bytes: int) -> "_Part":
        """Open (or create) the ``.part`` and hash what an earlier run left in it."""
        part = cls(open(path, "a+b"), size)  # noqa: SIM115 - closed by the caller
        part.file.seek(0)
        while chunk := part.file.read(chunk_bytes):
            part.hasher.update(chunk)
            part.received += len(chunk)
        if part.received > size:  # cannot be a prefix of the artifact
            part.restart()
        return part

    def write(self, chunk: bytes) -> None:
        if self.received + len(chunk) > self.size:
            raise DownloadFailed("too_large", f"the server sent more than {self.size} bytes")
        self.file.write(chunk)  # append mode: always at the end
        self.hasher.update(chunk)
        self.received += len(chunk)

    def restart(self) -> None:
        self.file.truncate(0)
        self.hasher = hashlib.sha256()
        self.received = 0

    def verify(self, sha256: str) -> None:
        self.file.flush()
        if os.fstat(self.file.fileno()).st_size != self.size:
            raise DownloadFailed("checksum_mismatch", "the file on disk has the wrong length")
        if self.hasher.hexdigest() != sha256.lower():
            raise DownloadFailed("checksum_mismatch", "the SHA-256 is not the announced one")


def _install(path: Path, destination: Path) -> None:
    """Rename the verified ``.part`` into place, durably: bytes first, then the name."""
    _fsync(path)
    os.replace(path, destination)
    _fsync(destination.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def download(
    session: aiohttp.ClientSession,
    url: str,
    destination: Path,
    *,
    sha256: str,
    size: int,
    chunk_bytes: int = 1 << 20,
    attempts: int = 8,
    backoff_s: float = 0.2,
    max_backoff_s: float = 5.0,
    progress: Callable[[DownloadProgress], Awaitable[None] | None] | None = None,
    read_timeout_s: float = 30.0,
    before_attempt: Callable[[], Awaitable[None]] | None = None,
) -> Path:
    """Download ``url`` to ``destination``, checked against ``size`` and ``sha256``.

    ``before_attempt`` is awaited before each request (it may hold the download, e.g. while
    the node is on a link kept for control traffic); waiting there is not a failure.

    Gives up after ``attempts`` failed attempts in a row that brought no new bytes. The
    ``.part`` is kept when the download fails, the URL expired or the object is missing
    (a later call resumes from it); it is removed when its content is wrong, which
    includes a server announcing another length than ``size``. Local disk errors
    (``OSError``) are not wrapped.
    """
    path = destination.with_suffix(destination.suffix + ".part")
    # No total deadline (hundreds of MB on a slow link); a stalled read is a failure.
    timeout = aiohttp.ClientTimeout(sock_connect=read_timeout_s, sock_read=read_timeout_s)
    part = await asyncio.to_thread(_Part.open, path, size, chunk_bytes)
    attempt = failures = 0
    resumed_from, reported = part.received, -1  # -1: nothing reported yet

    async def report(force: bool = False) -> None:
        nonlocal reported
        reported = min(reported, part.received)  # after a restart
        step = part.received - reported
        if progress is None or not step or (step < _PROGRESS_EVERY and not force):
            return
        reported = part.received
        result = progress(DownloadProgress(part.received, size, resumed_from, attempt))
        if inspect.isawaitable(result):
            await result

    async def fetch() -> None:
        nonlocal resumed_from
        headers = {"Accept-Encoding": "identity"}  # ranges count bytes of the file itself
        if part.received:
            headers["Range"] = f"bytes={part.received}-"
        async with session.get(
            url, headers=headers, timeout=timeout, auto_decompress=False, raise_for_status=False
        ) as response:
            total = _check(response, part)
            resumed_from = part.received
            if total is not None and total != size:
                code = "too_large" if total > size else "checksum_mismatch"
                raise DownloadFailed(code, f"the server has {total} bytes, not {size}")
            async for chunk in response.content.iter_chunked(chunk_bytes):
                part.write(chunk)
                await report()
        if part.received < size:
            raise _Broken(f"the body ended after {part.received} of {size} bytes")

    try:
        with part.file:
            while part.received < size:
                part.file.flush()  # what the Range asks from is what is on disk
                if before_attempt is not None:
                    await before_attempt()
                attempt, start = attempt + 1, part.received
                try:
                    await fetch()
                except _RETRYABLE as err:
                    failures = 0 if part.received > start else failures + 1
                    if failures >= attempts:
                        # redact: aiohttp's errors may quote the URL, grant and all.
                        raise DownloadFailed(
                            "download_failed",
                            f"{failures} attempts in a row failed: {redact(repr(err))}",
                        ) from err
                    delay = min(max_backoff_s, backoff_s * 2 ** max(0, failures - 1))
                    await asyncio.sleep(random.uniform(delay / 2, delay))
            await report(force=True)
            part.verify(sha256)
    except DownloadFailed as err:
        if err.code in _DISCARD:
            path.unlink(missing_ok=True)
        raise
    # fsync can take seconds on an SD card; it works on the closed file, by its name.
    await asyncio.to_thread(_install, path, destination)
    return destination


def _check(response: aiohttp.ClientResponse, part: _Part) -> int | None:
    """Act on the status; return the object's full length if the server said it."""
    status, asked = response.status, part.received
    if status in (401, 403):  # the caller asks for a fresh URL
        raise DownloadFailed("url_expired", f"the storage service refused the URL ({status})")
    if status in (404, 410):
        raise DownloadFailed("not_found", f"no such artifact ({status})")
    if status == 200:
        if asked:  # the server ignored Range: take the whole body from here
            part.restart()
        return response.content_length
    if status == 206:
        content_range = response.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.fullmatch(content_range)
        if match is None or int(match[1]) != asked:
            part.restart()
            raise _Broken(f"asked for bytes from {asked}, got {content_range!r}")
        return None if match[2] == "*" else int(match[2])
    if status == 416:  # the server has less than we hold: start over, lengths get checked
        part.restart()
        raise _Broken("416: the requested range is past the object's end")
    if status in (408, 429) or status >= 500:
        raise _Broken(f"the storage service answered {status}")
    raise DownloadFailed("download_failed", f"the storage service answered {status}")
