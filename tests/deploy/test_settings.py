"""The settings in infra/k8s and infra/docker are ones the processes really read, and with them
each process listens where its probes and Services look."""

import importlib
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from edgecloud_servicekit.settings import ServiceSettings

from . import dockerfiles
from .kustomize import K8S_DIR, SECRETS_EXAMPLE, Resource, container_env, load, pod_spec
from .repo import (
    ROOT,
    cloud_processes,
    env_names_read_by,
    processes,
    router_launcher,
    service_processes,
    settings_class,
)

# Variables for the interpreter and tools, not for our settings.
FOREIGN_ENV = re.compile(r"^(PATH|HOME|LANG|LC_\w+|PYTHON\w*|UV_\w*|VIRTUAL_ENV)$")
PLACEHOLDER = "REPLACE_ME"


def stand_in_secrets() -> dict[str, str]:
    """Values shaped like real ones for every key of the Secret (placeholders replaced)."""
    values = {}
    for key, example in next(iter(load().secrets.values())).items():
        if key in load().optional_secret_keys:
            continue
        values[key] = example.replace(PLACEHOLDER, f"stand-in-{key.lower()}-" + "x" * 32)
    return values


def the_container(process: str) -> Resource:
    pod = pod_spec(load().named("Deployment")[process])
    containers: list[Resource] = [c for c in pod["containers"] if c["name"] == process]
    assert len(containers) == 1, f"Deployment {process}: no container named {process}"
    return containers[0]


def pod_environment(process: str) -> dict[str, str]:
    """What the process sees: its image's ENV, then what the Deployment adds."""
    image_env = dockerfiles.parse(dockerfiles.dockerfile_path(process)).final.env()
    env = {k: v for k, v in image_env.items() if not FOREIGN_ENV.match(k)}
    env.update(container_env(the_container(process), load(), stand_in_secrets()))
    return env


