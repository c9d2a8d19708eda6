"""edgecloud deploy: both uploads, the request, and following the deployment to its end."""

import json
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from edgecloud_cli.deploy import Watch, describe_step, human_duration
from edgecloud_cli.schemas import Deployment, DeploymentStep

from .conftest import Run
from .fake_containers import container
from .fake_gateway import FakeGateway

pytestmark = pytest.mark.usefixtures("logged_in", "pauses")

WEB = "3f2a9c1b-4d5e-4f60-8a7b-0123456789ab"
PI = "pi-1_020000000001"


def step(name: str, duration_ms: float | None, detail: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "started_at": "2025-06-01T12:00:01Z",
        "duration_ms": duration_ms,
        "detail": detail,
    }


DOWNLOADED = [step("download", 120), step("verify", 8)]
PREPARED = [*DOWNLOADED, step("extract", 1300, "12 files"), step("copy", 15)]


@pytest.fixture(autouse=True)
def web(gateway: FakeGateway) -> None:
    gateway.containers = [container(WEB, "web", device=PI)]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    archive, script = tmp_path / "app.tar", tmp_path / "run.sh"
    archive.write_bytes(b"a" * 3000)
    script.write_text("#!/bin/sh\nexec ./app\n")
    return archive, script


def deploy(cli: Run, files: tuple[Path, Path], *extra: str) -> Any:
    archive, script = files
    return cli("deploy", str(archive), "--script", str(script), "--container", "web", *extra)


def test_deploy_uploads_both_files_and_follows_to_success(
    cli: Run, gateway: FakeGateway, files: tuple[Path, Path]
) -> None:
    gateway.deployment_updates = [
        {"state": "downloading", "received": 0, "total": 3000, "steps": [step("download", None)]},
        {"state": "downloading", "received": 1500, "total": 3000},
        {"state": "extracting", "steps": [*DOWNLOADED, step("extract", None)]},
        {"state": "running", "steps": [*PREPARED, step("run", None)]},
        {"state": "running"},
        {"state": "succeeded", "exit_code": 0, "steps": [*PREPARED, step("run", 2000)]},
    ]

    result = deploy(cli, files)

    assert result.exit_code == 0, result.output
    assert result.stdout == "dep-3\n"
    assert result.stderr == (
        "app.tar: 2.9 KiB uploaded as art-1\n"
        "run.sh: 21 B uploaded as art-2\n"
        "admin-web: deployment dep-3 queued\n"
        "download 120 ms\n"
        "verify 8 ms\n"
        "extract 1.3 s (12 files)\n"
        "copy 15 ms\n"
        "run.sh is running (Ctrl-C stops following; the script goes on)\n"
        "run 2.0 s\n"
        "succeeded: run.sh exited with 0\n"
    )
    kinds = [json.loads(r.content)["kind"] for r in gateway.sent("POST", "/api/v1/artifacts")]
    assert kinds == ["application", "script"]
    [sent] = gateway.sent("POST", f"/api/v1/containers/{WEB}/deploy")
    assert json.loads(sent.content) == {"artifact": "art-1", "script": "art-2"}
    assert len(gateway.sent("GET", "/api/v1/deployments/dep-3")) == 6


def test_a_failed_script_exits_1_with_the_error_and_its_exit_code(
    cli: Run, gateway: FakeGateway, files: tuple[Path, Path]
) -> None:
    gateway.deployment_updates = [
        {
            "state": "failed",
            "steps": [*PREPARED, step("run", 40)],
            "exit_code": 3,
            "error_code": "script_failed",
            "error": "the script failed",
        }
    ]
    result = deploy(cli, files, "--quiet")
    assert result.exit_code == 1
    assert result.stdout == "dep-3\n"
    assert result.stderr == (
        "admin-web: deployment dep-3 queued\n"
        "download 120 ms\n"
        "verify 8 ms\n"
        "extract 1.3 s (12 files)\n"
        "copy 15 ms\n"
        "run 40 ms\n"
        "error: the script failed (script_failed)\n"
        "run.sh exited with 3\n"
    )


