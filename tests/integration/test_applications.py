"""Applications on a real node: upload a .tar and a script, deploy them into a container,
read the output, fetch the files it made; job logs that outlive the job; tenants apart."""

import asyncio
import io
import json
import os
import secrets
import tarfile

import httpx
import pytest

from tests.conftest import ONE_DATABASE, eventually
from tests.integration.conftest import docker
from tests.integration.test_containers import create
from tests.integration.test_interfaces import run
from tests.support.images import build_context
from tests.support.mqtt_shell import answers, publish_script
from tests.support.users import Account, register

pytestmark = pytest.mark.stack

# What happens on the node (archive checks, scripts, images loaded and built, log streams)
# and the gateway's validation runs once, to keep the suite's time; what the cloud keeps
# (deployments, result files, job logs, data series, whose things they are) on both databases.

IMAGE = "edgecloud/busybox:latest"
SCRIPT = b"""#!/bin/sh
echo "hello from $(cat greeting.txt)"
mkdir -p /app/results
echo 42 > /app/results/answer.txt
exit "${EXIT_WITH:-0}"
"""


def tar_of(files: dict[str, bytes], *, evil: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if evil is not None:
            info = tarfile.TarInfo(evil)
            info.size = 4
            archive.addfile(info, io.BytesIO(b"evil"))
    return buffer.getvalue()


async def upload(client: httpx.AsyncClient, user: Account, name: str, data: bytes, kind: str):
    answer = await client.post(
        "/api/v1/artifacts",
        files={"file": (name, data)},
        data={"kind": kind},
        headers=user.headers,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def running_container(client, user, name: str, **extra) -> dict:
    body = {"device": extra.pop("device"), "name": name, "image": IMAGE, **extra}
    answer = await create(client, user, **body)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def finished(client, user, deployment_id: str) -> dict:
    async def done() -> dict | None:
        found = (
            await client.get(f"/api/v1/deployments/{deployment_id}", headers=user.headers)
        ).json()
        return found if found["state"] in ("succeeded", "failed") else None

    return await eventually(done, timeout=60, interval=0.2)


async def deploy(
    client, user, container_id: str, archive: bytes, script: bytes = SCRIPT, *, script_name="run.sh"
):
    artifact = await upload(client, user, "app.tar", archive, "application")
    script_id = await upload(client, user, script_name, script, "script")
    answer = await client.post(
        f"/api/v1/containers/{container_id}/deploy",
        json={"artifact": artifact, "script": script_id},
        headers=user.headers,
    )
    assert answer.status_code == 202, answer.text
    return answer.json()


async def copied_out(client, user, container_id: str, path: str) -> dict:
    """Copy ``path`` out of the container: the result artifact, once complete."""
    copied = await client.post(
        f"/api/v1/containers/{container_id}/files", json={"path": path}, headers=user.headers
    )
    assert copied.status_code == 202, copied.text
    artifact_id = copied.json()["artifact"]

    async def complete() -> dict | None:
        found = (await client.get(f"/api/v1/artifacts/{artifact_id}", headers=user.headers)).json()
        return found if found["state"] == "complete" else None

    return await eventually(complete, timeout=30, interval=0.2)


async def test_deploy_then_read_the_output_and_fetch_the_result_files(client, node) -> None:
    agent, user = node
    container = await running_container(
        client, user, "app", device=agent.key, command=["sleep", "3600"]
    )
    accepted = await deploy(client, user, container["id"], tar_of({"greeting.txt": b"edge\n"}))
    assert set(accepted) == {"deployment", "command", "state"}
    deployment = await finished(client, user, accepted["deployment"])
    assert deployment["state"] == "succeeded", deployment
    assert deployment["exit_code"] == 0
    assert [s["name"] for s in deployment["steps"]] == ["download", "extract", "copy", "run"]
    assert all(s["duration_ms"] is not None for s in deployment["steps"])

    async def output() -> str | None:
        logs = await client.get(
            f"/api/v1/containers/{container['id']}/logs", params={"tail": 10}, headers=user.headers
        )
        assert logs.status_code == 200, logs.text
        return logs.text if "hello from edge" in logs.text else None

    await eventually(output, timeout=10)

    artifact = await copied_out(client, user, container["id"], "/app/results")
    assert (artifact["kind"], artifact["name"], artifact["container"]) == (
        "result",
        "results.tar",
        container["id"],
    )
    content = await client.get(artifact["content_url"], headers=user.headers)
    with tarfile.open(fileobj=io.BytesIO(content.content)) as archive:
        answer = archive.extractfile("results/answer.txt")
        assert answer is not None
        assert answer.read() == b"42\n"


@ONE_DATABASE
async def test_a_failing_script_fails_the_deployment_with_its_exit_code(client, node) -> None:
    agent, user = node
    container = await running_container(
        client, user, "bad", device=agent.key, command=["sleep", "3600"], env={"EXIT_WITH": "3"}
    )
    accepted = await deploy(client, user, container["id"], tar_of({"greeting.txt": b"x"}))
    deployment = await finished(client, user, accepted["deployment"])
    assert deployment["state"] == "failed"
    assert (deployment["exit_code"], deployment["error_code"]) == (3, "script_failed")


@ONE_DATABASE
@pytest.mark.parametrize("evil", ["../escaped.txt", "/etc/edgecloud-canary"])
async def test_an_unsafe_archive_is_refused_before_anything_is_written(
    client, node, agents, evil
) -> None:
    agent, user = node
    container = await running_container(
        client, user, "safe", device=agent.key, command=["sleep", "3600"]
    )
    archive = tar_of({"greeting.txt": b"x"}, evil=evil)
    accepted = await deploy(client, user, container["id"], archive)
    deployment = await finished(client, user, accepted["deployment"])
    assert deployment["state"] == "failed"
    assert deployment["error_code"] == "archive_unsafe"
    assert [s["name"] for s in deployment["steps"]] == ["download", "extract"]
    # Nothing reached the container, nothing stayed on the node.
    listing = docker("exec", container["name"], "ls", "-A", "/app")
    assert listing.stdout.split() == []
    assert not (agent.state_dir / "deployments").exists() or not list(
        (agent.state_dir / "deployments").iterdir()
    )
    assert not (agent.state_dir.parent / "escaped.txt").exists()
    assert docker("exec", container["name"], "ls", "/etc/edgecloud-canary").returncode != 0


async def test_deploy_checks_whose_things_they_are(stack, client, node) -> None:
    agent, user = node
    container = await running_container(
        client, user, "mine", device=agent.key, command=["sleep", "3600"]
    )
    other = await register(stack)
    theirs = await upload(client, other, "app.tar", tar_of({"a": b"b"}), "application")
    mine = await upload(client, user, "run.sh", SCRIPT, "script")
    announced = await client.post(
        "/api/v1/artifacts",
        json={"name": "app.tar", "size": 10, "sha256": "0" * 64, "kind": "application"},
        headers=user.headers,
    )
    cases = [
        # (who asks, archive, script) -> (status, code)
        ((user, theirs, mine), (404, "artifact_not_found")),
        ((other, theirs, theirs), (404, "container_not_found")),
        ((user, announced.json()["id"], mine), (409, "artifact_incomplete")),
        ((user, mine, mine), (422, "wrong_artifact_kind")),
    ]
    for (caller, archive, script), (status, code) in cases:
        answer = await client.post(
            f"/api/v1/containers/{container['id']}/deploy",
            json={"artifact": archive, "script": script},
            headers=caller.headers,
        )
        assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    for path in (
        f"/api/v1/containers/{container['id']}/logs",
        f"/api/v1/containers/{container['id']}/deployments",
    ):
        assert (await client.get(path, headers=other.headers)).status_code == 404
    files = await client.post(
        f"/api/v1/containers/{container['id']}/files",
        json={"path": "/app"},
        headers=other.headers,
    )
    assert files.status_code == 404


@ONE_DATABASE
async def test_logs_follow_streams_new_lines(client, node) -> None:
    agent, user = node
    container = await running_container(
        client,
        user,
        "talker",
        device=agent.key,
        command=["sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"],
    )
    seen: list[str] = []
    async with client.stream(
        "GET",
        f"/api/v1/containers/{container['id']}/logs",
        params={"follow": "true", "tail": 1},
        headers=user.headers,
        timeout=httpx.Timeout(30, read=10),
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                seen.append(line.removeprefix("data: "))
            if len(seen) >= 6:
                break
    numbers = [int(text.split()[1]) for text in seen]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)  # no line twice


async def test_a_finished_jobs_logs_outlive_it(client, node) -> None:
    agent, user = node
    job = await create(
        client,
        user,
        device=agent.key,
        name="job",
        image=IMAGE,
        command=["sh", "-c", "echo job-output-1; echo job-output-2 >&2"],
        auto_remove=True,
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]

    async def removed() -> bool:
        found = await client.get(f"/api/v1/containers/{job_id}", headers=user.headers)
        return found.status_code == 404

    await eventually(removed, timeout=30, interval=0.2)
    assert docker("inspect", job.json()["name"]).returncode != 0
    logs = await client.get(f"/api/v1/containers/{job_id}/logs", headers=user.headers)
    assert logs.status_code == 200, logs.text
    # Two pipes: stdout and stderr lines may come in either order.
    assert sorted(logs.text.split()) == ["job-output-1", "job-output-2"]
    shipped = (
        await client.get("/api/v1/artifacts", params={"kind": "log"}, headers=user.headers)
    ).json()["items"]
    assert [a["container"] for a in shipped] == [job_id]


async def test_copying_a_missing_path_fails_and_leaves_no_artifact(client, node) -> None:
    agent, user = node
    container = await running_container(
        client, user, "empty", device=agent.key, command=["sleep", "3600"]
    )
    copied = await client.post(
        f"/api/v1/containers/{container['id']}/files",
        json={"path": "/no/such/path"},
        headers=user.headers,
    )
    assert copied.status_code == 202
    body = copied.json()

    async def failed() -> dict | None:
        command = await client.get(f"/api/v1/commands/{body['command']}", headers=user.headers)
        return command.json() if command.json()["state"] == "failed" else None

    command = await eventually(failed, timeout=20, interval=0.2)
    assert command["error_code"] == "path_not_found"
    gone = await client.get(f"/api/v1/artifacts/{body['artifact']}", headers=user.headers)
    await asyncio.sleep(0)
    assert gone.status_code == 404


@ONE_DATABASE
@pytest.mark.parametrize("path", ["relative/path", "/a/../../etc", "/x\ny"])
async def test_bad_paths_are_refused(client, node, path) -> None:
    agent, user = node
    container = await running_container(
        client, user, "paths", device=agent.key, command=["sleep", "3600"]
    )
    answer = await client.post(
        f"/api/v1/containers/{container['id']}/files", json={"path": path}, headers=user.headers
    )
    assert answer.status_code == 422
    assert answer.json()["fields"] == ["path"]


@pytest.fixture
def image_archive(tmp_path):
    """A ``docker save`` archive of an image no registry has (and the engine forgets)."""
    name = f"tenantimg/app-{os.urandom(3).hex()}:1"
    assert docker("tag", IMAGE, name).returncode == 0
    path = tmp_path / "image.tar"
    saved = docker("save", "-o", str(path), name)
    assert saved.returncode == 0, saved.stderr
    assert docker("rmi", name).returncode == 0
    yield name, path.read_bytes()
    docker("rmi", "-f", name)


@ONE_DATABASE
async def test_an_uploaded_image_archive_runs_without_a_registry(
    client, node, image_archive
) -> None:
    agent, user = node
    name, data = image_archive
    artifact = await upload(client, user, "image.tar", data, "image")
    created = await create(
        client,
        user,
        device=agent.key,
        name="custom",
        image=name,
        image_artifact=artifact,
        command=["sleep", "3600"],
    )
    assert created.status_code == 201, created.text
    assert created.json()["state"] == "running"
    # The tenant's own image, under the node's name for it: the archive's tag was not applied.
    assert docker("image", "inspect", name).returncode != 0
    running = json.loads(docker("inspect", f"{user.username}-custom").stdout)[0]
    tags = json.loads(docker("image", "inspect", running["Image"]).stdout)[0]["RepoTags"]
    assert name not in tags
    assert any(tag.startswith("edgecloud-tenants/") for tag in tags), tags


@ONE_DATABASE
async def test_an_archive_without_the_image_fails_the_create(client, node, image_archive) -> None:
    agent, user = node
    _, data = image_archive
    artifact = await upload(client, user, "image.tar", data, "image")
    created = await create(
        client,
        user,
        device=agent.key,
        name="wrongimage",
        image="tenantimg/not-in-there:1",
        image_artifact=artifact,
    )
    # Its manifest names another image than the one declared: refused before it is loaded.
    assert created.status_code == 422, created.text
    assert created.json()["code"] == "image_refused"
    script = await upload(client, user, "run.sh", SCRIPT, "script")
    wrong_kind = await create(
        client, user, device=agent.key, name="x", image=IMAGE, image_artifact=script
    )
    assert wrong_kind.status_code == 422
    assert wrong_kind.json()["code"] == "wrong_artifact_kind"


@ONE_DATABASE
async def test_an_image_built_on_the_node_from_the_tenants_context(client, node) -> None:
    agent, user = node
    name = f"tenantimg/built-{secrets.token_hex(3)}:1"
    context = build_context(
        "FROM edgecloud/busybox:latest\nCOPY greeting.txt /greeting.txt\n",
        {"greeting.txt": "hello from a Dockerfile\n"},
    )
    artifact = await upload(client, user, "context.tar", context, "file")
    try:
        created = await create(
            client,
            user,
            device=agent.key,
            name="built",
            image=name,
            build_artifact=artifact,
            command=["sleep", "3600"],
        )
        assert created.status_code == 201, created.text
        shown = docker("exec", created.json()["name"], "cat", "/greeting.txt")
        assert shown.stdout == "hello from a Dockerfile\n"
    finally:
        docker("rmi", "-f", name)


@ONE_DATABASE
async def test_a_build_that_fails_creates_nothing(client, node) -> None:
    agent, user = node
    broken = build_context("FROM edgecloud/busybox:latest\nRUN exit 7\n", {})
    artifact = await upload(client, user, "context.tar", broken, "file")
    created = await create(
        client,
        user,
        device=agent.key,
        name="broken",
        image="tenantimg/broken:1",
        build_artifact=artifact,
        command=["sleep", "3600"],
    )
    assert created.status_code == 422, created.text
    assert created.json()["code"] == "image_build_failed"
    assert docker("inspect", f"{user.username}-broken").returncode != 0
    both = await create(
        client,
        user,
        device=agent.key,
        name="both",
        image="tenantimg/both:1",
        build_artifact=artifact,
        image_artifact=artifact,
    )
    assert both.status_code == 422


async def test_data_points_from_the_output_and_the_broker_become_series(client, node) -> None:
    agent, user = node
    printer = (
        'for i in 1 2 3; do echo "EDGECLOUD_DATA {\\"temp\\": 2$i.5, \\"ok\\": true}"; '
        'sleep 0.3; done; echo "EDGECLOUD_DATA not json"; sleep 3600'
    )
    container = await running_container(
        client, user, "sensor", device=agent.key, command=["sh", "-c", printer]
    )

    async def series(name: str, count: int) -> list | None:
        answer = await client.get(
            f"/api/v1/containers/{container['id']}/data",
            params={"name": name},
            headers=user.headers,
        )
        assert answer.status_code == 200, answer.text
        points = answer.json()["series"].get(name, [])
        return points if len(points) >= count else None

    printed = await eventually(lambda: series("temp", 3), timeout=20, interval=0.3)
    assert [value for _, value in printed] == [21.5, 22.5, 23.5]
    # The application's broker topic, published from inside the container with the login
    # the node gave it; to a topic not its own nothing is credited.
    for script in (
        publish_script('{"humidity": 40}'),
        publish_script('{"humidity": 99}', topic="edgecloud/data/someone-else"),
    ):
        output = await run(client, user, container, script)
        assert answers(output).connack == 0, output
    published = await eventually(lambda: series("humidity", 1), timeout=20, interval=0.3)
    assert [value for _, value in published] == [40.0]
    everything = (
        await client.get(f"/api/v1/containers/{container['id']}/data", headers=user.headers)
    ).json()
    assert set(everything["series"]) == {"temp", "humidity"}  # "ok" was no number
    bad = await client.get(
        f"/api/v1/containers/{container['id']}/data",
        params={"since": "yesterday"},
        headers=user.headers,
    )
    assert bad.status_code == 422
