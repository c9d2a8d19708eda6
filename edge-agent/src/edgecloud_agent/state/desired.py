"""The node's desired state: the containers the cloud asked it to run (sqlite3, state dir).

Kept on the node so that it knows what it should be running while the cloud is out of
reach. Docker's restart policies keep the containers themselves running across outages;
this is the record a reconciliation compares them with.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from edgecloud_contracts.containers import ContainerSpec

from .db import connect

DESIRED_FILE = "desired.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    container_id TEXT PRIMARY KEY,
    docker_name TEXT NOT NULL,
    spec TEXT NOT NULL,
    running INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kept_copies (
    container_id TEXT PRIMARY KEY,
    docker_name TEXT NOT NULL,
    tenant_id TEXT,
    generation INTEGER NOT NULL,
    fenced_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class KeptCopy:
    """An old copy of a container the cloud placed elsewhere meanwhile: stopped, not
    wanted, kept for its tenant (deploy/fencing.py)."""

    container_id: str
    docker_name: str
    tenant_id: str | None
    generation: int
    fenced_at: float


@dataclass(frozen=True, slots=True)
class DesiredContainer:
    spec: ContainerSpec
    running: bool
    """Whether the cloud last asked for it to run (create, start, restart) or stop."""


class DesiredState:
    def __init__(self, state_dir: Path) -> None:
        self._db = connect(state_dir / DESIRED_FILE)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def put(self, spec: ContainerSpec, *, running: bool = True) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO containers (container_id, docker_name, spec, running,"
            " updated_at) VALUES (?, ?, ?, ?, ?)",
            (spec.container_id, spec.docker_name, spec.model_dump_json(), running, time.time()),
        )

    def set_running(self, container_id: str, running: bool) -> None:
        """Record a start or stop; a container the node was never given is ignored."""
        self._db.execute(
            "UPDATE containers SET running = ?, updated_at = ? WHERE container_id = ?",
            (running, time.time(), container_id),
        )

    def remove(self, container_id: str) -> None:
        """The cloud no longer wants it here, nor a kept copy of it."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM containers WHERE container_id = ?", (container_id,))
            self._db.execute("DELETE FROM kept_copies WHERE container_id = ?", (container_id,))

    def keep_copy(self, copy: KeptCopy) -> None:
        """The container is no longer wanted here; its stopped copy is kept (both or
        neither)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM containers WHERE container_id = ?", (copy.container_id,))
            self._db.execute(
                "INSERT OR REPLACE INTO kept_copies (container_id, docker_name, tenant_id,"
                " generation, fenced_at) VALUES (?, ?, ?, ?, ?)",
                (
                    copy.container_id,
                    copy.docker_name,
                    copy.tenant_id,
                    copy.generation,
                    copy.fenced_at,
                ),
            )

    def kept_copies(self) -> list[KeptCopy]:
        rows = self._db.execute(
            "SELECT container_id, docker_name, tenant_id, generation, fenced_at"
            " FROM kept_copies ORDER BY fenced_at"
        )
        return [KeptCopy(*row) for row in rows]

    def kept_copy(self, container_id: str) -> KeptCopy | None:
        row = self._db.execute(
            "SELECT container_id, docker_name, tenant_id, generation, fenced_at"
            " FROM kept_copies WHERE container_id = ?",
            (container_id,),
        ).fetchone()
        return KeptCopy(*row) if row is not None else None

    def get(self, container_id: str) -> DesiredContainer | None:
        row = self._db.execute(
            "SELECT spec, running FROM containers WHERE container_id = ?", (container_id,)
        ).fetchone()
        return _entry(row) if row is not None else None

    def all(self) -> list[DesiredContainer]:
        rows = self._db.execute("SELECT spec, running FROM containers ORDER BY docker_name")
        return [_entry(row) for row in rows]


def _entry(row: tuple[str, int]) -> DesiredContainer:
    return DesiredContainer(ContainerSpec.model_validate_json(row[0]), bool(row[1]))
