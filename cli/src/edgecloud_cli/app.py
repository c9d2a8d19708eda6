"""The ``edgecloud`` commands, all registered here: each parses its options, calls the client,
hands the answer to :mod:`.output`; :func:`.context.reported` turns the errors we expect into
one line on stderr. The container commands live in :mod:`.run`, :mod:`.containers`,
:mod:`.logs`, :mod:`.files`, :mod:`.deploy`, :mod:`.migrate` and :mod:`.terminal`; uploads
in :mod:`.upload`."""

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from . import (
    accounts,
    config,
    containers,
    context,
    deploy,
    files,
    interfaces,
    logs,
    migrate,
    output,
    run,
    terminal,
    upload,
)
from .client import ApiError
from .config import Credentials
from .context import reported
from .target import NotLoggedIn, Target

app = typer.Typer(
    name="edgecloud",
    help="Manage your edgecloud devices, containers and tokens from the command line.",
    no_args_is_help=True,
    # Locals in a traceback could include the password or a token.
    pretty_exceptions_show_locals=False,
)
tokens_app = typer.Typer(help="Named, expiring API tokens for scripts.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
app.add_typer(interfaces.app, name="interfaces")
app.add_typer(accounts.account_app, name="account")
app.add_typer(accounts.members_app, name="members")


@app.callback()
def _options(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="EDGECLOUD_URL",
            help="Gateway URL (default: the one you logged in to, else http://127.0.0.1:8000).",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="EDGECLOUD_TOKEN",
            help="Bearer token to use instead of the stored login.",
            show_default=False,
        ),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGECLOUD_CA_BUNDLE",
            help="PEM file of the authorities to trust for an https:// gateway with a private"
            " or self-signed certificate (default: the system's).",
            show_default=False,
        ),
    ] = None,
) -> None:
    ctx.obj = Target(url_option=url, token_option=token, ca_bundle=ca_bundle)


@app.command()
def login(
    ctx: typer.Context,
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="Prompted for when missing.")
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
    ] = False,
) -> None:
    """Sign in and store the token (mode 0600) for the next commands."""
    with reported(suggest_login=False):
        # The URL first: no point asking for a password when the stored login is unusable.
        url = context.target(ctx).url()
        username, password = _ask_credentials(username, password_stdin=password_stdin)
        with context.open_client(url, ca_bundle=context.target(ctx).ca_bundle) as client:
            answer = client.login(username=username, password=password)
        expires_at = answer["expires_at"]
        config.save(Credentials(url, username, answer["access_token"], expires_at))
    output.info(f"Logged in as {username} to {url} (token expires {output.when(expires_at)})")


def _ask_credentials(username: str | None, *, password_stdin: bool) -> tuple[str, str]:
    if password_stdin:
        # stdin carries the password, so the username cannot be prompted for.
        if not username:
            raise typer.BadParameter("is required with --password-stdin", param_hint="--username")
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise typer.BadParameter("no password on stdin", param_hint="--password-stdin")
    else:
        username = username or typer.prompt("Username")
        password = typer.prompt("Password", hide_input=True)
    return username.strip(), password


@app.command()
def logout(ctx: typer.Context) -> None:
    """Revoke the token on the server and forget it."""
    target = context.target(ctx)
    with reported():
        url = target.url()
        try:
            token = target.token()
        except NotLoggedIn:
            output.notice(f"Not logged in to {url}")
            return
        try:
            with context.open_client(url, token, ca_bundle=target.ca_bundle) as client:
                client.logout()
        except ApiError as err:
            # 401: the token is already expired or revoked; forgetting it is all that is left.
            if err.status != 401:
                raise
        # A --token was revoked on the server; the stored login is another token, kept.
        stored = target.stored() if target.token_from_file() else None
        if stored is not None:
            config.save(replace(stored, token=None, expires_at=None))
    output.info(f"Logged out of {url}")


@app.command()
def whoami(ctx: typer.Context) -> None:
    """Show the signed-in user, tenant and roles."""
    with reported(), context.client(ctx) as client:
        output.whoami(client.me())


@app.command()
def devices(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw list as JSON.")] = False,
) -> None:
    """List the devices you can use."""
    with reported(), context.client(ctx) as client:
        items = client.devices()
    if as_json:
        output.raw_json(items)
    else:
        output.devices(items)


@tokens_app.command("list")
def list_tokens(ctx: typer.Context) -> None:
    """List your live API tokens (never their values)."""
    with reported(), context.client(ctx) as client:
        output.tokens(client.tokens())


@tokens_app.command("create")
def create_token(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. ci-deploy.")],
    days: Annotated[int, typer.Option("--days", min=1, max=365, help="Lifetime in days.")] = 90,
) -> None:
    """Create an API token; it is shown once."""
    with reported(), context.client(ctx) as client:
        output.created_token(client.create_token(name=name, expires_in_days=days))


@tokens_app.command("revoke")
def revoke_token(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id.")],
) -> None:
    """Revoke an API token; it stops working at once."""
    with reported(), context.client(ctx) as client:
        client.revoke_token(token_id)
    output.info(f"Revoked token {token_id}")


# Containers: top-level verbs, as in docker.
app.command("run", rich_help_panel="Containers")(run.run)
app.command("ps", rich_help_panel="Containers")(containers.ps)
app.command("start", rich_help_panel="Containers")(containers.start)
app.command("stop", rich_help_panel="Containers")(containers.stop)
app.command("restart", rich_help_panel="Containers")(containers.restart)
app.command("rm", rich_help_panel="Containers")(containers.rm)
app.command("inspect", rich_help_panel="Containers")(containers.inspect)
app.command("logs", rich_help_panel="Containers")(logs.logs)
app.command("exec", rich_help_panel="Containers")(terminal.exec_command)
app.command("cp", rich_help_panel="Containers")(files.cp)
app.command("deploy", rich_help_panel="Containers")(deploy.deploy)
app.command("migrate", rich_help_panel="Containers")(migrate.migrate)
app.command("migrations", rich_help_panel="Containers")(migrate.migrations)

app.command("upload", rich_help_panel="Artifacts")(upload.upload)
