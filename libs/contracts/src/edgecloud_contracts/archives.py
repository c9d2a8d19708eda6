"""Check, extract and pack tenant application archives (``.tar`` or ``.tar.gz``).

Archives come from tenants, so they are hostile until proven otherwise. ``tarfile``'s own
``extractall(filter="data")`` is not trusted: it silently re-roots absolute names and has had
bypasses (CVE-2025-4517). Here tarfile only parses; every member is checked by this module and
every file is written by it, through directory descriptors that never follow links.

Only the standard library is used, so the edge agent can run this without extra dependencies.
"""

import bisect
import contextlib
import gzip
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, Self

ARCHIVE_UNSAFE: Final = "archive_unsafe"
"""Error code the platform reports for an :class:`ArchiveUnsafe` refusal."""

_CHUNK: Final = 1024 * 1024
# Bytes of headers (ustar, pax, GNU long names, global headers) one member may take. Real
# archives need well under 4 KiB; the cap bounds what tarfile reads into memory for one header
# chain and keeps its recursion over chained pax headers shallow.
_HEADER_BUDGET: Final = 64 * 1024
# Bytes allowed after the end-of-archive marker: record padding, even with a large blocking
# factor. Reading them lets gzip check its trailer.
_TRAILER_BUDGET: Final = 1024 * 1024
# Below this expanded size the ratio is not enforced: a tiny .tar.gz is mostly fixed overhead
# (a 10 KiB end-of-archive record compresses to a few bytes) and expanding 1 MiB costs nothing.
_RATIO_GRACE: Final = 1024 * 1024
_NAME_MAX: Final = 255  # bytes per path component on every Linux filesystem we run on
_SHOWN_MAX: Final = 256  # characters of a member name quoted in an error
_GZIP_MAGIC: Final = b"\x1f\x8b"

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # bytes that were not UTF-8 (surrogateescape)
_DRIVE = re.compile("^[A-Za-z]:")

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FILE_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class ArchiveLimits:
    """How much an archive may hold; the first limit crossed refuses it."""

    max_total_bytes: int = 512 * 1024 * 1024  # sum of member sizes
    max_files: int = 20_000  # members of any type
    max_ratio: float = 100.0  # expanded bytes / archive bytes on disk
    max_member_bytes: int | None = None  # None: same as max_total_bytes
    max_path_length: int = 1024  # bytes, after normalisation
    max_depth: int = 64  # path components

    def __post_init__(self) -> None:
        values = (self.max_total_bytes, self.max_files, self.max_ratio, self.max_path_length)
        member = self.max_member_bytes
        if min(values) <= 0 or self.max_depth <= 0 or (member is not None and member <= 0):
            raise ValueError("archive limits must be positive")


@dataclass(frozen=True)
class ArchiveSummary:
    """What a checked or extracted archive holds (the ``./`` root entry is not counted)."""

    files: int
    directories: int
    total_bytes: int


def _printable(text: str) -> str:
    # Names end up in logs and API errors: escape what would make them lie, and keep them short.
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return shown if len(shown) <= _SHOWN_MAX else shown[: _SHOWN_MAX - 1] + "…"


class ArchiveUnsafe(ValueError):
    """The archive was refused. ``reason`` is short and stable; ``member`` is printable."""

    def __init__(self, reason: str, member: str | None = None) -> None:
        shown = None if member is None else _printable(member)
        super().__init__(reason, shown)  # args keep the exception picklable
        self.reason = reason
        self.member = shown

    def __str__(self) -> str:
        if self.member is None:
            return f"unsafe archive: {self.reason}"
        return f"unsafe archive: {self.reason}: {self.member}"