def use_only(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Make ``env`` the whole of what our processes could read from the environment."""
    ours = frozenset().union(*(env_names_read_by(p) for p in processes()))
    for name in list(os.environ):
        if name.upper() in ours:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def named_port(container: Resource, port: int | str) -> int:
    for declared in container["ports"]:
        if port in (declared.get("name"), declared["containerPort"]):
            return int(declared["containerPort"])
    raise AssertionError(f"{container['name']} declares no port {port}")


def test_env_names_reject_a_misspelt_setting() -> None:
    read = env_names_read_by("registry")
    assert "REGISTRY_MISSED_HEARTBEATS" in read
    assert "EDGECLOUD_MISSED_HEARTBEATS" in read  # the platform prefix reaches every field
    assert "REGISTRY_MISSED_HEARTBEAT" not in read
    assert "GATEWAY_REGISTRY_URL" not in read


@pytest.mark.parametrize("process", sorted(cloud_processes()))
def test_every_variable_a_container_gets_is_read_by_its_process(process: str) -> None:
    container = the_container(process)
    given = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            given |= set(load().configmaps[source["configMapRef"]["name"]])
        if "secretRef" in source:
            given |= set(load().secrets[source["secretRef"]["name"]])
    unread = given - env_names_read_by(process)
    assert not unread, f"{process} does not read {sorted(unread)}"


@pytest.mark.parametrize("process", sorted(processes()))
def test_every_variable_an_image_sets_is_read_by_its_process(process: str) -> None:
    image_env = dockerfiles.parse(dockerfiles.dockerfile_path(process)).final.env()
    ours = {name for name in image_env if not FOREIGN_ENV.match(name)}
    unread = ours - env_names_read_by(process)
    assert not unread, f"{process}'s image sets {sorted(unread)}, which it does not read"


def test_every_secret_key_reaches_a_container() -> None:
    manifests = load()
    used = {
        item["valueFrom"]["secretKeyRef"]["key"]
        for deployment in manifests.named("Deployment").values()
        for container in pod_spec(deployment)["containers"]
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    for name, keys in manifests.secrets.items():
        assert set(keys) <= used, f"Secret {name}: {sorted(set(keys) - used)} reach no container"


@pytest.mark.parametrize("process", sorted(service_processes()))
def test_a_service_accepts_its_pod_environment_and_listens_where_its_probes_look(
    process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = processes()[process].module
    assert module is not None
    use_only(monkeypatch, pod_environment(process))
    settings = settings_class(module)()
    assert isinstance(settings, ServiceSettings)
    assert settings.host == "0.0.0.0", "on loopback, neither probes nor Services reach it"
    assert settings.env.value == "production"

    container = the_container(process)
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    probes = {kind: container[kind] for kind in kinds if kind in container}
    assert {"readinessProbe", "livenessProbe"} <= set(container)
    for name, probe in probes.items():
        # Restarts only for a process that does not answer; traffic only when it is ready.
        assert probe["httpGet"]["path"] == ("/livez" if name == "livenessProbe" else "/healthz")
        assert named_port(container, probe["httpGet"]["port"]) == settings.port
    service = load().named("Service")[process]
    assert [named_port(container, p["targetPort"]) for p in service["spec"]["ports"]] == [
        settings.port
    ]

    app = importlib.import_module(f"{module}.app").create_app(settings)
    for path in ("/healthz", "/livez"):
        assert "get" in app.openapi()["paths"][path], f"the probes' {path} is no route of the app"


def test_each_service_logs_in_to_the_router_with_the_ticket_the_router_expects() -> None:
    launcher = router_launcher()
    router_env = {item["name"]: item for item in the_container("router").get("env", [])}
    for process, found in service_processes().items():
        assert found.module is not None
        cls = settings_class(found.module)
        assert issubclass(cls, ServiceSettings)
        variable = cls.ticket_variable()
        assert variable == launcher.ticket_variable(cls.service_name)
        assert cls.service_name in launcher.SERVICES
        service_env = {item["name"]: item for item in the_container(process).get("env", [])}
        assert variable in service_env, f"{process} gets no {variable}"
        assert variable in router_env, f"the router gets no {variable}"
        assert service_env[variable]["valueFrom"] == router_env[variable]["valueFrom"]


def test_the_router_config_is_infra_router_s_template() -> None:
    template = ROOT / "infra" / "router" / "config.template.json"
    data = load().configmaps["router-config"]["config.template.json"]
    assert json.loads(data) == json.loads(template.read_text())


def test_the_router_renders_its_config_from_the_pod_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """launch.py, given the mounted template and the pod's variables, accepts every service
    ticket and serves the probed path on the probed port, on every interface."""
    launcher = router_launcher()
    container = the_container("router")
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config-template"]
    template = Path(mount["mountPath"])
    (tmp_path / template.name).write_text(load().configmaps["router-config"][mount["subPath"]])
    monkeypatch.setattr(launcher, "HERE", tmp_path)
    env = pod_environment("router")
    use_only(monkeypatch, env)

    assert env["EDGECLOUD_ENV"] != "development", "development would accept missing tickets"
    config = launcher.render(
        host=env["EDGECLOUD_ROUTER_HOST"], port=int(env["EDGECLOUD_ROUTER_PORT"]), development=False
    )

    transport = config["workers"][0]["transports"][0]
    principals = transport["paths"]["ws"]["auth"]["ticket"]["principals"]
    secrets = stand_in_secrets()
    assert principals == {
        service: {"ticket": secrets[launcher.ticket_variable(service)], "role": "service"}
        for service in launcher.SERVICES
    }
    assert transport["endpoint"]["interface"] == "0.0.0.0"
    assert transport["endpoint"]["port"] == named_port(container, "wamp")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert (get["path"].strip("/") or "/") in transport["paths"]
        assert named_port(container, get["port"]) == transport["endpoint"]["port"]
    # The ConfigMap replaces the very template launch.py reads: the one beside it in the image.
    command = dockerfiles.parse(dockerfiles.dockerfile_path("router")).final.last("CMD")
    assert command is not None
    (launch,) = [arg for arg in command.exec_form() if arg.endswith("/launch.py")]
    assert template == Path(launch).with_name("config.template.json")


URL = re.compile(r"^(?:https?|wss?)://([a-z0-9-]+)(?::(\d+))?(?:/.*)?$")


def test_in_cluster_urls_name_a_service_and_its_port() -> None:
    manifests = load()
    services = manifests.named("Service")
    checked = 0
    for data in manifests.configmaps.values():
        for name, value in data.items():
            found = URL.match(value)
            if not found or not name.endswith("_URL"):
                continue
            host, port = found.group(1), found.group(2)
            assert host in services, f"{name}={value}: no Service {host}"
            assert port, f"{name}={value}: name the port"
            assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]]
            # GATEWAY_SCHEDULER_URL names the migration-scheduler, EDGECLOUD_ROUTER_URL the router
            wanted = name.removesuffix("_URL").split("_")[-1]
            assert host.upper().replace("-", "_").endswith(wanted), f"{name}={value}"
            checked += 1
    assert checked >= 8


def test_make_secrets_writes_every_key_with_fresh_values(tmp_path: Path) -> None:
    out = tmp_path / "secrets.env"
    url = "postgresql+asyncpg://edgecloud:pw@db.example.com:5432/edgecloud"
    run = [str(K8S_DIR / "make-secrets.sh"), url, str(out)]
    made = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    values = dict(line.split("=", 1) for line in out.read_text().splitlines())
    example = load().secrets["edgecloud-secrets"]
    assert set(values) == set(example) - load().optional_secret_keys
    assert values["EDGECLOUD_DATABASE_URL"] == url
    assert len(set(values.values())) == len(values), "each secret is its own"
    assert all(PLACEHOLDER not in value for value in values.values())
    assert len(values["EDGECLOUD_INTERNAL_SECRET"]) >= 32
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    again = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert again.returncode != 0, "an existing secrets.env must not be overwritten"
    assert SECRETS_EXAMPLE.read_text().count(PLACEHOLDER) >= len(values)
