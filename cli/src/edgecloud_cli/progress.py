"""Progress bars for transfers, on stderr: bytes, rate and time left.

Shown only on a terminal (and never with ``--quiet``): a bar redrawn in a pipe or a log file
is noise. Hidden, the bar is a no-op that still counts, so the code drives it the same way.
"""

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from . import output


def shown(*, quiet: bool) -> bool:
    """Whether to draw progress: not asked to be quiet, and stderr is a terminal."""
    return not quiet and sys.stderr.isatty()


def transfer_bar(*, show: bool) -> Progress:
    """A bar per transfer; use it as a context manager, add a task per file."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        disable=not show,
    )


def say(bar: Progress, line: str) -> None:
    """A line on stderr, above the bar while it is drawn: written past it, the line would
    land on the bar's own."""
    if bar.live.is_started:
        bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
    else:
        output.notice(line)
