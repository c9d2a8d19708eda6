"""edgecloud migrate and edgecloud migrations: the request, following the migration to its
end, and the history."""

import json
from typing import Any

import pytest

from .conftest import Run
from .fake_containers import container, validation_problem
from .fake_gateway import FakeGateway
from .fake_migrations import migration_view
from .problems import problem

pytestmark = pytest.mark.usefixtures("logged_in", "pauses")

WEB = "3f2a9c1b-4d5e-4f60-8a7b-0123456789ab"
DB = "9c1b3f2a-4d5e-4f60-8a7b-ba9876543210"
PI = "pi-1_020000000001"
PEER = "pi-2_020000000002"


def step(name: str, duration_ms: float | None) -> dict[str, Any]:
    return {"name": name, "started_at": "2025-06-01T12:00:01Z", "duration_ms": duration_ms}


MOVED = [step("select_peer", 12), step("configuration", 140), step("dependencies", 1500)]


@pytest.fixture(autouse=True)
def web(gateway: FakeGateway) -> None:
    gateway.containers = [container(WEB, "web", device=PI), container(DB, "db", device=PI)]


def test_migrate_follows_each_step_to_the_end(cli: Run, gateway: FakeGateway) -> None:
    gateway.migration_updates = [
        {"state": "planning", "steps": [step("select_peer", None)]},
        {"state": "transferring", "target": PEER, "steps": [MOVED[0], step("configuration", None)]},
        {"state": "transferring", "steps": MOVED[:2]},
        {
            "state": "completed",
            "steps": [*MOVED, step("start", 800), step("stop_source", 30)],
            "freeze_ms": 85.0,
            "finished_at": "2025-06-01T12:00:05Z",
        },
    ]

    result = cli("migrate", "web")

    assert result.exit_code == 0, result.output
    assert result.stdout == "mig-1\n"
    assert result.stderr == (
        "admin-web: migration mig-1 to a device the scheduler picks requested\n"
        "select_peer 12 ms\n"
        "configuration 140 ms\n"
        "dependencies 1.5 s\n"
        "start 800 ms\n"
        "stop_source 30 ms\n"
        f"completed: {PI} -> {PEER}, frozen 85 ms\n"
    )
    [sent] = gateway.sent("POST", f"/api/v1/containers/{WEB}/migrate")
    assert json.loads(sent.content) == {"device": None}
    assert len(gateway.sent("GET", "/api/v1/migrations/mig-1")) == 4


def test_to_names_the_device_and_json_prints_the_final_migration(
    cli: Run, gateway: FakeGateway
) -> None:
    gateway.migration_updates = [{"state": "completed", "steps": MOVED, "freeze_ms": 40.0}]

    result = cli("migrate", WEB[:8], "--to", PEER, "--json")

    assert result.exit_code == 0, result.output
    [sent] = gateway.sent("POST", f"/api/v1/containers/{WEB}/migrate")
    assert json.loads(sent.content) == {"device": PEER}
    final = json.loads(result.stdout)
    assert (final["id"], final["state"], final["target"]) == ("mig-1", "completed", PEER)
    assert f"admin-web: migration mig-1 to {PEER} requested\n" in result.stderr


@pytest.mark.parametrize(
    ("end", "exit_code", "last_lines"),
    [
        (
            {
                "state": "failed",
                "error_code": "no_suitable_peer",
                "error": "no device can take the container",
            },
            1,
            f"error: no device can take the container (no_suitable_peer)\nfailed: {PI} -> -\n",
        ),
        (
            {
                "state": "rolled_back",
                "target": PEER,
                "error_code": "start_failed",
                "error": "the peer could not start it",
                "freeze_ms": 12.0,
            },
            1,
            "error: the peer could not start it (start_failed)\n"
            f"rolled_back: {PI} -> {PEER}, frozen 12 ms\n",
        ),
        (
            {
                "state": "cold_restarted",
                "target": PEER,
                "lost_window": {"from": "2025-06-01T12:00:00Z", "until": "2025-06-01T12:00:09Z"},
            },
            0,
            f"cold_restarted: {PI} -> {PEER}\n"
            "it ran nowhere from 2025-06-01T12:00:00Z to 2025-06-01T12:00:09Z: "
            "data sent to it then may be lost\n",
        ),
        (
            # Level 1: following ends once it is kept; the hand-on may be days later.
            {"state": "stored", "target": "keeper-1", "keeper": "keeper-1", "level": 1},
            0,
            f"stored: {PI} -> kept on keeper-1 until a node can run it; it is handed on "
            "then (edgecloud migrations shows when)\n",
        ),
    ],
)
def test_the_exit_code_says_whether_the_container_moved(
    cli: Run, gateway: FakeGateway, end: dict[str, Any], exit_code: int, last_lines: str
) -> None:
    gateway.migration_updates = [{"steps": [step("select_peer", 9)], **end}]

    result = cli("migrate", "web")

    assert result.exit_code == exit_code, result.output
    assert result.stdout == "mig-1\n"
    assert result.stderr.endswith("select_peer 9 ms\n" + last_lines)


