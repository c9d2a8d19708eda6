"""Signing up, in and out, and switching tenant."""

from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..deps import CSRF_COOKIE, SESSION_COOKIE
from . import presession
from .api import ApiError, PublicApi
from .presession import REFUSED, form_page
from .render import CSRF_FIELD, ActingViewerDep, ViewerDep, form_values, page, redirect

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a path of this site: ``next=https://elsewhere`` (or ``//elsewhere``, or
    ``/\\elsewhere``, which browsers read the same) must not redirect away."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or any(c == "\\" or not c.isprintable() for c in target)
    ):
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


def _with_cookies(response: Response, answer: httpx.Response) -> Response:
    """Pass the API's session cookies on to the browser."""
    for cookie in answer.headers.get_list("set-cookie"):
        response.headers.append("set-cookie", cookie)
    return response


async def _sign_in(api: PublicApi, values: dict[str, str]) -> httpx.Response:
    body = {"username": values.get("username", ""), "password": values.get("password", "")}
    if values.get("tenant"):
        body["tenant"] = values["tenant"]
    return await api.call("POST", "/auth/login", json=body)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return form_page(request, "login.html", next=_safe_next(next), values={})


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    values = form_values(form)
    target = _safe_next(values.get("next"))
    if not presession.is_from_our_form(request, form.get(CSRF_FIELD)):
        values.pop("password", None)
        return form_page(
            request, "login.html", status_code=403, error=REFUSED, next=target, values=values
        )
    async with PublicApi(request, token="") as api:
        try:
            answer = await _sign_in(api, values)
        except ApiError as err:
            values.pop("password", None)
            return form_page(request, "login.html", error=err, next=target, values=values)
    return _with_cookies(redirect(request, target), answer)


@router.get("/signup", response_class=HTMLResponse)
async def signup_form(request: Request, invitation: str | None = None) -> HTMLResponse:
    return form_page(request, "signup.html", values={"invitation": invitation or ""})


@router.post("/signup")
async def signup(request: Request) -> Response:
    form = await request.form()
    values = form_values(form)
    if not presession.is_from_our_form(request, form.get(CSRF_FIELD)):
        return form_page(
            request, "signup.html", status_code=403, error=REFUSED, values=_without_secrets(values)
        )
    if values.get("password") != values.get("password_again"):
        err = ApiError(
            status=422,
            code="passwords_differ",
            message="The two passwords are not the same.",
            fields={"password_again": "is not the same as the password"},
        )
        return form_page(request, "signup.html", error=err, values=_without_secrets(values))
    body = {k: values[k] for k in ("username", "password", "tenant", "invitation") if values.get(k)}
    async with PublicApi(request, token="") as api:
        try:
            await api.call("POST", "/auth/register", json=body)
            answer = await _sign_in(api, values)
        except ApiError as err:
            return form_page(request, "signup.html", error=err, values=_without_secrets(values))
    return _with_cookies(redirect(request, "/"), answer)


def _without_secrets(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if not k.startswith("password")}


@router.post("/logout")
async def logout(request: Request, viewer: ActingViewerDep) -> Response:
    # An already revoked session is signed out all the same.
    try:
        await viewer.api.call("POST", "/auth/logout")
    except ApiError as err:
        if err.status != 401:
            raise
    response = redirect(request, "/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.post("/tenant")
async def switch_tenant(request: Request, viewer: ActingViewerDep) -> Response:
    tenant = form_values(await request.form()).get("tenant", "")
    answer = await viewer.api.call("POST", "/auth/switch", json={"tenant": tenant})
    return _with_cookies(redirect(request, "/"), answer)


@router.get("/account", response_class=HTMLResponse)
async def account(request: Request, viewer: ViewerDep) -> HTMLResponse:
    return page(request, "account.html", viewer)


@router.post("/account/password")
async def change_password(request: Request, viewer: ActingViewerDep) -> Response:
    """Change the password; the API ends every session, so the next page is the sign-in."""
    values = form_values(await request.form())
    if values.get("new_password") != values.get("new_password_again"):
        err = ApiError.invalid(
            {"new_password_again": "is not the same as the new password"}, code="passwords_differ"
        )
        return page(request, "account.html", viewer, error=err)
    body = {
        "current_password": values.get("current_password", ""),
        "new_password": values.get("new_password", ""),
    }
    try:
        await viewer.api.call("POST", "/me/password", json=body)
    except ApiError as err:
        if err.code == "wrong_password":
            err.fields = {"current_password": "is not right"}
        elif err.code == "weak_password":
            err.fields = {"new_password": "is too weak"}
        return page(request, "account.html", viewer, error=err)
    response = redirect(request, "/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response
