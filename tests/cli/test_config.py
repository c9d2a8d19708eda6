"""The credentials file: where it lives, its modes, atomic writes, refusing unsafe files."""

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecloud_cli import config
from edgecloud_cli.config import ConfigError, Credentials

STORED = Credentials(
    url="http://gw:8000", username="ada", token="ec_secret", expires_at="2030-01-01T00:00:00Z"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable, to prove we do not rely on it."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_path_honours_xdg_config_home(config_home: Path) -> None:
    assert config.credentials_path() == config_home / "edgecloud" / "credentials.json"


def test_path_defaults_to_dot_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert config.credentials_path() == tmp_path / ".config" / "edgecloud" / "credentials.json"
    # A relative XDG_CONFIG_HOME is invalid per the spec and ignored.
    relative = {"XDG_CONFIG_HOME": "relative/dir"}
    assert config.credentials_path(relative).parent.parent == tmp_path / ".config"


def test_save_and_load_round_trip(config_home: Path) -> None:
    path = config.save(STORED)
    assert path == config_home / "edgecloud" / "credentials.json"
    assert config.load() == STORED


def test_load_without_a_file_is_none() -> None:
    assert config.load() is None


@pytest.mark.usefixtures("loose_umask")
def test_save_makes_directory_0700_and_file_0600(config_home: Path) -> None:
    path = config.save(STORED)
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600


@pytest.mark.usefixtures("loose_umask")
def test_save_tightens_an_existing_directory_and_file(config_home: Path) -> None:
    directory = config_home / "edgecloud"
    directory.mkdir(parents=True, mode=0o755)
    (directory / "credentials.json").write_text("{}")
    (directory / "credentials.json").chmod(0o644)
    path = config.save(STORED)
    assert mode(directory) == 0o700
    assert mode(path) == 0o600


def test_save_replaces_atomically(config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = config.save(STORED)
    calls: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(source: str, target: str) -> None:
        calls.append((str(source), str(target)))
        # At the moment of the swap the old file is still whole and the new one is complete.
        assert config.load() == STORED
        assert mode(Path(source)) == 0o600
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", spy)
    config.save(Credentials(STORED.url, STORED.username, "ec_new", None))
    [(source, target)] = calls
    assert Path(source).parent == path.parent
    assert target == str(path)
    assert config.load() == Credentials(STORED.url, STORED.username, "ec_new", None)


def test_failed_write_keeps_the_old_file_and_no_temp_file(
    config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config.save(STORED)

    def broken(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(ConfigError, match=r"cannot write .*No space left on device"):
        config.save(Credentials(STORED.url, STORED.username, "ec_new", None))
    assert config.load() == STORED
    assert sorted(p.name for p in path.parent.iterdir()) == ["credentials.json"]


@pytest.mark.parametrize("unsafe", [0o640, 0o604, 0o660, 0o620])
def test_load_refuses_a_file_others_can_access(unsafe: int) -> None:
    path = config.save(STORED)
    path.chmod(unsafe)
    with pytest.raises(ConfigError, match=f"mode {unsafe:04o}.*chmod 600"):
        config.load()


def test_load_reports_a_malformed_file() -> None:
    path = config.save(STORED)
    path.write_text('{"url": 5}')
    with pytest.raises(ConfigError, match="malformed"):
        config.load()
    path.write_text("not json")
    with pytest.raises(ConfigError, match="malformed"):
        config.load()
