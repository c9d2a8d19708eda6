"""edgecloud account password and edgecloud members list | reset-password | disable |
enable, against the contract in the brief."""

import json

import pytest

from edgecloud_cli import config

from .conftest import Run
from .fake_gateway import PASSWORD, FakeGateway

pytestmark = pytest.mark.usefixtures("logged_in")

BOB_ID = "0b0b0b0b-0000-4000-8000-000000000002"


@pytest.fixture(autouse=True)
def bob(gateway: FakeGateway) -> None:
    gateway.members = [
        {
            "user": {"id": "u1", "username": "admin", "created_at": "2025-01-01T00:00:00Z"},
            "role": "tenant_admin",
            "joined_at": "2025-01-01T00:00:00Z",
        },
        {
            "user": {
                "id": BOB_ID,
                "username": "bob",
                "created_at": "2025-01-01T00:00:00Z",
                "disabled_at": None,
            },
            "role": "member",
            "joined_at": "2025-01-02T00:00:00Z",
        },
    ]


def test_password_change_sends_both_and_forgets_the_ended_login(
    cli: Run, gateway: FakeGateway
) -> None:
    result = cli("account", "password", "--password-stdin", input=f"{PASSWORD}\nnew passphrase 1\n")
    assert result.exit_code == 0, result.output
    assert "log in again" in result.stdout
    [sent] = gateway.sent("POST", "/api/v1/me/password")
    assert json.loads(sent.content) == {
        "current_password": PASSWORD,
        "new_password": "new passphrase 1",
    }
    stored = config.load()
    assert stored is not None
    assert stored.token is None  # the login ended with the change


def test_a_wrong_current_password_is_reported(cli: Run, gateway: FakeGateway) -> None:
    result = cli("account", "password", "--password-stdin", input="nope\nnew passphrase 1\n")
    assert result.exit_code == 1
    assert result.stderr == "error: the current password is not right (wrong_password)\n"


def test_members_are_listed_with_their_state(cli: Run, gateway: FakeGateway) -> None:
    gateway.members[1]["user"]["disabled_at"] = "2025-02-01T00:00:00Z"
    result = cli("members", "list")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["ID", "USERNAME", "ROLE", "JOINED", "STATE"]
    assert (rows[2][1], rows[2][2], rows[2][-1]) == ("bob", "member", "disabled")


def test_reset_password_by_username_sets_the_password(cli: Run, gateway: FakeGateway) -> None:
    result = cli("members", "reset-password", "bob", "--password-stdin", input="bobs new pass\n")
    assert result.exit_code == 0, result.output
    [sent] = gateway.sent("POST", f"/api/v1/users/{BOB_ID}/password")
    assert json.loads(sent.content) == {"password": "bobs new pass"}
    assert result.stdout == "Password of bob set; their sessions and tokens have ended\n"


def test_a_one_time_reset_prints_the_token_alone(cli: Run, gateway: FakeGateway) -> None:
    result = cli("members", "reset-password", BOB_ID, "--one-time")
    assert result.exit_code == 0, result.output
    assert result.stdout == "ecr_reset_1\n"
    [sent] = gateway.sent("POST", f"/api/v1/users/{BOB_ID}/password")
    assert json.loads(sent.content) == {}


def test_disable_and_enable(cli: Run, gateway: FakeGateway) -> None:
    assert cli("members", "disable", "bob").stdout == "Disabled bob\n"
    assert gateway.members[1]["user"]["disabled_at"] is not None
    assert cli("members", "enable", "bob").stdout == "Enabled bob\n"
    assert gateway.members[1]["user"]["disabled_at"] is None


def test_an_unknown_user_is_reported(cli: Run, gateway: FakeGateway) -> None:
    result = cli("members", "disable", "nobody")
    assert result.exit_code == 1
    assert "no member named nobody" in result.stderr
    unknown_id = cli("members", "disable", "ffffffff-0000-4000-8000-000000000009")
    assert unknown_id.exit_code == 1
    assert "(user_not_found)" in unknown_id.stderr
