"""The node's image store held apart per tenant (edgecloud_agent.isolation.images), on the
real engine: what a tenant brings is its own and moves no one's tag, a name never reaches an
image by its ID, and builds neither fetch on the node's behalf nor start from another
tenant's image, under limits of their own."""

import io
import json
import secrets
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edgecloud_agent.isolation.images import tenant_repository
from edgecloud_agent.isolation.provision import Provisioner
from edgecloud_agent.runtime.docker import file_chunks
from edgecloud_agent.runtime.errors import BuildRefused, ImageBuildFailed, ImageRefused
from edgecloud_contracts.artifacts import TransferRef
from edgecloud_contracts.containers import MIB, ContainerSpec, Limits
from tests.support.images import build_context

from .conftest import IMAGE, docker, make_spec

pytestmark = pytest.mark.stack


def image_id(reference: str) -> str | None:
    done = docker("image", "inspect", "-f", "{{.Id}}", reference)
    return done.stdout.strip() if done.returncode == 0 else None


def tags_of(image: str) -> list[str]:
    return list(json.loads(docker("image", "inspect", image, check=True).stdout)[0]["RepoTags"])


@pytest.fixture
def scratch_names() -> Iterator[Callable[[str], str]]:
    """Image names unique to the test (``<stem>-<random>:1``), removed afterwards."""
    made: list[str] = []

    def make(stem: str) -> str:
        made.append(f"{stem}-{secrets.token_hex(4)}:1")
        return made[-1]

    yield make
    for name in made:
        docker("image", "rm", "-f", name)


def distinct_image(name: str, tmp_path: Path) -> str:
    """A small image of its own content, tagged ``name``; its ID."""
    root = tmp_path / f"rootfs-{secrets.token_hex(3)}"
    root.mkdir()
    (root / "marker").write_text(secrets.token_hex(8))
    subprocess.run(["tar", "-C", str(root), "-cf", f"{root}.tar", "."], check=True)
    docker("import", f"{root}.tar", name, check=True)
    found = image_id(name)
    assert found is not None
    return found


def saved(tmp_path: Path, *names: str) -> Path:
    """``docker save`` of ``names`` (tags of images on this engine) into one archive."""
    archive = tmp_path / f"save-{secrets.token_hex(3)}.tar"
    docker("save", "-o", str(archive), *names, check=True)
    return archive


def from_archive(name: str, archive: Path, tenant: str = "tenant-a") -> ContainerSpec:
    ref = TransferRef(
        artifact_id="a-1",
        url="/api/v1/transfers/a-1?grant=g",
        name=archive.name,
        size=1,
        sha256=secrets.token_hex(32),
    )
    return make_spec("t-x", image=name, tenant_id=tenant, image_archive=ref)


def from_context(name: str, tenant: str = "tenant-a", **limits: Any) -> ContainerSpec:
    ref = TransferRef(
        artifact_id="a-2",
        url="/api/v1/transfers/a-2?grant=g",
        name="context.tar",
        size=1,
        sha256=secrets.token_hex(32),
    )
    spec_limits = Limits(**{"memory": 64 * MIB, "cpus": 0.5, "pids": 64, **limits})
    return make_spec("t-x", image=name, tenant_id=tenant, build_context=ref, limits=spec_limits)


