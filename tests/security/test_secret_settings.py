"""Outside development mode no process starts with a secret anyone can read in this
repository (a development default) or one short enough to guess; the error names the
variable to fix. Development mode keeps its defaults, so `make up` needs no set-up."""

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgecloud_agent.settings import AgentSettings
from edgecloud_gateway.settings import DEVELOPMENT_ADMIN_PASSWORD, GatewaySettings
from edgecloud_migration_scheduler.settings import MigrationSchedulerSettings
from edgecloud_orchestrator.settings import OrchestratorSettings
from edgecloud_registry.settings import RegistrySettings
from edgecloud_servicekit.settings import (
    DEVELOPMENT_INTERNAL_SECRET,
    ServiceSettings,
    development_ticket,
)
from edgecloud_storage.settings import StorageSettings
from tests.deploy.repo import router_launcher
from tests.support.processes import ROOT, ROUTER_PYTHON

SERVICES: list[type[ServiceSettings]] = [
    GatewaySettings,
    RegistrySettings,
    OrchestratorSettings,
    StorageSettings,
    MigrationSchedulerSettings,
]
GOOD_TICKET = "t" * 24
GOOD_SECRET = "s" * 32
PREFIXES = ("EDGECLOUD_", "AGENT_", "GATEWAY_", "REGISTRY_", "ORCHESTRATOR_", "STORAGE_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith((*PREFIXES, "MIGRATION_SCHEDULER_")):
            monkeypatch.delenv(name)


def good_env(cls: type[ServiceSettings], env: str) -> dict[str, str]:
    return {
        "EDGECLOUD_ENV": env,
        cls.ticket_variable(): GOOD_TICKET,
        "EDGECLOUD_INTERNAL_SECRET": GOOD_SECRET,
    }


def build(cls: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cls()


def refused(cls: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    with pytest.raises(ValidationError) as error:
        build(cls, monkeypatch, **env)
    return str(error.value)


@pytest.mark.parametrize("env", ["production", "test"])
@pytest.mark.parametrize("cls", SERVICES, ids=lambda cls: cls.service_name)
def test_every_service_accepts_strong_secrets(
    cls: type[ServiceSettings], env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(cls, monkeypatch, **good_env(cls, env))


@pytest.mark.parametrize("env", ["production", "test"])
@pytest.mark.parametrize("cls", SERVICES, ids=lambda cls: cls.service_name)
def test_every_service_refuses_a_development_or_short_ticket(
    cls: type[ServiceSettings], env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = cls.ticket_variable()
    given = good_env(cls, env)
    # Its own development ticket, another service's (the longest), and too short ones.
    for ticket in (
        development_ticket(cls.service_name),
        development_ticket("migration-scheduler"),
        DEVELOPMENT_INTERNAL_SECRET,
    ):
        message = refused(cls, monkeypatch, **{**given, variable: ticket})
        assert f"{variable} is a development default" in message
    for ticket in ("", "x" * 23):
        message = refused(cls, monkeypatch, **{**given, variable: ticket})
        assert f"{variable} must be at least 24 characters" in message
    monkeypatch.delenv(variable)
    assert f"{variable} must be set" in refused(cls, monkeypatch, **{"EDGECLOUD_ENV": env})


@pytest.mark.parametrize("cls", SERVICES, ids=lambda cls: cls.service_name)
def test_every_service_refuses_a_development_or_short_internal_secret(
    cls: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    given = good_env(cls, "production")
    for secret in (DEVELOPMENT_INTERNAL_SECRET, development_ticket("migration-scheduler")):
        message = refused(cls, monkeypatch, **{**given, "EDGECLOUD_INTERNAL_SECRET": secret})
        assert "EDGECLOUD_INTERNAL_SECRET is a development default" in message
    message = refused(cls, monkeypatch, **{**given, "EDGECLOUD_INTERNAL_SECRET": "s" * 31})
    assert "EDGECLOUD_INTERNAL_SECRET must be at least 32 characters" in message
    # The service's own prefix reads the same setting and is checked the same way.
    prefixed = f"{cls.ticket_variable().removesuffix('WAMP_TICKET')}INTERNAL_SECRET"
    assert "EDGECLOUD_INTERNAL_SECRET is a development default" in refused(
        cls, monkeypatch, **{**given, prefixed: DEVELOPMENT_INTERNAL_SECRET}
    )


@pytest.mark.parametrize("cls", SERVICES, ids=lambda cls: cls.service_name)
def test_development_mode_keeps_its_defaults(
    cls: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGECLOUD_ENV", "development")
    settings = cls()
    assert settings.ticket == development_ticket(cls.service_name)
    assert settings.secret == DEVELOPMENT_INTERNAL_SECRET


def test_the_gateway_refuses_a_development_or_short_admin_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given = good_env(GatewaySettings, "production")
    for password in (DEVELOPMENT_ADMIN_PASSWORD, DEVELOPMENT_INTERNAL_SECRET):
        message = refused(GatewaySettings, monkeypatch, **given, EDGECLOUD_ADMIN_PASSWORD=password)
        assert "EDGECLOUD_ADMIN_PASSWORD" in message
    message = refused(GatewaySettings, monkeypatch, **given, EDGECLOUD_ADMIN_PASSWORD="p" * 11)
    assert "EDGECLOUD_ADMIN_PASSWORD must be at least 12 characters" in message
    build(GatewaySettings, monkeypatch, EDGECLOUD_ADMIN_PASSWORD="p" * 12)
    monkeypatch.setenv("EDGECLOUD_ENV", "development")
    assert GatewaySettings().admin_password is not None


def test_tls_files_must_exist_and_go_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = good_env(GatewaySettings, "test")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server-key.pem"
    certfile.write_text("certificate")
    message = refused(GatewaySettings, monkeypatch, **given, GATEWAY_TLS_CERTFILE=str(certfile))
    assert "GATEWAY_TLS_CERTFILE and GATEWAY_TLS_KEYFILE go together" in message
    message = refused(
        GatewaySettings,
        monkeypatch,
        **given,
        GATEWAY_TLS_CERTFILE=str(certfile),
        GATEWAY_TLS_KEYFILE=str(keyfile),
    )
    assert f"GATEWAY_TLS_KEYFILE: {keyfile} is not a file" in message
    keyfile.write_text("key")
    settings = GatewaySettings()
    assert settings.cookie_secure is True  # test mode, but served over HTTPS
    assert settings.public_url.startswith("https://")
    assert settings.server_tls() is not None
    monkeypatch.delenv("GATEWAY_TLS_CERTFILE")
    monkeypatch.delenv("GATEWAY_TLS_KEYFILE")
    assert GatewaySettings().cookie_secure is False
    assert GatewaySettings().server_tls() is None
    message = refused(GatewaySettings, monkeypatch, EDGECLOUD_CA_FILE=str(tmp_path / "none.pem"))
    assert "EDGECLOUD_CA_FILE" in message


def test_the_agent_refuses_a_ca_file_it_cannot_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for content in (None, "not a certificate"):
        ca_file = tmp_path / "ca.pem"
        if content is not None:
            ca_file.write_text(content)
        monkeypatch.setenv("AGENT_CA_FILE", str(ca_file))
        with pytest.raises(ValidationError, match="AGENT_CA_FILE"):
            AgentSettings()
    monkeypatch.delenv("AGENT_CA_FILE")
    assert AgentSettings().ca_file is None


def test_the_router_launcher_refuses_development_and_short_tickets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launcher = router_launcher()
    for service in launcher.SERVICES:
        monkeypatch.setenv(launcher.ticket_variable(service), f"{service}-" + "t" * 24)
    principals = launcher.service_principals(development=False)
    assert set(principals) == set(launcher.SERVICES)
    variable = launcher.ticket_variable("storage")
    for ticket, why in (
        (launcher.development_ticket("storage"), "is a development default"),
        (launcher.development_ticket("migration-scheduler"), "is a development default"),
        ("x" * 23, "must be at least 24 characters"),
    ):
        monkeypatch.setenv(variable, ticket)
        with pytest.raises(SystemExit) as exit_:
            launcher.service_principals(development=False)
        assert str(exit_.value).startswith(f"router: {variable} {why}")
    # Development keeps its well-known tickets.
    assert launcher.service_principals(development=True)["storage"]["ticket"] == "x" * 23
    monkeypatch.delenv(variable)
    assert launcher.service_principals(development=True)["storage"]["ticket"] == (
        launcher.development_ticket("storage")
    )
    with pytest.raises(SystemExit, match=variable):
        launcher.service_principals(development=False)


def test_the_router_launcher_renders_a_tls_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launcher = router_launcher()
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server-key.pem"
    monkeypatch.setenv("EDGECLOUD_ROUTER_TLS_CERTFILE", str(certfile))
    with pytest.raises(SystemExit, match="go together"):
        launcher.tls_files()
    monkeypatch.setenv("EDGECLOUD_ROUTER_TLS_KEYFILE", str(keyfile))
    with pytest.raises(SystemExit, match=r"EDGECLOUD_ROUTER_TLS_CERTFILE: .* is not a file"):
        launcher.tls_files()
    certfile.write_text("certificate")
    keyfile.write_text("key")
    tls = launcher.tls_files()
    assert tls == {"certificate": str(certfile), "key": str(keyfile)}
    config = launcher.render(host="127.0.0.1", port=8080, development=True, tls=tls)
    assert config["workers"][0]["transports"][0]["endpoint"]["tls"] == tls
    plain = launcher.render(host="127.0.0.1", port=8080, development=True)
    assert "tls" not in plain["workers"][0]["transports"][0]["endpoint"]


@pytest.mark.parametrize("env", ["production", "test"])
def test_the_router_refuses_log_levels_that_print_secrets(env: str, tmp_path: Path) -> None:
    """At debug, Crossbar prints every service ticket and each HELLO's enrolment token."""
    environment = {
        "PATH": os.environ["PATH"],
        "EDGECLOUD_ENV": env,
        "EDGECLOUD_ROUTER_LOGLEVEL": "debug",
    }
    launched = subprocess.run(
        [str(ROUTER_PYTHON), str(ROOT / "infra/router/launch.py"), "--cbdir", str(tmp_path)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert launched.returncode == 1
    assert "log level debug prints tickets and enrolment tokens" in launched.stderr
    assert not (tmp_path / "config.json").exists()
