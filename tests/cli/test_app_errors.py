"""Failures end as one ``error:`` line on stderr and exit 1, never as a traceback."""

import socket

import httpx
import pytest

from edgecloud_cli import context
from edgecloud_cli.client import Client
from edgecloud_cli.config import Credentials

from .conftest import Run
from .fake_gateway import FakeGateway
from .problems import problem


def test_a_rejected_token_suggests_logging_in(
    cli: Run, gateway: FakeGateway, logged_in: Credentials
) -> None:
    gateway.live_tokens.clear()
    result = cli("devices")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: the token is invalid, expired or revoked (token_invalid)\n"
        "hint: run `edgecloud login` to sign in\n"
    )


def test_rate_limiting_shows_retry_after(
    cli: Run, gateway: FakeGateway, logged_in: Credentials
) -> None:
    gateway.answers["GET", "/api/v1/devices"] = problem(
        429, "rate_limited", "too many requests", headers={"Retry-After": "30"}
    )
    result = cli("devices")
    assert result.exit_code == 1
    assert result.stderr == "error: too many requests (rate_limited)\nretry after 30 s\n"


def test_a_throttled_login_shows_retry_after_and_no_login_hint(
    cli: Run, gateway: FakeGateway
) -> None:
    gateway.answers["POST", "/api/v1/auth/login"] = problem(
        429, "login_throttled", "too many failed sign-ins", headers={"Retry-After": "12"}
    )
    result = cli("login", "-u", "admin", "--password-stdin", input="pw\n")
    assert result.exit_code == 1
    assert result.stderr == "error: too many failed sign-ins (login_throttled)\nretry after 12 s\n"


def test_an_answer_that_is_not_problem_json_falls_back_to_the_status(
    cli: Run, gateway: FakeGateway, logged_in: Credentials
) -> None:
    gateway.answers["GET", "/api/v1/me"] = httpx.Response(502, text="<html>bad gateway</html>")
    result = cli("whoami")
    assert result.exit_code == 1
    assert result.stderr == "error: Bad Gateway (http_502)\n"


def test_an_unreachable_gateway_is_one_line(cli: Run) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: the real client gets "connection refused".
    url = f"http://127.0.0.1:{port}"
    result = cli("--url", url, "--token", "ec_x", "whoami")
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot reach {url}\n"
    assert "Traceback" not in result.output


def test_an_unreachable_gateway_during_login(cli: Run) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = cli("--url", url, "login", "-u", "admin", "--password-stdin", input="pw\n")
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot reach {url}\n"


def test_a_gateway_that_does_not_answer_times_out(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    monkeypatch.setattr(
        context,
        "open_client",
        lambda url, token=None, **_: Client(url, token=token, transport=httpx.MockTransport(hang)),
    )
    result = cli("--token", "ec_x", "whoami")
    assert result.exit_code == 1
    assert result.stderr == "error: http://127.0.0.1:8000 did not answer within 10 s\n"


def test_every_request_has_a_10_second_timeout(
    cli: Run, gateway: FakeGateway, logged_in: Credentials
) -> None:
    for command in (["whoami"], ["devices"], ["tokens", "list"], ["logout"]):
        cli(*command)
    assert len(gateway.requests) == 4
    for request in gateway.requests:
        assert request.extensions["timeout"] == {
            "connect": 10.0, "read": 10.0, "write": 10.0, "pool": 10.0
        }  # fmt: skip


def test_a_url_without_scheme_is_refused(cli: Run, gateway: FakeGateway) -> None:
    result = cli("--url", "gateway:8000", "--token", "ec_x", "whoami")
    assert result.exit_code == 1
    assert "must start with http:// or https://" in result.stderr
    assert gateway.requests == []
