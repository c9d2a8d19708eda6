"""Transfer grants inside commands: signed when the command is sent, not when it is
queued, so a command that waited days for its node still carries a current grant."""

from typing import Any
from urllib.parse import quote

from edgecloud_contracts.artifacts import TRANSFERS_PATH
from edgecloud_contracts.containers import Command
from edgecloud_servicekit.transfer_tokens import Direction, TransferGrant, sign_transfer


def transfer_url(
    artifact_id: str,
    *,
    tenant_id: str,
    device_key: str,
    direction: Direction,
    secret: str,
    ttl_s: float,
) -> str:
    """The public URL (relative to the API address) a node uses to move one artifact."""
    grant = sign_transfer(
        TransferGrant(
            artifact_id=artifact_id,
            tenant_id=tenant_id,
            device_key=device_key,
            direction=direction,
        ),
        secret=secret,
        ttl_s=ttl_s,
    )
    return f"{TRANSFERS_PATH}/{quote(artifact_id)}?grant={grant}"


def with_fresh_grants(
    payload: dict[str, Any], *, tenant_id: str, device_key: str, secret: str, ttl_s: float
) -> dict[str, Any]:
    """The command as it goes out now: every transfer URL in it carries a new grant."""
    command = Command.model_validate(payload)

    def url(artifact_id: str, direction: Direction) -> str:
        return transfer_url(
            artifact_id,
            tenant_id=tenant_id,
            device_key=device_key,
            direction=direction,
            secret=secret,
            ttl_s=ttl_s,
        )

    changes: dict[str, Any] = {}
    if command.deployment is not None:
        order = command.deployment
        changes["deployment"] = order.model_copy(
            update={
                "archive": order.archive.model_copy(
                    update={"url": url(order.archive.artifact_id, "download")}
                ),
                "script": order.script.model_copy(
                    update={"url": url(order.script.artifact_id, "download")}
                ),
            }
        )
    if command.files is not None:
        changes["files"] = command.files.model_copy(
            update={"url": url(command.files.artifact_id, "upload")}
        )
    if command.spec is not None:
        # The image's archive or build context, fetched by the node from storage.
        fresh = {
            field: ref.model_copy(update={"url": url(ref.artifact_id, "download")})
            for field in ("image_archive", "build_context")
            if (ref := getattr(command.spec, field)) is not None
        }
        if fresh:
            changes["spec"] = command.spec.model_copy(update=fresh)
    if not changes:
        return payload
    return command.model_copy(update=changes).model_dump(mode="json")
