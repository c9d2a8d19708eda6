"""The device files a tenant container may be given: the declared interfaces it holds,
each checked on the node before Docker sees it.

A declared path must resolve inside the node's /dev to a character device (block devices,
the node's disks, are refused by kind) that does not reach the node itself: its memory and
I/O ports, the kernel's log, its consoles and terminals, the watchdog (a container holding
it open reboots the node), input injection, raw storage (SCSI generic, NVMe controllers,
flash), loop and device-mapper control, the TPM. Any name can be given to such a device
with ``mknod``, so each is refused by its number and its kernel subsystem, not only by
its name.
"""

import os
import re
import stat

from edgecloud_contracts.interfaces import DeviceMapping

from .errors import DeviceRefused

NODE_DEVICE_NAMES = frozenset(
    {
        "/dev/mem",
        "/dev/kmem",
        "/dev/port",
        "/dev/kmsg",
        "/dev/console",
        "/dev/tty",
        "/dev/ptmx",
        "/dev/uinput",
        "/dev/uhid",
        "/dev/userio",
        "/dev/loop-control",
        "/dev/btrfs-control",
        "/dev/snapshot",
        "/dev/nvram",
        "/dev/mcelog",
        "/dev/rfkill",
        "/dev/cuse",
        "/dev/autofs",
    }
)
NODE_DEVICE_PREFIXES = (
    "/dev/vcs",
    "/dev/cpu/",
    "/dev/mapper/",
    "/dev/vhost",
    "/dev/watchdog",
    "/dev/pts/",
    "/dev/tpm",
    "/dev/nvme",
    "/dev/bsg/",
    "/dev/mtd",
    "/dev/ubi",
    "/dev/hvc",
)
# The virtual consoles and SCSI generic (raw commands to the disks).
NUMBERED_NODE_DEVICE = re.compile(r"^/dev/(tty|sg)[0-9]+$")

# Fixed numbers (the kernel's Documentation/admin-guide/devices.txt).
MEMORY_MAJOR, TTY_MAJOR, TTY_AUX_MAJOR, MISC_MAJOR = 1, 4, 5, 10
HARMLESS_MEMORY_MINORS = frozenset({3, 5, 7, 8, 9})  # null, zero, full, random, urandom
# tty0-63 are the virtual consoles, 5:0-3 the terminal, console, ptmx; ttyS0 is 4:64.
FIRST_SERIAL_MINOR = 64
# watchdog, nvram, cuse, uinput, tpm, mcelog, snapshot, btrfs-control, autofs,
# device-mapper control, loop-control, vhost-net, uhid, userio, vhost-vsock, rfkill.
NODE_MISC_MINORS = frozenset(
    {130, 144, 203, 223, 224, 227, 231, 234, 235, 236, 237, 238, 239, 240, 241, 242}
)
# Virtual console memory, SCSI generic, flash, the pseudo-terminals, msr, cpuid.
NODE_MAJORS = frozenset({7, 21, 90, *range(136, 144), 202, 203})
# Subsystems of devices whose numbers the kernel hands out at boot.
NODE_SUBSYSTEMS = frozenset(
    {"vc", "watchdog", "tpm", "tpmrm", "msr", "cpuid", "scsi_generic", "bsg", "nvme",
     "nvme-generic", "mtd", "ubi", "dax", "mei"}
)  # fmt: skip

CGROUP_READ, CGROUP_READ_WRITE = "r", "rw"  # never "m": no new device nodes


def reaches_node(major: int, minor: int) -> bool:
    """Whether the character device ``major:minor`` is one of the node's own."""
    if major == MEMORY_MAJOR:
        return minor not in HARMLESS_MEMORY_MINORS
    if major in (TTY_MAJOR, TTY_AUX_MAJOR):
        return minor < FIRST_SERIAL_MINOR
    if major == MISC_MAJOR:
        return minor in NODE_MISC_MINORS
    if major in NODE_MAJORS:
        return True
    subsystem = os.path.realpath(f"/sys/dev/char/{major}:{minor}/subsystem")
    return os.path.basename(subsystem) in NODE_SUBSYSTEMS


def device_entries(devices: list[DeviceMapping]) -> list[dict[str, str]]:
    """The Docker ``Devices`` entries of a container's declared interfaces, each checked
    here. The kernel allows a container a device by its number, whatever the path: one
    device mapped both read-only and writable would be writable, so that is refused."""
    entries: list[dict[str, str]] = []
    permissions: dict[int, str] = {}
    for device in devices:
        entry, number = _checked(device)
        if permissions.setdefault(number, entry["CgroupPermissions"]) != entry["CgroupPermissions"]:
            raise DeviceRefused(
                f"{device.host_path} is a device mapped both read-only and writable"
            )
        entries.append(entry)
    return entries


def _checked(device: DeviceMapping) -> tuple[dict[str, str], int]:
    real = os.path.realpath(device.host_path)
    if not real.startswith("/dev/"):
        raise DeviceRefused(f"{device.host_path} leads outside /dev ({real})")
    if (
        real in NODE_DEVICE_NAMES
        or real.startswith(NODE_DEVICE_PREFIXES)
        or NUMBERED_NODE_DEVICE.match(real)
    ):
        raise DeviceRefused(f"{device.host_path} is the node's own device ({real})")
    try:
        found = os.stat(real)
    except OSError as err:
        raise DeviceRefused(f"{device.host_path} is not on this node: {err.strerror}") from err
    if not stat.S_ISCHR(found.st_mode):
        raise DeviceRefused(f"{device.host_path} is not a character device")
    major, minor = os.major(found.st_rdev), os.minor(found.st_rdev)
    if reaches_node(major, minor):
        raise DeviceRefused(f"{device.host_path} is the node's own device ({major}:{minor})")
    entry = {
        "PathOnHost": real,
        "PathInContainer": device.container_path,
        "CgroupPermissions": CGROUP_READ if device.read_only else CGROUP_READ_WRITE,
    }
    return entry, found.st_rdev
