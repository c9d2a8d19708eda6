"""Following a long operation (a deployment, a migration) to its end: it is read every so
often, and each of its steps is told once it has ended."""

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from .client import ApiError
from .retries import Retries
from .schemas import DeploymentStep, MigrationStep

T = TypeVar("T")
Step = TypeVar("Step", DeploymentStep, MigrationStep)


def until_done(
    read: Callable[[], T], *, done: Callable[[T], bool], seen: Callable[[T], None], every_s: float
) -> T:
    """``read()`` every ``every_s`` until ``done``, handing each answer to ``seen``; a read
    that fails for want of an answer (or with a 5xx) is tried again."""
    retries = Retries()
    while True:
        try:
            current = read()
        except ApiError as err:
            retries.pause(err)
            continue
        retries.reset()
        seen(current)
        if done(current):
            return current
        time.sleep(every_s)


class EndedSteps:
    """The steps not told yet, in order, up to the first still going on; once the
    operation is over (``done``), also the steps it cut short."""

    def __init__(self) -> None:
        self._told = 0

    def new(self, steps: Sequence[Step], *, done: bool) -> list[Step]:
        ended: list[Step] = []
        while self._told < len(steps):
            step = steps[self._told]
            if step["duration_ms"] is None and not done:
                break  # told when it ends
            ended.append(step)
            self._told += 1
        return ended
