"""``edgecloud upload``: a file into the platform's storage as an artifact, in pieces that
survive a broken connection.

The file is hashed in a first pass (the storage checks the SHA-256 once the last byte is in),
then sent in pieces of :data:`CHUNK` bytes read from disk, each a ``PATCH`` with its
``Content-Range``. After a piece fails (no answer, a 5xx) the storage is asked where the upload
stands and it goes on from there; ``--resume ID`` does the same for an upload that an earlier
run left unfinished. :class:`Uploader` is shared with ``edgecloud deploy``.
"""

import hashlib
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Annotated, BinaryIO

import typer
from rich.progress import TaskID

from . import context, output, progress
from .client import ApiError, Client, Uploaded
from .context import CliError, reported
from .retries import Retries
from .schemas import Artifact, NewArtifact

CHUNK = 8 << 20
"""Bytes per ``PATCH``: what a broken connection costs at most."""
PIECE = 64 << 10
"""Bytes read from disk and handed to the socket at a time."""
MAX_MISMATCHES = 3
"""Times in a row the storage may say the upload stands elsewhere than we thought."""
COMPLETE = "complete"
OFFSET_MISMATCH = "offset_mismatch"
ARTIFACT_COMPLETE = "artifact_complete"
CHECKSUM_MISMATCH = "checksum_mismatch"


class Kind(StrEnum):
    APPLICATION = "application"
    SCRIPT = "script"
    IMAGE = "image"
    FILE = "file"


@dataclass(frozen=True)
class LocalFile:
    path: Path
    size: int
    sha256: str


class Uploader:
    """Uploads files through one client, with a progress bar on stderr (shown on a terminal
    unless ``quiet``) and a line for each retry; use it as a context manager.

    ``pending`` is the artifact of an upload begun and not finished, for a hint on how to
    resume it when the command fails or is interrupted.
    """

    def __init__(self, client: Client, *, quiet: bool) -> None:
        self._client = client
        self._quiet = quiet
        self.shows_progress = progress.shown(quiet=quiet)
        self._bar = progress.transfer_bar(show=self.shows_progress)
        self.pending: Artifact | None = None

    def __enter__(self) -> "Uploader":
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def upload(self, path: Path, *, kind: Kind, name: str | None = None) -> Artifact:
        """A new artifact with the file's bytes."""
        local = self._hash(path)
        request = NewArtifact(
            name=name or path.name, size=local.size, sha256=local.sha256, kind=kind.value
        )
        return self._send(local, self._client.create_artifact(request))

    def resume(self, path: Path, artifact_id: str) -> Artifact:
        """Go on with an earlier upload of the same file."""
        local = self._hash(path)
        artifact = self._client.artifact(artifact_id)
        if (artifact["size"], artifact["sha256"]) != (local.size, local.sha256):
            raise CliError(
                f"artifact {artifact_id} is not {path}: it is {artifact['size']} bytes with "
                f"SHA-256 {artifact['sha256']}, the file {local.size} bytes with {local.sha256}"
            )
        return self._send(local, artifact)

    def _hash(self, path: Path) -> LocalFile:
        """Size and SHA-256 in one streaming pass; the size is what was hashed."""
        digest, size = hashlib.sha256(), 0
        with _reading(path), path.open("rb") as source:
            task = self._bar.add_task(f"hash {path.name}", total=_size_of(source))
            while piece := source.read(CHUNK):
                digest.update(piece)
                size += len(piece)
                self._bar.advance(task, len(piece))
        self._bar.remove_task(task)
        return LocalFile(path, size, digest.hexdigest())

    def _send(self, local: LocalFile, artifact: Artifact) -> Artifact:
        upload_url = artifact["upload_url"]
        if artifact["state"] == COMPLETE or upload_url is None:
            return artifact  # empty, or a resumed upload that had finished after all
        self.pending = artifact
        total, offset = local.size, artifact["received"]
        task = self._bar.add_task(f"upload {local.path.name}", total=total, completed=offset)
        retries, mismatches, best = Retries(), 0, offset
        lost = False  # after a failure, where the upload stands is the storage's to say
        with _reading(local.path), local.path.open("rb") as source:
            while True:
                try:
                    if lost:
                        answer = self._client.upload_offset(upload_url, total=total)
                    elif offset >= total:
                        answer = Uploaded(total, self._client.artifact(artifact["id"]))
                    else:
                        self._bar.update(task, completed=offset)
                        length = min(CHUNK, total - offset)
                        pieces = _pieces(local.path, source, offset, length, self._advance(task))
                        answer = self._client.upload_piece(
                            upload_url, pieces, start=offset, length=length, total=total
                        )
                except ApiError as err:
                    if err.code == ARTIFACT_COMPLETE:
                        # The last piece got in; its answer was lost on the way back.
                        answer = Uploaded(total, self._client.artifact(artifact["id"]))
                    elif err.code == OFFSET_MISMATCH and mismatches < MAX_MISMATCHES:
                        mismatches += 1
                        offset, lost = _received(err, total), False
                        continue
                    else:
                        retries.pause(err, announce=self._announce(err, local.path, retries))
                        lost = True
                        continue
                lost = False
                if answer.artifact is not None:
                    return self._finished(local, answer.artifact, task)
                offset = answer.offset
                if offset > best:
                    best, mismatches = offset, 0
                    retries.reset()

    def _finished(self, local: LocalFile, artifact: Artifact, task: TaskID) -> Artifact:
        if artifact["state"] != COMPLETE:
            raise CliError(f"the storage holds every byte of {artifact['id']} but not as complete")
        self._bar.update(task, completed=local.size)
        self.pending = None
        if not self.shows_progress and not self._quiet:
            output.notice(
                f"{local.path.name}: {output.human_bytes(local.size)} uploaded as {artifact['id']}"
            )
        return artifact

    def _advance(self, task: TaskID) -> Callable[[int], None]:
        return lambda sent: self._bar.advance(task, sent)

    def _announce(self, err: ApiError, path: Path, retries: Retries) -> Callable[[float], None]:
        def say(delay: float) -> None:
            if not self._quiet:
                progress.say(
                    self._bar,
                    f"upload of {path.name} interrupted: {output.printable(err.detail)}; "
                    f"trying again in {delay:g} s ({retries.used}/{retries.allowed})",
                )

        return say


