"""The node's own Ed25519 key, kept in the state directory (mode 0600).

The private key is made on the node and never leaves it; the cloud learns only the
public key, at enrolment. The file is written before the first login so that a node
that crashes mid-enrolment retries with the same key.
"""

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

CREDENTIAL_FILE = "credential.json"


class CredentialFileError(Exception):
    """The credential file exists but cannot be used."""


@dataclass(frozen=True, slots=True)
class NodeCredential:
    device_key: str
    private_key: bytes
    enrolled: bool


def _path(state_dir: Path) -> Path:
    return state_dir / CREDENTIAL_FILE


def load(state_dir: Path) -> NodeCredential | None:
    path = _path(state_dir)
    if not path.exists():
        return None
    if path.stat().st_mode & 0o077:
        raise CredentialFileError(f"{path} is readable by others; expected mode 0600")
    try:
        data = json.loads(path.read_text())
        return NodeCredential(
            device_key=str(data["device_key"]),
            private_key=bytes.fromhex(data["private_key"]),
            enrolled=bool(data.get("enrolled", False)),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise CredentialFileError(f"{path} is not a valid credential file: {err}") from err


def save(state_dir: Path, credential: NodeCredential) -> None:
    """Write atomically with mode 0600: a crash leaves the old file or the new one."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = _path(state_dir)
    temporary = path.with_suffix(".tmp")
    body = json.dumps(
        {
            "device_key": credential.device_key,
            "private_key": credential.private_key.hex(),
            "enrolled": credential.enrolled,
        }
    )
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def load_or_create(state_dir: Path, device_key: str) -> NodeCredential:
    credential = load(state_dir)
    if credential is not None:
        if credential.device_key != device_key:
            raise CredentialFileError(
                f"the credential in {state_dir} belongs to {credential.device_key}, "
                f"this node is {device_key}"
            )
        return credential
    credential = NodeCredential(
        device_key=device_key, private_key=secrets.token_bytes(32), enrolled=False
    )
    save(state_dir, credential)
    return credential


def mark_enrolled(state_dir: Path, credential: NodeCredential) -> NodeCredential:
    enrolled = NodeCredential(credential.device_key, credential.private_key, enrolled=True)
    save(state_dir, enrolled)
    return enrolled
