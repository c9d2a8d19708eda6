"""edgecloud logs: the text as it is, and -f following a server-sent event stream."""

from collections.abc import Iterator

import pytest

from .conftest import Run
from .fake_containers import container
from .fake_gateway import FakeGateway

pytestmark = pytest.mark.usefixtures("logged_in")

WEB = "3f2a9c1b-4d5e-4f60-8a7b-0123456789ab"
LOGS = f"/api/v1/containers/{WEB}/logs"


@pytest.fixture(autouse=True)
def web(gateway: FakeGateway) -> None:
    gateway.containers = [container(WEB, "web")]


def test_logs_prints_the_text_as_it_is(cli: Run, gateway: FakeGateway) -> None:
    gateway.log_text = "starting\n\x1b[32mready\x1b[0m\nno newline at the end"
    result = cli("logs", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == gateway.log_text
    [asked] = gateway.sent("GET", LOGS)
    assert dict(asked.url.params) == {"tail": "100"}
    assert asked.headers["Accept"] == "text/plain"


def test_tail(cli: Run, gateway: FakeGateway) -> None:
    assert cli("logs", "web", "--tail", "5").exit_code == 0
    [asked] = gateway.sent("GET", LOGS)
    assert asked.url.params["tail"] == "5"


def test_follow_prints_each_line_until_the_end_event(cli: Run, gateway: FakeGateway) -> None:
    gateway.log_events = [
        ": connected\n\n",
        "event: log\ndata: hello\n\n",
        ": ping\n\n",
        "event: lo",  # an event split across reads
        "g\ndata: wor",
        "ld\n\nevent: log\ndata: \n\n",
        "event: status\ndata: {}\n\n",  # not for us
        'event: end\ndata: {"reason": "exited"}\n\n',
        "event: log\ndata: never read\n\n",
    ]

    result = cli("logs", "web", "-f")

    assert result.exit_code == 0, result.output
    assert result.stdout == "hello\nworld\n\n"
    assert result.stderr == ""
    [asked] = gateway.sent("GET", LOGS)
    assert dict(asked.url.params) == {"tail": "100", "follow": "true"}
    assert asked.headers["Accept"] == "text/event-stream"
    assert asked.extensions["timeout"]["read"] is None


def test_an_end_event_without_data_ends_it_too(cli: Run, gateway: FakeGateway) -> None:
    gateway.log_events = ["event: log\ndata: bye\n\nevent: end\n\n"]
    result = cli("logs", "web", "--follow", "--tail", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout == "bye\n"


def test_a_stream_that_closes_without_an_end_is_an_error(cli: Run, gateway: FakeGateway) -> None:
    gateway.log_events = ["event: log\ndata: one\n\n"]
    result = cli("logs", "web", "-f")
    assert result.exit_code == 1
    assert result.stdout == "one\n"
    assert result.stderr == (
        "error: the log stream closed before the container stopped; run the command again\n"
    )


def test_an_error_event_ends_it_with_the_error(cli: Run, gateway: FakeGateway) -> None:
    gateway.log_events = [
        "event: log\ndata: one\n\n",
        "event: error\ndata: the device did not answer: timeout\n\n",
    ]
    result = cli("logs", "web", "-f")
    assert result.exit_code == 1
    assert result.stdout == "one\n"
    assert result.stderr == "error: the device did not answer: timeout\n"


def test_ctrl_c_ends_following_quietly(cli: Run, gateway: FakeGateway) -> None:
    def interrupted() -> Iterator[str]:
        yield "event: log\ndata: one\n\n"
        raise KeyboardInterrupt

    gateway.log_events = interrupted()  # type: ignore[assignment]
    result = cli("logs", "web", "-f")
    assert result.exit_code == 0, result.output
    assert result.stdout == "one\n"
    assert result.stderr == ""


def test_logs_of_an_unknown_container(cli: Run, gateway: FakeGateway) -> None:
    result = cli("logs", "nope")
    assert result.exit_code == 1
    assert result.stderr == "error: no container matches 'nope'; see `edgecloud ps`\n"
    assert gateway.sent("GET", LOGS) == []
