"""A node's hardware interfaces and sensor streams, as an operator declares them.

An operator declares each interface of a node once (a serial port, a bus, a GPIO chip, a
USB device, a camera, or a sensor topic on the node's broker) and names the tenants that
may use it. A container asks for interfaces by name; the orchestrator resolves the names
into :class:`DeviceMapping` entries of the container's spec, and the agent maps exactly
those into the container, never anything else. A device interface that is not
``shareable`` belongs to the first container holding it until that container stops.

Sensor interfaces (``kind: sensor``) grant MQTT topic filters instead of a device file:
a container's ``subscriptions`` must each fall inside a sensor interface of its node that
is granted to its tenant. Sensor streams are always shared.
"""

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from .heartbeat import WireModel
from .text import Note, ObjectId

INTERFACE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# A device file: under /dev, no "..", nothing a shell or Docker could read as more.
DEVICE_PATH_PATTERN = r"^/dev/[A-Za-z0-9_.:/+-]{1,200}$"
# An MQTT topic filter of the node's sensors (never the broker's own $SYS topics).
TOPIC_FILTER_PATTERN = r"^[^$\x00-\x1f\x7f][^\x00-\x1f\x7f]{0,199}$"


def _no_parent_steps(path: str) -> str:
    if any(part in ("", ".", "..") for part in path.split("/")[2:]):
        raise ValueError("a device path may not contain empty, . or .. steps")
    return path


DevicePath = Annotated[str, Field(pattern=DEVICE_PATH_PATTERN), AfterValidator(_no_parent_steps)]


def _valid_filter(topic: str) -> str:
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError("'#' may only be a whole last level of a topic filter")
        if "+" in level and level != "+":
            raise ValueError("'+' may only be a whole level of a topic filter")
    return topic


TopicFilter = Annotated[
    str, Field(min_length=1, pattern=TOPIC_FILTER_PATTERN), AfterValidator(_valid_filter)
]


class InterfaceKind(StrEnum):
    SERIAL = "serial"
    I2C = "i2c"
    SPI = "spi"
    GPIO = "gpio"
    USB = "usb"
    CAMERA = "camera"
    SENSOR = "sensor"
    """A topic filter on the node's broker, not a device file."""


class InterfaceDeclaration(WireModel):
    """``PUT /devices/{key}/interfaces/{name}`` (operators)."""

    kind: InterfaceKind
    path: DevicePath | None = None
    """The device file on the node (every kind but sensor)."""
    container_path: DevicePath | None = None
    """Where the container sees it; the same path when absent."""
    topic: TopicFilter | None = None
    """The granted topic filter (sensor only)."""
    read_only: bool = False
    shareable: bool = False
    """Several containers may hold it at once (sensor streams always are)."""
    tenants: Annotated[list[ObjectId], Field(max_length=1000)] = []
    """Tenant ids allowed to use it."""
    description: Note = ""

    @model_validator(mode="after")
    def _fits_kind(self) -> "InterfaceDeclaration":
        if self.kind is InterfaceKind.SENSOR:
            if self.topic is None or self.path is not None or self.container_path is not None:
                raise ValueError("a sensor interface has a topic and no device path")
        elif self.path is None or self.topic is not None:
            raise ValueError(f"a {self.kind} interface has a device path and no topic")
        return self


class InterfaceView(InterfaceDeclaration):
    name: Annotated[str, Field(pattern=INTERFACE_NAME_PATTERN)]
    device: str


class InterfaceHolder(WireModel):
    """A container holding an interface; another tenant's shows no name."""

    container: str | None
    name: str | None
    tenant: str | None
    since: str | None = None


class InterfaceWithHolders(InterfaceView):
    holders: list[InterfaceHolder] = []


class DeviceMapping(WireModel):
    """One device file the agent maps into a container (``docker run --device``)."""

    interface: Annotated[str, Field(pattern=INTERFACE_NAME_PATTERN)]
    host_path: DevicePath
    container_path: DevicePath
    read_only: bool = False


def topic_covers(granted: str, wanted: str) -> bool:
    """Whether every topic matching the filter ``wanted`` also matches ``granted``."""
    granted_levels, wanted_levels = granted.split("/"), wanted.split("/")
    for index, level in enumerate(granted_levels):
        if level == "#":
            return True
        if index >= len(wanted_levels):
            return False
        want = wanted_levels[index]
        if want == "#":
            return False
        if level == "+":
            continue
        if want == "+" or want != level:
            return False
    return len(granted_levels) == len(wanted_levels)
