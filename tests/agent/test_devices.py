"""The device files a container may be given, checked on this machine's /dev (and, for the
last test, its Docker engine): only character devices that are not the node's own, whatever
their name."""

import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud_agent.runtime.devices import device_entries, reaches_node
from edgecloud_agent.runtime.errors import DeviceRefused
from edgecloud_agent.runtime.hardening import ContainerPolicy, Placement, create_body
from edgecloud_contracts.interfaces import DeviceMapping

from .conftest import containers_named, make_spec

# Character devices made here under names of the test's own: (major, minor).
HARMLESS = {"null": (1, 3), "serial": (4, 64)}
NODES_OWN = {"mem": (1, 1), "kmsg": (1, 11), "console": (5, 1), "tty1": (4, 1), "vcs": (7, 0),
             "loop-control": (10, 237), "watchdog": (10, 130), "sg": (21, 0)}  # fmt: skip


@pytest.fixture
def dev_entries() -> Iterator[dict[str, str]]:
    """Things under /dev a spec might name: character devices of the test's own (harmless
    ones and aliases of the node's own), a block device, a regular file, and links: to a
    harmless device, out of /dev, to the node's memory, and through a directory out of /dev."""
    tag = secrets.token_hex(4)
    made: dict[str, str] = {}

    def entry(name: str) -> str:
        made[name] = f"/dev/edgecloud-test-{tag}-{name}"
        return made[name]

    for name, (major, minor) in {**HARMLESS, **NODES_OWN}.items():
        os.mknod(entry(name), 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    os.mknod(entry("block"), 0o600 | stat.S_IFBLK, os.makedev(7, 250))
    made["file"] = f"/dev/shm/edgecloud-test-{tag}-file"
    Path(made["file"]).write_text("x")
    os.symlink(made["null"], entry("link"))
    os.symlink("/etc/passwd", entry("out"))
    os.symlink("/dev/mem", entry("to-mem"))
    os.symlink("/etc", entry("dir"))
    yield made
    for path in made.values():
        Path(path).unlink(missing_ok=True)


def mapping(path: str, *, read_only: bool = False) -> DeviceMapping:
    return DeviceMapping(
        interface="x", host_path=path, container_path="/dev/ttyS0", read_only=read_only
    )


def test_a_declared_character_device_is_mapped_read_only_when_declared_so(
    dev_entries: dict[str, str],
) -> None:
    spec = make_spec("t-x", devices=[mapping(dev_entries["null"], read_only=True)])
    placed = Placement(image_id="sha256:" + "0" * 64, network="none", volume="edgecloud-app-x")
    body = create_body(spec, ContainerPolicy(), placed)
    assert body["HostConfig"]["Devices"] == [
        {
            "PathOnHost": dev_entries["null"],
            "PathInContainer": "/dev/ttyS0",
            "CgroupPermissions": "r",
        }
    ]
    assert body["HostConfig"]["CapDrop"] == ["ALL"]
    assert body["HostConfig"]["SecurityOpt"] == ["no-new-privileges:true"]
    assert body["HostConfig"]["Privileged"] is False
    [serial] = device_entries([mapping(dev_entries["serial"])])
    assert serial["CgroupPermissions"] == "rw"
    # A link is followed once, here: Docker is given the device itself.
    [linked] = device_entries([mapping(dev_entries["link"])])
    assert linked["PathOnHost"] == dev_entries["null"]
    assert device_entries([]) == []


def test_one_device_is_not_mapped_both_read_only_and_writable(
    dev_entries: dict[str, str],
) -> None:
    # The kernel allows a container a device by number: the writable one would win.
    both = [mapping(dev_entries["null"], read_only=True), mapping(dev_entries["link"])]
    with pytest.raises(DeviceRefused, match="both read-only and writable"):
        device_entries(both)
    assert len(device_entries([both[0], mapping(dev_entries["link"], read_only=True)])) == 2


@pytest.mark.parametrize(
    "kind", ["block", "file", "out", "to-mem", "dir", *NODES_OWN], ids=lambda kind: kind
)
def test_anything_but_a_harmless_character_device_is_refused(
    dev_entries: dict[str, str], kind: str
) -> None:
    path = dev_entries[kind] + ("/passwd" if kind == "dir" else "")
    with pytest.raises(DeviceRefused) as refused:
        device_entries([mapping(path)])
    assert refused.value.code == "device_refused"


@pytest.mark.parametrize(
    "path",
    ["/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/tty3", "/dev/console",
     "/dev/watchdog0", "/dev/uinput", "/dev/cpu/0/msr", "/dev/pts/0", "/dev/nonexistent"],
)  # fmt: skip
def test_the_nodes_own_devices_are_refused_by_name(path: str) -> None:
    with pytest.raises(DeviceRefused):
        device_entries([mapping(path)])


def test_device_numbers_of_the_node() -> None:
    assert not any(reaches_node(*number) for number in HARMLESS.values())
    assert all(reaches_node(*number) for number in NODES_OWN.values())
    # /dev/net/tun and a USB serial port (ttyUSB0 is 188:0) are fine.
    assert not reaches_node(10, 200)
    assert not reaches_node(188, 0)


async def test_a_refused_device_leaves_no_container(
    create: Callable[..., Any], names: Callable[[], str], dev_entries: dict[str, str]
) -> None:
    spec = make_spec(names(), devices=[mapping(dev_entries["null"]), mapping(dev_entries["mem"])])
    with pytest.raises(DeviceRefused):
        await create(spec)
    assert containers_named(spec.docker_name) == []
