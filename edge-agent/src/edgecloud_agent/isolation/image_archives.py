"""A tenant's ``docker save`` archive, read before the engine sees it.

``docker load`` applies whatever tags an archive's ``manifest.json`` (and its legacy
``repositories`` file) carries: an archive that also says ``redis:7``, or another tenant's
image name, would move that tag on the node, and every later create of that name would run
the archive's image. So the manifest is read first: exactly one image, whose tags (if any)
name only the image the tenant declared. Then the archive is written again without any tag
(no ``repositories``, ``RepoTags`` empty) and that copy is loaded: the engine keeps the
image under its ID alone, and the agent tags it in the tenant's own namespace.

Runs in a worker thread: these are blocking reads and writes of possibly large files.
"""

import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime.errors import ImageRefused
from .references import familiar

MANIFEST = "manifest.json"
LEGACY_TAGS = "repositories"
_CONFIG = re.compile(r"^(?:blobs/sha256/)?([a-f0-9]{64})(?:\.json)?$")
MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    image_id: str
    """``sha256:<config digest>``: what the engine will call the image."""
    tags: tuple[str, ...]


def read_manifest(archive: Path, declared: str) -> ArchiveImage:
    """The one image of ``archive``; :class:`ImageRefused` if it holds anything else, or
    tags naming anything but ``declared``."""
    try:
        with tarfile.open(archive, mode="r:") as tar:
            member = _member(tar, MANIFEST)
            if member is None:
                raise ImageRefused("the archive has no manifest.json (not a `docker save` archive)")
            if not member.isfile() or member.size > MAX_MANIFEST_BYTES:
                raise ImageRefused("the archive's manifest.json is not a small regular file")
            source = tar.extractfile(member)
            assert source is not None
            manifest = json.loads(source.read())
    except (tarfile.TarError, OSError, ValueError) as err:
        raise ImageRefused(f"the archive cannot be read: {err}") from err
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        count = len(manifest) if isinstance(manifest, list) else "no list of"
        raise ImageRefused(f"the archive holds {count} images; exactly one is allowed")
    entry: dict[str, Any] = manifest[0]
    config = _CONFIG.match(str(entry.get("Config", "")))
    if config is None:
        raise ImageRefused("the archive's manifest names no image configuration")
    tags = entry.get("RepoTags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ImageRefused("the archive's manifest has malformed tags")
    wanted = familiar(declared)
    strangers = sorted({tag for tag in tags if familiar(tag) != wanted})
    if strangers:
        raise ImageRefused(
            f"the archive also names {', '.join(strangers)[:300]}: only {declared} is allowed"
        )
    return ArchiveImage(image_id=f"sha256:{config.group(1)}", tags=tuple(tags))


def without_tags(archive: Path, destination: Path) -> None:
    """Copy ``archive`` to ``destination`` with no tag left in it."""
    with (
        tarfile.open(archive, mode="r:") as source,
        tarfile.open(destination, mode="w:", format=tarfile.PAX_FORMAT) as target,
    ):
        manifest: list[dict[str, Any]] | None = None
        for member in source:
            name = _normal(member.name)
            if name == LEGACY_TAGS:
                continue
            if name == MANIFEST:
                extracted = source.extractfile(member)
                assert extracted is not None
                manifest = json.loads(extracted.read())
                continue
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        assert manifest is not None  # read_manifest() found it before
        manifest[0]["RepoTags"] = None
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        info.mode = 0o644
        target.addfile(info, io.BytesIO(data))


def _member(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo | None:
    found = None
    for member in tar:
        if _normal(member.name) == name:
            found = member  # the last one wins, as for the engine
    return found


def _normal(name: str) -> str:
    return name[2:] if name.startswith("./") else name
