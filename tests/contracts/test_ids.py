"""Cloud strings that become names on a node: one id grammar, file names and transfer URLs
held to theirs, at the contract (a relay that rewrites a frame gets a validation error)."""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from edgecloud_contracts.artifacts import TRANSFERS_PATH, DeploymentOrder, TransferRef
from edgecloud_contracts.containers import Command, FilesOrder, LogsRequest
from edgecloud_contracts.migrations import MigrationExpectation, MigrationOrder
from edgecloud_contracts.shell import ExecOrder, ShellOpen
from tests.support.hostile_names import GRANT, HOSTILE_IDS


def url(artifact: str = "a-1") -> str:
    return f"{TRANSFERS_PATH}/{artifact}?grant={GRANT}"


def ref(artifact: str = "a-1", name: str = "app.tar") -> dict[str, Any]:
    return {"artifact_id": artifact, "name": name, "size": 1, "sha256": "0" * 64, "url": url()}


def spec() -> dict[str, Any]:
    return {
        "image": "busybox:1",
        "container_id": "c-1",
        "docker_name": "u-app",
        "tenant_id": "t-1",
        "owner": "u",
        "image_archive": ref("a-2", "image.tar"),
    }


def create() -> dict[str, Any]:
    return {
        "id": "cmd-1",
        "action": "create",
        "container_id": "c-1",
        "docker_name": "u-app",
        "spec": spec(),
    }


def build() -> dict[str, Any]:
    command = create()
    command["spec"] = {**spec(), "image_archive": None, "build_context": ref("a-3", "ctx.tar")}
    return command


def deploy() -> dict[str, Any]:
    order = {
        "deployment_id": "d-1",
        "container_id": "c-1",
        "docker_name": "u-app",
        "archive": ref("a-1", "app.tar"),
        "script": ref("a-2", "run.sh"),
    }
    return {
        "id": "cmd-2",
        "action": "deploy",
        "container_id": "c-1",
        "docker_name": "u-app",
        "deployment": order,
    }


def files() -> dict[str, Any]:
    order = {"path": "/app/out", "artifact_id": "a-9", "url": url("a-9")}
    return {
        "id": "cmd-3",
        "action": "files",
        "container_id": "c-1",
        "docker_name": "u-app",
        "files": order,
    }


def expectation() -> dict[str, Any]:
    return {
        "migration": "m-1",
        "container_id": "c-1",
        "tenant_id": "t-1",
        "source": "node_a",
        "key": "k" * 43,
        "spec": spec(),
    }


def migration() -> dict[str, Any]:
    return {
        "migration": "m-1",
        "container_id": "c-1",
        "docker_name": "u-app",
        "target": "node_b",
        "target_url": "mqtt://10.0.0.2:1883",
        "key": "k" * 43,
    }


def exec_order() -> dict[str, Any]:
    return {"container_id": "c-1", "docker_name": "u-app", "cmd": ["true"]}


def shell() -> dict[str, Any]:
    return {"session_id": "s-1", "container_id": "c-1", "docker_name": "u-app"}


def logs() -> dict[str, Any]:
    return {"container_id": "c-1", "docker_name": "u-app"}


Payload = Callable[[], dict[str, Any]]

# Every id a node turns into a name of its own (a path, a file name, a Docker volume or
# API path, a broker login or topic), by message and field.
ID_FIELDS: list[tuple[type[BaseModel], Payload, tuple[str | int, ...]]] = [
    (Command, create, ("id",)),
    (Command, create, ("container_id",)),
    (Command, create, ("spec", "container_id")),
    (Command, create, ("spec", "image_archive", "artifact_id")),
    (Command, build, ("spec", "build_context", "artifact_id")),
    (Command, deploy, ("deployment", "deployment_id")),
    (Command, deploy, ("deployment", "container_id")),
    (Command, deploy, ("deployment", "archive", "artifact_id")),
    (Command, deploy, ("deployment", "script", "artifact_id")),
    (Command, files, ("files", "artifact_id")),
    (MigrationExpectation, expectation, ("migration",)),
    (MigrationExpectation, expectation, ("container_id",)),
    (MigrationOrder, migration, ("migration",)),
    (MigrationOrder, migration, ("container_id",)),
    (ExecOrder, exec_order, ("container_id",)),
    (ShellOpen, shell, ("session_id",)),
    (ShellOpen, shell, ("container_id",)),
    (LogsRequest, logs, ("container_id",)),
]


