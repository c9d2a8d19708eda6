import pytest
from pydantic import ValidationError

from edgecloud_gateway.settings import GatewaySettings
from edgecloud_registry.settings import RegistrySettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("EDGECLOUD_", "REGISTRY_", "GATEWAY_")):
            monkeypatch.delenv(name)


def test_production_refuses_missing_secrets() -> None:
    with pytest.raises(ValidationError, match="REGISTRY_WAMP_TICKET"):
        RegistrySettings()


def test_production_refuses_a_short_internal_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_WAMP_TICKET", "t" * 24)
    monkeypatch.setenv("EDGECLOUD_INTERNAL_SECRET", "short")
    with pytest.raises(ValidationError, match="at least 32"):
        RegistrySettings()


def test_development_has_defaults() -> None:
    settings = RegistrySettings(env="development")
    assert settings.ticket == "dev-ticket-registry"
    assert settings.port == 8001
    assert settings.database_url == "sqlite+aiosqlite:///var/registry.db"


def test_service_prefix_overrides_the_platform_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECLOUD_ENV", "development")
    monkeypatch.setenv("EDGECLOUD_DATABASE_URL", "postgresql+asyncpg://db/all")
    monkeypatch.setenv("REGISTRY_DATABASE_URL", "postgresql+asyncpg://db/registry")
    assert RegistrySettings().database_url.endswith("/registry")
    assert GatewaySettings().database_url.endswith("/all")


def test_gateway_admin_password_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GatewaySettings(env="development").admin_password is not None
    monkeypatch.setenv("GATEWAY_WAMP_TICKET", "t" * 24)
    monkeypatch.setenv("EDGECLOUD_INTERNAL_SECRET", "s" * 40)
    assert GatewaySettings().admin_password is None  # no bootstrap account unless asked
    monkeypatch.setenv("EDGECLOUD_ADMIN_PASSWORD", "short")
    with pytest.raises(ValidationError, match="at least 12"):
        GatewaySettings()
