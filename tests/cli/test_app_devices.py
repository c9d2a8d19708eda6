"""edgecloud devices: all pages, a readable table, raw JSON."""

import json

import pytest

from edgecloud_cli.config import Credentials

from .conftest import Run
from .fake_gateway import FakeGateway, device


@pytest.fixture
def fleet(gateway: FakeGateway) -> list[dict[str, object]]:
    """Three devices, so the fake's pages of two make the CLI follow a cursor."""
    gateway.devices = [
        device("pi-1_020000000001"),
        device(
            "pi-2_020000000002",
            status="degraded",
            link="lowpan",
            metrics={"cpu_percent": 97.25, "memory_used": None, "disk_free": None},
        ),
        device(
            "nuc_020000000003",
            status="offline",
            link=None,
            last_seen=None,
            arch="x86_64",
            memory_total=512 * 1024**2,
            metrics={"cpu_percent": None, "memory_used": None, "disk_free": None},
        ),
    ]
    return gateway.devices


def rows(stdout: str) -> list[list[str]]:
    # Columns are separated by runs of two or more spaces (single spaces occur in values).
    return [[cell for cell in line.split("  ") if cell] for line in stdout.splitlines()]


@pytest.mark.usefixtures("logged_in", "fleet")
def test_devices_table_follows_pages_and_shows_nulls(cli: Run, gateway: FakeGateway) -> None:
    result = cli("devices")

    assert result.exit_code == 0, result.output
    pages = gateway.sent("GET", "/api/v1/devices")
    assert [r.url.params.get("cursor") for r in pages] == [None, "2"]
    assert [[c.strip() for c in row] for row in rows(result.stdout)] == [
        ["KEY", "NAME", "STATUS", "LINK", "LOCATION", "ARCH", "LAST SEEN", "CPU%", "MEM"],
        ["pi-1_020000000001", "pi-1", "online", "wan", "lab", "aarch64", "5m ago", "12.5",
         "1.5 GiB/4.0 GiB"],
        ["pi-2_020000000002", "pi-2", "degraded", "lowpan", "lab", "aarch64", "5m ago", "97.2",
         "-/4.0 GiB"],
        ["nuc_020000000003", "nuc", "offline", "-", "lab", "x86_64", "-", "-", "-/512.0 MiB"],
    ]  # fmt: skip


@pytest.mark.usefixtures("logged_in", "fleet")
def test_devices_are_not_coloured_when_stdout_is_not_a_terminal(cli: Run) -> None:
    result = cli("devices")
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.stdout


@pytest.mark.usefixtures("logged_in", "fleet")
def test_devices_status_is_coloured_on_a_terminal(cli: Run) -> None:
    # FORCE_COLOR makes rich treat the captured stdout as a terminal.
    result = cli("devices", env={"FORCE_COLOR": "1", "TERM": "xterm"})
    assert result.exit_code == 0, result.output
    assert "\x1b[32monline" in result.stdout
    assert "\x1b[33mdegraded" in result.stdout
    assert "\x1b[31moffline" in result.stdout


@pytest.mark.usefixtures("logged_in")
def test_devices_json_prints_every_item_raw(
    cli: Run, fleet: list[dict[str, object]], gateway: FakeGateway
) -> None:
    result = cli("devices", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == fleet
    assert len(gateway.sent("GET", "/api/v1/devices")) == 2


def test_a_name_with_markup_is_printed_as_is(
    cli: Run, gateway: FakeGateway, logged_in: Credentials
) -> None:
    gateway.devices = [device("odd_020000000009", name="[red]odd[/red] :smile:")]
    result = cli("devices")
    assert result.exit_code == 0, result.output
    assert "[red]odd[/red] :smile:" in result.stdout


@pytest.mark.usefixtures("logged_in")
def test_no_devices_prints_only_the_header(cli: Run) -> None:
    result = cli("devices")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [
        "KEY", "NAME", "STATUS", "LINK", "LOCATION", "ARCH", "LAST", "SEEN", "CPU%", "MEM"
    ]  # fmt: skip
