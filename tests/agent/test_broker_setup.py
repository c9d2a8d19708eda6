"""``edgecloud-agent broker-setup`` and ``edgecloud-agent sensor``, run as an operator runs
them on a node: the broker they configure admits the agent's admin login and no one
anonymous, running them again changes nothing, and bad input is refused in words."""

import json
import os
import subprocess
from pathlib import Path

import aiomqtt
import pytest

from edgecloud_agent.broker.control import DynsecAdmin
from edgecloud_agent.broker.setup import ADMIN_SECRET_FILE, ADMIN_USER, read_admin_secret
from edgecloud_contracts.migrations import BrokerLogin
from tests.support.brokers import client_with
from tests.support.processes import PYTHON, ManagedProcess, free_port, wait_port


def agent_command(state: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "AGENT_STATE_DIR": str(state),
        "AGENT_MQTT_URL": f"mqtt://127.0.0.1:{port}",
    }
    return subprocess.run(
        [str(PYTHON), "-m", "edgecloud_agent", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_broker_setup_makes_a_broker_of_identities(tmp_path: Path) -> None:
    state, port = tmp_path / "agent", free_port()
    config, store = tmp_path / "edgecloud.conf", tmp_path / "dynamic-security.json"
    setup = [
        *("broker-setup", "--config", str(config), "--store", str(store)),
        *("--listen", f"127.0.0.1:{port}", "--user", "root", "--persistence", str(tmp_path)),
    ]
    done = agent_command(state, port, *setup)
    assert done.returncode == 0, done.stderr
    written = config.read_text()
    assert "allow_anonymous false" in written
    assert f"listener {port} 127.0.0.1" in written
    assert f"plugin_opt_config_file {store}" in written
    secret_file = state / ADMIN_SECRET_FILE
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    secret = read_admin_secret(secret_file)
    assert secret is not None
    # Again: nothing changes (the store and the agent's login are kept).
    assert agent_command(state, port, *setup).returncode == 0
    assert read_admin_secret(secret_file) == secret

    full = tmp_path / "mosquitto.conf"
    full.write_text(f"include_dir {tmp_path / 'conf.d'}\nuser root\nlog_dest stdout\n")
    (tmp_path / "conf.d").mkdir()
    config.rename(tmp_path / "conf.d" / "edgecloud.conf")
    broker = ManagedProcess(
        "broker", ["/usr/sbin/mosquitto", "-c", str(full)], {}, tmp_path / "mosquitto.log"
    ).start()
    try:
        wait_port(port, broker)
        admin = DynsecAdmin(url=f"mqtt://127.0.0.1:{port}", username=ADMIN_USER, password=secret)
        answers = await admin.query({"command": "listClients"})
        assert ADMIN_USER in answers[0]["data"]["clients"]
        with pytest.raises(aiomqtt.MqttCodeError):
            async with aiomqtt.Client("127.0.0.1", port, identifier="anyone"):
                pass

        added = agent_command(state, port, "sensor", "add", "kitchen", "--topic", "sensors/k/#")
        assert added.returncode == 0, added.stderr
        login = BrokerLogin.model_validate(json.loads(added.stdout))
        async with client_with("127.0.0.1", port, login) as sensor:
            await sensor.publish("sensors/k/temp", b"21.5", qos=1)
        refused = agent_command(state, port, "sensor", "add", "../x", "--topic", "#")
        assert refused.returncode != 0
        assert "not a sensor name" in refused.stderr
        removed = agent_command(state, port, "sensor", "remove", "kitchen")
        assert removed.returncode == 0, removed.stderr
        with pytest.raises(aiomqtt.MqttCodeError):
            async with client_with("127.0.0.1", port, login):
                pass
    finally:
        broker.stop()


def test_sensor_commands_need_the_broker_set_up_first(tmp_path: Path) -> None:
    done = agent_command(tmp_path / "agent", free_port(), "sensor", "add", "x", "--topic", "t")
    assert done.returncode != 0
    assert "broker-setup first" in done.stderr
