"""Hostile and friendly archives for edgecloud_contracts.archives.

Every hostile archive is built here with crafted TarInfo objects (or raw bytes), and each one
must be refused with the same reason by check_archive and by extract_archive, the latter
leaving nothing behind.
"""

import gzip
import io
import os
import pickle
import stat
import struct
import tarfile
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from edgecloud_contracts.archives import (
    ARCHIVE_UNSAFE,
    ArchiveLimits,
    ArchiveSummary,
    ArchiveUnsafe,
    check_archive,
    extract_archive,
    pack_directory,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

Member = tuple[tarfile.TarInfo, bytes]
Build = Callable[[Path], None]


# ---------------------------------------------------------------------------------------------
# Building archives


def _file(name: str, data: bytes = b"", mode: int = 0o644, **pax: str) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.pax_headers = pax
    return info, data


def _entry(name: str, kind: bytes, mode: int = 0o644, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    return info, b""


def _dir(name: str, mode: int = 0o755) -> Member:
    return _entry(name, tarfile.DIRTYPE, mode)


def _tar_bytes(
    members: Iterable[Member],
    *,
    gz: bool = False,
    fmt: int = tarfile.PAX_FORMAT,
    encoding: str = "utf-8",
    pax_headers: dict[str, str] | None = None,
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=fmt, encoding=encoding, pax_headers=pax_headers
    ) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    raw = buffer.getvalue()
    return gzip.compress(raw, compresslevel=1, mtime=0) if gz else raw


def _members(*members: Member, gz: bool = False, fmt: int = tarfile.PAX_FORMAT) -> Build:
    """A build for an archive that starts with harmless members, then the given ones."""
    harmless = [_dir("app"), _file("app/ok.txt", b"fine\n")]

    def build(path: Path) -> None:
        path.write_bytes(_tar_bytes([*harmless, *members], gz=gz, fmt=fmt))

    return build


def _raw(data: bytes) -> Build:
    def build(path: Path) -> None:
        path.write_bytes(data)

    return build


# A valid two-member archive and where its pieces sit, for the truncation cases.
_VALID = _tar_bytes(
    [_file("app/first.txt", b"a" * 100_000), _file("app/second.bin", os.urandom(100_000))]
)
with tarfile.open(fileobj=io.BytesIO(_VALID)) as _opened:
    _SECOND = _opened.getmembers()[1]
_SECOND_END = _SECOND.offset_data + 100_352  # 100_000 rounded up to whole blocks


def _cut(data: bytes, at: int) -> Build:
    assert 0 < at < len(data)
    return _raw(data[:at])


def _garbage_after_first() -> Build:
    data = bytearray(_VALID)
    data[_SECOND.offset : _SECOND.offset + 512] = b"\x01" * 512
    return _raw(bytes(data))


def _latin1_name(path: Path) -> None:
    path.write_bytes(
        _tar_bytes([_file("app/caf\xe9.txt", b"x")], fmt=tarfile.USTAR_FORMAT, encoding="latin-1")
    )


def _negative_size(path: Path) -> None:
    info = tarfile.TarInfo("app/negative")
    info.size = -1
    path.write_bytes(info.tobuf(tarfile.GNU_FORMAT) + bytes(10240))


def _dir_with_data(path: Path) -> None:
    info = tarfile.TarInfo("app")
    info.type = tarfile.DIRTYPE
    info.size = 512
    inner = tarfile.TarInfo("hidden")
    path.write_bytes(info.tobuf(tarfile.USTAR_FORMAT) + inner.tobuf() + bytes(10240))


_DEEP = "/".join(["d"] * 65) + "/f"

CORPUS = [
    pytest.param(_members(_file("../evil", b"x")), "parent reference", id="dotdot"),
    pytest.param(_members(_file("a/../../evil", b"x")), "parent reference", id="dotdot-nested"),
    pytest.param(
        _members(_file("app/safe.txt", b"x", path="../evil")), "parent reference", id="pax-path"
    ),
    pytest.param(
        _members(_file("app/" + "x" * 120 + "/../../../evil", b"x"), fmt=tarfile.GNU_FORMAT),
        "parent reference",
        id="gnu-longname",
    ),
    pytest.param(_members(_file("../evil", b"x"), gz=True), "parent reference", id="dotdot-gz"),
    pytest.param(_members(_file("/etc/passwd", b"x")), "absolute path", id="absolute-etc"),
    pytest.param(_members(_file("/tmp/x", b"x")), "absolute path", id="absolute-tmp"),
    pytest.param(_members(_file("C:\\evil.txt", b"x")), "absolute path", id="windows-drive"),
    pytest.param(_members(_file("c:evil.txt", b"x")), "absolute path", id="drive-relative"),
    pytest.param(_members(_file("\\evil", b"x")), "absolute path", id="leading-backslash"),
    pytest.param(_members(_file("app\\..\\..\\evil", b"x")), "backslash", id="backslash"),
    pytest.param(
        _members(_entry("app/evil", tarfile.SYMTYPE, linkname="/etc/passwd")),
        "link",
        id="symlink-outside",
    ),
    pytest.param(
        _members(_entry("app/alias", tarfile.SYMTYPE, linkname="ok.txt")),
        "link",
        id="symlink-inside",
    ),
    pytest.param(
        _members(_entry("app/evil", tarfile.SYMTYPE, linkname="/etc"), gz=True),
        "link",
        id="symlink-gz",
    ),
    pytest.param(
        _members(_entry("app/evil", tarfile.LNKTYPE, linkname="/etc/passwd")),
        "link",
        id="hardlink-outside",
    ),
    pytest.param(
        _members(_entry("app/again", tarfile.LNKTYPE, linkname="app/ok.txt")),
        "link",
        id="hardlink-inside",
    ),
    pytest.param(_members(_entry("app/null", tarfile.CHRTYPE)), "device or fifo", id="char-dev"),
    pytest.param(_members(_entry("app/sda", tarfile.BLKTYPE)), "device or fifo", id="block-dev"),
    pytest.param(_members(_entry("app/pipe", tarfile.FIFOTYPE)), "device or fifo", id="fifo"),
    pytest.param(_members(_file("app/su", b"x", 0o4755)), "setuid/setgid bit", id="setuid"),
    pytest.param(_members(_file("app/sg", b"x", 0o2755)), "setuid/setgid bit", id="setgid"),
    pytest.param(_members(_dir("app/shared", 0o2775)), "setuid/setgid bit", id="setgid-dir"),
    pytest.param(_members(_dir("app/tmp", 0o1777)), "sticky bit", id="sticky-dir"),
    pytest.param(
        _members(_entry("app/contig", tarfile.CONTTYPE)), "unsupported type", id="contiguous"
    ),
    pytest.param(
        _members(_entry("app/sparse", tarfile.GNUTYPE_SPARSE), fmt=tarfile.GNU_FORMAT),
        "unsupported type",
        id="gnu-sparse",
    ),
    pytest.param(
        _members(_file("app/sparse", b"x", 0o644, **{"GNU.sparse.map": "0,1"})),
        "unsupported type",
        id="pax-sparse",
    ),
    pytest.param(_members(_entry("app/odd", b"Z")), "unsupported type", id="unknown-type"),
    pytest.param(
        _members(_file("app/a.txt", b"1"), _file("app/a.txt", b"2")),
        "duplicate member",
        id="duplicate",
    ),
    pytest.param(
        _members(_file("app/a.txt", b"1"), _file("./app/a.txt", b"2")),
        "duplicate member",
        id="duplicate-after-normalising",
    ),
    pytest.param(
        _members(_file("lib", b"1"), _file("lib/x", b"2")), "path conflict", id="file-as-parent"
    ),
    pytest.param(
        _members(_file("lib/x", b"1"), _file("lib", b"2")), "path conflict", id="file-over-dir"
    ),
    pytest.param(_members(_file("app/bad\nname", b"x")), "control character", id="newline"),
    pytest.param(_members(_file("app/\x1b[31mred", b"x")), "control character", id="escape"),
    pytest.param(
        _members(_file("app/nul", b"x", path="app/a\x00b")), "control character", id="nul-pax"
    ),
    pytest.param(_latin1_name, "name not utf-8", id="not-utf8"),
    pytest.param(_members(_file("app/" + "n" * 1100, b"x")), "path too long", id="too-long"),
    pytest.param(_members(_file("app/" + "n" * 256, b"x")), "path too long", id="long-component"),
    pytest.param(_members(_file(_DEEP, b"x")), "path too deep", id="too-deep"),
    pytest.param(_members(_file("", b"x")), "empty name", id="empty-name"),
    pytest.param(_members(_file("./", b"x")), "empty name", id="dot-as-file"),
    pytest.param(
        _members(_file("app/big", b"x", comment="c" * 200_000)),
        "headers too large",
        id="pax-bloat",
    ),
    pytest.param(_negative_size, "truncated or corrupt", id="negative-size"),
    pytest.param(_dir_with_data, "truncated or corrupt", id="dir-with-data"),
    pytest.param(_cut(_VALID, _SECOND.offset_data + 50_000), "truncated or corrupt", id="cut-data"),
    pytest.param(_cut(_VALID, _SECOND.offset + 100), "truncated or corrupt", id="cut-header"),
    pytest.param(_cut(_VALID, _SECOND_END), "truncated or corrupt", id="cut-before-end-marker"),
    pytest.param(_cut(_VALID, _SECOND_END - 1), "truncated or corrupt", id="cut-padding"),
    pytest.param(
        _cut(gzip.compress(_VALID, mtime=0), 40_000), "truncated or corrupt", id="cut-gzip"
    ),
    pytest.param(
        _raw(gzip.compress(_VALID, mtime=0)[:-4] + b"\0\0\0\0"),
        "truncated or corrupt",
        id="gzip-bad-length",
    ),
    pytest.param(
        _raw(gzip.compress(_VALID[: _SECOND.offset_data + 50_000], mtime=0)),
        "truncated or corrupt",
        id="cut-data-inside-gzip",
    ),
    pytest.param(
        _raw(gzip.compress(_VALID, mtime=0)[:-8] + b"\0\0\0\0" + struct.pack("<I", len(_VALID))),
        "truncated or corrupt",
        id="gzip-bad-crc",
    ),
    pytest.param(_raw(_VALID + b"\1" * 2 * MiB), "trailing data", id="trailing-data"),
    pytest.param(_garbage_after_first(), "truncated or corrupt", id="garbage-header"),
    pytest.param(_raw(b""), "not a tar archive", id="empty-file"),
    pytest.param(_raw(b"just some text\n" * 100), "not a tar archive", id="text"),
    pytest.param(_raw(b"short"), "not a tar archive", id="short-text"),
    pytest.param(_raw(gzip.compress(b"hello\n" * 1000)), "not a tar archive", id="gzip-not-tar"),
    pytest.param(_raw(b"BZh91AY&SY" + bytes(600)), "not a tar archive", id="bzip2"),
]


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root, with file contents, to prove nothing changed."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in root.rglob("*")
    }


def _assert_refused(archive: Path, reason: str, limits: ArchiveLimits | None = None) -> None:
    limits = limits or ArchiveLimits()
    out = archive.parent / "out"
    out.mkdir(exist_ok=True)
    (out / "canary.txt").write_text("canary")
    before = _snapshot(archive.parent)

    with pytest.raises(ArchiveUnsafe) as checked:
        check_archive(archive, limits)
    assert checked.value.reason == reason, checked.value
    with pytest.raises(ArchiveUnsafe) as extracted:
        extract_archive(archive, out / "app", limits)
    assert extracted.value.reason == reason, extracted.value

    assert not (out / "app").exists()
    assert _snapshot(archive.parent) == before


@pytest.mark.parametrize(("build", "reason"), CORPUS)
def test_hostile_archive_is_refused(tmp_path: Path, build: Build, reason: str) -> None:
    archive = tmp_path / "upload.tar"
    build(archive)
    _assert_refused(archive, reason)


def test_refusal_names_the_member_printably(tmp_path: Path) -> None:
    archive = tmp_path / "upload.tar"
    _members(_entry("app/evil", tarfile.SYMTYPE, linkname="/etc/passwd"))(archive)
    with pytest.raises(ArchiveUnsafe) as refused:
        check_archive(archive)
    assert str(refused.value) == "unsafe archive: link: app/evil -> /etc/passwd"
    assert refused.value.member == "app/evil -> /etc/passwd"
    assert isinstance(refused.value, ValueError)
    assert ARCHIVE_UNSAFE == "archive_unsafe"
    copy = pickle.loads(pickle.dumps(refused.value))
    assert (copy.reason, copy.member, str(copy)) == (
        "link",
        "app/evil -> /etc/passwd",
        str(refused.value),
    )

    _members(_file("app/bad\nname\x1b", b"x"))(archive)
    with pytest.raises(ArchiveUnsafe) as refused:
        check_archive(archive)
    assert refused.value.member == "app/bad\\nname\\x1b"
    assert "\n" not in str(refused.value)


def test_truncated_archive_without_member_says_so(tmp_path: Path) -> None:
    archive = tmp_path / "upload.tar"
    _cut(_VALID, _SECOND.offset_data + 50_000)(archive)
    with pytest.raises(ArchiveUnsafe) as refused:
        check_archive(archive)
    assert refused.value.member == "app/second.bin"


@pytest.mark.parametrize(
    ("members", "limits", "reason"),
    [
        pytest.param(
            [_file("app/big", b"x" * 2048)], ArchiveLimits(max_member_bytes=1024), "too large"
        ),
        pytest.param(
            [_file("app/a", b"x" * 600), _file("app/b", b"y" * 600)],
            ArchiveLimits(max_total_bytes=1000),
            "too large",
        ),
        pytest.param(
            [_file(f"app/f{index}") for index in range(11)],
            ArchiveLimits(max_files=10),
            "too many files",
        ),
        pytest.param(
            [_file("app/" + "n" * 40)], ArchiveLimits(max_path_length=40), "path too long"
        ),
        pytest.param([_file("a/b/c/d")], ArchiveLimits(max_depth=3), "path too deep"),
    ],
    ids=["member-size", "total-size", "files", "path-length", "depth"],
)
def test_limits_are_enforced(
    tmp_path: Path, members: list[Member], limits: ArchiveLimits, reason: str
) -> None:
    archive = tmp_path / "upload.tar"
    archive.write_bytes(_tar_bytes(members))
    _assert_refused(archive, reason, limits)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ArchiveLimits(max_files=0)
    with pytest.raises(ValueError, match="positive"):
        ArchiveLimits(max_member_bytes=0)


# ---------------------------------------------------------------------------------------------
# Bombs: huge expansions and huge member counts, refused without doing the work


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genuine, valid .tar.gz holding one 2 GiB file of zeros, in about 2 MiB on disk.

    After a full flush the compressor forgets its history, so every MiB of zeros compresses to
    the same bytes: compress one, write it 2048 times. Only the CRC needs the real data.
    """
    size = 2 * GiB
    info = tarfile.TarInfo("app/zeros.bin")
    info.size = size
    head = info.tobuf(tarfile.PAX_FORMAT)
    tail = bytes(10240 - len(head) % 10240)  # end-of-archive blocks, padded to a record
    zeros = bytes(MiB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc = zlib.crc32(head)
    for _ in range(size // MiB):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(tail, crc)
    path = tmp_path_factory.mktemp("bomb") / "bomb.tar.gz"
    with path.open("wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")  # gzip header, no name, no time
        out.write(compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH))
        block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
        out.write(block * (size // MiB))
        out.write(compressor.compress(tail) + compressor.flush())
        out.write(struct.pack("<II", crc, (len(head) + size + len(tail)) % 2**32))
    assert path.stat().st_size < 3 * MiB
    with tarfile.open(path, "r|gz") as tar:  # it really is a tar.gz with a 2 GiB member
        member = tar.next()
        assert member is not None
        assert (member.name, member.size) == ("app/zeros.bin", size)
    return path


def test_gzip_bomb_is_too_large(tmp_path: Path, gzip_bomb: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(gzip_bomb.read_bytes())
    started = time.perf_counter()
    _assert_refused(archive, "too large")
    assert time.perf_counter() - started < 5  # inflating 2 GiB twice would take far longer


def test_gzip_bomb_trips_the_ratio(tmp_path: Path, gzip_bomb: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(gzip_bomb.read_bytes())
    _assert_refused(archive, "compression ratio", ArchiveLimits(max_total_bytes=4 * GiB))


def test_gzip_bomb_is_refused_before_its_data_is_read(tmp_path: Path, gzip_bomb: Path) -> None:
    # Cut off most of the bomb: anything that inflated the data would report truncation.
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(gzip_bomb.read_bytes()[: 64 * KiB])
    _assert_refused(archive, "compression ratio", ArchiveLimits(max_total_bytes=4 * GiB))


def test_bloated_headers_trip_the_ratio(tmp_path: Path) -> None:
    # Member sizes are all zero; the expansion is in the headers, and it is still counted.
    archive = tmp_path / "upload.tar.gz"
    members = [_file(f"app/f{index}", comment="c" * 60_000) for index in range(150)]
    archive.write_bytes(_tar_bytes(members, gz=True))
    assert archive.stat().st_size < 64 * KiB  # 150 x 60 kB of headers is over 100:1
    _assert_refused(archive, "compression ratio")


def _empty_files(count: int) -> list[bytes]:
    return [tarfile.TarInfo(f"f{index:06d}").tobuf() for index in range(count)]


def test_many_tiny_files_over_a_small_limit(tmp_path: Path) -> None:
    archive = tmp_path / "upload.tar.gz"
    archive.write_bytes(gzip.compress(b"".join(_empty_files(1001)) + bytes(1024)))
    _assert_refused(archive, "too many files", ArchiveLimits(max_files=1000))


def test_many_tiny_files_over_the_default_limit(tmp_path: Path) -> None:
    headers = _empty_files(20_001)
    exactly = tmp_path / "exactly.tar"
    exactly.write_bytes(b"".join(headers[:-1]) + bytes(1024))
    assert check_archive(exactly) == ArchiveSummary(files=20_000, directories=0, total_bytes=0)
    exactly.unlink()

    archive = tmp_path / "upload.tar"
    archive.write_bytes(b"".join(headers) + bytes(1024))
    _assert_refused(archive, "too many files")


@pytest.mark.parametrize("gz", [False, True], ids=["tar", "tar.gz"])
def test_large_archive_is_streamed_not_held_in_memory(tmp_path: Path, gz: bool) -> None:
    block = os.urandom(MiB)  # repeated: cheap to build, incompressible to gzip's 32 KiB window
    members = [_file(f"app/part{index}.bin", block * 10) for index in range(3)]
    archive = tmp_path / ("upload.tar.gz" if gz else "upload.tar")
    archive.write_bytes(_tar_bytes(members, gz=gz))
    del members
    assert archive.stat().st_size > 30 * MiB

    tracemalloc.start()
    try:
        summary = check_archive(archive)
        checked_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        extract_archive(archive, tmp_path / "out")
        extracted_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.total_bytes == 30 * MiB
    assert checked_peak < 8 * MiB
    assert extracted_peak < 8 * MiB
    assert (tmp_path / "out/app/part2.bin").read_bytes() == block * 10


# ---------------------------------------------------------------------------------------------
# Archives that must go through


def _tree(root: Path) -> dict[str, tuple[bool, bytes | None]]:
    """Relative path -> (exec bit set, contents or None for a directory)."""
    tree: dict[str, tuple[bool, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), path
        assert not mode & 0o7000, path
        contents = None if path.is_dir() else path.read_bytes()
        tree[str(path.relative_to(root))] = (bool(mode & 0o100), contents)
    return tree


_RUN = b"#!/bin/sh\nexec python3 -m app\n"
_DATA = os.urandom(300 * KiB)


def _friendly_members() -> list[Member]:
    return [
        _dir("./"),  # what `tar -C dir .` writes first
        _dir("./app"),
        _file("./app/run.sh", _RUN, 0o750),
        _file("app/lib/data.bin", _DATA),  # no entry for app/lib: created implicitly
        _file("app/données.txt", "ça va\n".encode()),
        _file("README", b""),
        _dir("app/empty/"),
        _file("app/deep/" + "/".join(["d"] * 60) + "/leaf", b"leaf"),
    ]


@pytest.mark.parametrize("gz", [False, True], ids=["tar", "tar.gz"])
def test_friendly_archive_is_extracted_exactly(tmp_path: Path, gz: bool) -> None:
    archive = tmp_path / "upload.tar"
    # A global pax header, as `git archive` writes one with the commit id.
    archive.write_bytes(
        _tar_bytes(_friendly_members(), gz=gz, pax_headers={"comment": "0123abcd" * 5})
    )
    expected = ArchiveSummary(
        files=5, directories=2, total_bytes=len(_RUN) + len(_DATA) + len("ça va\n".encode()) + 4
    )

    assert check_archive(archive) == expected
    destination = tmp_path / "out"
    assert extract_archive(archive, destination) == expected

    tree = _tree(destination)
    assert tree["app/run.sh"] == (True, _RUN)
    assert tree["app/lib/data.bin"] == (False, _DATA)
    assert tree["app/données.txt"] == (False, "ça va\n".encode())
    assert tree["README"] == (False, b"")
    assert tree["app/empty"] == (True, None)  # directories are 0o755
    assert tree["app/deep/" + "/".join(["d"] * 60) + "/leaf"] == (False, b"leaf")
    assert len(tree) == 4 + 60 + 5  # app, lib, empty, deep; the d chain; the files
    assert stat.S_IMODE((destination / "app/run.sh").stat().st_mode) == 0o755 & ~_umask()
    assert stat.S_IMODE((destination / "README").stat().st_mode) == 0o644 & ~_umask()


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def test_empty_archive_is_fine(tmp_path: Path) -> None:
    archive = tmp_path / "empty.tar"
    archive.write_bytes(_tar_bytes([]))
    assert check_archive(archive) == ArchiveSummary(0, 0, 0)
    assert extract_archive(archive, tmp_path / "out") == ArchiveSummary(0, 0, 0)
    assert list((tmp_path / "out").iterdir()) == []


def test_small_compressible_archive_is_not_a_ratio_problem(tmp_path: Path) -> None:
    # 500 KiB of one letter gzips to under 1 KiB: far past 100:1, but under the grace size.
    archive = tmp_path / "small.tar.gz"
    archive.write_bytes(_tar_bytes([_file("app/a.txt", b"a" * 500 * KiB)], gz=True))
    assert archive.stat().st_size < 5 * KiB
    assert check_archive(archive).total_bytes == 500 * KiB


def test_destination_must_not_exist(tmp_path: Path) -> None:
    archive = tmp_path / "upload.tar"
    archive.write_bytes(_tar_bytes(_friendly_members()))
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        extract_archive(archive, destination)
    assert [path.name for path in destination.iterdir()] == ["keep.txt"]

    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        extract_archive(archive, tmp_path / "link")
    assert not (tmp_path / "nowhere").exists()


# ---------------------------------------------------------------------------------------------
# pack_directory


def test_pack_directory_round_trips(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "app/lib").mkdir(parents=True)
    (source / "app/empty").mkdir()
    (source / "app/run.sh").write_bytes(_RUN)
    (source / "app/run.sh").chmod(0o700)
    (source / "app/lib/big.bin").write_bytes(os.urandom(3 * MiB + 5))
    (source / "app/lib/data.bin").write_bytes(_DATA)
    (source / "app/private.txt").write_bytes(b"secret")
    (source / "app/private.txt").chmod(0o600)
    (source / "README").write_bytes(b"")

    chunks = list(pack_directory(source))
    assert all(MiB <= len(chunk) <= 2 * MiB for chunk in chunks[:-1])
    assert len(chunks) >= 3
    packed = tmp_path / "packed.tar"
    packed.write_bytes(b"".join(chunks))
    assert packed.stat().st_size % tarfile.RECORDSIZE == 0

    with tarfile.open(packed) as tar:
        members = tar.getmembers()
    assert [member.name for member in members][:3] == ["README", "app", "app/empty"]
    assert all(member.uid == member.gid == 0 for member in members)
    assert {member.name: member.mode for member in members}["app/run.sh"] == 0o755
    assert {member.name: member.mode for member in members}["app/private.txt"] == 0o644

    assert check_archive(packed) == ArchiveSummary(
        files=5, directories=3, total_bytes=len(_RUN) + 3 * MiB + 5 + len(_DATA) + 6
    )
    extract_archive(packed, tmp_path / "copy")
    assert _tree(tmp_path / "copy") == _tree(source)


def test_pack_directory_refuses_links(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(ArchiveUnsafe) as refused:
        b"".join(pack_directory(source))
    assert (refused.value.reason, refused.value.member) == ("link", "passwd")
