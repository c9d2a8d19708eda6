"""infra/docker: one image per process in infra/Procfile, each built from the lockfile with uv
and run as a non-root user, starting what the Procfile starts on the port it listens on."""

import re
import shlex
from pathlib import Path

import pytest

from edgecloud_servicekit.settings import ServiceSettings

from . import dockerfiles
from .kustomize import load, pod_spec
from .repo import ROOT, cloud_processes, processes, settings_class, workspace_package

PYTHON_IMAGE = "python:3.11-slim-bookworm"
ROUTER_REQUIREMENTS_IN = dockerfiles.DOCKER_DIR / "router.requirements.in"
ROUTER_REQUIREMENTS = dockerfiles.DOCKER_DIR / "router.requirements.txt"


def final_uid(dockerfile: dockerfiles.Dockerfile) -> int:
    user = dockerfile.final.last("USER")
    assert user is not None, f"{dockerfile.path.name}: the final stage runs as root"
    uid = user.arguments.split(":")[0]
    # Kubernetes can check runAsNonRoot only against a numeric user.
    assert uid.isdigit(), f"{dockerfile.path.name}: USER {uid} is not numeric"
    return int(uid)


def test_every_process_has_a_dockerfile_and_every_dockerfile_a_process() -> None:
    images = {
        path.name.removesuffix(".Dockerfile")
        for path in dockerfiles.DOCKER_DIR.glob("*.Dockerfile")
    }
    assert images == set(processes())


