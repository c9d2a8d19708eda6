"""Errors as ``application/problem+json`` (RFC 9457) with a stable ``code``.

Exception tree::

    Problem                 any error with an HTTP status and a machine-readable code
    ├── BadRequest          400
    ├── Unauthenticated     401
    ├── Forbidden           403
    ├── NotFound            404   (also for another tenant's objects)
    ├── Conflict            409
    ├── PayloadTooLarge     413
    ├── TooManyRequests     429   with Retry-After
    ├── RemoteProblem       any: another service's problem, passed on
    ├── Unprocessable       422
    └── Unavailable         503   a dependency (database, router, service) is down
"""

from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    status: int = 500
    default_code: ClassVar[str] = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "type": f"https://edgecloud.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }


class BadRequest(Problem):
    status, default_code, title = 400, "bad_request", "Bad request"


class Unauthenticated(Problem):
    status, default_code, title = 401, "unauthenticated", "Authentication required"


class Forbidden(Problem):
    status, default_code, title = 403, "forbidden", "Forbidden"


class NotFound(Problem):
    status, default_code, title = 404, "not_found", "Not found"


class Conflict(Problem):
    status, default_code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(Problem):
    status, default_code, title = 413, "payload_too_large", "Payload too large"


class Unprocessable(Problem):
    status, default_code, title = 422, "validation_failed", "Validation failed"


class TooManyRequests(Problem):
    status, default_code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(
            detail, code=code, headers={"Retry-After": str(retry_after)}, retry_after=retry_after
        )


class Unavailable(Problem):
    status, default_code, title = 503, "unavailable", "Service unavailable"


class RemoteProblem(Problem):
    """A problem another service answered with, passed on to our caller unchanged."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(
            str(body.get("detail", "")),
            code=str(body.get("code", "upstream_error")),
            headers=headers,
        )
        self.status = status
        self.title = str(body.get("title", "Error"))
        self.extra = {
            k: v for k, v in body.items() if k not in ("type", "title", "status", "detail", "code")
        }


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def database_is_down(exc: BaseException) -> bool:
    """Whether a database error means the server went away (restart, failover, network),
    rather than a bug in the statement."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        # A new connection refused while the server shuts down or starts up (SQLSTATE class
        # 57, "operator intervention"), or a connection exception (class 08).
        state = getattr(exc.orig, "sqlstate", None) or ""
        if state[:2] in ("08", "57"):
            return True
        if isinstance(exc.orig, OSError) or isinstance(exc.__cause__, OSError):
            return True
    return isinstance(exc, OperationalError | InterfaceError | ConnectionError)


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        headers = dict(exc.headers)
        if exc.status == 401:
            headers.setdefault("WWW-Authenticate", "Bearer")
        return problem_response(exc.status, exc.body(), headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "loc": list(err.get("loc", ())),
                "msg": err.get("msg", ""),
                "type": err.get("type", ""),
            }
            for err in exc.errors()
        ]
        fields = sorted(
            {".".join(str(p) for p in e["loc"][1:]) for e in errors if len(e["loc"]) > 1}
        )
        problem = Unprocessable(
            f"invalid fields: {', '.join(fields)}"
            if fields
            else errors[0]["msg"]
            if errors
            else "invalid request",
            errors=errors,
            fields=fields,
        )
        return problem_response(problem.status, problem.body())

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        body = {
            "type": f"https://edgecloud.dev/problems/{code}",
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "code": code,
        }
        return problem_response(exc.status_code, body, dict(exc.headers or {}))

    async def on_database_error(_: Request, exc: Exception) -> JSONResponse:
        if not database_is_down(exc):
            raise exc
        # The pool has dropped its broken connections; the next request reconnects.
        problem = Unavailable("the database is unavailable; retry", code="database_unavailable")
        return problem_response(problem.status, problem.body(), {"Retry-After": "1"})

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(ConnectionError, on_database_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