def test_a_refused_migration_prints_the_problem(cli: Run, gateway: FakeGateway) -> None:
    path = f"/api/v1/containers/{WEB}/migrate"
    gateway.answers["POST", path] = problem(
        409, "migration_in_progress", "the container is already being migrated"
    )

    result = cli("migrate", "web")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: the container is already being migrated (migration_in_progress)\n"
    )
    assert gateway.sent("GET", "/api/v1/migrations/mig-1") == []


def test_an_invalid_device_names_the_field(cli: Run, gateway: FakeGateway) -> None:
    gateway.answers["POST", f"/api/v1/containers/{WEB}/migrate"] = validation_problem(
        [{"loc": ["body", "device"], "msg": "String should match pattern '^[a-z0-9_]{1,100}$'"}]
    )

    result = cli("migrate", "web", "--to", "Not A Key")

    assert result.exit_code == 1
    assert result.stderr == (
        "error: invalid fields: device (validation_failed)\n"
        "  device: String should match pattern '^[a-z0-9_]{1,100}$'\n"
    )


def test_no_wait_prints_the_id_and_returns(cli: Run, gateway: FakeGateway) -> None:
    result = cli("migrate", "admin-db", "--no-wait")

    assert result.exit_code == 0, result.output
    assert result.stdout == "mig-1\n"
    assert result.stderr == "admin-db: migration mig-1 to a device the scheduler picks requested\n"
    assert gateway.sent("GET", "/api/v1/migrations/mig-1") == []
    assert gateway.migrations[0]["container"] == DB


def test_a_container_that_is_not_there_is_not_asked_for(cli: Run, gateway: FakeGateway) -> None:
    result = cli("migrate", "nope")

    assert result.exit_code == 1
    assert result.stderr == "error: no container matches 'nope'; see `edgecloud ps`\n"
    assert [r for r in gateway.requests if r.method == "POST"] == []


def test_migrations_lists_the_newest_first(cli: Run, gateway: FakeGateway) -> None:
    gateway.migrations = [
        migration_view("mig-3", WEB, target="keeper", state="stored", level=1, keeper="keeper"),
        migration_view("mig-2", DB, target=PEER, state="transferring", steps=MOVED[:1]),
        migration_view(
            "mig-1", WEB, target=PEER, reason="cpu", state="completed", freeze_ms=2500.0
        ),
    ]

    result = cli("migrations")

    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "ID", "CONTAINER", "FROM", "TO", "LEVEL", "REASON", "STATE", "FREEZE", "CREATED",
    ]  # fmt: skip
    assert rows[0].split()[:9] == [
        "mig-3", WEB[:12], PI, "kept", "on", "keeper", "1", "manual", "stored",
    ]  # fmt: skip
    assert rows[1].split()[:8] == [
        "mig-2", DB[:12], PI, PEER, "2", "manual", "transferring", "-",
    ]  # fmt: skip
    assert rows[2].split()[:9] == [
        "mig-1", WEB[:12], PI, PEER, "2", "cpu", "completed", "2.5", "s",
    ]  # fmt: skip
    [listed] = gateway.sent("GET", "/api/v1/migrations")
    assert listed.url.params["limit"] == "20"
    assert "container" not in listed.url.params


def test_migrations_of_one_container_as_json(cli: Run, gateway: FakeGateway) -> None:
    gateway.migrations = [
        migration_view("mig-3", WEB),
        migration_view("mig-2", DB),
        migration_view("mig-1", WEB),
    ]

    result = cli("migrations", "--container", "web", "--limit", "1", "--json")

    assert result.exit_code == 0, result.output
    assert [m["id"] for m in json.loads(result.stdout)] == ["mig-3"]
    [listed] = gateway.sent("GET", "/api/v1/migrations")
    assert (listed.url.params["container"], listed.url.params["limit"]) == (WEB, "1")


def test_migrations_prints_the_problem(cli: Run, gateway: FakeGateway) -> None:
    gateway.answers["GET", "/api/v1/migrations"] = problem(
        503, "upstream_unavailable", "migration-scheduler is unreachable"
    )

    result = cli("migrations")

    assert result.exit_code == 1
    assert result.stderr == "error: migration-scheduler is unreachable (upstream_unavailable)\n"
