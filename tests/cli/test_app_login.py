"""login, logout, whoami, and how the global options pick the gateway and the token."""

import json
import stat
from pathlib import Path

import pytest

from edgecloud_cli import config
from edgecloud_cli.config import Credentials
from edgecloud_cli.target import DEFAULT_URL

from .conftest import Run
from .fake_gateway import PASSWORD, USERNAME, FakeGateway
from .problems import problem


def stored_file(config_home: Path) -> Path:
    return config_home / "edgecloud" / "credentials.json"


def test_login_with_password_stdin_stores_the_token(
    cli: Run, gateway: FakeGateway, config_home: Path
) -> None:
    result = cli("login", "--username", USERNAME, "--password-stdin", input=f"{PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Logged in as admin to {DEFAULT_URL} (token expires 2030-01-02 03:04 UTC)\n"
    )
    path = stored_file(config_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {
        "url": DEFAULT_URL,
        "username": "admin",
        "token": "ec_login_1",
        "expires_at": "2030-01-02T03:04:05Z",
    }
    [sent] = gateway.sent("POST", "/api/v1/auth/login")
    assert json.loads(sent.content) == {"username": "admin", "password": PASSWORD}


def test_login_prompts_and_hides_the_password(cli: Run, gateway: FakeGateway) -> None:
    result = cli("login", input=f"{USERNAME}\n{PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert "Username: admin" in result.output
    assert "Password: " in result.output
    assert PASSWORD not in result.output
    assert config.load() == Credentials(DEFAULT_URL, "admin", "ec_login_1", "2030-01-02T03:04:05Z")


def test_login_with_a_wrong_password_fails_and_stores_nothing(
    cli: Run, gateway: FakeGateway
) -> None:
    result = cli("login", "-u", USERNAME, "--password-stdin", input="guess\n")

    assert result.exit_code == 1
    assert result.stderr == "error: wrong username or password (invalid_credentials)\n"
    assert result.stdout == ""
    assert config.load() is None


def test_password_stdin_needs_a_username(cli: Run, gateway: FakeGateway) -> None:
    result = cli("login", "--password-stdin", input=f"{PASSWORD}\n")
    assert result.exit_code == 2
    assert "--username" in result.stderr
    assert gateway.requests == []


def test_login_remembers_the_url_for_later_commands(cli: Run, gateway: FakeGateway) -> None:
    url = "https://edge.example:8443"
    login = cli("--url", f"{url}/", "login", "-u", USERNAME, "--password-stdin", input=PASSWORD)
    assert login.exit_code == 0, login.output
    assert f"to {url} (" in login.stdout

    whoami = cli("whoami")
    assert whoami.exit_code == 0, whoami.output
    assert str(gateway.requests[-1].url) == f"{url}/api/v1/me"


def test_whoami_shows_user_tenant_and_roles(
    cli: Run, gateway: FakeGateway, logged_in: Credentials
) -> None:
    result = cli("whoami")

    assert result.exit_code == 0, result.output
    assert result.stdout == "user:   admin\ntenant: operators\nroles:  operator, admin\n"
    [sent] = gateway.requests
    assert sent.headers["Authorization"] == f"Bearer {logged_in.token}"


def test_whoami_without_a_login_says_so(cli: Run, gateway: FakeGateway) -> None:
    result = cli("whoami")
    assert result.exit_code == 1
    assert result.stderr == f"error: not logged in to {DEFAULT_URL}; run `edgecloud login`\n"
    assert gateway.requests == []


def test_the_stored_token_is_never_sent_to_another_gateway(
    cli: Run, gateway: FakeGateway, logged_in: Credentials
) -> None:
    result = cli("--url", "http://elsewhere:8000", "whoami")
    assert result.exit_code == 1
    assert "not logged in to http://elsewhere:8000" in result.stderr
    assert gateway.requests == []


@pytest.mark.parametrize("how", ["option", "env"])
def test_token_and_url_options_override_the_stored_login(
    cli: Run, gateway: FakeGateway, logged_in: Credentials, how: str
) -> None:
    other = gateway.issue()
    url = "http://other:9000"
    if how == "option":
        result = cli("--url", url, "--token", other, "whoami")
    else:
        result = cli("whoami", env={"EDGECLOUD_URL": url, "EDGECLOUD_TOKEN": other})

    assert result.exit_code == 0, result.output
    [sent] = gateway.requests
    assert str(sent.url) == f"{url}/api/v1/me"
    assert sent.headers["Authorization"] == f"Bearer {other}"


def test_an_unsafe_credentials_file_is_refused(
    cli: Run, gateway: FakeGateway, logged_in: Credentials, config_home: Path
) -> None:
    stored_file(config_home).chmod(0o640)
    result = cli("whoami")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "accessible by group or others (mode 0640)" in result.stderr
    assert "chmod 600" in result.stderr
    assert gateway.requests == []


def test_logout_revokes_and_forgets_the_token(
    cli: Run, gateway: FakeGateway, logged_in: Credentials
) -> None:
    result = cli("logout")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"Logged out of {DEFAULT_URL}\n"
    [sent] = gateway.sent("POST", "/api/v1/auth/logout")
    assert sent.headers["Authorization"] == f"Bearer {logged_in.token}"
    assert logged_in.token not in gateway.live_tokens
    # The URL and username stay, so the next login goes to the same gateway.
    assert config.load() == Credentials(DEFAULT_URL, USERNAME, None, None)
    assert cli("whoami").exit_code == 1


def test_logout_forgets_a_token_the_server_already_rejects(
    cli: Run, gateway: FakeGateway, logged_in: Credentials
) -> None:
    gateway.live_tokens.clear()
    result = cli("logout")
    assert result.exit_code == 0, result.output
    assert config.load() == Credentials(DEFAULT_URL, USERNAME, None, None)


def test_logout_keeps_the_token_when_the_server_cannot_revoke_it(
    cli: Run, gateway: FakeGateway, logged_in: Credentials
) -> None:
    gateway.answers["POST", "/api/v1/auth/logout"] = problem(503, "unavailable", "db down")
    result = cli("logout")
    assert result.exit_code == 1
    assert result.stderr == "error: db down (unavailable)\n"
    assert config.load() == logged_in


def test_logout_with_a_token_option_keeps_the_stored_login(
    cli: Run, gateway: FakeGateway, logged_in: Credentials
) -> None:
    other = gateway.issue()
    result = cli("--token", other, "logout")
    assert result.exit_code == 0, result.output
    assert other not in gateway.live_tokens
    assert config.load() == logged_in


def test_logout_without_a_login_is_a_no_op(cli: Run, gateway: FakeGateway) -> None:
    result = cli("logout")
    assert result.exit_code == 0
    assert result.stderr == f"Not logged in to {DEFAULT_URL}\n"
    assert gateway.requests == []


def test_an_unwritable_config_directory_is_one_line(
    cli: Run, gateway: FakeGateway, config_home: Path
) -> None:
    # A file where the directory should be (permission bits would not stop root).
    config_home.mkdir()
    (config_home / "edgecloud").write_text("")
    result = cli("--url", DEFAULT_URL, "login", "-u", USERNAME, "--password-stdin", input=PASSWORD)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot write {stored_file(config_home)}: ")
    assert "Traceback" not in result.output
