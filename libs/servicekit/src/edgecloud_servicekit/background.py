"""Long-running tasks owned by a lifespan: named, cancelled on exit, crashes logged."""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []
        self.crashed: dict[str, str] = {}

    async def __aenter__(self) -> "BackgroundTasks":
        return self

    def start(self, name: str, run: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        task = asyncio.create_task(run(), name=name)
        task.add_done_callback(self._on_done)
        self._tasks.append(task)

    def _on_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.crashed[task.get_name()] = repr(error)
            logger.error("background task %s crashed", task.get_name(), exc_info=error)

    async def __aexit__(self, *_: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
