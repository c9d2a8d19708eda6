"""The node's image store, held apart per tenant.

One Docker engine keeps every tenant's images. Three rules keep one tenant's images from
another's:

- **What a tenant brings is its own.** An image loaded from a tenant's ``docker save``
  archive or built from its build context is kept untagged by the engine and tagged only in
  the tenant's namespace, ``edgecloud-tenants/<tenant>:<image digest>`` (a name the
  contract refuses to any tenant), and recorded here against the archive's or context's
  digest. No tenant's action moves a tag someone else relies on (:mod:`.image_archives`
  strips an archive's own tags before the engine sees them; builds get no tag).
- **A name is never taken for an ID.** A container is created from the image ID this
  module gives. A tenant's reference reaches a shared image only if that image really is
  tagged so (a registry pull, the operator's own images); Docker's own lookup would also
  take an image ID or a prefix of one, and so run another tenant's private image.
- **Registry pulls stay shared**, and the container is pinned to the ID (the content
  digest) the pull gave, whatever the tag does later.
"""

import asyncio
import hashlib
import io
import json
import logging
import tarfile
import time
from pathlib import Path

from edgecloud_contracts.containers import TENANT_IMAGES, ContainerSpec, is_reserved_image

from ..runtime.docker import DockerRuntime, file_chunks
from ..runtime.errors import BuildRefused, ImageLoadFailed, ImagePullFailed, ImageRefused
from ..runtime.reports import PullCallback
from ..state.db import connect
from . import dockerfiles, image_archives
from .cgroups import Cgroups, GroupLimits
from .references import names_image

logger = logging.getLogger(__name__)

IMAGES_FILE = "images.sqlite3"
UNUSED_GRACE_S = 600.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenant_images (
    tenant_id TEXT NOT NULL,
    source TEXT NOT NULL,
    reference TEXT NOT NULL,
    image_id TEXT NOT NULL,
    used_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, source)
);
CREATE INDEX IF NOT EXISTS tenant_images_reference ON tenant_images (tenant_id, reference);
"""


def tenant_repository(tenant_id: str) -> str:
    return f"{TENANT_IMAGES}/{hashlib.sha256(tenant_id.encode()).hexdigest()[:16]}"


def source_of(spec: ContainerSpec) -> str | None:
    """What a container's image is made from, when the tenant brings it."""
    if spec.image_archive is not None:
        return f"archive:{spec.image_archive.sha256}"
    if spec.build_context is not None:
        return f"build:{spec.build_context.sha256}"
    return None