def _pieces(
    path: Path, source: BinaryIO, start: int, length: int, advance: Callable[[int], None]
) -> Iterator[bytes]:
    """Bytes ``start`` to ``start + length`` of the file, read as the socket takes them."""
    with _reading(path):
        source.seek(start)
        left = length
        while left:
            piece = source.read(min(PIECE, left))
            if not piece:
                raise CliError(f"{path} shrank during the upload")
            left -= len(piece)
            advance(len(piece))
            yield piece


def _received(err: ApiError, total: int) -> int:
    """Where the storage says the upload stands, from its ``offset_mismatch`` answer."""
    received = err.body.get("received")
    if not isinstance(received, int) or not 0 <= received <= total:
        raise err
    return received


def _size_of(source: BinaryIO) -> int:
    size = source.seek(0, 2)
    source.seek(0)
    return size


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror or err}") from None


@contextmanager
def resume_hint(uploader: Uploader, path: Path) -> Iterator[None]:
    """When an upload under way fails or is interrupted, say how to go on with it."""
    try:
        yield
    except ApiError as err:
        pending = uploader.pending
        if pending is None:
            raise
        output.api_error(err)
        if err.code == CHECKSUM_MISMATCH:
            output.notice(f"hint: {path} changed during the upload; upload it again")
        else:
            output.notice(f"hint: {_resume_command(path, pending)}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pending = uploader.pending
        hint = f"; {_resume_command(path, pending)}" if pending else ""
        output.notice(f"interrupted{hint}")
        raise typer.Exit(130) from None


def _resume_command(path: Path, pending: Artifact) -> str:
    return f"resume with: edgecloud upload {shlex.quote(str(path))} --resume {pending['id']}"


FileArgument = Annotated[
    Path,
    typer.Argument(
        metavar="FILE", exists=True, dir_okay=False, readable=True, help="The file to upload."
    ),
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar and no summary on stderr.")
]


def upload(
    ctx: typer.Context,
    file: FileArgument,
    kind: Annotated[
        Kind | None,
        typer.Option(help="What the file is (default: file).", show_default=False),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="The artifact's name (default: the file's).", show_default=False),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="ARTIFACT_ID",
            help="Go on with an interrupted upload of the same file.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the artifact as JSON.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Upload a file as an artifact, resumably, and print its id."""
    if resume and (kind or name):
        raise typer.BadParameter(
            "an upload goes on with the name and kind it began with; drop --kind and --name",
            param_hint="--resume",
        )
    with reported(), context.client(ctx) as client:
        uploader = Uploader(client, quiet=quiet)
        with resume_hint(uploader, file), uploader:
            if resume:
                artifact = uploader.resume(file, resume)
            else:
                artifact = uploader.upload(file, kind=kind or Kind.FILE, name=name)
    if as_json:
        output.raw_json(artifact)
    else:
        output.info(artifact["id"])
