"""Everything the CLI writes: tables, messages, errors.

Tables are plain columns (no box) so they read well in a terminal and still work with
``grep``/``awk``; colour only when stdout is a terminal (rich decides, honouring NO_COLOR).
"""

import json
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .client import NO_ANSWER, ApiError
from .schemas import (
    Command,
    Container,
    CreatedToken,
    Device,
    DeviceMetrics,
    Interface,
    Me,
    Member,
    Migration,
    PortMapping,
    Token,
)

STATUS_STYLES = {"online": "green", "degraded": "yellow", "offline": "red"}
STATE_STYLES = {
    "running": "green",
    "pending": "yellow",
    "restarting": "yellow",
    "exited": "red",
    "dead": "red",
    "failed": "red",
}
# A migration still under way is yellow, like one that ended with a cold restart.
MIGRATION_STYLES = {"completed": "green", "rolled_back": "red", "failed": "red"}
SHORT_ID = 12
# How a queued command reads in a sentence: "the removal is queued".
ACTION_NOUNS = {"remove": "removal"}
MISSING = "-"
# Text a device wrote (pull status, errors) reaches the terminal: no escape sequences in it.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
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
    error(f"{printable(err.detail)} ({err.code})")
    _problem_details(err.body)
    if err.status == 401 and suggest_login:
        notice("hint: run `edgecloud login` to sign in")
    if err.status == 429 and err.retry_after:
        seconds = err.retry_after.strip()
        notice(f"retry after {seconds} s" if seconds.isdigit() else f"retry after {seconds}")


def _problem_details(body: Mapping[str, Any]) -> None:
    """What a problem says beyond its detail: each invalid field, the ids a device's
    refusal left behind."""
    errors = body.get("errors")
    fields = body.get("fields")
    if isinstance(errors, list) and errors:
        for item in errors:
            if not isinstance(item, dict):
                continue
            location = [str(part) for part in item.get("loc") or []]
            # The first part says where the field was (body, query, path), not which it is.
            if location and location[0] in ("body", "query", "path"):
                location = location[1:]
            message = printable(str(item.get("msg") or "invalid"))
            notice(f"  {'.'.join(location) or 'request'}: {message}")
    elif isinstance(fields, list):
        for field in fields:
            notice(f"  {field}: invalid")
    ids = [f"{name} {body[name]}" for name in ("container", "command") if body.get(name)]
    if ids:
        notice(", ".join(ids))


def raw_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2))


def result(value: object, *, as_json: bool) -> None:
    """What a command ends with on stdout: an id, or with ``--json`` the whole object."""
    if as_json:
        raw_json(value)
    else:
        info(str(value))


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


