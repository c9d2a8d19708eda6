"""Reading the event stream: the SSE format, and a follower that starts and stops on time,
against a real socket, whatever the stream does."""

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from edgecloud_cli.client import Client
from edgecloud_cli.events import Event, Follower, messages, parse


def test_parse_reads_events_and_skips_the_rest() -> None:
    lines = [
        ": connected",
        "",
        "event: command",
        'data: {"id": "c1",',
        'data:  "state": "sent"}',
        "",
        ": keepalive",
        "",
        "event: container.status",
        "data: {not json",
        "",
        "event: nothing",
        "",
        'data: {"plain": true}',
        "id: 7",
        "",
        "event: unfinished",
        'data: {"lost": true}',
    ]
    assert list(parse(lines)) == [
        Event("command", {"id": "c1", "state": "sent"}),
        Event("message", {"plain": True}),
    ]


def test_messages_keep_text_data_and_named_events_without_data() -> None:
    lines = [
        ": connected",
        "",
        "event: log",
        "data: plain text, not JSON",
        "",
        "event: log",
        "data: first",
        "data:second",
        "",
        "event: log",
        "data: ",
        "",
        ": ping",
        "",
        "event: end",
        "",
    ]
    assert list(messages(lines)) == [
        Event("log", "plain text, not JSON"),
        Event("log", "first\nsecond"),
        Event("log", ""),
        Event("end", ""),
    ]


class SlowServer:
    """Answers one request with an event stream that sends one event, then stays silent."""

    EVENT = b'event: command\ndata: {"id": "c1"}\n\n'

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed_by_client = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.settimeout(10)
            while b"\r\n\r\n" not in connection.recv(65536):
                pass
            body = b": connected\n\n" + self.EVENT
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                + f"{len(body):x}\r\n".encode()
                + body
                + b"\r\n"
            )
            if connection.recv(1) == b"":
                self.closed_by_client.set()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def slow_server() -> Iterator[SlowServer]:
    server = SlowServer()
    try:
        yield server
    finally:
        server.close()


def test_leaving_the_block_ends_a_stream_blocked_on_silence(slow_server: SlowServer) -> None:
    seen: list[Event] = []
    client = Client(f"http://127.0.0.1:{slow_server.port}", token="t")

    with Follower(client, seen.append) as follower:
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
    stopped_in = time.monotonic() - started

    assert seen == [Event("command", {"id": "c1"})]
    # The read blocked on a silent socket was interrupted, not left to its 60 s timeout.
    assert stopped_in < 1.0
    assert not follower._thread.is_alive()
    assert slow_server.closed_by_client.wait(5)


def test_a_stream_that_cannot_be_opened_is_no_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seen: list[Event] = []
    started = time.monotonic()
    with Follower(Client(f"http://127.0.0.1:{port}", token="t"), seen.append):
        pass
    assert seen == []
    assert time.monotonic() - started < 2.0


def test_a_handler_that_fails_ends_the_following_quietly(slow_server: SlowServer) -> None:
    def fail(event: Event) -> None:
        raise RuntimeError("handler bug")

    client = Client(f"http://127.0.0.1:{slow_server.port}", token="t")
    with Follower(client, fail) as follower:
        follower._thread.join(5)
        assert not follower._thread.is_alive()
    assert slow_server.closed_by_client.wait(5)
