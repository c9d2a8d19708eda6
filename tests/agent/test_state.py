"""The command journal and the desired state: sqlite3 files in the state directory."""

import time
from pathlib import Path

from edgecloud_agent.state.desired import DesiredState
from edgecloud_agent.state.journal import CommandJournal
from edgecloud_contracts.containers import Action, CommandResult

from .conftest import command_for, make_spec


def test_journal_remembers_across_a_restart(tmp_path: Path) -> None:
    spec = make_spec("t-x")
    command = command_for(spec, Action.CREATE)
    result = CommandResult(command_id=command.id, ok=False, error_code="image_pull_failed")
    journal = CommandJournal(tmp_path)
    assert journal.get(command.id) is None
    journal.record(command, result)
    journal.close()

    reopened = CommandJournal(tmp_path)
    entry = reopened.get(command.id)
    reopened.close()
    assert entry is not None
    assert entry.result == result
    assert (entry.action, entry.container_id) == ("create", spec.container_id)


def test_journal_forgets_by_count_and_age(tmp_path: Path) -> None:
    journal = CommandJournal(tmp_path, max_entries=3)
    spec = make_spec("t-x")
    commands = [command_for(spec, Action.START, f"cmd-{n}") for n in range(5)]
    for command in commands:
        journal.record(command, CommandResult(command_id=command.id, ok=True))
        time.sleep(0.002)  # distinct timestamps: "the newest" is well defined
    journal.prune()
    assert len(journal) == 3
    assert journal.get("cmd-0") is None
    assert journal.get("cmd-4") is not None
    journal.close()

    aged = CommandJournal(tmp_path, max_age_s=0)  # pruned on open
    assert len(aged) == 0
    aged.close()


def test_desired_state(tmp_path: Path) -> None:
    desired = DesiredState(tmp_path)
    first, second = make_spec("t-a"), make_spec("t-b")
    desired.put(first)
    desired.put(second)
    desired.set_running(first.container_id, False)
    desired.set_running("c-unknown", True)  # never given to this node: ignored
    desired.close()

    reopened = DesiredState(tmp_path)
    entries = reopened.all()
    assert [entry.spec for entry in entries] == [first, second]
    assert [entry.running for entry in entries] == [False, True]
    reopened.remove(first.container_id)
    assert reopened.get(first.container_id) is None
    got = reopened.get(second.container_id)
    assert got is not None
    assert got.spec == second
    reopened.close()
