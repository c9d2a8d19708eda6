"""Command tests run with a private config directory and, when asked, a fake gateway."""

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from edgecloud_cli import app as app_module
from edgecloud_cli import config, context, deploy, download, migrate, retries
from edgecloud_cli.client import Client
from edgecloud_cli.config import Credentials
from edgecloud_cli.target import DEFAULT_URL

from .fake_gateway import EXPIRES_AT, USERNAME, FakeGateway

Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG_CONFIG_HOME in a temporary directory; none of the caller's edgecloud settings."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    for name in ("EDGECLOUD_URL", "EDGECLOUD_TOKEN", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    """Every client the commands open answers from this fake."""
    fake = FakeGateway()

    def open_client(url: str, token: str | None = None, **_: object) -> Client:
        return Client(url, token=token, transport=httpx.MockTransport(fake))

    monkeypatch.setattr(context, "open_client", open_client)
    return fake


@pytest.fixture
def logged_in(gateway: FakeGateway) -> Credentials:
    """A stored login for the default URL with a token the fake gateway accepts."""
    stored = Credentials(DEFAULT_URL, USERNAME, gateway.issue(), EXPIRES_AT)
    config.save(stored)
    return stored


@pytest.fixture
def cli() -> Run:
    """Run ``edgecloud ARGS...``; stdout and stderr stay apart in the result."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app_module.app, list(args), input=input, env=env)

    return run


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """No waiting between polls or before retries, and three retries at most; the retries'
    pauses are recorded."""
    slept: list[float] = []
    monkeypatch.setattr(retries, "sleep", slept.append)
    monkeypatch.setattr(retries, "RETRY_DELAYS_S", (0.5, 1.0, 2.0))
    monkeypatch.setattr(deploy, "POLL_INTERVAL_S", 0.0)
    monkeypatch.setattr(download, "POLL_INTERVAL_S", 0.0)
    monkeypatch.setattr(migrate, "POLL_INTERVAL_S", 0.0)
    return slept
