"""edgecloud run: the request it sends, created or queued, the errors it reports, and the image
pull progress it follows."""

import json

import pytest

from edgecloud_cli.events import Event
from edgecloud_cli.run import PullProgress, parse_env, parse_publish, parse_size

from .conftest import Run
from .fake_containers import MIB, progress_event
from .fake_gateway import FakeGateway, device
from .problems import problem

IMAGE = "edgecloud/busybox:latest"
PI = "pi-1_020000000001"
NUC = "nuc_020000000003"
FIRST_ID = "00000001-0000-4000-8000-000000000000"

pytestmark = pytest.mark.usefixtures("logged_in")


@pytest.fixture(autouse=True)
def fleet(gateway: FakeGateway) -> None:
    """pi-1 online in the lab, nuc offline in the attic."""
    gateway.devices = [
        device(PI),
        device(NUC, status="offline", location="attic", arch="x86_64"),
    ]


def sent_body(gateway: FakeGateway) -> dict[str, object]:
    [request] = gateway.sent("POST", "/api/v1/containers")
    return dict(json.loads(request.content))


def test_run_on_an_online_device_prints_the_id_and_the_state(
    cli: Run, gateway: FakeGateway
) -> None:
    result = cli(
        "run", IMAGE, "--name", "web", "--device", PI,
        "--env", "GREETING=hello world", "-e", "QUERY=a=b", "--env", "EMPTY=",
        "--memory", "64m", "--cpus", "0.5", "--pids", "128",
        "--rm", "--restart", "on-failure",
        "--", "sh", "-c", "echo $GREETING",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{FIRST_ID}\n"
    assert result.stderr == f"admin-web: running on {PI}\n"
    assert sent_body(gateway) == {
        "name": "web",
        "image": IMAGE,
        "device": PI,
        "command": ["sh", "-c", "echo $GREETING"],
        "env": {"GREETING": "hello world", "QUERY": "a=b", "EMPTY": ""},
        "limits": {"memory": 64 * MIB, "cpus": 0.5, "pids": 128},
        "auto_remove": True,
        "restart_policy": "on-failure",
    }


def test_run_sends_only_what_was_given(cli: Run, gateway: FakeGateway) -> None:
    result = cli("run", IMAGE, "--name", "web", "--device", PI)
    assert result.exit_code == 0, result.output
    assert sent_body(gateway) == {"name": "web", "image": IMAGE, "device": PI}


def test_the_create_may_take_as_long_as_an_image_pull(cli: Run, gateway: FakeGateway) -> None:
    assert cli("run", IMAGE, "--name", "web", "--device", PI).exit_code == 0
    [request] = gateway.sent("POST", "/api/v1/containers")
    assert request.extensions["timeout"]["read"] == 150.0


def test_run_with_a_placement_lets_the_platform_choose(cli: Run, gateway: FakeGateway) -> None:
    result = cli("run", IMAGE, "--name", "web", "--location", "lab", "--arch", "aarch64")
    assert result.exit_code == 0, result.output
    assert sent_body(gateway)["placement"] == {"location": "lab", "arch": "aarch64"}
    assert result.stderr == f"admin-web: running on {PI}\n"

    by_arch = cli("run", IMAGE, "--name", "other", "--arch", "aarch64")
    assert by_arch.exit_code == 0, by_arch.output
    assert json.loads(gateway.requests[-1].content)["placement"] == {"arch": "aarch64"}


def test_no_matching_device(cli: Run) -> None:
    # The only x86_64 device is offline.
    result = cli("run", IMAGE, "--name", "web", "--arch", "x86_64")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: no reachable device granted to the tenant matches the placement "
        "(no_matching_device)\n"
    )