def test_a_deployment_that_fails_before_the_script_shows_the_unfinished_step(
    cli: Run, gateway: FakeGateway, files: tuple[Path, Path]
) -> None:
    gateway.deployment_updates = [
        {"state": "downloading", "steps": [step("download", None)]},
        {
            "state": "failed",
            "error_code": "checksum_mismatch",
            "error": "the archive's SHA-256 differs",
        },
    ]
    result = deploy(cli, files, "-q")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "download\nerror: the archive's SHA-256 differs (checksum_mismatch)\n"
    )


def test_no_follow_prints_the_deployment_and_returns(
    cli: Run, gateway: FakeGateway, files: tuple[Path, Path]
) -> None:
    result = deploy(cli, files, "--no-follow", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "deployment": "dep-3",
        "command": "cmd-deploy-dep-3",
        "state": "queued",
    }
    assert gateway.sent("GET", "/api/v1/deployments/dep-3") == []


def test_json_prints_the_final_deployment(
    cli: Run, gateway: FakeGateway, files: tuple[Path, Path]
) -> None:
    gateway.deployment_updates = [{"state": "succeeded", "exit_code": 0, "steps": PREPARED}]
    result = deploy(cli, files, "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == gateway.deployments["dep-3"]


def test_an_unknown_container_uploads_nothing(
    cli: Run, gateway: FakeGateway, files: tuple[Path, Path]
) -> None:
    archive, script = files
    result = cli("deploy", str(archive), "--script", str(script), "--container", "nope")
    assert result.exit_code == 1
    assert result.stderr == "error: no container matches 'nope'; see `edgecloud ps`\n"
    assert gateway.sent("POST", "/api/v1/artifacts") == []


def test_a_poll_without_answer_is_tried_again(
    cli: Run, gateway: FakeGateway, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.deployment_updates = [{"state": "succeeded", "exit_code": 0}]
    read = gateway._read_deployment
    failures = [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")]

    def flaky(deployment_id: str) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return read(deployment_id)

    monkeypatch.setattr(gateway, "_read_deployment", flaky)
    result = deploy(cli, files, "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr.endswith("succeeded: run.sh exited with 0\n")


def test_ctrl_c_while_following_says_the_deployment_goes_on(
    cli: Run, gateway: FakeGateway, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(deployment_id: str) -> httpx.Response:
        raise KeyboardInterrupt

    monkeypatch.setattr(gateway, "_read_deployment", interrupted)
    result = deploy(cli, files, "-q")
    assert result.exit_code == 130
    assert result.stderr.endswith(
        "stopped following; deployment dep-3 goes on (see its output: edgecloud logs web -f)\n"
    )


def test_on_a_terminal_the_download_progress_is_one_line_redrawn(
    capsys: pytest.CaptureFixture[str],
) -> None:
    watch = Watch("run.sh", live=True)
    base: dict[str, Any] = {"state": "downloading", "steps": [], "received": 0, "total": 2048}
    updates: list[dict[str, Any]] = [
        {"received": 1024},
        {"received": 1024},  # the same line: not drawn again
        {"state": "extracting", "steps": [step("download", 12)]},
    ]
    for changes in updates:
        watch(cast(Deployment, {**base, **changes}))
    watch.finish()
    assert capsys.readouterr().err == "\r\x1b[Kdownload 1.0 KiB/2.0 KiB\r\x1b[Kdownload 12 ms\n"


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(0.4, "0 ms"), (120, "120 ms"), (999, "999 ms"), (1000, "1.0 s"), (59_940, "59.9 s"),
     (187_000, "3m07s")],
)  # fmt: skip
def test_human_duration(ms: float, shown: str) -> None:
    assert human_duration(ms) == shown


def test_a_step_with_a_detail_shows_it_printable() -> None:
    shown = describe_step(cast(DeploymentStep, step("extract", 30, "3 files\x1b[2J")))
    assert shown == "extract 30 ms (3 files [2J)"
