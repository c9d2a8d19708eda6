"""edgecloud cp: waiting for the device's tar, downloading it (resuming after a cut), and
putting a file or a directory in place, or refusing an unsafe archive without a trace."""

import io
import json
import os
import tarfile
from pathlib import Path

import httpx
import pytest

from .conftest import Run
from .fake_artifacts import Stored
from .fake_containers import container
from .fake_gateway import FakeGateway

pytestmark = pytest.mark.usefixtures("logged_in", "pauses")

WEB = "3f2a9c1b-4d5e-4f60-8a7b-0123456789ab"
FILES = f"/api/v1/containers/{WEB}/files"


def tar_of(*members: tuple[str, bytes | None]) -> bytes:
    """A tar as Docker packs one: a directory's members under its name (None: a directory)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


DIRECTORY = tar_of(
    ("data", None), ("data/a.txt", b"a"), ("data/sub", None), ("data/sub/b.txt", b"bb")
)


@pytest.fixture(autouse=True)
def web(gateway: FakeGateway) -> None:
    gateway.containers = [container(WEB, "web")]
    gateway.copies = {
        "/etc/hostname": tar_of(("hostname", b"pi-1\n")),
        "/app/data": DIRECTORY,
    }


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory of its own (the config directory is in tmp_path)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root (hidden ones too), with the files' bytes."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        found[str(path.relative_to(root))] = None if path.is_dir() else path.read_bytes()
    return found


def test_a_single_file_is_written_to_local(cli: Run, gateway: FakeGateway, work: Path) -> None:
    target = work / "hostname.txt"

    result = cli("cp", "web:/etc/hostname", str(target))

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == f"Copied web:/etc/hostname to {target} (1 file, 5 B)\n"
    assert tree(work) == {"hostname.txt": b"pi-1\n"}
    [asked] = gateway.sent("POST", FILES)
    assert json.loads(asked.content) == {"path": "/etc/hostname"}
    # The artifact was read until the device had uploaded it, then downloaded.
    assert len(gateway.sent("GET", "/api/v1/artifacts/art-1")) == 2
    assert len(gateway.sent("GET", "/api/v1/artifacts/art-1/content")) == 1


def test_a_file_replaces_one_of_the_same_name_in_a_directory(cli: Run, work: Path) -> None:
    (work / "hostname").write_text("old")
    result = cli("cp", "web:/etc/hostname", str(work))
    assert result.exit_code == 0, result.output
    assert tree(work) == {"hostname": b"pi-1\n"}


def test_a_directory_is_extracted_into_an_existing_one(cli: Run, work: Path) -> None:
    result = cli("cp", "web:/app/data", str(work))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"Copied web:/app/data to {work} (2 files, 3 B)\n"
    assert tree(work) == {
        "data": None,
        "data/a.txt": b"a",
        "data/sub": None,
        "data/sub/b.txt": b"bb",
    }


def test_a_path_ending_with_a_slash_is_a_directory_to_create(cli: Run, work: Path) -> None:
    result = cli("cp", "web:/app/data", f"{work}/new/")
    assert result.exit_code == 0, result.output
    assert tree(work)["new/data/sub/b.txt"] == b"bb"


def test_a_directory_copied_to_a_new_name_becomes_it(cli: Run, work: Path) -> None:
    result = cli("cp", "web:/app/data", str(work / "copy"))
    assert result.exit_code == 0, result.output
    assert tree(work) == {
        "copy": None,
        "copy/a.txt": b"a",
        "copy/sub": None,
        "copy/sub/b.txt": b"bb",
    }


def test_a_directory_is_never_merged_into_one_that_exists(cli: Run, work: Path) -> None:
    (work / "data").mkdir()
    (work / "data" / "mine").write_text("keep")
    result = cli("cp", "web:/app/data", str(work))
    assert result.exit_code == 1
    assert result.stderr == f"error: {work / 'data'} already exists; nothing was written\n"
    assert tree(work) == {"data": None, "data/mine": b"keep"}


def test_several_entries_need_a_directory(cli: Run, gateway: FakeGateway, work: Path) -> None:
    gateway.copies["/app/."] = tar_of(("a", b"1"), ("b", b"2"))
    result = cli("cp", "web:/app/.", str(work / "out"))
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the copy holds 2 entries; give a directory (ending with /) to put them in, "
        "or --tar\n"
    )
    assert tree(work) == {}


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("../evil", "parent reference: ../evil"),
        ("/etc/evil", "absolute path: /etc/evil"),
    ],
)
def test_an_unsafe_archive_is_refused_and_nothing_is_written(
    cli: Run, gateway: FakeGateway, work: Path, member: str, reason: str
) -> None:
    gateway.copies["/app/data"] = tar_of(("data", None), ("data/ok", b"ok"), (member, b"x"))
    target = work / "inside"
    target.mkdir()

    result = cli("cp", "web:/app/data", f"{target}/")

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: unsafe archive: {reason} (archive_unsafe); nothing was written\n"
    )
    assert tree(work) == {"inside": None}


def test_a_link_is_refused(cli: Run, gateway: FakeGateway, work: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    gateway.copies["/etc/passwd"] = buffer.getvalue()
    result = cli("cp", "web:/etc/passwd", str(work / "p"))
    assert result.exit_code == 1
    assert "unsafe archive: link: passwd -> /etc/passwd (archive_unsafe)" in result.stderr
    assert tree(work) == {}


def test_tar_keeps_the_archive(cli: Run, gateway: FakeGateway, work: Path) -> None:
    result = cli("cp", "web:/app/data", str(work / "data.tar"), "--tar")
    assert result.exit_code == 0, result.output
    assert (work / "data.tar").read_bytes() == DIRECTORY
    assert tree(work) == {"data.tar": DIRECTORY}

    into = cli("cp", "web:/app/data", f"{work}/archives/", "--tar", "-q")
    assert into.exit_code == 0, into.output
    assert into.stderr == ""
    assert (work / "archives" / "data.tar").read_bytes() == DIRECTORY


def test_a_broken_download_resumes_from_the_last_byte(
    cli: Run, gateway: FakeGateway, work: Path, pauses: list[float]
) -> None:
    big = bytes(i % 253 for i in range(10_000))
    gateway.copies["/app/big"] = tar_of(("big", big))
    gateway.download_cuts = [1500, 4000]

    result = cli("cp", "web:/app/big", str(work / "big"))

    assert result.exit_code == 0, result.output
    assert (work / "big").read_bytes() == big
    ranges = [
        r.headers.get("Range") for r in gateway.sent("GET", "/api/v1/artifacts/art-1/content")
    ]
    assert ranges == [None, "bytes=1500-", "bytes=5500-"]
    assert pauses == [0.5, 0.5]  # progress made in between: the tries start over
    assert "download of web:/app/big interrupted: the download ended" in result.stderr


def test_a_download_whose_bytes_differ_is_refused(
    cli: Run, gateway: FakeGateway, work: Path
) -> None:
    tar = gateway.copies["/etc/hostname"]
    gateway.answers["GET", "/api/v1/artifacts/art-1/content"] = httpx.Response(
        200, content=tar[::-1]
    )
    result = cli("cp", "web:/etc/hostname", str(work / "h"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the download's SHA-256 is ")
    assert result.stderr.endswith("; nothing was written\n")
    assert tree(work) == {}


def test_a_failed_copy_reports_the_command_error(
    cli: Run, gateway: FakeGateway, work: Path
) -> None:
    result = cli("cp", "web:/nope", str(work / "x"))
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no such file or directory: /nope (path_not_found; command cmd-copy-art-1)\n"
    )
    assert tree(work) == {}


def test_an_expired_copy(
    cli: Run, gateway: FakeGateway, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.copy_polls = 10
    read = gateway._stored

    def expire(artifact_id: str) -> Stored | None:
        gateway.commands["cmd-copy-art-1"]["state"] = "expired"
        return read(artifact_id)

    monkeypatch.setattr(gateway, "_stored", expire)
    result = cli("cp", "web:/app/data", str(work))
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the device did not take the command before it expired "
        "(expired; command cmd-copy-art-1)\n"
    )


@pytest.mark.parametrize("source", ["web", "web:", ":/etc"])
def test_the_source_must_be_container_and_path(cli: Run, gateway: FakeGateway, source: str) -> None:
    result = cli("cp", source, ".")
    assert result.exit_code == 2
    assert "is not CONTAINER:PATH" in result.stderr
    assert gateway.requests == []


def test_a_missing_local_directory(cli: Run, gateway: FakeGateway, work: Path) -> None:
    result = cli("cp", "web:/etc/hostname", str(work / "no" / "such" / "file"))
    assert result.exit_code == 1
    assert result.stderr == f"error: no such directory: {work / 'no' / 'such'}\n"
    assert gateway.sent("POST", FILES) == []


def test_nothing_is_left_behind_when_interrupted(
    cli: Run, gateway: FakeGateway, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(request: httpx.Request, artifact_id: str) -> httpx.Response:
        raise KeyboardInterrupt

    monkeypatch.setattr(gateway, "_download", interrupted)
    result = cli("cp", "web:/app/data", str(work))
    assert result.exit_code == 130
    assert result.stderr == "interrupted; nothing was written\n"
    assert os.listdir(work) == []
