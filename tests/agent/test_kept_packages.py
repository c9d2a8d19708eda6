"""Collaboration level 1 on this machine's Docker engine and a node broker (as broker-setup
makes it): a source sends its container to a keeper that cannot run it; the keeper keeps
the package (the cloud's record, the image, /app) on disk, across a restart of its agent,
and hands it on to a capable node when the scheduler says so, /app intact. The three
nodes share the engine and the broker; the scheduler's WAMP side is recorded."""

import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from edgecloud_agent.peers.packages import PackageStore
from edgecloud_agent.runtime.docker import DockerRuntime, file_chunks
from edgecloud_agent.uplink.errors import CommandRejected, NotConnected
from edgecloud_contracts import errors, uris
from edgecloud_contracts.containers import ContainerSpec
from edgecloud_contracts.migrations import (
    MigrationExpectation,
    MigrationOrder,
    MigrationReady,
    StepReport,
)
from tests.conftest import eventually
from tests.support.brokers import NodeBroker

from .conftest import containers_named, docker_inspect, make_spec
from .test_peer_migration import Node, app_tar, new_key, peer_node, read_app, running_container

SOURCE, KEEPER, CAPABLE = "node_source", "node_keeper", "node_capable"


@pytest.fixture
async def nodes(
    runtime: DockerRuntime, node_broker: NodeBroker, tmp_path: Path
) -> AsyncIterator[dict[str, Node]]:
    async with (
        peer_node(SOURCE, runtime, node_broker, tmp_path / "source") as source,
        peer_node(KEEPER, runtime, node_broker, tmp_path / "keeper") as keeper,
        peer_node(CAPABLE, runtime, node_broker, tmp_path / "capable") as capable,
    ):
        keeper.migrations._level = 1  # storage, not the CPU and memory to run it
        yield {SOURCE: source, KEEPER: keeper, CAPABLE: capable}


async def move(
    nodes: dict[str, Node],
    broker: NodeBroker,
    spec: ContainerSpec,
    image_id: str | None,
    *,
    source: str,
    target: str,
    level: int,
) -> dict:
    """One leg, as the scheduler runs it: the target told first, then the source."""
    migration, key = f"m-{secrets.token_hex(6)}", new_key()
    expectation = MigrationExpectation(
        migration=migration,
        container_id=spec.container_id,
        tenant_id=spec.tenant_id,
        source=source,
        key=key,
        spec=spec,
        image_id=image_id,
        level=level,
    )
    ready = MigrationReady.model_validate(
        await nodes[target].migrations.expect(expectation.model_dump(mode="json"))
    )
    order = MigrationOrder(
        migration=migration,
        container_id=spec.container_id,
        docker_name=spec.docker_name,
        target=target,
        target_url=broker.url,
        key=key,
        login=ready.login,
        level=level,
    )
    return await nodes[source].migrations.start(order.model_dump(mode="json"))


def steps_reported(node: Node) -> list[str]:
    return [
        StepReport.model_validate(args[0]).step.name
        for uri, args in node.reports
        if uri == uris.MIGRATION_REPORT
        and StepReport.model_validate(args[0]).step.duration_ms is not None
    ]


async def with_data(node: Node, names: Callable[[], str], data: bytes, tmp: Path) -> ContainerSpec:
    spec = await running_container(node, names)
    tar = tmp / "data.tar"
    tar.write_bytes(app_tar(data))
    await node.node.runtime.put_archive(
        spec.docker_name, container_id=spec.container_id, path="/app", tar=file_chunks(tar)
    )
    return spec


