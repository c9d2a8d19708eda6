"""Render the router's config for this environment and start Crossbar in the foreground.

Runs with the router's own interpreter (.venv-router), so it uses only the standard
library. Each service authenticates with its own WAMP ticket, read from the same
variable the service itself reads (``<SERVICE>_WAMP_TICKET``); in development mode a
missing ticket falls back to the well-known development value, elsewhere it is an error.
"""

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVICES = ("gateway", "registry", "orchestrator", "storage", "migration-scheduler")


def ticket_variable(service: str) -> str:
    return f"{service.upper().replace('-', '_')}_WAMP_TICKET"


def development_ticket(service: str) -> str:
    return f"dev-ticket-{service}"


def service_principals(development: bool) -> dict[str, dict[str, str]]:
    principals = {}
    for service in SERVICES:
        ticket = os.environ.get(ticket_variable(service))
        if not ticket:
            if not development:
                sys.exit(f"router: {ticket_variable(service)} is not set")
            ticket = development_ticket(service)
        principals[service] = {"ticket": ticket, "role": "service"}
    return principals


def render(*, host: str, port: int, development: bool) -> dict:
    text = (HERE / "config.template.json").read_text()
    text = text.replace("@PYTHONPATH@", str(HERE)).replace("@HOST@", host)
    config = json.loads(text.replace('"@PORT@"', str(port)))
    config.pop("$comment", None)
    worker = config["workers"][0]
    ws_auth = worker["transports"][0]["paths"]["ws"]["auth"]
    ws_auth["ticket"]["principals"] = service_principals(development)
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
    config = render(host=args.host, port=args.port, development=development)
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
