"""Who may use the node's broker, and for what: every identity the agent makes.

| kind      | username      | may                                                     |
|-----------|---------------|---------------------------------------------------------|
| container | ``c<hex>``    | publish its own data topic, ``edgecloud/data/<username>`` |
| feed      | ``f<hex>``    | subscribe to one container's granted sensor topics       |
| data      | ``d<hex>``    | subscribe to ``edgecloud/data/+`` (the agent's collector) |
| peer      | ``p<hex>``    | one side of one migration: its two topics               |
| sensor    | ``s-<name>``  | publish the topics an operator gave it                   |

Every identity has a random password and a random client id bound to it (the broker refuses
the identity under any other id), so no one can take over another's session: a persistent
feed session that keeps a moving container's sensor messages is reachable only with that
feed's own login. The plugin's default denies everything else, so a tenant's login can
neither subscribe to ``#`` nor publish another container's data. A data point is credited
to the container whose identity sent it: the topic names the identity, and only that
identity may publish there.

The agent keeps what it needs to use again (the logins of its own clients, which container
an identity belongs to) in ``broker.sqlite3`` in its state directory.
"""

import secrets
from dataclasses import dataclass
from pathlib import Path

from edgecloud_contracts.migrations import BrokerLogin

from ..state.db import connect
from .control import BrokerError, DynsecAdmin

__all__ = ["BrokerError", "BrokerIdentities", "ContainerLogin", "check_sensor_name", "data_topic"]