def test_run_on_an_offline_device_is_queued_and_says_so(cli: Run, gateway: FakeGateway) -> None:
    result = cli("run", IMAGE, "--name", "web", "--device", NUC)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{FIRST_ID}\n"
    assert result.stderr == (
        f"device {NUC} is offline: the create is queued as command cmd-1; "
        f"it runs when the device is back (edgecloud inspect {FIRST_ID})\n"
    )
    assert len(gateway.sent("GET", "/api/v1/commands/cmd-1")) == 1


def test_run_on_a_busy_device_is_not_called_offline(cli: Run, gateway: FakeGateway) -> None:
    gateway.queued_command_state = "sent"
    result = cli("run", IMAGE, "--name", "web", "--device", NUC)
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"device {NUC} has not finished yet: the create was sent as command cmd-1 "
        f"and is still in progress (edgecloud inspect {FIRST_ID})\n"
    )


def test_a_queued_create_is_reported_even_when_its_command_cannot_be_read(
    cli: Run, gateway: FakeGateway
) -> None:
    gateway.answers["GET", "/api/v1/commands/cmd-1"] = problem(503, "unavailable", "down")
    result = cli("run", IMAGE, "--name", "web", "--device", NUC)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"device {NUC} is offline: the create is queued as command")
    assert result.stdout == f"{FIRST_ID}\n"


@pytest.mark.parametrize(
    ("pair", "message"),
    [("DEBUG", "'DEBUG' is not NAME=VALUE"), ("=1", "'=1' has no name before the =")],
)
def test_a_malformed_env_pair_is_a_usage_error(
    cli: Run, gateway: FakeGateway, pair: str, message: str
) -> None:
    result = cli("run", IMAGE, "--name", "web", "--device", PI, "--env", "A=1", "--env", pair)
    assert result.exit_code == 2
    assert "--env" in result.stderr
    assert message in result.stderr
    assert gateway.requests == []


def test_parse_env_keeps_the_last_value_of_a_repeated_name() -> None:
    assert parse_env(["A=1", "B=", "A=2=3"]) == {"A": "2=3", "B": ""}


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("512k", 512 * 1024),
        ("256m", 256 * MIB),
        ("256M", 256 * MIB),
        ("256MiB", 256 * MIB),
        ("256mb", 256 * MIB),
        ("1.5g", 1536 * MIB),
        (" 2G ", 2048 * MIB),
        ("100b", 100),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "m", "12x", "-5m", "1e3", "0", "0.1b", "1.5.2g", "1 t"])
def test_sizes_that_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"size like|more than 0"):
        parse_size(text)


def test_a_malformed_memory_size_is_a_usage_error(cli: Run, gateway: FakeGateway) -> None:
    result = cli("run", IMAGE, "--name", "web", "--device", PI, "--memory", "12x")
    assert result.exit_code == 2
    assert "--memory" in result.stderr
    assert "'12x' is not a size like 256m" in result.stderr
    assert gateway.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --device KEY, or --location"),
        (["--device", PI, "--location", "lab"], "give --device or --location/--arch, not both"),
        (["--device", PI, "--arch", "x86_64"], "not both"),
    ],
)
def test_run_needs_a_device_or_a_placement(
    cli: Run, gateway: FakeGateway, args: list[str], message: str
) -> None:
    result = cli("run", IMAGE, "--name", "web", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert gateway.requests == []


def test_run_needs_a_name(cli: Run, gateway: FakeGateway) -> None:
    result = cli("run", IMAGE, "--device", PI)
    assert result.exit_code == 2
    assert "--name" in result.stderr
    assert gateway.requests == []


def test_a_validation_error_lists_each_field(cli: Run) -> None:
    result = cli("run", IMAGE, "--name", "Web!", "--device", PI, "--memory", "1m")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: invalid fields: limits.memory, name (validation_failed)\n"
        "  name: String should match pattern '^[a-z0-9][a-z0-9_.-]{0,62}$'\n"
        "  limits.memory: Input should be greater than or equal to 6291456\n"
    )


