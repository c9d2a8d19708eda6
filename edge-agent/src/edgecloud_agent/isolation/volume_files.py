"""Files the agent writes into a tenant's /app from the node, without following the tenant.

Everything below a container's /app is the tenant's: any name there may be a symbolic link
to a node path (``/etc/ld.so.preload``), a FIFO that blocks whoever opens it, a device node
or a directory. So the agent never resolves a path inside it. It opens the volume's root (a
directory the tenant cannot replace: it is the container's mount point), then the one file
by name relative to that descriptor with ``O_NOFOLLOW`` and ``O_NONBLOCK``, and checks that
what it opened is a regular file before it writes a byte; anything else is refused with
:class:`~edgecloud_agent.runtime.errors.UnsafeFile` and nothing is written. The calls block,
so callers run them in a worker thread (:func:`asyncio.to_thread`).
"""

import errno
import os
import stat
from pathlib import Path

from ..runtime.errors import UnsafeFile

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_APPEND = (
    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
    | os.O_CLOEXEC
)  # fmt: skip


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a file name: {name!r}")


def open_for_append(root: Path, name: str) -> int:
    """A descriptor appending to the regular file ``name`` right under ``root`` (made if
    missing, mode 0644). Raises :class:`UnsafeFile` when ``name`` is anything else."""
    _check_name(name)
    directory = os.open(root, _DIRECTORY)
    try:
        try:
            fd = os.open(name, _APPEND, 0o644, dir_fd=directory)
        except OSError as err:
            # ELOOP: a symbolic link; ENXIO: a FIFO with no reader; EISDIR: a directory;
            # EACCES/EPERM: a device on a nodev mount, or no right to it.
            if err.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.EACCES, errno.EPERM):
                raise UnsafeFile(
                    f"{name} in {root} is not a regular file ({err.strerror})"
                ) from err
            raise
    finally:
        os.close(directory)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnsafeFile(f"{name} in {root} is not a regular file ({stat.filemode(mode)})")
    return fd


def append_lines(root: Path, name: str, lines: list[str]) -> None:
    """Append whole lines to ``name`` under ``root``, safely (see the module)."""
    fd = open_for_append(root, name)
    try:
        write_all(fd, "".join(line + "\n" for line in lines).encode())
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def remove_file(root: Path, name: str) -> None:
    """Remove the entry ``name`` right under ``root``, whatever it is but a directory (a
    link is removed, never what it points to); a missing one is not an error."""
    _check_name(name)
    directory = os.open(root, _DIRECTORY)
    try:
        os.unlink(name, dir_fd=directory)
    except FileNotFoundError:
        pass
    except IsADirectoryError as err:
        raise UnsafeFile(f"{name} in {root} is a directory") from err
    finally:
        os.close(directory)
