"""The commands this node applied recently and what came of them (sqlite3, state dir).

Commands arrive at least once; the journal makes them apply once: a repeat is answered
with the first result. Entries are kept for a while (by count and by age), far longer
than the cloud keeps re-sending a command.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from edgecloud_contracts.containers import Command, CommandResult

from .db import connect

JOURNAL_FILE = "journal.sqlite3"
_PRUNE_EVERY = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    container_id TEXT NOT NULL,
    result TEXT NOT NULL,
    applied_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_applied_at ON commands (applied_at);
"""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    action: str
    container_id: str
    result: CommandResult


class CommandJournal:
    def __init__(
        self, state_dir: Path, *, max_entries: int = 10_000, max_age_s: float = 7 * 86400
    ) -> None:
        self._db = connect(state_dir / JOURNAL_FILE)
        self._db.executescript(_SCHEMA)
        self._max_entries = max_entries
        self._max_age = max_age_s
        self._writes = 0
        self.prune()

    def close(self) -> None:
        self._db.close()

    def get(self, command_id: str) -> JournalEntry | None:
        row = self._db.execute(
            "SELECT action, container_id, result FROM commands WHERE id = ?", (command_id,)
        ).fetchone()
        if row is None:
            return None
        return JournalEntry(row[0], row[1], CommandResult.model_validate_json(row[2]))

    def record(self, command: Command, result: CommandResult) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO commands (id, action, container_id, result, applied_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                command.id,
                command.action.value,
                command.container_id,
                result.model_dump_json(),
                time.time(),
            ),
        )
        self._writes += 1
        if self._writes % _PRUNE_EVERY == 0:
            self.prune()

    def prune(self) -> None:
        """Forget entries older than the age limit and beyond the count limit."""
        with self._db:
            self._db.execute(
                "DELETE FROM commands WHERE applied_at < ?", (time.time() - self._max_age,)
            )
            self._db.execute(
                "DELETE FROM commands WHERE id NOT IN"
                " (SELECT id FROM commands ORDER BY applied_at DESC LIMIT ?)",
                (self._max_entries,),
            )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM commands").fetchone()[0])
