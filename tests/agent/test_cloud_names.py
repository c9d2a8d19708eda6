"""Cloud strings that become names on the node, from a relay that may be compromised.

The node runs as root: a deployment id of ``../../neighbour`` would have it write into,
and later ``rmtree``, a directory that is not its own; an absolute transfer URL would have
it send a container's files to another server. Each test here puts such strings into the
commands the real agent parses (its container procedures, as the router calls them, on
the real Docker engine) or past the contract into the agent's own locks, and checks that
they are refused with ``edge.error.invalid_argument`` and that nothing on the node moved:
a neighbour's canary outside the state directory, the state directory itself, Docker and
the API stand-in.
"""

import hashlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from autobahn.wamp.exception import ApplicationError

from edgecloud_agent.deploy import rpc
from edgecloud_agent.deploy.applications import Deployments
from edgecloud_agent.deploy.commands import CommandExecutor
from edgecloud_agent.deploy.transfers import CloudFiles, DownloadFailed, UploadFailed
from edgecloud_agent.isolation.provision import Provisioner
from edgecloud_agent.runtime.errors import UnsafeName
from edgecloud_agent.state.desired import DesiredState
from edgecloud_agent.state.journal import CommandJournal
from edgecloud_agent.uplink.errors import CommandRejected
from edgecloud_contracts import errors
from edgecloud_contracts.artifacts import TRANSFERS_PATH, DeploymentOrder, TransferRef
from edgecloud_contracts.containers import Action, Command, FilesOrder
from tests.support.hostile_names import GRANT, HOSTILE_IDS
from tests.support.local_http import serving

from .conftest import command_for, containers_named, joined_uplink, make_spec
from .test_rpc import RecordingSession

pytestmark = pytest.mark.stack

KEY = "node_02000000cafe"
PAYLOAD = b"the artifact's bytes"
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()

# The hostile ids that are not one path component, which the agent's own lock refuses
# ("%2e%2e" is a name like any other to a filesystem: only the contract's grammar refuses
# it). Relative to a directory of the node's state, ../../neighbour holds the canary.
NOT_ONE_COMPONENT = ["../", "..", ".", "/abs", "a/../../b", "../../neighbour", "a\x00b", ""]
HOSTILE_NAMES = ["../../neighbour/canary.txt", "..", ".", "/etc/cron.d/x", "a/../b", "a\x00"]


def transfer(artifact: str = "a-1") -> str:
    return f"{TRANSFERS_PATH}/{artifact}?grant={GRANT}"


def hostile_urls(api: str) -> list[str]:
    """URLs leading off the storage's transfers; the absolute ones lead to the API
    stand-in itself, so one that is followed shows up in its log."""
    host = api.removeprefix("http://")
    return [
        f"{api}{transfer()}",
        f"//{host}{transfer()}",
        f"{TRANSFERS_PATH}/../../v1/containers?grant={GRANT}",
        f"{TRANSFERS_PATH}/%2e%2e/%2e%2e/v1/containers?grant={GRANT}",
        f"{TRANSFERS_PATH}/a-1%2f..%2f..?grant={GRANT}",
        f"\\\\{host}\\api\\v1\\transfers\\a-1?grant={GRANT}",
        f"/api/v1/containers/a-1?grant={GRANT}",
        "",  # a queued command's placeholder: never sent to a node
    ]


@dataclass
class Api:
    """A stand-in for the platform's public API: serves one artifact at its transfer
    URL, takes uploads, and logs every request it gets."""

    url: str = ""
    requests: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.raw_path}")
        if request.path == f"{TRANSFERS_PATH}/a-1" and request.method == "GET":
            return web.Response(body=PAYLOAD)
        if request.path == f"{TRANSFERS_PATH}/a-1" and request.method == "PATCH":
            await request.read()
            return web.json_response({}, status=200)
        return web.Response(status=404)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    stand_in = Api()
    async with serving(stand_in.handle, path="/{tail:.*}") as url:
        stand_in.url = url
        yield stand_in


@dataclass
class Guarded:
    """The agent's command side in the provisioner's state directory, with a neighbour's
    canary beside it."""

    root: Path
    state_dir: Path
    canary: Path
    executor: CommandExecutor
    files: CloudFiles

    def snapshot(self) -> set[Path]:
        return set(self.root.rglob("*"))

    def assert_untouched(self, before: set[Path]) -> None:
        assert self.canary.read_text() == "the neighbour's"
        assert self.snapshot() == before, self.snapshot() ^ before


