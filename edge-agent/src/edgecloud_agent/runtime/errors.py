"""Errors of the container runtime, each with a stable ``code`` for command results.

RuntimeFailure                   the engine refused or failed an operation (docker_error)
├── RuntimeUnavailable           the engine cannot be reached (docker_unavailable)
│   └── RuntimeTimeout           the engine did not answer in time (docker_timeout)
├── ImagePullFailed              the image is missing and cannot be pulled (image_pull_failed)
├── ImageLoadFailed              an image archive could not be loaded (image_load_failed)
├── PathNotFound                 no such path inside the container (path_not_found)
├── ContainerNotFound            no container of ours by that name (container_not_found)
├── NameConflict                 the name is taken by another container (name_conflict)
└── PolicyRefused                the node's policy forbids it (policy_refused)
    └── DeviceRefused            a device file the node will not map (device_refused)
"""


class RuntimeFailure(Exception):
    code = "docker_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        """The engine's HTTP status, when it answered with one."""


class RuntimeUnavailable(RuntimeFailure):
    """The Docker engine cannot be reached."""

    code = "docker_unavailable"


class RuntimeTimeout(RuntimeUnavailable):
    code = "docker_timeout"


class ImagePullFailed(RuntimeFailure):
    code = "image_pull_failed"


class ImageLoadFailed(RuntimeFailure):
    code = "image_load_failed"


class ImageBuildFailed(RuntimeFailure):
    code = "image_build_failed"


class PathNotFound(RuntimeFailure):
    code = "path_not_found"


class ContainerNotFound(RuntimeFailure):
    code = "container_not_found"


class NameConflict(RuntimeFailure):
    code = "name_conflict"


class PolicyRefused(RuntimeFailure):
    code = "policy_refused"


class DeviceRefused(PolicyRefused):
    """A declared interface's device file is missing, not a character device, or the
    node's own (memory, consoles, disks, ...)."""

    code = "device_refused"
