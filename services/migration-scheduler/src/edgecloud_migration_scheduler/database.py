from sqlalchemy import MetaData

from edgecloud_servicekit.db import Base


class MigrationSchedulerBase(Base):
    __abstract__ = True


def load_metadata() -> MetaData:
    """All migration-scheduler tables.

    Its tables and API arrive with the peer migration issue (#8).
    """
    return MigrationSchedulerBase.metadata
