"""``edgecloud-agent``: run the agent of this edge node in the foreground; or, as a
command, set the node's broker up (``broker-setup``) and give its sensors logins
(``sensor add``)."""

import argparse
import asyncio
import logging
import signal
import sys

from pydantic import SecretStr, ValidationError

from edgecloud_agent.agent import Agent
from edgecloud_agent.broker.cli import add_commands
from edgecloud_agent.settings import AgentSettings
from edgecloud_agent.state.credentials import CredentialFileError
from edgecloud_agent.uplink.errors import LoginRefused
from edgecloud_contracts.logs import log_to_stderr

EX_CONFIG = 78  # sysexits.h: the agent cannot run as configured


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgecloud-agent", description=__doc__)
    parser.add_argument("--router", help="WAMP router URL (AGENT_ROUTER_URL)")
    parser.add_argument(
        "--enrol", metavar="TOKEN", help="one-time enrolment token (AGENT_ENROLMENT_TOKEN)"
    )
    parser.add_argument("--state-dir", help="where the node keeps its credential (AGENT_STATE_DIR)")
    parser.add_argument("--location", help="where the node is, e.g. 'building 3' (AGENT_LOCATION)")
    add_commands(parser.add_subparsers(title="commands", dest="name"))
    return parser.parse_args()


async def _run(agent: Agent) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.stop)
    await agent.run()


def main() -> None:
    args = _parse_args()
    overrides: dict[str, object] = {}
    if args.router:
        overrides["router_url"] = args.router
    if args.enrol:
        overrides["enrolment_token"] = SecretStr(args.enrol)
    if args.state_dir:
        overrides["state_dir"] = args.state_dir
    if args.location:
        overrides["location"] = args.location
    try:
        settings = AgentSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        sys.exit(f"edgecloud-agent: invalid settings: {err}")
    if getattr(args, "command", None) is not None:
        sys.exit(args.command(args, settings))
    log_to_stderr(level=settings.log_level, json_lines=settings.log_json)
    log = logging.getLogger("edgecloud_agent")
    try:
        agent = Agent(settings)
    except CredentialFileError as err:
        log.error("%s", err)
        sys.exit(EX_CONFIG)
    try:
        asyncio.run(_run(agent))
    except* LoginRefused as group:
        log.error("%s; an operator must enrol this node again", group.exceptions[0])
        sys.exit(EX_CONFIG)


if __name__ == "__main__":
    main()
