"""The orchestrator's commands as they go out: every id and transfer URL it makes is one
the contract and the node accept (the grammar of edgecloud_contracts.ids)."""

import uuid

from edgecloud_agent.deploy import transfer_urls
from edgecloud_contracts.artifacts import DeploymentOrder
from edgecloud_contracts.containers import Action, Command, FilesOrder
from edgecloud_orchestrator.commands.grants import with_fresh_grants
from edgecloud_orchestrator.containers.outputs import archive_name
from edgecloud_orchestrator.deployments.router import transfer_ref

SECRET = "a-secret-long-enough-for-tests-0123456789"


def artifact(name: str) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "name": name, "size": 10, "sha256": "0" * 64}


def sent(command: Command) -> Command:
    payload = with_fresh_grants(
        command.model_dump(mode="json"),
        tenant_id=str(uuid.uuid4()),
        device_key="node_0200000000aa",
        secret=SECRET,
        ttl_s=60,
    )
    return Command.model_validate(payload)


def test_a_deploy_and_a_copy_out_carry_ids_and_urls_a_node_accepts() -> None:
    container_id = str(uuid.uuid4())
    order = DeploymentOrder(
        deployment_id=str(uuid.uuid4()),
        container_id=container_id,
        docker_name="alice-web",
        archive=transfer_ref(artifact("my app (2).tar.gz")),
        script=transfer_ref(artifact("run.sh")),
    )
    deploy = sent(
        Command(
            id=str(uuid.uuid4()),
            action=Action.DEPLOY,
            container_id=container_id,
            docker_name="alice-web",
            deployment=order,
        )
    )
    files = sent(
        Command(
            id=str(uuid.uuid4()),
            action=Action.FILES,
            container_id=container_id,
            docker_name="alice-web",
            files=FilesOrder(path="/app/out", artifact_id=str(uuid.uuid4()), url=""),
        )
    )
    assert deploy.deployment is not None
    assert files.files is not None
    urls = [deploy.deployment.archive.url, deploy.deployment.script.url, files.files.url]
    for url in urls:
        assert transfer_urls.check(url) == url
    resolved = transfer_urls.resolve("https://edge.example/", urls[0])
    assert resolved.startswith(
        f"https://edge.example/api/v1/transfers/{order.archive.artifact_id}?"
    )


def test_names_made_for_copies_out_are_file_names() -> None:
    """The tar of a copy out is an artifact named after the path; a node may get it back
    as a transfer (its name then a file name on the node)."""
    for path in ["/app/out", "/", "/app/.hidden", "/app/a b/c d", "/app/..."]:
        name = archive_name(path)
        transfer_ref({**artifact(name), "name": name})