async def test_an_archive_that_also_names_other_images_is_refused_and_moves_no_tag(
    provisioner: Provisioner, scratch_names: Callable[[str], str], tmp_path: Path
) -> None:
    """Defence: the archive's manifest is read before the engine sees it. Without it, the
    load moves ``victim``'s tag to the attacker's image (seen)."""
    victim, declared = scratch_names("victim"), scratch_names("attacker-app")
    victims_image = distinct_image(victim, tmp_path)
    docker("tag", IMAGE, declared, check=True)
    docker("tag", IMAGE, f"{victim}-x", check=True)  # a name to carry in the archive
    archive_path = saved(tmp_path, declared, f"{victim}-x")
    # The archive's own manifest names the victim's tag too: rewrite it so.
    rewritten = tmp_path / "attack.tar"
    archive_path.rename(rewritten)
    _retag_manifest(rewritten, {f"{victim}-x": victim})
    docker("image", "rm", "-f", declared, f"{victim}-x")

    with pytest.raises(ImageRefused) as refused:
        await provisioner.images.load(from_archive(declared, rewritten), rewritten)
    assert refused.value.code == "image_refused"
    assert victim in str(refused.value)
    assert image_id(victim) == victims_image
    assert image_id(declared) is None


async def test_an_archive_of_two_images_is_refused(
    provisioner: Provisioner, scratch_names: Callable[[str], str], tmp_path: Path
) -> None:
    declared, other = scratch_names("app"), scratch_names("other")
    docker("tag", IMAGE, declared, check=True)
    distinct_image(other, tmp_path)
    archive = saved(tmp_path, declared, other)
    with pytest.raises(ImageRefused, match="exactly one"):
        await provisioner.images.load(from_archive(declared, archive), archive)


async def test_an_archive_becomes_its_tenants_own_under_no_name_of_its_own(
    provisioner: Provisioner, scratch_names: Callable[[str], str], tmp_path: Path
) -> None:
    """What a tenant brings is tagged only in its own namespace: another tenant asking for
    that name, that ID or a prefix of it gets nothing (Docker's own lookup would give it)."""
    declared = scratch_names("private-app")
    built = distinct_image(declared, tmp_path)
    archive = saved(tmp_path, declared)
    docker("image", "rm", "-f", declared, check=True)  # only the archive has it now

    spec = from_archive(declared, archive)
    loaded = await provisioner.images.load(spec, archive)
    try:
        assert loaded == built
        assert image_id(declared) is None  # the archive's tag was not applied
        hexdigest = built.removeprefix("sha256:")
        assert tags_of(built) == [f"{tenant_repository('tenant-a')}:{hexdigest}"]
        assert await provisioner.images.find(spec) == built
        # The same tenant may use it by its name again.
        assert (
            await provisioner.images.find(make_spec("t-y", image=declared, tenant_id="tenant-a"))
            == built
        )

        someone_else = make_spec("t-z", image=declared, tenant_id="tenant-b")
        assert await provisioner.images.find(someone_else) is None
        # By a prefix of its ID: Docker itself would hand it over.
        prefix = hexdigest[:12]
        assert image_id(prefix) == built
        assert await provisioner.images.shared(prefix) is None
        assert (
            await provisioner.images.find(make_spec("t-z", image=prefix, tenant_id="tenant-b"))
            is None
        )
        # By its ID or the node's own name for it: refused before the node sees it.
        for reference in (built, f"{tenant_repository('tenant-a')}:{hexdigest}"):
            with pytest.raises(ValidationError):
                make_spec("t-z", image=reference, tenant_id="tenant-b")
    finally:
        docker("image", "rm", "-f", built)


