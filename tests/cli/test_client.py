"""The API client on its own: bearer only, cookies ignored, errors translated."""

import httpx
import pytest

from edgecloud_cli.client import NO_ANSWER, ApiError, Client

from .fake_gateway import PASSWORD, USERNAME, FakeGateway
from .problems import problem


def client_for(gateway: FakeGateway, token: str | None = None) -> Client:
    return Client("http://gw", token=token, transport=httpx.MockTransport(gateway))


def test_cookies_from_login_are_not_sent_back() -> None:
    gateway = FakeGateway()
    with client_for(gateway) as client:
        client.login(username=USERNAME, password=PASSWORD)
        # The login answer set a session cookie (a plain httpx.Client would send it back).
        with pytest.raises(ApiError) as caught:
            client.me()
    assert caught.value.status == 401
    assert "cookie" not in gateway.requests[-1].headers


def test_error_answers_become_api_errors() -> None:
    gateway = FakeGateway()
    gateway.answers["GET", "/api/v1/me"] = problem(
        429, "rate_limited", "slow down", headers={"Retry-After": "7"}
    )
    with client_for(gateway, "t") as client, pytest.raises(ApiError) as caught:
        client.me()
    assert (caught.value.status, caught.value.code, caught.value.detail) == (
        429, "rate_limited", "slow down"
    )  # fmt: skip
    assert caught.value.retry_after == "7"


def test_connection_errors_have_no_status() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = Client("http://gw", transport=httpx.MockTransport(refuse))
    with client, pytest.raises(ApiError) as caught:
        client.me()
    assert caught.value.status == NO_ANSWER
    assert caught.value.code == "unreachable"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_a_page_that_is_not_a_list_is_an_error() -> None:
    gateway = FakeGateway()
    gateway.answers["GET", "/api/v1/devices"] = httpx.Response(200, json={"oops": 1})
    with client_for(gateway, gateway.issue()) as client, pytest.raises(ApiError) as caught:
        client.devices()
    assert caught.value.code == "invalid_response"
