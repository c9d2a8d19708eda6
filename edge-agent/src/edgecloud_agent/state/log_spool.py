"""Containers' output waiting for the cloud's storage, and how far each container's output
was taken (sqlite3, state dir).

A segment and its container's cursor are written in one transaction: after a restart the
shipper goes on from the cursor, so each line is spooled exactly once, and a segment leaves
only once storage has it. The spool is bounded in bytes: when it is full the shipper stops
reading (Docker keeps the lines) until uploads make room.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edgecloud_contracts.log_segments import LogSegment

from .db import connect

SPOOL_FILE = "logs.sqlite3"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (
    container_id TEXT PRIMARY KEY,
    at_us INTEGER NOT NULL,
    skip INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    container_id TEXT NOT NULL,
    body TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_container ON segments (container_id, seq);
"""


def _micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a container's output was taken up to: the stamp of the last line taken and
    how many lines with that very stamp were taken (Docker's stamps can repeat)."""

    at: datetime
    skip: int

    def after(self, segment: LogSegment) -> "Cursor":
        """The cursor once ``segment`` (which starts here) is taken."""
        last = segment.end_at
        same = sum(1 for line in segment.lines if line.at == last)
        if last == self.at:
            return Cursor(last, self.skip + same)
        return Cursor(last, same)

    def start_skip(self, first_at: datetime) -> int:
        """A segment whose first line is stamped ``first_at`` starts after this many lines
        of that instant."""
        return self.skip if first_at == self.at else 0


START = Cursor(EPOCH, 0)
"""A container never seen: all of its output."""


@dataclass(frozen=True, slots=True)
class Spooled:
    seq: int
    container_id: str
    body: str


class LogSpool:
    def __init__(self, state_dir: Path, *, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("a spool holds at least one byte")
        self._db = connect(state_dir / SPOOL_FILE)
        self._db.executescript(_SCHEMA)
        self.max_bytes = max_bytes
        self.bytes = int(
            self._db.execute("SELECT coalesce(sum(size), 0) FROM segments").fetchone()[0]
        )

    def close(self) -> None:
        self._db.close()

    @property
    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM segments").fetchone()[0])

    def cursor(self, container_id: str) -> Cursor:
        row = self._db.execute(
            "SELECT at_us, skip FROM cursors WHERE container_id = ?", (container_id,)
        ).fetchone()
        if row is None:
            return START
        return Cursor(EPOCH + timedelta(microseconds=row[0]), int(row[1]))

    def put(self, segment: LogSegment, cursor: Cursor) -> None:
        """Keep ``segment`` and move its container's cursor to ``cursor``: both or neither,
        durable when this returns."""
        body = segment.model_dump_json()
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO segments (container_id, body, size) VALUES (?, ?, ?)",
                (segment.container_id, body, len(body)),
            )
            self._db.execute(
                "INSERT INTO cursors (container_id, at_us, skip) VALUES (?, ?, ?)"
                " ON CONFLICT (container_id) DO UPDATE SET at_us = excluded.at_us,"
                " skip = excluded.skip",
                (segment.container_id, _micros(cursor.at), cursor.skip),
            )
        self.bytes += len(body)

    def oldest(self, *, leaving_out: Collection[str] = ()) -> Spooled | None:
        """The oldest segment, of a container not in ``leaving_out``."""
        placeholders = ", ".join("?" * len(leaving_out))
        row = self._db.execute(
            f"SELECT seq, container_id, body FROM segments WHERE container_id NOT IN"
            f" ({placeholders}) ORDER BY seq LIMIT 1",
            tuple(leaving_out),
        ).fetchone()
        return Spooled(int(row[0]), str(row[1]), str(row[2])) if row is not None else None

    def remove(self, seq: int) -> None:
        """Forget a segment (storage has it, or refused it for good)."""
        row = self._db.execute("SELECT size FROM segments WHERE seq = ?", (seq,)).fetchone()
        if row is not None:
            self._db.execute("DELETE FROM segments WHERE seq = ?", (seq,))
            self.bytes -= int(row[0])

    def drop_container(self, container_id: str) -> int:
        """Forget every spooled segment of a container nobody takes; how many."""
        with self._db:
            self._db.execute("BEGIN")
            size, count = self._db.execute(
                "SELECT coalesce(sum(size), 0), count(*) FROM segments WHERE container_id = ?",
                (container_id,),
            ).fetchone()
            self._db.execute("DELETE FROM segments WHERE container_id = ?", (container_id,))
        self.bytes -= int(size)
        return int(count)
