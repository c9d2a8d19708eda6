"""An in-memory gateway that speaks the public API's contract, for ``httpx.MockTransport``.

The real gateway is covered by tests/integration and by test_cli_against_stack.py; this one
lets the command tests shape answers (pages, nulls, 429, odd errors) at will. Its containers,
commands and events are in fake_containers.py; artifacts, deployments, logs and copies out of
containers in fake_artifacts.py; migrations in fake_migrations.py.
"""

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .fake_artifacts import ArtifactRoutes
from .fake_containers import ContainerRoutes
from .fake_migrations import MigrationRoutes
from .problems import problem

USERNAME = "admin"
PASSWORD = "s3cret pass"
EXPIRES_AT = "2030-01-02T03:04:05Z"


def device(key: str, **changes: Any) -> dict[str, Any]:
    seen = datetime.now(UTC) - timedelta(minutes=5)
    base: dict[str, Any] = {
        "key": key,
        "id": f"id-{key}",
        "name": key.split("_")[0],
        "mac": "02:00:00:00:00:01",
        "location": "lab",
        "arch": "aarch64",
        "os": "Debian 12",
        "kernel": "6.1.0",
        "cpu_count": 4,
        "memory_total": 4 * 1024**3,
        "disk_total": 32 * 1024**3,
        "status": "online",
        "link": "wan",
        "last_seen": seen.isoformat().replace("+00:00", "Z"),
        "metrics": {"cpu_percent": 12.5, "memory_used": 1536 * 1024**2, "disk_free": 10**10},
    }
    return {**base, **changes}


@dataclass
class FakeGateway(ContainerRoutes, ArtifactRoutes, MigrationRoutes):
    devices: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2
    live_tokens: set[str] = field(default_factory=set)
    api_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    members: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[tuple[str, str], httpx.Response] = field(default_factory=dict)
    """Canned answers by (method, path), ahead of the routes below."""
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        if key in self.answers:
            return self.answers[key]
        if key == ("POST", "/api/v1/auth/login"):
            return self._login(request)
        if not self._authenticated(request):
            return problem(401, "token_invalid", "the token is invalid, expired or revoked")
        match key:
            case ("POST", "/api/v1/auth/logout"):
                self.live_tokens.discard(self._bearer(request))
                return httpx.Response(204)
            case ("GET", "/api/v1/me"):
                return httpx.Response(200, json=self._me())
            case ("GET", "/api/v1/devices"):
                return httpx.Response(200, json=self._page(self.devices, request))
            case ("GET", "/api/v1/tokens"):
                return httpx.Response(200, json=self._page(list(self.api_tokens.values()), request))
            case ("POST", "/api/v1/tokens"):
                return self._create_token(request)
            case ("POST", "/api/v1/me/password"):
                return self._change_password(request)
            case ("GET", "/api/v1/members"):
                return httpx.Response(200, json=self._page(self.members, request))
            case ("POST", path) if path.startswith("/api/v1/users/"):
                return self._manage_user(request, path.removeprefix("/api/v1/users/"))
            case ("DELETE", path) if path.startswith("/api/v1/tokens/"):
                token_id = path.removeprefix("/api/v1/tokens/")
                if self.api_tokens.pop(token_id, None) is None:
                    return problem(404, "token_not_found", f"token {token_id} not found")
                return httpx.Response(204)
        return (
            self.container_route(request)
            or self.artifact_route(request)
            or self.migration_route(request)
            or problem(404, "not_found", "Not Found")
        )

    def issue(self) -> str:
        token = f"ec_login_{next(self._numbers)}"
        self.live_tokens.add(token)
        return token

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if (r.method, r.url.path) == (method, path)]

    def _login(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body != {"username": USERNAME, "password": PASSWORD}:
            return problem(401, "invalid_credentials", "wrong username or password")
        answer = {
            "access_token": self.issue(),
            "token_type": "bearer",
            "expires_at": EXPIRES_AT,
            "csrf_token": "csrf",
        }
        cookie = "edgecloud_session=cookie-value; HttpOnly; Path=/; SameSite=lax"
        return httpx.Response(200, json=answer, headers={"Set-Cookie": cookie})

    def _create_token(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        number = next(self._numbers)
        row = {
            "id": f"tok-{number}",
            "name": body["name"],
            "created_at": "2025-01-01T00:00:00Z",
            "expires_at": "2025-04-01T00:00:00Z",
            "last_used_at": None,
        }
        self.api_tokens[row["id"]] = row
        return httpx.Response(201, json={**row, "token": f"ec_api_{number}"})

    def _change_password(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["current_password"] != PASSWORD:
            return problem(403, "wrong_password", "the current password is not right")
        self.live_tokens.clear()
        return httpx.Response(204)

    def _manage_user(self, request: httpx.Request, rest: str) -> httpx.Response:
        user_id, _, action = rest.partition("/")
        member = next((m for m in self.members if m["user"]["id"] == user_id), None)
        if member is None:
            return problem(404, "user_not_found", f"user {user_id} not found")
        user = member["user"]
        if action == "password":
            body = json.loads(request.content)
            token = None if "password" in body else "ecr_reset_1"
            expires = None if token is None else EXPIRES_AT
            return httpx.Response(
                200, json={"user": user, "reset_token": token, "expires_at": expires}
            )
        user["disabled_at"] = "2025-01-01T00:00:00Z" if action == "disable" else None
        return httpx.Response(200, json=user)

    def known_devices(self) -> list[dict[str, Any]]:
        return self.devices

    def known_container(self, container_id: str) -> dict[str, Any] | None:
        return next((c for c in self.containers if c["id"] == container_id), None)

    def record_command(self, command: dict[str, Any]) -> None:
        self.commands[command["id"]] = command

    def fail_command(self, command_id: str, code: str, error: str) -> None:
        self.commands[command_id].update(state="failed", error_code=code, error=error)

    def page_of(self, items: list[dict[str, Any]], request: httpx.Request) -> dict[str, Any]:
        return self._page(items, request)

    def _page(self, items: list[dict[str, Any]], request: httpx.Request) -> dict[str, Any]:
        start = int(request.url.params.get("cursor", "0"))
        end = start + self.page_size
        return {"items": items[start:end], "next_cursor": str(end) if end < len(items) else None}

    def _me(self) -> dict[str, Any]:
        return {
            "user": {"id": "u1", "username": USERNAME, "created_at": "2025-01-01T00:00:00Z"},
            "tenant": {"id": "t1", "name": "operators"},
            "roles": ["operator", "admin"],
            "tenants": [],
        }

    @staticmethod
    def _bearer(request: httpx.Request) -> str:
        return str(request.headers.get("Authorization", "")).removeprefix("Bearer ")

    def _authenticated(self, request: httpx.Request) -> bool:
        return self._bearer(request) in self.live_tokens
