"""``edgecloud deploy``: upload an application archive and its script, bring them into a
container and run the script there, following the deployment to its end.

The deployment is read every :data:`POLL_INTERVAL_S`: each step is printed once it has ended,
the download's progress is shown on a terminal, and the script's exit code ends it all. The
follow lines go to stderr; stdout gets the deployment id (or, with ``--json``, the deployment).
"""

from pathlib import Path
from typing import Annotated

import typer

from . import containers, context, following, output, progress
from .client import Client
from .context import reported
from .output import human_duration
from .schemas import Deployment, DeploymentStep
from .upload import Kind, QuietOption, Uploader

POLL_INTERVAL_S = 0.5
DONE = frozenset({"succeeded", "failed"})


class Watch:
    """Print what is new in a deployment each time it is read: ended steps, the download's
    progress (on a terminal, ``live``, as one line redrawn), that the script runs."""

    def __init__(self, script: str, *, live: bool) -> None:
        self.script = script
        self.live = live
        self._steps = following.EndedSteps()
        self._state: str | None = None
        self._progress: str | None = None

    def __call__(self, deployment: Deployment) -> None:
        for step in self._steps.new(deployment["steps"], done=deployment["state"] in DONE):
            self._say(describe_step(step))
        state = deployment["state"]
        if state == "downloading" and self.live:
            self._show_download(deployment)
        if state != self._state and state == "running":
            self._say(f"{self.script} is running (Ctrl-C stops following; the script goes on)")
        self._state = state

    def finish(self) -> None:
        """End a live line, so that what follows starts on a line of its own."""
        self._clear()

    def _show_download(self, deployment: Deployment) -> None:
        received, total = deployment["received"], deployment["total"]
        if received is None or not total:
            return
        line = f"download {output.human_bytes(received)}/{output.human_bytes(total)}"
        if line != self._progress:
            output.progress(line, live=True)
            self._progress = line

    def _say(self, line: str) -> None:
        self._clear()
        output.notice(line)

    def _clear(self) -> None:
        if self._progress is not None:
            # color=True: click would strip the "erase line" code as if it were a colour.
            typer.echo("\r\x1b[K", err=True, nl=False, color=True)
            self._progress = None


def describe_step(step: DeploymentStep) -> str:
    """``download 120 ms``, ``extract 1.3 s (12 files)``; a step cut short by the end of
    the deployment shows no time."""
    duration = step["duration_ms"]
    line = step["name"] + (f" {human_duration(duration)}" if duration is not None else "")
    detail = step.get("detail")
    return f"{line} ({output.printable(detail)})" if detail else line


def follow(client: Client, deployment_id: str, watch: Watch) -> Deployment:
    """Read the deployment until it has succeeded or failed; a poll that fails for want of
    an answer (or with a 5xx) is tried again."""
    try:
        return following.until_done(
            lambda: client.deployment(deployment_id),
            done=lambda deployment: deployment["state"] in DONE,
            seen=watch,
            every_s=POLL_INTERVAL_S,
        )
    finally:
        watch.finish()


def deploy(
    ctx: typer.Context,
    archive: Annotated[
        Path,
        typer.Argument(
            metavar="APP.tar",
            exists=True,
            dir_okay=False,
            readable=True,
            help="The application archive (.tar or .tar.gz).",
        ),
    ],
    script: Annotated[
        Path,
        typer.Option(
            "--script",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="The script that runs the application.",
        ),
    ],
    container_ref: Annotated[
        str,
        typer.Option(
            "--container",
            metavar="CONTAINER",
            help="An id, a unique id prefix (4+ characters) or a name.",
        ),
    ],
    no_follow: Annotated[
        bool, typer.Option("--no-follow", help="Print the deployment id and return.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the deployment as JSON at the end.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Upload an application (.tar) and its script; run it in a container."""
    with reported(), context.client(ctx) as client:
        container = containers.resolve(client, container_ref)
        uploader = Uploader(client, quiet=quiet)
        try:
            with uploader:
                app = uploader.upload(archive, kind=Kind.APPLICATION)
                run = uploader.upload(script, kind=Kind.SCRIPT)
        except KeyboardInterrupt:
            output.notice("interrupted; nothing was deployed")
            raise typer.Exit(130) from None
        deployed = client.deploy(container["id"], artifact=app["id"], script=run["id"])
        deployment_id = deployed["deployment"]
        output.notice(f"{container['name']}: deployment {deployment_id} {deployed['state']}")
        if no_follow:
            output.result(deployed if as_json else deployment_id, as_json=as_json)
            return
        watch = Watch(script.name, live=progress.shown(quiet=quiet))
        try:
            final = follow(client, deployment_id, watch)
        except KeyboardInterrupt:
            output.notice(
                f"stopped following; deployment {deployment_id} goes on "
                f"(see its output: edgecloud logs {container_ref} -f)"
            )
            raise typer.Exit(130) from None
    output.result(final if as_json else deployment_id, as_json=as_json)
    _report_end(final, script.name)


def _report_end(final: Deployment, script: str) -> None:
    exit_code = final["exit_code"]
    ran = f"{script} exited with {exit_code}" if exit_code is not None else None
    if final["state"] == "succeeded":
        output.notice(f"succeeded: {ran}" if ran else "succeeded")
        return
    reason = output.printable(final["error"] or "the deployment failed")
    output.error(f"{reason} ({final['error_code'] or 'failed'})")
    if ran:
        output.notice(ran)
    raise typer.Exit(1)