@pytest.fixture
async def guarded(provisioner: Provisioner, tmp_path: Path, api: Api) -> AsyncIterator[Guarded]:
    state_dir = tmp_path / "node"  # the provisioner's
    canary = tmp_path / "neighbour" / "canary.txt"
    canary.parent.mkdir()
    canary.write_text("the neighbour's")
    journal, desired = CommandJournal(state_dir), DesiredState(state_dir)
    files = CloudFiles(api.url, attempts=1)
    deployments = Deployments(
        runtime=provisioner.runtime,
        files=files,
        report=lambda _: None,
        deliver=_ignore,
        state_dir=state_dir,
    )
    executor = CommandExecutor(
        node=provisioner,
        journal=journal,
        desired=desired,
        stop_timeout_s=1,
        deployments=deployments,
        files=files,
        outgoing_dir=state_dir / "outgoing",
    )
    try:
        yield Guarded(tmp_path, state_dir, canary, executor, files)
    finally:
        await deployments.close()
        await files.close()
        journal.close()
        desired.close()


async def _ignore(_: object) -> None:
    return None


def ref(artifact: str, name: str) -> TransferRef:
    return TransferRef(
        artifact_id=artifact, name=name, size=len(PAYLOAD), sha256=SHA256, url=transfer(artifact)
    )


def create_payload(name: str) -> dict[str, Any]:
    spec = make_spec(name, image_archive=ref("a-1", "image.tar"))
    return command_for(spec, Action.CREATE).model_dump(mode="json")


def deploy_command(name: str, container_id: str) -> Command:
    order = DeploymentOrder(
        deployment_id=f"d-{secrets.token_hex(4)}",
        container_id=container_id,
        docker_name=name,
        archive=ref("a-1", "app.tar"),
        script=ref("a-2", "run.sh"),
    )
    return Command(
        id=f"cmd-{secrets.token_hex(8)}",
        action=Action.DEPLOY,
        container_id=container_id,
        docker_name=name,
        deployment=order,
    )


def files_command(name: str, container_id: str) -> Command:
    return Command(
        id=f"cmd-{secrets.token_hex(8)}",
        action=Action.FILES,
        container_id=container_id,
        docker_name=name,
        files=FilesOrder(path="/app", artifact_id="a-1", url=transfer()),
    )


Paths = tuple[tuple[str, ...], ...]

# Every field of a container command the agent turns into a path or a file name on the
# node, with the fields that must change with it (a command and its spec or order name
# one container).
ID_FIELDS: list[tuple[Action, Paths]] = [
    (Action.CREATE, (("id",),)),
    (Action.CREATE, (("container_id",), ("spec", "container_id"))),
    (Action.CREATE, (("spec", "image_archive", "artifact_id"),)),
    (Action.DEPLOY, (("id",),)),
    (Action.DEPLOY, (("container_id",), ("deployment", "container_id"))),
    (Action.DEPLOY, (("deployment", "deployment_id"),)),
    (Action.DEPLOY, (("deployment", "archive", "artifact_id"),)),
    (Action.FILES, (("id",),)),
    (Action.FILES, (("container_id",),)),
    (Action.FILES, (("files", "artifact_id"),)),
]
NAME_FIELDS: list[tuple[Action, Paths]] = [
    (Action.DEPLOY, (("deployment", "script", "name"),)),
    (Action.DEPLOY, (("deployment", "archive", "name"),)),
]
URL_FIELDS: list[tuple[Action, Paths]] = [
    (Action.CREATE, (("spec", "image_archive", "url"),)),
    (Action.DEPLOY, (("deployment", "archive", "url"),)),
    (Action.DEPLOY, (("deployment", "script", "url"),)),
    (Action.FILES, (("files", "url"),)),
]


def payload_for(action: Action, name: str) -> dict[str, Any]:
    container_id = f"c-{secrets.token_hex(6)}"
    if action is Action.CREATE:
        return create_payload(name)
    if action is Action.DEPLOY:
        return deploy_command(name, container_id).model_dump(mode="json")
    return files_command(name, container_id).model_dump(mode="json")


def with_values(payload: dict[str, Any], paths: Paths, value: str) -> dict[str, Any]:
    for path in paths:
        target = payload
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return payload


