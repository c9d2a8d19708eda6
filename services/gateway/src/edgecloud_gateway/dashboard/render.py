"""What every dashboard page shares: templates, who is looking, CSRF, and how errors show."""

import hmac
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..accounts.passwords import MIN_LENGTH
from ..deps import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from ..tokens.service import csrf_token_for
from .api import ApiError, PublicApi

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
CSRF_FIELD = "csrf_token"

NAVIGATION = [
    ("/", "Overview"),
    ("/devices", "Devices"),
    ("/containers", "Containers"),
    ("/launch", "Launch"),
    ("/data", "Data"),
    ("/alerts", "Alerts"),
    ("/migrations", "Migrations"),
    ("/admin", "Tenant"),
]


def human_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


LINK_NAMES = {"wan": "WAN", "lowpan": "6LoWPAN"}


def link_name(link: Any) -> str:
    return LINK_NAMES.get(str(link), "-") if link else "-"


def _moment(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _span(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def ago(value: Any) -> str:
    """``"12 s ago"``; the exact time is in the element's title."""
    if not value:
        return "never"
    return f"{_span(max(0, int((datetime.now(UTC) - _moment(value)).total_seconds())))} ago"


def from_now(value: Any) -> str:
    """``"in 3 min"`` (or "due now" once it has passed)."""
    seconds = int((_moment(value) - datetime.now(UTC)).total_seconds())
    return f"in {_span(seconds)}" if seconds > 0 else "due now"


def percent(part: Any, whole: Any) -> str:
    if not isinstance(part, int | float) or not isinstance(whole, int | float) or whole <= 0:
        return "-"
    return f"{100 * part / whole:.0f}%"


TEMPLATES.env.filters.update(bytes=human_bytes, ago=ago, from_now=from_now, link=link_name)
TEMPLATES.env.globals.update(
    percent=percent, navigation=NAVIGATION, csrf_field=CSRF_FIELD, password_min=MIN_LENGTH
)


@dataclass
class Viewer:
    """The signed-in user, as ``GET /api/v1/me`` describes them."""

    username: str
    tenant: dict[str, str]
    roles: list[str]
    tenants: list[dict[str, Any]]
    csrf: str
    api: PublicApi = field(repr=False)

    @property
    def is_operator(self) -> bool:
        return "operator" in self.roles

    @property
    def is_admin(self) -> bool:
        return bool({"operator", "tenant_admin"} & set(self.roles))


class SignInRequired(Exception):
    """Raised by page dependencies; answered with a redirect to the sign-in page."""


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def redirect(request: Request, url: str) -> Response:
    """Go to ``url``: a real redirect, or for htmx requests the header htmx follows."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def to_sign_in(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    url = "/login" if target in ("/", "/login") else f"/login?next={quote(target, safe='')}"
    response = redirect(request, url)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


async def _viewer(request: Request) -> AsyncIterator[Viewer]:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired()
    async with PublicApi(request, token=token) as api:
        try:
            me = await api.get("/me")
        except ApiError as err:
            if err.status == 401:
                raise SignInRequired() from err
            raise
        yield Viewer(
            username=me["user"]["username"],
            tenant=me["tenant"],
            roles=me["roles"],
            tenants=me["tenants"],
            csrf=csrf_token_for(token, secret=request.app.state.settings.secret),
            api=api,
        )


async def _acting_viewer(request: Request, viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
    """A viewer whose request proves it comes from our page (the CSRF token, sent by htmx as
    a header or by a plain form as a field), so another site cannot act in their name."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if sent is None or not hmac.compare_digest(sent, viewer.csrf):
        raise ApiError(
            status=403, code="csrf_failed", message="This page is out of date; reload it."
        )
    viewer.api.csrf = viewer.csrf  # only now may its calls change anything
    return viewer


ViewerDep = Annotated[Viewer, Depends(_viewer)]
ActingViewerDep = Annotated[Viewer, Depends(_acting_viewer)]


def page(
    request: Request,
    template: str,
    viewer: Viewer | None,
    *,
    parts: Mapping[str, str] | None = None,
    status_code: int | None = None,
    **context: Any,
) -> HTMLResponse:
    """``template``, or for an htmx request aimed at one of ``parts`` (element id ->
    fragment template) just that fragment: a page and its live parts share one route.
    With an ``error`` it answers 422, which dashboard.js swaps in like a success while
    scripts and tests still see a refusal."""
    target = request.headers.get("HX-Target") if is_htmx(request) else None
    return TEMPLATES.TemplateResponse(
        request,
        (parts or {}).get(target or "", template),
        {"viewer": viewer, "path": request.url.path, **context},
        status_code=status_code or (422 if context.get("error") else 200),
    )


def wants_part(request: Request, element_id: str) -> bool:
    """Whether this is htmx refreshing the element ``element_id`` (not the whole page)."""
    return is_htmx(request) and request.headers.get("HX-Target") == element_id


async def optional(coroutine: Any, fallback: Any) -> Any:
    """A panel that cannot be filled says so instead of taking the whole page down."""
    try:
        return await coroutine
    except ApiError as err:
        return {"unavailable": err.message, **fallback}


def form_values(form: Mapping[str, Any]) -> dict[str, str]:
    """The text fields of a submitted form, trimmed (files and the CSRF field left out)."""
    return {k: v.strip() for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}
