"""Which devices an image can run on: device architectures against image platforms.

Shared by the orchestrator (which refuses a mismatch) and the dashboard (which offers only
the devices an image fits).
"""

from pydantic import BaseModel

# What nodes report (platform.machine()) -> what image manifests say (GOARCH).
MACHINE_TO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i686": "386",
    "i386": "386",
    "riscv64": "riscv64",
}


def fits(device_arch: str, image_platforms: set[str] | None) -> bool:
    """True when an image built for ``image_platforms`` runs on ``device_arch``; unknown
    platforms (None) fit everything: the node then decides."""
    if image_platforms is None:
        return True
    return MACHINE_TO_ARCH.get(device_arch, device_arch) in image_platforms


class ImagePlatforms(BaseModel):
    """``GET /images/platforms?image=``."""

    image: str
    platforms: list[str] | None
    """The architectures the image is built for; null when it cannot be known (an image
    outside the platform's trusted registries, or not found there)."""
