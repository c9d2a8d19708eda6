"""The stored login: ``$XDG_CONFIG_HOME/edgecloud/credentials.json``.

The file holds a bearer token, so it is kept private (directory 0700, file 0600), written
atomically, and refused when someone else could read it.
"""

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


class ConfigError(Exception):
    """The credentials file cannot be used (unsafe mode, unreadable, malformed)."""


@dataclass(frozen=True)
class Credentials:
    """What ``edgecloud login`` remembers; ``token`` is None after ``logout``."""

    url: str
    username: str
    token: str | None
    expires_at: str | None


def credentials_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the credentials live, following the XDG base directory spec."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    # The spec says to ignore a relative value, which would depend on the working directory.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "edgecloud" / "credentials.json"


def load(path: Path | None = None) -> Credentials | None:
    """The stored credentials, or None when there are none."""
    path = path or credentials_path()
    try:
        # Open first, then check the open file, so the mode we check is the file we read.
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(
                    f"{path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
                    f"run: chmod 600 {path}"
                )
            raw = handle.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    try:
        data = json.loads(raw)
        return Credentials(
            url=_text(data, "url"),
            username=_text(data, "username"),
            token=_optional_text(data, "token"),
            expires_at=_optional_text(data, "expires_at"),
        )
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path} is malformed ({err}); log in again or delete it") from err


def save(credentials: Credentials, path: Path | None = None) -> Path:
    """Write the credentials atomically with mode 0600 in a 0700 directory."""
    path = path or credentials_path()
    text = json.dumps(asdict(credentials), indent=2) + "\n"
    try:
        _write_private(path, text)
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror or err}") from err
    return path


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for an existing directory.
    path.parent.chmod(DIR_MODE)
    # mkstemp creates the file with mode 0600, so the token is never briefly world-readable;
    # os.replace then swaps it in whole, so a crash leaves the old file or the new one.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".credentials-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, FILE_MODE)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


def _text(data: object, field: str) -> str:
    value = data.get(field) if isinstance(data, dict) else None
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    return value


def _optional_text(data: object, field: str) -> str | None:
    value = data.get(field) if isinstance(data, dict) else None
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{field} must be a string or null")
    return value
