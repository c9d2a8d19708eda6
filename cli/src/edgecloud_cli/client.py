"""A small synchronous client for the gateway's public REST API (``/api/v1``).

Every failure surfaces as one error type, :class:`ApiError`: a problem+json answer keeps its
status, code and detail; no answer at all (refused, timed out, bad URL) has status 0.
"""

from collections.abc import Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, NotRequired, TypedDict, cast
from urllib.parse import quote

import httpx

from . import __version__

TIMEOUT_S = 10.0
NO_ANSWER = 0
"""The status of an :class:`ApiError` raised when the gateway did not answer."""


class ApiError(Exception):
    """The gateway answered with an error, or (``status == NO_ANSWER``) did not answer."""

    def __init__(self, status: int, code: str, detail: str, retry_after: str | None = None):
        super().__init__(f"{detail} ({code})")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


class Login(TypedDict):
    access_token: str
    token_type: str
    expires_at: str
    csrf_token: NotRequired[str]


class User(TypedDict):
    id: str
    username: str
    created_at: str


class Tenant(TypedDict):
    id: str
    name: str


class Me(TypedDict):
    user: User
    tenant: Tenant
    roles: list[str]


class DeviceMetrics(TypedDict):
    cpu_percent: float | None
    memory_used: int | None
    disk_free: int | None


class Device(TypedDict):
    key: str
    id: str
    name: str
    mac: str
    location: str | None
    arch: str
    os: str
    kernel: str
    cpu_count: int
    memory_total: int
    disk_total: int
    status: str
    link: str | None
    last_seen: str | None
    metrics: DeviceMetrics | None


class Token(TypedDict):
    id: str
    name: str
    created_at: str
    expires_at: str
    last_used_at: str | None


class CreatedToken(Token):
    token: str


class Client:
    """The public API as seen by one caller; use it as a context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = TIMEOUT_S,
    ) -> None:
        self.base_url = base_url
        headers = {"User-Agent": f"edgecloud-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # The gateway's session cookie is for the dashboard; we authenticate with the bearer
        # token alone, so a jar that accepts no cookie keeps requests from mixing the two.
        jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        try:
            self._http = httpx.Client(
                base_url=base_url,
                headers=headers,
                cookies=jar,
                timeout=timeout,
                transport=transport,
            )
        except httpx.InvalidURL as err:
            raise ApiError(NO_ANSWER, "invalid_url", f"invalid URL {base_url}: {err}") from err

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def login(self, *, username: str, password: str) -> Login:
        """Exchange a username and password for a bearer token."""
        payload = {"username": username, "password": password}
        return cast(Login, self._json("POST", "/api/v1/auth/login", json=payload))

    def logout(self) -> None:
        """Revoke the token this client uses."""
        self._request("POST", "/api/v1/auth/logout")

    def me(self) -> Me:
        """The caller: user, current tenant and roles."""
        return cast(Me, self._json("GET", "/api/v1/me"))

    def devices(self) -> list[Device]:
        """Every device visible to the caller, all pages."""
        return cast(list[Device], list(self._pages("/api/v1/devices")))

    def tokens(self) -> list[Token]:
        """The caller's live API tokens, all pages."""
        return cast(list[Token], list(self._pages("/api/v1/tokens")))

    def create_token(self, *, name: str, expires_in_days: int) -> CreatedToken:
        """A new named API token; its value is in the answer and nowhere else."""
        payload = {"name": name, "expires_in_days": expires_in_days}
        return cast(CreatedToken, self._json("POST", "/api/v1/tokens", json=payload))

    def revoke_token(self, token_id: str) -> None:
        """Revoke one of the caller's API tokens."""
        self._request("DELETE", f"/api/v1/tokens/{quote(token_id, safe='')}")

    def _pages(self, path: str) -> Iterator[Any]:
        cursor: str | None = None
        while True:
            params = {"cursor": cursor} if cursor else None
            page = self._json("GET", path, params=params)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise ApiError(200, "invalid_response", f"{path} did not answer with a list")
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as err:
            raise ApiError(
                response.status_code, "invalid_response", f"{path} did not answer with JSON"
            ) from err

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectTimeout as err:
            raise ApiError(NO_ANSWER, "unreachable", f"cannot reach {self.base_url}") from err
        except httpx.TimeoutException as err:
            raise ApiError(
                NO_ANSWER, "timeout", f"{self.base_url} did not answer within {TIMEOUT_S:g} s"
            ) from err
        except (httpx.TransportError, httpx.InvalidURL) as err:
            raise ApiError(NO_ANSWER, "unreachable", f"cannot reach {self.base_url}") from err
        if response.is_error:
            raise _error_from(response)
        return response


def _error_from(response: httpx.Response) -> ApiError:
    """Translate an error answer; proxies in between may answer with something else than
    problem+json, so fall back to the HTTP status."""
    retry_after = response.headers.get("Retry-After")
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        detail = body.get("detail") or body.get("title") or response.reason_phrase
        return ApiError(response.status_code, body["code"], str(detail), retry_after)
    return ApiError(
        response.status_code,
        f"http_{response.status_code}",
        response.reason_phrase or "error",
        retry_after,
    )
