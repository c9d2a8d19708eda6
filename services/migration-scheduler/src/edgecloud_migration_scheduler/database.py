from sqlalchemy import MetaData

from edgecloud_servicekit.db import Base


class MigrationSchedulerBase(Base):
    __abstract__ = True


def load_metadata() -> MetaData:
    """All migration-scheduler tables (imported here so alembic sees every model)."""
    from .moves import models as _moves  # noqa: F401

    return MigrationSchedulerBase.metadata
