"""edgecloud upload: the pieces it sends, how it goes on after a cut or a 500, --resume, and
the refusals it reports."""

import hashlib
import json
from pathlib import Path

import pytest

from edgecloud_cli import progress, upload
from edgecloud_cli.upload import LocalFile, Uploader

from .conftest import Run
from .fake_artifacts import Cut
from .fake_gateway import FakeGateway

pytestmark = pytest.mark.usefixtures("logged_in")

SIZE = 2500
CHUNK = 1000


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of 1000 bytes, read from disk 300 bytes at a time."""
    monkeypatch.setattr(upload, "CHUNK", CHUNK)
    monkeypatch.setattr(upload, "PIECE", 300)


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(i % 251 for i in range(SIZE)))
    return path


def ranges(gateway: FakeGateway, artifact_id: str = "art-1") -> list[str]:
    return [
        r.headers["Content-Range"]
        for r in gateway.sent("PATCH", f"/api/v1/artifacts/{artifact_id}")
    ]


def test_upload_sends_the_file_in_pieces_and_prints_the_id(
    cli: Run, gateway: FakeGateway, data_file: Path
) -> None:
    result = cli("upload", str(data_file))

    assert result.exit_code == 0, result.output
    assert result.stdout == "art-1\n"
    assert result.stderr == "data.bin: 2.4 KiB uploaded as art-1\n"
    [create] = gateway.sent("POST", "/api/v1/artifacts")
    assert json.loads(create.content) == {
        "name": "data.bin",
        "size": SIZE,
        "sha256": hashlib.sha256(data_file.read_bytes()).hexdigest(),
        "kind": "file",
    }
    assert ranges(gateway) == ["bytes 0-999/2500", "bytes 1000-1999/2500", "bytes 2000-2499/2500"]
    pieces = gateway.sent("PATCH", "/api/v1/artifacts/art-1")
    assert [p.headers["Content-Length"] for p in pieces] == ["1000", "1000", "500"]
    assert "Transfer-Encoding" not in pieces[0].headers
    assert pieces[0].extensions["timeout"]["read"] == 120.0
    assert gateway.stored["art-1"].data == data_file.read_bytes()
    assert gateway.stored["art-1"].view["state"] == "complete"


def test_kind_name_and_json(cli: Run, gateway: FakeGateway, data_file: Path) -> None:
    result = cli("upload", str(data_file), "--kind", "image", "--name", "web.img", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown == gateway.stored["art-1"].view
    assert (shown["name"], shown["kind"], shown["state"]) == ("web.img", "image", "complete")


def test_an_empty_file_is_complete_when_announced(
    cli: Run, gateway: FakeGateway, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.touch()
    result = cli("upload", str(empty))
    assert result.exit_code == 0, result.output
    assert result.stdout == "art-1\n"
    assert gateway.sent("PATCH", "/api/v1/artifacts/art-1") == []


@pytest.mark.usefixtures("pauses")
def test_a_dropped_connection_goes_on_from_what_the_storage_kept(
    cli: Run, gateway: FakeGateway, data_file: Path, pauses: list[float]
) -> None:
    # The second piece is cut after 400 of its bytes: the storage kept them.
    gateway.upload_faults = [None, Cut(keep=400)]

    result = cli("upload", str(data_file))

    assert result.exit_code == 0, result.output
    assert result.stdout == "art-1\n"
    assert ranges(gateway) == [
        "bytes 0-999/2500",
        "bytes 1000-1999/2500",  # cut
        "bytes */2500",  # where does it stand? 1400
        "bytes 1400-2399/2500",
        "bytes 2400-2499/2500",
    ]
    assert gateway.stored["art-1"].data == data_file.read_bytes()
    assert pauses == [0.5]
    assert result.stderr == (
        "upload of data.bin interrupted: cannot reach http://127.0.0.1:8000; "
        "trying again in 0.5 s (1/3)\n"
        "data.bin: 2.4 KiB uploaded as art-1\n"
    )


@pytest.mark.usefixtures("pauses")
def test_a_500_mid_piece_goes_on_from_the_offset_reported(
    cli: Run, gateway: FakeGateway, data_file: Path
) -> None:
    gateway.upload_faults = [Cut(keep=700, status=500)]
    result = cli("upload", str(data_file))
    assert result.exit_code == 0, result.output
    assert ranges(gateway)[:3] == ["bytes 0-999/2500", "bytes */2500", "bytes 700-1699/2500"]
    assert gateway.stored["art-1"].data == data_file.read_bytes()
    assert "interrupted: the storage broke down; trying again in 0.5 s (1/3)" in result.stderr


@pytest.mark.usefixtures("pauses")
def test_a_failure_that_lasts_gives_up_and_resume_finishes_it(
    cli: Run, gateway: FakeGateway, data_file: Path, pauses: list[float]
) -> None:
    gateway.upload_faults = [None, *[Cut(keep=0)] * 4]

    failed = cli("upload", str(data_file))

    assert failed.exit_code == 1
    assert failed.stdout == ""
    assert pauses == [0.5, 1.0, 2.0]
    assert failed.stderr.endswith(
        "error: cannot reach http://127.0.0.1:8000\n"
        f"hint: resume with: edgecloud upload {data_file} --resume art-1\n"
    )
    assert gateway.stored["art-1"].data == data_file.read_bytes()[:1000]

    resumed = cli("upload", str(data_file), "--resume", "art-1")

    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout == "art-1\n"
    assert ranges(gateway)[-2:] == ["bytes 1000-1999/2500", "bytes 2000-2499/2500"]
    assert gateway.stored["art-1"].data == data_file.read_bytes()
    assert len(gateway.sent("POST", "/api/v1/artifacts")) == 1


def test_resume_goes_on_where_the_storage_says_when_its_view_was_stale(
    cli: Run, gateway: FakeGateway, data_file: Path
) -> None:
    assert cli("upload", str(data_file), "--kind", "script").exit_code == 0
    stored = gateway.stored["art-1"]
    # An upload left at 1000 bytes, whose view still says 0.
    del stored.data[1000:]
    stored.view.update(state="uploading", received=0, upload_url="/api/v1/artifacts/art-1")

    result = cli("upload", str(data_file), "--resume", "art-1")

    assert result.exit_code == 0, result.output
    assert ranges(gateway)[-3:] == [
        "bytes 0-999/2500",  # 409 offset_mismatch, received 1000
        "bytes 1000-1999/2500",
        "bytes 2000-2499/2500",
    ]
    assert stored.data == data_file.read_bytes()


def test_resume_refuses_another_file(cli: Run, gateway: FakeGateway, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_bytes(b"x" * 10)
    gateway.new_artifact(b"y" * 10)
    result = cli("upload", str(other), "--resume", "art-1")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: artifact art-1 is not {other}: it is 10 bytes with")
    assert gateway.sent("PATCH", "/api/v1/artifacts/art-1") == []


def test_resume_of_a_finished_upload_prints_its_id(
    cli: Run, gateway: FakeGateway, data_file: Path
) -> None:
    gateway.new_artifact(data_file.read_bytes())
    result = cli("upload", str(data_file), "--resume", "art-1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "art-1\n"
    assert gateway.sent("PATCH", "/api/v1/artifacts/art-1") == []


def test_resume_takes_no_name_or_kind(cli: Run, data_file: Path) -> None:
    result = cli("upload", str(data_file), "--resume", "art-1", "--name", "x")
    assert result.exit_code == 2
    assert "drop --kind and --name" in result.stderr


def test_the_quota_is_used_up(cli: Run, gateway: FakeGateway, data_file: Path) -> None:
    gateway.quota_bytes, gateway.used_bytes = 3000, 1000
    result = cli("upload", str(data_file))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: the tenant's storage quota of 3000 bytes would be exceeded "
        "(1000 used, 2500 more asked for) (quota_exceeded)\n"
    )
    assert gateway.sent("PATCH", "/api/v1/artifacts/art-1") == []


def test_bytes_that_changed_are_reported(
    cli: Run, gateway: FakeGateway, data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stale_hash(self: Uploader, path: Path) -> LocalFile:
        return LocalFile(path, SIZE, "0" * 64)

    monkeypatch.setattr(Uploader, "_hash", stale_hash)
    result = cli("upload", str(data_file))
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the bytes' SHA-256 differs from the declared one; send it again "
        "(checksum_mismatch)\n"
        f"hint: {data_file} changed during the upload; upload it again\n"
    )


def test_a_missing_file_is_a_usage_error(cli: Run, gateway: FakeGateway, tmp_path: Path) -> None:
    result = cli("upload", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "Invalid value for 'FILE'" in result.stderr
    assert gateway.requests == []


def test_the_progress_bar_shows_bytes_unless_quiet(
    cli: Run, data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a terminal; rich, writing to a pipe, draws the bar once when it stops.
    monkeypatch.setattr(progress, "shown", lambda *, quiet: not quiet)
    shown = cli("upload", str(data_file))
    assert shown.exit_code == 0, shown.output
    assert "upload data.bin" in shown.stderr
    assert "2.4/2.4 KiB" in shown.stderr
    assert "uploaded as" not in shown.stderr

    quiet = cli("upload", str(data_file), "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