class TenantImages:
    def __init__(
        self, *, runtime: DockerRuntime, cgroups: Cgroups, state_dir: Path, work_dir: Path
    ) -> None:
        self._runtime = runtime
        self._cgroups = cgroups
        self._db = connect(state_dir / IMAGES_FILE)
        self._db.executescript(_SCHEMA)
        self._work = work_dir

    def close(self) -> None:
        self._db.close()

    async def find(self, spec: ContainerSpec) -> str | None:
        """The image ID ``spec``'s container may run, if the node has it: made from the
        tenant's own archive or context when the spec brings one; else the tenant's own
        image of that name, then a shared one really tagged so."""
        self._refuse_reserved(spec.image)
        source = source_of(spec)
        if source is not None:
            return await self._recorded(spec.tenant_id, "source = ?", source)
        own = await self._recorded(spec.tenant_id, "reference = ?", spec.image)
        return own if own is not None else await self.shared(spec.image)

    async def shared(self, reference: str) -> str | None:
        """The ID of the node's image tagged ``reference``, if it has one (never an image
        reached by its ID or a prefix of it, never a tenant's own)."""
        self._refuse_reserved(reference)
        found = await self._runtime.image_inspect(reference)
        if found is None or not names_image(reference, found):
            return None
        return str(found["Id"])

    async def may_use(self, tenant_id: str, reference: str, image_id: str) -> bool:
        """Whether the node holds ``image_id`` for the tenant: as its own, or as the shared
        image tagged ``reference`` (a migration's target asks before it goes without the
        source's image)."""
        rows = self._db.execute(
            "SELECT image_id FROM tenant_images WHERE tenant_id = ? AND image_id = ?",
            (tenant_id, image_id),
        ).fetchall()
        if rows and await self._runtime.image_inspect(image_id) is not None:
            return True
        return await self.shared(reference) == image_id

    async def pull(self, reference: str, on_progress: PullCallback | None = None) -> str:
        """Pull a shared image from its registry; its ID."""
        self._refuse_reserved(reference)
        await self._runtime.pull(reference, on_progress)
        image_id = await self.shared(reference)
        if image_id is None:
            raise ImagePullFailed(f"pull {reference}: the engine did not keep it under that name")
        return image_id

    async def load(
        self,
        spec: ContainerSpec,
        archive: Path,
        *,
        source: str | None = None,
        expected: str | None = None,
    ) -> str:
        """Load the tenant's ``docker save`` archive as its own image; the image's ID.
        With ``expected``, an archive of any other image is refused before it is loaded."""
        self._refuse_reserved(spec.image)
        found = await asyncio.to_thread(image_archives.read_manifest, archive, spec.image)
        if expected is not None and found.image_id != expected:
            raise ImageRefused(f"the archive holds {found.image_id[:19]}, not {expected[:19]}")
        untagged = self._work / f"untagged-{archive.name}"
        self._work.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(image_archives.without_tags, archive, untagged)
            await self._runtime.load_image(file_chunks(untagged), what=archive.name)
        finally:
            untagged.unlink(missing_ok=True)
        if await self._runtime.image_inspect(found.image_id) is None:
            raise ImageLoadFailed(f"the archive {archive.name} did not give {found.image_id}")
        return await self._keep(spec, source or source_of(spec) or f"image:{found.image_id}",
                                found.image_id)  # fmt: skip

    async def build(self, spec: ContainerSpec, context: Path) -> str:
        """Build the tenant's context as its own image, under the node's build policy; the
        image's ID."""
        self._refuse_reserved(spec.image)
        pinned = self._work / f"pinned-{context.name}"
        self._work.mkdir(parents=True, exist_ok=True)
        try:
            text = await asyncio.to_thread(_dockerfile_of, context)
            rewritten = await dockerfiles.pin(
                text,
                resolve=lambda name: self._base_image(spec, name),
                on_build=self._on_build,
            )
            await asyncio.to_thread(_with_dockerfile, context, pinned, rewritten)
            limits = GroupLimits(spec.limits.memory, spec.limits.cpus, spec.limits.pids)
            async with self._cgroups.transient("edgecloud-build", limits) as parent:
                image_id = await self._runtime.build_image(
                    file_chunks(pinned),
                    params=build_params(spec, cgroup_parent=parent),
                    what=spec.image,
                )
        finally:
            pinned.unlink(missing_ok=True)
        source = source_of(spec) or f"image:{image_id}"
        return await self._keep(spec, source, image_id)

    async def save(self, image_id: str, destination: Path) -> int:
        """``docker save`` of one image by its ID (no tags in it): for a migration."""
        return await self._runtime.save_image(image_id, destination)

    async def forget_unused(self, tenant_id: str, in_use: set[str]) -> None:
        """Drop the tenant's own images no container of its uses any more (the engine
        deletes an image once its last tag and container are gone). An image kept a short
        while ago is left alone: a create may be about to use it."""
        rows = self._db.execute(
            "SELECT source, image_id FROM tenant_images WHERE tenant_id = ? AND used_at < ?",
            (tenant_id, time.time() - UNUSED_GRACE_S),
        ).fetchall()
        for source, image_id in rows:
            if image_id in in_use:
                continue
            self._db.execute(
                "DELETE FROM tenant_images WHERE tenant_id = ? AND source = ?", (tenant_id, source)
            )
            still = self._db.execute(
                "SELECT 1 FROM tenant_images WHERE tenant_id = ? AND image_id = ?",
                (tenant_id, image_id),
            ).fetchone()
            if still is None:
                tag = image_id.removeprefix("sha256:")
                await self._runtime.untag(f"{tenant_repository(tenant_id)}:{tag}", prune=True)

    async def _keep(self, spec: ContainerSpec, source: str, image_id: str) -> str:
        await self._runtime.tag(
            image_id,
            repository=tenant_repository(spec.tenant_id),
            tag=image_id.removeprefix("sha256:"),
        )
        self._db.execute(
            "INSERT OR REPLACE INTO tenant_images (tenant_id, source, reference, image_id,"
            " used_at) VALUES (?, ?, ?, ?, ?)",
            (spec.tenant_id, source, spec.image, image_id, time.time()),
        )
        logger.info("image %s of %s kept as %s", spec.image, spec.tenant_id, image_id[:19])
        return image_id

    async def _recorded(self, tenant_id: str, where: str, value: str) -> str | None:
        row = self._db.execute(
            f"SELECT image_id, source FROM tenant_images WHERE tenant_id = ? AND {where}"
            " ORDER BY used_at DESC LIMIT 1",
            (tenant_id, value),
        ).fetchone()
        if row is None:
            return None
        image_id = str(row[0])
        # In use again: not one to forget while a create is about to use it.
        self._db.execute(
            "UPDATE tenant_images SET used_at = ? WHERE tenant_id = ? AND source = ?",
            (time.time(), tenant_id, row[1]),
        )
        # The engine may have lost it (an operator's prune): then the node has it no more.
        return image_id if await self._runtime.image_inspect(image_id) is not None else None

    async def _base_image(self, spec: ContainerSpec, name: str) -> str:
        if is_reserved_image(name):
            raise BuildRefused(f"{name}: an image the node keeps for itself")
        own = await self._recorded(spec.tenant_id, "reference = ?", name)
        found = own if own is not None else await self.shared(name)
        if found is None:
            raise BuildRefused(f"{name}: no such image on this node for this tenant to build on")
        return found

    async def _on_build(self, image_id: str) -> list[str]:
        found = await self._runtime.image_inspect(image_id)
        triggers = ((found or {}).get("Config") or {}).get("OnBuild") or []
        return [str(trigger) for trigger in triggers]

    @staticmethod
    def _refuse_reserved(reference: str) -> None:
        if is_reserved_image(reference):
            raise ImageRefused(f"{reference!r} names an image the node keeps for itself")


