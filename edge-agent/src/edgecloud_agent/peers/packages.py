"""Containers this node keeps for others without running them (collaboration level 1).

A peer too small to run a container can still keep it: the cloud's record of it (its
spec and image ID), its image when it was not built from a context, and its ``/app``. The
package outlives this agent's restarts (each is a directory written whole, then renamed
into place) and is handed on to a node that can run it when the scheduler finds one, or
dropped when its container is removed or after the retention time.
"""

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from edgecloud_contracts.containers import ContainerSpec

from ..isolation.node_paths import component

logger = logging.getLogger(__name__)

RETENTION_S = 14 * 24 * 3600.0
"""A package nobody came for in two weeks is dropped (its container long given up)."""
MANIFEST = "package.json"
IMAGE, APP = "image.tar", "app.tar"


@dataclass(frozen=True)
class Package:
    spec: ContainerSpec
    """The cloud's record of the container when it was stored, not its source's word."""
    image_id: str | None
    migration: str
    kept_at: float
    directory: Path

    @property
    def container_id(self) -> str:
        return self.spec.container_id

    @property
    def image_file(self) -> Path | None:
        path = self.directory / IMAGE
        return path if path.exists() else None

    @property
    def app_file(self) -> Path:
        return self.directory / APP


class PackageStore:
    def __init__(self, root: Path, *, retention_s: float = RETENTION_S) -> None:
        self._root = root
        self._retention_s = retention_s
        root.mkdir(parents=True, exist_ok=True)

    def keep(
        self,
        *,
        migration: str,
        spec: ContainerSpec,
        image_id: str | None,
        app_file: Path,
        image_file: Path | None,
    ) -> Package:
        """Take the received files in (moved, not copied) as the container's package;
        one package per container, the latest replacing any older one."""
        name = component(spec.container_id)
        staging = self._root / f".{name}.{component(migration)}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        os.replace(app_file, staging / APP)
        if image_file is not None:
            os.replace(image_file, staging / IMAGE)
        kept_at = time.time()
        manifest = {
            "migration": migration,
            "spec": spec.model_dump(mode="json"),
            "image_id": image_id,
            "kept_at": kept_at,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest))
        for path in staging.iterdir():
            _fsync(path)
        _fsync(staging)
        final = self._root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        _fsync(self._root)
        return Package(spec, image_id, migration, kept_at, final)

    def get(self, container_id: str) -> Package | None:
        directory = self._root / component(container_id)
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
            return Package(
                spec=ContainerSpec.model_validate(manifest["spec"]),
                image_id=manifest.get("image_id"),
                migration=str(manifest["migration"]),
                kept_at=float(manifest["kept_at"]),
                directory=directory,
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError) as err:
            logger.warning("package of %s is unreadable, dropped: %s", container_id, err)
            shutil.rmtree(directory, ignore_errors=True)
            return None

    def drop(self, container_id: str) -> bool:
        directory = self._root / component(container_id)
        if not directory.exists():
            return False
        shutil.rmtree(directory, ignore_errors=True)
        return True

    def kept(self) -> list[str]:
        """The containers whose packages are here."""
        return sorted(p.name for p in self._root.iterdir() if not p.name.startswith("."))

    def sweep(self) -> list[str]:
        """Drop packages past their retention and half-written ones; what was dropped."""
        dropped = []
        for path in self._root.iterdir():
            if path.name.startswith("."):
                shutil.rmtree(path, ignore_errors=True)
                continue
            package = self.get(path.name)
            if package is not None and time.time() - package.kept_at > self._retention_s:
                logger.warning("package of %s kept past its retention: dropped", path.name)
                self.drop(path.name)
                dropped.append(path.name)
        return dropped


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