def replaced(payload: dict[str, Any], path: tuple[str | int, ...], value: object) -> Any:
    target: Any = payload
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return payload


@pytest.mark.parametrize(("model", "payload", "path"), ID_FIELDS)
def test_every_id_a_node_names_things_by_is_held_to_the_grammar(
    model: type[BaseModel], payload: Payload, path: tuple[str | int, ...]
) -> None:
    model.model_validate(payload())  # the untouched message is valid
    for hostile in HOSTILE_IDS:
        with pytest.raises(ValidationError):
            model.model_validate(replaced(payload(), path, hostile))


@pytest.mark.parametrize(
    "made",
    [
        str(uuid.uuid4()),
        uuid.uuid4().hex,
        f"cmd-{uuid.uuid4().hex[:16]}",
        "c-1",
        "d-1",
        "m-1.retry_2",
        "x" * 64,
    ],
)
def test_ids_the_services_make_pass(made: str) -> None:
    for model, payload, path in ID_FIELDS:
        model.model_validate(replaced(payload(), path, made))


@pytest.mark.parametrize(
    "path",
    [
        ("deployment", "archive", "name"),
        ("deployment", "script", "name"),
    ],
)
def test_names_of_files_are_one_component(path: tuple[str, ...]) -> None:
    """The script is copied under its name on the node (``.edgecloud/<name>``)."""
    for hostile in ("../run.sh", "..", ".", "/etc/cron.d/x", "a/b", "a\x00", "", ".hidden"):
        with pytest.raises(ValidationError):
            Command.model_validate(replaced(deploy(), path, hostile))
    Command.model_validate(replaced(deploy(), path, "my app (2).tar"))


HOSTILE_URLS = [
    f"http://evil.example{TRANSFERS_PATH}/a-1?grant={GRANT}",
    f"https://127.0.0.1:8000{TRANSFERS_PATH}/a-1?grant={GRANT}",
    f"//evil.example{TRANSFERS_PATH}/a-1?grant={GRANT}",
    f"file://{TRANSFERS_PATH}/a-1?grant={GRANT}",
    f"\\\\evil.example\\api\\v1\\transfers\\a-1?grant={GRANT}",
    f"{TRANSFERS_PATH}/../../v1/containers?grant={GRANT}",
    f"{TRANSFERS_PATH}/%2e%2e/%2e%2e/x?grant={GRANT}",
    f"{TRANSFERS_PATH}/a-1%2f..%2f..?grant={GRANT}",
    f"{TRANSFERS_PATH}/a-1/../../x?grant={GRANT}",
    f"{TRANSFERS_PATH}/..?grant={GRANT}",
    f"/api/v1/containers/a-1?grant={GRANT}",
    f"/x{TRANSFERS_PATH}/a-1?grant={GRANT}",
    f"{TRANSFERS_PATH}/a-1",
    f"{TRANSFERS_PATH}/a-1?grant={GRANT}&next=http://evil",
    f"{TRANSFERS_PATH}/a-1?grant={GRANT}#x",
    f"{TRANSFERS_PATH}/a-1?grant={GRANT}\n",
    f"{TRANSFERS_PATH}/a\x00?grant={GRANT}",
]


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (create, ("spec", "image_archive", "url")),
        (build, ("spec", "build_context", "url")),
        (deploy, ("deployment", "archive", "url")),
        (deploy, ("deployment", "script", "url")),
        (files, ("files", "url")),
    ],
)
def test_transfer_urls_are_relative_and_under_the_transfers(
    payload: Payload, path: tuple[str, ...]
) -> None:
    for hostile in HOSTILE_URLS:
        with pytest.raises(ValidationError):
            Command.model_validate(replaced(payload(), path, hostile))
    # Empty: a command in the orchestrator's queue, whose grant is signed when it is sent.
    Command.model_validate(replaced(payload(), path, ""))


def test_a_deployment_order_on_its_own_is_held_to_the_same() -> None:
    order = deploy()["deployment"]
    DeploymentOrder.model_validate(order)
    with pytest.raises(ValidationError):
        DeploymentOrder.model_validate({**order, "deployment_id": "../../x"})
    with pytest.raises(ValidationError):
        TransferRef.model_validate({**ref(), "url": "http://evil.example/x"})
    with pytest.raises(ValidationError):
        FilesOrder.model_validate({"path": "/app", "artifact_id": "..", "url": url()})
