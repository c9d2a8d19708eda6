"""``edgecloud account`` (your own password) and ``edgecloud members`` (a tenant admin's
members: list, reset a password, disable, enable).

Every change of a password, and disabling, ends all the user's sessions and tokens; after
``account password`` you log in again. USER is a member's username or a user id.
"""

import sys
from dataclasses import replace
from typing import Annotated

import typer

from . import config, context, output
from .client import Client
from .context import CliError, reported

account_app = typer.Typer(help="Your own account.", no_args_is_help=True)
members_app = typer.Typer(
    help="The members of your tenant (tenant admins; operators for anyone).",
    no_args_is_help=True,
)

User = Annotated[str, typer.Argument(metavar="USER", help="A member's username, or a user id.")]
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password(s) from stdin, one a line."),
]


def _read_lines(count: int) -> list[str]:
    lines = [sys.stdin.readline().rstrip("\r\n") for _ in range(count)]
    if not all(lines):
        raise typer.BadParameter(
            f"expected {count} non-empty line(s)", param_hint="--password-stdin"
        )
    return lines


@account_app.command("password")
def change_password(ctx: typer.Context, password_stdin: PasswordStdin = False) -> None:
    """Change your password (the current one first). Every session and token of yours
    ends, this login too: log in again with the new password. With --password-stdin, the
    current password on the first line and the new one on the second."""
    target = context.target(ctx)
    if password_stdin:
        current, new = _read_lines(2)
    else:
        current = typer.prompt("Current password", hide_input=True)
        new = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    with reported():
        with context.client(ctx) as client:
            client.change_password(current=current, new=new)
        stored = target.stored() if target.token_from_file() else None
        if stored is not None:
            config.save(replace(stored, token=None, expires_at=None))
    output.info("Password changed; every session and token of yours has ended: log in again")


def _user_id(client: Client, user: str) -> str:
    """A member's id from their username; anything else is taken for an id."""
    for member in client.members():
        if user in (member["user"]["username"], member["user"]["id"]):
            return member["user"]["id"]
    if "-" not in user:
        raise CliError(f"no member named {user} in this tenant (give an operator a user id)")
    return user


@members_app.command("list")
def list_members(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw list as JSON.")] = False,
) -> None:
    """The members of your tenant, their roles and whether they are disabled."""
    with reported(), context.client(ctx) as client:
        items = client.members()
    if as_json:
        output.raw_json(items)
    else:
        output.members(items)


@members_app.command("reset-password")
def reset_password(
    ctx: typer.Context,
    user: User,
    one_time: Annotated[
        bool,
        typer.Option(
            "--one-time",
            help="Issue a one-time reset token for the user instead (printed alone on stdout);"
            " their old password stops working now.",
        ),
    ] = False,
    password_stdin: PasswordStdin = False,
) -> None:
    """Set USER's new password (prompted for, or from stdin), or issue a one-time reset
    token. Their sessions and tokens end."""
    password = None
    if not one_time:
        if password_stdin:
            [password] = _read_lines(1)
        else:
            password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    with reported(), context.client(ctx) as client:
        answer = client.reset_password(_user_id(client, user), password=password)
    name = answer["user"]["username"]
    if answer["reset_token"] is None:
        output.info(f"Password of {name} set; their sessions and tokens have ended")
        return
    output.notice(f"One-time reset for {name} (expires {output.when(answer['expires_at'])}):")
    output.info(answer["reset_token"])
    output.notice("they set a new password with it: POST /api/v1/auth/reset {token, password}")


@members_app.command("disable")
def disable(ctx: typer.Context, user: User) -> None:
    """Disable USER: they cannot sign in, and their sessions and tokens end now."""
    with reported(), context.client(ctx) as client:
        answer = client.set_disabled(_user_id(client, user), disabled=True)
    output.info(f"Disabled {answer['username']}")


@members_app.command("enable")
def enable(ctx: typer.Context, user: User) -> None:
    """Let a disabled USER sign in again (their old tokens stay revoked)."""
    with reported(), context.client(ctx) as client:
        answer = client.set_disabled(_user_id(client, user), disabled=False)
    output.info(f"Enabled {answer['username']}")
