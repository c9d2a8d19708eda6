"""Hostile strings in everything a tenant names or passes on (container names, image
references, environment, commands, exec argv, file paths, script names, through the REST
API and the CLI): each is refused with a clear problem or reaches the container literally,
never adds a Docker option, and runs nothing on the node. A canary file on the node, which
every payload tries to change, remove or put a sibling beside, stays as it was."""

import io
import re
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from edgecloud_cli import app as cli_app
from edgecloud_contracts.containers import NAME_PATTERN
from tests.conftest import ONE_DATABASE
from tests.integration.conftest import docker
from tests.integration.test_applications import copied_out, deploy, finished, tar_of
from tests.integration.test_gateway_api import assert_problem
from tests.security.test_container_policy import assert_hardened, exec_in, inspect
from tests.support.users import Account

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"
DEFAULTS = {"memory": 256 << 20, "cpus": 1.0, "pids": 256}


class Canary:
    """A file on the node whose content, time and directory must not change."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.file = directory / "canary"
        self.file.write_text("untouched\n")
        self.sibling = directory / "pwned"
        self.before = (self.file.stat().st_mtime_ns, sorted(p.name for p in directory.iterdir()))

    def payloads(self) -> list[str]:
        touch, remove = f"touch {self.sibling}", f"rm -f {self.file}"
        return [
            f"; {touch}",
            f"$({touch})",
            f"`{touch}`",
            f"&& {remove}",
            f"| {touch} ||",
            "--privileged",
            "-v /:/host",
            "--pid=host",
            "--cap-add=ALL --security-opt seccomp=unconfined",
        ]

    def assert_untouched(self) -> None:
        assert self.file.read_text() == "untouched\n"
        after = (self.file.stat().st_mtime_ns, sorted(p.name for p in self.directory.iterdir()))
        assert after == self.before
        assert not self.sibling.exists()


async def create(client: httpx.AsyncClient, user: Account, **body: Any) -> httpx.Response:
    return await client.post("/api/v1/containers", json=body, headers=user.headers, timeout=60)


def tenant_containers(user: Account) -> list[str]:
    listed = docker("ps", "-aq", "--filter", f"label=edgecloud.tenant={user.tenant_id}")
    return listed.stdout.split()


@ONE_DATABASE
async def test_hostile_strings_are_refused_or_passed_literally(client, node, tmp_path) -> None:
    agent, user = node
    canary = Canary(tmp_path)
    payloads = canary.payloads()

    # Where a string becomes a name or a reference, anything outside the grammar is refused;
    # what the grammar allows ("web--privileged") is only ever a name.
    for name in (f"web{payload}" for payload in payloads):
        if re.fullmatch(NAME_PATTERN, name):
            named = await create(client, user, device=agent.key, name=name, image=IMAGE)
            assert named.status_code == 201, named.text
            assert named.json()["name"] == f"{user.username}-{name}"
            assert_hardened(inspect(f"{user.username}-{name}"), **DEFAULTS)
            removed = await client.delete(
                f"/api/v1/containers/{named.json()['id']}", headers=user.headers
            )
            assert removed.status_code == 204, removed.text
    for payload in [*payloads, "ok\nsecond-line"]:
        for field, body in (
            ("name", {"name": payload, "image": IMAGE}),
            ("image", {"name": "img", "image": payload}),
            ("image", {"name": "img", "image": f"{IMAGE} {payload}"}),
            ("env", {"name": "envname", "image": IMAGE, "env": {payload: "x"}}),
        ) + (
            (("name", {"name": f"web{payload}", "image": IMAGE}),)
            if not re.fullmatch(NAME_PATTERN, f"web{payload}")
            else ()
        ):
            refused = assert_problem(
                await create(client, user, device=agent.key, **body), 422, "validation_failed"
            )
            assert any(f.split(".")[0] == field for f in refused["fields"]), refused
    # A value may hold anything on one line; a new line would be a second variable.
    refused = await create(client, user, device=agent.key, name="nl", image=IMAGE,
                           env={"A": f"x\n{payloads[0]}"})  # fmt: skip
    assert_problem(refused, 422, "validation_failed")
    assert tenant_containers(user) == []

    # Values and arguments reach the container as they are: an argv, never a shell line.
    env = {f"P{n}": payload for n, payload in enumerate(payloads)}
    command = ["sh", "-c", "sleep 3600; exit 0", "literal", *payloads]
    made = await create(client, user, device=agent.key, name="literal", image=IMAGE,
                        command=command, env=env)  # fmt: skip
    assert made.status_code == 201, made.text
    container = made.json()
    seen = inspect(container["name"])
    assert_hardened(seen, **DEFAULTS)
    assert seen["Config"]["Cmd"] == command
    assert [e for e in seen["Config"]["Env"] if e.startswith("P")] == [
        f"{k}={v}" for k, v in env.items()
    ]
    argv = await exec_in(client, user, container["id"], "tr '\\0' '\\n' < /proc/1/cmdline")
    assert argv["output"].splitlines() == command
    printed = await exec_in(
        client, user, container["id"], " ; ".join(f'echo "$P{n}"' for n in range(len(env)))
    )
    assert printed["output"].splitlines() == payloads
    echoed = await client.post(
        f"/api/v1/containers/{container['id']}/exec",
        json={"cmd": ["echo", *payloads]},
        headers=user.headers,
        timeout=60,
    )
    assert echoed.json()["output"] == " ".join(payloads) + "\n"

    # A file path is a path inside the container, whatever it holds.
    odd = "/app/$(id)`id`;&&x --privileged"
    made_file = await exec_in(client, user, container["id"], f"echo inside > '{odd}'")
    assert made_file["exit_code"] == 0, made_file
    artifact = await copied_out(client, user, container["id"], odd)
    content = await client.get(artifact["content_url"], headers=user.headers)
    with tarfile.open(fileobj=io.BytesIO(content.content)) as archive:
        assert archive.getnames() == [odd.rsplit("/", 1)[1]]

    # A script's name reaches the node's disk and the container's shell: names outside the
    # artifact grammar are refused at upload; the odd ones it allows stay one argument.
    for name in (f"run{payloads[0]}.sh", "run$(id).sh", "../../run.sh", "run`id`.sh"):
        refused_name = await client.post(
            "/api/v1/artifacts",
            files={"file": (name, b"true\n")},
            data={"kind": "script"},
            headers=user.headers,
        )
        assert_problem(refused_name, 400, "invalid_file")
    script = (
        f"echo ran > /app/ran.txt\ntouch {canary.sibling}\nrm -f {canary.file}\n"
        f"echo {payloads[1]}\n"
    ).encode()
    app = tar_of({"a.txt": b"a"})
    accepted = await deploy(
        client, user, container["id"], app, script, script_name="run (1) = a,b.sh"
    )
    done = await finished(client, user, accepted["deployment"])
    # What the script does is the tenant's business inside the container (whose /tmp has no
    # such directory): it touches nothing of the node.
    assert done["state"] in ("succeeded", "failed"), done
    ran = await exec_in(client, user, container["id"], "cat /app/ran.txt")
    assert ran["output"] == "ran\n"

    assert_hardened(inspect(container["name"]), **DEFAULTS)
    assert tenant_containers(user) == [seen["Id"][:12]]
    canary.assert_untouched()


@ONE_DATABASE
async def test_the_cli_passes_hostile_strings_on_literally(stack, client, node, tmp_path) -> None:
    agent, user = node
    canary = Canary(tmp_path)
    payloads = canary.payloads()
    env = {"EDGECLOUD_URL": stack.url("gateway"), "EDGECLOUD_TOKEN": user.token}
    runner = CliRunner()
    options = [f"--env=P{n}={payload}" for n, payload in enumerate(payloads)]
    command = ["sh", "-c", "sleep 3600; exit 0", "literal", *payloads]
    ran = runner.invoke(
        cli_app.app,
        ["run", IMAGE, "--name", "cli", "--device", agent.key, *options, "--", *command],
        env=env,
    )
    assert ran.exit_code == 0, ran.output
    seen = inspect(f"{user.username}-cli")
    assert_hardened(seen, **DEFAULTS)
    assert seen["Config"]["Cmd"] == command
    assert [e for e in seen["Config"]["Env"] if e.startswith("P")] == [
        f"P{n}={payload}" for n, payload in enumerate(payloads)
    ]

    # A name that looks like an option or a shell line is the API's to refuse, clearly.
    for name in ("--privileged", f"x{payloads[0]}"):
        refused = runner.invoke(
            cli_app.app, ["run", IMAGE, f"--name={name}", "--device", agent.key], env=env
        )
        assert refused.exit_code == 1, refused.output
        assert "(validation_failed)" in refused.stderr, refused.output
    assert tenant_containers(user) == [seen["Id"][:12]]
    canary.assert_untouched()