def build_params(spec: ContainerSpec, *, cgroup_parent: str) -> dict[str, str]:
    """The engine's ``/build`` parameters for a tenant's build: no network, nothing pulled,
    no cache shared with other builds, the container's memory and CPU for each step, and
    the build's own cgroup (its PIDs, memory and CPU for the whole build)."""
    memory = str(spec.limits.memory)
    return {
        "networkmode": "none",
        "pull": "0",
        "nocache": "1",
        "rm": "1",
        "forcerm": "1",
        "memory": memory,
        "memswap": memory,
        "cpuperiod": "100000",
        "cpuquota": str(max(1000, round(spec.limits.cpus * 100_000))),
        "cgroupparent": cgroup_parent,
        "labels": json.dumps({"edgecloud.tenant": spec.tenant_id}),
    }


DOCKERFILE = "Dockerfile"


def _dockerfile_of(context: Path) -> str:
    try:
        with tarfile.open(context, mode="r:*") as tar:
            for member in tar:
                if member.name.removeprefix("./") == DOCKERFILE:
                    if not member.isfile() or member.size > dockerfiles.MAX_DOCKERFILE_BYTES:
                        raise BuildRefused("the context's Dockerfile is not a small regular file")
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    return extracted.read().decode()
    except (tarfile.TarError, OSError, UnicodeDecodeError) as err:
        raise BuildRefused(f"the build context cannot be read: {err}") from err
    raise BuildRefused("the build context has no Dockerfile at its root")


def _with_dockerfile(context: Path, destination: Path, dockerfile: str) -> None:
    """Copy the context with its Dockerfile replaced (every other Dockerfile entry dropped,
    so the engine cannot read another one)."""
    data = dockerfile.encode()
    with (
        tarfile.open(context, mode="r:*") as source,
        tarfile.open(destination, mode="w:", format=tarfile.PAX_FORMAT) as target,
    ):
        for member in source:
            if member.name.removeprefix("./") == DOCKERFILE:
                continue
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo(DOCKERFILE)
        info.size = len(data)
        info.mode = 0o644
        target.addfile(info, io.BytesIO(data))
