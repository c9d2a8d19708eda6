"""Render the router's config for this environment and start Crossbar in the foreground.

Runs with the router's own interpreter (.venv-router), so it uses only the standard
library. Each service authenticates with its own WAMP ticket, read from the same
variable the service itself reads (``<SERVICE>_WAMP_TICKET``); in development mode a
missing ticket falls back to the well-known development value, elsewhere a ticket that is
missing, a development value or shorter than 24 characters is an error.

TLS: with ``EDGECLOUD_ROUTER_TLS_CERTFILE`` (PEM certificate, with its chain) and
``EDGECLOUD_ROUTER_TLS_KEYFILE`` (its key) set, the router listens for ``wss://`` only (TLS
1.3, Crossbar's minimum); clients trust its authority with their CA file setting.
"""

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVICES = ("gateway", "registry", "orchestrator", "storage", "migration-scheduler")
MIN_TICKET_LENGTH = 24
"""As edgecloud_servicekit.settings.MIN_TICKET_LENGTH (the router's venv cannot import it)."""
REVEALING_LOGLEVELS = ("debug", "trace")
"""Crossbar prints the service tickets (checking its config) and every HELLO's authextra,
enrolment tokens included, at these levels: development only."""


def ticket_variable(service: str) -> str:
    return f"{service.upper().replace('-', '_')}_WAMP_TICKET"


def development_ticket(service: str) -> str:
    return f"dev-ticket-{service}"


def ticket_refusal(variable: str, ticket: str) -> str | None:
    """Why ``ticket`` may not be used outside development, or None."""
    if ticket in {development_ticket(service) for service in SERVICES}:
        return f"router: {variable} is a development default; set a secret of your own"
    if len(ticket) < MIN_TICKET_LENGTH:
        return f"router: {variable} must be at least {MIN_TICKET_LENGTH} characters"
    return None


def service_principals(development: bool) -> dict[str, dict[str, str]]:
    principals = {}
    for service in SERVICES:
        variable = ticket_variable(service)
        ticket = os.environ.get(variable)
        if not ticket:
            if not development:
                sys.exit(f"router: {variable} is not set")
            ticket = development_ticket(service)
        elif not development and (refusal := ticket_refusal(variable, ticket)):
            sys.exit(refusal)
        principals[service] = {"ticket": ticket, "role": "service"}
    return principals


def tls_files() -> dict[str, str] | None:
    """Crossbar's ``tls`` endpoint option from the environment; None for plain ``ws://``."""
    certfile = os.environ.get("EDGECLOUD_ROUTER_TLS_CERTFILE", "")
    keyfile = os.environ.get("EDGECLOUD_ROUTER_TLS_KEYFILE", "")
    if not certfile and not keyfile:
        return None
    if not certfile or not keyfile:
        sys.exit(
            "router: EDGECLOUD_ROUTER_TLS_CERTFILE and EDGECLOUD_ROUTER_TLS_KEYFILE go together"
        )
    for variable, path in (
        ("EDGECLOUD_ROUTER_TLS_CERTFILE", certfile),
        ("EDGECLOUD_ROUTER_TLS_KEYFILE", keyfile),
    ):
        if not Path(path).is_file():
            sys.exit(f"router: {variable}: {path} is not a file")
    # Absolute: Crossbar reads relative paths from its cbdir.
    return {"certificate": str(Path(certfile).resolve()), "key": str(Path(keyfile).resolve())}


def render(*, host: str, port: int, development: bool, tls: dict[str, str] | None = None) -> dict:
    text = (HERE / "config.template.json").read_text()
    text = text.replace("@PYTHONPATH@", str(HERE)).replace("@HOST@", host)
    config = json.loads(text.replace('"@PORT@"', str(port)))
    config.pop("$comment", None)
    worker = config["workers"][0]
    transport = worker["transports"][0]
    ws_auth = transport["paths"]["ws"]["auth"]
    ws_auth["ticket"]["principals"] = service_principals(development)
    if tls is not None:
        transport["endpoint"]["tls"] = tls
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cbdir", required=True, type=Path)
    parser.add_argument("--host", default=os.environ.get("EDGECLOUD_ROUTER_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("EDGECLOUD_ROUTER_PORT", "8080"))
    )
    parser.add_argument("--loglevel", default=os.environ.get("EDGECLOUD_ROUTER_LOGLEVEL", "warn"))
    args = parser.parse_args()

    development = os.environ.get("EDGECLOUD_ENV", "production") == "development"
    if args.loglevel.lower() in REVEALING_LOGLEVELS and not development:
        sys.exit(
            f"router: log level {args.loglevel} prints tickets and enrolment tokens;"
            " use info or warn outside development (EDGECLOUD_ROUTER_LOGLEVEL)"
        )
    config = render(host=args.host, port=args.port, development=development, tls=tls_files())
    args.cbdir.mkdir(parents=True, exist_ok=True)
    config_path = args.cbdir / "config.json"
    # The rendered file holds the service tickets.
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=2)

    crossbar = Path(sys.executable).with_name("crossbar")
    os.execv(
        str(crossbar),
        [str(crossbar), "start", "--cbdir", str(args.cbdir), "--loglevel", args.loglevel],
    )


if __name__ == "__main__":
    main()
