"""What platforms an image is built for, read from the image registry when we can.

The orchestrator asks only the registries it is configured to trust (the platform's own,
e.g. 127.0.0.1:5000); for any other image the platforms are unknown and the node decides.
"""

import logging
import time
from dataclasses import dataclass

import httpx

logger = logging.getLogger(__name__)

_MANIFESTS = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    )
)


@dataclass(frozen=True, slots=True)
class ImageReference:
    registry: str
    repository: str
    reference: str


def parse(image: str) -> ImageReference:
    """Split ``[registry/]repository[:tag][@digest]`` (the grammar is checked before)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, remainder = first, rest
    else:
        registry, remainder = "docker.io", image
    if "@" in remainder:
        repository, reference = remainder.split("@", 1)
    else:
        repository, _, tag = remainder.rpartition(":") if ":" in remainder else (remainder, "", "")
        reference = tag or "latest"
    return ImageReference(registry, repository, reference)


class PlatformCache:
    """Platforms per image reference for a minute: a tag rarely moves to another
    architecture, and a create should not wait on two registry round trips each time."""

    def __init__(
        self, client: httpx.AsyncClient, *, trusted: frozenset[str], ttl_s: float = 60
    ) -> None:
        self._client = client
        self._trusted = trusted
        self._ttl = ttl_s
        self._known: dict[str, tuple[float, set[str] | None]] = {}

    async def platforms(self, image: str) -> set[str] | None:
        now = time.monotonic()
        cached = self._known.get(image)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        found = await platforms(self._client, image, trusted=self._trusted)
        if found is not None:
            self._known[image] = (now, found)
        return found


async def platforms(
    client: httpx.AsyncClient, image: str, *, trusted: frozenset[str]
) -> set[str] | None:
    """The architectures ``image`` runs on, or None when that cannot be known here."""
    ref = parse(image)
    if ref.registry not in trusted:
        return None
    base = f"http://{ref.registry}/v2/{ref.repository}"
    try:
        answer = await client.get(
            f"{base}/manifests/{ref.reference}", headers={"Accept": _MANIFESTS}
        )
        if answer.status_code != 200:
            return None
        manifest = answer.json()
        if "manifests" in manifest:  # a multi-platform index
            return {m["platform"]["architecture"] for m in manifest["manifests"] if "platform" in m}
        config = await client.get(f"{base}/blobs/{manifest['config']['digest']}")
        if config.status_code != 200:
            return None
        return {str(config.json()["architecture"])}
    except (httpx.HTTPError, KeyError, TypeError, ValueError) as err:
        logger.info("platforms of %s unknown: %s", image, err)
        return None
