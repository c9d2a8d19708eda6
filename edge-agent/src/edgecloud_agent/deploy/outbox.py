"""The node's durable outbox of reports for the cloud (sqlite3, state dir).

A report is written here before anything is sent and removed once the cloud has
acknowledged it, so a link outage or an agent restart delays reports instead of losing
them. Reports keep the order they were put in. The outbox is bounded: when it is full,
the oldest data reports make room first (newer measurements are worth more), then the
oldest reports of any kind.
"""

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edgecloud_contracts.containers import NodeReport

from ..state.db import connect

logger = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
_DATA = "data"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_kind_seq ON reports (kind, seq);
"""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int
    """The order reports were put in (it only grows)."""
    report: NodeReport


class Outbox:
    def __init__(self, state_dir: Path, *, max_reports: int = 20_000) -> None:
        if max_reports < 1:
            raise ValueError("an outbox holds at least one report")
        self._db = connect(state_dir / OUTBOX_FILE)
        self._db.executescript(_SCHEMA)
        self._max = max_reports
        count, last = self._db.execute("SELECT count(*), max(seq) FROM reports").fetchone()
        self._count = int(count)
        self.last_seq = int(last or 0)
        """The seq of the newest report put in (0 before the first)."""
        self.dropped = 0
        """Reports dropped to make room, or unreadable after an upgrade."""
        self._dropping = False

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._count

    def put(self, report: NodeReport) -> list[str]:
        """Keep ``report`` (which has its id) until :meth:`remove`; durable when this
        returns. Returns the ids of the reports dropped to make room for it."""
        if report.id is None:
            raise ValueError("a report in the outbox needs its id")
        dropped: list[str] = []
        with self._db:
            self._db.execute("BEGIN")
            while self._count - len(dropped) >= self._max:
                dropped.append(self._delete_oldest())
            cursor = self._db.execute(
                "INSERT INTO reports (id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                (report.id, report.kind, report.model_dump_json(), time.time()),
            )
        self._count += 1 - len(dropped)
        self.last_seq = int(cursor.lastrowid or self.last_seq + 1)
        if dropped:
            self.dropped += len(dropped)
            if not self._dropping:
                logger.warning("the report outbox is full (%d): dropping the oldest", self._max)
            self._dropping = True
        return dropped

    def oldest(self, limit: int = 1, *, held: Collection[str] = ()) -> list[OutboxEntry]:
        """The first ``limit`` readable reports in order, leaving out the kinds ``held``
        (unreadable ones, written by an agent that spoke another contract, are dropped)."""
        placeholders = ", ".join("?" * len(held))
        entries: list[OutboxEntry] = []
        after = 0
        while len(entries) < limit:
            rows = self._db.execute(
                f"SELECT seq, id, payload FROM reports WHERE kind NOT IN ({placeholders})"
                " AND seq > ? ORDER BY seq LIMIT ?",
                (*held, after, limit - len(entries)),
            ).fetchall()
            if not rows:
                break
            for seq, report_id, payload in rows:
                after = seq
                try:
                    entries.append(OutboxEntry(seq, NodeReport.model_validate_json(payload)))
                except ValidationError as err:
                    logger.error(
                        "dropping unreadable report %s from the outbox: %s", report_id, err
                    )
                    self.remove(report_id)
                    self.dropped += 1
        return entries

    def remove(self, report_id: str) -> None:
        """Forget a report (the cloud has it); no-op if it is gone already."""
        self._count -= self._db.execute("DELETE FROM reports WHERE id = ?", (report_id,)).rowcount
        if self._dropping and self._count <= self._max * 0.9:
            logger.info("the report outbox has room again (%d dropped so far)", self.dropped)
            self._dropping = False

    def _delete_oldest(self) -> str:
        """Delete the oldest data report, or else the oldest report; its id."""
        row = (
            self._db.execute(
                "SELECT seq, id FROM reports WHERE kind = ? ORDER BY seq LIMIT 1", (_DATA,)
            ).fetchone()
            or self._db.execute("SELECT seq, id FROM reports ORDER BY seq LIMIT 1").fetchone()
        )
        self._db.execute("DELETE FROM reports WHERE seq = ?", (row[0],))
        return str(row[1])