@pytest.mark.parametrize("process", sorted(cloud_processes()))
def test_the_image_runs_as_a_non_root_user(process: str) -> None:
    dockerfile = dockerfiles.parse(dockerfiles.dockerfile_path(process))
    assert final_uid(dockerfile) != 0
    # USER is the last word on it: nothing after it switches back.
    keywords = [i.keyword for i in dockerfile.final.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_the_agent_image_is_the_nodes_root_with_the_tools_it_drives() -> None:
    """The agent holds the node's firewall, mounts each container's /app disk and makes
    cgroups: root on the node, in a container or not (its Docker socket is root-equivalent
    anyway). Its image says so plainly, and brings iptables and mkfs.ext4."""
    [agent] = [name for name, process in processes().items() if process.is_agent]
    dockerfile = dockerfiles.parse(dockerfiles.dockerfile_path(agent))
    assert final_uid(dockerfile) == 0
    installed = " ".join(i.arguments for i in dockerfile.final.instructions if i.keyword == "RUN")
    assert all(package in installed for package in ("iptables", "e2fsprogs", "mount"))


@pytest.mark.parametrize("process", sorted(cloud_processes()))
def test_the_pod_runs_as_the_image_s_user(process: str) -> None:
    uid = final_uid(dockerfiles.parse(dockerfiles.dockerfile_path(process)))
    pod = pod_spec(load().named("Deployment")[process])
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("process", sorted(processes()))
def test_python_stages_use_the_pinned_slim_image(process: str) -> None:
    dockerfile = dockerfiles.parse(dockerfiles.dockerfile_path(process))
    assert dockerfile.global_args.get("PYTHON_IMAGE") == PYTHON_IMAGE
    for stage in dockerfile.stages:
        assert ":" in stage.base, f"{stage.name}: {stage.base} is not pinned by tag"
        assert not stage.base.endswith(":latest")
    assert dockerfile.final.base == PYTHON_IMAGE
    assert dockerfile.stage("build").base == PYTHON_IMAGE, "the venv must match the runtime's"


@pytest.mark.parametrize("process", sorted(p for p, f in processes().items() if not f.is_router))
def test_the_image_installs_its_package_from_the_lockfile_with_uv(process: str) -> None:
    found = processes()[process]
    assert found.module is not None
    package = workspace_package(found.module)
    dockerfile = dockerfiles.parse(dockerfiles.dockerfile_path(process))
    syncs = [shlex.split(run) for run in dockerfile.runs() if "uv sync" in run]
    assert syncs, f"{process}: no uv sync"
    for run in syncs:
        command = run[run.index("uv") :]
        assert {"--frozen", "--locked"} & set(command), f"{process}: {command} ignores uv.lock"
        assert "--no-dev" in command
        assert command[command.index("--package") + 1] == package
    # The venv stands alone (no editable links into /src), and is all the runtime takes.
    assert "--no-editable" in syncs[-1]
    assert any("source=uv.lock" in run for run in dockerfile.runs()), "deps layer from uv.lock"
    copies = [i.arguments for i in dockerfile.final.all("COPY") if "--from=build" in i.arguments]
    assert copies, f"{process}: the runtime stage takes nothing from the build stage"


def test_the_router_image_installs_crossbar_pinned_with_hashes_in_its_own_venv() -> None:
    dockerfile = dockerfiles.parse(dockerfiles.dockerfile_path("router"))
    (install,) = [run for run in dockerfile.runs() if "uv pip" in run]
    assert "uv pip sync" in install
    assert "--require-hashes" in install
    assert ROUTER_REQUIREMENTS.name in install
    assert "/opt/router-venv/bin/python" in install, "crossbar needs a venv of its own"

    # The same requirements infra/setup/venvs.sh puts into .venv-router ...
    venvs = (ROOT / "infra" / "setup" / "venvs.sh").read_text()
    listed = re.search(r"ROUTER_REQUIREMENTS=\(([^)]*)\)", venvs)
    assert listed is not None
    wanted = shlex.split(listed.group(1))
    lines = ROUTER_REQUIREMENTS_IN.read_text().splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == wanted
    # ... each pinned, with its hashes, crossbar at the version the setup installs.
    pinned = ROUTER_REQUIREMENTS.read_text()
    crossbar = next(item for item in wanted if item.startswith("crossbar"))
    assert re.search(rf"^{re.escape(crossbar)} \\$", pinned, re.MULTILINE)
    requirements = re.findall(r"^([A-Za-z0-9_.-]+)==\S+ (?:; [^\\]+)?\\$", pinned, re.MULTILINE)
    assert len(requirements) > 20
    assert pinned.count("--hash=sha256:") >= len(requirements)


@pytest.mark.parametrize("process", sorted(processes()))
def test_the_image_starts_what_the_procfile_starts(process: str) -> None:
    found = processes()[process]
    dockerfile = dockerfiles.parse(dockerfiles.dockerfile_path(process))
    command = dockerfile.final.last("CMD")
    assert command is not None
    argv = command.exec_form()
    if found.is_router:
        assert argv[0] == "/opt/router-venv/bin/python"
        assert Path(argv[1]).name == "launch.py"
        assert "--cbdir" in argv
        copied = " ".join(i.arguments for i in dockerfile.final.all("COPY"))
        for needed in ("launch.py", "config.template.json", "edgecloud_router_policy.py", "site"):
            assert f"infra/router/{needed}" in copied
    else:
        assert argv == ["python", "-m", found.module]


@pytest.mark.parametrize("process", sorted(processes()))
def test_the_image_exposes_the_port_its_process_listens_on(process: str) -> None:
    found = processes()[process]
    dockerfile = dockerfiles.parse(dockerfiles.dockerfile_path(process))
    exposed = [int(port) for i in dockerfile.final.all("EXPOSE") for port in i.arguments.split()]
    if found.is_agent:
        assert exposed == [], "the agent only dials out"
        return
    if found.is_router:
        port = int(dockerfile.final.env()["EDGECLOUD_ROUTER_PORT"])
    else:
        assert found.module is not None
        settings = settings_class(found.module)
        assert issubclass(settings, ServiceSettings)
        port = settings.default_port
    assert exposed == [port]
    healthcheck = dockerfile.final.last("HEALTHCHECK")
    assert healthcheck is not None
    assert f"127.0.0.1:{port}/" in healthcheck.arguments


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".venv-router", "var", "infra/k8s"} <= ignored
    assert not ignored & {"uv.lock", "pyproject.toml", "libs", "services", "edge-agent", "infra"}
