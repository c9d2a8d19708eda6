import pytest

from edgecloud_gateway.tenants.ratelimit import RateLimiter
from edgecloud_servicekit.problems import TooManyRequests


async def test_one_replica_refuses_past_the_quota(sessions) -> None:
    limiter = RateLimiter(sessions)
    for _ in range(3):
        limiter.count(tenant_id="t-one", limit=3)
    with pytest.raises(TooManyRequests) as refused:
        limiter.count(tenant_id="t-one", limit=3)
    assert refused.value.code == "rate_limited"
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    limiter.count(tenant_id="t-other", limit=3)  # other tenants are not affected


async def test_replicas_share_their_counts_through_the_database(sessions) -> None:
    first, second = RateLimiter(sessions), RateLimiter(sessions)
    for _ in range(3):
        first.count(tenant_id="t-shared", limit=5)
    for _ in range(2):
        second.count(tenant_id="t-shared", limit=5)
    await first.flush()
    await second.flush()
    await first.flush()
    with pytest.raises(TooManyRequests):
        first.count(tenant_id="t-shared", limit=5)
    with pytest.raises(TooManyRequests):
        second.count(tenant_id="t-shared", limit=5)
