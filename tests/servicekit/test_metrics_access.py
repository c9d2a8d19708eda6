"""The gateway's port is public: its /metrics answers only a scraper holding the metrics
token (and is not served without one). The internal services' ports are internal: theirs
answer whoever reaches them, unless they are given a token too."""

from collections.abc import Mapping

import httpx
import pytest
from fastapi import FastAPI

from edgecloud_gateway.settings import GatewaySettings
from edgecloud_registry.settings import RegistrySettings
from edgecloud_servicekit.observability import install_observability
from edgecloud_servicekit.problems import install_problem_handlers
from edgecloud_servicekit.settings import ServiceSettings

TOKEN = "a-metrics-token-for-the-scraper-only"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("EDGECLOUD_", "REGISTRY_", "GATEWAY_")):
            monkeypatch.delenv(name)


async def scrape(
    settings: ServiceSettings, headers: Mapping[str, str | bytes] | None = None
) -> httpx.Response:
    """``GET /metrics`` of an app with the shared observability routes and ``settings``."""
    app = FastAPI()
    app.state.settings = settings
    install_problem_handlers(app)
    install_observability(app, service=settings.service_name)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        raw = [
            (name.encode(), value if isinstance(value, bytes) else value.encode())
            for name, value in (headers or {}).items()
        ]
        return await client.get("/metrics", headers=raw)


async def test_the_gateway_serves_metrics_only_with_its_token() -> None:
    settings = GatewaySettings(env="development", metrics_token=TOKEN)
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": b"Bearer \xe9t\xe9"},
    ):
        refused = await scrape(settings, headers)
        assert refused.status_code == 401, headers
        assert refused.json()["code"] == "metrics_token_required"
        assert "edgecloud_" not in refused.text
    served = await scrape(settings, {"Authorization": f"Bearer {TOKEN}"})
    assert served.status_code == 200
    assert "edgecloud_http_request_duration_seconds" in served.text


async def test_the_gateway_without_a_token_does_not_serve_metrics() -> None:
    refused = await scrape(GatewaySettings(env="development"))
    assert refused.status_code == 404
    assert refused.json()["code"] == "metrics_not_served"


async def test_an_internal_service_serves_metrics_on_its_internal_port() -> None:
    assert (await scrape(RegistrySettings(env="development"))).status_code == 200
    guarded = RegistrySettings(env="development", metrics_token=TOKEN)
    assert (await scrape(guarded)).status_code == 401
    assert (await scrape(guarded, {"Authorization": f"Bearer {TOKEN}"})).status_code == 200


def test_a_weak_metrics_token_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="GATEWAY_METRICS_TOKEN"):
        GatewaySettings(
            wamp_ticket="t" * 24,
            internal_secret="s" * 48,
            admin_password="p" * 16,
            metrics_token="short",
        )
