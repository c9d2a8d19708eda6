"""Running a service's alembic migrations without an alembic.ini.

Every service keeps its migrations in ``<package>/migrations`` and records its revision
in its own version table, so all services can share one PostgreSQL database.

Developers create a revision with::

    python -m edgecloud_servicekit.migrations edgecloud_registry revision -m "what changed"
"""

import argparse
import asyncio
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from .db import create_engine, is_sqlite


def alembic_config(*, package: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", f"{package}:migrations")
    config.set_main_option("sqlalchemy.url", database_url)
    config.attributes["version_table"] = f"alembic_version_{package.removeprefix('edgecloud_')}"
    return config


def upgrade(*, package: str, database_url: str, revision: str = "head") -> None:
    """Bring the service's tables to ``revision``. Synchronous: call it outside any loop."""
    command.upgrade(alembic_config(package=package, database_url=database_url), revision)


def run_env(context: Any, *, target_metadata: MetaData) -> None:
    """The body of every service's ``migrations/env.py``."""
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    version_table = config.attributes["version_table"]

    def own_objects(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        # Services may share one database: another service's tables (and version table)
        # are not this one's to drop.
        return not (type_ == "table" and reflected and compare_to is None)

    options = {
        "target_metadata": target_metadata,
        "version_table": version_table,
        "render_as_batch": is_sqlite(url),
        "compare_type": True,
        "include_object": own_objects,
    }
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Replicas starting together must not migrate concurrently.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": version_table}
            )
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()

    async def run_online() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run_online())


def main() -> None:
    parser = argparse.ArgumentParser(description="edgecloud service migrations")
    parser.add_argument("package", help="e.g. edgecloud_registry")
    parser.add_argument("--database-url", default="sqlite+aiosqlite:///var/migrations-dev.db")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("upgrade")
    revision = sub.add_parser("revision")
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument("--empty", action="store_true", help="do not autogenerate")
    args = parser.parse_args()
    config = alembic_config(package=args.package, database_url=args.database_url)
    if args.action == "upgrade":
        command.upgrade(config, "head")
    else:
        command.upgrade(config, "head")
        command.revision(config, message=args.message, autogenerate=not args.empty)


if __name__ == "__main__":
    main()
