import os
import stat
from pathlib import Path

import pytest

from edgecloud_agent.state import credentials


def test_created_once_and_private(tmp_path: Path) -> None:
    first = credentials.load_or_create(tmp_path / "state", "node_0200000000aa")
    path = tmp_path / "state" / "credential.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first.private_key) == 32
    assert not first.enrolled
    again = credentials.load_or_create(tmp_path / "state", "node_0200000000aa")
    assert again == first
    enrolled = credentials.mark_enrolled(tmp_path / "state", first)
    assert credentials.load(tmp_path / "state") == enrolled
    assert enrolled.enrolled
    assert enrolled.private_key == first.private_key


def test_refuses_a_file_readable_by_others(tmp_path: Path) -> None:
    credentials.load_or_create(tmp_path, "node_0200000000aa")
    (tmp_path / "credential.json").chmod(0o644)
    with pytest.raises(credentials.CredentialFileError, match="0600"):
        credentials.load(tmp_path)


def test_refuses_another_nodes_credential(tmp_path: Path) -> None:
    credentials.load_or_create(tmp_path, "node_0200000000aa")
    with pytest.raises(credentials.CredentialFileError, match="belongs to"):
        credentials.load_or_create(tmp_path, "node_0200000000bb")


def test_refuses_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "credential.json"
    path.write_text("{not json")
    path.chmod(0o600)
    with pytest.raises(credentials.CredentialFileError, match="not a valid"):
        credentials.load(tmp_path)
