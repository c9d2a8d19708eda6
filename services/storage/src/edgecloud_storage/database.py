from sqlalchemy import MetaData

from edgecloud_servicekit.db import Base


class StorageBase(Base):
    __abstract__ = True


def load_metadata() -> MetaData:
    """All storage tables.

    Its tables and API arrive with the applications issue (#5).
    """
    return StorageBase.metadata
