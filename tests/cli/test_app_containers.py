"""edgecloud ps, start, stop, restart, rm, inspect: the table, naming a container by id, prefix
or name, and what each prints when done or queued."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from .conftest import Run
from .fake_containers import container, iso
from .fake_gateway import FakeGateway, device
from .problems import problem
from .test_app_devices import rows

PI = "pi-1_020000000001"
NUC = "nuc_020000000003"
WEB = "3f2a9c1b-4d5e-4f60-8a7b-0123456789ab"
DB = "3f2a9c1b-9e8d-4c7b-8a6f-0123456789ab"
CACHE = "8c1d2e3f-0000-4000-8000-0123456789ab"

pytestmark = pytest.mark.usefixtures("logged_in")


@pytest.fixture(autouse=True)
def fleet(gateway: FakeGateway) -> None:
    """web on pi-1 (online), db on nuc (offline), cache on pi-1: three, so ps follows pages."""
    gateway.devices = [device(PI), device(NUC, status="offline")]
    gateway.containers = [
        container(
            WEB,
            "web",
            device=PI,
            ports=[
                {"host": 30080, "container": 80, "protocol": "tcp"},
                {"host": 30053, "container": 53, "protocol": "udp"},
            ],
        ),
        container(DB, "db", device=NUC, state="exited", desired_state="stopped", exit_code=0),
        container(
            CACHE,
            "cache",
            device=PI,
            image="redis:7",
            state="pending",
            created_at=iso(datetime.now(UTC) - timedelta(hours=2)),
        ),
    ]


def test_ps_lists_every_page_as_a_table(cli: Run, gateway: FakeGateway) -> None:
    result = cli("ps")

    assert result.exit_code == 0, result.output
    assert [r.url.params.get("cursor") for r in gateway.sent("GET", "/api/v1/containers")] == [
        None, "2"
    ]  # fmt: skip
    # The widest ports pad the PORTS heading: blank cells are left out.
    assert [[c.strip() for c in row if c.strip()] for row in rows(result.stdout)] == [
        ["ID", "NAME", "DEVICE", "IMAGE", "STATE", "CREATED", "PORTS"],
        [
            "3f2a9c1b-4d5", "admin-web", PI, "edgecloud/busybox:latest", "running", "5m ago",
            "30080->80/tcp, 30053->53/udp",
        ],
        ["3f2a9c1b-9e8", "admin-db", NUC, "edgecloud/busybox:latest", "exited", "5m ago", "-"],
        ["8c1d2e3f-000", "admin-cache", PI, "redis:7", "pending", "2h ago", "-"],
    ]  # fmt: skip


def test_ps_for_one_device_asks_for_it_on_every_page(cli: Run, gateway: FakeGateway) -> None:
    gateway.page_size = 1
    result = cli("ps", "--device", PI)
    assert result.exit_code == 0, result.output
    assert [r.url.params.get("device") for r in gateway.sent("GET", "/api/v1/containers")] == [
        PI, PI
    ]  # fmt: skip
    assert "admin-db" not in result.stdout
    assert "admin-web" in result.stdout
    assert "admin-cache" in result.stdout


def test_ps_json_prints_every_item_raw(cli: Run, gateway: FakeGateway) -> None:
    result = cli("ps", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == gateway.containers


def test_ps_states_are_coloured_on_a_terminal(cli: Run) -> None:
    result = cli("ps", env={"FORCE_COLOR": "1", "TERM": "xterm"})
    assert result.exit_code == 0, result.output
    assert "\x1b[32mrunning" in result.stdout
    assert "\x1b[31mexited" in result.stdout
    assert "\x1b[33mpending" in result.stdout


def test_ps_with_no_containers(cli: Run, gateway: FakeGateway) -> None:
    gateway.containers = []
    result = cli("ps")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["ID", "NAME", "DEVICE", "IMAGE", "STATE", "CREATED", "PORTS"]


@pytest.mark.parametrize("ref", [WEB, "3f2a9c1b-4", "3f2a9c1b-4d5", "web", "admin-web"])
def test_stop_finds_the_container_by_id_prefix_or_name(
    cli: Run, gateway: FakeGateway, ref: str
) -> None:
    result = cli("stop", ref)
    assert result.exit_code == 0, result.output
    assert result.stdout == "admin-web: exited\n"
    assert result.stderr == ""
    assert len(gateway.sent("POST", f"/api/v1/containers/{WEB}/stop")) == 1


@pytest.mark.parametrize(("command", "state"), [("start", "running"), ("restart", "running")])
def test_start_and_restart_print_the_resulting_state(
    cli: Run, gateway: FakeGateway, command: str, state: str
) -> None:
    result = cli(command, "8c1d")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"admin-cache: {state}\n"
    assert len(gateway.sent("POST", f"/api/v1/containers/{CACHE}/{command}")) == 1


def test_an_ambiguous_prefix_lists_the_candidates(cli: Run, gateway: FakeGateway) -> None:
    result = cli("stop", "3f2a")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: id prefix '3f2a' matches 2 containers: "
        f"3f2a9c1b-4d5 (admin-web on {PI}), 3f2a9c1b-9e8 (admin-db on {NUC}); use the id\n"
    )
    assert [r.method for r in gateway.requests] == ["GET", "GET"]


def test_an_ambiguous_name_lists_the_candidates(cli: Run, gateway: FakeGateway) -> None:
    other = "99999999-0000-4000-8000-0123456789ab"
    gateway.containers.append(container(other, "web", device=NUC))
    result = cli("rm", "web")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: name 'web' matches 2 containers: "
        f"3f2a9c1b-4d5 (admin-web on {PI}), 99999999-000 (admin-web on {NUC}); use the id\n"
    )
    assert gateway.sent("DELETE", f"/api/v1/containers/{WEB}") == []


def test_a_name_wins_over_an_id_prefix(cli: Run, gateway: FakeGateway) -> None:
    gateway.containers.append(container("deadbeef-0000-4000-8000-0123456789ab", "8c1d"))
    result = cli("restart", "8c1d")
    assert result.exit_code == 0, result.output
    assert result.stdout == "admin-8c1d: running\n"


def test_a_prefix_needs_four_characters(cli: Run, gateway: FakeGateway) -> None:
    result = cli("start", "8c1")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no container is named '8c1'; an id prefix needs 4 characters or more\n"
    )
    assert gateway.sent("POST", f"/api/v1/containers/{CACHE}/start") == []


def test_an_unknown_container(cli: Run) -> None:
    result = cli("inspect", "zzzz")
    assert result.exit_code == 1
    assert result.stderr == "error: no container matches 'zzzz'; see `edgecloud ps`\n"


def test_stop_on_an_offline_device_is_queued(cli: Run, gateway: FakeGateway) -> None:
    result = cli("stop", "db")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"device {NUC} is offline: the stop is queued as command cmd-1; "
        f"it runs when the device is back (edgecloud inspect {DB})\n"
    )
    assert result.stdout == "admin-db: exited (stop queued)\n"


def test_rm_removes(cli: Run, gateway: FakeGateway) -> None:
    result = cli("rm", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == "admin-web: removed\n"
    assert len(gateway.sent("DELETE", f"/api/v1/containers/{WEB}")) == 1
    assert WEB not in [c["id"] for c in gateway.containers]


def test_rm_on_an_offline_device_is_queued(cli: Run, gateway: FakeGateway) -> None:
    result = cli("rm", DB)
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"device {NUC} is offline: the removal is queued as command cmd-1; "
        f"it runs when the device is back (edgecloud inspect {DB})\n"
    )
    assert result.stdout == "admin-db: exited (remove queued)\n"


def test_a_refused_action_is_reported(cli: Run, gateway: FakeGateway) -> None:
    gateway.answers["POST", f"/api/v1/containers/{WEB}/start"] = problem(
        409, "container_removed", f"container {WEB} has been removed"
    )
    result = cli("start", "web")
    assert result.exit_code == 1
    assert result.stderr == f"error: container {WEB} has been removed (container_removed)\n"


def test_the_device_cannot_do_it(cli: Run, gateway: FakeGateway) -> None:
    gateway.answers["POST", f"/api/v1/containers/{WEB}/restart"] = problem(
        422, "container_error", "the device could not restart: oom", container=WEB, command="c-9"
    )
    result = cli("restart", "web")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the device could not restart: oom (container_error)\n"
        f"container {WEB}, command c-9\n"
    )


def test_inspect_prints_the_container_as_json(cli: Run, gateway: FakeGateway) -> None:
    result = cli("inspect", "cache")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == gateway.containers[2]
    assert result.stdout.startswith('{\n  "id": ')
    assert result.stderr == ""
    [asked] = gateway.sent("GET", f"/api/v1/containers/{CACHE}")
    assert "live" not in asked.url.params


def test_inspect_live_asks_the_device(cli: Run, gateway: FakeGateway) -> None:
    result = cli("inspect", "web", "--live")
    assert result.exit_code == 0, result.output
    [asked] = gateway.sent("GET", f"/api/v1/containers/{WEB}")
    assert asked.url.params["live"] == "true"


def test_inspect_shows_the_command_the_container_waits_for(cli: Run, gateway: FakeGateway) -> None:
    assert cli("stop", "db").exit_code == 0  # queues cmd-1
    gateway.containers[1]["command"] = "cmd-1"
    result = cli("inspect", "db")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["command"] == "cmd-1"
    assert result.stderr == (
        "command cmd-1: stop queued (created 2025-06-01 12:00 UTC, 0 attempts)\n"
    )


def test_inspect_shows_why_a_command_failed(cli: Run, gateway: FakeGateway) -> None:
    assert cli("stop", "db").exit_code == 0
    gateway.commands["cmd-1"].update(
        state="failed", attempts=1, error="no such container", error_code="container_missing"
    )
    gateway.containers[1]["command"] = "cmd-1"
    result = cli("inspect", "db")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "command cmd-1: stop failed (created 2025-06-01 12:00 UTC, 1 attempts): "
        "no such container (container_missing)\n"
    )


def test_actions_wait_longer_than_the_device_may_take(cli: Run, gateway: FakeGateway) -> None:
    assert cli("stop", "web").exit_code == 0
    [stop] = gateway.sent("POST", f"/api/v1/containers/{WEB}/stop")
    assert stop.extensions["timeout"]["read"] == 30.0
