"""Declared interfaces against a real (SQLite) database, in process: who may declare for
whom, and what each tenant is shown."""

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.interfaces import InterfaceDeclaration, InterfaceView
from edgecloud_registry.devices.exceptions import DeviceNotFound
from edgecloud_registry.interfaces import service
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.problems import NotFound, Unprocessable

from .test_alerts import OPERATOR_ID, grant, new_device, tenant


async def declare(
    sessions: async_sessionmaker[AsyncSession], key: str, name: str, **body: Any
) -> tuple[InterfaceView, bool]:
    declaration = InterfaceDeclaration.model_validate(body)
    async with transaction(sessions) as session:
        return await service.declare(
            session=session, caller=OPERATOR_ID, key=key, name=name, declaration=declaration
        )


async def seen(
    sessions: async_sessionmaker[AsyncSession], key: str, caller: Identity
) -> list[tuple[str, list[str]]]:
    async with transaction(sessions) as session:
        views = await service.list_interfaces(session=session, caller=caller, key=key)
    return [(view.name, view.tenants) for view in views]


async def test_each_tenant_sees_only_what_is_for_it_and_only_itself(sessions) -> None:
    key = await new_device(sessions)
    ann, bob, eve = tenant(), tenant(), tenant()
    for caller in (ann, bob, eve):
        await grant(sessions, key, caller)
    both = [ann.tenant_id, bob.tenant_id]
    view, created = await declare(
        sessions, key, "serial0", kind="serial", path="/dev/ttyUSB0", tenants=both
    )
    assert created
    assert view.container_path == "/dev/ttyUSB0"
    assert view.tenants == sorted(both)
    await declare(sessions, key, "temps", kind="sensor", topic="s/+/temp", tenants=[ann.tenant_id])

    assert await seen(sessions, key, OPERATOR_ID) == [
        ("serial0", sorted(both)),
        ("temps", [ann.tenant_id]),
    ]
    assert await seen(sessions, key, ann) == [
        ("serial0", [ann.tenant_id]),
        ("temps", [ann.tenant_id]),
    ]
    assert await seen(sessions, key, bob) == [("serial0", [bob.tenant_id])]
    assert await seen(sessions, key, eve) == []
    with pytest.raises(DeviceNotFound):
        await seen(sessions, await new_device(sessions), ann)


async def test_replacing_keeps_one_row_and_a_sensor_is_always_shared(sessions) -> None:
    key = await new_device(sessions)
    first, _ = await declare(sessions, key, "temps", kind="sensor", topic="s/#")
    assert first.shareable
    again, created = await declare(
        sessions, key, "temps", kind="camera", path="/dev/video0", container_path="/dev/video9"
    )
    assert not created
    assert (again.kind, again.path, again.container_path, again.topic, again.shareable) == (
        "camera",
        "/dev/video0",
        "/dev/video9",
        None,
        False,
    )
    assert await seen(sessions, key, OPERATOR_ID) == [("temps", [])]


async def test_a_tenant_without_the_device_is_refused_and_nothing_changes(sessions) -> None:
    key = await new_device(sessions)
    ann, stranger = tenant(), tenant()
    await grant(sessions, key, ann)
    await declare(
        sessions, key, "gpio", kind="gpio", path="/dev/gpiochip0", tenants=[ann.tenant_id]
    )
    for name in ("gpio", "spi0"):
        with pytest.raises(Unprocessable) as refused:
            await declare(
                sessions, key, name, kind="spi", path="/dev/spidev0.0",
                tenants=[ann.tenant_id, stranger.tenant_id],
            )  # fmt: skip
        assert refused.value.code == "tenant_not_granted"
        assert stranger.tenant_id in str(refused.value)
    assert await seen(sessions, key, OPERATOR_ID) == [("gpio", [ann.tenant_id])]
    with pytest.raises(DeviceNotFound):
        await declare(sessions, "no_such_device", "gpio", kind="gpio", path="/dev/gpiochip0")


async def test_withdrawing_a_tenant_and_removing_an_interface(sessions) -> None:
    key = await new_device(sessions)
    ann, bob = tenant(), tenant()
    for caller in (ann, bob):
        await grant(sessions, key, caller)
    tenants = [ann.tenant_id, bob.tenant_id]
    await declare(sessions, key, "usb", kind="usb", path="/dev/bus/usb/001/002", tenants=tenants)
    async with transaction(sessions) as session:
        await service.withdraw_tenant(session=session, key=key, tenant_id=ann.tenant_id)
    assert await seen(sessions, key, OPERATOR_ID) == [("usb", [bob.tenant_id])]

    async with transaction(sessions) as session:
        await service.remove(session=session, caller=OPERATOR_ID, key=key, name="usb")
    assert await seen(sessions, key, OPERATOR_ID) == []
    with pytest.raises(NotFound) as absent:
        async with transaction(sessions) as session:
            await service.remove(session=session, caller=OPERATOR_ID, key=key, name="usb")
    assert absent.value.code == "interface_not_found"
