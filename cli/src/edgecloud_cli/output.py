"""Everything the CLI writes: tables, messages, errors.

Tables are plain columns (no box) so they read well in a terminal and still work with
``grep``/``awk``; colour only when stdout is a terminal (rich decides, honouring NO_COLOR).
"""

import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .client import NO_ANSWER, ApiError, CreatedToken, Device, DeviceMetrics, Me, Token

STATUS_STYLES = {"online": "green", "degraded": "yellow", "offline": "red"}
MISSING = "-"
NO_METRICS: DeviceMetrics = {"cpu_percent": None, "memory_used": None, "disk_free": None}
UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
# Tables take the width their content needs, like kubectl's: a key cut to "pi-1_0200…" would be
# useless, and a long line that wraps in a narrow terminal still reads (and pipes) whole.
NATURAL_WIDTH = 10_000


def _console() -> Console:
    # Created per call, not at import, so it writes to whatever sys.stdout is now.
    return Console(file=sys.stdout, highlight=False, width=NATURAL_WIDTH)


def info(message: str) -> None:
    """A line of normal output."""
    typer.echo(message)


def notice(message: str) -> None:
    """A line for the person at the terminal, kept out of stdout so scripts can parse it."""
    typer.echo(message, err=True)


def error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def api_error(err: ApiError, *, suggest_login: bool = True) -> None:
    """Report a failed request: the problem's detail and code, plus what to do about it."""
    if err.status == NO_ANSWER:
        error(err.detail)
        return
    error(f"{err.detail} ({err.code})")
    if err.status == 401 and suggest_login:
        notice("hint: run `edgecloud login` to sign in")
    if err.status == 429 and err.retry_after:
        seconds = err.retry_after.strip()
        notice(f"retry after {seconds} s" if seconds.isdigit() else f"retry after {seconds}")


def raw_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2))


def whoami(me: Me) -> None:
    info(f"user:   {me['user']['username']}")
    info(f"tenant: {me['tenant']['name']}")
    info(f"roles:  {', '.join(me['roles']) or MISSING}")


def devices(items: Iterable[Device], *, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    table = _table("KEY", "NAME", "STATUS", "LINK", "LOCATION", "ARCH", "LAST SEEN", "CPU%", "MEM")
    for device in items:
        metrics = device.get("metrics") or NO_METRICS
        cpu = metrics.get("cpu_percent")
        table.add_row(
            Text(device["key"]),
            Text(device["name"]),
            Text(device["status"], style=STATUS_STYLES.get(device["status"], "")),
            Text(device.get("link") or MISSING),
            Text(device.get("location") or MISSING),
            Text(device.get("arch") or MISSING),
            Text(ago(device.get("last_seen"), now=now)),
            Text(MISSING if cpu is None else f"{cpu:.1f}"),
            Text(_usage(metrics.get("memory_used"), device.get("memory_total"))),
        )
    _console().print(table)


def tokens(items: Iterable[Token], *, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    table = _table("ID", "NAME", "CREATED", "EXPIRES", "LAST USED")
    for token in items:
        last_used = token.get("last_used_at")
        table.add_row(
            Text(token["id"]),
            Text(token["name"]),
            Text(when(token["created_at"])),
            Text(when(token["expires_at"])),
            Text(ago(last_used, now=now) if last_used else "never"),
        )
    _console().print(table)


def created_token(token: CreatedToken) -> None:
    """The new token alone on stdout (``TOKEN=$(edgecloud tokens create ci)`` works)."""
    notice(f"Created token {token['name']} (id {token['id']}, expires {when(token['expires_at'])})")
    info(token["token"])
    notice("warning: copy this token now; it will not be shown again")


def ago(timestamp: str | None, *, now: datetime) -> str:
    """``"3s ago"``, ``"5m ago"``, ``"2h ago"``, ``"4d ago"``; ``-`` when unknown."""
    moment = _parse(timestamp)
    if moment is None:
        return MISSING
    # A device clock slightly ahead of ours must not show as "in the future".
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def when(timestamp: str | None) -> str:
    """An RFC 3339 timestamp as ``2025-01-31 14:05 UTC``."""
    moment = _parse(timestamp)
    return MISSING if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def human_bytes(size: int | float | None) -> str:
    """``512 B``, ``1.5 KiB``, ``3.8 GiB``."""
    if size is None:
        return MISSING
    value, unit = float(size), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.0f} B" if unit == 0 else f"{value:.1f} {UNITS[unit]}"


def _usage(used: int | None, total: int | None) -> str:
    if used is None and total is None:
        return MISSING
    return f"{human_bytes(used)}/{human_bytes(total)}"


def _parse(timestamp: str | None) -> datetime | None:
    if not timestamp:
        return None
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    # RFC 3339 requires an offset; treat a bare time as UTC, as the API's times are.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table