async def test_a_build_is_pinned_and_refused_what_it_may_not_do(
    provisioner: Provisioner, scratch_names: Callable[[str], str], tmp_path: Path
) -> None:
    """Defence: the Dockerfile is read before the engine builds it (the engine fetches ADD
    URLs on the node's own network, and resolves FROM by ID prefix)."""
    private = scratch_names("private-base")
    private_id = distinct_image(private, tmp_path)
    refusals = {
        "url": "FROM edgecloud/busybox:latest\nADD http://127.0.0.1:9/x /x\n",
        "git": "FROM edgecloud/busybox:latest\nADD git@example.invalid:x.git /x\n",
        "variable": "FROM edgecloud/busybox:latest\nARG U=http://127.0.0.1:9/x\nADD $U /x\n",
        "continued": "FROM edgecloud/busybox:latest\nADD \\\n  http://127.0.0.1:9/x /x\n",
        "json_form": 'FROM edgecloud/busybox:latest\nADD ["http://127.0.0.1:9/x", "/x"]\n',
        "variable_base": "ARG B=edgecloud/busybox:latest\nFROM $B\n",
        "id_prefix_base": f"FROM {private_id.removeprefix('sha256:')[:12]}\n",
        "untagged_private_base": f"FROM {tenant_repository('tenant-b')}:{private_id[7:]}\n",
        "copy_from_id": f"FROM edgecloud/busybox:latest\nCOPY --from={private_id[7:19]} / /x\n",
    }
    for case, dockerfile in refusals.items():
        context = tmp_path / f"{case}.tar"
        context.write_bytes(build_context(dockerfile, {}))
        with pytest.raises(BuildRefused) as refused:
            await provisioner.images.build(from_context(scratch_names(case)), context)
        assert refused.value.code == "build_refused", case
    # The ONBUILD triggers of the base are checked too (a tenant's own image may carry
    # them: brought in an archive, say; here made on the engine directly).
    base = tmp_path / "base.tar"
    base.write_bytes(
        build_context("FROM edgecloud/busybox:latest\nONBUILD ADD http://127.0.0.1:9/x /x\n", {})
    )
    trigger = scratch_names("onbuild")
    runtime = provisioner.runtime
    trigger_id = await runtime.build_image(
        file_chunks(base), params={"networkmode": "none", "t": trigger}, what="base"
    )
    child = tmp_path / "child.tar"
    child.write_bytes(build_context(f"FROM {trigger}\n", {}))
    with pytest.raises(BuildRefused, match="ADD"):
        await provisioner.images.build(from_context(scratch_names("child")), child)
    assert trigger_id


async def test_a_build_runs_without_network_and_within_its_pids(
    provisioner: Provisioner, scratch_names: Callable[[str], str], tmp_path: Path
) -> None:
    """Defence: the build's own cgroup (Docker's builder has no PID limit of its own): a
    step that forks more than the tenant's PIDs fails."""
    context = tmp_path / "ok.tar"
    context.write_bytes(
        build_context(
            "FROM edgecloud/busybox:latest\nCOPY hello.txt /hello.txt\n"
            "RUN ! wget -q -T 2 -O /dev/null http://127.0.0.1:1/ \n",
            {"hello.txt": "built here\n"},
        )
    )
    built = await provisioner.images.build(from_context(scratch_names("ok")), context)
    try:
        shown = docker("run", "--rm", "--network", "none", built, "cat", "/hello.txt")
        assert shown.stdout == "built here\n"
        assert tags_of(built) == [f"{tenant_repository('tenant-a')}:{built[7:]}"]
    finally:
        docker("image", "rm", "-f", built)

    forks = tmp_path / "forks.tar"
    forks.write_bytes(
        build_context(
            "FROM edgecloud/busybox:latest\nRUN for i in $(seq 100); do sleep 5 & done; wait\n",
            {},
        )
    )
    with pytest.raises(ImageBuildFailed, match="fork"):
        await provisioner.images.build(from_context(scratch_names("forks"), pids=30), forks)


def _retag_manifest(archive: Path, renamed: dict[str, str]) -> None:
    """Rewrite an archive's manifest.json so that its tags say what ``renamed`` maps to."""
    rewritten = archive.with_suffix(".new")
    with tarfile.open(archive) as source, tarfile.open(rewritten, "w") as target:
        for member in source:
            data = source.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json" and data is not None:
                manifest = json.loads(data.read())
                for entry in manifest:
                    entry["RepoTags"] = [renamed.get(t, t) for t in entry["RepoTags"] or []]
                raw = json.dumps(manifest).encode()
                member.size = len(raw)
                data = io.BytesIO(raw)
            target.addfile(member, data)
    rewritten.replace(archive)
