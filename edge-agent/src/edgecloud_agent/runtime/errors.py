"""Errors of the container runtime, each with a stable ``code`` for command results.

RuntimeFailure                   the engine refused or failed an operation (docker_error)
├── RuntimeUnavailable           the engine cannot be reached (docker_unavailable)
│   └── RuntimeTimeout           the engine did not answer in time (docker_timeout)
├── ImagePullFailed              the image is missing and cannot be pulled (image_pull_failed)
├── ImageLoadFailed              an image archive could not be loaded (image_load_failed)
├── ImageBuildFailed             a build context could not be built (image_build_failed)
├── FilesTooLarge                a copy out of a container crossed its limit (files_too_large)
├── PathNotFound                 no such path inside the container (path_not_found)
├── ContainerNotFound            no container of ours by that name (container_not_found)
├── NameConflict                 the name is taken by another container (name_conflict)
└── PolicyRefused                the node's policy forbids it (policy_refused)
    ├── DeviceRefused            a device file the node will not map (device_refused)
    ├── ImageRefused             an image a tenant may not have (image_refused)
    ├── BuildRefused             a build step the node will not run (build_refused)
    ├── DiskReserveReached       it would eat into the node's disk reserve (node_disk_full)
    ├── PortRefused              a published port outside the node's range (port_refused)
    ├── UnsafeFile               a tenant's file is not a regular file (unsafe_file)
    └── UnsafeName               a cloud name is not one path component (unsafe_name)
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


class FilesTooLarge(RuntimeFailure):
    """A copy out of a container grew past the node's limit: it was cut off and discarded."""

    code = "files_too_large"


class ImageRefused(PolicyRefused):
    """An archive holding more than the image it declares, or naming another image; an
    image reference the tenant may not use on this node."""

    code = "image_refused"


class BuildRefused(PolicyRefused):
    """A build context whose Dockerfile would fetch from the network on the node's behalf,
    or build on an image the tenant may not use."""

    code = "build_refused"


class DiskReserveReached(PolicyRefused):
    """Setting space aside (a container's /app, a copy, a download) would leave the node
    less free disk than its reserve."""

    code = "node_disk_full"


class PortRefused(PolicyRefused):
    code = "port_refused"


class UnsafeFile(PolicyRefused):
    """Where the agent writes into a tenant's /app, the tenant put something that is not a
    regular file (a link, a FIFO, a device, a directory): nothing was written."""

    code = "unsafe_file"


class UnsafeName(PolicyRefused):
    """A name from the cloud (an id, a file name) that would be joined to one of the node's
    directories is not exactly one path component: nothing was made or removed."""

    code = "unsafe_name"
