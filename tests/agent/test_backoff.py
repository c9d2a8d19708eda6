from edgecloud_agent.uplink.wamp import Backoff


def test_delay_is_capped_and_jittered() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30)
    early = [backoff.delay(0) for _ in range(200)]
    assert all(0 <= d <= 0.5 for d in early)
    late = [backoff.delay(20) for _ in range(200)]
    assert all(0 <= d <= 30 for d in late)
    assert len({round(d, 3) for d in late}) > 100  # spread out, not in lockstep