async def test_a_kept_container_is_handed_on_with_its_data(
    nodes: dict[str, Node], node_broker: NodeBroker, names: Callable[[], str], tmp_path: Path
) -> None:
    source, keeper, capable = nodes[SOURCE], nodes[KEEPER], nodes[CAPABLE]
    spec = await with_data(source, names, b"written before the move", tmp_path)
    image_id = await source.node.runtime.image_of(spec.docker_name, container_id=spec.container_id)

    stored = await move(nodes, node_broker, spec, image_id, source=SOURCE, target=KEEPER, level=1)

    assert stored["ok"] is True, stored
    assert stored["stored"] is True
    # The record moved to the keeper (the required "store" step) before the copy stopped.
    assert steps_reported(source)[-2:] == ["store", "stop_source"]
    assert containers_named(spec.docker_name) == []
    assert source.desired.get(spec.container_id) is None
    # Kept on disk, not run; and a restarted agent finds it again.
    package = PackageStore(keeper.state_dir.parent / "packages").get(spec.container_id)
    assert package is not None
    assert package.image_file is not None
    assert package.image_id == image_id
    assert package.spec == spec
    assert keeper.desired.get(spec.container_id) is None

    handed = await move(nodes, node_broker, spec, image_id, source=KEEPER, target=CAPABLE, level=2)

    assert handed["ok"] is True, handed
    assert docker_inspect(spec.docker_name)["State"]["Running"] is True
    assert read_app(spec.docker_name) == b"written before the move"
    assert capable.desired.get(spec.container_id) is not None
    assert "activation" in steps_reported(keeper)
    assert keeper.migrations._packages.get(spec.container_id) is None


async def test_a_keeper_is_not_asked_to_run_and_a_level_0_node_keeps_nothing(
    nodes: dict[str, Node], node_broker: NodeBroker, names: Callable[[], str]
) -> None:
    keeper = nodes[KEEPER]
    spec = make_spec(names())
    for level, offered in ((2, 1), (1, 0)):
        keeper.migrations._level = offered
        expectation = MigrationExpectation(
            migration=f"m-{secrets.token_hex(6)}",
            container_id=spec.container_id,
            tenant_id=spec.tenant_id,
            source=SOURCE,
            key=new_key(),
            spec=spec,
            level=level,
        )
        with pytest.raises(CommandRejected) as refused:
            await keeper.migrations.expect(expectation.model_dump(mode="json"))
        assert refused.value.uri == errors.FAILED_PRECONDITION
        assert f"level {offered} only" in refused.value.message
    assert keeper.migrations._expected == {}


@pytest.mark.parametrize("failing", ["keeper_disk_full", "scheduler_unreachable"])
async def test_a_store_that_fails_leaves_the_source_serving_and_nothing_kept(
    nodes: dict[str, Node],
    node_broker: NodeBroker,
    names: Callable[[], str],
    tmp_path: Path,
    failing: str,
) -> None:
    """The keeper's disk cannot take the package, or the scheduler cannot record it on the
    keeper (so the source must not stop): nothing stops, nothing stays kept."""
    source, keeper = nodes[SOURCE], nodes[KEEPER]
    spec = await with_data(source, names, b"still here", tmp_path)
    image_id = await source.node.runtime.image_of(spec.docker_name, container_id=spec.container_id)
    if failing == "keeper_disk_full":

        def full(**_: object) -> None:
            raise OSError(28, "No space left on device")

        keeper.migrations._packages.keep = full  # type: ignore[method-assign]
    else:

        async def unreachable(uri: str, *args: object, timeout: float) -> object:
            if StepReport.model_validate(args[0]).step.name == "store":
                raise NotConnected("the cloud is away")
            return {"ok": True}

        source.migrations._call = unreachable

    outcome = await move(nodes, node_broker, spec, image_id, source=SOURCE, target=KEEPER, level=1)

    assert outcome["ok"] is False
    assert outcome["rolled_back"] is True
    assert docker_inspect(spec.docker_name)["State"]["Running"] is True
    assert read_app(spec.docker_name) == b"still here"
    assert source.desired.get(spec.container_id) is not None

    async def nothing_kept() -> bool:
        return not keeper.migrations._expected and keeper.migrations._packages.kept() == []

    await eventually(nothing_kept, timeout=20)


def test_a_package_is_whole_or_absent_and_goes_after_its_retention(tmp_path: Path) -> None:
    spec = make_spec("kept-one")
    app = tmp_path / "app.tar"
    app.write_bytes(app_tar(b"x"))
    store = PackageStore(tmp_path / "packages", retention_s=3600)
    store.keep(migration="m-1", spec=spec, image_id=None, app_file=app, image_file=None)
    # A keep cut short leaves a hidden staging directory: swept, never read as a package.
    (tmp_path / "packages" / ".half.m-2").mkdir()
    assert store.kept() == [spec.container_id]
    assert store.sweep() == []
    assert store.kept() == [spec.container_id]
    assert not (tmp_path / "packages" / ".half.m-2").exists()

    expired = PackageStore(tmp_path / "packages", retention_s=0)
    assert expired.sweep() == [spec.container_id]
    assert store.get(spec.container_id) is None