class _Refused(Exception):
    """Raised from inside tarfile's reads; not a ValueError/OSError so tarfile cannot swallow it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _BadHeader(Exception):
    """A header that is not a valid tar header (raised instead of tarfile's HeaderError)."""


# The zero block that ends an archive; undocumented, so missing from typeshed.
_END_OF_ARCHIVE: type[Exception] = tarfile.EOFHeaderError  # type: ignore[attr-defined]


class _StrictTarInfo(tarfile.TarInfo):
    """TarInfo whose parsing reports bad headers instead of ending the archive there.

    In stream mode tarfile treats a truncated, empty or garbage header after the first one as
    the end of the archive and returns no error, so a cut-off upload would look complete. Only
    a zero block (the real end-of-archive marker) is still allowed to end it.
    """

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tar)
        except _END_OF_ARCHIVE:
            raise
        except tarfile.HeaderError as exc:
            raise _BadHeader(str(exc)) from exc


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _Expansion:
    """The uncompressed tar stream, as tarfile reads it.

    Every byte is counted here (headers, pax records, padding and data), so the compression
    ratio covers things member sizes do not show, and ``budget`` (moved on after each member)
    stops any member's headers, or the bytes after the last member, from growing unchecked.
    """

    def __init__(self, source: _Readable, ceiling: float) -> None:
        self._source = source
        self._ceiling = ceiling
        self.count = 0
        self.budget = 0
        self.over_budget = "headers too large"
        self.allow_from(0, _HEADER_BUDGET)

    def allow_from(self, offset: int, extra: int) -> None:
        """Allow ``extra`` bytes past ``offset``, plus what tarfile reads ahead."""
        self.budget = offset + extra + tarfile.RECORDSIZE

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size if size >= 0 else _CHUNK)
        self.count += len(data)
        if self.count > self._ceiling:
            raise _Refused("compression ratio")
        if self.count > self.budget:
            raise _Refused(self.over_budget)
        return data

    def tell(self) -> int:
        return self.count

    def write(self, b: bytes, /) -> object:
        raise OSError("read-only stream")

    def seek(self, pos: int, /) -> object:
        raise OSError("stream is not seekable")

    def close(self) -> None:
        pass  # the file and gzip layers underneath belong to _scan


@contextlib.contextmanager
def _reading(member: str | None, *, first: bool = False) -> Iterator[None]:
    """Turn whatever parsing the untrusted stream raised into ArchiveUnsafe."""
    try:
        yield
    except ArchiveUnsafe:
        raise
    except _Refused as exc:
        raise ArchiveUnsafe(exc.reason, member) from None
    except _BadHeader as exc:
        raise ArchiveUnsafe("not a tar archive" if first else "truncated or corrupt") from exc
    except MemoryError:
        raise
    except Exception as exc:
        # tarfile.ReadError, EOFError and BadGzipFile from gzip, zlib.error, and the ValueError,
        # IndexError or RecursionError tarfile raises on malformed pax or sparse headers.
        raise ArchiveUnsafe("truncated or corrupt", member) from exc


