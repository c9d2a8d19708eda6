"""Files the agent writes into a tenant's /app from the node (isolation/volume_files.py):
whatever the tenant planted under the name, nothing outside the volume is touched, nothing
blocks, and what is not a regular file is refused."""

import asyncio
import os
import time
from pathlib import Path

import pytest

from edgecloud_agent.isolation import volume_files
from edgecloud_agent.runtime.errors import UnsafeFile

INBOX = "inbox.jsonl"


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    return root


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A node file a tenant would love the agent to append to (``/etc/ld.so.preload``)."""
    path = tmp_path / "node-file"
    path.write_text("the node's own\n")
    return path


def test_lines_are_appended_to_a_regular_file(volume: Path) -> None:
    volume_files.append_lines(volume, INBOX, ["one", "two"])
    volume_files.append_lines(volume, INBOX, ["three"])
    assert (volume / INBOX).read_text() == "one\ntwo\nthree\n"
    assert oct((volume / INBOX).stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symbolic_link_is_refused_and_not_followed(
    volume: Path, canary: Path, dangling: bool
) -> None:
    target = canary.with_name("not-there") if dangling else canary
    (volume / INBOX).symlink_to(target)
    with pytest.raises(UnsafeFile) as refused:
        volume_files.append_lines(volume, INBOX, ["injected"])
    assert refused.value.code == "unsafe_file"
    assert canary.read_text() == "the node's own\n"
    assert not canary.with_name("not-there").exists()  # not created through the link


async def test_a_fifo_is_refused_without_blocking(volume: Path) -> None:
    """With no reader, a plain open for writing would block for ever (the agent's loop, in
    the code before this one); with a reader it would feed whoever reads."""
    os.mkfifo(volume / INBOX)
    started = time.monotonic()
    with pytest.raises(UnsafeFile):
        await asyncio.wait_for(
            asyncio.to_thread(volume_files.append_lines, volume, INBOX, ["x"]), timeout=5
        )
    assert time.monotonic() - started < 1
    reader = os.open(volume / INBOX, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(UnsafeFile, match="not a regular file"):
            volume_files.append_lines(volume, INBOX, ["x"])
    finally:
        os.close(reader)


def test_a_directory_is_refused(volume: Path) -> None:
    (volume / INBOX).mkdir()
    with pytest.raises(UnsafeFile):
        volume_files.append_lines(volume, INBOX, ["x"])
    with pytest.raises(UnsafeFile):
        volume_files.remove_file(volume, INBOX)
    assert (volume / INBOX).is_dir()


def test_a_device_node_is_refused(volume: Path) -> None:
    os.mknod(volume / INBOX, 0o666 | 0o020000, os.makedev(1, 3))  # like /dev/null
    with pytest.raises(UnsafeFile):
        volume_files.append_lines(volume, INBOX, ["x"])


def test_removing_a_link_removes_the_link_only(volume: Path, canary: Path) -> None:
    (volume / INBOX).symlink_to(canary)
    volume_files.remove_file(volume, INBOX)
    assert not (volume / INBOX).is_symlink()
    assert canary.read_text() == "the node's own\n"
    volume_files.remove_file(volume, INBOX)  # gone already: not an error


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".", ""])
def test_only_a_name_right_under_the_volume(volume: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a file name"):
        volume_files.append_lines(volume, name, ["x"])


def test_the_volume_root_itself_is_not_followed(tmp_path: Path, canary: Path) -> None:
    """A root that is a link (never the case for a mounted disk) is refused too."""
    link = tmp_path / "link"
    link.symlink_to(canary.parent)
    with pytest.raises(OSError, match=r"Not a directory|Too many levels"):
        volume_files.append_lines(link, canary.name, ["x"])
    assert canary.read_text() == "the node's own\n"
