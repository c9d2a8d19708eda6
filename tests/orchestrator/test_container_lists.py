"""A list's cursor belongs to the tenant (and the list) it was made for: another tenant
handing it in is refused, and learns nothing of the rows it came from."""

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_orchestrator.containers import service
from edgecloud_servicekit.pagination import encode_cursor
from edgecloud_servicekit.problems import BadRequest

from .test_node_fit import create, node, tenant

# Creates ask the registry whether the device is granted (withdrawals/service.py).
pytestmark = pytest.mark.usefixtures("granting_registry")


async def test_another_tenants_cursor_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    alice, bob = tenant(), tenant()
    for _ in range(3):  # made in turns: each of Alice's has some of Bob's before it
        await create(sessions, alice, node())
        await create(sessions, bob, node())
    async with sessions() as session:
        newest, alices_cursor = await service.list_for(
            session=session, caller=alice, limit=1, cursor=None, device=None
        )
        assert alices_cursor is not None
        rest, _ = await service.list_for(
            session=session, caller=alice, limit=10, cursor=alices_cursor, device=None
        )
        assert len(newest) + len(rest) == 3

        # Before, Bob's own containers made before Alice's newest came back: how they sort
        # around hers told him when she made it; a forged cursor naming her container's id
        # told him whether it exists.
        for cursor in (
            alices_cursor,
            encode_cursor(newest[0].id, scope=f"containers:{bob.tenant_id}"),
        ):
            with pytest.raises(BadRequest) as refused:
                await service.list_for(
                    session=session, caller=bob, limit=10, cursor=cursor, device=None
                )
            assert refused.value.code == "invalid_cursor"

        bobs, bobs_cursor = await service.list_for(
            session=session, caller=bob, limit=2, cursor=None, device=None
        )
        assert bobs_cursor is not None
        last, _ = await service.list_for(
            session=session, caller=bob, limit=10, cursor=bobs_cursor, device=None
        )
        assert {c.tenant_id for c in [*bobs, *last]} == {bob.tenant_id}
        assert len(bobs) + len(last) == 3
