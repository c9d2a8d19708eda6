"""edgecloud interfaces: list with holders, declare, remove; run --interface/--subscribe."""

import json

import httpx
import pytest

from .conftest import Run
from .fake_gateway import FakeGateway
from .problems import problem

KEY = "pi-1_020000000001"
PATH = f"/api/v1/devices/{KEY}/interfaces"


def interface(name: str, **changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": name,
        "device": KEY,
        "kind": "serial",
        "path": "/dev/ttyUSB0",
        "container_path": "/dev/ttyUSB0",
        "topic": None,
        "read_only": False,
        "shareable": False,
        "tenants": ["t-1"],
        "description": "",
        "holders": [],
    }
    return {**base, **changes}


@pytest.mark.usefixtures("logged_in")
def test_the_list_shows_where_each_is_and_who_holds_it(cli: Run, gateway: FakeGateway) -> None:
    holder = {"container": "c-1", "name": "admin-logger", "tenant": "t-1", "since": None}
    stranger = {"container": None, "name": None, "tenant": None, "since": None}
    gateway.answers[("GET", PATH)] = httpx.Response(
        200,
        json=[
            interface("serial0", holders=[holder]),
            interface(
                "temps",
                kind="sensor",
                path=None,
                container_path=None,
                topic="sensors/+/temp",
                shareable=True,
                read_only=True,
                holders=[holder, stranger],
            ),
        ],
    )
    result = cli("interfaces", "list", KEY)
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[1][:5] == ["serial0", "serial", "/dev/ttyUSB0", "/dev/ttyUSB0", "rw"]
    assert lines[1][-1] == "admin-logger"
    assert "sensors/+/temp" in lines[2]
    assert "another tenant" in result.stdout
    raw = cli("interfaces", "list", KEY, "--json")
    assert json.loads(raw.stdout)[0]["name"] == "serial0"


@pytest.mark.usefixtures("logged_in")
def test_declare_sends_the_declaration_and_remove_deletes(cli: Run, gateway: FakeGateway) -> None:
    gateway.answers[("PUT", f"{PATH}/cam")] = httpx.Response(
        201, json=interface("cam", kind="camera", path="/dev/video0")
    )
    gateway.answers[("DELETE", f"{PATH}/cam")] = httpx.Response(204)
    declared = cli(
        "interfaces", "declare", KEY, "cam", "--kind", "camera", "--path", "/dev/video0",
        "--read-only", "--shareable", "--tenant", "acme", "--tenant", "globex",
    )  # fmt: skip
    assert declared.exit_code == 0, declared.output
    assert declared.stdout == f"Declared cam (camera) on {KEY}\n"
    sent = json.loads(gateway.sent("PUT", f"{PATH}/cam")[0].content)
    assert sent == {
        "kind": "camera",
        "path": "/dev/video0",
        "container_path": None,
        "topic": None,
        "read_only": True,
        "shareable": True,
        "tenants": ["acme", "globex"],
        "description": "",
    }
    removed = cli("interfaces", "remove", KEY, "cam")
    assert removed.exit_code == 0, removed.output
    assert gateway.sent("DELETE", f"{PATH}/cam")


@pytest.mark.usefixtures("logged_in")
def test_a_refusal_is_one_line(cli: Run, gateway: FakeGateway) -> None:
    gateway.answers[("PUT", f"{PATH}/x")] = problem(
        422, "tenant_not_granted", "the device is not granted to acme: grant it first"
    )
    result = cli("interfaces", "declare", KEY, "x", "--kind", "gpio", "--path", "/dev/gpiochip0",
                 "--tenant", "acme")  # fmt: skip
    assert result.exit_code == 1
    assert "grant it first" in result.stderr