def interfaces(items: Iterable[Interface]) -> None:
    table = _table("NAME", "KIND", "ON THE NODE", "IN CONTAINERS", "MODE", "HELD BY")
    for item in items:
        holders = item.get("holders") or []
        held = ", ".join(h["name"] or "another tenant" for h in holders) or MISSING
        mode = ("ro" if item["read_only"] else "rw") + (", shared" if item["shareable"] else "")
        table.add_row(
            Text(item["name"]),
            Text(item["kind"]),
            Text(item["path"] or item["topic"] or MISSING),
            Text(item["container_path"] or MISSING),
            Text(mode),
            Text(held),
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


def members(items: Iterable[Member]) -> None:
    table = _table("ID", "USERNAME", "ROLE", "JOINED", "STATE")
    for member in items:
        table.add_row(
            Text(member["user"]["id"]),
            Text(member["user"]["username"]),
            Text(member["role"]),
            Text(when(member["joined_at"])),
            Text("disabled" if member["user"].get("disabled_at") else "active"),
        )
    _console().print(table)


def created_token(token: CreatedToken) -> None:
    """The new token alone on stdout (``TOKEN=$(edgecloud tokens create ci)`` works)."""
    notice(f"Created token {token['name']} (id {token['id']}, expires {when(token['expires_at'])})")
    info(token["token"])
    notice("warning: copy this token now; it will not be shown again")


def containers(items: Iterable[Container], *, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    table = _table("ID", "NAME", "DEVICE", "IMAGE", "STATE", "CREATED", "PORTS")
    for container in items:
        table.add_row(
            Text(container["id"][:SHORT_ID]),
            Text(container["name"]),
            Text(container["device"]),
            Text(container["image"]),
            Text(container["state"], style=STATE_STYLES.get(container["state"], "")),
            Text(ago(container["created_at"], now=now)),
            Text(describe_ports(container.get("ports") or []) or MISSING),
        )
    _console().print(table)


def describe_ports(ports: Iterable[PortMapping]) -> str:
    """``30080->80/tcp, 30053->53/udp``: each host port on the device and where it leads."""
    return ", ".join(f"{p['host']}->{p['container']}/{p['protocol']}" for p in ports)


def migrations(items: Iterable[Migration], *, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    table = _table("ID", "CONTAINER", "FROM", "TO", "LEVEL", "REASON", "STATE", "FREEZE", "CREATED")
    for migration in items:
        freeze = migration["freeze_ms"]
        table.add_row(
            Text(migration["id"]),
            Text(migration["container"][:SHORT_ID]),
            Text(migration["source"]),
            Text(_destination(migration)),
            Text(str(migration.get("level", 2))),
            Text(migration["reason"]),
            Text(migration["state"], style=MIGRATION_STYLES.get(migration["state"], "yellow")),
            Text(MISSING if freeze is None else human_duration(freeze)),
            Text(ago(migration["created_at"], now=now)),
        )
    _console().print(table)


def _destination(migration: Migration) -> str:
    """Where it went; a level-1 move names its keeper first (``k1 → n3``)."""
    keeper, target = migration.get("keeper"), migration["target"]
    if keeper:
        return f"{keeper} → {target}" if target and target != keeper else f"kept on {keeper}"
    return target or MISSING


def container_state(container: Container, *, queued: str | None = None) -> None:
    """``admin-web: running``, or with the action still waiting for the device,
    ``admin-web: running (stop queued)``."""
    waiting = f" ({queued} queued)" if queued else ""
    info(f"{container['name']}: {container['state']}{waiting}")


def queued(container: Container, *, action: str, command_state: str | None) -> None:
    """Why a request answered 202, and how to follow it: the device is offline (its command
    waits in the queue) or has not finished yet (the command was sent)."""
    device, command_id = container["device"], container["command"]
    noun = ACTION_NOUNS.get(action, action)
    follow = f"(edgecloud inspect {container['id']})"
    if command_state == "sent":
        notice(
            f"device {device} has not finished yet: the {noun} was sent as command "
            f"{command_id} and is still in progress {follow}"
        )
    elif command_state in (None, "queued"):
        notice(
            f"device {device} is offline: the {noun} is queued as command {command_id}; "
            f"it runs when the device is back {follow}"
        )
    else:
        notice(f"the {noun} (command {command_id} on {device}) has {command_state} {follow}")


def pending_command(command: Command) -> None:
    """The command a container waits for, beside its JSON."""
    line = (
        f"command {command['id']}: {command['action']} {command['state']} "
        f"(created {when(command['created_at'])}, {command['attempts']} attempts)"
    )
    if command.get("error"):
        line += f": {printable(command['error'] or '')} ({command.get('error_code') or 'error'})"
    notice(line)


def progress(line: str, *, live: bool) -> None:
    """A progress line on stderr; ``live`` (on a terminal): over the previous one."""
    if live:
        # color=True: click would strip the "erase line" code as if it were a colour.
        typer.echo(f"\r\x1b[K{line}", err=True, nl=False, color=True)
    else:
        notice(line)


def describe_pull(progress: Mapping[str, Any]) -> str:
    """``pulling busybox:latest: Downloading 1.0 MiB/2.0 MiB``."""
    status = printable(str(progress.get("status") or "pulling"))
    current, total = progress.get("current"), progress.get("total")
    amount = ""
    if isinstance(current, int) and isinstance(total, int) and total > 0:
        amount = f" {human_bytes(current)}/{human_bytes(total)}"
    elif isinstance(current, int):
        amount = f" {human_bytes(current)}"
    return f"pulling {progress.get('image')}: {status}{amount}"


def printable(text: str) -> str:
    """``text`` without control characters, which a terminal could take as commands."""
    return CONTROL_CHARACTERS.sub(" ", text)


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


def human_duration(ms: float) -> str:
    """``120 ms``, ``4.2 s``, ``3m07s``."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes}m{seconds:02d}s"


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
