"""Run this machine's own edge agent in the dev stack, enrolling it on first start.

It enrols the way an operator would: signs in to the gateway with the bootstrap
operator account, asks for a one-time enrolment token, and starts the agent with it.
Once the node is enrolled the token is no longer needed. It also prints where the
dashboard is, once the gateway answers.
"""

import json
import os
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = os.environ.get("EDGECLOUD_PUBLIC_URL", "http://127.0.0.1:8000")
ADMIN_USER = os.environ.get("EDGECLOUD_ADMIN_USER", "admin")
ADMIN_PASSWORD = os.environ.get("EDGECLOUD_ADMIN_PASSWORD", "admin")
STATE_DIR = Path(os.environ.get("AGENT_STATE_DIR", ROOT / "var" / "agent"))


def wait_for_gateway(client: httpx.Client, deadline_s: float = 120) -> None:
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > give_up:
            sys.exit(f"local agent: the gateway at {GATEWAY} did not become healthy")
        time.sleep(0.5)


def wait_for_broker_login(deadline_s: float = 60) -> None:
    give_up = time.monotonic() + deadline_s
    while not (STATE_DIR / "broker-admin.secret").exists():
        if time.monotonic() > give_up:
            sys.exit("local agent: the node broker's set-up wrote no admin login")
        time.sleep(0.2)


def enrolled() -> bool:
    credential = STATE_DIR / "credential.json"
    return credential.exists() and bool(json.loads(credential.read_text()).get("enrolled"))


def enrolment_token(client: httpx.Client) -> str:
    login = client.post(
        "/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    )
    login.raise_for_status()
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    created = client.post(
        "/api/v1/devices/enrolments", json={"note": "dev stack local agent"}, headers=headers
    )
    created.raise_for_status()
    return str(created.json()["token"])


def main() -> None:
    with httpx.Client(base_url=GATEWAY, timeout=10) as client:
        wait_for_gateway(client)
        print(
            f"\n  edgecloud is up: dashboard and API at {GATEWAY}/"
            f"\n  operator login: {ADMIN_USER} / {ADMIN_PASSWORD}\n",
            flush=True,
        )
        env = dict(os.environ, AGENT_STATE_DIR=str(STATE_DIR))
        if not enrolled():
            env["AGENT_ENROLMENT_TOKEN"] = enrolment_token(client)
    env.setdefault("AGENT_LOCATION", "dev machine")
    env.setdefault("AGENT_API_URL", GATEWAY)
    # The node broker of infra/dev/broker.sh, which writes the agent's admin login.
    env.setdefault(
        "AGENT_MQTT_URL", f"mqtt://127.0.0.1:{os.environ.get('AGENT_BROKER_PORT', '1884')}"
    )
    env.setdefault("AGENT_PUBLISHED_PORTS", "30000-30999")
    wait_for_broker_login()
    os.execve(sys.executable, [sys.executable, "-m", "edgecloud_agent"], env)


if __name__ == "__main__":
    main()