async def test_commands_naming_paths_off_the_node_are_refused_and_touch_nothing(
    guarded: Guarded, api: Api, names: Callable[[], str]
) -> None:
    """Each hostile id, file name and URL in each field, through the procedure the router
    calls: ``edge.error.invalid_argument``, and no file, directory, container or request."""
    session = RecordingSession()
    await rpc.register(joined_uplink(session, KEY), KEY, guarded.executor)
    registered = session.registered
    cases = [
        *((action, paths, value) for action, paths in ID_FIELDS for value in HOSTILE_IDS),
        *((action, paths, value) for action, paths in NAME_FIELDS for value in HOSTILE_NAMES),
        *(
            (action, paths, value)
            for action, paths in URL_FIELDS
            for value in hostile_urls(api.url)
        ),
    ]
    before = guarded.snapshot()
    docker_name = names()
    for action, paths, value in cases:
        handler = registered[f"edge.device.{KEY}.container.{action}"]
        payload = with_values(payload_for(action, docker_name), paths, value)
        with pytest.raises(ApplicationError) as refused:
            await handler(payload)
        assert refused.value.error == errors.INVALID_ARGUMENT, (action, paths, value)
        assert isinstance(refused.value.args[0], str)
    guarded.assert_untouched(before)
    assert containers_named(docker_name) == []
    assert api.requests == []


async def test_names_past_the_contract_are_refused_by_the_agent_itself(
    guarded: Guarded, names: Callable[[], str], api: Api
) -> None:
    """A command that got past the contract (built without validation, as a looser
    grammar or an older state file would let it) meets the agent's own check: refused
    before anything is made, although the container is real and running."""
    name = names()
    spec = make_spec(name)
    made = await guarded.executor.execute(command_for(spec, Action.CREATE))
    assert made.ok, made
    deploy = deploy_command(name, spec.container_id)
    files = files_command(name, spec.container_id)
    assert deploy.deployment is not None
    assert files.files is not None
    order, script = deploy.deployment, deploy.deployment.script
    unchecked: list[Command] = []
    for value in NOT_ONE_COMPONENT:
        unchecked += [
            deploy.model_copy(
                update={"deployment": order.model_copy(update={"deployment_id": value})}
            ),
            deploy.model_copy(update={"id": value}),
            files.model_copy(update={"id": value}),
        ]
    for value in HOSTILE_NAMES:
        script_named = script.model_copy(update={"name": value})
        unchecked.append(
            deploy.model_copy(
                update={"deployment": order.model_copy(update={"script": script_named})}
            )
        )
    for value in hostile_urls(api.url):
        unchecked.append(
            files.model_copy(update={"files": files.files.model_copy(update={"url": value})})
        )
    before = guarded.snapshot()
    for command in unchecked:
        with pytest.raises(CommandRejected) as refused:
            await guarded.executor.execute(command)
        assert refused.value.uri == errors.INVALID_ARGUMENT, command
    guarded.assert_untouched(before)
    assert api.requests == []


async def test_every_join_refuses_a_name_that_is_not_one_component(
    guarded: Guarded, provisioner: Provisioner, api: Api
) -> None:
    """The last lock, where a cloud id meets a directory: a deployment's work directory,
    a container's /app disk and its mount point."""
    deployments = Deployments(
        runtime=provisioner.runtime,
        files=guarded.files,
        report=lambda _: None,
        deliver=_ignore,
        state_dir=guarded.state_dir,
    )
    order = deploy_command("t-x", "c-1").deployment
    assert order is not None
    before = guarded.snapshot()
    for value in NOT_ONE_COMPONENT:
        with pytest.raises(UnsafeName):
            deployments.accept(order.model_copy(update={"deployment_id": value}))
        with pytest.raises(UnsafeName):
            await provisioner.disks.provide(value, 16 << 20, labels={})
        with pytest.raises(UnsafeName):
            await provisioner.disks.release(value)
    for value in HOSTILE_NAMES:
        script = order.script.model_copy(update={"name": value})
        with pytest.raises(UnsafeName):
            deployments.accept(order.model_copy(update={"script": script}))
    await deployments.close()
    guarded.assert_untouched(before)
    assert api.requests == []


async def test_transfers_resolve_only_under_the_api_address(
    guarded: Guarded, api: Api, tmp_path: Path
) -> None:
    """Downloads and uploads: a transfer URL reaches the API's transfers, and nothing else
    is fetched from or sent anywhere."""
    files = guarded.files
    upload = tmp_path / "out.tar"
    upload.write_bytes(b"a container's files")
    for url in hostile_urls(api.url):
        with pytest.raises(DownloadFailed) as failed:
            await files.download(url, tmp_path / "got", sha256="0" * 64, size=len(PAYLOAD))
        assert failed.value.code == "url_refused", url
        with pytest.raises(UploadFailed) as refused:
            await files.upload(url, upload)
        assert refused.value.code == "url_refused", url
    assert api.requests == []
    assert not (tmp_path / "got").exists()
    assert not (tmp_path / "got.part").exists()

    got = await files.download(transfer(), tmp_path / "got", sha256=SHA256, size=len(PAYLOAD))
    assert got.read_bytes() == PAYLOAD
    await files.upload(transfer(), upload)
    assert api.requests == [
        f"GET {transfer()}",
        f"PATCH {transfer()}",
    ]
