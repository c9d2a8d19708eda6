"""The dashboard's way to act: the public API itself, called in-process.

Every page reads and every form acts through ``/api/v1`` with the browser's own session, so
the dashboard can do exactly what the API allows, with the same validation, tenancy,
quotas, rate limits and audit trail, and nothing else.
"""

import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import Request

from edgecloud_contracts.text import OBJECT_ID

from ..deps import CSRF_HEADER, SESSION_COOKIE

# What a person should read for the codes whose API detail is written for programs.
_PLAIN_WORDS = {
    "unauthenticated": "Your session has ended. Please sign in again.",
    "token_invalid": "Your session has ended. Please sign in again.",
    "token_expired": "Your session has expired. Please sign in again.",
    "rate_limited": "Too many requests for this tenant right now; wait a moment and retry.",
    "database_unavailable": "The platform's database is not answering; retry in a few seconds.",
    "upstream_unavailable": "A platform service is not answering; retry in a few seconds.",
    "upstream_timeout": "A platform service took too long to answer; retry in a moment.",
    "csrf_failed": "This page is out of date; reload it and try again.",
}

# Pydantic's messages name the rule broken; these say what to type instead.
_FIELD_WORDS = {
    "string_pattern_mismatch": "contains characters that are not allowed here",
    "missing": "is required",
    "string_too_short": "is required",
    "string_too_long": "is too long",
}


# Refusals that are about one field: shown next to it as well as above the form.
_CODE_FIELDS = {
    "weak_password": "password",
    "username_taken": "username",
    "tenant_taken": "tenant",
    "tenant_name_invalid": "tenant",
    "invitation_invalid": "invitation",
    "device_not_found": "device",
    "image_not_found": "image",
    "arch_mismatch": "device",
    "no_matching_device": "device",
    "device_not_eligible": "device",
    "interface_not_declared": "interfaces",
    "interface_busy": "interfaces",
    "device_refused": "interfaces",
    "interfaces_need_a_device": "interfaces",
    "topic_not_granted": "subscriptions",
    "quota_exceeded": "name",
    "name_taken": "name",
    "ports_not_allowed": "ports",
    "port_out_of_range": "ports",
    "port_taken": "ports",
}
# Refusals about one of a few fields, named in the problem: the limit a node cannot give.
_CODE_FIELD_NAMED_BY = {"exceeds_device": "limit", "node_share_exceeded": "resource"}
_NESTED_FIELDS = {"limits"}
"""Objects whose members are fields of their own in the forms (the launch form's limits)."""


@dataclass
class ApiError(Exception):
    """A refusal of the public API, in words for the page that caused it."""

    status: int
    code: str
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    """Form field -> what is wrong with it (validation errors)."""
    retry_after: str | None = None

    def __str__(self) -> str:
        return self.message

    @classmethod
    def invalid(cls, fields: dict[str, str], code: str = "validation_failed") -> "ApiError":
        """A refusal naming the fields to fix, worded as the page shows it."""
        return cls(status=422, code=code, message=_fix_these(fields), fields=fields)


def segment(value: str, pattern: str = OBJECT_ID) -> str:
    """``value`` as one path segment of an API URL: anything that could name another path
    (``..``, a slash, an empty string) is refused before a request is made."""
    if value in (".", "..") or re.fullmatch(pattern, value) is None:
        raise ApiError(status=404, code="not_found", message=f"There is no {value!r} here.")
    return value


def _field_errors(errors: list[dict[str, Any]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for err in errors:
        loc = [str(part) for part in err.get("loc", [])[1:]]  # drop "body"/"query"
        if not loc:
            continue
        if loc[0] in _NESTED_FIELDS and len(loc) > 1:
            loc = loc[1:]
        msg = _FIELD_WORDS.get(err.get("type", ""), err.get("msg", "is not valid"))
        fields.setdefault(loc[0], msg.removeprefix("Value error, "))
    return fields


def _fix_these(fields: dict[str, str]) -> str:
    return "Some fields need attention: " + "; ".join(
        f"{name.replace('_', ' ')} {why}" for name, why in fields.items()
    )


def error_from(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or f"http_{response.status_code}")
    fields = _field_errors(body.get("errors") or [])
    named_by = _CODE_FIELD_NAMED_BY.get(code)
    field_name = _CODE_FIELDS.get(code) or (str(body.get(named_by) or "") if named_by else "")
    if field_name and body.get("detail"):
        fields.setdefault(field_name, "- " + str(body["detail"]))
    message = _PLAIN_WORDS.get(code) or str(body.get("detail") or response.reason_phrase)
    if fields and code == "validation_failed":
        message = _fix_these(fields)
    return ApiError(
        status=response.status_code,
        code=code,
        message=message,
        fields=fields,
        retry_after=response.headers.get("Retry-After"),
    )


class PublicApi:
    """``/api/v1`` as the browser behind ``request`` may use it."""

    def __init__(self, request: Request, *, token: str | None = None) -> None:
        self.token = token if token is not None else request.cookies.get(SESSION_COOKIE)
        self.csrf: str | None = None
        """Sent along once the browser proved it holds the page's CSRF token (an action);
        until then only reads get through the API's CSRF check."""
        # The browser's address, so login throttling counts the right client.
        client = request.client
        transport = httpx.ASGITransport(
            app=request.app, client=(client.host, client.port) if client else ("unknown", 0)
        )
        self._client = httpx.AsyncClient(
            transport=transport, base_url="http://gateway/api/v1", trust_env=False, timeout=40
        )

    async def __aenter__(self) -> "PublicApi":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._client.aclose()

    def _headers(self) -> dict[str, str]:
        headers = {"Cookie": f"{SESSION_COOKIE}={self.token}"} if self.token else {}
        if self.csrf:
            headers[CSRF_HEADER] = self.csrf
        return headers

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The raw answer; raises :class:`ApiError` for 4xx/5xx."""
        params = kwargs.pop("params", None)
        if params:
            params = {k: v for k, v in params.items() if v not in (None, "")}
        response = await self._client.request(
            method, path, headers=self._headers(), params=params, **kwargs
        )
        if response.status_code >= 400:
            raise error_from(response)
        return response

    async def get(self, path: str, **params: Any) -> Any:
        return (await self.call("GET", path, params=params)).json()

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.call("POST", path, json=body or {})
        return response.json() if response.content else None

    async def put(self, path: str, body: dict[str, Any]) -> Any:
        return (await self.call("PUT", path, json=body)).json()

    async def patch(self, path: str, body: dict[str, Any]) -> Any:
        return (await self.call("PATCH", path, json=body)).json()

    async def delete(self, path: str) -> None:
        await self.call("DELETE", path)

    async def all_pages(self, path: str, **params: Any) -> list[Any]:
        """Every item of a paged list (the dashboard's lists are short)."""
        items: list[Any] = []
        cursor = None
        while True:
            page = await self.get(path, limit=500, cursor=cursor, **params)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor or len(items) >= 10_000:
                return items
