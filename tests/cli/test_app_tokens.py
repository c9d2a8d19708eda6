"""edgecloud tokens list | create | revoke, against the contract in the brief."""

import json

import pytest

from .conftest import Run
from .fake_gateway import FakeGateway

pytestmark = pytest.mark.usefixtures("logged_in")


def test_create_prints_the_token_once_with_a_warning(cli: Run, gateway: FakeGateway) -> None:
    result = cli("tokens", "create", "ci-deploy", "--days", "30")

    assert result.exit_code == 0, result.output
    # Only the token on stdout, so TOKEN=$(edgecloud tokens create ci) works.
    assert result.stdout == "ec_api_2\n"
    assert "Created token ci-deploy (id tok-2, expires 2025-04-01 00:00 UTC)" in result.stderr
    assert "will not be shown again" in result.stderr
    [sent] = gateway.sent("POST", "/api/v1/tokens")
    assert json.loads(sent.content) == {"name": "ci-deploy", "expires_in_days": 30}


def test_create_defaults_to_90_days(cli: Run, gateway: FakeGateway) -> None:
    assert cli("tokens", "create", "laptop").exit_code == 0
    [sent] = gateway.sent("POST", "/api/v1/tokens")
    assert json.loads(sent.content)["expires_in_days"] == 90


@pytest.mark.parametrize("days", ["0", "366"])
def test_create_refuses_a_lifetime_out_of_range(cli: Run, gateway: FakeGateway, days: str) -> None:
    result = cli("tokens", "create", "x", "--days", days)
    assert result.exit_code == 2
    assert gateway.sent("POST", "/api/v1/tokens") == []


def test_list_shows_a_table_without_values(cli: Run, gateway: FakeGateway) -> None:
    cli("tokens", "create", "ci")
    cli("tokens", "create", "laptop")
    gateway.api_tokens["tok-3"]["last_used_at"] = "2025-01-01T00:00:00Z"

    result = cli("tokens", "list")

    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["ID", "NAME", "CREATED", "EXPIRES", "LAST", "USED"]
    assert lines[1][:2] == ["tok-2", "ci"]
    assert lines[1][-1] == "never"
    assert lines[2][:2] == ["tok-3", "laptop"]
    assert lines[2][-1] == "ago"
    assert "2025-01-01 00:00 UTC" in result.stdout
    assert "ec_api_" not in result.stdout


def test_revoke_deletes_the_token(cli: Run, gateway: FakeGateway) -> None:
    cli("tokens", "create", "ci")

    result = cli("tokens", "revoke", "tok-2")

    assert result.exit_code == 0, result.output
    assert result.stdout == "Revoked token tok-2\n"
    assert gateway.api_tokens == {}


def test_revoke_an_unknown_token_reports_the_problem(cli: Run, gateway: FakeGateway) -> None:
    result = cli("tokens", "revoke", "../devices")
    assert result.exit_code == 1
    assert result.stderr == "error: token ../devices not found (token_not_found)\n"
    # The id is one path segment, whatever it contains.
    [sent] = gateway.sent("DELETE", "/api/v1/tokens/../devices")
    assert sent.url.raw_path == b"/api/v1/tokens/..%2Fdevices"
