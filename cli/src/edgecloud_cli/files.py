"""``edgecloud cp CONTAINER:PATH LOCAL``: copy a file or directory out of a container.

The device packs PATH as a tar (Docker's archive format) and uploads it as an artifact; the CLI
waits for it, downloads it (see :mod:`.download`) and, unless ``--tar``, extracts it with
:mod:`edgecloud_contracts.archives`, which checks every member and writes nothing outside the
destination. Everything lands in a scratch directory beside LOCAL first, and is moved into
place only once whole, so a refused or broken copy leaves nothing behind.

Where it lands, as with ``docker cp``:

- LOCAL is a directory, or ends with ``/``: what PATH names goes inside it (a file there of
  the same name is replaced; a directory is never merged into);
- otherwise a single file is written to LOCAL, and a directory becomes LOCAL, which must not
  exist yet;
- ``--tar`` keeps the archive itself: at LOCAL, or inside it as ``NAME.tar``.
"""

import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from edgecloud_contracts.archives import (
    ARCHIVE_UNSAFE,
    ArchiveLimits,
    ArchiveUnsafe,
    extract_archive,
)

from . import containers, context, output, progress
from .context import CliError, reported
from .download import fetch, wait_for
from .upload import QuietOption


@dataclass(frozen=True)
class Destination:
    path: Path
    into: bool
    """LOCAL is (or is to be) a directory that the copy goes inside."""
    workdir: Path
    """An existing directory on LOCAL's file system, for the scratch directory."""


def parse_source(text: str) -> tuple[str, str]:
    """``web:/app/data`` as the container and the path inside it."""
    ref, colon, path = text.partition(":")
    if not colon or not ref or not path:
        raise typer.BadParameter(f"{text!r} is not CONTAINER:PATH", param_hint="CONTAINER:PATH")
    return ref, path


def destination(local: str) -> Destination:
    path = Path(local)
    into = path.is_dir() or local.endswith(("/", os.sep))
    workdir = path if path.is_dir() else path.parent
    if not workdir.is_dir():
        raise CliError(f"no such directory: {workdir}")
    return Destination(path, into, workdir)


def limits_for(size: int) -> ArchiveLimits:
    """Docker's archives are plain tars, so the download's size bounds what they hold:
    each member takes a 512-byte header at least."""
    return ArchiveLimits(
        max_total_bytes=max(size, 1),
        max_files=max(size // tarfile.BLOCKSIZE, 1),
        max_path_length=4096,
        max_depth=256,
    )


def place(archive: Path, scratch: Path, dest: Destination, *, size: int) -> str:
    """Extract the archive into the scratch directory, then move what it holds into place;
    say what was copied."""
    tree = scratch / "tree"
    try:
        summary = extract_archive(archive, tree, limits_for(size))
    except ArchiveUnsafe as err:
        raise CliError(f"{err} ({ARCHIVE_UNSAFE}); nothing was written") from None
    entries = sorted(tree.iterdir())
    if dest.into:
        _move_into(entries, tree, dest.path)
    else:
        _move_onto(entries, dest.path)
    files = "1 file" if summary.files == 1 else f"{summary.files} files"
    return f"{files}, {output.human_bytes(summary.total_bytes)}"


def _move_into(entries: list[Path], tree: Path, directory: Path) -> None:
    if not os.path.lexists(directory):
        tree.rename(directory)
        return
    for entry in entries:
        target = directory / entry.name
        if os.path.lexists(target) and not (_is_file(entry) and _is_file(target)):
            raise CliError(f"{target} already exists; nothing was written")
    for entry in entries:
        entry.replace(directory / entry.name)


def _move_onto(entries: list[Path], target: Path) -> None:
    if len(entries) != 1:
        raise CliError(
            f"the copy holds {len(entries)} entries; give a directory (ending with /) "
            "to put them in, or --tar"
        )
    [entry] = entries
    if _is_file(entry):
        entry.replace(target)
    elif os.path.lexists(target):
        raise CliError(f"cannot put a directory in the place of {target}")
    else:
        entry.rename(target)


def _is_file(path: Path) -> bool:
    return stat.S_ISREG(path.lstat().st_mode)


def _keep_tar(archive: Path, dest: Destination, name: str) -> Path:
    target = dest.path / f"{name}.tar" if dest.into else dest.path
    target.parent.mkdir(exist_ok=True)
    archive.replace(target)
    return target


@contextmanager
def _writing(local: str) -> Iterator[None]:
    try:
        yield
    except OSError as err:
        raise CliError(f"cannot write {local}: {err.strerror or err}") from None


def cp(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="CONTAINER:PATH",
            help="A container (id, id prefix or name) and a path inside it.",
        ),
    ],
    local: Annotated[
        str,
        typer.Argument(
            metavar="LOCAL",
            help="Where to put it: a file, or a directory (one that exists, or ending with /).",
        ),
    ],
    as_tar: Annotated[
        bool, typer.Option("--tar", help="Keep the archive as it came, without extracting.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Copy a file or directory out of a container."""
    ref, path = parse_source(source)
    name = PurePosixPath(path).name or "root"
    with reported(), context.client(ctx) as client, _writing(local):
        dest = destination(local)
        container = containers.resolve(client, ref)
        label = f"{ref}:{path}"
        with tempfile.TemporaryDirectory(prefix=".edgecloud-cp-", dir=dest.workdir) as scratch:
            try:
                with progress.transfer_bar(show=progress.shown(quiet=quiet)) as bar:
                    asked = client.copy_from(container["id"], path)
                    artifact = wait_for(client, asked, bar, label)
                    archive = Path(scratch) / "archive.tar"
                    fetch(client, artifact, archive, bar, label, quiet=quiet)
            except KeyboardInterrupt:
                output.notice("interrupted; nothing was written")
                raise typer.Exit(130) from None
            size = artifact["size"] or 0
            if as_tar:
                where = str(_keep_tar(archive, dest, name))
                what = f"tar, {output.human_bytes(size)}"
            else:
                what = place(archive, Path(scratch), dest, size=size)
                where = local
    if not quiet:
        output.notice(f"Copied {label} to {where} ({what})")
