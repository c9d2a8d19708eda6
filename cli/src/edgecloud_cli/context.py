"""What every command needs: the gateway in use, a signed-in client, and the errors we expect
reported as one line on stderr."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from . import output
from .client import ApiError, Client
from .config import ConfigError
from .target import InvalidUrl, NotLoggedIn, Target


class CliError(Exception):
    """A failure the command explains in its message, e.g. an id that matches no container."""


def open_client(url: str, token: str | None = None, *, ca_bundle: Path | None = None) -> Client:
    """The client every command uses; tests replace this to answer from a fake gateway."""
    return Client(url, token=token, ca_bundle=ca_bundle)


@contextmanager
def reported(*, suggest_login: bool = True) -> Iterator[None]:
    """Report the errors we expect as one line on stderr and exit 1, never as a traceback."""
    try:
        yield
    except ApiError as err:
        output.api_error(err, suggest_login=suggest_login)
        raise typer.Exit(1) from None
    except (ConfigError, NotLoggedIn, InvalidUrl, CliError) as err:
        output.error(str(err))
        raise typer.Exit(1) from None


def target(ctx: typer.Context) -> Target:
    found = ctx.find_object(Target)
    assert found is not None, "the app callback sets the target"
    return found


def client(ctx: typer.Context) -> Client:
    """A client for the gateway in use, signed in."""
    chosen = target(ctx)
    return open_client(chosen.url(), chosen.token(), ca_bundle=chosen.ca_bundle)
