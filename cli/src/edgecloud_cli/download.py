"""Bringing an artifact a device makes down to this machine: wait until the device has
uploaded it, then download it, resuming with ``Range`` after a broken connection and checking
its SHA-256 at the end."""

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from rich.progress import Progress

from . import output, progress
from .client import NO_ANSWER, ApiError, Client
from .context import CliError
from .retries import Retries
from .schemas import Artifact, Command, CopyOut

POLL_INTERVAL_S = 0.5
COMPLETE = "complete"
COMMAND_ENDED_BADLY = frozenset({"failed", "expired"})


def wait_for(client: Client, asked: CopyOut, bar: Progress, label: str) -> Artifact:
    """The artifact once complete; a command the device failed (or never took) ends the
    wait with its error."""
    task = bar.add_task(f"pack {label}", total=None)
    retries = Retries()
    while True:
        try:
            artifact = client.artifact(asked["artifact"])
            if artifact["state"] == COMPLETE:
                bar.remove_task(task)
                return artifact
            command = client.command(asked["command"])
        except ApiError as err:
            retries.pause(err)
            continue
        retries.reset()
        if command["state"] in COMMAND_ENDED_BADLY:
            raise CliError(describe_failure(command))
        bar.update(task, total=artifact["size"], completed=artifact["received"])
        time.sleep(POLL_INTERVAL_S)


def describe_failure(command: Command) -> str:
    """``no such file: /app/x (path_not_found)``, for a failed or expired command."""
    if command["state"] == "expired":
        default = "the device did not take the command before it expired"
    else:
        default = "the device could not copy it"
    reason = output.printable(command.get("error") or default)
    return f"{reason} ({command.get('error_code') or command['state']}; command {command['id']})"


def fetch(
    client: Client, artifact: Artifact, target: Path, bar: Progress, label: str, *, quiet: bool
) -> None:
    """Download the artifact's bytes into ``target``; a broken connection or a 5xx goes on
    from the last byte received (a server that ignores the range starts it over). Each
    retry is announced on stderr unless ``quiet``."""
    size = artifact["size"]
    task = bar.add_task(f"download {label}", total=size)
    digest, received, retries = hashlib.sha256(), 0, Retries()
    announced: str | None = None
    with target.open("wb") as sink:
        while True:
            before = received
            try:
                with client.download(artifact["id"], start=received) as stream:
                    if received and stream.status != 206:
                        sink.seek(0)
                        sink.truncate()
                        digest, received = hashlib.sha256(), 0
                    announced = stream.headers.get("X-Content-SHA256") or announced
                    for chunk in stream.chunks():
                        sink.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(task, completed=received)
                if size is None or received >= size:
                    break
                raise ApiError(
                    NO_ANSWER, "stream_ended", f"the download ended at byte {received} of {size}"
                )
            except ApiError as err:
                if received > before:
                    retries.reset()
                retries.pause(err, announce=None if quiet else _announce(bar, err, label, retries))
    _check(artifact, received, digest.hexdigest(), announced)


def _check(artifact: Artifact, received: int, actual: str, announced: str | None) -> None:
    if artifact["size"] is not None and received != artifact["size"]:
        raise CliError(f"the download has {received} bytes, not {artifact['size']}")
    for claimed in (artifact["sha256"], announced):
        if claimed and claimed != actual:
            raise CliError(
                f"the download's SHA-256 is {actual}, not {claimed}; nothing was written"
            )


def _announce(
    bar: Progress, err: ApiError, label: str, retries: Retries
) -> Callable[[float], None]:
    def say(delay: float) -> None:
        progress.say(
            bar,
            f"download of {label} interrupted: {output.printable(err.detail)}; "
            f"trying again in {delay:g} s ({retries.used}/{retries.allowed})",
        )

    return say
