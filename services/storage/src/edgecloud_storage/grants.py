"""The grant a node's transfer carries instead of an identity (the orchestrator signs it)."""

from fastapi import Request

from edgecloud_servicekit.problems import Forbidden, Unauthenticated
from edgecloud_servicekit.transfer_tokens import (
    Direction,
    TransferDenied,
    TransferGrant,
    verify_transfer,
)


def granted(request: Request, object_id: str, direction: Direction) -> TransferGrant:
    """The request's grant for ``object_id`` and ``direction``, or a 401/403 problem."""
    token = request.query_params.get("grant", "")
    if not token:
        raise Unauthenticated("a transfer needs its grant", code="grant_missing")
    try:
        return verify_transfer(
            token,
            secret=request.app.state.settings.secret,
            artifact_id=object_id,
            direction=direction,
        )
    except TransferDenied as err:
        raise Forbidden(str(err), code="grant_expired" if err.expired else "grant_invalid") from err
