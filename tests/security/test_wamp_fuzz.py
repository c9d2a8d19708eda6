"""Malformed payloads against every procedure registered on the router, as a service and as
a device: each call ends with an error URI or a valid answer, never a hang and never a
Python exception leaking as ``wamp.error.runtime_error``; afterwards every service is
healthy and every procedure still registered.

Not fuzzed here, and why: the agents' ``edge.device.<key>.*`` procedures (a valid answer
runs Docker on the host; the agent's own tests feed them malformed commands), and the
router's meta procedures (``wamp.*``, Crossbar's own).
"""

import asyncio
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecloud_contracts import uris
from tests.conftest import ONE_DATABASE
from tests.security.probe_nodes import assert_services_healthy
from tests.security.raw_wamp import RawSession, raw_device, raw_session
from tests.security.test_wamp_isolation import DEVICE_CALLABLE, registered_procedures
from tests.support.beats import heartbeat
from tests.support.wamp import probe_key

pytestmark = [pytest.mark.stack, ONE_DATABASE]

EXAMPLES = 10
CALL_TIMEOUT_S = 20  # generous: "does not hang", not a speed limit


def _deep(levels: int) -> Any:
    nested: Any = "bottom"
    for _ in range(levels):
        nested = {"a": [nested]}
    return nested


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(min_size=5000, max_size=20000).map(lambda t: t * 2),
    st.binary(max_size=200),
)
payloads = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _mutated(valid: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid payload with one field replaced, removed, or an extra one added."""
    fields = sorted(valid)
    replace = st.tuples(st.sampled_from(fields), payloads).map(lambda kv: {**valid, kv[0]: kv[1]})
    remove = st.sampled_from(fields).map(lambda k: {n: v for n, v in valid.items() if n != k})
    extra = st.tuples(st.text(max_size=12), payloads).map(lambda kv: {**valid, kv[0]: kv[1]})
    return st.one_of(replace, remove, extra)


def calls(valid: dict[str, Any]) -> st.SearchStrategy[tuple[list[Any], dict[str, Any]]]:
    first = st.one_of(payloads, _mutated(valid), st.just(_deep(120)))
    args = st.one_of(
        st.just([]),
        first.map(lambda p: [p]),
        st.lists(payloads, min_size=2, max_size=4),
    )
    kwargs = st.one_of(
        st.just({}),
        st.dictionaries(st.sampled_from(["payload", "details", "x", "_request_id"]), payloads),
    )
    return st.tuples(args, kwargs)


def acceptable(error: str) -> bool:
    return error.startswith(("edge.error.", "wamp.error.")) and error != "wamp.error.runtime_error"


def fuzz(
    loop: asyncio.AbstractEventLoop, session: RawSession, procedure: str, valid: dict[str, Any]
) -> list[str]:
    """Run in a thread: hypothesis drives the calls, the test's loop makes them."""
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(calls(valid))
    def one(call: tuple[list[Any], dict[str, Any]]) -> None:
        args, kwargs = call

        async def attempt_call() -> Any:
            return await asyncio.wait_for(session.call(procedure, *args, **kwargs), CALL_TIMEOUT_S)

        attempt = asyncio.run_coroutine_threadsafe(attempt_call(), loop)
        try:
            attempt.result(CALL_TIMEOUT_S + 5)
        except ApplicationError as err:
            if not acceptable(err.error):
                failures.append(f"{procedure}{args!r:.200}{kwargs!r:.100}: {err.error} {err.args}")
        except TimeoutError:
            failures.append(f"{procedure}{args!r:.200}: no answer in {CALL_TIMEOUT_S}s")

    one()
    return failures


VALID: dict[str, Any] = {
    uris.NODE_REPORT: {"id": None, "at": "2026-01-01T00:00:00Z", "kind": "pull"},
    uris.LOG_SLOT: {"container_id": "c"},
    uris.LOG_STREAM: {"container_id": "c"},
    uris.PLACEMENTS: {"held": [{"container_id": "c", "generation": 1}]},
    uris.MIGRATION_REQUEST: {"reason": "cpu", "containers": [], "detail": ""},
    uris.MIGRATION_REPORT: {
        "migration": "m",
        "step": {"name": "start", "started_at": "2026-01-01T00:00:00Z"},
    },
    uris.COMPACT_BEAT: {"s": 1, "i": 5, "m": [1.0, 0.1, 1, 1]},
    uris.AUTHENTICATE_DEVICE: {"authextra": {"pubkey": "00" * 32}},
    "edge.router.authorize_device": {"authid": "x", "authrole": "device"},
}


async def test_malformed_payloads_get_an_error_uri_from_every_procedure(stack, enrol) -> None:
    before = {p for p in await registered_procedures(stack) if not p.startswith("edge.device.")}
    assert set(DEVICE_CALLABLE) <= before
    loop = asyncio.get_running_loop()
    key = probe_key()
    failures: list[str] = []
    async with (
        raw_session(
            stack,
            authmethods=["ticket"],
            authid="gateway",
            authrole="service",
            ticket=stack.tickets["gateway"],
        ) as service,
        raw_device(stack, key=key, token=await enrol()) as device,
    ):
        await device.call(uris.HEARTBEAT, heartbeat(key))
        for procedure in sorted(before):
            valid = heartbeat(key) if procedure == uris.HEARTBEAT else VALID.get(procedure, {})
            failures += await asyncio.to_thread(fuzz, loop, service, procedure, valid)
            if procedure in DEVICE_CALLABLE:
                failures += await asyncio.to_thread(fuzz, loop, device, procedure, valid)
        # Both sessions survived every call.
        assert not service.ended.done()
        assert not device.ended.done()
    assert not failures, "\n".join(failures[:20])
    await assert_services_healthy(stack)
    after = {p for p in await registered_procedures(stack) if not p.startswith("edge.device.")}
    assert after == before
