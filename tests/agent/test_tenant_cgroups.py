"""A tenant's cgroup on the node, taken back with its last container even when the engine
has not let go of it yet (on the testbed's engines Docker's own group of the container
lingered for seconds: the removal waited five of them, then left the group behind for good).
On this machine's Docker engine and cgroupfs, as a node has them."""

import secrets
from collections.abc import Callable

from edgecloud_agent.isolation.cgroups import CGROUP_ROOT, V1_CONTROLLERS, tenant_group
from edgecloud_agent.isolation.provision import Provisioner

from .conftest import make_spec


async def test_a_busy_tenant_group_goes_once_it_is_free(
    provisioner: Provisioner, names: Callable[[], str]
) -> None:
    assert provisioner.tenant_share is not None
    spec = make_spec(names(), tenant_id=f"tenant-{secrets.token_hex(4)}")
    image_id = await provisioner.images.find(spec)
    assert image_id is not None
    await provisioner.create(spec, image_id)
    groups = [
        CGROUP_ROOT / controller / tenant_group(spec.tenant_id) for controller in V1_CONTROLLERS
    ]
    assert all(group.is_dir() for group in groups)
    # Something the engine has not removed yet holds the group (a group of its own inside).
    lingering = groups[1] / "lingering"
    lingering.mkdir()
    try:
        await provisioner.remove(
            spec.docker_name, container_id=spec.container_id, tenant_id=spec.tenant_id
        )
        assert groups[1].is_dir()  # still busy: not removed now
    finally:
        lingering.rmdir()

    await provisioner.settled()
    assert not any(group.exists() for group in groups)


async def test_a_group_in_use_again_is_not_taken(
    provisioner: Provisioner, names: Callable[[], str]
) -> None:
    """The later removal finds the tenant with a container again: the group stays."""
    tenant = f"tenant-{secrets.token_hex(4)}"
    first, second = make_spec(names(), tenant_id=tenant), make_spec(names(), tenant_id=tenant)
    image_id = await provisioner.images.find(first)
    assert image_id is not None
    await provisioner.create(first, image_id)
    group = CGROUP_ROOT / "memory" / tenant_group(tenant)
    lingering = group / "lingering"
    lingering.mkdir()
    try:
        await provisioner.remove(
            first.docker_name, container_id=first.container_id, tenant_id=tenant
        )
        await provisioner.create(second, image_id)
    finally:
        lingering.rmdir()
    await provisioner.settled()
    assert group.is_dir()
    await provisioner.remove(second.docker_name, container_id=second.container_id, tenant_id=tenant)
