"""The fake gateway's migrations (see fake_gateway.py): a migrate request starts one, and
each read of it moves it on by the next of ``migration_updates``."""

import itertools
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from .problems import problem

CREATED_AT = "2025-06-01T12:00:00Z"


def migration_view(migration_id: str, container_id: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": migration_id,
        "container": container_id,
        "source": "pi-1_020000000001",
        "target": None,
        "reason": "manual",
        "state": "requested",
        "steps": [],
        "freeze_ms": None,
        "error_code": None,
        "error": None,
        "lost_window": None,
        "level": 2,
        "keeper": None,
        "created_at": CREATED_AT,
        "finished_at": None,
    }
    return {**base, **changes}


@dataclass
class MigrationRoutes(ABC):
    migrations: list[dict[str, Any]] = field(default_factory=list)
    """Newest first, as the API lists them."""
    migration_updates: list[dict[str, Any]] = field(default_factory=list)
    """Applied one per read of a migration; the last state then stays."""
    _migration_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def migration_route(self, request: httpx.Request) -> httpx.Response | None:
        """The answer to a migrate or migrations request; None for other paths."""
        parts = request.url.path.removeprefix("/api/v1/").split("/")
        match request.method, parts:
            case "POST", ["containers", container_id, "migrate"]:
                return self._migrate(container_id, json.loads(request.content))
            case "GET", ["migrations"]:
                return self._list_migrations(request)
            case "GET", ["migrations", migration_id]:
                return self._read_migration(migration_id)
        return None

    def _migrate(self, container_id: str, body: dict[str, Any]) -> httpx.Response:
        found = self.known_container(container_id)
        if found is None:
            return problem(404, "container_not_found", f"container {container_id} not found")
        migration_id = f"mig-{next(self._migration_numbers)}"
        view = migration_view(
            migration_id, container_id, source=found["device"], target=body.get("device")
        )
        self.migrations.insert(0, view)
        return httpx.Response(202, json={"migration": migration_id})

    def _list_migrations(self, request: httpx.Request) -> httpx.Response:
        container = request.url.params.get("container")
        limit = int(request.url.params.get("limit", "100"))
        items = [m for m in self.migrations if container in (None, m["container"])]
        return httpx.Response(200, json={"items": items[:limit], "next_cursor": None})

    def _read_migration(self, migration_id: str) -> httpx.Response:
        found = next((m for m in self.migrations if m["id"] == migration_id), None)
        if found is None:
            return problem(404, "migration_not_found", f"migration {migration_id} not found")
        if self.migration_updates:
            found.update(self.migration_updates.pop(0))
        return httpx.Response(200, json=found)

    # What the gateway these routes are mixed into provides.
    @abstractmethod
    def known_container(self, container_id: str) -> dict[str, Any] | None: ...