def test_a_validation_error_with_fields_only(cli: Run, gateway: FakeGateway) -> None:
    gateway.answers["POST", "/api/v1/containers"] = problem(
        422, "validation_failed", "invalid request", fields=["env.1BAD"]
    )
    result = cli("run", IMAGE, "--name", "web", "--device", PI, "-e", "1BAD=x")
    assert result.exit_code == 1
    assert result.stderr == ("error: invalid request (validation_failed)\n  env.1BAD: invalid\n")


def test_an_unknown_device(cli: Run) -> None:
    result = cli("run", IMAGE, "--name", "web", "--device", "ghost_020000000099")
    assert result.exit_code == 1
    assert result.stderr == "error: device ghost_020000000099 not found (device_not_found)\n"


def test_a_name_already_taken_on_the_device(cli: Run) -> None:
    assert cli("run", IMAGE, "--name", "web", "--device", PI).exit_code == 0
    again = cli("run", IMAGE, "--name", "web", "--device", PI)
    assert again.exit_code == 1
    assert (
        again.stderr == f"error: a container named admin-web already exists on {PI} (name_taken)\n"
    )


def test_run_publishes_ports_and_sizes_the_disk(cli: Run, gateway: FakeGateway) -> None:
    result = cli(
        "run", IMAGE, "--name", "web", "--device", PI,
        "--publish", "30080:80", "-p", "30053:53/udp", "--disk", "1g",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = sent_body(gateway)
    assert body["ports"] == [
        {"host": 30080, "container": 80, "protocol": "tcp"},
        {"host": 30053, "container": 53, "protocol": "udp"},
    ]
    assert body["limits"] == {"disk": 1 << 30}
    assert "network" not in body
    assert result.stderr == f"admin-web: running on {PI} (30080->80/tcp, 30053->53/udp)\n"


def test_run_without_a_network(cli: Run, gateway: FakeGateway) -> None:
    result = cli("run", IMAGE, "--name", "job", "--device", PI, "--no-network")
    assert result.exit_code == 0, result.output
    assert sent_body(gateway)["network"] == "none"
    assert result.stderr == f"admin-job: running on {PI}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--publish", "80"], "'80' is not HOST:CONTAINER"),
        (["-p", "30080:80/sctp"], "is not HOST:CONTAINER"),
        (["-p", "a:b"], "is not HOST:CONTAINER"),
        (["--no-network", "-p", "30080:80"], "a container without a network publishes no ports"),
        (["--disk", "lots"], "'lots' is not a size"),
    ],
)
def test_malformed_ports_and_disk_are_usage_errors(
    cli: Run, gateway: FakeGateway, args: list[str], message: str
) -> None:
    result = cli("run", IMAGE, "--name", "web", "--device", PI, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert gateway.requests == []


def test_parse_publish() -> None:
    assert parse_publish(" 8080:80 ") == {"host": 8080, "container": 80, "protocol": "tcp"}
    assert parse_publish("5353:53/udp") == {"host": 5353, "container": 53, "protocol": "udp"}


@pytest.mark.parametrize(
    ("code", "status", "detail"),
    [
        ("port_taken", 409, f"host port 30080/tcp is published on {PI} already"),
        ("port_out_of_range", 422, f"host port 80/tcp is outside the range {PI} publishes from"),
        ("ports_not_allowed", 422, f"{PI} publishes no ports for tenants"),
    ],
)
def test_a_refused_port_is_reported_with_its_code(
    cli: Run, gateway: FakeGateway, code: str, status: int, detail: str
) -> None:
    gateway.answers["POST", "/api/v1/containers"] = problem(status, code, detail, port=30080)
    result = cli("run", IMAGE, "--name", "web", "--device", PI, "-p", "30080:80")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {detail} ({code})\n")


def test_the_quota_is_used_up(cli: Run, gateway: FakeGateway) -> None:
    gateway.answers["POST", "/api/v1/containers"] = problem(
        403, "quota_exceeded", "the tenant's quota of 5 containers is used up"
    )
    result = cli("run", IMAGE, "--name", "web", "--device", PI)
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the tenant's quota of 5 containers is used up (quota_exceeded)\n"
    )