def _shown(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        return f"{member.name} -> {member.linkname}"
    return member.name


def _path_parts(name: str, limits: ArchiveLimits) -> tuple[str, ...]:
    """The normalised components of a member name, or _Refused."""
    if not name:
        raise _Refused("empty name")
    if _CONTROL.search(name):
        raise _Refused("control character")
    if _SURROGATE.search(name):
        raise _Refused("name not utf-8")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise _Refused("absolute path")
    if "\\" in name:
        raise _Refused("backslash")  # a path separator somewhere, never a plain character
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise _Refused("parent reference")
    if len("/".join(parts).encode()) > limits.max_path_length:
        raise _Refused("path too long")
    if any(len(part.encode()) > _NAME_MAX for part in parts):
        raise _Refused("path too long")
    if len(parts) > limits.max_depth:
        raise _Refused("path too deep")
    return parts


@dataclass(frozen=True)
class _Entry:
    parts: tuple[str, ...]
    is_dir: bool
    executable: bool


class _Rules:
    """Per-member checks plus the running totals they depend on."""

    def __init__(self, limits: ArchiveLimits, ratio_cap: float) -> None:
        self._limits = limits
        self._member_cap = (
            limits.max_total_bytes if limits.max_member_bytes is None else limits.max_member_bytes
        )
        self._ratio_cap = ratio_cap
        self.members = 0
        self.files = 0
        self.directories = 0
        self.total_bytes = 0
        # Every member path, sorted, so "is anything under a/b/?" is one bisect; no set of
        # implied parent directories, which a hostile archive could make huge.
        self._sorted: list[str] = []
        self._is_dir: dict[str, bool] = {}

    def admit(self, member: tarfile.TarInfo) -> _Entry | None:
        """Check one member; return what to create, or None for the archive root (``./``)."""
        shown = _shown(member)
        self.members += 1
        if self.members > self._limits.max_files:
            raise ArchiveUnsafe("too many files", shown)
        try:
            parts = _path_parts(member.name, self._limits)
        except _Refused as exc:
            raise ArchiveUnsafe(exc.reason, shown) from None
        if member.issym() or member.islnk():
            raise ArchiveUnsafe("link", shown)
        if member.ischr() or member.isblk() or member.isfifo():
            raise ArchiveUnsafe("device or fifo", shown)
        # isreg() is also true for contiguous and GNU sparse files, so test the type itself.
        is_dir = member.type == tarfile.DIRTYPE
        if not is_dir and (member.type not in _FILE_TYPES or member.sparse is not None):
            raise ArchiveUnsafe("unsupported type", shown)
        if member.mode & (stat.S_ISUID | stat.S_ISGID):
            raise ArchiveUnsafe("setuid/setgid bit", shown)
        if member.mode & stat.S_ISVTX:
            raise ArchiveUnsafe("sticky bit", shown)
        # tarfile does not skip a directory's data, so a sized directory means a confused stream.
        if member.size < 0 or (is_dir and member.size):
            raise ArchiveUnsafe("truncated or corrupt", shown)
        if not parts:
            if is_dir:
                return None
            raise ArchiveUnsafe("empty name", shown)
        if not is_dir:
            # Refuse on the declared size, before a single byte of a bomb is inflated.
            self.total_bytes += member.size
            if member.size > self._member_cap or self.total_bytes > self._limits.max_total_bytes:
                raise ArchiveUnsafe("too large", shown)
            if self.total_bytes > self._ratio_cap:
                raise ArchiveUnsafe("compression ratio", shown)
        self._claim("/".join(parts), is_dir, shown)
        if is_dir:
            self.directories += 1
        else:
            self.files += 1
        return _Entry(parts, is_dir, bool(member.mode & 0o111))

    def _claim(self, path: str, is_dir: bool, shown: str) -> None:
        if path in self._is_dir:
            raise ArchiveUnsafe("duplicate member", shown)
        # A file cannot be a parent of a later member, nor replace an earlier one's parent.
        for index, char in enumerate(path):
            if char == "/" and self._is_dir.get(path[:index]) is False:
                raise ArchiveUnsafe("path conflict", shown)
        if not is_dir:
            below = path + "/"
            index = bisect.bisect_left(self._sorted, below)
            if index < len(self._sorted) and self._sorted[index].startswith(below):
                raise ArchiveUnsafe("path conflict", shown)
        bisect.insort(self._sorted, path)
        self._is_dir[path] = is_dir


_FILE_TYPES: Final = (tarfile.REGTYPE, tarfile.AREGTYPE)


class _Sink(Protocol):
    def directory(self, parts: tuple[str, ...]) -> None: ...

    def file(self, parts: tuple[str, ...], executable: bool, chunks: Iterator[bytes]) -> None: ...


class _Discard:
    """Sink for check_archive: reads every byte (so truncation is seen) and keeps none."""

    def directory(self, parts: tuple[str, ...]) -> None:
        pass

    def file(self, parts: tuple[str, ...], executable: bool, chunks: Iterator[bytes]) -> None:
        for _ in chunks:
            pass


def _chunks(tar: tarfile.TarFile, member: tarfile.TarInfo, shown: str) -> Iterator[bytes]:
    with _reading(shown):
        source = tar.extractfile(member)
    if source is None:  # only regular files reach here, for which tarfile always has a reader
        raise ArchiveUnsafe("unsupported type", shown)
    remaining = member.size
    while remaining:
        with _reading(shown):
            chunk = source.read(min(_CHUNK, remaining))  # tarfile raises on a short read
        if not chunk:
            raise ArchiveUnsafe("truncated or corrupt", shown)
        remaining -= len(chunk)
        yield chunk


def _next(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    with _reading(None):
        return tar.next()


def _pax_bytes(headers: Mapping[str, str]) -> int:
    return sum(len(key) + len(value) for key, value in headers.items())


def _scan(path: Path, limits: ArchiveLimits, sink: _Sink) -> ArchiveSummary:
    """Stream the archive once, checking each member before handing it to ``sink``."""
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb"))
        disk_bytes = os.fstat(raw.fileno()).st_size  # of the file actually opened
        # Only plain and gzip tars are accepted; sniffing ourselves rather than "r|*" keeps
        # bzip2 and xz out and lets gzip.GzipFile verify the CRC and length trailer.
        compressed = raw.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
        raw.seek(0)
        source: _Readable = raw
        if compressed:
            source = gzip.GzipFile(fileobj=raw, mode="rb")
            stack.callback(source.close)
        # The ratio is enforced twice: on declared sizes as each header arrives (before a
        # bomb's data is inflated) and on the bytes actually inflated (headers included).
        ratio_cap = limits.max_ratio * disk_bytes + _RATIO_GRACE
        stream = _Expansion(source, ratio_cap)
        rules = _Rules(limits, ratio_cap)
        with _reading(None, first=True):  # tarfile reads the first header while opening
            tar = stack.enter_context(
                tarfile.open(
                    fileobj=stream,
                    mode="r|",  # stream mode: never seeks, reads the archive exactly once
                    tarinfo=_StrictTarInfo,
                    encoding="utf-8",
                    errors="surrogateescape",
                )
            )
        while (member := _next(tar)) is not None:
            # Stream mode keeps every TarInfo it returns; nothing here needs them again.
            tar.members.clear()  # type: ignore[attr-defined]  # not in typeshed
            stream.allow_from(tar.offset, _HEADER_BUDGET)
            shown = _shown(member)
            # Global pax headers add up over the whole archive, so bound what they keep.
            if tar.pax_headers and _pax_bytes(tar.pax_headers) > _HEADER_BUDGET:
                raise ArchiveUnsafe("headers too large", shown)
            if not compressed and tar.offset > disk_bytes:
                raise ArchiveUnsafe("truncated or corrupt", shown)  # data would end past EOF
            entry = rules.admit(member)
            if entry is None:
                continue
            if entry.is_dir:
                sink.directory(entry.parts)
            else:
                sink.file(entry.parts, entry.executable, _chunks(tar, member, shown))
        # Read on to the end so gzip verifies its CRC and length; past the end-of-archive
        # marker only record padding is expected.
        stream.allow_from(tar.offset, _TRAILER_BUDGET)
        stream.over_budget = "trailing data"
        with _reading(None):
            while stream.read(_CHUNK):
                pass
        return ArchiveSummary(rules.files, rules.directories, rules.total_bytes)


def check_archive(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> ArchiveSummary:
    """Read the whole archive once and raise ArchiveUnsafe at the first problem."""
    return _scan(path, limits, _Discard())


class _Writer:
    """Sink for extract_archive: creates members under a root it holds open by descriptor.

    Every directory is opened with O_NOFOLLOW relative to its parent's descriptor, so no path
    is ever resolved through a link, whatever appears on disk meanwhile.
    """

    def __init__(self, root: Path) -> None:
        self._root_fd = os.open(root, _DIR_FLAGS)
        self._root_real = os.path.realpath(root)
        self._cached: tuple[tuple[str, ...], int] | None = None  # last directory opened

    def close(self) -> None:
        self._forget()
        os.close(self._root_fd)

    def _forget(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def _inside(self, parts: tuple[str, ...]) -> None:
        """Check that ``parts`` resolves inside the destination, following links on disk.

        Redundant with the descriptor walk, by design: a second, independent guard. It runs
        for every directory opened; a file is a single checked name created with
        O_EXCL|O_NOFOLLOW in an already checked directory, so it cannot lead anywhere else.
        """
        real = os.path.realpath(os.path.join(self._root_real, *parts))
        if not real.startswith(self._root_real + os.sep):
            raise ArchiveUnsafe("outside destination", "/".join(parts))

    def _directory_fd(self, parts: tuple[str, ...]) -> int:
        """A descriptor for the directory ``parts``, creating missing ones (mode 0o755)."""
        if not parts:
            return self._root_fd
        if self._cached is not None and self._cached[0] == parts:
            return self._cached[1]
        self._inside(parts)
        fd = self._root_fd
        try:
            for name in parts:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                if fd != self._root_fd:
                    os.close(fd)
                fd = child
        except BaseException:
            if fd != self._root_fd:
                os.close(fd)
            raise
        self._forget()
        self._cached = (parts, fd)
        return fd

    def directory(self, parts: tuple[str, ...]) -> None:
        self._directory_fd(parts)

    def file(self, parts: tuple[str, ...], executable: bool, chunks: Iterator[bytes]) -> None:
        parent = self._directory_fd(parts[:-1])
        # Only the exec bit survives from the member's mode; no owner, no special bits.
        mode = 0o755 if executable else 0o644
        fd = os.open(parts[-1], _NEW_FILE_FLAGS, mode, dir_fd=parent)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def extract_archive(
    path: Path, destination: Path, limits: ArchiveLimits = ArchiveLimits()
) -> ArchiveSummary:
    """Check and extract in one pass into a new ``destination``; on any error remove it all.

    ``destination`` must not exist (FileExistsError) and its parent must. The checks are the
    same as check_archive's, so calling that first is not needed for safety.
    """
    os.mkdir(destination, 0o755)  # atomic: fails if anything, even a dangling link, is there
    try:
        writer = _Writer(destination)
        try:
            return _scan(path, limits, writer)
        finally:
            writer.close()
    except BaseException as exc:
        try:
            shutil.rmtree(destination)
        except OSError as error:
            exc.add_note(f"could not remove {destination}: {error}")
        raise


def _tree(dir_fd: int, prefix: str) -> Iterator[tuple[str, int, str, bool]]:
    """(archive name, parent descriptor, name in parent, is directory), sorted, depth first."""
    with os.scandir(dir_fd) as listing:
        entries = sorted(
            (entry.name, entry.is_dir(follow_symlinks=False), entry.is_symlink())
            for entry in listing
        )
    for name, is_dir, is_link in entries:
        member = prefix + name
        if is_link:
            raise ArchiveUnsafe("link", member)
        yield member, dir_fd, name, is_dir
        if is_dir:
            child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                yield from _tree(child, member + "/")
            finally:
                os.close(child)


def pack_directory(root: Path) -> Iterator[bytes]:
    """Yield an uncompressed tar of the tree under ``root`` in chunks of about 1 MiB.

    Names are relative, owners are 0 and only the exec bit of a mode is kept (0o755 or 0o644).
    Only regular files and directories are allowed; a link raises ArchiveUnsafe.

    The tar is assembled from ``TarInfo.tobuf`` headers rather than ``TarFile.addfile``, which
    copies a whole member before returning and so could not hand out a large file in pieces.
    """
    pending: list[bytes] = []
    pending_bytes = 0
    written = 0
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        for member, parent_fd, name, is_dir in _tree(root_fd, ""):
            pieces = _dir_pieces if is_dir else _file_pieces
            with contextlib.closing(pieces(member, name, parent_fd)) as generator:
                for piece in generator:
                    pending.append(piece)
                    pending_bytes += len(piece)
                    if pending_bytes >= _CHUNK:
                        written += pending_bytes
                        yield b"".join(pending)
                        pending, pending_bytes = [], 0
    finally:
        os.close(root_fd)
    # End of archive: two zero blocks, then zeros up to a whole record, as tarfile writes it.
    pending_bytes += 2 * tarfile.BLOCKSIZE
    pending_bytes += -(written + pending_bytes) % tarfile.RECORDSIZE
    yield b"".join(pending).ljust(pending_bytes, tarfile.NUL)


def _tar_info(member: str, status: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = int(status.st_mtime)  # a whole number: no pax header just for the time
    info.mode = 0o755 if status.st_mode & 0o111 else 0o644
    return info


def _tar_header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _dir_pieces(member: str, name: str, parent_fd: int) -> Generator[bytes, None, None]:
    info = _tar_info(member, os.stat(name, dir_fd=parent_fd, follow_symlinks=False))
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    yield _tar_header(info)


def _file_pieces(member: str, name: str, parent_fd: int) -> Generator[bytes, None, None]:
    fd = os.open(name, _READ_FILE_FLAGS, dir_fd=parent_fd)
    with open(fd, "rb", buffering=0) as source:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):  # replaced by something else since the listing
            raise ArchiveUnsafe("unsupported type", member)
        info = _tar_info(member, status)
        info.size = status.st_size
        yield _tar_header(info)
        remaining = info.size
        while remaining:
            chunk = source.read(min(_CHUNK, remaining))
            if not chunk:
                raise OSError(f"{member} shrank while it was being packed")
            remaining -= len(chunk)
            yield chunk
        yield bytes(-info.size % tarfile.BLOCKSIZE)