IDENTITIES_FILE = "broker.sqlite3"
DATA_PREFIX = "edgecloud/data/"
DATA_TOPICS = f"{DATA_PREFIX}+"
PEER_PREFIX = "edgecloud/peer/"
_EXISTS = ("already exists",)
_MISSING = ("not found",)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
    username TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    client_id TEXT NOT NULL,
    password TEXT
);
CREATE INDEX IF NOT EXISTS identities_owner ON identities (kind, owner);
CREATE TABLE IF NOT EXISTS remote_feeds (
    container_id TEXT PRIMARY KEY,
    login TEXT NOT NULL
);
"""


def data_topic(username: str) -> str:
    return f"{DATA_PREFIX}{username}"


@dataclass(frozen=True, slots=True)
class ContainerLogin:
    username: str
    password: str
    client_id: str
    topic: str


def _secret() -> str:
    return secrets.token_urlsafe(24)


class BrokerIdentities:
    def __init__(self, *, admin: DynsecAdmin, state_dir: Path) -> None:
        self._admin = admin
        self._db = connect(state_dir / IDENTITIES_FILE)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    async def container(self, container_id: str) -> ContainerLogin:
        """The container's login, made now or given a new password (the old one dies with
        the container it was given to)."""
        found = self._one("container", container_id)
        password = _secret()
        if found is None:
            username = f"c{secrets.token_hex(8)}"
            await self._make(
                username,
                password,
                acls=[("publishClientSend", data_topic(username))],
                client_id=username,
            )
            self._record(username, "container", container_id, client_id=username)
        else:
            username = found[0]
            await self._admin.execute(
                {"command": "setClientPassword", "username": username, "password": password}
            )
        return ContainerLogin(username, password, username, data_topic(username))

    def container_of(self, username: str) -> str | None:
        """The container an identity belongs to (to credit what it published)."""
        row = self._db.execute(
            "SELECT owner FROM identities WHERE username = ? AND kind = 'container'", (username,)
        ).fetchone()
        return str(row[0]) if row is not None else None

    async def feed(self, container_id: str, subscriptions: list[str]) -> BrokerLogin:
        """The login of the container's sensor feed on this node's broker (one per
        container: its persistent session lives under that login's client id)."""
        found = self._one("feed", container_id)
        acls = [("subscribePattern", topic) for topic in subscriptions]
        if found is None:
            username, password = f"f{secrets.token_hex(8)}", _secret()
            client_id = f"f{secrets.token_hex(16)}"
            await self._make(username, password, acls=acls, client_id=client_id)
            self._record(username, "feed", container_id, client_id=client_id, password=password)
            return BrokerLogin(username=username, password=password, client_id=client_id)
        username, client_id, kept = found
        assert kept is not None
        return BrokerLogin(username=username, password=kept, client_id=client_id)

    def remember_remote_feed(self, container_id: str, login: BrokerLogin) -> None:
        """The feed login a migration's source gave for its broker, where a moved container's
        sensors still publish."""
        self._db.execute(
            "INSERT OR REPLACE INTO remote_feeds (container_id, login) VALUES (?, ?)",
            (container_id, login.model_dump_json()),
        )

    def forget_remote_feed(self, container_id: str) -> None:
        """The container reads no sensors from another node's broker any more."""
        self._db.execute("DELETE FROM remote_feeds WHERE container_id = ?", (container_id,))

    def remote_feed(self, container_id: str) -> BrokerLogin | None:
        row = self._db.execute(
            "SELECT login FROM remote_feeds WHERE container_id = ?", (container_id,)
        ).fetchone()
        return BrokerLogin.model_validate_json(row[0]) if row is not None else None

    async def data(self, owner: str) -> BrokerLogin:
        """The login of the agent's own data collector."""
        found = self._one("data", owner)
        if found is not None and found[2] is not None:
            return BrokerLogin(username=found[0], password=found[2], client_id=found[1])
        username, password = f"d{secrets.token_hex(8)}", _secret()
        client_id = f"d{secrets.token_hex(16)}"
        await self._make(username, password, acls=[("subscribePattern", DATA_TOPICS)],
                         client_id=client_id)  # fmt: skip
        self._record(username, "data", owner, client_id=client_id, password=password)
        return BrokerLogin(username=username, password=password, client_id=client_id)

    async def migration(
        self, migration: str, *, me: str, peer: str
    ) -> tuple[BrokerLogin, BrokerLogin]:
        """Two logins for one migration on this node's broker (its target's): this node's
        side and the peer's, each allowed only its own topic and the other's."""
        topic = f"{PEER_PREFIX}{migration}"
        made = []
        for speaker, listener in ((me, peer), (peer, me)):
            username, password = f"p{secrets.token_hex(8)}", _secret()
            client_id = f"p{secrets.token_hex(16)}"
            await self._make(
                username,
                password,
                acls=[
                    ("publishClientSend", f"{topic}/{speaker}"),
                    ("subscribePattern", f"{topic}/{listener}"),
                ],
                client_id=client_id,
            )
            self._record(username, "peer", migration, client_id=client_id)
            made.append(BrokerLogin(username=username, password=password, client_id=client_id))
        return made[0], made[1]

    async def sensor(self, name: str, topics: list[str]) -> BrokerLogin:
        """A login for a sensor an operator adds, allowed to publish ``topics``."""
        username, password = f"s-{name}", _secret()
        await self._make(username, password, acls=[("publishClientSend", t) for t in topics],
                         client_id=username)  # fmt: skip
        self._record(username, "sensor", name, client_id=username)
        return BrokerLogin(username=username, password=password, client_id=username)

    async def forget(self, kind: str, owner: str) -> None:
        """Delete the identities of one owner (a container, a migration, a sensor): the
        broker disconnects them."""
        rows = self._db.execute(
            "SELECT username FROM identities WHERE kind = ? AND owner = ?", (kind, owner)
        ).fetchall()
        for (username,) in rows:
            await self._admin.execute(
                {"command": "deleteClient", "username": username},
                {"command": "deleteRole", "rolename": username},
                allow=_MISSING,
            )
            self._db.execute("DELETE FROM identities WHERE username = ?", (username,))
        if kind == "container":
            self._db.execute("DELETE FROM remote_feeds WHERE container_id = ?", (owner,))

    def owners(self, kind: str) -> set[str]:
        rows = self._db.execute("SELECT DISTINCT owner FROM identities WHERE kind = ?", (kind,))
        return {str(owner) for (owner,) in rows}

    async def _make(
        self, username: str, password: str, *, acls: list[tuple[str, str]], client_id: str
    ) -> None:
        """A role named like the identity, holding its ACLs, and the identity itself, bound
        to its client id."""
        client: dict[str, object] = {
            "command": "createClient",
            "username": username,
            "password": password,
            "clientid": client_id,
            "roles": [{"rolename": username}],
        }
        await self._admin.execute(
            {
                "command": "createRole",
                "rolename": username,
                "acls": [
                    {"acltype": kind, "topic": topic, "allow": True, "priority": 0}
                    for kind, topic in acls
                ],
            },
            client,
        )

    def _one(self, kind: str, owner: str) -> tuple[str, str, str | None] | None:
        row = self._db.execute(
            "SELECT username, client_id, password FROM identities WHERE kind = ? AND owner = ?",
            (kind, owner),
        ).fetchone()
        return (str(row[0]), str(row[1]), row[2]) if row is not None else None

    def _record(
        self, username: str, kind: str, owner: str, *, client_id: str, password: str | None = None
    ) -> None:
        self._db.execute(
            "INSERT INTO identities (username, kind, owner, client_id, password)"
            " VALUES (?, ?, ?, ?, ?)",
            (username, kind, owner, client_id, password),
        )


def check_sensor_name(name: str) -> str:
    if (
        not name
        or len(name) > 60
        or not all(c.isascii() and (c.isalnum() or c in "_-") for c in name)
    ):
        raise ValueError(f"not a sensor name: {name!r} (letters, digits, _ and -, at most 60)")
    return name