def test_a_failed_pull_names_the_container_and_the_command(cli: Run, gateway: FakeGateway) -> None:
    gateway.answers["POST", "/api/v1/containers"] = problem(
        422,
        "image_pull_failed",
        "the device could not create: pull access denied",
        container="c-7",
        command="cmd-7",
    )
    result = cli("run", "ghcr.io/nobody/private:1", "--name", "web", "--device", PI)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: the device could not create: pull access denied (image_pull_failed)\n"
        "container c-7, command cmd-7\n"
    )


def pull_events(gateway: FakeGateway) -> None:
    gateway.events = [
        ("container.status", {"tenant": "t1", "id": "c-0", "state": "running"}),
        progress_event(IMAGE, "Pulling fs layer", None, None),
        progress_event(IMAGE, "Downloading", 1 * MIB, 2 * MIB),
        progress_event(IMAGE, "Downloading", 1 * MIB, 2 * MIB),  # shown once
        progress_event("someone/else:1", "Downloading", 5, 10),  # another image
        ("command", "{not json"),
        ("command", {"tenant": "t1", "id": "cmd-x", "state": "sent"}),  # no progress
        progress_event(IMAGE, "Download complete", 2 * MIB, 0),
        progress_event(IMAGE, "Pull complete", None, None),
    ]


def test_run_with_progress_shows_the_image_pull(cli: Run, gateway: FakeGateway) -> None:
    pull_events(gateway)
    result = cli("run", IMAGE, "--name", "web", "--device", PI, "--progress")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{FIRST_ID}\n"
    assert result.stderr == (
        f"pulling {IMAGE}: Pulling fs layer\n"
        f"pulling {IMAGE}: Downloading 1.0 MiB/2.0 MiB\n"
        f"pulling {IMAGE}: Download complete 2.0 MiB\n"
        f"pulling {IMAGE}: Pull complete\n"
        f"admin-web: running on {PI}\n"
    )
    [stream] = gateway.sent("GET", "/api/v1/events")
    assert stream.headers["Accept"] == "text/event-stream"


@pytest.mark.parametrize("args", [[], ["--detach", "--progress"], ["-d"]])
def test_no_progress_unless_asked_for_on_a_pipe(
    cli: Run, gateway: FakeGateway, args: list[str]
) -> None:
    pull_events(gateway)
    result = cli("run", IMAGE, "--name", "web", "--device", PI, *args)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"admin-web: running on {PI}\n"
    assert gateway.sent("GET", "/api/v1/events") == []


def test_a_broken_event_stream_does_not_fail_the_run(cli: Run, gateway: FakeGateway) -> None:
    gateway.answers["GET", "/api/v1/events"] = problem(500, "internal_error", "boom")
    result = cli("run", IMAGE, "--name", "web", "--device", NUC, "--progress")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{FIRST_ID}\n"
    assert "is offline: the create is queued" in result.stderr
    assert "boom" not in result.stderr


def test_on_a_terminal_each_progress_line_replaces_the_last(
    capsys: pytest.CaptureFixture[str],
) -> None:
    show = PullProgress(IMAGE, live=True)
    for kind, data in [
        progress_event(IMAGE, "Downloading", 1 * MIB, 2 * MIB),
        progress_event(IMAGE, "Pull complete", None, None),
    ]:
        show(Event(kind, data))
    show.finish()
    assert capsys.readouterr().err == (
        f"\r\x1b[Kpulling {IMAGE}: Downloading 1.0 MiB/2.0 MiB"
        f"\r\x1b[Kpulling {IMAGE}: Pull complete\n"
    )


def test_a_live_display_that_showed_nothing_adds_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    show = PullProgress(IMAGE, live=True)
    show(Event("command", {"state": "sent"}))
    show.finish()
    assert capsys.readouterr().err == ""
