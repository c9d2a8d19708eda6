"""Container commands applied once, against the real Docker engine."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from edgecloud_agent.uplink.errors import CommandRejected
from edgecloud_contracts import errors
from edgecloud_contracts.containers import Action, Limits, PortMapping

from .conftest import Node, command_for, containers_named, docker, make_spec

pytestmark = pytest.mark.stack


async def test_create_twice_acts_once(node: Node, names: Callable[[], str]) -> None:
    spec = make_spec(names())
    create = command_for(spec, Action.CREATE)
    first = await node.executor.execute(create)
    assert first.ok
    assert not first.replayed
    assert first.container is not None
    assert first.container.state == "running"
    second = await node.executor.execute(create)
    assert second.replayed
    assert second.model_copy(update={"replayed": False}) == first
    assert len(containers_named(spec.docker_name)) == 1
    desired = node.desired.get(spec.container_id)
    assert desired is not None
    assert desired.spec == spec
    assert desired.running


async def test_concurrent_deliveries_act_once(node: Node, names: Callable[[], str]) -> None:
    spec = make_spec(names())
    create = command_for(spec, Action.CREATE)
    results = await asyncio.gather(*(node.executor.execute(create) for _ in range(3)))
    assert all(result.ok for result in results)
    assert sorted(result.replayed for result in results) == [False, True, True]
    assert len({result.container.docker_id for result in results if result.container}) == 1
    assert len(containers_named(spec.docker_name)) == 1


async def test_a_caller_giving_up_does_not_cut_a_create_short(
    node: Node, names: Callable[[], str]
) -> None:
    spec = make_spec(names())
    create = command_for(spec, Action.CREATE)
    caller = asyncio.create_task(node.executor.execute(create))
    await asyncio.sleep(0.01)
    caller.cancel()  # what autobahn does when the router times the call out
    with pytest.raises(asyncio.CancelledError):
        await caller
    again = await node.executor.execute(create)
    assert again.ok
    assert again.replayed
    assert again.container is not None
    assert again.container.state == "running"
    assert len(containers_named(spec.docker_name)) == 1


async def test_crash_between_docker_and_journal_converges(
    node: Node, create: Callable[..., Any], names: Callable[[], str]
) -> None:
    spec = make_spec(names())
    # The agent got as far as Docker's create, then died before starting or recording it.
    made = await create(spec)
    result = await node.executor.execute(command_for(spec, Action.CREATE))
    assert result.ok
    assert not result.replayed
    assert result.container is not None
    assert result.container.docker_id == made.docker_id
    assert result.container.state == "running"
    assert containers_named(spec.docker_name) == [made.docker_id]


async def test_create_never_takes_over_a_name_in_use(node: Node, names: Callable[[], str]) -> None:
    other = make_spec(names())
    await node.executor.execute(command_for(other, Action.CREATE))
    spec = make_spec(other.docker_name)  # same name, another container id
    result = await node.executor.execute(command_for(spec, Action.CREATE))
    assert not result.ok
    assert result.error_code == "name_conflict"
    assert node.desired.get(spec.container_id) is None
    untouched = await node.executor.execute(command_for(other, Action.INSPECT))
    assert untouched.ok
    assert untouched.container is not None
    assert untouched.container.state == "running"


async def test_journal_survives_a_restart(
    node_factory: Callable[..., Node], names: Callable[[], str]
) -> None:
    spec = make_spec(names())
    create = command_for(spec, Action.CREATE)
    before = node_factory()
    first = await before.executor.execute(create)
    before.close()
    after = node_factory(before.state_dir)
    again = await after.executor.execute(create)
    assert again.replayed
    assert again.container == first.container
    assert len(containers_named(spec.docker_name)) == 1


async def test_lifecycle_commands(node: Node, names: Callable[[], str]) -> None:
    spec = make_spec(names())
    run = node.executor.execute
    assert (await run(command_for(spec, Action.CREATE))).ok

    stopped = await run(command_for(spec, Action.STOP))
    assert stopped.ok
    assert stopped.container is not None
    assert stopped.container.state == "exited"
    desired = node.desired.get(spec.container_id)
    assert desired is not None
    assert not desired.running

    started = await run(command_for(spec, Action.START))
    assert started.ok
    assert started.container is not None
    assert started.container.state == "running"

    restarted = await run(command_for(spec, Action.RESTART))
    assert restarted.ok
    assert restarted.container is not None
    assert restarted.container.state == "running"

    inspected = await run(command_for(spec, Action.INSPECT))
    assert inspected.ok
    assert inspected.container is not None
    assert inspected.container.container_id == spec.container_id
    assert inspected.container.state == "running"

    stranger = make_spec(spec.docker_name)  # right name, wrong container id
    for action in (Action.STOP, Action.INSPECT):
        refused = await run(command_for(stranger, action))
        assert not refused.ok
        assert refused.error_code == "container_not_found"

    removed = await run(command_for(spec, Action.REMOVE))
    assert removed.ok
    assert removed.container is None
    assert containers_named(spec.docker_name) == []
    assert node.desired.get(spec.container_id) is None

    gone = await run(command_for(spec, Action.INSPECT))
    assert not gone.ok
    assert gone.error_code == "container_not_found"


async def test_remove_of_a_missing_container_is_ok(node: Node, names: Callable[[], str]) -> None:
    result = await node.executor.execute(command_for(make_spec(names()), Action.REMOVE))
    assert result.ok
    assert result.container is None


async def test_missing_image_is_pulled(node: Node, registry: str, names: Callable[[], str]) -> None:
    docker("image", "rm", "-f", registry)
    spec = make_spec(names(), image=registry)
    create = command_for(spec, Action.CREATE)
    result = await node.executor.execute(create)
    assert result.ok, result
    assert node.pulls
    assert {p.command_id for p in node.pulls} == {create.id}
    assert node.pulls[-1].status == "done"


async def test_image_that_does_not_exist(node: Node, names: Callable[[], str]) -> None:
    spec = make_spec(names(), image="127.0.0.1:5000/edgecloud/no-such-image:1.0")
    create = command_for(spec, Action.CREATE)
    result = await node.executor.execute(create)
    assert not result.ok
    assert result.error_code == "image_pull_failed"
    assert result.container is None
    assert containers_named(spec.docker_name) == []
    assert node.desired.get(spec.container_id) is None
    assert (await node.executor.execute(create)).replayed


async def test_a_start_that_fails_leaves_no_container(node: Node, names: Callable[[], str]) -> None:
    spec = make_spec(names(), command=["/no/such/program"])
    result = await node.executor.execute(command_for(spec, Action.CREATE))
    assert not result.ok
    assert result.error_code == "docker_error"
    assert containers_named(spec.docker_name) == []


async def test_a_spec_beyond_the_nodes_policy_is_refused_and_leaves_nothing(
    node: Node, names: Callable[[], str]
) -> None:
    pids = make_spec(names(), limits=Limits(pids=4096))  # above the node's 1024
    ported = make_spec(names(), ports=[PortMapping(container=80, host=30080)])  # no range here
    for spec, code in ((pids, "policy_refused"), (ported, "port_refused")):
        result = await node.executor.execute(command_for(spec, Action.CREATE))
        assert not result.ok
        assert result.error_code == code
        assert containers_named(spec.docker_name) == []
        assert node.desired.get(spec.container_id) is None
        assert not node.node.disks.image(spec.container_id).exists()


async def test_malformed_commands_are_rejected(node: Node, names: Callable[[], str]) -> None:
    spec = make_spec(names())
    create = command_for(spec, Action.CREATE)
    cases = [
        create.model_copy(update={"spec": None}),
        create.model_copy(update={"container_id": "c-other"}),
        create.model_copy(update={"docker_name": "../../images/create"}),
        command_for(spec, Action.STOP).model_copy(update={"spec": spec}),
    ]
    for command in cases:
        with pytest.raises(CommandRejected) as rejected:
            await node.executor.execute(command)
        assert rejected.value.uri == errors.INVALID_ARGUMENT
    assert (await node.executor.execute(create)).ok
    reused = command_for(spec, Action.REMOVE, command_id=create.id)
    with pytest.raises(CommandRejected, match="another command"):
        await node.executor.execute(reused)
    assert len(containers_named(spec.docker_name)) == 1


def exec_in(name: str, script: str) -> tuple[int, str]:
    result = docker("exec", name, "sh", "-c", script)
    return result.returncode, result.stdout + result.stderr


async def test_escape_probes_fail(node: Node, names: Callable[[], str]) -> None:
    spec = make_spec(names())
    assert (await node.executor.execute(command_for(spec, Action.CREATE))).ok
    name = spec.docker_name
    assert exec_in(name, "mount -t tmpfs none /mnt")[0] != 0
    assert exec_in(name, "touch /escape")[0] != 0
    assert exec_in(name, "test -e /var/run/docker.sock || test -e /run/docker.sock")[0] != 0
    assert exec_in(name, "grep -q '^CapEff:\t0000000000000000$' /proc/self/status")[0] == 0
    assert exec_in(name, "grep -q '^NoNewPrivs:\t1$' /proc/self/status")[0] == 0
    # /tmp is writable but nothing written there can be run.
    assert exec_in(name, "echo hi > /tmp/note && cat /tmp/note") == (0, "hi\n")
    assert exec_in(name, "cp /bin/busybox /tmp/bb && /tmp/bb true")[0] != 0
    assert exec_in(name, "ip link add dummy0 type dummy")[0] != 0
    assert exec_in(name, "mknod /tmp/disk b 8 0")[0] != 0
